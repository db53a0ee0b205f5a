//! Driving load: closed loop (`--concurrency` workers, each sending its next request when
//! the last one is answered) or open loop (`--rate` requests started on schedule whatever
//! the latency, so queueing shows instead of hiding in the generator).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde_json::{json, Value};

use super::stats::{Outcome, Rng, Stats};

/// What one iteration of a worker does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// A GENERAL hold of 2 tickets.
    HotGaHold,
    /// A best-available hold of 1–4 seats, then (mostly) a booking.
    SelloutBuy,
    /// A GET of a fixed path.
    Read,
    /// A GET of a fixed path as the buyer.
    ReadAsBuyer,
    /// A GENERAL hold of 1 (not measured), then its confirmation (measured).
    Confirm,
}

/// What every worker shares.
pub struct Ctx {
    pub http: super::http::Http,
    pub tokens: Vec<String>,
    pub discount_code: Option<String>,
    pub action: Action,
    /// The scenario's requests, prepared once.
    pub requests: Requests,
    /// Distinguishes this run's idempotency keys.
    pub run_id: String,
    pub keys_issued: AtomicU64,
    pub deadline: Instant,
    /// Requests started before this are warm-up: their outcomes are checked in PostgreSQL
    /// but not counted in the latency and throughput figures.
    pub measure_from: Instant,
    /// Set when the run should end early (sold out).
    pub done: AtomicBool,
    /// When the sellout was seen complete, µs after `started`.
    pub sold_out_after_us: AtomicU64,
    pub started: Instant,
    pub progress: ProgressBar,
    /// Requests sent, for the open loop's in-flight bound.
    pub in_flight: AtomicU64,
    /// Places of the event's section: the sellout's first pass ends when as many have been
    /// handed out in acknowledged holds.
    pub capacity: u64,
    /// Holds acknowledged and the places they hold, warm-up included (sellout).
    pub holds_acked: AtomicU64,
    pub places_acked: AtomicU64,
    /// When the acknowledged places first reached `capacity`: µs after `started`, and the
    /// holds acknowledged by then.
    pub first_pass: std::sync::OnceLock<(u64, u64)>,
}

impl Ctx {
    fn running(&self) -> bool {
        !self.done.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }

