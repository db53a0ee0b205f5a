//! `GET /events/{id}/inventory/stream` over real HTTP: subscribers that apply every message
//! end with what PostgreSQL holds, a reconnect resumes after its last id, and a subscriber
//! that stops reading is dropped without touching the others.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{data, spawn_app, spawn_app_with, test_settings, TestApp};

/// One Server-Sent Event.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub event: String,
    pub data: String,
    pub retry: Option<u64>,
}

/// A subscriber reading a stream over HTTP and applying what it reads.
pub struct Subscriber {
    body: futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    pending: String,
    pub last_id: Option<String>,
    /// The reconnection delay the server set (`retry:`), in milliseconds.
    pub retry: Option<u64>,
    pub messages: usize,
    pub first: Option<Message>,
    /// Seat id → status.
    pub seats: HashMap<i64, String>,
    /// Section id → (available, held, booked).
    pub sections: HashMap<i64, (i64, i64, i64)>,
}

impl Subscriber {
    pub async fn connect(app: &TestApp, event_id: i64, last_id: Option<&str>) -> Subscriber {
        let mut request = app.client.get(format!(
            "{}/events/{event_id}/inventory/stream",
            app.address
        ));
        if let Some(id) = last_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Subscriber {
            body: response.bytes_stream().boxed(),
            pending: String::new(),
            last_id: last_id.map(str::to_string),
            retry: None,
            messages: 0,
            first: None,
            seats: HashMap::new(),
            sections: HashMap::new(),
        }
    }

    /// Reads the next message (heartbeat comments skipped).
    pub async fn next(&mut self) -> Message {
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let frame: String = self.pending.drain(..end + 2).collect();
                let mut m = Message {
                    id: String::new(),
                    event: "message".into(),
                    data: String::new(),
                    retry: None,
                };
                for line in frame.lines() {
                    match line.split_once(':') {
                        Some(("id", v)) => m.id = v.trim_start().into(),
                        Some(("event", v)) => m.event = v.trim_start().into(),
                        Some(("data", v)) => m.data.push_str(v.trim_start()),
                        Some(("retry", v)) => m.retry = v.trim_start().parse().ok(),
                        _ => {}
                    }
                }
                // A frame without data (the `retry:` line, a heartbeat) is no message; the
                // reconnection delay it sets is kept, as a browser keeps it.
                if m.retry.is_some() {
                    self.retry = m.retry;
                }
                if m.data.is_empty() {
                    continue;
                }
                m.retry = self.retry;
                return m;
            }
            let chunk = self
                .body
                .next()
                .await
                .expect("the stream stays open")
                .expect("the stream reads");
            self.pending.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Reads and applies one message.
    pub async fn apply_next(&mut self) -> Message {
        let m = self.next().await;
        let data: Value = serde_json::from_str(&m.data).unwrap();
        if m.event == "state" {
            self.seats.clear();
            self.sections.clear();
        }
        let mut sections: Vec<&Value> = data["sections"].as_array().unwrap().iter().collect();
        sections.extend(data["newSections"].as_array().into_iter().flatten());
        for s in sections {
            let n = |k: &str| s[k].as_i64().unwrap();
            self.sections
                .insert(n("id"), (n("available"), n("held"), n("booked")));
            // Rows are runs [first id, first number, count]; seats not listed under
            // "seats" by status are available.
            for row in s["rows"].as_array().into_iter().flatten() {
                for run in row["seats"].as_array().unwrap() {
                    let (first, count) = (run[0].as_i64().unwrap(), run[2].as_i64().unwrap());
                    for id in first..first + count {
                        self.seats.insert(id, "AVAILABLE".into());
                    }
                }
            }
            for (status, ids) in s["seats"].as_object().into_iter().flatten() {
                for id in listed_ids(ids) {
                    self.seats.insert(id, status.clone());
                }
            }
        }
        for (status, ids) in data["seats"].as_object().into_iter().flatten() {
            for id in listed_ids(ids) {
                self.seats.insert(id, status.clone());
            }
        }
        self.last_id = Some(m.id.clone());
        self.messages += 1;
        if self.first.is_none() {
            self.first = Some(m.clone());
        }
        m
    }

    /// Applies messages until the subscriber shows `want`; panics after a generous bound
    /// (a safety net, not a timing assertion: a correct stream gets there in milliseconds).
    pub async fn until_equal(&mut self, want: &Stored) {
        let reached = tokio::time::timeout(Duration::from_secs(60), async {
            while self.seats != want.seats || self.sections != want.sections {
                self.apply_next().await;
            }
        })
        .await;
        assert!(
            reached.is_ok(),
            "the subscriber never showed what PostgreSQL holds"
        );
    }
}

