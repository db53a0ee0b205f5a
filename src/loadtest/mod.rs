//! `boxoffice loadtest`: an on-sale burst against a running server, measured with HDR
//! histograms, then checked against PostgreSQL: the invariants of docs/ARCHITECTURE.md hold and every
//! acknowledged hold and booking is stored. Any violation is reported loudly and the
//! command exits non-zero.
//!
//! Scenarios:
//! - `hot-ga`: one GENERAL section far larger than the run can sell, holds of 2;
//! - `sellout`: a RESERVED section of 20,000 seats (`--seats`), buyers asking for 1–4 best-available
//!   seats, confirming most holds (some with a discount), abandoning some to expire, until
//!   sold out;
//! - `browse`: `GET /health/live` and then `GET /events/{id}/inventory`, same concurrency,
//!   to compare inventory reads with the cheapest route there is;
//! - `ops`: the performance guide's four "Optimization Wins" operations one after another — get event
//!   inventory, confirm booking, list user bookings, validate discount;
//! - `queue`: an on-sale through the waiting room (`queue`): every buyer joins at once,
//!   follows their place, holds 1–4 GENERAL tickets (of `--seats`) and books them when let
//!   in, until the line is told SOLD_OUT.
//!
//! With `--subscribers N`, N seat maps follow the event's live stream throughout (`watch`)
//! and must each end showing exactly what PostgreSQL holds.

mod drive;
mod http;
mod queue;
mod setup;
mod stats;
mod watch;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::json;

use crate::auth::jwt::Keys;
use crate::config::Settings;
use drive::{Action, Ctx};
use stats::{SeriesSummary, Stats};

/// The scenarios.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    HotGa,
    Sellout,
    Browse,
    Ops,
    Queue,
}

impl Scenario {
    /// The name on the command line (`--scenario hot-ga`), used in every report.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::HotGa => "hot-ga",
            Scenario::Sellout => "sellout",
            Scenario::Browse => "browse",
            Scenario::Ops => "ops",
            Scenario::Queue => "queue",
        }
    }
}

/// The server the generator loads when `--target` is not given: the one `serve` would run
/// with the same environment (`BIND_ADDR`, an unspecified address reached on loopback).
pub fn default_target(bind_addr: std::net::SocketAddr) -> String {
    let ip = match bind_addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", std::net::SocketAddr::new(ip, bind_addr.port()))
}

