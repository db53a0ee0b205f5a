//! The authorization matrix: for every route that takes an id, another customer's token and
//! a customer token on organizer routes are refused, and the refused requests change
//! nothing.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{data, spawn_app, TestApp};

/// A fingerprint of everything a request could change. (An event's `owner_epoch` is left
/// out: reading a cold event's inventory loads its actor, which takes ownership — internal
/// bookkeeping, not a change to the event.)
async fn fingerprint(app: &TestApp) -> String {
    sqlx::query_scalar(
        "SELECT md5(
            (SELECT string_agg((e.id, e.event_name, e.event_date, e.venue_id, e.status, e.sale_start_time,
                                e.hold_ttl_seconds, e.max_tickets_per_user, e.available_seats)::text,
                               ',' ORDER BY e.id) FROM events e) ||
            (SELECT COALESCE(string_agg(s::text, ',' ORDER BY s.id), '') FROM event_sections s) ||
            (SELECT COALESCE(string_agg(r::text, ',' ORDER BY r.id), '') FROM reservations r) ||
            (SELECT COALESCE(string_agg(b::text, ',' ORDER BY b.id), '') FROM bookings b) ||
            (SELECT COALESCE(string_agg(d::text, ',' ORDER BY d.id), '') FROM discounts d) ||
            (SELECT COALESCE(string_agg(t::text, ',' ORDER BY t.id), '') FROM seats t))",
    )
    .fetch_one(&app.db.pool)
    .await
    .unwrap()
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> u16 {
    answer(app, method, path, token, body).await.0
}

#[tokio::test]
async fn every_route_with_an_id_refuses_the_wrong_user_and_changes_nothing() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, rival) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (_, stranger) = app.user("CUSTOMER").await;
    let (event_id, general, reserved) = app.event_on_sale(&organizer, 10, 1, 4, 8).await;
    let hold = app.hold(&buyer, event_id, general, 1).await;
    let to_book = app.hold(&buyer, event_id, general, 1).await;
    let booking = data(
        app.post(
            "/bookings",
            Some(&buyer),
            json!({"reservationIds": [to_book]}),
        )
        .await,
    )
    .await;
    let reference = booking["bookingReference"].as_str().unwrap().to_string();
    let draft = data(app.post("/events", Some(&organizer), json!({"eventName": "Draft", "eventDate": "2030-01-01T00:00:00Z",
                                                                  "saleStartTime": "2029-01-01T00:00:00Z"})).await).await["id"].as_i64().unwrap();
    let before = fingerprint(&app).await;

    let organizer_routes: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (
            Method::PATCH,
            format!("/events/{event_id}"),
            Some(json!({"eventName": "Taken over"})),
        ),
        (
            Method::PATCH,
            format!("/events/{event_id}"),
            Some(json!({"status": "CANCELLED"})),
        ),
        (
            Method::POST,
            format!("/events/{event_id}/sections"),
            Some(json!({"name": "X", "type": "GENERAL", "capacity": 5, "priceCents": 1})),
        ),
        (
            Method::POST,
            format!("/events/{event_id}/discounts"),
            Some(json!({"code": "FREE", "percentOff": 100, "maxUses": 99})),
        ),
        (Method::GET, format!("/events/{event_id}/bookings"), None),
        (
            Method::GET,
            format!("/events/{event_id}/bookings/export"),
            None,
        ),
    ];
    for (method, path, body) in &organizer_routes {
        for (who, token) in [("a customer", &buyer), ("another organizer", &rival)] {
            let status = call(&app, method.clone(), path, token, body.clone()).await;
            assert_eq!(status, 403, "{who} on {method} {path}");
        }
    }
    let owner_routes: Vec<(Method, String, Option<serde_json::Value>)> = vec![
        (Method::GET, format!("/reservations/{hold}"), None),
        (Method::DELETE, format!("/reservations/{hold}"), None),
        (
            Method::POST,
            "/bookings".to_string(),
            Some(json!({"reservationIds": [hold]})),
        ),
        (Method::GET, format!("/bookings/{reference}"), None),
        (
            Method::POST,
            format!("/bookings/{reference}/cancel"),
            Some(json!({})),
        ),
        (Method::GET, format!("/events/{draft}"), None),
        (Method::GET, format!("/events/{draft}/inventory"), None),
        (
            Method::PATCH,
            format!("/events/{draft}"),
            Some(json!({"status": "ON_SALE"})),
        ),
    ];
    for (method, path, body) in &owner_routes {
        for (who, token) in [
            ("another customer", &stranger),
            ("another event's organizer", &rival),
        ] {
            let status = call(&app, method.clone(), path, token, body.clone()).await;
            assert!(
                status == 404 || status == 403,
                "{who} on {method} {path}: {status}"
            );
        }
    }
    assert_eq!(
        fingerprint(&app).await,
        before,
        "refused requests changed nothing"
    );

    // And the rightful users still can.
    assert_eq!(
        call(
            &app,
            Method::GET,
            &format!("/reservations/{hold}"),
            &buyer,
            None
        )
        .await,
        200
    );
    assert_eq!(
        call(
            &app,
            Method::GET,
            &format!("/bookings/{reference}"),
            &organizer,
            None
        )
        .await,
        200
    );
    assert_eq!(
        call(
            &app,
            Method::GET,
            &format!("/events/{event_id}/sections/{reserved}/seats"),
            &stranger,
            None
        )
        .await,
        200
    );
    app.stop().await.unwrap();
}

