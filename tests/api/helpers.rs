//! `spawn_app()`: the real application on a free port, on a database of its own.

use std::net::SocketAddr;

use boxoffice::config::Settings;
use boxoffice::startup::Application;
use boxoffice_engine::testdb::TestDb;
use boxoffice_engine::Engine;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running application and what a test needs to talk to it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    /// The database, for checks against PostgreSQL. Dropped with the app.
    pub db: TestDb,
    /// The engine inside the server.
    pub engine: Engine,
    /// An HTTP client.
    pub client: reqwest::Client,
    /// Sends the shutdown signal.
    shutdown: Option<oneshot::Sender<()>>,
    /// The server task; finishes after a graceful shutdown.
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Settings for a test: the given database, port 0, a fixed JWT secret, no Redis, no
/// background sweep of lapsed holds.
pub fn test_settings(db: &TestDb) -> Settings {
    let mut settings = Settings::from_env().expect("environment is valid");
    settings.database_url = boxoffice::config::Secret::new(db.url());
    settings.bind_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.jwt_secret = boxoffice::config::Secret::new("test-secret-test-secret-test-secret");
    settings.jwt_secret_generated = false;
    settings.redis_url = None;
    settings.db_max_connections = 10;
    settings.db_min_connections = 1;
    // Off, so that a test may find a lapsed hold's row as the hot path left it; the sweep's
    // own test turns it on.
    settings.expiry_sweep_interval_seconds = 0;
    settings
}

/// A client that retires a pooled connection after 1 s idle, well inside the server's
/// `HEADER_TIMEOUT_MS` (5 s). With reqwest's default (90 s), a connection opened during a
/// test's setup can sit idle for the server's five seconds on a slow machine and be handed
/// to the next request at the instant the server closes it: that request fails with
/// `IncompleteMessage`, HTTP/1.1's keep-alive race, which only the side that keeps a
/// connection longer can avoid.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(1))
        .build()
        .expect("client builds")
}

/// Starts the application on a fresh database.
pub async fn spawn_app() -> TestApp {
    let db = TestDb::create().await;
    let settings = test_settings(&db);
    spawn_app_with(db, settings).await
}

/// Starts the application with the given settings.
pub async fn spawn_app_with(db: TestDb, settings: Settings) -> TestApp {
    boxoffice::telemetry::init_logging("pretty");
    let app = Application::build(settings)
        .await
        .expect("application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let engine = app.engine();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    TestApp {
        address,
        db,
        engine,
        client: client(),
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    /// GET a path.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request sent")
    }

    /// Stops the server gracefully and waits for it to finish.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.server.take().expect("running").await?
    }
}

/// A JSON body, parsed.
pub type Json = serde_json::Value;

