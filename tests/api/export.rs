//! The CSV export streams: 100,000 bookings go out with memory flat.

use futures::StreamExt;

use crate::helpers::spawn_app;

/// Resident memory of this process (the server runs inside the test process), in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS line");
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_of_100000_bookings_streams_with_flat_memory() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (buyer, _) = app.user("CUSTOMER").await;
    let (event_id, general, _) = app.event_on_sale(&organizer, 10, 1, 1, 8).await;
    // 100,000 bookings with one confirmed hold each, written straight in SQL.
    sqlx::query(
        "WITH b AS (
             INSERT INTO bookings (id, booking_reference, user_id, event_id, status, subtotal_cents,
                                   discount_cents, total_cents, created_at)
             SELECT nextval('bookings_id_seq'), 'BX-' || lpad(g::text, 16, '0'), $1, $2, 'CONFIRMED',
                    5000, 0, 5000, now()
             FROM generate_series(1, 100000) g
             RETURNING id)
         INSERT INTO reservations (id, user_id, event_id, section_id, quantity, status, booking_id,
                                   expires_at, created_at, updated_at)
         SELECT nextval('reservations_id_seq'), $1, $2, $3, 1, 'CONFIRMED', b.id, now(), now(), now()
         FROM b",
    )
    .bind(buyer)
    .bind(event_id)
    .bind(general)
    .execute(&app.db.pool)
    .await
    .unwrap();

    let url = format!("{}/events/{event_id}/bookings/export", app.address);
    let response = app
        .client
        .get(&url)
        .bearer_auth(&organizer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("content-length").is_none(),
        "streamed, not buffered"
    );
    let baseline = rss_bytes();
    let mut peak = baseline;
    let mut bytes = 0usize;
    let mut lines = 0usize;
    let mut chunks = 0usize;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        bytes += chunk.len();
        lines += chunk.iter().filter(|&&b| b == b'\n').count();
        chunks += 1;
        peak = peak.max(rss_bytes());
    }
    assert_eq!(lines, 100_001, "a header and every booking");
    assert!(chunks > 50, "delivered in many pieces ({chunks})");
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "export: {bytes} bytes in {chunks} chunks, peak RSS growth {} KiB",
        growth / 1024
    );
    assert!(
        growth < (bytes as u64) / 2,
        "memory grew by {growth} bytes while streaming {bytes} bytes: not flat"
    );
    app.stop().await.unwrap();
}