/// Status and error code of a request.
async fn answer(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, String) {
    let mut request = app
        .client
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status, code)
}

#[tokio::test]
async fn a_draft_answers_like_an_event_that_does_not_exist_on_every_route() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, rival) = app.user("ORGANIZER").await;
    let (_, stranger) = app.user("CUSTOMER").await;
    let draft = data(
        app.post(
            "/events",
            Some(&organizer),
            json!({"eventName": "Draft", "eventDate": "2030-01-01T00:00:00Z",
                   "saleStartTime": "2020-01-01T00:00:00Z"}),
        )
        .await,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let section = data(
        app.post(
            &format!("/events/{draft}/sections"),
            Some(&organizer),
            json!({"name": "Floor", "type": "GENERAL", "capacity": 5, "priceCents": 100}),
        )
        .await,
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let missing = draft + 1_000_000;
    let routes = |id: i64| -> Vec<(Method, String, Option<serde_json::Value>)> {
        vec![
            (Method::GET, format!("/events/{id}"), None),
            (Method::GET, format!("/events/{id}/inventory"), None),
            (
                Method::GET,
                format!("/events/{id}/sections/{section}/seats"),
                None,
            ),
            (
                Method::POST,
                format!("/events/{id}/reservations"),
                Some(json!({"type": "GENERAL", "sectionId": section, "quantity": 1})),
            ),
            (
                Method::GET,
                format!("/discounts/validate?code=X&eventId={id}"),
                None,
            ),
            (
                Method::PATCH,
                format!("/events/{id}"),
                Some(json!({"eventName": "Mine"})),
            ),
            (
                Method::POST,
                format!("/events/{id}/sections"),
                Some(json!({"name": "X", "type": "GENERAL", "capacity": 5, "priceCents": 1})),
            ),
            (
                Method::POST,
                format!("/events/{id}/discounts"),
                Some(json!({"code": "FREE", "percentOff": 100, "maxUses": 9})),
            ),
            (Method::GET, format!("/events/{id}/bookings"), None),
            (Method::GET, format!("/events/{id}/bookings/export"), None),
        ]
    };
    for ((method, path, body), (_, missing_path, _)) in
        routes(draft).into_iter().zip(routes(missing))
    {
        for (who, token) in [("a customer", &stranger), ("another organizer", &rival)] {
            let on_draft = answer(&app, method.clone(), &path, token, body.clone()).await;
            let on_missing = answer(&app, method.clone(), &missing_path, token, body.clone()).await;
            assert_eq!(on_draft, on_missing, "{who} on {method} {path}");
            assert!(on_draft.0 >= 400, "{who} on {method} {path}: {on_draft:?}");
        }
    }
    // Its organizer is told why a hold is refused.
    let own = answer(
        &app,
        Method::POST,
        &format!("/events/{draft}/reservations"),
        &organizer,
        Some(json!({"type": "GENERAL", "sectionId": section, "quantity": 1})),
    )
    .await;
    assert_eq!(own, (409, "SALE_NOT_OPEN".to_string()));
    app.stop().await.unwrap();
}
