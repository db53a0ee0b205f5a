//! `--scenario queue`: an on-sale through the waiting room. Every buyer arrives at once,
//! joins the event's line, follows their place (`GET /events/{id}/queue/me`, every
//! `--poll-ms`), and when let in holds 1–4 tickets and books them — until told SOLD_OUT.
//!
//! What it shows: joins and position reads at the crowd's rate; the holds of buyers let in
//! as fast as on an idle server (the line holds the crowd back, so admitted buyers meet no
//! crowd) — compared in the same run with holds on an event nobody queues for, sent one at a
//! time; the event sold exactly to capacity; the rest of the line told SOLD_OUT.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use serde_json::{json, Value};

use super::http::Http;
use super::stats::{Outcome, Rng, Series, SeriesSummary, Stats};

/// Holds on the idle event that make the baseline.
const BASELINE_HOLDS: usize = 300;

/// What the queue scenario adds to the report.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueReport {
    pub buyers: usize,
    pub admit_per_minute: u32,
    pub joins: SeriesSummary,
    pub position_reads: SeriesSummary,
    /// Holds of buyers let in, under the crowd.
    pub admitted_holds: SeriesSummary,
    /// Holds sent one at a time to an event without a waiting room, before the crowd.
    pub unloaded_holds: SeriesSummary,
    /// admitted p99 / unloaded p99.
    pub hold_p99_ratio: f64,
    /// Buyers let in (they bought, or found nothing left).
    pub admitted: u64,
    /// Buyers told SOLD_OUT while waiting.
    pub told_sold_out: u64,
    /// Buyers still waiting at the deadline.
    pub still_waiting: u64,
    /// Seconds from the first join until the line was told SOLD_OUT.
    pub drained_after_seconds: Option<f64>,
}

/// The parts of an API answer the scenario reads.
#[derive(serde::Deserialize)]
struct Answer {
    data: Value,
}

/// Sends a request; returns status, `data`, and the latency in µs.
async fn send(
    http: &Http,
    method: hyper::Method,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value, u64) {
    let started = Instant::now();
    let body = body.map(|b| Bytes::from(b.to_string()));
    let answer = http.send(method, path, Some(token), None, body).await;
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

/// The baseline: `BASELINE_HOLDS` holds of one ticket, one at a time, on an event without a
/// waiting room.
pub async fn unloaded_holds(http: &Http, event_id: i64, section_id: i64, token: &str) -> Series {
    let mut series = Series::default();
    let path = format!("/events/{event_id}/reservations");
    for _ in 0..BASELINE_HOLDS {
        let body = json!({"type": "GENERAL", "sectionId": section_id, "quantity": 1});
        let (status, _, us) = send(http, hyper::Method::POST, &path, token, Some(body)).await;
        series.record(Outcome::of(status), us);
    }
    series
}

/// What one buyer measured and was acknowledged.
#[derive(Default)]
struct Buyer {
    stats: Stats,
    joins: Series,
    positions: Series,
    admitted: bool,
    told_sold_out: bool,
}

/// The crowd's shared state.
pub struct Crowd {
    pub http: Http,
    pub event_id: i64,
    pub section_id: i64,
    pub poll: Duration,
    pub deadline: Instant,
    pub started: Instant,
    /// µs after `started` when a buyer was first told SOLD_OUT.
    pub drained_after_us: AtomicU64,
}

async fn buyer(crowd: Arc<Crowd>, token: String, seed: u64) -> Buyer {
    let mut me = Buyer::default();
    let mut rng = Rng::new(seed);
    let base = format!("/events/{}", crowd.event_id);
    let (status, _, us) = send(
        &crowd.http,
        hyper::Method::POST,
        &format!("{base}/queue"),
        &token,
        None,
    )
    .await;
    me.joins.record(Outcome::of(status), us);
    if status != 200 {
        return me;
    }
    // Spread the polls over the interval, as real pages would be.
    tokio::time::sleep(crowd.poll.mul_f64(rng.below(1000) as f64 / 1000.0)).await;
    let place = format!("{base}/queue/me");
    while Instant::now() < crowd.deadline {
        let (status, data, us) = send(&crowd.http, hyper::Method::GET, &place, &token, None).await;
        me.positions.record(Outcome::of(status), us);
        match data["status"].as_str() {
            Some("ADMITTED") => {
                me.admitted = true;
                buy(&crowd, &mut me.stats, &mut rng, &token).await;
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
            _ => tokio::time::sleep(crowd.poll).await,
        }
    }
    me
}

/// A buyer let in: 1–4 tickets (fewer when fewer are left), then the booking.
async fn buy(crowd: &Crowd, stats: &mut Stats, rng: &mut Rng, token: &str) {
    let path = format!("/events/{}/reservations", crowd.event_id);
    let mut quantity = 1 + rng.below(4);
    while quantity > 0 {
        let body = json!({"type": "GENERAL", "sectionId": crowd.section_id, "quantity": quantity});
        let (status, data, us) =
            send(&crowd.http, hyper::Method::POST, &path, token, Some(body)).await;
        stats.holds.record(Outcome::of(status), us);
        if status == 201 {
            let Some(id) = data["id"].as_i64() else {
                return;
            };
            stats.acked_holds.push(id);
            let body = json!({"reservationIds": [id]});
            let (status, data, us) = send(
                &crowd.http,
                hyper::Method::POST,
                "/bookings",
                token,
                Some(body),
            )
            .await;
            stats.confirms.record(Outcome::of(status), us);
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

/// Runs the crowd: every buyer at once. Returns what they measured and the queue report
/// (without the baseline, which the caller measured).
pub async fn crowd(crowd: Arc<Crowd>, tokens: &[String]) -> (Stats, QueueReport) {
    let mut buyers = tokio::task::JoinSet::new();
    for (i, token) in tokens.iter().enumerate() {
        buyers.spawn(buyer(crowd.clone(), token.clone(), i as u64 + 1));
    }
    let (mut joins, mut positions) = (Series::default(), Series::default());
    let mut stats = Stats::default();
    let (mut admitted, mut told, mut waiting) = (0, 0, 0);
    while let Some(done) = buyers.join_next().await {
        let Ok(b) = done else { continue };
        joins.merge(&b.joins);
        positions.merge(&b.positions);
        admitted += u64::from(b.admitted);
        told += u64::from(b.told_sold_out);
        waiting += u64::from(!b.admitted && !b.told_sold_out);
        stats.merge(b.stats);
    }
    let seconds = crowd.started.elapsed().as_secs_f64();
    let drained = crowd.drained_after_us.load(Ordering::Relaxed);
    let report = QueueReport {
        buyers: tokens.len(),
        admit_per_minute: 0,
        joins: joins.summary(seconds),
        position_reads: positions.summary(seconds),
        admitted_holds: stats.holds.summary(seconds),
        unloaded_holds: Series::default().summary(1.0),
        hold_p99_ratio: 0.0,
        admitted,
        told_sold_out: told,
        still_waiting: waiting,
        drained_after_seconds: (drained > 0).then(|| drained as f64 / 1e6),
    };
    (stats, report)
}