/// `boxoffice loadtest` options.
#[derive(Debug, clap::Args)]
pub struct LoadtestArgs {
    /// The server to load; default: the one `serve` runs with this environment's
    /// `BIND_ADDR` (loopback only in this project's scripts).
    #[arg(long)]
    pub target: Option<String>,
    #[arg(long, value_enum, default_value = "hot-ga")]
    pub scenario: Scenario,
    /// Closed loop: this many concurrent buyers, each sending when answered.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Open loop instead: this many requests per second, on schedule. Its connections carry
    /// independent buyers one after another, as a proxy's do, and one answered 503 is used
    /// again: run the server with `PACE_MAX_MS=0`, as behind a proxy, or its pacing holds
    /// each such connection's next request (and that wait counts as latency).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Seconds to measure (sellout: at most this long), after the warm-up.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Seconds of warm-up first: connections opened, actors loaded, caches filled. Their
    /// requests are checked in PostgreSQL but left out of the figures.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Buyer accounts to create.
    #[arg(long, default_value_t = 2000)]
    pub buyers: usize,
    /// Open loop: the fixed pool of connections that send on schedule (each request timed
    /// from when it was due). A request due while all are busy waits; past as many waiting
    /// it is skipped and counted, and the generator reports itself saturated.
    #[arg(long, default_value_t = 1024)]
    pub max_in_flight: u64,
    /// The server's process id, to sample its memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Only prepare the scenario (event, section, buyers) and write it to this file as JSON
    /// — `{"eventId", "sectionId", "tokens"}` — for another load generator (wrk, in
    /// bench/wrk.sh); nothing is run, audited or cleaned up (`boxoffice audit` checks after).
    #[arg(long)]
    pub prepare_only: Option<std::path::PathBuf>,
    /// The event's hold lifetime instead of the scenario's (hot-ga: 3600 s, sellout: 10 s):
    /// with a short one, holds nobody confirms expire while the run goes on.
    #[arg(long)]
    pub hold_ttl_seconds: Option<u32>,
    /// Sellout: seats in the section, in rows of 200 (at most 200,000). A larger sellout
    /// sells longer, which steadies its first-pass throughput.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(200..=200_000))]
    pub seats: u32,
    /// Live-stream subscribers following the event throughout the run (connected before it
    /// starts); each must end showing exactly what PostgreSQL holds.
    #[arg(long, default_value_t = 0)]
    pub subscribers: usize,
    /// Queue: buyers let in per minute.
    #[arg(long, default_value_t = 6_000)]
    pub admit_per_minute: u32,
    /// Queue: how often a waiting buyer asks for their place, in milliseconds.
    #[arg(long, default_value_t = 1_000)]
    pub poll_ms: u64,
    /// Keep the run's event and accounts afterwards. By default they are deleted once the
    /// checks pass (a failed run keeps them, for inspection).
    #[arg(long)]
    pub keep: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Memory {
    /// Before any live-stream subscriber connected.
    before_subscribers_mib: Option<f64>,
    start_mib: f64,
    max_mib: f64,
    end_mib: f64,
}

/// A sellout's first pass: from the start until acknowledged holds had handed out as many
/// places as the section has (abandoned ones included). The sellout's throughput, measured
/// where it is selling — what follows is mostly waiting for abandoned holds to expire.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FirstPass {
    seconds: f64,
    holds: u64,
    holds_per_second: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    scenario: Scenario,
    mode: &'static str,
    concurrency: Option<usize>,
    rate: Option<u64>,
    seconds: f64,
    event_id: i64,
    holds: Option<SeriesSummary>,
    confirms: Option<SeriesSummary>,
    health_reads: Option<SeriesSummary>,
    inventory_reads: Option<SeriesSummary>,
    inventory_to_health_ratio: Option<f64>,
    operations: Vec<(String, SeriesSummary)>,
    sold_out_after_seconds: Option<f64>,
    first_pass: Option<FirstPass>,
    capacity: i64,
    booked: i64,
    abandoned_holds: u64,
    /// Open loop: requests that came due after the warm-up, and those not sent.
    generator_scheduled: u64,
    generator_skipped: u64,
    server_memory: Option<Memory>,
    subscribers: Option<watch::WatchReport>,
    queue: Option<queue::QueueReport>,
    violations: Vec<String>,
    missing_holds: usize,
    missing_bookings: usize,
    passed: bool,
}

fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Samples a process's memory every 250 ms until stopped.
fn sample_memory(
    pid: Option<u32>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Option<Memory>> {
    tokio::spawn(async move {
        let pid = pid?;
        let start = rss_mib(pid)?;
        let (mut max, mut end) = (start, start);
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if let Some(now) = rss_mib(pid) {
                max = max.max(now);
                end = now;
            }
        }
        Some(Memory {
            before_subscribers_mib: None,
            start_mib: start,
            max_mib: max,
            end_mib: end,
        })
    })
}

