//! The buyer's page in a real browser: two buyers in two contexts of Debian's Chromium, on
//! the same seated event, driven by Playwright (`tests/browser/buyer.mjs`). A holds seats and
//! B's map shows them held within a second, without reloading; B cannot select them; A books
//! with a discount, sees the booking, cancels it; then A goes through an event's waiting
//! room (no hold before its turn, a hold once let in). Then PostgreSQL is checked. A screenshot of
//! the event page is kept in `target/artifacts/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::spawn_app;

/// The Chromium to drive: `$CHROMIUM`, else Debian's (`.ci/run` installs it).
fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string())
}

/// Installs the driver (playwright-core, pinned in package-lock.json) when it is missing.
async fn driver(dir: &Path) {
    if dir.join("node_modules/playwright-core").exists() {
        return;
    }
    let installed = tokio::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .status()
        .await
        .expect("npm runs (Node.js and npm are needed for the browser tests)");
    assert!(installed.success(), "npm ci in {}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_buyers_see_each_other_on_the_live_seat_map_in_a_real_browser() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let scripts = root.join("tests/browser");
    driver(&scripts).await;

    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (event_id, _, stalls) = app.event_on_sale(&organizer, 50, 4, 8, 8).await;
    let discount = app
        .post(
            &format!("/events/{event_id}/discounts"),
            Some(&organizer),
            json!({"code": "EARLY10", "percentOff": 10, "maxUses": 100}),
        )
        .await;
    assert_eq!(discount.status(), 201);
    // A second on-sale, with a waiting room that lets buyers in at once.
    let (queued, queued_floor, _) = app.event_on_sale(&organizer, 20, 1, 2, 8).await;
    let r = app
        .patch(
            &format!("/events/{queued}"),
            &organizer,
            json!({"eventName": "Queue night", "waitingRoom": {"enabled": true, "admitPerMinute": 600_000}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let password = "correct horse battery";
    let emails = ["ada@example.com", "bob@example.com"];
    for email in emails {
        boxoffice::users::upsert(&app.db.pool, email, password, "CUSTOMER", "", "")
            .await
            .unwrap();
    }
    let artifacts = root.join("target/artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("buyer-event-page.png");
    let _ = std::fs::remove_file(&screenshot);

    let run = tokio::process::Command::new("node")
        .arg(scripts.join("buyer.mjs"))
        .env("BASE_URL", &app.address)
        .env("EVENT_NAME", "Test night")
        .env("QUEUE_EVENT_NAME", "Queue night")
        .env("A_EMAIL", emails[0])
        .env("B_EMAIL", emails[1])
        .env("PASSWORD", password)
        .env("DISCOUNT_CODE", "early10")
        .env("SCREENSHOT", &screenshot)
        .env("CHROMIUM", chromium())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser run finished")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the browser run failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let findings: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    eprintln!("browser findings: {findings}");
    assert!(
        screenshot.metadata().unwrap().len() > 10_000,
        "a real screenshot"
    );

    // What the page did is what PostgreSQL holds: A's booking, discounted, then cancelled,
    // of the two seats B saw held; B's best-available hold released.
    let reference = findings["reference"].as_str().unwrap();
    let (status, discount_cents, total_cents): (String, i64, i64) = sqlx::query_as(
        "SELECT status, discount_cents, total_cents FROM bookings WHERE booking_reference = $1",
    )
    .bind(reference)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(status, "CANCELLED");
    assert_eq!(
        (discount_cents, total_cents),
        (1600, 14_400),
        "two seats at 80.00, 10% off"
    );
    let held: Vec<i64> = serde_json::from_value(findings["heldSeats"].clone()).unwrap();
    let seats: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT s.id, s.section_id FROM seats s JOIN reservations r ON s.id = ANY(r.seat_ids)
         JOIN bookings b ON b.id = r.booking_id WHERE b.booking_reference = $1 ORDER BY s.id",
    )
    .bind(reference)
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(seats.iter().map(|s| s.0).collect::<Vec<_>>(), held);
    assert!(seats.iter().all(|s| s.1 == stalls));
    let active: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reservations_effective WHERE event_id = $1 AND status = 'ACTIVE'",
    )
    .bind(event_id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(active, 0, "B's hold was released");
    let broken = boxoffice_engine::audit::violations(&app.db.pool, event_id)
        .await
        .unwrap();
    assert!(broken.is_empty(), "{broken:?}");
    // Through the waiting room: A joined, was let in, held with the pass.
    app.engine.sync(queued).await.unwrap();
    let (used, held): (bool, i64) = sqlx::query_as(
        "SELECT q.pass_used_at IS NOT NULL,
                (SELECT count(*) FROM reservations r
                  WHERE r.event_id = q.event_id AND r.user_id = q.user_id AND r.section_id = $2)
         FROM queue_entries q JOIN users u ON u.id = q.user_id
         WHERE q.event_id = $1 AND u.email = 'ada@example.com'",
    )
    .bind(queued)
    .bind(queued_floor)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!((used, held), (true, 1));
    app.stop().await.unwrap();
}
