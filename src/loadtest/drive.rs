//! Driving load: closed loop (`--concurrency` workers, each sending its next request when
//! the last one is answered) or open loop (`--rate` requests started on schedule whatever
//! the latency, so queueing shows instead of hiding in the generator).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
}

/// What every worker shares.
pub struct Ctx {
    pub client: reqwest::Client,
    pub target: String,
    pub event_id: i64,
    pub section_id: i64,
    pub tokens: Vec<String>,
    pub discount_code: Option<String>,
    pub read_path: String,
    pub action: Action,
    pub deadline: Instant,
    /// Set when the run should end early (sold out).
    pub done: AtomicBool,
    /// When the sellout was seen complete, µs after `started`.
    pub sold_out_after_us: AtomicU64,
    pub started: Instant,
    pub progress: ProgressBar,
    /// Requests sent, for the open loop's in-flight bound.
    pub in_flight: AtomicU64,
}

impl Ctx {
    fn running(&self) -> bool {
        !self.done.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }
}

/// Sends one request; returns the status (0 for a transport error), the body when it was
/// JSON and asked for, and the latency in µs measured from `since`.
async fn send(ctx: &Ctx, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>, key: bool, since: Instant) -> (u16, Option<Value>, u64) {
    let mut request = ctx.client.request(method, format!("{}{path}", ctx.target));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    if key {
        request = request.header("idempotency-key", uuid::Uuid::new_v4().simple().to_string());
    }
    if let Some(b) = body {
        request = request.json(&b);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let parsed = if status == 201 || status == 200 || status == 409 {
                response.json::<Value>().await.ok()
            } else {
                let _ = response.bytes().await;
                None
            };
            (status, parsed, since.elapsed().as_micros() as u64)
        }
        Err(_) => (0, None, since.elapsed().as_micros() as u64),
    }
}

/// One iteration of `ctx.action` for buyer `buyer`, scheduled at `since` (open loop: the
/// intended start, so time spent waiting to be sent counts as latency).
pub async fn iteration(ctx: &Ctx, stats: &mut Stats, rng: &mut Rng, buyer: usize, since: Instant) {
    let token = ctx.tokens[buyer % ctx.tokens.len()].as_str();
    match ctx.action {
        Action::Read => {
            let (status, _, us) = send(ctx, reqwest::Method::GET, &ctx.read_path, None, None, false, since).await;
            stats.reads.record(Outcome::of(status), us);
        }
        Action::HotGaHold => {
            let body = json!({"type": "GENERAL", "sectionId": ctx.section_id, "quantity": 2});
            let path = format!("/events/{}/reservations", ctx.event_id);
            let (status, parsed, us) = send(ctx, reqwest::Method::POST, &path, Some(token), Some(body), true, since).await;
            stats.holds.record(Outcome::of(status), us);
            if status == 201 {
                if let Some(id) = parsed.as_ref().and_then(|v| v["data"]["id"].as_i64()) {
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
    let body = json!({"type": "BEST_AVAILABLE", "sectionId": ctx.section_id, "quantity": quantity, "allowSplit": allow_split});
    let path = format!("/events/{}/reservations", ctx.event_id);
    let (status, parsed, us) = send(ctx, reqwest::Method::POST, &path, Some(token), Some(body), true, since).await;
    stats.holds.record(Outcome::of(status), us);
    match status {
        201 => {
            let Some(id) = parsed.as_ref().and_then(|v| v["data"]["id"].as_i64()) else { return };
            stats.acked_holds.push(id);
            let roll = rng.below(100);
            if roll < 10 {
                stats.abandoned += 1; // left to expire
                return;
            }
            let mut booking = json!({"reservationIds": [id]});
            if roll < 35 {
                booking["discountCode"] = json!(ctx.discount_code);
            }
            let started = Instant::now();
            let (status, parsed, us) = send(ctx, reqwest::Method::POST, "/bookings", Some(token), Some(booking), true, started).await;
            stats.confirms.record(Outcome::of(status), us);
            if status == 201 {
                if let Some(reference) = parsed.as_ref().and_then(|v| v["data"]["bookingReference"].as_str()) {
                    stats.acked_bookings.push(reference.to_string());
                }
            }
        }
        409 => {
            let code = parsed.as_ref().and_then(|v| v["error"]["code"].as_str()).unwrap_or_default().to_string();
            if code == "SOLD_OUT" || code == "SEAT_UNAVAILABLE" {
                // Sold out for good, or only until abandoned holds expire?
                let inventory = format!("/events/{}/inventory", ctx.event_id);
                let (_, parsed, _) = send(ctx, reqwest::Method::GET, &inventory, None, None, false, Instant::now()).await;
                let data = parsed.map(|v| v["data"].clone()).unwrap_or_default();
                if data["available"].as_u64() == Some(0) && data["held"].as_u64() == Some(0) {
                    let at = ctx.started.elapsed().as_micros() as u64;
                    let _ = ctx.sold_out_after_us.compare_exchange(0, at, Ordering::SeqCst, Ordering::SeqCst);
                    ctx.done.store(true, Ordering::Relaxed);
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        _ => {}
    }
}

/// Closed loop: `concurrency` workers until the deadline (or sold out).
pub async fn closed_loop(ctx: Arc<Ctx>, concurrency: usize) -> Stats {
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let mut stats = Stats::default();
                let mut rng = Rng::new(w as u64 + 1);
                let mut buyer = w;
                while ctx.running() {
                    iteration(&ctx, &mut stats, &mut rng, buyer, Instant::now()).await;
                    buyer += concurrency;
                    ctx.progress.inc(1);
                }
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

/// Open loop: `rate` requests per second, each started on schedule in its own task, at
/// most `max_in_flight` outstanding (beyond that the generator itself is saturated and
/// says so rather than silently slowing the schedule).
pub async fn open_loop(ctx: Arc<Ctx>, rate: u64, max_in_flight: u64) -> (Stats, u64) {
    let shared = Arc::new(Mutex::new(Stats::default()));
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut next = Instant::now();
    let mut sent = 0u64;
    let mut skipped = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    while ctx.running() {
        tokio::time::sleep_until(next.into()).await;
        let due = next;
        next += interval;
        if ctx.in_flight.load(Ordering::Relaxed) >= max_in_flight {
            skipped += 1;
            continue;
        }
        ctx.in_flight.fetch_add(1, Ordering::Relaxed);
        let ctx2 = ctx.clone();
        let shared = shared.clone();
        let buyer = sent as usize;
        sent += 1;
        tasks.spawn(async move {
            let mut stats = Stats::default();
            let mut rng = Rng::new(buyer as u64 + 1);
            iteration(&ctx2, &mut stats, &mut rng, buyer, due).await;
            ctx2.in_flight.fetch_sub(1, Ordering::Relaxed);
            ctx2.progress.inc(1);
            shared.lock().expect("not poisoned").merge(stats);
        });
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let stats = std::mem::take(&mut *shared.lock().expect("not poisoned"));
    (stats, skipped)
}