fn progress(json: bool, seconds: u64) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(seconds);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} {pos} requests ({per_sec}) {msg}",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Runs a load test. Errors when the run could not be set up or any check failed.
pub async fn run(args: LoadtestArgs, settings: Settings) -> anyhow::Result<()> {
    if settings.jwt_secret_generated {
        bail!("set JWT_SECRET to the server's secret: the load generator mints its buyers' tokens");
    }
    let pool = crate::db::connect(&settings).await?;
    let keys = Keys::new(settings.jwt_secret.expose(), 24 * 3600)?;
    let target = args
        .target
        .clone()
        .unwrap_or_else(|| default_target(settings.bind_addr))
        .trim_end_matches('/')
        .to_string();
    let announce = |name: &str, what: String| {
        if !args.json {
            eprintln!("[{name}] {what}");
        }
    };
    announce(
        "setup",
        format!(
            "scenario {} against {target}: preparing the event and {} buyers",
            args.scenario.name(),
            args.buyers
        ),
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency.max(64))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    client
        .get(format!("{target}/health/ready"))
        .send()
        .await
        .with_context(|| format!("no server at {target}"))?
        .error_for_status()
        .context("the server is not ready")?;

    let (plan, action) = match args.scenario {
        Scenario::HotGa | Scenario::Browse | Scenario::Ops => (
            setup::EventPlan {
                name: format!("Load test ({})", args.scenario.name()),
                section: json!({"name": "Floor", "type": "GENERAL", "capacity": 1_000_000, "priceCents": 5000}),
                max_tickets_per_user: 1000,
                hold_ttl_seconds: 3600,
                discount: args.scenario == Scenario::Ops,
            },
            Some(match args.scenario {
                Scenario::HotGa => Action::HotGaHold,
                Scenario::Ops => Action::Confirm,
                _ => Action::Read,
            }),
        ),
        Scenario::Queue => (
            setup::EventPlan {
                name: "Load test (queue)".into(),
                section: json!({"name": "Floor", "type": "GENERAL", "capacity": args.seats, "priceCents": 5000}),
                max_tickets_per_user: 4,
                hold_ttl_seconds: 600,
                discount: false,
            },
            // The crowd is driven by `queue`, not by the generic loops.
            None,
        ),
        Scenario::Sellout => (
            setup::EventPlan {
                name: "Load test (sellout)".into(),
                section: json!({"name": "Arena", "type": "RESERVED", "rows": args.seats.div_ceil(200), "seatsPerRow": 200, "priceCents": 8000}),
                // Enough for the buyers to take every seat between them, twice over.
                max_tickets_per_user: (2 * args.seats / args.buyers.max(1) as u32).max(40),
                hold_ttl_seconds: 10,
                discount: true,
            },
            Some(Action::SelloutBuy),
        ),
    };
    let plan = setup::EventPlan {
        hold_ttl_seconds: args.hold_ttl_seconds.unwrap_or(plan.hold_ttl_seconds),
        ..plan
    };
    let section = &plan.section;
    let capacity = section["capacity"].as_u64().unwrap_or_else(|| {
        section["rows"].as_u64().unwrap_or(0) * section["seatsPerRow"].as_u64().unwrap_or(0)
    });
    let prepared = setup::prepare(&pool, &keys, &client, &target, args.buyers, plan).await?;
    let event_id = prepared.event_id;
    if let Some(path) = &args.prepare_only {
        let scenario = json!({
            "eventId": event_id,
            "sectionId": prepared.section_id,
            "tokens": prepared.buyer_tokens,
        });
        std::fs::write(path, serde_json::to_vec(&scenario)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        announce(
            "setup",
            format!("event {event_id} prepared; written to {}", path.display()),
        );
        return Ok(());
    }
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    // Each run measures exactly `measured` after its warm-up: --duration is split in
    // milliseconds, never rounded to whole seconds.
    let ctx = |action: Action, read_path: String, measured: Duration| {
        let requests = drive::Requests::new(event_id, prepared.section_id, &read_path);
        let started = Instant::now();
        let measure_from = started + Duration::from_secs(args.warmup);
        Arc::new(Ctx {
            measure_from,
            http: {
                let http = http::Http::new(&target).expect("target checked above");
                // The open loop's pool carries independent buyers, as a proxy's would.
                if args.rate.is_some() {
                    http.reusing_after_shed()
                } else {
                    http
                }
            },
            requests,
            run_id: format!("{}-{}", run_id, read_path.len()),
            keys_issued: AtomicU64::new(0),
            tokens: prepared.buyer_tokens.clone(),
            discount_code: prepared.discount_code.clone(),
            action,
            deadline: measure_from + measured,
            done: AtomicBool::new(false),
            sold_out_after_us: AtomicU64::new(0),
            started,
            progress: progress(args.json, measured.as_secs().max(1)),
            in_flight: AtomicU64::new(0),
            capacity,
            holds_acked: AtomicU64::new(0),
            places_acked: AtomicU64::new(0),
            first_pass: std::sync::OnceLock::new(),
        })
    };

    announce(
        "run",
        format!(
            "event {event_id}: {} s measured in all, each measured part after {} s of warm-up",
            args.duration, args.warmup
        ),
    );
    let before_subscribers = args.server_pid.and_then(rss_mib);
    let watchers = if args.subscribers > 0 {
        announce(
            "setup",
            format!(
                "connecting {} live-stream subscribers to event {event_id}",
                args.subscribers
            ),
        );
        let w = watch::Watchers::connect(&target, event_id, args.subscribers).await?;
        announce(
            "setup",
            format!("{} subscribers have the event's state", args.subscribers),
        );
        Some(w)
    } else {
        None
    };
    let stop_sampling = Arc::new(AtomicBool::new(false));
    let sampler = sample_memory(args.server_pid, stop_sampling.clone());
    let mut report = Report {
        scenario: args.scenario,
        mode: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        concurrency: args.rate.is_none().then_some(args.concurrency),
        rate: args.rate,
        seconds: 0.0,
        event_id,
        holds: None,
        confirms: None,
        health_reads: None,
        inventory_reads: None,
        inventory_to_health_ratio: None,
        operations: Vec::new(),
        sold_out_after_seconds: None,
        first_pass: None,
        capacity: 0,
        booked: 0,
        abandoned_holds: 0,
        generator_scheduled: 0,
        generator_skipped: 0,
        server_memory: None,
        subscribers: None,
        queue: None,
        violations: Vec::new(),
        missing_holds: 0,
        missing_bookings: 0,
        passed: false,
    };
    let drive = |ctx: Arc<Ctx>| async {
        match args.rate {
            Some(rate) => drive::open_loop(ctx, rate, args.max_in_flight).await,
            None => (
                drive::closed_loop(ctx, args.concurrency).await,
                drive::Dispatch::default(),
            ),
        }
    };
    let mut stats = Stats::default();
    if args.scenario == Scenario::Ops {
        // Four phases of equal length; bookings come first so that listing them has data.
        let phase = Duration::from_millis(args.duration * 1000 / 4);
        let code = prepared.discount_code.clone().unwrap_or_default();
        for (name, action, path) in [
            ("confirm booking", Action::Confirm, String::new()),
            (
                "get event inventory",
                Action::Read,
                format!("/events/{event_id}/inventory"),
            ),
            (
                "list user bookings",
                Action::ReadAsBuyer,
                "/bookings?limit=20".to_string(),
            ),
            (
                "validate discount",
                Action::ReadAsBuyer,
                format!("/discounts/validate?code={code}&eventId={event_id}"),
            ),
        ] {
            let run = ctx(action, path, phase);
            let (s, _) = drive(run.clone()).await;
            run.progress.finish_and_clear();
            let series = if action == Action::Confirm {
                &s.confirms
            } else {
                &s.reads
            };
            report
                .operations
                .push((name.to_string(), series.summary(phase.as_secs_f64())));
            stats.merge(s);
        }
        report.seconds = 4.0 * phase.as_secs_f64();
    } else if args.scenario == Scenario::Queue {
        let (s, queue_report) = run_queue(&args, &pool, &keys, &client, &target, &prepared).await?;
        report.seconds = queue_report.seconds;
        report.holds = Some(s.holds.summary(report.seconds));
        report.confirms = Some(s.confirms.summary(report.seconds));
        report.sold_out_after_seconds = queue_report.drained_after_seconds;
        report.queue = Some(queue_report);
        stats = s;
    } else if action == Some(Action::Read) {
        let half = Duration::from_millis(args.duration * 1000 / 2);
        let health = ctx(Action::Read, "/health/live".into(), half);
        let (h, _) = drive(health.clone()).await;
        health.progress.finish_and_clear();
        let inventory = ctx(Action::Read, format!("/events/{event_id}/inventory"), half);
        let (i, _) = drive(inventory.clone()).await;
        inventory.progress.finish_and_clear();
        let secs = half.as_secs_f64();
        report.inventory_to_health_ratio = Some(i.reads.ok as f64 / h.reads.ok.max(1) as f64);
        report.health_reads = Some(h.reads.summary(secs));
        report.inventory_reads = Some(i.reads.summary(secs));
        report.seconds = 2.0 * secs;
    } else {
        let action = action.expect("every scenario but queue has an action");
        let run = ctx(action, String::new(), Duration::from_secs(args.duration));
        let (s, dispatch) = drive(run.clone()).await;
        run.progress.finish_and_clear();
        let secs = run.measure_from.elapsed().as_secs_f64();
        report.seconds = secs;
        report.generator_scheduled = dispatch.scheduled;
        report.generator_skipped = dispatch.skipped;
        let sold_out = run.sold_out_after_us.load(Ordering::SeqCst);
        report.sold_out_after_seconds = (sold_out > 0).then(|| sold_out as f64 / 1e6);
        if action == Action::SelloutBuy {
            report.first_pass = run.first_pass.get().map(|&(us, holds)| FirstPass {
                seconds: us as f64 / 1e6,
                holds,
                holds_per_second: holds as f64 / (us as f64 / 1e6),
            });
        }
        report.holds = Some(s.holds.summary(secs));
        if action == Action::SelloutBuy {
            report.confirms = Some(s.confirms.summary(secs));
        }
        report.abandoned_holds = s.abandoned;
        stats = s;
    }
    stop_sampling.store(true, Ordering::Relaxed);
    report.server_memory = sampler.await.ok().flatten();
    if let Some(memory) = &mut report.server_memory {
        memory.before_subscribers_mib = before_subscribers.filter(|_| watchers.is_some());
    }

    // The checks: invariants, and every acknowledgement durable.
    announce(
        "audit",
        format!(
            "checking the invariants and {} acknowledged holds in PostgreSQL",
            stats.acked_holds.len()
        ),
    );
    report.violations = boxoffice_engine::audit::violations(&pool, event_id).await?;
    report.missing_holds = boxoffice_engine::audit::missing_holds(&pool, &stats.acked_holds)
        .await?
        .len();
    report.missing_bookings =
        boxoffice_engine::audit::missing_bookings(&pool, &stats.acked_bookings)
            .await?
            .len();
    let (capacity, booked): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(sum(capacity), 0)::bigint, COALESCE(sum(booked), 0)::bigint FROM event_sections WHERE event_id = $1",
    )
    .bind(event_id)
    .fetch_one(&pool)
    .await?;
    report.capacity = capacity;
    report.booked = booked;
    if let Some(q) = &report.queue {
        if q.still_waiting == 0 && booked != capacity {
            report.violations.push(format!(
                "the line was drained with {booked} booked of {capacity}"
            ));
        }
        let entries: i64 =
            sqlx::query_scalar("SELECT count(*) FROM queue_entries WHERE event_id = $1")
                .bind(event_id)
                .fetch_one(&pool)
                .await?;
        if entries != q.buyers as i64 {
            report
                .violations
                .push(format!("{entries} queue entries for {} buyers", q.buyers));
        }
    }
    if args.scenario == Scenario::Sellout
        && report.sold_out_after_seconds.is_some()
        && booked != capacity
    {
        report
            .violations
            .push(format!("sold out with {booked} booked of {capacity}"));
    }
    if let Some(watchers) = watchers {
        announce(
            "audit",
            "checking every subscriber's seat map against PostgreSQL".into(),
        );
        let watched = watchers
            .finish(&pool, event_id, Duration::from_secs(60))
            .await?;
        if watched.mismatched > 0 {
            report.violations.push(format!(
                "{} of {} subscribers do not show what PostgreSQL holds: {:?}",
                watched.mismatched, watched.subscribers, watched.failures
            ));
        }
        report.subscribers = Some(watched);
    }
    report.passed =
        report.violations.is_empty() && report.missing_holds == 0 && report.missing_bookings == 0;

    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if report.passed && !args.keep {
        announce(
            "clean-up",
            format!(
                "deleting event {event_id} and the run's {} accounts (--keep keeps them)",
                args.buyers + 1
            ),
        );
        setup::clean_up(&pool, &client, &target, &prepared).await?;
    } else {
        announce(
            "keep",
            format!(
                "event {event_id} and the run's accounts are kept (loadtest-{}-*)",
                prepared.run
            ),
        );
    }
    if !report.passed {
        bail!(
            "CHECK FAILED: {} invariant violations {:?}, {} acknowledged holds and {} bookings missing",
            report.violations.len(),
            report.violations,
            report.missing_holds,
            report.missing_bookings
        );
    }
    Ok(())
}

