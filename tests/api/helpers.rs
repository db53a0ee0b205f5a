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
    #[allow(dead_code)]
    pub engine: Engine,
    /// An HTTP client.
    pub client: reqwest::Client,
    /// Sends the shutdown signal.
    shutdown: Option<oneshot::Sender<()>>,
    /// The server task; finishes after a graceful shutdown.
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Settings for a test: the given database, port 0, a fixed JWT secret, no Redis.
pub fn test_settings(db: &TestDb) -> Settings {
    let mut settings = Settings::from_env().expect("environment is valid");
    settings.database_url = boxoffice::config::Secret::new(db.url());
    settings.bind_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.jwt_secret = boxoffice::config::Secret::new("test-secret-test-secret-test-secret");
    settings.jwt_secret_generated = false;
    settings.redis_url = None;
    settings.db_max_connections = 10;
    settings.db_min_connections = 1;
    settings
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
        client: reqwest::Client::new(),
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
