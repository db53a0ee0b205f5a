use serde_json::json;

use crate::helpers::{data, error_code, spawn_app};

#[tokio::test]
async fn sections_are_created_and_inventory_and_seat_maps_read_from_the_engine() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, rival) = app.user("ORGANIZER").await;
    let (event_id, general, reserved) = app.event_on_sale(&organizer, 50, 3, 4, 8).await;

    let inventory = data(app.get(&format!("/events/{event_id}/inventory")).await).await;
    assert_eq!(inventory["capacity"], 62);
    assert_eq!(inventory["available"], 62);
    let sections = inventory["sections"].as_array().unwrap();
    assert_eq!(sections[0]["id"].as_i64(), Some(general));
    assert_eq!(sections[1]["type"], "RESERVED");

    let map = data(
        app.get(&format!("/events/{event_id}/sections/{reserved}/seats"))
            .await,
    )
    .await;
    let rows = map["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["label"], "A");
    assert_eq!(rows[2]["seats"].as_array().unwrap().len(), 4);
    assert_eq!(rows[0]["seats"][0]["status"], "AVAILABLE");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM seats WHERE section_id = $1")
        .bind(reserved)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, 12, "seats were generated in PostgreSQL");
    assert_eq!(
        app.get(&format!("/events/{event_id}/sections/{general}/seats"))
            .await
            .status(),
        404
    );

    let path = format!("/events/{event_id}/sections");
    let dup = app
        .post(
            &path,
            Some(&organizer),
            json!({"name": "Floor", "type": "GENERAL", "capacity": 5, "priceCents": 1}),
        )
        .await;
    assert_eq!(dup.status(), 409);
    assert_eq!(error_code(dup).await, "SECTION_EXISTS");
    for bad in [
        json!({"name": "Big", "type": "RESERVED", "rows": 1000, "seatsPerRow": 1000, "priceCents": 1}),
        json!({"name": "Neg", "type": "GENERAL", "capacity": -1, "priceCents": 1}),
        json!({"name": "Zero", "type": "GENERAL", "capacity": 0, "priceCents": 1}),
        json!({"name": "Odd", "type": "BALCONY", "capacity": 5, "priceCents": 1}),
        json!({"name": "Free", "type": "GENERAL", "capacity": 5, "priceCents": -100}),
    ] {
        let r = app.post(&path, Some(&organizer), bad.clone()).await;
        assert_eq!(r.status(), 422, "{bad}");
    }
    let other = app
        .post(
            &path,
            Some(&rival),
            json!({"name": "Mine", "type": "GENERAL", "capacity": 5, "priceCents": 1}),
        )
        .await;
    assert_eq!(other.status(), 403);
    assert_eq!(app.get("/events/424242/inventory").await.status(), 404);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_draft_events_inventory_is_private() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, customer) = app.user("CUSTOMER").await;
    let body = json!({"eventName": "Secret", "eventDate": "2030-01-01T00:00:00Z", "saleStartTime": "2029-01-01T00:00:00Z"});
    let id = data(app.post("/events", Some(&organizer), body).await).await["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        app.get(&format!("/events/{id}/inventory")).await.status(),
        404
    );
    assert_eq!(
        app.get_as(&format!("/events/{id}/inventory"), &customer)
            .await
            .status(),
        404
    );
    assert_eq!(app.get(&format!("/events/{id}")).await.status(), 404);
    assert_eq!(
        app.get_as(&format!("/events/{id}/inventory"), &organizer)
            .await
            .status(),
        200
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn sections_may_not_seat_more_than_the_venue_even_when_added_at_once() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let venue = data(
        app.post(
            "/venues",
            Some(&organizer),
            json!({"name": "Small Hall", "capacity": 100}),
        )
        .await,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let event = data(
        app.post(
            "/events",
            Some(&organizer),
            json!({"eventName": "Intimate", "eventDate": "2030-06-01T20:00:00Z",
                   "saleStartTime": "2030-05-01T00:00:00Z", "venueId": venue}),
        )
        .await,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let path = format!("/events/{event}/sections");
    let general = |name: &str, capacity: u32| json!({"name": name, "type": "GENERAL", "capacity": capacity, "priceCents": 100});
    // Two sections of 60 at once: the venue holds 100, so exactly one of them fits.
    let (a, b) = tokio::join!(
        app.post(&path, Some(&organizer), general("A", 60)),
        app.post(&path, Some(&organizer), general("B", 60)),
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409]);
    let refused = if a.status() == 409 { a } else { b };
    let message = crate::helpers::error_message(refused).await;
    assert!(
        message.contains("120") && message.contains("100"),
        "{message}"
    );
    // 60 + 4 × 10 = 100 fits exactly.
    let seated = app
        .post(
            &path,
            Some(&organizer),
            json!({"name": "Stalls", "type": "RESERVED", "rows": 4, "seatsPerRow": 10, "priceCents": 100}),
        )
        .await;
    assert_eq!(seated.status(), 201);
    let more = app.post(&path, Some(&organizer), general("C", 1)).await;
    assert_eq!(more.status(), 409);
    assert_eq!(crate::helpers::error_code(more).await, "LIMIT_REACHED");
    app.stop().await.unwrap();
}