/// The queue scenario: the baseline on an event nobody queues for, then the crowd.
async fn run_queue(
    args: &LoadtestArgs,
    pool: &sqlx::PgPool,
    keys: &Keys,
    client: &reqwest::Client,
    target: &str,
    prepared: &setup::Prepared,
) -> anyhow::Result<(Stats, queue::QueueReport)> {
    let started = Instant::now();
    let crowd = Arc::new(queue::Crowd {
        http: http::Http::new(target)?,
        slots: tokio::sync::Semaphore::new(args.concurrency.max(1)),
        event_id: prepared.event_id,
        section_id: prepared.section_id,
        poll: Duration::from_millis(args.poll_ms.max(10)),
        deadline: started + Duration::from_secs(args.duration),
        started,
        drained_after_us: AtomicU64::new(0),
    });
    let baseline_buyers = queue::baseline_buyers(args.admit_per_minute);
    let idle = setup::prepare(
        pool,
        keys,
        client,
        target,
        baseline_buyers,
        setup::EventPlan {
            name: "Load test (queue baseline)".into(),
            section: json!({"name": "Floor", "type": "GENERAL", "capacity": 1_000_000, "priceCents": 5000}),
            max_tickets_per_user: 1000,
            hold_ttl_seconds: 600,
            discount: false,
        },
    )
    .await?;
    // Two baselines on an event nobody queues for: holds one at a time (the idle pipeline),
    // then the admitted buyers' own traffic without the crowd (the unloaded level).
    let before_idle = queue::granted_hold_buckets(client, target).await;
    let idle_holds = queue::idle_holds(
        &crowd,
        idle.event_id,
        idle.section_id,
        &idle.buyer_tokens[0],
    )
    .await;
    let before_baseline = queue::granted_hold_buckets(client, target).await;
    let baseline_started = Instant::now();
    let unloaded = queue::unloaded_buyers(
        crowd.clone(),
        idle.event_id,
        idle.section_id,
        &idle.buyer_tokens,
        args.admit_per_minute,
    )
    .await;
    let baseline_seconds = baseline_started.elapsed().as_secs_f64();
    let after_baseline = queue::granted_hold_buckets(client, target).await;
    setup::clean_up(pool, client, target, &idle).await?;
    setup::open_waiting_room(client, target, prepared, args.admit_per_minute).await?;
    if !args.json {
        eprintln!(
            "[run] {} buyers join event {} at once; {} let in a minute",
            prepared.buyer_tokens.len(),
            prepared.event_id,
            args.admit_per_minute
        );
    }
    let crowd = Arc::new(queue::Crowd {
        started: Instant::now(),
        deadline: Instant::now() + Duration::from_secs(args.duration),
        drained_after_us: AtomicU64::new(0),
        ..Arc::into_inner(crowd).expect("the baseline is done with it")
    });
    let open = setup::open_sale_now(client, target, prepared);
    let (stats, mut report) = queue::crowd(crowd, &prepared.buyer_tokens, open).await?;
    let after_crowd = queue::granted_hold_buckets(client, target).await;
    report.server_idle_hold_p99_ms = queue::p99_between(&before_idle, &before_baseline);
    report.server_unloaded_hold_p99_ms = queue::p99_between(&before_baseline, &after_baseline);
    report.server_admitted_hold_p99_ms = queue::p99_between(&after_baseline, &after_crowd);
    report.server_hold_p99_ratio = report
        .server_admitted_hold_p99_ms
        .zip(report.server_unloaded_hold_p99_ms)
        .map(|(crowd, unloaded)| crowd / unloaded.max(1e-3));
    report.admit_per_minute = args.admit_per_minute;
    report.idle_holds = idle_holds.summary(1.0);
    report.unloaded_holds = unloaded.holds.summary(baseline_seconds);
    report.unloaded_buyers = baseline_buyers;
    report.hold_p99_ratio = report.admitted_holds.p99_ms / report.unloaded_holds.p99_ms.max(1e-3);
    Ok((stats, report))
}

