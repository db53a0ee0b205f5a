//! The docs page works with no internet: headless Chromium loads `/docs` with every host
//! but the server's own address unresolvable, and Swagger UI must render every operation
//! from the assets inside the binary.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::spawn_app;

/// The Chromium to drive: `$CHROMIUM`, else Debian's `chromium` (`.ci/run` installs it).
fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_string())
}

#[tokio::test]
async fn the_docs_page_renders_every_operation_offline_in_a_real_browser() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| item.as_object().unwrap().len())
        .sum();
    assert!(operations >= 26);

    let profile = std::env::temp_dir().join(format!("boxoffice-docs-{}", uuid::Uuid::new_v4()));
    let run = tokio::process::Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            // No network but the server: a page that needs a CDN stays blank.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            // Virtual time runs only while the page is idle: the budget lets the scripts
            // render, however slow this machine is.
            "--virtual-time-budget=30000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("{}/docs/", app.address))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("Chromium finished")
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): install Debian's chromium (.ci/run does) or set CHROMIUM",
                chromium()
            )
        });
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        output.status.success(),
        "Chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dom = String::from_utf8_lossy(&output.stdout);
    let rendered = dom.matches("class=\"opblock-summary-path\"").count();
    assert_eq!(
        rendered, operations,
        "every operation of /openapi.json is on the page"
    );
    for path in ["/events/{id}/reservations", "/bookings", "/auth/login"] {
        assert!(
            dom.contains(&format!("data-path=\"{path}\"")),
            "{path} is listed"
        );
    }
    app.stop().await.unwrap();
}
