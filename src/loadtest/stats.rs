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

/// Latencies a series keeps as a plain list before it folds them into its histograms. A
/// histogram of that precision is ~140 KiB of counters: the waiting-room scenario gives
/// every one of thousands of buyers their own series, and allocating (and zeroing) gigabytes
/// of counters for a few requests each took both cores from the server it was measuring.
const PENDING_MAX: usize = 1024;

/// Counts and latencies of one kind of request.
#[derive(Clone, Default)]
pub struct Series {
    pub ok: u64,
    pub refused: u64,
    pub shed: u64,
    pub errors: u64,
    /// Latencies in µs not yet in the histograms, and whether each was shed.
    pending: Vec<(u64, bool)>,
    /// Latency of admitted requests (everything but shed), in µs; made when first needed.
    latency: Option<Box<Histogram<u64>>>,
    /// Latency of shed requests, in µs (shedding must be fast); made when first needed.
    shed_latency: Option<Box<Histogram<u64>>>,
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
        self.pending.push((micros, outcome == Outcome::Shed));
        if self.pending.len() >= PENDING_MAX {
            self.fold();
        }
    }

    /// Moves the pending latencies into the histograms.
    fn fold(&mut self) {
        for (micros, shed) in std::mem::take(&mut self.pending) {
            let h = if shed {
                &mut self.shed_latency
            } else {
                &mut self.latency
            };
            let _ = h
                .get_or_insert_with(|| Box::new(histogram()))
                .record(micros);
        }
    }

    pub fn merge(&mut self, other: &Series) {
        self.ok += other.ok;
        self.refused += other.refused;
        self.shed += other.shed;
        self.errors += other.errors;
        self.pending.extend_from_slice(&other.pending);
        for (mine, theirs) in [
            (&mut self.latency, &other.latency),
            (&mut self.shed_latency, &other.shed_latency),
        ] {
            if let Some(theirs) = theirs {
                let _ = mine
                    .get_or_insert_with(|| Box::new(histogram()))
                    .add(&**theirs);
            }
        }
        if self.pending.len() >= PENDING_MAX {
            self.fold();
        }
    }

    pub fn total(&self) -> u64 {
        self.ok + self.refused + self.shed + self.errors
    }

    /// A summary for the report, latencies in milliseconds.
    pub fn summary(&self, seconds: f64) -> SeriesSummary {
        let mut all = self.clone();
        all.fold();
        let empty = histogram();
        let latency = all.latency.as_deref().unwrap_or(&empty);
        let shed_latency = all.shed_latency.as_deref().unwrap_or(&empty);
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
            p50_ms: ms(latency, 0.50),
            p90_ms: ms(latency, 0.90),
            p99_ms: ms(latency, 0.99),
            p999_ms: ms(latency, 0.999),
            max_ms: if latency.is_empty() {
                0.0
            } else {
                latency.max() as f64 / 1000.0
            },
            shed_p99_ms: ms(shed_latency, 0.99),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Latencies kept as a list and latencies folded into the histograms are the same
    /// figures: a series that crossed the fold merged with one that did not.
    #[test]
    fn pending_and_folded_latencies_summarize_alike() {
        let mut big = Series::default();
        for micros in 1..=3_000u64 {
            big.record(Outcome::Ok, micros);
        }
        let mut small = Series::default();
        for micros in 3_001..=3_010u64 {
            small.record(Outcome::Ok, micros);
        }
        small.record(Outcome::Shed, 500);
        assert!(
            small.latency.is_none(),
            "a few requests allocate no histogram"
        );
        big.merge(&small);
        let s = big.summary(1.0);
        assert_eq!((s.requests, s.ok, s.shed), (3_011, 3_010, 1));
        assert!((s.p50_ms - 1.505).abs() < 0.002, "{}", s.p50_ms);
        assert!((s.max_ms - 3.010).abs() < 0.002, "{}", s.max_ms);
        assert!((s.shed_p99_ms - 0.5).abs() < 0.001, "{}", s.shed_p99_ms);
        assert_eq!(Series::default().summary(1.0).p99_ms, 0.0);
    }
}