    /// A fresh idempotency key: unique per run and request, cheap to make.
    fn key(&self) -> String {
        format!(
            "{}-{}",
            self.run_id,
            self.keys_issued.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// The parts of an answer the generator reads. Parsing only these (not a whole JSON tree)
/// keeps the generator's CPU, which shares the machine with the server, low.
#[derive(serde::Deserialize, Default)]
struct Answer {
    #[serde(default)]
    data: AnswerData,
    #[serde(default)]
    error: AnswerError,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AnswerData {
    id: Option<i64>,
    quantity: Option<u64>,
    booking_reference: Option<String>,
    available: Option<u64>,
    held: Option<u64>,
}

#[derive(serde::Deserialize, Default)]
struct AnswerError {
    #[serde(default)]
    code: String,
}

/// The requests of a scenario, prepared once.
pub struct Requests {
    pub read: Prepared,
    pub hot_ga: Prepared,
    pub one_ticket: Prepared,
    /// Best-available holds by (quantity − 1) × 2 + split.
    pub best: Vec<Prepared>,
    pub inventory: Prepared,
    pub booking: Prepared,
}

impl Requests {
    /// The requests of a scenario on `event_id` / `section_id`, reading `read_path`.
    pub fn new(event_id: i64, section_id: i64, read_path: &str) -> Requests {
        let holds = format!("/events/{event_id}/reservations");
        let hot_ga = Prepared::new(
            &holds,
            Some(json!({"type": "GENERAL", "sectionId": section_id, "quantity": 2})),
        );
        let one_ticket = Prepared::new(
            &holds,
            Some(json!({"type": "GENERAL", "sectionId": section_id, "quantity": 1})),
        );
        let mut best = Vec::new();
        for quantity in 1..=4 {
            for split in [false, true] {
                best.push(Prepared::new(&holds, Some(json!({
                    "type": "BEST_AVAILABLE", "sectionId": section_id, "quantity": quantity, "allowSplit": split
                }))));
            }
        }
        Requests {
            read: Prepared::new(read_path, None),
            hot_ga,
            one_ticket,
            best,
            inventory: Prepared::new(&format!("/events/{event_id}/inventory"), None),
            booking: Prepared::new("/bookings", None),
        }
    }
}

/// A request ready to send: the path fixed once, the body serialized once.
pub struct Prepared {
    pub path: String,
    pub body: Option<bytes::Bytes>,
}

impl Prepared {
    pub fn new(path: &str, body: Option<Value>) -> Prepared {
        Prepared {
            path: path.to_string(),
            body: body.map(|b| bytes::Bytes::from(serde_json::to_vec(&b).expect("JSON"))),
        }
    }
}

/// Sends one request; returns the status (0 for a transport error), the parsed answer for
/// statuses whose body matters, and the latency in µs measured from `since`.
async fn send(
    ctx: &Ctx,
    method: hyper::Method,
    prepared: &Prepared,
    token: Option<&str>,
    key: Option<String>,
    since: Instant,
) -> (u16, Option<Answer>, u64) {
    let sent = ctx
        .http
        .send(
            method,
            &prepared.path,
            token,
            key.as_deref(),
            prepared.body.clone(),
        )
        .await;
    let us = since.elapsed().as_micros() as u64;
    match sent {
        Some((status, bytes)) => {
            let parsed = matches!(status, 200 | 201 | 409)
                .then(|| serde_json::from_slice::<Answer>(&bytes).ok())
                .flatten();
            (status, parsed, us)
        }
        None => (0, None, us),
    }
}

/// One iteration of `ctx.action` for buyer `buyer`, scheduled at `since` (open loop: the
/// intended start, so time spent waiting to be sent counts as latency).
pub async fn iteration(ctx: &Ctx, stats: &mut Stats, rng: &mut Rng, buyer: usize, since: Instant) {
    let token = ctx.tokens[buyer % ctx.tokens.len()].as_str();
    match ctx.action {
        Action::Read => {
            let (status, _, us) = send(
                ctx,
                hyper::Method::GET,
                &ctx.requests.read,
                None,
                None,
                since,
            )
            .await;
            stats.reads.record(Outcome::of(status), us);
        }
        Action::ReadAsBuyer => {
            let (status, _, us) = send(
                ctx,
                hyper::Method::GET,
                &ctx.requests.read,
                Some(token),
                None,
                since,
            )
            .await;
            stats.reads.record(Outcome::of(status), us);
        }
        Action::Confirm => {
            let (status, parsed, _) = send(
                ctx,
                hyper::Method::POST,
                &ctx.requests.one_ticket,
                Some(token),
                None,
                since,
            )
            .await;
            let Some(id) = (status == 201)
                .then(|| parsed.and_then(|a| a.data.id))
                .flatten()
            else {
                stats.holds.record(Outcome::of(status), 1);
                return;
            };
            stats.acked_holds.push(id);
            confirm(ctx, stats, token, json!({"reservationIds": [id]})).await;
        }
        Action::HotGaHold => {
            let (status, parsed, us) = send(
                ctx,
                hyper::Method::POST,
                &ctx.requests.hot_ga,
                Some(token),
                Some(ctx.key()),
                since,
            )
            .await;
            stats.holds.record(Outcome::of(status), us);
            if status == 201 {
                if let Some(id) = parsed.and_then(|a| a.data.id) {
                    stats.acked_holds.push(id);
                }
            }
        }
        Action::SelloutBuy => sellout_buy(ctx, stats, rng, token, since).await,
    }
}

async fn sellout_buy(ctx: &Ctx, stats: &mut Stats, rng: &mut Rng, token: &str, since: Instant) {
    let quantity = 1 + rng.below(4);
    // Most buyers want seats together; some accept split seats, which is also how the last
    // scattered singles get sold.
    let allow_split = rng.below(4) == 0;
    let hold = &ctx.requests.best[((quantity - 1) * 2 + u64::from(allow_split)) as usize];
    let (status, parsed, us) = send(
        ctx,
        hyper::Method::POST,
        hold,
        Some(token),
        Some(ctx.key()),
        since,
    )
    .await;
    stats.holds.record(Outcome::of(status), us);
    match status {
        201 => {
            let Some(data) = parsed.map(|a| a.data) else {
                return;
            };
            let Some(id) = data.id else {
                return;
            };
            stats.acked_holds.push(id);
            let holds = ctx.holds_acked.fetch_add(1, Ordering::Relaxed) + 1;
            let places = data.quantity.unwrap_or(0);
            let before = ctx.places_acked.fetch_add(places, Ordering::Relaxed);
            if before < ctx.capacity && before + places >= ctx.capacity {
                let at = ctx.started.elapsed().as_micros() as u64;
                let _ = ctx.first_pass.set((at, holds));
            }
            let roll = rng.below(100);
            if roll < 10 {
                stats.abandoned += 1; // left to expire
                return;
            }
            let mut booking = json!({"reservationIds": [id]});
            if roll < 35 {
                booking["discountCode"] = json!(ctx.discount_code);
            }
            confirm(ctx, stats, token, booking).await;
        }
        409 => {
            let code = parsed.map(|a| a.error.code).unwrap_or_default();
            if code == "SOLD_OUT" || code == "SEAT_UNAVAILABLE" {
                // Sold out for good, or only until abandoned holds expire?
                let (_, parsed, _) = send(
                    ctx,
                    hyper::Method::GET,
                    &ctx.requests.inventory,
                    None,
                    None,
                    Instant::now(),
                )
                .await;
                let data = parsed.map(|a| a.data).unwrap_or_default();
                if data.available == Some(0) && data.held == Some(0) {
                    let at = ctx.started.elapsed().as_micros() as u64;
                    let _ = ctx.sold_out_after_us.compare_exchange(
                        0,
                        at,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                    ctx.done.store(true, Ordering::Relaxed);
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        _ => {}
    }
}

/// Confirms a hold into a booking (`POST /bookings` with `body`), timing it and remembering
/// the reference if it was acknowledged.
async fn confirm(ctx: &Ctx, stats: &mut Stats, token: &str, body: Value) {
    let request = Prepared {
        path: ctx.requests.booking.path.clone(),
        body: Some(bytes::Bytes::from(serde_json::to_vec(&body).expect("JSON"))),
    };
    let started = Instant::now();
    let (status, parsed, us) = send(
        ctx,
        hyper::Method::POST,
        &request,
        Some(token),
        Some(ctx.key()),
        started,
    )
    .await;
    stats.confirms.record(Outcome::of(status), us);
    if let Some(reference) = parsed.and_then(|a| a.data.booking_reference) {
        stats.acked_bookings.push(reference);
    }
}

/// Closed loop: `concurrency` workers until the deadline (or sold out).
pub async fn closed_loop(ctx: Arc<Ctx>, concurrency: usize) -> Stats {
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let (mut warm, mut stats) = (Stats::default(), Stats::default());
                let mut rng = Rng::new(w as u64 + 1);
                let mut buyer = w;
                while ctx.running() {
                    let now = Instant::now();
                    let into = if now < ctx.measure_from {
                        &mut warm
                    } else {
                        &mut stats
                    };
                    iteration(&ctx, into, &mut rng, buyer, now).await;
                    buyer += concurrency;
                    ctx.progress.inc(1);
                }
                stats.keep_acknowledgements_of(warm);
                stats
            })
        })
        .collect();
    let mut total = Stats::default();
    for w in workers {
        total.merge(w.await.expect("worker"));
    }
    total
}

/// Open loop: `rate` requests per second on schedule, sent by a fixed pool of
/// `max_in_flight` workers (each one request at a time over its own pooled connection).
///
/// A dispatcher wakes every millisecond and hands out every request that has come due
/// since, each stamped with the instant it was scheduled for; latency is measured from that
/// instant, so time spent waiting for a free worker counts (no coordinated omission). A
/// request due when every worker is busy and the queue of due requests is full is skipped
/// and counted: the generator says it is saturated rather than quietly slowing its
/// schedule. Nothing is spawned per request, so the generator's own cost stays flat.
pub async fn open_loop(ctx: Arc<Ctx>, rate: u64, max_in_flight: u64) -> (Stats, Dispatch) {
    let workers = max_in_flight.clamp(1, 20_000) as usize;
    // The pool is open before the first request is due (inside the warm-up).
    ctx.http.open(workers).await;
    let (due_tx, due_rx) = due_queue(workers);
    let pool: Vec<_> = (0..workers)
        .map(|w| {
            let (ctx, due_rx) = (ctx.clone(), due_rx.clone());
            tokio::spawn(async move {
                let (mut warm, mut stats) = (Stats::default(), Stats::default());
                let mut rng = Rng::new(w as u64 + 1);
                while let Some((buyer, due)) = next_due(&due_rx).await {
                    let into = if due < ctx.measure_from {
                        &mut warm
                    } else {
                        &mut stats
                    };
                    ctx.in_flight.fetch_add(1, Ordering::Relaxed);
                    iteration(&ctx, into, &mut rng, buyer, due).await;
                    ctx.in_flight.fetch_sub(1, Ordering::Relaxed);
                    ctx.progress.inc(1);
                }
                stats.keep_acknowledgements_of(warm);
                stats
            })
        })
        .collect();
    drop(due_rx);

    let started = Instant::now();
    let interval_ns = 1e9 / rate.max(1) as f64;
    // Counted for the measured part only, like every other figure of the run: the warm-up
    // includes opening the pool.
    let (mut due_count, mut scheduled, mut skipped) = (0u64, 0u64, 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let running = ctx.running();
        if running {
            tick.tick().await;
        }
        // Everything due up to now, never past the deadline: the schedule is the measured
        // window's, however late the dispatcher woke, and the last pass (after the loop
        // saw the deadline) completes it.
        let until = Instant::now().min(ctx.deadline);
        let due_by = (until.duration_since(started).as_nanos() as f64 / interval_ns) as u64;
        while due_count < due_by {
            let due = started + Duration::from_nanos((due_count as f64 * interval_ns) as u64);
            let sent = due_tx.try_send((due_count as usize, due)).is_ok();
            if due >= ctx.measure_from {
                scheduled += 1;
                skipped += u64::from(!sent);
            }
            due_count += 1;
        }
        if !running {
            break;
        }
    }
    drop(due_tx);
    let mut total = Stats::default();
    for worker in pool {
        total.merge(worker.await.expect("worker"));
    }
    (total, Dispatch { scheduled, skipped })
}

/// What the open loop's schedule asked for and what it could not send.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dispatch {
    /// Requests that came due in the measured part (after the warm-up).
    pub scheduled: u64,
    /// Of those, the ones not sent: every connection busy and the queue of due requests full.
    pub skipped: u64,
}

/// A bounded multi-consumer queue of due requests: a tokio channel whose one receiver the
/// workers take turns on.
type DueSender = tokio::sync::mpsc::Sender<(usize, Instant)>;
type DueReceiver = Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<(usize, Instant)>>>;

fn due_queue(capacity: usize) -> (DueSender, DueReceiver) {
    let (tx, rx) = tokio::sync::mpsc::channel(capacity);
    (tx, Arc::new(tokio::sync::Mutex::new(rx)))
}

async fn next_due(rx: &DueReceiver) -> Option<(usize, Instant)> {
    rx.lock().await.recv().await
}
