//! `--scenario queue`: an on-sale through the waiting room. Every buyer arrives at once,
//! before the sale opens, and joins the event's line; the sale opens (the draw); each then
//! follows their place (`GET /events/{id}/queue/me`, every `--poll-ms`), and when let in
//! holds 1–4 tickets and books them — until told SOLD_OUT.
//!
//! What it shows: joins and position reads at the crowd's rate; the holds of buyers let in
//! as fast as without the crowd (the line holds the crowd back, so admitted buyers meet
//! only each other) — compared in the same run with the same traffic on an event nobody
//! queues for (buyers arriving at the admission pace, each buying as admitted buyers do),
//! and with holds sent one at a time (the idle pipeline); the event sold exactly to
//! capacity; the rest of the line told SOLD_OUT.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};

use super::http::Http;
use super::stats::{Outcome, Rng, Series, SeriesSummary, Stats};

/// Holds sent one at a time on the idle event: the idle pipeline's level.
const IDLE_HOLDS: usize = 300;

/// Buyers of the unloaded baseline: the admitted buyers' own traffic without the crowd.
/// Enough for a p99 that is not one request, at most ~15 s of arrivals at the pace.
const BASELINE_BUYERS_MAX: usize = 400;
const BASELINE_BUYERS_MIN: usize = 100;
const BASELINE_SECONDS: f64 = 15.0;

/// What the queue scenario adds to the report.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueReport {
    /// From the first join until the last buyer was done.
    pub seconds: f64,
    pub buyers: usize,
    pub admit_per_minute: u32,
    pub joins: SeriesSummary,
    pub position_reads: SeriesSummary,
    /// Holds of buyers let in, under the crowd.
    pub admitted_holds: SeriesSummary,
    /// The unloaded baseline, before the crowd, on an event without a waiting room: buyers
    /// arriving at the admission pace (Poisson), each holding 1–4 tickets and booking them
    /// as admitted buyers do — the admitted buyers' own traffic, without the crowd.
    pub unloaded_holds: SeriesSummary,
    pub unloaded_buyers: usize,
    /// Holds sent one at a time to that event (nothing else in flight): the idle pipeline.
    pub idle_holds: SeriesSummary,
    /// admitted p99 / unloaded p99, as the generator saw them.
    pub hold_p99_ratio: f64,
    /// The server's own p99 of granted holds (its histogram's growth over each phase), in
    /// ms: under the crowd, unloaded (same traffic, no crowd), and idle (one at a time).
    pub server_admitted_hold_p99_ms: Option<f64>,
    pub server_unloaded_hold_p99_ms: Option<f64>,
    pub server_idle_hold_p99_ms: Option<f64>,
    /// server admitted p99 / server unloaded p99: the crowd's cost to the admitted.
    pub server_hold_p99_ratio: Option<f64>,
    /// Buyers let in (they bought, or found nothing left).
    pub admitted: u64,
    /// Buyers told SOLD_OUT while waiting.
    pub told_sold_out: u64,
    /// Buyers still waiting at the deadline.
    pub still_waiting: u64,
    /// Seconds from the opening until the line was told SOLD_OUT.
    pub drained_after_seconds: Option<f64>,
}

/// The parts of an API answer the scenario reads.
#[derive(serde::Deserialize)]
struct Answer {
    data: Value,
}

/// Times a request is sent again after a 503 (with `Retry-After`) or a broken connection,
/// as a browser would. Safe: joining again answers the same entry, and holds carry an
/// idempotency key.
const RETRIES_AFTER_SHED_MAX: u32 = 60;

/// Sends a request; returns status, `data`, and the latency in µs (from when it got a
/// connection of the generator's pool).
async fn send(
    crowd: &Crowd,
    method: hyper::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value, u64) {
    send_keyed(crowd, method, path, token, None, body).await
}