fn print_table(r: &Report) {
    println!(
        "scenario {} ({} loop, {}), {:.1} s, event {}",
        r.scenario.name(),
        r.mode,
        r.rate.map_or_else(
            || format!("concurrency {}", r.concurrency.unwrap_or(0)),
            |x| format!("{x} req/s")
        ),
        r.seconds,
        r.event_id
    );
    println!(
        "{:<16} {:>9} {:>9} {:>9} {:>7} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "requests",
        "total",
        "ok",
        "refused",
        "shed",
        "errors",
        "ok/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "shed p99"
    );
    for (name, s) in [
        ("holds", &r.holds),
        ("confirms", &r.confirms),
        ("health reads", &r.health_reads),
        ("inventory reads", &r.inventory_reads),
    ] {
        if let Some(s) = s {
            println!("{:<16} {:>9} {:>9} {:>9} {:>7} {:>7} {:>10.0} {:>8.2} {:>8.2} {:>8.2} {:>8.1} {:>10.2}",
                     name, s.requests, s.ok, s.refused, s.shed, s.errors, s.ok_per_second, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms, s.shed_p99_ms);
        }
    }
    for (name, s) in &r.operations {
        println!("{:<20} ok/s {:>8.0}  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} ok, {} refused, {} shed, {} errors)",
                 name, s.ok_per_second, s.p50_ms, s.p99_ms, s.ok, s.refused, s.shed, s.errors);
    }
    if let Some(ratio) = r.inventory_to_health_ratio {
        println!("inventory reads / health reads: {ratio:.2}");
    }
    if let Some(f) = &r.first_pass {
        println!(
            "first pass: every place handed out after {:.2} s in {} holds ({:.0} holds/s)",
            f.seconds, f.holds, f.holds_per_second
        );
    }
    if let Some(s) = r.sold_out_after_seconds {
        println!(
            "sold out after {s:.1} s: {} of {} booked, {} holds abandoned to expiry",
            r.booked, r.capacity, r.abandoned_holds
        );
    }
    if let Some(w) = &r.subscribers {
        println!(
            "live-stream subscribers: {} connected in {:.1} s, {} messages ({:.0} each), {:.1} MiB read, {} resumed after a drop; {} of {} show what PostgreSQL holds",
            w.subscribers,
            w.connect_seconds,
            w.messages,
            w.messages_per_subscriber,
            w.bytes as f64 / (1 << 20) as f64,
            w.reconnects,
            w.matching,
            w.subscribers
        );
    }
    if let Some(q) = &r.queue {
        let ms = |x: Option<f64>| x.map_or_else(|| "-".into(), |v| format!("{v:.1} ms"));
        println!(
            "waiting room: {} buyers joined ({:.0} joins/s); {} let in, {} told SOLD_OUT, {} still waiting",
            q.buyers, q.joins.ok_per_second, q.admitted, q.told_sold_out, q.still_waiting
        );
        println!(
            "granted holds p99 (server): {} under the crowd, {} unloaded ({} buyers at the pace, no crowd), {} idle (one at a time)",
            ms(q.server_admitted_hold_p99_ms),
            ms(q.server_unloaded_hold_p99_ms),
            q.unloaded_buyers,
            ms(q.server_idle_hold_p99_ms)
        );
    }
    if let Some(m) = &r.server_memory {
        if let Some(before) = m.before_subscribers_mib {
            println!("server memory before the subscribers connected: {before:.0} MiB");
        }
        println!(
            "server memory: {:.0} MiB at start, {:.0} MiB max, {:.0} MiB at end",
            m.start_mib, m.max_mib, m.end_mib
        );
    }
    if r.generator_scheduled > 0 {
        println!(
            "generator sent {} of {} requests scheduled after the warm-up ({:.1} %)",
            r.generator_scheduled - r.generator_skipped,
            r.generator_scheduled,
            100.0 * (r.generator_scheduled - r.generator_skipped) as f64
                / r.generator_scheduled as f64
        );
    }
    if r.generator_skipped > 0 {
        println!(
            "generator saturated: {} scheduled requests not sent (every connection busy; \
             a larger --max-in-flight offers more; a server that paces connections answered \
             503 needs PACE_MAX_MS=0 for an open loop)",
            r.generator_skipped
        );
    }
    println!(
        "checks: {} invariant violations, {} acknowledged holds missing, {} bookings missing → {}",
        r.violations.len(),
        r.missing_holds,
        r.missing_bookings,
        if r.passed { "PASSED" } else { "FAILED" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_target_is_the_server_this_environment_runs() {
        let any: std::net::SocketAddr = "0.0.0.0:3000".parse().unwrap();
        assert_eq!(default_target(any), "http://127.0.0.1:3000");
        let local: std::net::SocketAddr = "127.0.0.2:8080".parse().unwrap();
        assert_eq!(default_target(local), "http://127.0.0.2:8080");
        let v6: std::net::SocketAddr = "[::]:3000".parse().unwrap();
        assert_eq!(default_target(v6), "http://[::1]:3000");
        assert_eq!(Scenario::HotGa.name(), "hot-ga");
    }
}
