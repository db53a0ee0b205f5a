use std::time::Duration;

use serde_json::json;

use crate::helpers::{data, error_code, spawn_app};

#[tokio::test]
async fn confirming_holds_makes_a_priced_booking_with_its_jobs_queued() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (event_id, general, reserved) = app.event_on_sale(&organizer, 10, 2, 4, 8).await;
    let discount = app
        .post(
            &format!("/events/{event_id}/discounts"),
            Some(&organizer),
            json!({"code": "early", "percentOff": 10, "maxUses": 5}),
        )
        .await;
    assert_eq!(discount.status(), 201);
    let a = app.hold(&buyer, event_id, general, 2).await;
    let b = data(
        app.post(
            &format!("/events/{event_id}/reservations"),
            Some(&buyer),
            json!({"type": "BEST_AVAILABLE", "sectionId": reserved, "quantity": 2}),
        )
        .await,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let booked = app
        .post(
            "/bookings",
            Some(&buyer),
            json!({"reservationIds": [a, b], "discountCode": "EARLY"}),
        )
        .await;
    assert_eq!(booked.status(), 201);
    let booking = data(booked).await;
    assert_eq!(booking["subtotalCents"], 2 * 5000 + 2 * 8000);
    assert_eq!(booking["discountCents"], 2600);
    assert_eq!(booking["totalCents"], 23400);
    assert_eq!(booking["status"], "CONFIRMED");
    assert_eq!(booking["items"].as_array().unwrap().len(), 2);
    let reference = booking["bookingReference"].as_str().unwrap().to_string();
    assert!(reference.starts_with("BX-") && reference.len() == 19);

    // The same transaction queued its confirmation and analytics jobs; the worker delivers
    // them (to the log: no webhook is configured).
    let jobs: Vec<String> = sqlx::query_scalar("SELECT kind FROM outbox ORDER BY kind")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(
        jobs,
        vec!["analytics.booking_confirmed", "booking.confirmed"]
    );
    let mut delivered = 0;
    // The worker polls every 500 ms; a busy machine may take longer: wait up to 30 s.
    for _ in 0..600 {
        delivered =
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox WHERE status = 'DELIVERED'")
                .fetch_one(&app.db.pool)
                .await
                .unwrap();
        if delivered == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(delivered, 2, "the worker delivered both jobs");

    // The holds are confirmed: they cannot be confirmed again or released.
    let again = app
        .post("/bookings", Some(&buyer), json!({"reservationIds": [a]}))
        .await;
    assert_eq!(again.status(), 409);
    assert_eq!(error_code(again).await, "RESERVATION_NOT_ACTIVE");
    assert_eq!(
        app.delete_as(&format!("/reservations/{a}"), &buyer)
            .await
            .status(),
        409
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_idempotent_confirm_is_booked_once() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (event_id, general, _) = app.event_on_sale(&organizer, 10, 1, 1, 8).await;
    let a = app.hold(&buyer, event_id, general, 2).await;
    let body = json!({"reservationIds": [a]});
    let (first, second) = tokio::join!(
        app.post_keyed("/bookings", &buyer, "pay-1", body.clone()),
        app.post_keyed("/bookings", &buyer, "pay-1", body.clone())
    );
    assert_eq!(
        (first.status(), second.status()),
        (reqwest::StatusCode::CREATED, reqwest::StatusCode::CREATED)
    );
    let (first, second) = (data(first).await, data(second).await);
    assert_eq!(first["bookingReference"], second["bookingReference"]);
    let third = app.post_keyed("/bookings", &buyer, "pay-1", body).await;
    assert_eq!(third.headers()["idempotent-replayed"], "true");
    assert_eq!(
        data(third).await["bookingReference"],
        first["bookingReference"]
    );
    let bookings: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(bookings, 1);
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 2, "jobs queued once");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bookings_are_read_listed_cancelled_and_exported_by_those_allowed() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, rival) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (_, other) = app.user("CUSTOMER").await;
    let (event_id, general, _) = app.event_on_sale(&organizer, 50, 1, 1, 8).await;
    let mut references = Vec::new();
    for _ in 0..3 {
        let h = app.hold(&buyer, event_id, general, 1).await;
        let b = data(
            app.post("/bookings", Some(&buyer), json!({"reservationIds": [h]}))
                .await,
        )
        .await;
        references.push(b["bookingReference"].as_str().unwrap().to_string());
    }
    // Mine, newest first, two pages.
    let page1: serde_json::Value = app
        .get_as("/bookings?limit=2", &buyer)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page1["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        page1["data"][0]["bookingReference"].as_str(),
        Some(references[2].as_str())
    );
    let cursor = page1["nextCursor"].as_str().unwrap();
    let page2: serde_json::Value = app
        .get_as(&format!("/bookings?limit=2&cursor={cursor}"), &buyer)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page2["data"].as_array().unwrap().len(), 1);
    assert!(page2.get("nextCursor").is_none());
    let others: serde_json::Value = app.get_as("/bookings", &other).await.json().await.unwrap();
    assert_eq!(others["data"].as_array().unwrap().len(), 0);

    let one = format!("/bookings/{}", references[0]);
    assert_eq!(app.get_as(&one, &buyer).await.status(), 200);
    assert_eq!(app.get_as(&one, &organizer).await.status(), 200);
    assert_eq!(app.get_as(&one, &other).await.status(), 404);
    assert_eq!(app.get_as(&one, &rival).await.status(), 404);
    assert_eq!(app.get_as("/bookings/BX-NOPE", &buyer).await.status(), 404);

    let cancel = format!("{one}/cancel");
    assert_eq!(
        app.post(&cancel, Some(&other), json!({})).await.status(),
        404
    );
    let status: String =
        sqlx::query_scalar("SELECT status FROM bookings WHERE booking_reference = $1")
            .bind(&references[0])
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(status, "CONFIRMED", "the refused cancel changed nothing");
    let cancelled = app.post(&cancel, Some(&buyer), json!({})).await;
    assert_eq!(cancelled.status(), 200);
    assert_eq!(data(cancelled).await["status"], "CANCELLED");
    let twice = app.post(&cancel, Some(&buyer), json!({})).await;
    assert_eq!(twice.status(), 409);
    assert_eq!(error_code(twice).await, "BOOKING_NOT_ACTIVE");
    let inventory = data(app.get(&format!("/events/{event_id}/inventory")).await).await;
    assert_eq!(
        inventory["sections"][0]["booked"], 2,
        "the cancelled ticket went back on sale"
    );

    // The organizer's views.
    let listed: serde_json::Value = app
        .get_as(&format!("/events/{event_id}/bookings?limit=2"), &organizer)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    assert!(listed["nextCursor"].is_string());
    // The organizer sees who bought; a buyer's own views do not repeat it.
    let buyer_email = listed["data"][0]["buyer"]["email"].as_str().unwrap();
    assert!(buyer_email.contains('@'), "{listed}");
    let mine: serde_json::Value = app.get_as("/bookings", &buyer).await.json().await.unwrap();
    assert!(mine["data"][0].get("buyer").is_none());
    assert_eq!(
        app.get_as(&format!("/events/{event_id}/bookings"), &rival)
            .await
            .status(),
        403
    );
    assert_eq!(
        app.get_as(&format!("/events/{event_id}/bookings"), &buyer)
            .await
            .status(),
        403
    );
    let csv = app
        .get_as(&format!("/events/{event_id}/bookings/export"), &organizer)
        .await;
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let csv = csv.text().await.unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 4, "header and three bookings:\n{csv}");
    assert!(lines[0].starts_with("booking_reference,buyer_email,status"));
    assert!(csv.contains("CANCELLED"));
    assert_eq!(
        app.get_as(&format!("/events/{event_id}/bookings/export"), &buyer)
            .await
            .status(),
        403
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_booking_needs_active_holds_of_one_event_owned_by_the_buyer() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (_, other) = app.user("CUSTOMER").await;
    let (first_event, first_general, _) = app.event_on_sale(&organizer, 10, 1, 1, 8).await;
    let (second_event, second_general, _) = app.event_on_sale(&organizer, 10, 1, 1, 8).await;
    let a = app.hold(&buyer, first_event, first_general, 1).await;
    let b = app.hold(&buyer, second_event, second_general, 1).await;
    let mixed = app
        .post("/bookings", Some(&buyer), json!({"reservationIds": [a, b]}))
        .await;
    assert_eq!(mixed.status(), 422);
    let foreign = app
        .post("/bookings", Some(&other), json!({"reservationIds": [a]}))
        .await;
    assert_eq!(foreign.status(), 404);
    assert_eq!(error_code(foreign).await, "RESERVATION_NOT_FOUND");
    assert_eq!(
        app.post("/bookings", Some(&buyer), json!({"reservationIds": []}))
            .await
            .status(),
        422
    );
    assert_eq!(
        app.post(
            "/bookings",
            Some(&buyer),
            json!({"reservationIds": [424242]})
        )
        .await
        .status(),
        404
    );
    let bad_code = app
        .post(
            "/bookings",
            Some(&buyer),
            json!({"reservationIds": [a], "discountCode": "NOPE"}),
        )
        .await;
    assert_eq!(bad_code.status(), 404);
    assert_eq!(error_code(bad_code).await, "DISCOUNT_NOT_FOUND");
    let bookings: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(bookings, 0);
    app.stop().await.unwrap();
}
