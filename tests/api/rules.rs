//! The rules the OpenAPI document states about single fields are the ones the handlers
//! apply, at their edges: what the schema calls valid is accepted, what it calls invalid is
//! refused with 422 / 400 and a code, and state-dependent refusals are 409 (not 422: the
//! request itself was well formed). schemathesis (`.ci/schemathesis.sh`) checks the same
//! from the document's side with generated requests; these pin the cases it found.

use serde_json::json;

use crate::helpers::{data, error_code, spawn_app};

#[tokio::test]
async fn whole_numbers_written_as_floats_are_whole_numbers_and_fractions_are_refused() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (event_id, general, _) = app.event_on_sale(&organizer, 100, 2, 5, 8).await;
    let path = format!("/events/{event_id}/reservations");

    let whole = app
        .post(
            &path,
            Some(&buyer),
            json!({"type": "GENERAL", "sectionId": general as f64, "quantity": 2.0}),
        )
        .await;
    assert_eq!(whole.status(), 201);
    assert_eq!(data(whole).await["quantity"], 2);

    let fraction = app
        .post(
            &path,
            Some(&buyer),
            json!({"type": "GENERAL", "sectionId": general, "quantity": 2.5}),
        )
        .await;
    assert_eq!(fraction.status(), 422);
    assert_eq!(error_code(fraction).await, "VALIDATION_FAILED");
}

#[tokio::test]
async fn every_cursor_of_the_documented_form_is_accepted_and_no_other() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    for listing in ["/events", "/venues", "/bookings"] {
        // Any 22 characters of the base64url alphabet name a position, even one past
        // every row or before the first.
        for cursor in [
            "AAAAAAAAAAAAAAAAAAAAAA",
            "__________________________",
            "zZ9-_aZ09azAZ-_09azAZx",
        ] {
            let cursor = &cursor[..22];
            let page = app
                .get_as(&format!("{listing}?cursor={cursor}"), &organizer)
                .await;
            assert_eq!(page.status(), 200, "{listing} {cursor}");
        }
        for cursor in [
            "AAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAA%3D%3D",
        ] {
            let page = app
                .get_as(&format!("{listing}?cursor={cursor}"), &organizer)
                .await;
            assert_eq!(page.status(), 400, "{listing} {cursor}");
            assert_eq!(error_code(page).await, "INVALID_CURSOR");
        }
    }
}

#[tokio::test]
async fn text_that_cannot_be_stored_is_refused_alone_and_the_event_keeps_selling() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (event_id, general, _) = app.event_on_sale(&organizer, 100, 2, 5, 8).await;

    // A NUL in a section name would fail the flush of every decision batched with it: the
    // event's actor refuses it before anything changes.
    let nul = app
        .post(
            &format!("/events/{event_id}/sections"),
            Some(&organizer),
            json!({"name": "Bal\u{0}cony", "type": "GENERAL", "capacity": 10, "priceCents": 100}),
        )
        .await;
    assert_eq!(nul.status(), 422);
    assert_eq!(error_code(nul).await, "VALIDATION_FAILED");
    app.hold(&buyer, event_id, general, 1).await;

    for (path, body) in [
        (
            "/venues",
            json!({"name": "Hall", "address": "1\u{0} Road", "capacity": 10}),
        ),
        ("/venues", json!({"name": " \t\r\n", "capacity": 10})),
        (
            "/events",
            json!({"eventName": "Night\u{0}", "eventDate": "2030-01-01T00:00:00Z", "saleStartTime": "2029-01-01T00:00:00Z"}),
        ),
        (
            "/events",
            json!({"eventName": "   ", "eventDate": "2030-01-01T00:00:00Z", "saleStartTime": "2029-01-01T00:00:00Z"}),
        ),
        (
            "/auth/register",
            json!({"email": "ada@example.com", "password": "long enough", "firstName": "A\u{0}"}),
        ),
        (
            "/auth/register",
            json!({"email": " ada@example.com", "password": "long enough"}),
        ),
        (
            "/auth/register",
            json!({"email": "ada@localhost", "password": "long enough"}),
        ),
    ] {
        let refused = app.post(path, Some(&organizer), body.clone()).await;
        assert_eq!(refused.status(), 422, "{path} {body}");
        assert_eq!(error_code(refused).await, "VALIDATION_FAILED");
    }
    // Unknown rather than an error: no stored address holds a NUL.
    let login = app
        .post(
            "/auth/login",
            None,
            json!({"email": "a\u{0}@example.com", "password": "whatever"}),
        )
        .await;
    assert_eq!(login.status(), 401);
}

#[tokio::test]
async fn a_discount_takes_exactly_one_amount_and_a_code_of_the_documented_form() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (event_id, _, _) = app.event_on_sale(&organizer, 100, 2, 5, 8).await;
    let path = format!("/events/{event_id}/discounts");
    let created = app
        .post(
            &path,
            Some(&organizer),
            json!({"code": "tenoff", "percentOff": 10, "amountOffCents": null, "maxUses": 5}),
        )
        .await;
    assert_eq!(created.status(), 201);
    assert_eq!(data(created).await["code"], "TENOFF");
    for body in [
        json!({"code": "A", "maxUses": 5}),
        json!({"code": "B", "percentOff": 10, "amountOffCents": 100, "maxUses": 5}),
        json!({"code": "C", "percentOff": null, "amountOffCents": null, "maxUses": 5}),
        json!({"code": " D", "percentOff": 10, "maxUses": 5}),
        json!({"code": "E F", "percentOff": 10, "maxUses": 5}),
    ] {
        let refused = app.post(&path, Some(&organizer), body.clone()).await;
        assert_eq!(refused.status(), 422, "{body}");
    }
    let ok = app
        .get_as(
            &format!("/discounts/validate?code=TenOff&eventId={event_id}"),
            &organizer,
        )
        .await;
    assert_eq!(ok.status(), 200);
    let spaced = app
        .get_as(
            &format!("/discounts/validate?code=%20TENOFF&eventId={event_id}"),
            &organizer,
        )
        .await;
    assert_eq!(spaced.status(), 422);
}

#[tokio::test]
async fn refusals_that_depend_on_the_events_state_are_conflicts() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (event_id, general, reserved) = app.event_on_sale(&organizer, 100, 2, 5, 8).await;
    let path = format!("/events/{event_id}/reservations");
    for body in [
        json!({"type": "GENERAL", "sectionId": reserved, "quantity": 1}),
        json!({"type": "BEST_AVAILABLE", "sectionId": general, "quantity": 1}),
    ] {
        let refused = app.post(&path, Some(&buyer), body.clone()).await;
        assert_eq!(refused.status(), 409, "{body}");
        assert_eq!(error_code(refused).await, "WRONG_SECTION_TYPE");
    }
    // A buyer holding 5 tickets: the limit cannot drop below that.
    app.hold(&buyer, event_id, general, 5).await;
    let lower = app
        .patch(
            &format!("/events/{event_id}"),
            &organizer,
            json!({"maxTicketsPerUser": 2}),
        )
        .await;
    assert_eq!(lower.status(), 409);
    assert_eq!(error_code(lower).await, "LIMIT_REACHED");
}
