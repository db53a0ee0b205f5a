//! In-memory decisions of one Inventory, with no actor and no database: how many holds per
//! second the data structure itself can decide. Best-available runs side by side with a
//! naive baseline that scans every seat, to show what the per-row bitmaps buy.
//!
//! Run: `cargo bench -p boxoffice-engine --bench inventory`

use std::time::{Duration, Instant};

use boxoffice_engine::inventory::{EventRules, Inventory};
use boxoffice_engine::types::{EventStatus, HoldKind, HoldRequest, NewSection, SectionSpec};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const T0: i64 = 1_900_000_000_000;

fn inventory(spec: SectionSpec) -> Inventory {
    let mut inv = Inventory::new(
        1,
        EventRules {
            status: EventStatus::OnSale,
            sale_start_ms: 0,
            hold_ttl_seconds: 600,
            max_tickets_per_user: Some(1000),
            waiting_room: Default::default(),
        },
    );
    let seats = Inventory::seats_needed(&spec) as i64;
    let ids: Vec<i64> = (1..=seats).collect();
    inv.add_section(
        1,
        NewSection {
            name: "S".into(),
            spec,
            price_cents: 5000,
            capacity_limit: None,
        },
        &ids,
    )
    .unwrap();
    inv
}

fn request(user_id: i64, kind: HoldKind) -> HoldRequest {
    HoldRequest {
        user_id,
        kind,
        idempotency_key: None,
        session_id: None,
    }
}

/// GENERAL holds of 2 tickets, each by a different buyer, on a section big enough for all.
fn general_holds(c: &mut Criterion) {
    let mut group = c.benchmark_group("general_hold");
    group.throughput(Throughput::Elements(1));
    group.bench_function("quantity_2", |b| {
        b.iter_custom(|iterations| {
            let capacity = (iterations * 2).clamp(2, 1_000_000) as u32;
            let mut inv = inventory(SectionSpec::General { capacity });
            let mut elapsed = Duration::ZERO;
            let mut sold = 0u64;
            for i in 0..iterations {
                if sold + 2 > u64::from(capacity) {
                    // Sold out: start a fresh section, outside the timed region.
                    inv = inventory(SectionSpec::General { capacity });
                    sold = 0;
                }
                let kind = HoldKind::General {
                    section_id: 1,
                    quantity: 2,
                };
                let started = Instant::now();
                let decided = inv.place_hold(request(i as i64, kind), i as i64, T0);
                elapsed += started.elapsed();
                assert!(decided.is_ok());
                sold += 2;
            }
            elapsed
        })
    });
    group.finish();
}

/// 9,500 best-available pairs in a 20,000-seat section (100 rows of 200), from empty to
/// nearly full, against a baseline that finds the same seats by scanning every seat.
/// (Centre-first pairs leave a single seat at each end of an odd run, so a section does not
/// sell out exactly in pairs; 9,500 stays clear of that.)
fn best_available(c: &mut Criterion) {
    let spec = SectionSpec::Seated {
        rows: 100,
        seats_per_row: 200,
    };
    let pairs = 9_500u64;
    let mut group = c.benchmark_group("best_available_20k_seats");
    group.throughput(Throughput::Elements(pairs));
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("bitmap", "sell_out_in_pairs"), |b| {
        b.iter_batched(
            || inventory(spec.clone()),
            |mut inv| {
                for i in 0..pairs as i64 {
                    let kind = HoldKind::BestAvailable {
                        section_id: 1,
                        quantity: 2,
                        allow_split: false,
                    };
                    inv.place_hold(request(i, kind), i, T0).unwrap();
                }
                inv
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.bench_function(BenchmarkId::new("naive_scan", "sell_out_in_pairs"), |b| {
        b.iter_batched(
            || vec![false; 20_000],
            |mut taken| {
                for _ in 0..pairs {
                    naive_best_pair(&mut taken, 100, 200);
                }
                taken
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// The straightforward way: for each row from the front, try every window of two seats and
/// keep the most central free one.
fn naive_best_pair(taken: &mut [bool], rows: usize, per_row: usize) {
    for row in 0..rows {
        let mut best: Option<(usize, usize)> = None;
        for start in 0..per_row - 1 {
            let at = row * per_row + start;
            if !taken[at] && !taken[at + 1] {
                let score = (2 * start + 2).abs_diff(per_row);
                if best.is_none_or(|(s, _)| score < s) {
                    best = Some((score, at));
                }
            }
        }
        if let Some((_, at)) = best {
            taken[at] = true;
            taken[at + 1] = true;
            return;
        }
    }
    panic!("sold out");
}

criterion_group!(benches, general_holds, best_available);
criterion_main!(benches);