/// The seat ids of a stream list: lone ids and runs `[first, count]`.
pub fn listed_ids(list: &Value) -> Vec<i64> {
    let mut ids = Vec::new();
    for item in list.as_array().unwrap() {
        match item.as_array() {
            Some(run) => {
                let (first, count) = (run[0].as_i64().unwrap(), run[1].as_i64().unwrap());
                assert!(count >= 2, "a run has two seats or more: {item}");
                ids.extend(first..first + count);
            }
            None => ids.push(item.as_i64().unwrap()),
        }
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ascending: {list}");
    ids
}

/// What PostgreSQL holds for an event.
#[derive(Debug, PartialEq)]
pub struct Stored {
    pub seats: HashMap<i64, String>,
    pub sections: HashMap<i64, (i64, i64, i64)>,
}

pub async fn stored(app: &TestApp, event_id: i64) -> Stored {
    let seats =
        sqlx::query_as::<_, (i64, String)>("SELECT id, status FROM seats WHERE event_id = $1")
            .bind(event_id)
            .fetch_all(&app.db.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let sections = sqlx::query_as::<_, (i64, i32, i32, i32)>(
        "SELECT id, available, held, booked FROM event_sections WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_all(&app.db.pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(id, a, h, b)| (id, (a.into(), h.into(), b.into())))
    .collect();
    Stored { seats, sections }
}

/// Seat ids of a section, front row first.
async fn seat_ids(app: &TestApp, event_id: i64, section_id: i64) -> Vec<i64> {
    let map = data(
        app.get(&format!("/events/{event_id}/sections/{section_id}/seats"))
            .await,
    )
    .await;
    map["rows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["seats"].as_array().unwrap().clone())
        .map(|s| s["id"].as_i64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_that_apply_every_message_end_with_what_postgres_holds() {
    let app = spawn_app().await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (event_id, general, stalls) = app.event_on_sale(&organizer, 200, 10, 20, 8).await;
    let mut subscribers = Vec::new();
    for _ in 0..20 {
        let mut s = Subscriber::connect(&app, event_id, None).await;
        let first = s.apply_next().await;
        assert_eq!(first.event, "state", "the whole state comes first");
        assert!(first.retry.is_some(), "with a reconnection delay");
        assert!(!first.id.is_empty(), "and an id to resume from");
        subscribers.push(s);
    }
    // The set-up's last commits may follow the first state by one feed interval.
    let before = stored(&app, event_id).await;
    for s in &mut subscribers {
        s.until_equal(&before).await;
        assert_eq!(s.seats.len(), 200);
    }

    // 60 buyers at once over HTTP: best-available pairs, general tickets; a third book, a
    // third release.
    let mut buyers = Vec::new();
    for _ in 0..60 {
        buyers.push(app.user("CUSTOMER").await.1);
    }
    let answers = futures::future::join_all(buyers.iter().enumerate().map(|(i, token)| {
        let app = &app;
        async move {
            let body = if i % 2 == 0 {
                json!({"type": "BEST_AVAILABLE", "sectionId": stalls, "quantity": 2})
            } else {
                json!({"type": "GENERAL", "sectionId": general, "quantity": 3})
            };
            let held = app
                .post(
                    &format!("/events/{event_id}/reservations"),
                    Some(token),
                    body,
                )
                .await;
            if held.status() != 201 {
                return held.status().as_u16();
            }
            let hold = data(held).await["id"].as_i64().unwrap();
            match i % 3 {
                0 => {
                    let booked = app
                        .post("/bookings", Some(token), json!({"reservationIds": [hold]}))
                        .await;
                    assert_eq!(booked.status(), 201);
                }
                1 => {
                    let released = app.delete_as(&format!("/reservations/{hold}"), token).await;
                    assert!(released.status().is_success());
                }
                _ => {}
            }
            201
        }
    }))
    .await;
    let held = answers.iter().filter(|&&s| s == 201).count();
    assert_eq!(held, 60, "every buyer got tickets: {answers:?}");

    let want = stored(&app, event_id).await;
    assert!(want.seats.values().any(|s| s == "BOOKED"));
    assert!(want.seats.values().any(|s| s == "RESERVED"));
    for s in &mut subscribers {
        s.until_equal(&want).await;
        assert!(s.messages > 1, "changes arrived, not only the state");
    }
    // No message was a full state after the first: changes carry only what changed.
    let mut late = Subscriber::connect(&app, event_id, None).await;
    late.apply_next().await;
    assert_eq!((&late.seats, &late.sections), (&want.seats, &want.sections));
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_with_last_event_id_gets_only_what_it_missed() {
    // A message per commit, so that each commit missed is one message to resend.
    let db = boxoffice_engine::testdb::TestDb::create().await;
    let mut settings = test_settings(&db);
    settings.engine.stream_interval_ms = 0;
    let app = spawn_app_with(db, settings).await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (event_id, _, stalls) = app.event_on_sale(&organizer, 10, 2, 10, 8).await;
    let seats = seat_ids(&app, event_id, stalls).await;
    let mut s = Subscriber::connect(&app, event_id, None).await;
    s.apply_next().await;
    let (_, buyer) = app.user("CUSTOMER").await;
    let hold = |seat: i64| {
        let app = &app;
        let buyer = &buyer;
        async move {
            let r = app
                .post(
                    &format!("/events/{event_id}/reservations"),
                    Some(buyer),
                    json!({"type": "SEATS", "seatIds": [seat]}),
                )
                .await;
            assert_eq!(r.status(), 201);
        }
    };
    hold(seats[0]).await;
    let change = s.apply_next().await;
    assert_eq!(change.event, "change");
    let data: Value = serde_json::from_str(&change.data).unwrap();
    assert_eq!(data["seats"], json!({"RESERVED": [seats[0]]}));
    let seen = s.last_id.clone().unwrap();
    drop(s);

    // Two commits while disconnected; the reconnect gets exactly those two, in order.
    hold(seats[1]).await;
    hold(seats[2]).await;
    let mut again = Subscriber::connect(&app, event_id, Some(&seen)).await;
    let mut missed = Vec::new();
    for _ in 0..2 {
        let m = again.next().await;
        assert_eq!(m.event, "change", "resumed, not restarted: {m:?}");
        let d: Value = serde_json::from_str(&m.data).unwrap();
        missed.push(d["seats"]["RESERVED"][0].as_i64().unwrap());
    }
    assert_eq!(missed, vec![seats[1], seats[2]]);
    // An id the feed cannot resume from gets the whole state.
    let mut stale = Subscriber::connect(&app, event_id, Some("1-999999")).await;
    assert_eq!(stale.next().await.event, "state");
    let mut garbage = Subscriber::connect(&app, event_id, Some("not an id")).await;
    assert_eq!(garbage.next().await.event, "state");
    // And an unknown event is a 404 in the API's error body.
    let missing = app.get("/events/999999/inventory/stream").await;
    assert_eq!(missing.status(), 404);
    assert_eq!(crate::helpers::error_code(missing).await, "EVENT_NOT_FOUND");
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_dropped_and_the_others_are_unaffected() {
    let db = boxoffice_engine::testdb::TestDb::create().await;
    let mut settings = test_settings(&db);
    settings.stream_buffer_messages = 4;
    // A message per commit, so that each commit is one more message for the stalled client.
    settings.engine.stream_interval_ms = 0;
    let send_buffer_bytes = settings.stream_send_buffer_bytes;
    let app = spawn_app_with(db, settings).await;
    let (_, organizer) = app.user("ORGANIZER").await;
    let (event_id, general, _) = app.event_on_sale(&organizer, 1000, 1, 10, 1000).await;

    // A client that asks for the stream with a tiny receive window and then never reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let addr = app.address.trim_start_matches("http://").parse().unwrap();
    let mut stalled = socket.connect(addr).await.unwrap();
    stalled
        .write_all(
            format!("GET /events/{event_id}/inventory/stream HTTP/1.1\r\nhost: x\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut reader = Subscriber::connect(&app, event_id, None).await;
    reader.apply_next().await;
    // The reader reads all along, as a browser does; it is told at the end what to reach.
    let (want_tx, mut want_rx) = tokio::sync::oneshot::channel::<Stored>();
    let reader = tokio::spawn(async move {
        loop {
            tokio::select! {
                want = &mut want_rx => {
                    reader.until_equal(&want.unwrap()).await;
                    return reader;
                }
                _ = reader.apply_next() => {}
            }
        }
    });

    let dropped_count = || async {
        let metrics = app.get("/metrics").await.text().await.unwrap();
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix("boxoffice_stream_subscribers_dropped_total{reason=\"slow\"} ")
            })
            .map_or(0.0, |v| v.parse::<f64>().unwrap())
    };
    // One ticket at a time — a commit, a message of ~150 bytes each — until the server
    // counts the stalled subscriber as dropped; the stalled socket is not touched meanwhile.
    // What stands between the server and the drop is bounded: the stream socket's send
    // buffer (which the kernel doubles), hyper's queue of 16 frames, and the subscriber's 4.
    let (_, buyer) = app.user("CUSTOMER").await;
    let mut commits = 0;
    let bound = 2 * send_buffer_bytes / 100 + 16 + 4;
    while dropped_count().await < 1.0 {
        assert!(
            commits < bound,
            "the stalled subscriber was still connected after {commits} messages"
        );
        app.hold(&buyer, event_id, general, 1).await;
        commits += 1;
    }
    assert!(
        commits >= 4,
        "its buffer overflowed first ({commits} commits)"
    );
    // Its connection is closed: what the kernel still had for it, then the end.
    let closed = tokio::time::timeout(Duration::from_secs(60), async {
        let mut sink = vec![0u8; 1 << 16];
        loop {
            match stalled.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server closed the stalled connection");
    // The reader kept up throughout and shows exactly what PostgreSQL holds.
    let want = stored(&app, event_id).await;
    assert_eq!(
        want.sections[&general].1, commits as i64,
        "every hold committed"
    );
    want_tx.send(want).unwrap();
    let reader = reader.await.unwrap();
    assert!(
        reader.messages > commits,
        "it saw every commit, and the state"
    );
    app.stop().await.unwrap();
}
