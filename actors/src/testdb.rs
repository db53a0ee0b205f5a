//! Fresh databases for tests: each test gets a database of its own, migrated, and dropped
//! when the test is done, so tests never see each other's rows and can run in parallel.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// The server tests run against, from `TEST_DATABASE_URL` (any database on it; only the
/// host, port and credentials are used).
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database that exists for one test.
pub struct TestDb {
    /// Its name, `boxoffice_test_<random>`.
    pub name: String,
    /// Options to connect to it.
    pub options: PgConnectOptions,
    /// A pool on it, for the test's own checks.
    pub pool: PgPool,
}

impl TestDb {
    /// Creates and migrates a fresh database.
    pub async fn create() -> TestDb {
        let admin_options = PgConnectOptions::from_str(&server_url())
            .expect("TEST_DATABASE_URL is a PostgreSQL URL")
            .database("postgres");
        let name = format!("boxoffice_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = admin_options
            .connect()
            .await
            .expect("PostgreSQL is running (see README: .ci/run starts it)");
        sqlx::query(&format!(r#"CREATE DATABASE "{name}""#))
            .execute(&mut admin)
            .await
            .expect("create test database");
        admin.close().await.ok();
        let options = admin_options.database(&name);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options.clone())
            .await
            .expect("connect to the test database");
        crate::MIGRATOR
            .run(&pool)
            .await
            .expect("migrate the test database");
        TestDb {
            name,
            options,
            pool,
        }
    }

    /// The database's URL.
    pub fn url(&self) -> String {
        let base = server_url();
        let (server, _) = base.rsplit_once('/').expect("URL has a path");
        format!("{server}/{}", self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot block on itself: do the cleanup on
        // a thread with a runtime of its own. FORCE ends connections a test left open.
        let name = self.name.clone();
        let options = self.options.clone().database("postgres");
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut admin) = options.connect().await {
                    let _ =
                        sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
                            .execute(&mut admin)
                            .await;
                }
            });
        })
        .join();
    }
}
