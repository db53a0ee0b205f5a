//! `boxoffice loadtest` against the real binary: its run is real (holds acknowledged and
//! audited in PostgreSQL), and it leaves nothing behind in the server's listings unless told
//! to keep it.

use boxoffice_engine::testdb::TestDb;

use crate::support::{free_port, Server, JWT_SECRET};

/// Runs the load generator against `server`; returns its exit status and standard output.
async fn loadtest(db: &TestDb, server: &Server, extra: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_boxoffice"))
        .args([
            "loadtest",
            "--target",
            &server.url(""),
            "--scenario",
            "hot-ga",
        ])
        .args([
            "--duration",
            "2",
            "--warmup",
            "1",
            "--buyers",
            "20",
            "--concurrency",
            "8",
        ])
        .args(extra)
        .env("DATABASE_URL", db.url())
        .env("JWT_SECRET", JWT_SECRET)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("the load generator runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&db.pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_test_is_audited_and_cleans_up_after_itself_unless_kept() {
    let db = TestDb::create().await;
    let server = Server::start(&db.url(), free_port()).await;

    let (ok, out) = loadtest(&db, &server, &["--json"]).await;
    assert!(ok, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("a JSON report");
    assert_eq!(report["passed"], true);
    assert!(report["holds"]["ok"].as_u64().unwrap() > 0, "{report}");
    // Audited, then gone: no event, section, hold or account of the run is left.
    for table in [
        "events",
        "event_sections",
        "reservations",
        "bookings",
        "seats",
    ] {
        assert_eq!(
            count(&db, &format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table}"
        );
    }
    assert_eq!(count(&db, "SELECT count(*) FROM users").await, 0);
    let listing: serde_json::Value = reqwest::get(server.url("/events"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listing["data"], serde_json::json!([]));

    let (ok, out) = loadtest(&db, &server, &["--keep"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("PASSED"), "{out}");
    assert_eq!(count(&db, "SELECT count(*) FROM events").await, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM users").await, 21);
    assert!(count(&db, "SELECT count(*) FROM reservations").await > 0);
}
