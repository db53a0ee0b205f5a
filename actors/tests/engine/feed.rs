//! The live feed: a subscriber who applies every message it receives ends with exactly what
//! PostgreSQL holds, sees only what committed, and is brought up to date after a reload.

use std::collections::HashMap;
use std::time::Duration;

use boxoffice_engine::feed::{FeedMessage, MessageKind, Position, Subscription};
use boxoffice_engine::types::{ConfirmRequest, HoldKind, HoldRequest, Requester};
use boxoffice_engine::EngineConfig;
use serde_json::Value;
use sqlx::PgPool;

use crate::support::{assert_invariants, fixture, section_counts};

/// What a subscriber knows: seat statuses and section counts, moved by each message.
#[derive(Debug, Default, PartialEq)]
pub struct Model {
    pub at: Option<Position>,
    pub seats: HashMap<i64, String>,
    /// Section id → (available, held, booked).
    pub sections: HashMap<i64, (i64, i64, i64)>,
    pub status: String,
}

impl Model {
    /// Applies a message if the subscriber should; returns whether it did.
    pub fn apply(&mut self, m: &FeedMessage) -> bool {
        if self.at.is_some_and(|at| !at.accepts(m)) {
            return false;
        }
        let data: Value = serde_json::from_str(m.data()).unwrap();
        if m.kind == MessageKind::State {
            self.seats.clear();
            self.sections.clear();
        } else {
            assert!(self.at.is_some(), "a change before any state: {}", m.data());
        }
        self.status = data["status"].as_str().unwrap().to_string();
        let mut sections: Vec<&Value> = data["sections"].as_array().unwrap().iter().collect();
        if let Some(new) = data["newSections"].as_array() {
            sections.extend(new);
        }
        for s in sections {
            let counts = |k: &str| s[k].as_i64().unwrap();
            self.sections.insert(
                counts("id"),
                (counts("available"), counts("held"), counts("booked")),
            );
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
                for id in seat_ids(ids) {
                    self.seats.insert(id, status.clone());
                }
            }
        }
        for (status, ids) in data["seats"].as_object().into_iter().flatten() {
            for id in seat_ids(ids) {
                assert!(
                    self.seats.contains_key(&id),
                    "a change names unknown seat {id}"
                );
                self.seats.insert(id, status.clone());
            }
        }
        self.at = Some(m.at);
        true
    }

    /// Applies a subscription's backlog.
    pub fn start(sub: &Subscription) -> Model {
        let mut model = Model::default();
        for m in &sub.backlog {
            model.apply(m);
        }
        assert_eq!(
            model.at,
            Some(sub.position),
            "the backlog ends where it says"
        );
        model
    }

    /// Applies everything received so far.
    pub fn drain(&mut self, sub: &mut Subscription) -> usize {
        let mut applied = 0;
        while let Ok(m) = sub.receiver.try_recv() {
            applied += usize::from(self.apply(&m));
        }
        applied
    }
}

