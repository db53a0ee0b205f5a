//! Recovery time: loading a 100,000-seat event with 50,000 ACTIVE holds from PostgreSQL and
//! rebuilding its inventory — what a restarted actor does before it can sell again.
//!
//! Needs PostgreSQL (TEST_DATABASE_URL, default the local server); creates and drops a
//! database of its own. Run: `cargo bench -p boxoffice-engine --bench recovery`

use boxoffice_engine::inventory::Inventory;
use boxoffice_engine::recovery;
use boxoffice_engine::testdb::TestDb;
use criterion::{criterion_group, criterion_main, Criterion};

/// Builds the event straight in SQL (faster than selling it through the engine).
async fn big_event(db: &TestDb) -> i64 {
    let pool = &db.pool;
    let organizer: i64 = sqlx::query_scalar("INSERT INTO users (email, password_hash, role) VALUES ('o@x', 'x', 'ORGANIZER') RETURNING id")
        .fetch_one(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO users (email, password_hash) SELECT 'b' || g || '@x', 'x' FROM generate_series(1, 12500) g")
        .execute(pool)
        .await
        .unwrap();
    let event: i64 = sqlx::query_scalar(
        "INSERT INTO events (event_name, event_date, created_by, sale_start_time, status, max_tickets_per_user, available_seats)
         VALUES ('Stadium', now() + interval '30 days', $1, now(), 'ON_SALE', 8, 50000) RETURNING id",
    )
    .bind(organizer)
    .fetch_one(pool)
    .await
    .unwrap();
    let section: i64 = sqlx::query_scalar(
        "INSERT INTO event_sections (event_id, name, kind, capacity, price_cents, available, held)
         VALUES ($1, 'Bowl', 'RESERVED', 100000, 5000, 50000, 50000) RETURNING id",
    )
    .bind(event)
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO seats (event_id, section_id, row_label, row_index, seat_number)
         SELECT $1, $2, 'R' || r, r, n FROM generate_series(0, 199) r, generate_series(1, 500) n",
    )
    .bind(event)
    .bind(section)
    .execute(pool)
    .await
    .unwrap();
    // Every odd-numbered seat is held, one seat per hold, four holds per buyer.
    sqlx::query(
        "WITH odd AS (SELECT id, row_number() OVER (ORDER BY id) AS k FROM seats
                      WHERE section_id = $2 AND seat_number % 2 = 1)
         INSERT INTO reservations (id, user_id, event_id, section_id, quantity, seat_ids, status,
                                   expires_at, created_at, updated_at)
         SELECT nextval('reservations_id_seq'), (SELECT min(id) FROM users) + 1 + (k - 1) / 4, $1, $2, 1,
                ARRAY[odd.id], 'ACTIVE', now() + interval '1 hour', now(), now()
         FROM odd",
    )
    .bind(event)
    .bind(section)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE seats s SET status = 'RESERVED', reservation_id = r.id
         FROM reservations r WHERE r.section_id = $1 AND s.id = r.seat_ids[1]",
    )
    .bind(section)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(pool).await.unwrap();
    event
}

fn recovery(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (db, event, claimant) = rt.block_on(async {
        let db = TestDb::create().await;
        let event = big_event(&db).await;
        // Loading claims the event, which takes a node with a lease.
        let membership = boxoffice_engine::cluster::Membership::new(Default::default());
        let incarnation = membership.join(&db.pool).await.unwrap();
        let claimant = recovery::Claimant {
            node_id: membership.node_id().into(),
            incarnation: incarnation.0,
        };
        (db, event, claimant)
    });
    let mut group = c.benchmark_group("recovery");
    group.sample_size(10);
    group.bench_function("load_100k_seats_50k_holds", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (stored, _) = recovery::load(&db.pool, event, &claimant).await.unwrap();
                let (inventory, pending) = Inventory::restore(stored, 0).unwrap();
                assert_eq!(inventory.active_holds(), 50_000);
                assert!(pending.is_empty());
                inventory
            })
        })
    });
    group.bench_function("restore_only_100k_seats_50k_holds", |b| {
        let (stored, _) = rt
            .block_on(recovery::load(&db.pool, event, &claimant))
            .unwrap();
        b.iter(|| Inventory::restore(stored.clone(), 0).unwrap())
    });
    group.finish();
    drop(db);
}

criterion_group!(benches, recovery);
criterion_main!(benches);
