//! What a run measured: outcomes, latency histograms (HDR, microseconds) and what was
//! acknowledged, so that it can be checked against PostgreSQL afterwards.

use hdrhistogram::Histogram;
use serde::Serialize;

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Ok,
    /// A business refusal (4xx): sold out, limit, …
    Refused,
    /// Shed by admission control (503 / 429).
    Shed,
    /// A server error or a broken connection.
    Error,
}

impl Outcome {
    pub fn of(status: u16) -> Outcome {
        match status {
            200..=299 => Outcome::Ok,
            429 | 503 => Outcome::Shed,
            400..=499 => Outcome::Refused,
            _ => Outcome::Error,
        }
    }
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

/// Counts and latencies of one kind of request.
#[derive(Clone)]
pub struct Series {
    pub ok: u64,
    pub refused: u64,
    pub shed: u64,
    pub errors: u64,
    /// Latency of admitted requests (everything but shed), in µs.
    pub latency: Histogram<u64>,
    /// Latency of shed requests, in µs: shedding must be fast.
    pub shed_latency: Histogram<u64>,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            ok: 0,
            refused: 0,
            shed: 0,
            errors: 0,
            latency: histogram(),
            shed_latency: histogram(),
        }
    }
}

impl Series {
    pub fn record(&mut self, outcome: Outcome, micros: u64) {
        let micros = micros.clamp(1, 60_000_000);
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Refused => self.refused += 1,
            Outcome::Shed => self.shed += 1,
            Outcome::Error => self.errors += 1,
        }
        if outcome == Outcome::Shed {
            let _ = self.shed_latency.record(micros);
        } else {
            let _ = self.latency.record(micros);
        }
    }

    pub fn merge(&mut self, other: &Series) {
        self.ok += other.ok;
        self.refused += other.refused;
        self.shed += other.shed;
        self.errors += other.errors;
        let _ = self.latency.add(&other.latency);
        let _ = self.shed_latency.add(&other.shed_latency);
    }

    pub fn total(&self) -> u64 {
        self.ok + self.refused + self.shed + self.errors
    }

    /// A summary for the report, latencies in milliseconds.
    pub fn summary(&self, seconds: f64) -> SeriesSummary {
        let ms = |h: &Histogram<u64>, q: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(q) as f64 / 1000.0
            }
        };
        SeriesSummary {
            requests: self.total(),
            ok: self.ok,
            refused: self.refused,
            shed: self.shed,
            errors: self.errors,
            ok_per_second: self.ok as f64 / seconds,
            requests_per_second: self.total() as f64 / seconds,
            p50_ms: ms(&self.latency, 0.50),
            p90_ms: ms(&self.latency, 0.90),
            p99_ms: ms(&self.latency, 0.99),
            p999_ms: ms(&self.latency, 0.999),
            max_ms: if self.latency.is_empty() {
                0.0
            } else {
                self.latency.max() as f64 / 1000.0
            },
            shed_p99_ms: ms(&self.shed_latency, 0.99),
        }
    }
}

/// One kind of request, summarized.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct SeriesSummary {
    pub requests: u64,
    pub ok: u64,
    pub refused: u64,
    pub shed: u64,
    pub errors: u64,
    pub ok_per_second: f64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub shed_p99_ms: f64,
}

/// Everything one worker (or the whole run) measured.
#[derive(Default, Clone)]
pub struct Stats {
    pub holds: Series,
    pub confirms: Series,
    pub reads: Series,
    /// Hold ids answered 201.
    pub acked_holds: Vec<i64>,
    /// Booking references answered 201.
    pub acked_bookings: Vec<String>,
    /// Holds deliberately left to expire.
    pub abandoned: u64,
}

impl Stats {
    /// Takes over what a warm-up acknowledged (it must be checked too), not its figures.
    pub fn keep_acknowledgements_of(&mut self, warm: Stats) {
        self.acked_holds.extend(warm.acked_holds);
        self.acked_bookings.extend(warm.acked_bookings);
        self.abandoned += warm.abandoned;
    }

    pub fn merge(&mut self, other: Stats) {
        self.holds.merge(&other.holds);
        self.confirms.merge(&other.confirms);
        self.reads.merge(&other.reads);
        self.acked_holds.extend(other.acked_holds);
        self.acked_bookings.extend(other.acked_bookings);
        self.abandoned += other.abandoned;
    }
}

/// A tiny xorshift generator: deterministic per worker, no dependency, good enough to pick
/// quantities and coin flips.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
