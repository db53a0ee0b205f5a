//! The waiting room through the engine and real PostgreSQL: a burst of joins on both sides of
//! the opening (a uniform draw for the early half, first come first served for the rest),
//! the admission pace and the life of a pass on tokio's paused clock, and holds that need a
//! pass.

use std::time::{Duration, Instant};

use boxoffice_engine::types::{HoldKind, HoldRequest, SettingsUpdate};
use boxoffice_engine::waiting_room::{QueueStatus, WaitingRoomUpdate};
use boxoffice_engine::{Engine, EngineConfig, EngineError, Refusal};
use sqlx::Row;

use crate::support::{assert_invariants, fixture, Fixture};

/// Joins at once per wave: the burst is bounded so that admission never sheds a join.
const JOINS_IN_FLIGHT: usize = 2_000;

async fn set_room(f: &Fixture, update: SettingsUpdate) {
    f.engine.update_settings(f.event_id, update).await.unwrap();
}

fn room(admit_per_minute: u32, pass_ttl_seconds: u32) -> WaitingRoomUpdate {
    WaitingRoomUpdate {
        enabled: Some(true),
        admit_per_minute: Some(admit_per_minute),
        pass_ttl_seconds: Some(pass_ttl_seconds),
    }
}

/// Joins every buyer of `users`, `JOINS_IN_FLIGHT` at a time; the waves are returned in the
/// order they were sent (every join of a wave answered before the next wave starts).
async fn join_in_waves(engine: &Engine, event_id: i64, users: &[i64]) -> Vec<Vec<i64>> {
    let mut waves = Vec::new();
    for wave in users.chunks(JOINS_IN_FLIGHT) {
        let mut joins = tokio::task::JoinSet::new();
        for &user_id in wave {
            let engine = engine.clone();
            joins.spawn(async move { engine.join_queue(event_id, user_id).await });
        }
        while let Some(joined) = joins.join_next().await {
            let view = joined.unwrap().expect("every join is accepted");
            assert!(matches!(
                view.status,
                QueueStatus::Waiting | QueueStatus::Admitted
            ));
        }
        waves.push(wave.to_vec());
    }
    waves
}

