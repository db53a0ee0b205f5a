use serde_json::json;

use crate::helpers::{data, error_code, spawn_app};

#[tokio::test]
async fn discount_codes_are_created_validated_and_used_up() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (_, rival) = app.user("ORGANIZER").await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let (event_id, general, _) = app.event_on_sale(&organizer, 10, 1, 1, 8).await;
    let path = format!("/events/{event_id}/discounts");
    let created = app
        .post(
            &path,
            Some(&organizer),
            json!({"code": "Spring-5", "amountOffCents": 500, "maxUses": 1}),
        )
        .await;
    assert_eq!(created.status(), 201);
    assert_eq!(data(created).await["code"], "SPRING-5");
    let dup = app
        .post(
            &path,
            Some(&organizer),
            json!({"code": "spring-5", "percentOff": 5, "maxUses": 1}),
        )
        .await;
    assert_eq!(dup.status(), 409);
    assert_eq!(error_code(dup).await, "DISCOUNT_EXISTS");
    for bad in [
        json!({"code": "BOTH", "percentOff": 5, "amountOffCents": 5, "maxUses": 1}),
        json!({"code": "NEITHER", "maxUses": 1}),
        json!({"code": "PCT", "percentOff": 101, "maxUses": 1}),
        json!({"code": "bad code", "percentOff": 5, "maxUses": 1}),
        json!({"code": "ZERO", "percentOff": 5, "maxUses": 0}),
        json!({"code": "WINDOW", "percentOff": 5, "maxUses": 1, "validFrom": "2030-01-02T00:00:00Z", "validUntil": "2030-01-01T00:00:00Z"}),
    ] {
        assert_eq!(
            app.post(&path, Some(&organizer), bad.clone())
                .await
                .status(),
            422,
            "{bad}"
        );
    }
    assert_eq!(
        app.post(
            &path,
            Some(&rival),
            json!({"code": "X", "percentOff": 5, "maxUses": 1})
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        app.post(
            &path,
            Some(&buyer),
            json!({"code": "X", "percentOff": 5, "maxUses": 1})
        )
        .await
        .status(),
        403
    );

    let check = format!("/discounts/validate?code=spring-5&eventId={event_id}");
    let valid = data(app.get_as(&check, &buyer).await).await;
    assert_eq!(valid["valid"], true);
    assert_eq!(valid["remainingUses"], 1);
    assert_eq!(valid["discount"]["amountOffCents"], 500);
    let missing = app
        .get_as(
            &format!("/discounts/validate?code=NOPE&eventId={event_id}"),
            &buyer,
        )
        .await;
    assert_eq!(missing.status(), 404);
    assert_eq!(error_code(missing).await, "DISCOUNT_NOT_FOUND");
    assert_eq!(app.get(&check).await.status(), 401);

    // One use, then the code is exhausted for the next booking.
    let a = app.hold(&buyer, event_id, general, 1).await;
    let b = app.hold(&buyer, event_id, general, 1).await;
    let used = app
        .post(
            "/bookings",
            Some(&buyer),
            json!({"reservationIds": [a], "discountCode": "SPRING-5"}),
        )
        .await;
    assert_eq!(data(used).await["discountCents"], 500);
    let exhausted = app
        .post(
            "/bookings",
            Some(&buyer),
            json!({"reservationIds": [b], "discountCode": "SPRING-5"}),
        )
        .await;
    assert_eq!(exhausted.status(), 409);
    assert_eq!(error_code(exhausted).await, "DISCOUNT_EXHAUSTED");
    let used: i32 = sqlx::query_scalar("SELECT used FROM discounts")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(used, 1);
    app.stop().await.unwrap();
}
