use serde_json::json;

use crate::helpers::{data, error_code, spawn_app};

#[tokio::test]
async fn organizers_create_events_and_customers_cannot() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, customer) = app.user("CUSTOMER").await;
    let venue = app
        .post(
            "/venues",
            Some(&organizer),
            json!({"name": "Hall", "address": "1 Road", "capacity": 500}),
        )
        .await;
    assert_eq!(venue.status(), 201);
    let venue_id = data(venue).await["id"].as_i64().unwrap();
    let body = json!({"eventName": "Gig", "eventDate": "2030-01-01T20:00:00Z", "venueId": venue_id,
                      "saleStartTime": "2029-12-01T10:00:00Z", "holdTtlSeconds": 300, "maxTicketsPerUser": 4});
    let created = app.post("/events", Some(&organizer), body.clone()).await;
    assert_eq!(created.status(), 201);
    let event = data(created).await;
    assert_eq!(event["status"], "DRAFT");
    assert_eq!(event["venueName"], "Hall");

    let refused = app.post("/events", Some(&customer), body.clone()).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(
        app.post(
            "/venues",
            Some(&customer),
            json!({"name": "X", "capacity": 1})
        )
        .await
        .status(),
        403
    );
    assert_eq!(app.get_as("/venues", &customer).await.status(), 403);
    assert_eq!(app.post("/events", None, body.clone()).await.status(), 401);

    let mut bad = body.clone();
    bad["venueId"] = json!(999_999);
    let r = app.post("/events", Some(&organizer), bad).await;
    assert_eq!(r.status(), 422);
    let mut bad = body.clone();
    bad["saleStartTime"] = json!("2031-01-01T00:00:00Z");
    assert_eq!(
        app.post("/events", Some(&organizer), bad).await.status(),
        422
    );
    let mut bad = body;
    bad["holdTtlSeconds"] = json!(-5);
    assert_eq!(
        app.post("/events", Some(&organizer), bad).await.status(),
        422
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_listing_filters_paginates_and_hides_drafts() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let mut ids = Vec::new();
    for day in 1..=7 {
        let body = json!({"eventName": format!("Night {day}"), "eventDate": format!("2030-03-{day:02}T20:00:00Z"),
                          "saleStartTime": "2020-01-01T00:00:00Z"});
        let id = data(app.post("/events", Some(&organizer), body).await).await["id"]
            .as_i64()
            .unwrap();
        ids.push(id);
    }
    // Drafts are not public.
    let listed = app
        .get("/events")
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 0);
    let drafts = app
        .get_as("/events?status=DRAFT", &organizer)
        .await
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(drafts["data"].as_array().unwrap().len(), 7);
    assert_eq!(app.get("/events?status=DRAFT").await.status(), 401);

    // Six go on sale (each needs a section), one is cancelled.
    for id in &ids[..6] {
        let s = app
            .post(
                &format!("/events/{id}/sections"),
                Some(&organizer),
                json!({"name": "GA", "type": "GENERAL", "capacity": 10, "priceCents": 100}),
            )
            .await;
        assert_eq!(s.status(), 201);
        assert_eq!(
            app.patch(
                &format!("/events/{id}"),
                &organizer,
                json!({"status": "ON_SALE"})
            )
            .await
            .status(),
            200
        );
    }
    assert_eq!(
        app.patch(
            &format!("/events/{}", ids[5]),
            &organizer,
            json!({"status": "CANCELLED"})
        )
        .await
        .status(),
        200
    );

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/events?status=ON_SALE&limit=2&cursor={c}"),
            None => "/events?status=ON_SALE&limit=2".to_string(),
        };
        let page = app
            .get(&path)
            .await
            .json::<serde_json::Value>()
            .await
            .unwrap();
        for e in page["data"].as_array().unwrap() {
            assert_eq!(e["status"], "ON_SALE");
            assert!(
                e.get("sections").is_none(),
                "listings carry only the listing's fields"
            );
            seen.push(e["id"].as_i64().unwrap());
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids[..5].to_vec(), "five on sale, by date, each once");

    let ranged = app
        .get("/events?from=2030-03-02T00:00:00Z&to=2030-03-04T00:00:00Z")
        .await;
    let ranged = ranged.json::<serde_json::Value>().await.unwrap();
    assert_eq!(ranged["data"].as_array().unwrap().len(), 2);
    let r = app.get("/events?cursor=%%%").await;
    assert_eq!(r.status(), 400);
    assert_eq!(app.get("/events?limit=abc").await.status(), 400);
    // A page size out of bounds is refused, not silently clamped.
    for limit in [0, 101] {
        let r = app.get(&format!("/events?limit={limit}")).await;
        assert_eq!(r.status(), 400);
        assert_eq!(error_code(r).await, "INVALID_QUERY");
    }
    assert_eq!(
        error_code(app.get("/events?status=SOMETIMES").await).await,
        "INVALID_QUERY"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn event_details_are_cacheable_and_revalidate_with_etag() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (event_id, _, _) = app.event_on_sale(&organizer, 10, 2, 3, 4).await;
    let first = app.get(&format!("/events/{event_id}")).await;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["cache-control"], "public, max-age=60");
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["data"]["sections"].as_array().unwrap().len(), 2);

    let revalidated = app
        .client
        .get(format!("{}/events/{event_id}", app.address))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);
    // If-None-Match compares weakly (RFC 9110): the strong form of the tag matches too.
    let strong = etag.trim_start_matches("W/");
    let revalidated = app
        .client
        .get(format!("{}/events/{event_id}", app.address))
        .header("if-none-match", strong)
        .send()
        .await
        .unwrap();
    assert_eq!(revalidated.status(), 304);

    // A change invalidates the cache: new body, new ETag.
    let renamed = app
        .patch(
            &format!("/events/{event_id}"),
            &organizer,
            json!({"eventName": "Renamed night"}),
        )
        .await;
    assert_eq!(renamed.status(), 200);
    let after = app.get(&format!("/events/{event_id}")).await;
    assert_ne!(after.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(
        after.json::<serde_json::Value>().await.unwrap()["data"]["eventName"],
        "Renamed night"
    );
    assert_eq!(app.get("/events/999999").await.status(), 404);
    assert_eq!(
        error_code(app.get("/events/abc").await).await,
        "INVALID_PATH"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn only_the_events_organizer_updates_it_along_allowed_transitions() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, rival) = app.user("ORGANIZER").await;
    let (_, customer) = app.user("CUSTOMER").await;
    let (_, admin) = app.user("ADMIN").await;
    let (event_id, _, _) = app.event_on_sale(&organizer, 10, 1, 1, 4).await;
    let path = format!("/events/{event_id}");
    assert_eq!(
        app.patch(&path, &rival, json!({"eventName": "Mine now"}))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.patch(&path, &customer, json!({"eventName": "Mine now"}))
            .await
            .status(),
        403
    );
    let back = app
        .patch(&path, &organizer, json!({"status": "DRAFT"}))
        .await;
    assert_eq!(back.status(), 409);
    assert_eq!(error_code(back).await, "INVALID_STATUS_TRANSITION");
    let rules = app
        .patch(
            &path,
            &organizer,
            json!({"holdTtlSeconds": 120, "maxTicketsPerUser": 2}),
        )
        .await;
    let rules = data(rules).await;
    assert_eq!(
        (
            rules["holdTtlSeconds"].as_i64(),
            rules["maxTicketsPerUser"].as_i64()
        ),
        (Some(120), Some(2))
    );
    assert_eq!(
        app.patch(&path, &organizer, json!({"holdTtlSeconds": 1}))
            .await
            .status(),
        422
    );
    assert_eq!(
        app.patch(&path, &organizer, json!({"unknownField": 1}))
            .await
            .status(),
        422
    );
    let done = app
        .patch(&path, &admin, json!({"status": "COMPLETED"}))
        .await;
    assert_eq!(data(done).await["status"], "COMPLETED");
    assert_eq!(
        app.patch("/events/999999", &admin, json!({"eventName": "x"}))
            .await
            .status(),
        404
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn validation_messages_say_what_is_expected_without_rust_internals() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let date_only = app
        .post(
            "/events",
            Some(&organizer),
            json!({"eventName": "X", "eventDate": "2030-06-01", "saleStartTime": "2030-05-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(date_only.status(), 422);
    let message = crate::helpers::error_message(date_only).await;
    assert!(
        message.contains("RFC 3339") && message.contains("eventDate"),
        "{message}"
    );
    assert!(!message.contains("premature"), "{message}");

    let (event_id, general, _) = app.event_on_sale(&organizer, 10, 1, 1, 4).await;
    let wrong_type = app
        .post(
            &format!("/events/{event_id}/reservations"),
            Some(&organizer),
            json!({"type": "GENERAL", "sectionId": general, "quantity": "two"}),
        )
        .await;
    assert_eq!(wrong_type.status(), 422);
    let message = crate::helpers::error_message(wrong_type).await;
    assert!(message.contains("whole number"), "{message}");
    assert!(
        !message.contains("u32") && !message.contains("line 1"),
        "{message}"
    );

    let lower = app.get("/events?status=on_sale").await;
    assert_eq!(lower.status(), 400);
    let message = crate::helpers::error_message(lower).await;
    assert!(
        message.contains("ON_SALE") && message.contains("SOLD_OUT"),
        "{message}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_event_may_sell_without_a_per_buyer_limit() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let created = app
        .post(
            "/events",
            Some(&organizer),
            json!({"eventName": "Box office", "eventDate": "2030-06-01T20:00:00Z",
                   "saleStartTime": "2020-01-01T00:00:00Z", "maxTicketsPerUser": null}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let event = data(created).await;
    assert!(event["maxTicketsPerUser"].is_null(), "{event}");
    let event_id = event["id"].as_i64().unwrap();
    let section = data(
        app.post(
            &format!("/events/{event_id}/sections"),
            Some(&organizer),
            json!({"name": "Floor", "type": "GENERAL", "capacity": 5000, "priceCents": 100}),
        )
        .await,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let open = app
        .patch(
            &format!("/events/{event_id}"),
            &organizer,
            json!({"status": "ON_SALE"}),
        )
        .await;
    assert_eq!(open.status(), 200);
    // One buyer, 1,100 tickets: more than any limit an event may set.
    for _ in 0..11 {
        app.hold(&buyer, event_id, section, 100).await;
    }
    // Setting a limit below what the buyer has is refused; absent keeps the rule as it is.
    let path = format!("/events/{event_id}");
    let too_low = app
        .patch(&path, &organizer, json!({"maxTicketsPerUser": 5}))
        .await;
    assert_eq!(too_low.status(), 409);
    assert_eq!(error_code(too_low).await, "LIMIT_REACHED");
    let renamed = app
        .patch(&path, &organizer, json!({"eventName": "Box office 2"}))
        .await;
    assert!(data(renamed).await["maxTicketsPerUser"].is_null());
    // The rule survives a reload of the event.
    assert!(app.engine.kill_actor(event_id));
    let mut again = None;
    for _ in 0..1500 {
        let r = app
            .post(
                &format!("/events/{event_id}/reservations"),
                Some(&buyer),
                json!({"type": "GENERAL", "sectionId": section, "quantity": 100}),
            )
            .await;
        if r.status() != 503 {
            again = Some(r.status());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(again, Some(reqwest::StatusCode::CREATED));
    // And a limit can be set again, then removed with null.
    let set = app
        .patch(&path, &organizer, json!({"maxTicketsPerUser": 1000}))
        .await;
    assert_eq!(set.status(), 409, "the buyer has 1,200 already");
    let stored: Option<i32> =
        sqlx::query_scalar("SELECT max_tickets_per_user FROM events WHERE id = $1")
            .bind(event_id)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(stored, None);

    // An event with the default limit loses it with null, durably.
    let (limited, _, _) = app.event_on_sale(&organizer, 10, 1, 1, 8).await;
    let lifted = app
        .patch(
            &format!("/events/{limited}"),
            &organizer,
            json!({"maxTicketsPerUser": null}),
        )
        .await;
    assert_eq!(lifted.status(), 200);
    let stored: Option<i32> =
        sqlx::query_scalar("SELECT max_tickets_per_user FROM events WHERE id = $1")
            .bind(limited)
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(stored, None);
    app.stop().await.unwrap();
}