/// Spearman's rank correlation of two permutations of 0..n.
fn rank_correlation(pairs: &[(i64, i64)]) -> f64 {
    let n = pairs.len() as f64;
    let d2: f64 = pairs.iter().map(|&(a, b)| ((a - b) as f64).powi(2)).sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

/// Pearson's chi-square of the 10 × 10 table (arrival decile × drawn decile): a shuffle that
/// is uncorrelated but not uniform (one that keeps the middle in the middle, say) fails it.
fn decile_chi_square(pairs: &[(i64, i64)]) -> f64 {
    let n = pairs.len() as i64;
    let mut table = [[0u32; 10]; 10];
    for &(a, b) in pairs {
        table[(a * 10 / n) as usize][(b * 10 / n) as usize] += 1;
    }
    let expected = n as f64 / 100.0;
    table
        .iter()
        .flatten()
        .map(|&o| (f64::from(o) - expected).powi(2) / expected)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_joins_is_drawn_uniformly_before_the_opening_and_first_come_first_served_after()
{
    const BUYERS: usize = 100_000;
    let f = fixture(BUYERS, 4, 600, EngineConfig::default()).await;
    f.general("Floor", 1_000).await;
    f.open_sale().await;
    // On sale, opening in a day; one admission a minute, so the line barely moves.
    let opens_ms = f.engine.now_ms() + 86_400_000;
    set_room(
        &f,
        SettingsUpdate {
            sale_start_ms: Some(opens_ms),
            waiting_room: room(1, 600),
            ..Default::default()
        },
    )
    .await;
    let (early, late) = f.buyers.split_at(BUYERS / 2);

    let started = Instant::now();
    join_in_waves(&f.engine, f.event_id, early).await;
    let early_rate = early.len() as f64 / started.elapsed().as_secs_f64();
    let view = f.engine.queue_position(f.event_id, early[0]).await.unwrap();
    assert_eq!(view.position, None, "placed only by the draw");
    assert_eq!(view.draw_at_ms, Some(opens_ms));

    // The sale opens: the next message the actor handles makes the draw.
    set_room(
        &f,
        SettingsUpdate {
            sale_start_ms: Some(f.engine.now_ms()),
            ..Default::default()
        },
    )
    .await;
    let started = Instant::now();
    let waves = join_in_waves(&f.engine, f.event_id, late).await;
    let late_rate = late.len() as f64 / started.elapsed().as_secs_f64();
    println!("joins: {early_rate:.0}/s before the opening, {late_rate:.0}/s after");

    // Joining again changes nothing.
    for &user_id in [early[17], late[4_242]].iter() {
        let before = f.engine.queue_position(f.event_id, user_id).await.unwrap();
        let again = f.engine.join_queue(f.event_id, user_id).await.unwrap();
        assert_eq!(again.joined_at_ms, before.joined_at_ms);
        assert_eq!(again.position, before.position);
    }
    f.engine.sync(f.event_id).await.unwrap();

    let rows = sqlx::query(
        "SELECT user_id, arrival_seq, early, rank FROM queue_entries
         WHERE event_id = $1 ORDER BY arrival_seq",
    )
    .bind(f.event_id)
    .fetch_all(f.pool())
    .await
    .unwrap();
    assert_eq!(rows.len(), BUYERS, "one entry per buyer");
    let early_rows: Vec<(i64, i64)> = rows
        .iter()
        .filter(|r| r.get::<bool, _>("early"))
        .map(|r| (r.get("arrival_seq"), i64::from(r.get::<i32, _>("rank"))))
        .collect();
    assert_eq!(early_rows.len(), BUYERS / 2);
    let mut drawn: Vec<i64> = early_rows.iter().map(|&(_, rank)| rank).collect();
    drawn.sort_unstable();
    assert!(
        drawn.iter().copied().eq(0..(BUYERS / 2) as i64),
        "the early half holds ranks 0..50,000, each once"
    );
    // Arrival order among the early half is 0..50,000 as well (arrival_seq from 0).
    let rho = rank_correlation(&early_rows);
    let chi = decile_chi_square(&early_rows);
    println!("early half: rank correlation with arrival {rho:.4}, decile chi-square {chi:.1}");
    // For a uniform shuffle of 50,000, rho has a standard deviation of 1/√49,999 ≈ 0.0045:
    // 0.025 is 5.6 of them. The chi-square has 81 degrees of freedom (mean 81, sd 12.7):
    // 160 is 6.2 sd out. Either fails a true shuffle about once in ten million runs.
    assert!(rho.abs() < 0.025, "rank correlation {rho}");
    assert!(chi < 160.0, "decile chi-square {chi}");

    // The later half: strictly first come, first served, behind the early half.
    let late_ranks: Vec<i64> = rows
        .iter()
        .filter(|r| !r.get::<bool, _>("early"))
        .map(|r| i64::from(r.get::<i32, _>("rank")))
        .collect();
    assert!(
        late_ranks
            .iter()
            .copied()
            .eq((BUYERS / 2) as i64..BUYERS as i64),
        "by arrival, the later half holds ranks 50,000.. in order"
    );
    let rank_of: std::collections::HashMap<i64, i64> = rows
        .iter()
        .map(|r| {
            let rank: Option<i32> = r.get("rank");
            (r.get("user_id"), i64::from(rank.unwrap()))
        })
        .collect();
    for pair in waves.windows(2) {
        let last_of_first = pair[0].iter().map(|u| rank_of[u]).max().unwrap();
        let first_of_next = pair[1].iter().map(|u| rank_of[u]).min().unwrap();
        assert!(
            last_of_first < first_of_next,
            "a buyer answered before another joined is ahead of them"
        );
    }
    // What the board says is what PostgreSQL holds.
    for &user_id in [early[0], early[49_999], late[0], late[49_999]].iter() {
        let view = f.engine.queue_position(f.event_id, user_id).await.unwrap();
        let admitted = f.engine.queue_board(f.event_id).await.unwrap();
        let rank = admitted.spot(user_id).unwrap().rank.unwrap();
        assert_eq!(i64::from(rank), rank_of[&user_id]);
        assert!(view.position.is_some() || view.status == QueueStatus::Admitted);
    }
    assert_invariants(f.pool(), f.event_id).await;
}

/// Lets `f`'s actor run its timers on a paused clock for `total`, a tick at a time.
async fn run_paused(total: Duration) {
    tokio::time::pause();
    let step = Duration::from_millis(50);
    let mut elapsed = Duration::ZERO;
    while elapsed < total {
        tokio::time::advance(step).await;
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        elapsed += step;
    }
    tokio::time::resume();
}

#[tokio::test]
async fn admission_keeps_its_pace_over_a_minute_on_the_paused_clock() {
    let config = EngineConfig {
        idle_timeout_seconds: 86_400,
        // The actors share this test's paused clock.
        actor_thread: false,
        ..EngineConfig::default()
    };
    let f = fixture(2_000, 4, 600, config).await;
    f.general("Floor", 10_000).await;
    f.open_sale().await;
    set_room(
        &f,
        SettingsUpdate {
            waiting_room: room(600, 7_200),
            ..Default::default()
        },
    )
    .await;
    join_in_waves(&f.engine, f.event_id, &f.buyers).await;
    f.engine.sync(f.event_id).await.unwrap();
    let first_admission_ms = f.engine.now_ms();

    run_paused(Duration::from_secs(61)).await;
    f.engine.sync(f.event_id).await.unwrap();

    // Counted by the admission times PostgreSQL holds, so that however far the paused
    // clock ran past the minute, the minute itself is what is measured.
    let in_minute: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM queue_entries
         WHERE event_id = $1 AND admitted_at < to_timestamp($2 / 1000.0)",
    )
    .bind(f.event_id)
    .bind((first_admission_ms + 60_000) as f64)
    .fetch_one(f.pool())
    .await
    .unwrap();
    println!("admitted in the first minute at 600 a minute: {in_minute}");
    assert!(
        (540..=660).contains(&in_minute),
        "{in_minute} admitted in a minute at 600 a minute"
    );
    assert_invariants(f.pool(), f.event_id).await;
}

#[tokio::test]
async fn a_hold_needs_a_good_pass_and_an_unused_pass_gives_its_place_to_the_next_buyer() {
    let config = EngineConfig {
        idle_timeout_seconds: 86_400,
        actor_thread: false,
        ..EngineConfig::default()
    };
    let f = fixture(5, 4, 600, config).await;
    let floor = f.general("Floor", 100).await;
    f.open_sale().await;
    // One buyer a minute, passes good for ten seconds.
    set_room(
        &f,
        SettingsUpdate {
            waiting_room: room(1, 10),
            ..Default::default()
        },
    )
    .await;
    let hold = |user_id: i64| HoldRequest {
        user_id,
        kind: HoldKind::General {
            section_id: floor,
            quantity: 1,
        },
        idempotency_key: None,
        session_id: None,
    };
    fn refusal<T: std::fmt::Debug>(r: Result<T, EngineError>) -> Refusal {
        match r {
            Err(EngineError::Refused(refusal)) => refusal,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    let [a, b, c, ..] = f.buyers[..] else {
        unreachable!()
    };
    assert_eq!(
        refusal(f.engine.hold(f.event_id, hold(a)).await),
        Refusal::QueuePassRequired,
        "not in line"
    );
    for user_id in [a, b, c] {
        f.engine.join_queue(f.event_id, user_id).await.unwrap();
    }
    assert_eq!(
        refusal(f.engine.hold(f.event_id, hold(a)).await),
        Refusal::QueuePassRequired,
        "in line, not let in"
    );
    // A minute on (and a tick: at this pace the line is looked at once a second), the first
    // buyer is let in and holds.
    run_paused(Duration::from_secs(62)).await;
    // Admissions are shown once durable: wait for the batch that carries them.
    f.engine.sync(f.event_id).await.unwrap();
    let a_view = f.engine.queue_position(f.event_id, a).await.unwrap();
    assert_eq!(a_view.status, QueueStatus::Admitted);
    f.engine.hold(f.event_id, hold(a)).await.unwrap();
    f.engine.hold(f.event_id, hold(a)).await.unwrap();

    // A minute more: the second is let in, and lets the pass run out.
    run_paused(Duration::from_secs(60)).await;
    f.engine.sync(f.event_id).await.unwrap();
    assert_eq!(
        f.engine.queue_position(f.event_id, b).await.unwrap().status,
        QueueStatus::Admitted
    );
    assert_eq!(
        f.engine
            .queue_position(f.event_id, c)
            .await
            .unwrap()
            .position,
        Some(1)
    );
    run_paused(Duration::from_secs(11)).await;
    f.engine.sync(f.event_id).await.unwrap();
    assert_eq!(
        refusal(f.engine.hold(f.event_id, hold(b)).await),
        Refusal::QueuePassExpired
    );
    assert_eq!(
        f.engine.queue_position(f.event_id, b).await.unwrap().status,
        QueueStatus::Expired
    );
    // Its place went to the next buyer at once, not a minute later.
    assert_eq!(
        f.engine.queue_position(f.event_id, c).await.unwrap().status,
        QueueStatus::Admitted
    );
    f.engine.hold(f.event_id, hold(c)).await.unwrap();
    assert_eq!(
        refusal(f.engine.hold(f.event_id, hold(a)).await),
        Refusal::QueuePassExpired,
        "a used pass runs out too"
    );
    f.engine.sync(f.event_id).await.unwrap();

    let rows: Vec<(i64, bool, bool)> = sqlx::query_as(
        "SELECT user_id, admitted_at IS NOT NULL, pass_used_at IS NOT NULL FROM queue_entries
         WHERE event_id = $1 ORDER BY rank",
    )
    .bind(f.event_id)
    .fetch_all(f.pool())
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![(a, true, true), (b, true, false), (c, true, true)]
    );
    let holds: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reservations WHERE event_id = $1 AND user_id <> $2",
    )
    .bind(f.event_id)
    .bind(b)
    .fetch_one(f.pool())
    .await
    .unwrap();
    assert_eq!(holds, 3, "a's two holds and c's");
    assert_invariants(f.pool(), f.event_id).await;

    // Off again: holds need no pass.
    set_room(
        &f,
        SettingsUpdate {
            waiting_room: WaitingRoomUpdate {
                enabled: Some(false),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    f.engine.hold(f.event_id, hold(b)).await.unwrap();
    assert_eq!(
        refusal(f.engine.join_queue(f.event_id, f.buyers[4]).await),
        Refusal::WaitingRoomOff
    );
}