impl TestApp {
    /// Creates a user with a role straight in the database, then signs in over HTTP.
    /// Returns (user id, access token).
    pub async fn user(&self, role: &str) -> (i64, String) {
        let email = format!(
            "{}-{}@example.com",
            role.to_lowercase(),
            uuid::Uuid::new_v4().simple()
        );
        let id =
            boxoffice::users::upsert(&self.db.pool, &email, "correct horse", role, "Test", "User")
                .await
                .expect("user created");
        let response = self
            .post(
                "/auth/login",
                None,
                serde_json::json!({"email": email, "password": "correct horse"}),
            )
            .await;
        assert_eq!(response.status(), 200, "login works");
        let body: Json = response.json().await.unwrap();
        (
            id,
            body["data"]["accessToken"].as_str().unwrap().to_string(),
        )
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut builder = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            builder = builder.bearer_auth(token);
        }
        builder
    }

    /// POST a JSON body.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Json) -> reqwest::Response {
        self.request(reqwest::Method::POST, path, token)
            .json(&body)
            .send()
            .await
            .expect("sent")
    }

    /// POST a JSON body with an Idempotency-Key.
    pub async fn post_keyed(
        &self,
        path: &str,
        token: &str,
        key: &str,
        body: Json,
    ) -> reqwest::Response {
        self.request(reqwest::Method::POST, path, Some(token))
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
            .expect("sent")
    }

    /// PATCH a JSON body.
    pub async fn patch(&self, path: &str, token: &str, body: Json) -> reqwest::Response {
        self.request(reqwest::Method::PATCH, path, Some(token))
            .json(&body)
            .send()
            .await
            .expect("sent")
    }

    /// GET with a token.
    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path, Some(token))
            .send()
            .await
            .expect("sent")
    }

    /// DELETE with a token.
    pub async fn delete_as(&self, path: &str, token: &str) -> reqwest::Response {
        self.request(reqwest::Method::DELETE, path, Some(token))
            .send()
            .await
            .expect("sent")
    }

    /// Holds `quantity` tickets of a GENERAL section for the token's buyer; asserts 201 and
    /// returns the hold id.
    pub async fn hold(&self, token: &str, event_id: i64, section_id: i64, quantity: u32) -> i64 {
        let r = self
            .post(
                &format!("/events/{event_id}/reservations"),
                Some(token),
                serde_json::json!({"type": "GENERAL", "sectionId": section_id, "quantity": quantity}),
            )
            .await;
        assert_eq!(r.status(), 201);
        data(r).await["id"].as_i64().unwrap()
    }

    /// POSTs a seat list far over the body limit (`MAX_BODY_BYTES`).
    pub async fn post_oversized(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(format!(
                "{{\"type\":\"SEATS\",\"seatIds\":[{}1]}}",
                "1,".repeat(40_000)
            ))
            .send()
            .await
            .unwrap()
    }

    /// An event on sale with a GENERAL section of `general` tickets and a RESERVED section
    /// of `rows` × `per_row` seats. Returns (event id, general section id, reserved section id).
    pub async fn event_on_sale(
        &self,
        organizer: &str,
        general: u32,
        rows: u32,
        per_row: u32,
        max_per_user: u32,
    ) -> (i64, i64, i64) {
        let event = self
            .post(
                "/events",
                Some(organizer),
                serde_json::json!({
                    "eventName": "Test night",
                    "eventDate": "2030-06-01T20:00:00Z",
                    "saleStartTime": "2020-01-01T00:00:00Z",
                    "maxTicketsPerUser": max_per_user,
                }),
            )
            .await;
        assert_eq!(event.status(), 201);
        let event_id = data(event).await["id"].as_i64().unwrap();
        let general = self
            .post(
                &format!("/events/{event_id}/sections"),
                Some(organizer),
                serde_json::json!({"name": "Floor", "type": "GENERAL", "capacity": general, "priceCents": 5000}),
            )
            .await;
        assert_eq!(general.status(), 201);
        let general_id = data(general).await["id"].as_i64().unwrap();
        let reserved = self
            .post(
                &format!("/events/{event_id}/sections"),
                Some(organizer),
                serde_json::json!({"name": "Stalls", "type": "RESERVED", "rows": rows, "seatsPerRow": per_row, "priceCents": 8000}),
            )
            .await;
        assert_eq!(reserved.status(), 201);
        let reserved_id = data(reserved).await["id"].as_i64().unwrap();
        let open = self
            .patch(
                &format!("/events/{event_id}"),
                organizer,
                serde_json::json!({"status": "ON_SALE"}),
            )
            .await;
        assert_eq!(open.status(), 200);
        (event_id, general_id, reserved_id)
    }
}

/// The `data` of a success body.
pub async fn data(response: reqwest::Response) -> Json {
    let body: Json = response.json().await.expect("JSON body");
    body["data"].clone()
}

/// The `error.code` of an error body.
pub async fn error_code(response: reqwest::Response) -> String {
    let body: Json = response.json().await.expect("JSON body");
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The `error.message` of an error body.
pub async fn error_message(response: reqwest::Response) -> String {
    let body: Json = response.json().await.expect("JSON body");
    body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