/// The seat ids of a stream list: lone ids and runs `[first, count]`.
pub fn seat_ids(list: &Value) -> Vec<i64> {
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

/// What PostgreSQL holds, in the model's terms.
pub async fn stored(pool: &PgPool, event_id: i64) -> Model {
    let seats =
        sqlx::query_as::<_, (i64, String)>("SELECT id, status FROM seats WHERE event_id = $1")
            .bind(event_id)
            .fetch_all(pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let sections = section_counts(pool, event_id)
        .await
        .into_iter()
        .map(|(id, (_, a, h, b))| (id, (a.into(), h.into(), b.into())))
        .collect();
    let status: String = sqlx::query_scalar("SELECT status FROM events WHERE id = $1")
        .bind(event_id)
        .fetch_one(pool)
        .await
        .unwrap();
    Model {
        at: None,
        seats,
        sections,
        status,
    }
}

/// Receives until the model has applied at least one message, or panics after `limit`.
async fn next_applied(model: &mut Model, sub: &mut Subscription, limit: Duration) {
    tokio::time::timeout(limit, async {
        loop {
            let m = sub.receiver.recv().await.expect("the feed is open");
            if model.apply(&m) {
                return;
            }
        }
    })
    .await
    .expect("a message arrived in time");
}

/// Applies messages until the model shows what PostgreSQL holds: what committed before a
/// subscriber came may reach it one feed interval after its first state.
async fn catch_up(model: &mut Model, sub: &mut Subscription, pool: &PgPool, event_id: i64) {
    let want = stored(pool, event_id).await;
    tokio::time::timeout(Duration::from_secs(30), async {
        while without_position(model) != want {
            let m = sub.receiver.recv().await.expect("the feed is open");
            model.apply(&m);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the subscriber never reached what PostgreSQL holds"));
}

fn without_position(model: &Model) -> Model {
    Model {
        at: None,
        seats: model.seats.clone(),
        sections: model.sections.clone(),
        status: model.status.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_applies_every_message_ends_with_what_postgres_holds() {
    let f = fixture(400, 4, 600, EngineConfig::default()).await;
    let stalls = f.reserved("Stalls", 10, 20).await;
    let floor = f.general("Floor", 300).await;
    f.open_sale().await;
    let mut sub = f.engine.subscribe(f.event_id, None).await.unwrap();
    let mut model = Model::start(&sub);
    catch_up(&mut model, &mut sub, f.pool(), f.event_id).await;
    assert_eq!(model.seats.len(), 200, "the whole seat map");
    assert_eq!(model.sections.len(), 2);

    // 400 buyers at once: best available pairs, general tickets, and half of them booking
    // or releasing what they got.
    let tasks: Vec<_> = f
        .buyers
        .iter()
        .enumerate()
        .map(|(i, &user_id)| {
            let engine = f.engine.clone();
            let event = f.event_id;
            tokio::spawn(async move {
                let kind = if i % 2 == 0 {
                    HoldKind::BestAvailable {
                        section_id: stalls,
                        quantity: 2,
                        allow_split: false,
                    }
                } else {
                    HoldKind::General {
                        section_id: floor,
                        quantity: 1,
                    }
                };
                let request = HoldRequest {
                    user_id,
                    kind,
                    idempotency_key: None,
                    session_id: None,
                };
                let Ok(held) = engine.hold(event, request).await else {
                    return 0;
                };
                let me = Requester::buyer(user_id);
                match i % 4 {
                    0 | 1 => {
                        let confirm = ConfirmRequest {
                            requester: me,
                            hold_ids: vec![held.hold.id],
                            discount_code: None,
                            idempotency_key: None,
                        };
                        engine.confirm(event, confirm).await.unwrap();
                    }
                    2 => {
                        engine.release(event, me, held.hold.id).await.unwrap();
                    }
                    _ => {}
                }
                1
            })
        })
        .collect();
    let mut acknowledged = 0;
    for t in tasks {
        acknowledged += t.await.unwrap();
    }
    assert!(
        acknowledged >= 250,
        "the burst was real: {acknowledged} holds"
    );
    f.engine.sync(f.event_id).await.unwrap();

    // Everything committed has been broadcast by now or is about to be.
    let want = stored(f.pool(), f.event_id).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while without_position(&model) != want {
            let m = sub.receiver.recv().await.expect("open");
            model.apply(&m);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the subscriber never reached what PostgreSQL holds"));
    let booked = want.seats.values().filter(|s| *s == "BOOKED").count();
    assert!(booked > 0, "some seats were booked");
    assert_invariants(f.pool(), f.event_id).await;

    // A new subscriber starts from the same state; one that names a recent message gets
    // only what followed it.
    let late = f.engine.subscribe(f.event_id, None).await.unwrap();
    assert_eq!(without_position(&Model::start(&late)), want);
    let at = model.at.unwrap();
    assert!(at.seq >= 1, "changes were sent, not only the state");
    let missed = at.seq.min(3);
    let resumed_from = Position {
        epoch: at.epoch,
        seq: at.seq - missed,
    };
    let resumed = f
        .engine
        .subscribe(f.event_id, Some(resumed_from))
        .await
        .unwrap();
    assert_eq!(
        resumed.backlog.len() as u64,
        missed,
        "exactly the ones it missed"
    );
    assert!(resumed
        .backlog
        .iter()
        .all(|m| m.kind == MessageKind::Change));
    // Of another epoch, or ahead of the feed: the whole state instead.
    for stale in [
        Position {
            epoch: at.epoch - 1,
            seq: 5,
        },
        Position {
            epoch: at.epoch,
            seq: at.seq + 10,
        },
    ] {
        let sub = f.engine.subscribe(f.event_id, Some(stale)).await.unwrap();
        assert_eq!(sub.backlog.len(), 1);
        assert_eq!(sub.backlog[0].kind, MessageKind::State);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_whose_batch_fails_is_never_shown() {
    let f = fixture(
        10,
        4,
        600,
        EngineConfig {
            flush_timeout_ms: 300,
            ..EngineConfig::default()
        },
    )
    .await;
    f.reserved("Stalls", 2, 5).await;
    f.open_sale().await;
    let mut sub = f.engine.subscribe(f.event_id, None).await.unwrap();
    let mut model = Model::start(&sub);
    catch_up(&mut model, &mut sub, f.pool(), f.event_id).await;
    let seat = *model.seats.keys().min().unwrap();

    // The event row is locked past the flush timeout: the hold is decided in memory, its
    // batch cannot commit, and the buyer hears 503.
    let mut blocker = f.pool().begin().await.unwrap();
    sqlx::query("SELECT 1 FROM events WHERE id = $1 FOR UPDATE")
        .bind(f.event_id)
        .execute(&mut *blocker)
        .await
        .unwrap();
    let request = HoldRequest {
        user_id: f.buyers[0],
        kind: HoldKind::Seats {
            seat_ids: vec![seat],
        },
        idempotency_key: None,
        session_id: None,
    };
    let answer = f.engine.hold(f.event_id, request.clone()).await;
    assert!(answer.is_err(), "no yes without a commit: {answer:?}");
    blocker.rollback().await.unwrap();
    assert_eq!(model.drain(&mut sub), 0, "nothing uncommitted was shown");
    assert_eq!(model.seats[&seat], "AVAILABLE");

    // The actor is rebuilt from PostgreSQL: a new epoch, announced with the whole state,
    // and the seat still free. Then a hold that commits is shown.
    let epoch = model.at.unwrap().epoch;
    let held = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match f.engine.hold(f.event_id, request.clone()).await {
                Ok(held) => return held,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("the rebuilt actor sells");
    assert_eq!(held.hold.seat_ids, vec![seat]);
    while model.seats[&seat] != "RESERVED" {
        next_applied(&mut model, &mut sub, Duration::from_secs(10)).await;
    }
    assert!(
        model.at.unwrap().epoch > epoch,
        "a new epoch after the rebuild"
    );
    assert_eq!(without_position(&model), stored(f.pool(), f.event_id).await);
}

/// Commits that come faster than the feed's interval are shown as one message, and a
/// subscriber applying it ends exactly where applying each commit would have left it. The
/// interval is an hour on tokio's clock, so nothing but the test's own `advance` can end it:
/// the test does not depend on how fast the machine commits.
#[tokio::test]
async fn commits_within_the_interval_are_shown_together() {
    let config = EngineConfig {
        stream_interval_ms: 3_600_000,
        idle_timeout_seconds: 86_400,
        // The feed's fan-out and the actors share this test's clock.
        actor_thread: false,
        ..EngineConfig::default()
    };
    let f = fixture(4, 4, 86_400, config).await;
    f.reserved("Stalls", 2, 5).await;
    f.open_sale().await;
    let mut sub = f.engine.subscribe(f.event_id, None).await.unwrap();
    let mut model = Model::start(&sub);
    // Let the feed show the set-up's commits and come to rest: each round ends the feed's
    // interval; a round that shows nothing leaves it waiting for the next commit.
    loop {
        tokio::time::pause();
        tokio::time::advance(Duration::from_secs(3_601)).await;
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        tokio::time::resume();
        if model.drain(&mut sub) == 0 {
            break;
        }
    }
    assert_eq!(without_position(&model), stored(f.pool(), f.event_id).await);
    let mut seats: Vec<i64> = model.seats.keys().copied().collect();
    seats.sort_unstable();
    let hold = |buyer: usize, seat: i64| {
        let engine = f.engine.clone();
        let (event_id, user_id) = (f.event_id, f.buyers[buyer]);
        async move {
            let request = HoldRequest {
                user_id,
                kind: HoldKind::Seats {
                    seat_ids: vec![seat],
                },
                idempotency_key: None,
                session_id: None,
            };
            engine.hold(event_id, request).await.unwrap();
        }
    };

    // After a quiet spell a commit is shown at once.
    hold(0, seats[0]).await;
    next_applied(&mut model, &mut sub, Duration::from_secs(10)).await;
    assert_eq!(model.seats[&seats[0]], "RESERVED");
    let first = model.at.unwrap();

    // Three more commits (each acknowledged, so durable) while the feed rests: none shown.
    for (buyer, &seat) in seats[1..4].iter().enumerate() {
        hold(buyer + 1, seat).await;
    }
    tokio::task::yield_now().await;
    assert_eq!(model.drain(&mut sub), 0, "the feed rests for its interval");

    // The interval ends: one message with all three.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(3_601)).await;
    let m = tokio::time::timeout(Duration::from_secs(10), sub.receiver.recv())
        .await
        .expect("the rested feed sends")
        .expect("open");
    tokio::time::resume();
    assert_eq!(m.kind, MessageKind::Change);
    assert_eq!(m.at.seq, first.seq + 1, "one message for the three commits");
    let data: Value = serde_json::from_str(m.data()).unwrap();
    let changed = data["seats"].as_object().unwrap();
    assert_eq!(changed.len(), 1, "only newly held seats: {changed:?}");
    assert_eq!(seat_ids(&changed["RESERVED"]), seats[1..4].to_vec());
    assert!(model.apply(&m));
    assert_eq!(without_position(&model), stored(f.pool(), f.event_id).await);
}
