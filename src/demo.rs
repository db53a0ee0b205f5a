//! `boxoffice seed-demo`: a demo organizer, a buyer (test@example.com / password, as in the
//! brief's load test), a venue and an event on sale with GENERAL and RESERVED sections.

use boxoffice_engine::types::{EventStatus, NewSection, SectionSpec, SettingsUpdate};
use boxoffice_engine::{Engine, EngineError, Refusal};
use sqlx::PgPool;

use crate::users;

/// Seeds the demo data; running it again reuses what exists. Returns the event id.
pub async fn seed(pool: &PgPool, engine: &Engine) -> anyhow::Result<i64> {
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
    let open = SettingsUpdate {
        status: Some(EventStatus::OnSale),
        ..Default::default()
    };
    engine.update_settings(event_id, open).await?;
    Ok(event_id)
}
