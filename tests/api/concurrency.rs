//! Many buyers racing through HTTP for the last seats, with the invariants checked in
//! PostgreSQL afterwards.

use serde_json::json;

use crate::helpers::{data, error_code, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buyers_racing_for_the_last_seats_never_oversell() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (event_id, general, reserved) = app.event_on_sale(&organizer, 30, 3, 10, 4).await;
    let mut buyers = Vec::new();
    for _ in 0..40 {
        buyers.push(app.user("CUSTOMER").await.1);
    }
    let map = data(
        app.get(&format!("/events/{event_id}/sections/{reserved}/seats"))
            .await,
    )
    .await;
    let middle_seats: Vec<i64> = (3..7)
        .map(|n| map["rows"][0]["seats"][n]["id"].as_i64().unwrap())
        .collect();

    // Every buyer fires three requests at once: 2 floor tickets, 2 best-available seats, and
    // the same four front-row seats everybody wants.
    let mut tasks = Vec::new();
    for token in &buyers {
        for body in [
            json!({"type": "GENERAL", "sectionId": general, "quantity": 2}),
            json!({"type": "BEST_AVAILABLE", "sectionId": reserved, "quantity": 2}),
            json!({"type": "SEATS", "seatIds": middle_seats.clone()}),
        ] {
            let client = app.client.clone();
            let url = format!("{}/events/{event_id}/reservations", app.address);
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
            }));
        }
    }
    let mut granted = 0u32;
    for task in tasks {
        let r = task.await.unwrap();
        match r.status().as_u16() {
            201 => granted += data(r).await["quantity"].as_u64().unwrap() as u32,
            409 => {
                let code = error_code(r).await;
                assert!(
                    ["SOLD_OUT", "SEAT_UNAVAILABLE", "TICKET_LIMIT"].contains(&code.as_str()),
                    "{code}"
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    // 30 floor tickets and 30 seats exist; demand is 80 + 80 + 160. The floor sells out
    // exactly; the seats sell until no two free seats are side by side (pairs never split).
    let rows: Vec<(i32, i32, i32, i32)> =
        sqlx::query_as("SELECT capacity, available, held, booked FROM event_sections ORDER BY id")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(rows[0], (30, 0, 30, 0), "the floor sold out exactly");
    let (_, seats_left, seats_held, _) = rows[1];
    assert_eq!(seats_left + seats_held, 30);
    assert_eq!(
        granted as i32,
        30 + seats_held,
        "every grant is counted, nothing more"
    );
    let map = data(
        app.get(&format!("/events/{event_id}/sections/{reserved}/seats"))
            .await,
    )
    .await;
    for row in map["rows"].as_array().unwrap() {
        let free: Vec<bool> = row["seats"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["status"] == "AVAILABLE")
            .collect();
        assert!(
            !free.windows(2).any(|w| w[0] && w[1]),
            "a refused pair could have sat together: {row}"
        );
    }
    let active: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(quantity), 0) FROM reservations_effective WHERE status = 'ACTIVE'",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(active, i64::from(granted));
    let doubled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT seat FROM reservations_effective, unnest(seat_ids) seat WHERE status = 'ACTIVE'
                              GROUP BY seat HAVING count(*) > 1) d",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(doubled, 0, "no seat is held twice");
    let over: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT user_id FROM reservations_effective WHERE status = 'ACTIVE'
                              GROUP BY user_id HAVING sum(quantity) > 4) o",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!(over, 0, "nobody is over the limit");
    let seat_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM seats WHERE status = 'RESERVED'")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(seat_rows, i64::from(seats_held));
    let violations = boxoffice_engine::audit::violations(&app.db.pool, event_id)
        .await
        .unwrap();
    assert!(violations.is_empty(), "{violations:#?}");
    app.stop().await.unwrap();
}
