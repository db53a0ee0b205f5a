//! The waiting room over real HTTP: joining, following one's place (polled and streamed),
//! holds that need a pass, and a crowd that sells an event out through the line with the
//! invariants checked in PostgreSQL.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use crate::helpers::{data, error_code, spawn_app, TestApp};

/// Safety net for loops that wait on the server: far beyond what any of them needs.
const PATIENCE: Duration = Duration::from_secs(60);

async fn enable_room(app: &TestApp, organizer: &str, event_id: i64, room: Value) {
    let r = app
        .patch(
            &format!("/events/{event_id}"),
            organizer,
            json!({ "waitingRoom": room }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let event = data(r).await;
    assert_eq!(event["waitingRoom"]["enabled"], room["enabled"]);
}

async fn place(app: &TestApp, token: &str, event_id: i64) -> Value {
    let r = app
        .get_as(&format!("/events/{event_id}/queue/me"), token)
        .await;
    assert_eq!(r.status(), 200);
    data(r).await
}

/// Polls the buyer's place until its status is `status`.
async fn wait_for(app: &TestApp, token: &str, event_id: i64, status: &str) -> Value {
    let started = Instant::now();
    loop {
        let view = place(app, token, event_id).await;
        if view["status"] == status {
            return view;
        }
        assert!(started.elapsed() < PATIENCE, "still {view} after a minute");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn send(request: reqwest::RequestBuilder) -> (u16, Value) {
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json::<Value>().await.unwrap())
}

fn hold_body(section_id: i64) -> Value {
    json!({"type": "GENERAL", "sectionId": section_id, "quantity": 1})
}

#[tokio::test]
async fn a_buyer_joins_follows_their_place_and_holds_only_with_a_good_pass() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (event_id, floor, _) = app.event_on_sale(&organizer, 100, 1, 1, 4).await;
    let (a_id, a) = app.user("CUSTOMER").await;
    let (_, b) = app.user("CUSTOMER").await;
    let holds = format!("/events/{event_id}/reservations");
    let queue = format!("/events/{event_id}/queue");

    // Off: no line, holds as ever.
    let r = app.post(&queue, Some(&a), json!({})).await;
    assert_eq!(r.status(), 409);
    assert_eq!(error_code(r).await, "WAITING_ROOM_OFF");
    let r = app
        .patch(
            &format!("/events/{event_id}"),
            &organizer,
            json!({"waitingRoom": {"admitPerMinute": 0}}),
        )
        .await;
    assert_eq!(r.status(), 422, "the pace is 1 to 600000");
    let r = app
        .patch(
            &format!("/events/{event_id}"),
            &organizer,
            json!({"waitingRoom": {"enabled": true, "queueSize": 3}}),
        )
        .await;
    assert_eq!(r.status(), 422, "unknown fields are refused");
    enable_room(
        &app,
        &organizer,
        event_id,
        json!({"enabled": true, "admitPerMinute": 600_000, "passTtlSeconds": 600}),
    )
    .await;
    let event = data(app.get(&format!("/events/{event_id}")).await).await;
    assert_eq!(
        event["waitingRoom"],
        json!({"enabled": true, "admitPerMinute": 600_000, "passTtlSeconds": 600})
    );

    // On: no pass, no hold; not in line, no place.
    let r = app.post(&holds, Some(&a), hold_body(floor)).await;
    assert_eq!(r.status(), 403);
    assert_eq!(error_code(r).await, "QUEUE_PASS_REQUIRED");
    let r = app.get_as(&format!("{queue}/me"), &a).await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "QUEUE_ENTRY_NOT_FOUND");

    // Joining twice is one entry.
    let r = app.post(&queue, Some(&a), json!({})).await;
    assert_eq!(r.status(), 200);
    let first = data(r).await;
    assert!(["WAITING", "ADMITTED"].contains(&first["status"].as_str().unwrap()));
    assert_eq!(first["eventId"], event_id);
    let again = data(app.post(&queue, Some(&a), json!({})).await).await;
    assert_eq!(again["joinedAt"], first["joinedAt"]);

    // Let in at the pace; the pass then holds.
    let admitted = wait_for(&app, &a, event_id, "ADMITTED").await;
    assert!(admitted["passExpiresAt"].is_string());
    assert_eq!(admitted["passUsed"], false);
    let r = app.post(&holds, Some(&a), hold_body(floor)).await;
    assert_eq!(r.status(), 201);
    assert_eq!(place(&app, &a, event_id).await["passUsed"], true);
    app.engine.sync(event_id).await.unwrap();
    let (rank, used): (Option<i32>, bool) = sqlx::query_as(
        "SELECT rank, pass_used_at IS NOT NULL FROM queue_entries
         WHERE event_id = $1 AND user_id = $2",
    )
    .bind(event_id)
    .bind(a_id)
    .fetch_one(&app.db.pool)
    .await
    .unwrap();
    assert_eq!((rank, used), (Some(0), true));

    // The stream: the place at once, then each change, until let in.
    app.post(&queue, Some(&b), json!({})).await;
    let response = app
        .client
        .get(format!("{}{queue}/me/stream", app.address))
        .bearer_auth(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let mut statuses = Vec::new();
    let started = Instant::now();
    while !statuses.contains(&"ADMITTED".to_string()) {
        assert!(started.elapsed() < PATIENCE, "streamed {statuses:?}");
        let chunk = tokio::time::timeout(PATIENCE, body.next())
            .await
            .expect("the stream speaks")
            .expect("the stream stays open")
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            if let Some(json) = frame.strip_prefix("event: position\ndata: ").map(str::trim) {
                let view: Value = serde_json::from_str(json).unwrap();
                statuses.push(view["status"].as_str().unwrap().to_string());
            }
        }
    }
    assert!(!statuses.is_empty());

    // Off again: joins are refused and holds need no pass.
    enable_room(&app, &organizer, event_id, json!({"enabled": false})).await;
    let (_, c) = app.user("CUSTOMER").await;
    let r = app.post(&queue, Some(&c), json!({})).await;
    assert_eq!(error_code(r).await, "WAITING_ROOM_OFF");
    assert_eq!(
        app.post(&holds, Some(&c), hold_body(floor)).await.status(),
        201
    );

    // A draft's line does not exist for buyers.
    let draft = app
        .post(
            "/events",
            Some(&organizer),
            json!({"eventName": "Draft", "eventDate": "2030-06-01T20:00:00Z",
                   "saleStartTime": "2020-01-01T00:00:00Z", "waitingRoom": {"enabled": true}}),
        )
        .await;
    assert_eq!(draft.status(), 201);
    let draft = data(draft).await;
    assert_eq!(
        draft["waitingRoom"]["admitPerMinute"], 1000,
        "the default pace"
    );
    let draft_queue = format!("/events/{}/queue", draft["id"]);
    let r = app.post(&draft_queue, Some(&c), json!({})).await;
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "EVENT_NOT_FOUND");
    let r = app.get_as(&format!("{draft_queue}/me"), &c).await;
    assert_eq!(error_code(r).await, "EVENT_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_sells_out_through_the_waiting_room_and_only_pass_holders_hold() {
    const BUYERS: usize = 60;
    // 24 on the floor and a row of 4 seats.
    const TICKETS: i64 = 28;
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (event_id, floor, stalls) = app.event_on_sale(&organizer, 24, 1, 4, 2).await;
    enable_room(
        &app,
        &organizer,
        event_id,
        json!({"enabled": true, "admitPerMinute": 1_200, "passTtlSeconds": 600}),
    )
    .await;
    let mut buyers = Vec::new();
    for _ in 0..BUYERS {
        buyers.push(app.user("CUSTOMER").await);
    }

    // Every buyer at once: a hold without a pass (refused), then join, then follow their
    // place and hold one ticket when let in — until let in or told it is sold out. (A pass
    // is given only while a ticket is left for it, so a buyer let in who does not buy keeps
    // the line waiting until the pass runs out: these buyers all buy.)
    let mut tasks = tokio::task::JoinSet::new();
    for (user_id, token) in buyers.clone() {
        let client = app.client.clone();
        let base = format!("{}/events/{event_id}", app.address);
        tasks.spawn(async move {
            let (status, body) = send(
                client
                    .post(format!("{base}/reservations"))
                    .bearer_auth(&token)
                    .json(&hold_body(floor)),
            )
            .await;
            assert_eq!(status, 403, "{body}");
            let (status, _) = send(client.post(format!("{base}/queue")).bearer_auth(&token)).await;
            assert_eq!(status, 200);
            let started = Instant::now();
            let mut last = Value::Null;
            loop {
                assert!(
                    started.elapsed() < PATIENCE,
                    "buyer {user_id} waited too long: {last}"
                );
                let (_, me) =
                    send(client.get(format!("{base}/queue/me")).bearer_auth(&token)).await;
                match me["data"]["status"].as_str().unwrap() {
                    "ADMITTED" => {
                        // A ticket on the floor, or else the best seat left.
                        let mut outcome = (0, Value::Null);
                        for body in [
                            hold_body(floor),
                            json!({"type": "BEST_AVAILABLE", "sectionId": stalls, "quantity": 1}),
                        ] {
                            let (status, body) = send(
                                client
                                    .post(format!("{base}/reservations"))
                                    .bearer_auth(&token)
                                    .json(&body),
                            )
                            .await;
                            outcome = (status, body["error"]["code"].clone());
                            if status == 201 {
                                break;
                            }
                        }
                        return (user_id, Some(outcome.0), outcome.1);
                    }
                    "SOLD_OUT" => return (user_id, None, Value::Null),
                    _ => {
                        last = me;
                        tokio::time::sleep(Duration::from_millis(25)).await
                    }
                }
            }
        });
    }
    let mut held_by = Vec::new();
    let mut sold_out_told = 0;
    while let Some(outcome) = tasks.join_next().await {
        match outcome.unwrap() {
            (user_id, Some(201), _) => held_by.push(user_id),
            (_, Some(409), code) => assert_eq!(code, "SOLD_OUT"),
            (_, None, _) => sold_out_told += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(held_by.len() as i64, TICKETS, "sold exactly to capacity");
    assert!(sold_out_told > 0, "the rest of the line was told SOLD_OUT");
    app.engine.sync(event_id).await.unwrap();

    let db = &app.db.pool;
    let broken = boxoffice_engine::audit::violations(db, event_id)
        .await
        .unwrap();
    assert!(broken.is_empty(), "{broken:?}");
    let (entries, buyers_in_line, admitted): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT user_id), count(admitted_at)
         FROM queue_entries WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!((entries, buyers_in_line), (BUYERS as i64, BUYERS as i64));
    assert!(admitted >= TICKETS, "{admitted} let in");
    // Every hold was placed with a pass, and no pass was given while nothing was left.
    let without_pass: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reservations r
         LEFT JOIN queue_entries q ON q.event_id = r.event_id AND q.user_id = r.user_id
         WHERE r.event_id = $1
           AND (q.pass_used_at IS NULL OR r.created_at < q.admitted_at
                OR r.created_at >= q.pass_expires_at)",
    )
    .bind(event_id)
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(without_pass, 0);
    let held: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(quantity), 0) FROM reservations_effective
         WHERE event_id = $1 AND status = 'ACTIVE'",
    )
    .bind(event_id)
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(held, TICKETS);
}
