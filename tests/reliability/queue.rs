//! SIGKILL while a waiting room is letting buyers in, then restart: every place in line and
//! every pass a buyer was shown is as before — in PostgreSQL and through the API — and the
//! line moves on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use boxoffice::auth::jwt::{Keys, Role};
use boxoffice_engine::testdb::TestDb;
use serde_json::{json, Value};
use sqlx::Row;

use crate::support::{client, free_port, scene, Server, JWT_SECRET};

const BUYERS: usize = 300;
/// Buyers seen let in before the kill lands: the line is mid-way through admitting.
const KILL_AFTER_ADMITTED: usize = 60;
/// Safety net for loops that wait on the server.
const PATIENCE: Duration = Duration::from_secs(60);

/// What PostgreSQL holds of one entry: rank, admitted at, pass expires at, pass used.
type Stored = (Option<i32>, Option<i64>, Option<i64>, bool);

async fn stored(db: &TestDb, event_id: i64) -> HashMap<i64, Stored> {
    sqlx::query(
        "SELECT user_id, rank,
                (extract(epoch FROM admitted_at) * 1000)::bigint AS admitted_ms,
                (extract(epoch FROM pass_expires_at) * 1000)::bigint AS expires_ms,
                pass_used_at IS NOT NULL AS used
         FROM queue_entries WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_all(&db.pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r| {
        (
            r.get("user_id"),
            (
                r.get("rank"),
                r.get("admitted_ms"),
                r.get("expires_ms"),
                r.get("used"),
            ),
        )
    })
    .collect()
}

async fn patch(client: &reqwest::Client, base: &str, token: &str, event_id: i64, body: Value) {
    let r = client
        .patch(format!("{base}/events/{event_id}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

/// Joins every buyer in `tokens` at once; returns each acknowledged `joinedAt`.
async fn join_all(base: &str, event_id: i64, tokens: &[(i64, String)]) -> HashMap<i64, String> {
    let client = client();
    let mut joins = tokio::task::JoinSet::new();
    for (user_id, token) in tokens.iter().cloned() {
        let request = client
            .post(format!("{base}/events/{event_id}/queue"))
            .bearer_auth(token);
        joins.spawn(async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 200);
            let body: Value = r.json().await.unwrap();
            (
                user_id,
                body["data"]["joinedAt"].as_str().unwrap().to_string(),
            )
        });
    }
    let mut joined = HashMap::new();
    while let Some(j) = joins.join_next().await {
        let (user_id, at) = j.unwrap();
        joined.insert(user_id, at);
    }
    joined
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_queue_keeps_every_place_and_pass() {
    let db = TestDb::create().await;
    let port = free_port();
    let mut server = Server::start(&db.url(), port).await;
    let base = server.url("");
    let s = scene(&db, &base, BUYERS, 100_000, 4).await;
    let organizer: i64 = sqlx::query_scalar("SELECT id FROM users WHERE role = 'ORGANIZER'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let org = Keys::new(JWT_SECRET, 3600)
        .unwrap()
        .issue(organizer, Role::Organizer)
        .unwrap();
    let client = client();

    // The sale opens later: the first half joins early and is drawn at the opening.
    patch(
        &client,
        &base,
        &org,
        s.event_id,
        json!({
        "saleStartTime": "2029-12-31T00:00:00Z",
        "waitingRoom": {"enabled": true, "admitPerMinute": 3_000, "passTtlSeconds": 7_200}}),
    )
    .await;
    let (early, late) = s.buyers.split_at(BUYERS / 2);
    let mut joined = join_all(&base, s.event_id, early).await;
    patch(
        &client,
        &base,
        &org,
        s.event_id,
        json!({"saleStartTime": "2020-01-01T00:00:00Z"}),
    )
    .await;
    joined.extend(join_all(&base, s.event_id, late).await);
    assert_eq!(joined.len(), BUYERS, "every join acknowledged");

    // Buyers follow their place; every other one holds a ticket once let in. The kill lands
    // while admissions are under way.
    let seen: Arc<Mutex<HashMap<i64, Value>>> = Arc::default();
    let held: Arc<Mutex<Vec<i64>>> = Arc::default();
    let mut followers = tokio::task::JoinSet::new();
    for (i, (user_id, token)) in s.buyers.iter().cloned().enumerate() {
        let (client, base, seen, held) = (client.clone(), base.clone(), seen.clone(), held.clone());
        let (event_id, section_id) = (s.event_id, s.section_id);
        followers.spawn(async move {
            let mut holding = false;
            loop {
                let me = client
                    .get(format!("{base}/events/{event_id}/queue/me"))
                    .bearer_auth(&token)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                let Ok(me) = me else { return };
                let Ok(me) = me.json::<Value>().await else {
                    return;
                };
                let admitted = me["data"]["status"] == "ADMITTED";
                seen.lock().unwrap().insert(user_id, me["data"].clone());
                if admitted && i % 2 == 0 && !holding {
                    holding = true;
                    let r = client
                        .post(format!("{base}/events/{event_id}/reservations"))
                        .bearer_auth(&token)
                        .json(&json!({"type": "GENERAL", "sectionId": section_id, "quantity": 1}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 201 => {
                            let body: Value = r.json().await.unwrap();
                            held.lock()
                                .unwrap()
                                .push(body["data"]["id"].as_i64().unwrap());
                        }
                        Ok(r) if r.status().is_client_error() => {
                            panic!("a pass holder's hold was refused: {}", r.status())
                        }
                        _ => return,
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
    let started = Instant::now();
    loop {
        let admitted = seen
            .lock()
            .unwrap()
            .values()
            .filter(|v| v["status"] == "ADMITTED")
            .count();
        if admitted >= KILL_AFTER_ADMITTED {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{admitted} let in after a minute"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().await;
    while let Some(f) = followers.join_next().await {
        f.unwrap();
    }
    let before = stored(&db, s.event_id).await;
    let seen = seen.lock().unwrap().clone();
    let held = held.lock().unwrap().clone();
    assert!(
        before.values().any(|e| e.1.is_none()),
        "the kill came mid-queue"
    );

    let server = Server::start(&db.url(), port).await;
    // Through the API: the event's actor is rebuilt from PostgreSQL.
    let mut after_views = HashMap::new();
    for (user_id, token) in &s.buyers {
        let r = client
            .get(server.url(&format!("/events/{}/queue/me", s.event_id)))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        after_views.insert(*user_id, body["data"].clone());
    }
    let after = stored(&db, s.event_id).await;

    // Every acknowledged join is there, as joined.
    assert_eq!(after.len(), BUYERS);
    for (user_id, joined_at) in &joined {
        assert_eq!(&after_views[user_id]["joinedAt"], joined_at);
    }
    // Every place is as before; every pass as before.
    for (user_id, was) in &before {
        let now = after[user_id];
        assert_eq!(now.0, was.0, "buyer {user_id}'s place");
        if was.1.is_some() {
            assert_eq!((now.1, now.2), (was.1, was.2), "buyer {user_id}'s pass");
        }
    }
    // Every pass a buyer was shown is there and shown again, the same.
    let mut shown = 0;
    for (user_id, view) in &seen {
        if view["status"] != "ADMITTED" {
            continue;
        }
        shown += 1;
        let again = &after_views[user_id];
        assert_eq!(again["status"], "ADMITTED", "buyer {user_id}");
        assert_eq!(again["passExpiresAt"], view["passExpiresAt"]);
        assert_eq!(again["admittedAt"], view["admittedAt"]);
        let expires = chrono::DateTime::parse_from_rfc3339(view["passExpiresAt"].as_str().unwrap())
            .unwrap()
            .timestamp_millis();
        assert_eq!(after[user_id].2, Some(expires));
    }
    assert!(shown >= KILL_AFTER_ADMITTED);
    // The early half was drawn ahead of the rest.
    for (user_id, _) in early {
        assert!(after[user_id].0.unwrap() < (BUYERS / 2) as i32);
    }
    // Every acknowledged hold is there, and marked its buyer's pass as used.
    let stored_holds: Vec<(i64, i64)> =
        sqlx::query_as("SELECT id, user_id FROM reservations WHERE event_id = $1 AND id = ANY($2)")
            .bind(s.event_id)
            .bind(&held)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(stored_holds.len(), held.len(), "every acknowledged hold");
    for (_, user_id) in stored_holds {
        assert!(after[&user_id].3, "buyer {user_id}'s pass is marked used");
    }
    let broken = boxoffice_engine::audit::violations(&db.pool, s.event_id)
        .await
        .unwrap();
    assert!(broken.is_empty(), "{broken:?}");

    // And the line moves on from where it was, to its end: every buyer is let in (100,000
    // tickets, so no pass is held back). Counted against the admissions stored at the kill,
    // not those seen after the reads above: on a slow machine the line can finish while the
    // 300 places are being read back, and nothing would be left to move.
    let admitted_at_kill = before.values().filter(|e| e.1.is_some()).count();
    let started = Instant::now();
    loop {
        let admitted = stored(&db, s.event_id)
            .await
            .values()
            .filter(|e| e.1.is_some())
            .count();
        if admitted == BUYERS {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the line stopped after the restart: {admitted} of {BUYERS} let in, \
             {admitted_at_kill} at the kill"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = server;
}
