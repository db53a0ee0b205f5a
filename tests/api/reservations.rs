use serde_json::json;

use crate::helpers::{data, error_code, spawn_app, spawn_app_with, test_settings};

#[tokio::test]
async fn the_briefs_load_test_flow_works_as_written() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (event_id, general, _) = app.event_on_sale(&organizer, 100, 1, 1, 8).await;
    boxoffice::users::upsert(
        &app.db.pool,
        "test@example.com",
        "password",
        "CUSTOMER",
        "",
        "",
    )
    .await
    .unwrap();

    let login = app
        .post(
            "/auth/login",
            None,
            json!({"email": "test@example.com", "password": "password"}),
        )
        .await;
    assert_eq!(login.status(), 200);
    let token = data(login).await["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    let events = app.get_as("/events", &token).await;
    assert_eq!(events.status(), 200);
    let events: serde_json::Value = events.json().await.unwrap();
    assert_eq!(events["data"][0]["id"].as_i64(), Some(event_id));
    let held = app
        .post(
            &format!("/events/{event_id}/reservations"),
            Some(&token),
            json!({"type": "GENERAL", "sectionId": general, "quantity": 2}),
        )
        .await;
    assert_eq!(held.status(), 201);
    let hold = data(held).await;
    assert_eq!(hold["quantity"], 2);
    assert_eq!(hold["status"], "ACTIVE");
    assert!(hold["expiresAt"].is_string());
    // Durable before the answer: the row is there.
    let stored: String =
        sqlx::query_scalar("SELECT status FROM reservations_effective WHERE id = $1")
            .bind(hold["id"].as_i64().unwrap())
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(stored, "ACTIVE");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn seats_best_available_and_every_refusal_code() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (_, other) = app.user("CUSTOMER").await;
    let (event_id, general, reserved) = app.event_on_sale(&organizer, 3, 2, 5, 4).await;
    let path = format!("/events/{event_id}/reservations");

    let map = data(
        app.get(&format!("/events/{event_id}/sections/{reserved}/seats"))
            .await,
    )
    .await;
    let seat = |row: usize, n: usize| map["rows"][row]["seats"][n]["id"].as_i64().unwrap();
    let seats = app
        .post(
            &path,
            Some(&buyer),
            json!({"type": "SEATS", "seatIds": [seat(0, 0), seat(0, 1)]}),
        )
        .await;
    assert_eq!(seats.status(), 201);
    let taken = app
        .post(
            &path,
            Some(&other),
            json!({"type": "SEATS", "seatIds": [seat(0, 1)]}),
        )
        .await;
    assert_eq!(taken.status(), 409);
    assert_eq!(error_code(taken).await, "SEAT_UNAVAILABLE");

    let best = app
        .post(
            &path,
            Some(&other),
            json!({"type": "BEST_AVAILABLE", "sectionId": reserved, "quantity": 3}),
        )
        .await;
    assert_eq!(best.status(), 201);
    let best = data(best).await;
    let ids: Vec<i64> = best["seatIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![seat(0, 2), seat(0, 3), seat(0, 4)],
        "the rest of row A, together"
    );

    let limit = app
        .post(
            &path,
            Some(&buyer),
            json!({"type": "GENERAL", "sectionId": general, "quantity": 3}),
        )
        .await;
    assert_eq!(limit.status(), 409);
    assert_eq!(error_code(limit).await, "TICKET_LIMIT");
    let (_, third) = app.user("CUSTOMER").await;
    let sold = app
        .post(
            &path,
            Some(&third),
            json!({"type": "GENERAL", "sectionId": general, "quantity": 4}),
        )
        .await;
    assert_eq!(sold.status(), 409);
    assert_eq!(error_code(sold).await, "SOLD_OUT");
    let wrong_kind = app
        .post(
            &path,
            Some(&third),
            json!({"type": "GENERAL", "sectionId": reserved, "quantity": 1}),
        )
        .await;
    assert_eq!(wrong_kind.status(), 409);
    assert_eq!(error_code(wrong_kind).await, "WRONG_SECTION_TYPE");
    let unknown_section = app
        .post(
            &path,
            Some(&third),
            json!({"type": "GENERAL", "sectionId": 987654, "quantity": 1}),
        )
        .await;
    assert_eq!(unknown_section.status(), 404);
    assert_eq!(error_code(unknown_section).await, "SECTION_NOT_FOUND");

    // Hostile and malformed input: 4xx with a stable code, nothing created.
    for (body, status, code) in [
        (
            json!({"type": "GENERAL", "sectionId": general, "quantity": -1}),
            422,
            "VALIDATION_FAILED",
        ),
        (
            json!({"type": "GENERAL", "sectionId": general, "quantity": 0}),
            422,
            "VALIDATION_FAILED",
        ),
        (
            json!({"type": "GENERAL", "sectionId": general, "quantity": 4_000_000_000u64}),
            422,
            "VALIDATION_FAILED",
        ),
        (
            json!({"type": "GENERAL", "sectionId": general, "quantity": 1_000_000}),
            422,
            "VALIDATION_FAILED",
        ),
        (
            json!({"type": "GENERAL", "sectionId": "one", "quantity": 1}),
            422,
            "VALIDATION_FAILED",
        ),
        (
            json!({"type": "SEATS", "seatIds": []}),
            422,
            "VALIDATION_FAILED",
        ),
        (json!({"type": "TELEPORT"}), 422, "VALIDATION_FAILED"),
        (json!([1, 2, 3]), 422, "VALIDATION_FAILED"),
    ] {
        let r = app.post(&path, Some(&third), body.clone()).await;
        assert_eq!(r.status(), status, "{body}");
        assert_eq!(error_code(r).await, code, "{body}");
    }
    let huge = app.post_oversized(&path, &third).await;
    // Refused in the API's error body, whatever layer sees it first.
    assert_eq!(huge.status(), 413);
    assert_eq!(error_code(huge).await, "PAYLOAD_TOO_LARGE");
    let unknown_event = app
        .post(
            "/events/777777/reservations",
            Some(&third),
            json!({"type": "GENERAL", "sectionId": 1, "quantity": 1}),
        )
        .await;
    assert_eq!(unknown_event.status(), 404);
    assert_eq!(
        app.post(
            &path,
            None,
            json!({"type": "GENERAL", "sectionId": general, "quantity": 1})
        )
        .await
        .status(),
        401
    );
    let holds: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(holds, 2, "refused requests created nothing");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_sale_opens_at_its_start_time() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (event_id, general, _) = app.event_on_sale(&organizer, 10, 1, 1, 4).await;
    let later = app
        .patch(
            &format!("/events/{event_id}"),
            &organizer,
            json!({"saleStartTime": "2029-12-31T00:00:00Z"}),
        )
        .await;
    assert_eq!(later.status(), 200);
    let r = app
        .post(
            &format!("/events/{event_id}/reservations"),
            Some(&buyer),
            json!({"type": "GENERAL", "sectionId": general, "quantity": 1}),
        )
        .await;
    assert_eq!(r.status(), 409);
    assert_eq!(error_code(r).await, "SALE_NOT_OPEN");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_idempotent_retry_replays_the_first_answer_and_creates_nothing() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (event_id, general, _) = app.event_on_sale(&organizer, 10, 1, 1, 8).await;
    let path = format!("/events/{event_id}/reservations");
    let body = json!({"type": "GENERAL", "sectionId": general, "quantity": 2});
    let first = app
        .post_keyed(&path, &buyer, "retry-me-1", body.clone())
        .await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = data(first).await;
    // Concurrent retries, as a client with a flaky network would send them.
    let (a, b) = tokio::join!(
        app.post_keyed(&path, &buyer, "retry-me-1", body.clone()),
        app.post_keyed(&path, &buyer, "retry-me-1", body.clone())
    );
    for r in [a, b] {
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["idempotent-replayed"], "true");
        assert_eq!(data(r).await, first);
    }
    let reused = app
        .post_keyed(
            &path,
            &buyer,
            "retry-me-1",
            json!({"type": "GENERAL", "sectionId": general, "quantity": 1}),
        )
        .await;
    assert_eq!(reused.status(), 422);
    assert_eq!(error_code(reused).await, "IDEMPOTENCY_KEY_REUSED");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    let held: i32 = sqlx::query_scalar("SELECT held FROM event_sections WHERE id = $1")
        .bind(general)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(held, 2);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn holds_are_listed_read_and_released_by_their_owner_only() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, rival) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (_, other) = app.user("CUSTOMER").await;
    let (event_id, general, _) = app.event_on_sale(&organizer, 10, 1, 1, 8).await;
    let id = app.hold(&buyer, event_id, general, 3).await;
    let mine = data(app.get_as("/reservations", &buyer).await).await;
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(
        data(app.get_as("/reservations", &other).await)
            .await
            .as_array()
            .unwrap()
            .len(),
        0
    );

    let path = format!("/reservations/{id}");
    assert_eq!(app.get_as(&path, &buyer).await.status(), 200);
    assert_eq!(
        app.get_as(&path, &organizer).await.status(),
        200,
        "the event's organizer sees it"
    );
    assert_eq!(app.get_as(&path, &other).await.status(), 404);
    assert_eq!(app.get_as(&path, &rival).await.status(), 404);
    assert_eq!(app.delete_as(&path, &other).await.status(), 404);
    assert_eq!(app.delete_as(&path, &rival).await.status(), 404);
    let still: String =
        sqlx::query_scalar("SELECT status FROM reservations_effective WHERE id = $1")
            .bind(id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(still, "ACTIVE", "refused requests changed nothing");

    let released = app.delete_as(&path, &buyer).await;
    assert_eq!(released.status(), 200);
    assert_eq!(data(released).await["status"], "CANCELLED");
    let again = app.delete_as(&path, &buyer).await;
    assert_eq!(again.status(), 409);
    assert_eq!(error_code(again).await, "RESERVATION_NOT_ACTIVE");
    let inventory = data(app.get(&format!("/events/{event_id}/inventory")).await).await;
    assert_eq!(inventory["sections"][0]["available"], 10);
    assert_eq!(
        app.delete_as("/reservations/99999999", &buyer)
            .await
            .status(),
        404
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn one_situation_gets_one_code_on_every_route() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (_, stranger) = app.user("CUSTOMER").await;
    let (event_id, general, _) = app.event_on_sale(&organizer, 10, 1, 1, 4).await;
    let hold = app.hold(&buyer, event_id, general, 1).await;
    let to_book = app.hold(&buyer, event_id, general, 1).await;
    let booked = app
        .post(
            "/bookings",
            Some(&buyer),
            json!({"reservationIds": [to_book]}),
        )
        .await;
    let reference = data(booked).await["bookingReference"]
        .as_str()
        .unwrap()
        .to_string();

    // Someone else's hold: not found, by one code, whatever is tried.
    let hold_path = format!("/reservations/{hold}");
    for r in [
        app.get_as(&hold_path, &stranger).await,
        app.delete_as(&hold_path, &stranger).await,
        app.post(
            "/bookings",
            Some(&stranger),
            json!({"reservationIds": [hold]}),
        )
        .await,
    ] {
        assert_eq!(r.status(), 404);
        assert_eq!(error_code(r).await, "RESERVATION_NOT_FOUND");
    }
    // Someone else's booking, or none: likewise.
    for r in [
        app.get_as(&format!("/bookings/{reference}"), &stranger)
            .await,
        app.post(
            &format!("/bookings/{reference}/cancel"),
            Some(&stranger),
            json!({}),
        )
        .await,
        app.get_as("/bookings/BX-0000000000000000", &buyer).await,
    ] {
        assert_eq!(r.status(), 404);
        assert_eq!(error_code(r).await, "BOOKING_NOT_FOUND");
    }
    // An event that does not exist.
    for r in [
        app.get("/events/999999").await,
        app.get("/events/999999/inventory").await,
        app.post(
            "/events/999999/reservations",
            Some(&buyer),
            json!({"type": "GENERAL", "sectionId": general, "quantity": 1}),
        )
        .await,
    ] {
        assert_eq!(r.status(), 404);
        assert_eq!(error_code(r).await, "EVENT_NOT_FOUND");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn refusals_name_the_item_at_fault() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (_, other) = app.user("CUSTOMER").await;
    let (event_id, general, reserved) = app.event_on_sale(&organizer, 10, 1, 4, 3).await;
    let path = format!("/events/{event_id}/reservations");
    let map = data(
        app.get(&format!("/events/{event_id}/sections/{reserved}/seats"))
            .await,
    )
    .await;
    let seat = |i: usize| map["rows"][0]["seats"][i]["id"].as_i64().unwrap();
    let held = app
        .post(
            &path,
            Some(&buyer),
            json!({"type": "SEATS", "seatIds": [seat(1)]}),
        )
        .await;
    assert_eq!(held.status(), 201);

    // Which seats are taken.
    let taken = app
        .post(
            &path,
            Some(&other),
            json!({"type": "SEATS", "seatIds": [seat(0), seat(1)]}),
        )
        .await;
    assert_eq!(taken.status(), 409);
    let message = crate::helpers::error_message(taken).await;
    assert!(message.contains(&seat(1).to_string()), "{message}");
    assert!(!message.contains(&seat(0).to_string()), "{message}");

    // The buyer's count against the limit (3): one held, three more asked.
    let over = app
        .post(
            &path,
            Some(&buyer),
            json!({"type": "GENERAL", "sectionId": general, "quantity": 3}),
        )
        .await;
    assert_eq!(over.status(), 409);
    let message = crate::helpers::error_message(over).await;
    assert!(
        message.contains("3 tickets")
            && message.contains("you have 1")
            && message.contains("3 more"),
        "{message}"
    );

    // Which reservation is unknown.
    let unknown = app
        .post(
            "/bookings",
            Some(&buyer),
            json!({"reservationIds": [987654]}),
        )
        .await;
    assert_eq!(unknown.status(), 404);
    assert!(crate::helpers::error_message(unknown)
        .await
        .contains("987654"));
    app.stop().await.unwrap();
}

/// A hold that lapses writes no row, yet every route reads it as expired: its status says
/// EXPIRED, it leaves the buyer's holds, it can be neither released nor booked, and its
/// tickets are on sale again. Real time (the shortest lifetime, 10 s); the test polls
/// until the engine has expired it, and fails only if that never happens.
#[tokio::test]
async fn a_lapsed_hold_reads_expired_everywhere_though_no_row_says_so() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (event_id, general, _) = app.event_on_sale(&organizer, 10, 1, 1, 8).await;
    let rules = app
        .patch(
            &format!("/events/{event_id}"),
            &organizer,
            json!({"holdTtlSeconds": 10}),
        )
        .await;
    assert_eq!(rules.status(), 200);
    let id = app.hold(&buyer, event_id, general, 3).await;
    let path = format!("/reservations/{id}");
    assert_eq!(
        data(app.get_as(&path, &buyer).await).await["status"],
        "ACTIVE"
    );
    let inventory = format!("/events/{event_id}/inventory");
    assert_eq!(
        data(app.get(&inventory).await).await["sections"][0]["held"],
        3
    );

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let hold = data(app.get_as(&path, &buyer).await).await;
        if hold["status"] == "EXPIRED" {
            break;
        }
        assert_eq!(hold["status"], "ACTIVE");
        assert!(
            std::time::Instant::now() < deadline,
            "not expired after 60 s: {hold}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }

    // The row was never rewritten: the event's watermark makes it EXPIRED.
    let stored: String = sqlx::query_scalar("SELECT status FROM reservations WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, "ACTIVE");
    let mine = data(app.get_as("/reservations", &buyer).await).await;
    assert!(
        mine.as_array().unwrap().iter().all(|h| h["id"] != id),
        "a lapsed hold is not among the buyer's holds: {mine}"
    );
    let release = app.delete_as(&path, &buyer).await;
    assert_eq!(release.status(), 409);
    assert_eq!(error_code(release).await, "RESERVATION_NOT_ACTIVE");
    let booking = app
        .post("/bookings", Some(&buyer), json!({"reservationIds": [id]}))
        .await;
    assert_eq!(booking.status(), 409);
    let message = crate::helpers::error_message(booking).await;
    assert!(message.contains("EXPIRED"), "{message}");
    let inventory = data(app.get(&inventory).await).await;
    assert_eq!(inventory["sections"][0]["held"], 0);
    assert_eq!(inventory["sections"][0]["available"], 10);
    app.stop().await.unwrap();
}

/// The background sweep writes a lapsed hold down as EXPIRED: the stored row comes to say
/// what every reader already read, and nothing a buyer reads changes. Real time (the
/// shortest TTL, 10 s); every wait is for a state, bounded by a minute.
#[tokio::test]
async fn the_sweep_writes_a_lapsed_hold_down_and_nothing_a_buyer_reads_changes() {
    let db = boxoffice_engine::testdb::TestDb::create().await;
    let mut settings = test_settings(&db);
    settings.expiry_sweep_interval_seconds = 1;
    let app = spawn_app_with(db, settings).await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (event_id, general, _) = app.event_on_sale(&organizer, 10, 1, 1, 8).await;
    let rules = app
        .patch(
            &format!("/events/{event_id}"),
            &organizer,
            json!({"holdTtlSeconds": 10}),
        )
        .await;
    assert_eq!(rules.status(), 200);
    let lapsing = app.hold(&buyer, event_id, general, 3).await;
    let released = app.hold(&buyer, event_id, general, 1).await;
    let release = app
        .delete_as(&format!("/reservations/{released}"), &buyer)
        .await;
    assert_eq!(release.status(), 200);

    let path = format!("/reservations/{lapsing}");
    let stored = |id: i64| {
        let pool = app.db.pool.clone();
        async move {
            sqlx::query_as::<_, (String, bool)>(
                "SELECT status, updated_at = expires_at FROM reservations WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut read_expired = None;
    loop {
        let hold = data(app.get_as(&path, &buyer).await).await;
        let (status, _) = stored(lapsing).await;
        if hold["status"] == "EXPIRED" && read_expired.is_none() && status == "ACTIVE" {
            read_expired = Some(hold.clone());
        }
        if status == "EXPIRED" {
            // Once written down, a buyer reads exactly what was read before, if it was read
            // before the sweep came (the sweep runs every second: usually, not always).
            if let Some(before) = &read_expired {
                assert_eq!(&hold, before, "the sweep changed what a buyer reads");
            }
            assert_eq!(hold["status"], "EXPIRED");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not written down as EXPIRED after 60 s: {hold}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(stored(lapsing).await, ("EXPIRED".into(), true));
    assert_eq!(
        stored(released).await.0,
        "CANCELLED",
        "a released hold stays so"
    );
    let inventory = data(app.get(&format!("/events/{event_id}/inventory")).await).await;
    assert_eq!(inventory["sections"][0]["held"], 0);
    assert_eq!(inventory["sections"][0]["available"], 10);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("boxoffice_expiry_swept_rows_total"),
        "the sweep is counted"
    );
    app.stop().await.unwrap();
}
