//! `boxoffice seed-demo`: a demo organizer, a buyer (test@example.com / password, as in the
//! performance guide's load test), a venue and an event on sale with GENERAL and RESERVED
//! sections.
//!
//! `seed-demo --artillery` instead prepares what the performance guide's Artillery scenario
//! (`load-test.yml`, unmodified) posts to: event 123 with GENERAL section 1, on sale, large
//! enough for every arrival of the scenario and without a per-buyer limit, since every
//! virtual user signs in as the same buyer.

use boxoffice_engine::types::{EventStatus, NewSection, SectionSpec, SettingsUpdate};
use boxoffice_engine::{Engine, EngineError, Refusal};
use sqlx::PgPool;

use crate::users;

/// The event id `load-test.yml` posts its holds to.
pub const ARTILLERY_EVENT_ID: i64 = 123;
/// The section id it names.
pub const ARTILLERY_SECTION_ID: i64 = 1;
/// Tickets in that section: the scenario's 21,600 arrivals each hold 2 (43,200), with room
/// to spare for a second run within the hold lifetime.
pub const ARTILLERY_CAPACITY: u32 = 100_000;

/// Seeds what `load-test.yml` needs. It names fixed ids, so it needs a database whose
/// event 123 and section 1 are free (a fresh one); running it again on the database it
/// seeded reuses the event.
pub async fn seed_artillery(pool: &PgPool, engine: &Engine) -> anyhow::Result<i64> {
    let organizer = seed_accounts(pool).await?;
    let existing: Option<(i64, String)> =
        sqlx::query_as("SELECT created_by, event_name FROM events WHERE id = $1")
            .bind(ARTILLERY_EVENT_ID)
            .fetch_optional(pool)
            .await?;
    match existing {
        Some((by, name)) if by == organizer && name == "Artillery on-sale" => {}
        Some(_) => anyhow::bail!(
            "event {ARTILLERY_EVENT_ID} already exists here; load-test.yml names fixed ids, so seed it \
             on a fresh database (DATABASE_URL=postgres://postgres@127.0.0.1:5432/boxoffice_artillery)"
        ),
        None => {
            // An explicit id, then the sequence moved past it so later events never collide.
            sqlx::query(
                "INSERT INTO events (id, event_name, event_date, created_by, sale_start_time, max_tickets_per_user)
                 VALUES ($1, 'Artillery on-sale', now() + interval '30 days', $2, now(), NULL)",
            )
            .bind(ARTILLERY_EVENT_ID)
            .bind(organizer)
            .execute(pool)
            .await?;
            sqlx::query("SELECT setval(pg_get_serial_sequence('events', 'id'), GREATEST((SELECT max(id) FROM events), 1))")
                .execute(pool)
                .await?;
        }
    }
    let section = NewSection {
        name: "Floor".into(),
        spec: SectionSpec::General {
            capacity: ARTILLERY_CAPACITY,
        },
        price_cents: 4500,
        capacity_limit: None,
    };
    let section_id = match engine.add_section(ARTILLERY_EVENT_ID, section).await {
        Ok(s) => s.id,
        Err(EngineError::Refused(Refusal::SectionExists)) => {
            sqlx::query_scalar(
                "SELECT id FROM event_sections WHERE event_id = $1 AND name = 'Floor'",
            )
            .bind(ARTILLERY_EVENT_ID)
            .fetch_one(pool)
            .await?
        }
        Err(e) => return Err(e.into()),
    };
    if section_id != ARTILLERY_SECTION_ID {
        anyhow::bail!(
            "the section got id {section_id}, but load-test.yml posts to section {ARTILLERY_SECTION_ID}: \
             seed it on a fresh database"
        );
    }
    open_sale(engine, ARTILLERY_EVENT_ID).await?;
    Ok(ARTILLERY_EVENT_ID)
}

/// The demo organizer and buyer; returns the organizer's id.
async fn seed_accounts(pool: &PgPool) -> anyhow::Result<i64> {
    let organizer = users::upsert(
        pool,
        "organizer@example.com",
        "organizer-password",
        "ORGANIZER",
        "Olga",
        "Organizer",
    )
    .await?;
    users::upsert(
        pool,
        "test@example.com",
        "password",
        "CUSTOMER",
        "Test",
        "Buyer",
    )
    .await?;
    Ok(organizer)
}

async fn open_sale(engine: &Engine, event_id: i64) -> anyhow::Result<()> {
    let open = SettingsUpdate {
        status: Some(EventStatus::OnSale),
        ..Default::default()
    };
    engine.update_settings(event_id, open).await?;
    Ok(())
}

/// Seeds the demo data; running it again reuses what exists. Returns the event id.
pub async fn seed(pool: &PgPool, engine: &Engine) -> anyhow::Result<i64> {
    let organizer = seed_accounts(pool).await?;
    let existing: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM events WHERE event_name = 'Demo night' AND created_by = $1",
    )
    .bind(organizer)
    .fetch_optional(pool)
    .await?;
    let event_id = match existing {
        Some(id) => id,
        None => {
            let venue: i64 = sqlx::query_scalar(
                "INSERT INTO venues (name, address, capacity, created_by) VALUES ('Demo Hall', '1 Main St', 3000, $1) RETURNING id",
            )
            .bind(organizer)
            .fetch_one(pool)
            .await?;
            sqlx::query_scalar(
                "INSERT INTO events (event_name, event_date, venue_id, created_by, sale_start_time)
                 VALUES ('Demo night', now() + interval '30 days', $1, $2, now()) RETURNING id",
            )
            .bind(venue)
            .bind(organizer)
            .fetch_one(pool)
            .await?
        }
    };
    for section in [
        NewSection {
            name: "Floor".into(),
            spec: SectionSpec::General { capacity: 2000 },
            price_cents: 4500,
            capacity_limit: None,
        },
        NewSection {
            name: "Stalls".into(),
            spec: SectionSpec::Seated {
                rows: 20,
                seats_per_row: 50,
            },
            price_cents: 7500,
            capacity_limit: None,
        },
    ] {
        match engine.add_section(event_id, section).await {
            Ok(_) | Err(EngineError::Refused(Refusal::SectionExists)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    open_sale(engine, event_id).await?;
    Ok(event_id)
}