async fn send_keyed(
    crowd: &Crowd,
    method: hyper::Method,
    path: &str,
    token: &str,
    key: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, u64) {
    let _slot = crowd.slots.acquire().await.expect("never closed");
    let http = &crowd.http;
    let started = Instant::now();
    let body = body.map(|b| Bytes::from(b.to_string()));
    let answer = http.send(method, path, Some(token), key, body).await;
    let us = started.elapsed().as_micros() as u64;
    match answer {
        Some((status, bytes)) => {
            let data = serde_json::from_slice::<Answer>(&bytes)
                .map(|a| a.data)
                .unwrap_or(Value::Null);
            (status, data, us)
        }
        None => (0, Value::Null, us),
    }
}

/// Sends until the answer is not a 503 (waiting `Retry-After`, 1 s, in between), recording
/// every attempt.
async fn send_until_admitted(
    crowd: &Crowd,
    series: &mut Series,
    method: hyper::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    // One key for every attempt: a retry of a request whose answer was lost is a replay.
    let key = uuid::Uuid::new_v4().simple().to_string();
    let key = (method == hyper::Method::POST).then_some(key.as_str());
    let mut attempts = 0;
    loop {
        let (status, data, us) =
            send_keyed(crowd, method.clone(), path, token, key, body.clone()).await;
        series.record(Outcome::of(status), us);
        attempts += 1;
        let retry = status == 503 || status == 0;
        if !retry || attempts > RETRIES_AFTER_SHED_MAX || Instant::now() > crowd.deadline {
            return (status, data);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The idle pipeline: `IDLE_HOLDS` holds of one ticket, one at a time, on an event without a
/// waiting room.
pub async fn idle_holds(crowd: &Crowd, event_id: i64, section_id: i64, token: &str) -> Series {
    let mut series = Series::default();
    let path = format!("/events/{event_id}/reservations");
    for _ in 0..IDLE_HOLDS {
        let body = json!({"type": "GENERAL", "sectionId": section_id, "quantity": 1});
        let (status, _, us) = send(crowd, hyper::Method::POST, &path, token, Some(body)).await;
        series.record(Outcome::of(status), us);
    }
    series
}

/// How many buyers the unloaded baseline sends at `admit_per_minute`.
pub fn baseline_buyers(admit_per_minute: u32) -> usize {
    let per_second = f64::from(admit_per_minute.max(1)) / 60.0;
    ((per_second * BASELINE_SECONDS) as usize).clamp(BASELINE_BUYERS_MIN, BASELINE_BUYERS_MAX)
}

/// The unloaded baseline: `tokens.len()` buyers arrive at `admit_per_minute` (exponential
/// gaps, as buyers let in at that pace reach the sale), on an event nobody queues for, and
/// each buys as an admitted buyer does ([`buy`]). Returns their holds and confirmations.
pub async fn unloaded_buyers(
    crowd: Arc<Crowd>,
    event_id: i64,
    section_id: i64,
    tokens: &[String],
    admit_per_minute: u32,
) -> Stats {
    let mean_gap_s = 60.0 / f64::from(admit_per_minute.max(1));
    let mut rng = Rng::new(0x5EED);
    let mut at = tokio::time::Instant::now();
    let mut buyers = tokio::task::JoinSet::new();
    for (i, token) in tokens.iter().enumerate() {
        // Inverse transform of a uniform draw in (0, 1].
        let u = (rng.below(1_000_000) + 1) as f64 / 1_000_000.0;
        at += Duration::from_secs_f64(-u.ln() * mean_gap_s);
        tokio::time::sleep_until(at).await;
        let (crowd, token) = (crowd.clone(), token.clone());
        buyers.spawn(async move {
            let mut stats = Stats::default();
            let mut rng = Rng::new(i as u64 + 1);
            buy(&crowd, event_id, section_id, &mut stats, &mut rng, &token).await;
            stats
        });
    }
    let mut stats = Stats::default();
    while let Some(done) = buyers.join_next().await {
        if let Ok(s) = done {
            stats.merge(s);
        }
    }
    stats
}

/// What one buyer measured and was acknowledged.
#[derive(Default)]
struct Buyer {
    stats: Stats,
    positions: Series,
    admitted: bool,
    told_sold_out: bool,
}

/// The crowd's shared state.
pub struct Crowd {
    pub http: Http,
    /// The generator's connections: a request waits for one (`--concurrency`), as the
    /// other scenarios' closed loops do — thousands of buyers, a bounded pool of sockets.
    pub slots: tokio::sync::Semaphore,
    pub event_id: i64,
    pub section_id: i64,
    pub poll: Duration,
    pub deadline: Instant,
    pub started: Instant,
    /// µs after `started` when a buyer was first told SOLD_OUT.
    pub drained_after_us: AtomicU64,
}

/// A buyer joins the line (before the sale opens: the crowd is there first).
async fn join(crowd: Arc<Crowd>, token: String) -> (String, Series, bool) {
    let mut joins = Series::default();
    let (status, _) = send_until_admitted(
        &crowd,
        &mut joins,
        hyper::Method::POST,
        &format!("/events/{}/queue", crowd.event_id),
        &token,
        None,
    )
    .await;
    (token, joins, status == 200)
}

/// A buyer in line follows their place until let in (then buys) or told SOLD_OUT.
async fn buyer(crowd: Arc<Crowd>, token: String, seed: u64) -> Buyer {
    let mut me = Buyer::default();
    let mut rng = Rng::new(seed);
    let base = format!("/events/{}", crowd.event_id);
    // Each buyer's page polls on its own fixed schedule (the page's `setInterval`), its
    // phase set by when the page was opened: spread over the interval, and kept. Sleeping
    // the interval after each answer instead would let every stall of the generator or the
    // server line the buyers' polls up, until whole groups of them ask — and, once let in,
    // hold — in the same millisecond, which no crowd of separate browsers does.
    let first = crowd.poll.mul_f64(rng.below(1000) as f64 / 1000.0);
    let mut schedule = tokio::time::interval_at(tokio::time::Instant::now() + first, crowd.poll);
    schedule.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let place = format!("{base}/queue/me");
    while Instant::now() < crowd.deadline {
        schedule.tick().await;
        let (status, data, us) = send(&crowd, hyper::Method::GET, &place, &token, None).await;
        me.positions.record(Outcome::of(status), us);
        match data["status"].as_str() {
            Some("ADMITTED") => {
                me.admitted = true;
                let (event_id, section_id) = (crowd.event_id, crowd.section_id);
                buy(
                    &crowd,
                    event_id,
                    section_id,
                    &mut me.stats,
                    &mut rng,
                    &token,
                )
                .await;
                return me;
            }
            Some("SOLD_OUT") => {
                me.told_sold_out = true;
                let at = crowd.started.elapsed().as_micros() as u64;
                let _ = crowd.drained_after_us.compare_exchange(
                    0,
                    at,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                return me;
            }
            _ => {}
        }
    }
    me
}

/// A buyer let in: 1–4 tickets (fewer when fewer are left) of `section_id`, then the
/// booking.
async fn buy(
    crowd: &Crowd,
    event_id: i64,
    section_id: i64,
    stats: &mut Stats,
    rng: &mut Rng,
    token: &str,
) {
    let path = format!("/events/{event_id}/reservations");
    let mut quantity = 1 + rng.below(4);
    while quantity > 0 {
        let body = json!({"type": "GENERAL", "sectionId": section_id, "quantity": quantity});
        let (status, data) = send_until_admitted(
            crowd,
            &mut stats.holds,
            hyper::Method::POST,
            &path,
            token,
            Some(body),
        )
        .await;
        if status == 201 {
            let Some(id) = data["id"].as_i64() else {
                return;
            };
            stats.acked_holds.push(id);
            let body = json!({"reservationIds": [id]});
            let (_, data) = send_until_admitted(
                crowd,
                &mut stats.confirms,
                hyper::Method::POST,
                "/bookings",
                token,
                Some(body),
            )
            .await;
            if let Some(reference) = data["bookingReference"].as_str() {
                stats.acked_bookings.push(reference.to_string());
            }
            return;
        }
        if status != 409 {
            return;
        }
        // Fewer left than asked: ask for fewer.
        quantity -= 1;
    }
}

/// Runs the crowd: every buyer joins at once before the sale opens; `open` opens it (the
/// draw); then every buyer follows their place. Returns what they measured and the queue
/// report (without the baseline, which the caller measured).
pub async fn crowd<F: std::future::Future<Output = anyhow::Result<()>>>(
    crowd: Arc<Crowd>,
    tokens: &[String],
    open: F,
) -> anyhow::Result<(Stats, QueueReport)> {
    let mut joining = tokio::task::JoinSet::new();
    for token in tokens {
        joining.spawn(join(crowd.clone(), token.clone()));
    }
    let mut joins = Series::default();
    let mut in_line = Vec::new();
    while let Some(joined) = joining.join_next().await {
        let (token, series, ok) = joined?;
        joins.merge(&series);
        if ok {
            in_line.push(token);
        }
    }
    let joined_in = crowd.started.elapsed().as_secs_f64();
    open.await?;
    let mut buyers = tokio::task::JoinSet::new();
    for (i, token) in in_line.into_iter().enumerate() {
        buyers.spawn(buyer(crowd.clone(), token, i as u64 + 1));
    }
    let mut positions = Series::default();
    let mut stats = Stats::default();
    let (mut admitted, mut told, mut waiting) = (0, 0, 0);
    while let Some(done) = buyers.join_next().await {
        let Ok(b) = done else { continue };
        positions.merge(&b.positions);
        admitted += u64::from(b.admitted);
        told += u64::from(b.told_sold_out);
        waiting += u64::from(!b.admitted && !b.told_sold_out);
        stats.merge(b.stats);
    }
    let seconds = crowd.started.elapsed().as_secs_f64();
    let drained = crowd.drained_after_us.load(Ordering::Relaxed);
    let report = QueueReport {
        seconds,
        buyers: tokens.len(),
        admit_per_minute: 0,
        joins: joins.summary(joined_in),
        position_reads: positions.summary(seconds),
        admitted_holds: stats.holds.summary(seconds),
        unloaded_holds: Series::default().summary(1.0),
        unloaded_buyers: 0,
        idle_holds: Series::default().summary(1.0),
        hold_p99_ratio: 0.0,
        server_admitted_hold_p99_ms: None,
        server_unloaded_hold_p99_ms: None,
        server_idle_hold_p99_ms: None,
        server_hold_p99_ratio: None,
        admitted,
        told_sold_out: told,
        still_waiting: waiting,
        drained_after_seconds: (drained > 0).then(|| drained as f64 / 1e6),
    };
    Ok((stats, report))
}

/// The buckets (upper bound in seconds → cumulative count) of the server's histogram of
/// granted holds, from its `/metrics`.
pub async fn granted_hold_buckets(client: &reqwest::Client, target: &str) -> Vec<(f64, f64)> {
    let Ok(response) = client.get(format!("{target}/metrics")).send().await else {
        return Vec::new();
    };
    let text = response.text().await.unwrap_or_default();
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with("boxoffice_http_request_duration_seconds_bucket{"))
        .filter(|l| {
            l.contains(r#"route="/events/{id}/reservations""#) && l.contains(r#"status="201""#)
        })
        .filter_map(|l| {
            let le = l.split(r#"le=""#).nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count: f64 = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The p99 in ms of what a histogram gained between two scrapes (linear within a bucket,
/// as Prometheus' `histogram_quantile`); `None` when nothing was recorded.
pub fn p99_between(before: &[(f64, f64)], after: &[(f64, f64)]) -> Option<f64> {
    let grown: Vec<(f64, f64)> = after
        .iter()
        .map(|&(le, n)| {
            let was = before.iter().find(|b| b.0 == le).map_or(0.0, |b| b.1);
            (le, n - was)
        })
        .collect();
    let total = grown.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = 0.99 * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, count) in grown {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower * 1000.0);
            }
            let within = (rank - below) / (count - below).max(1e-9);
            return Some((lower + (le - lower) * within) * 1000.0);
        }
        (lower, below) = (le, count);
    }
    Some(lower * 1000.0)
}
