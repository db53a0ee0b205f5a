//! Preparing a scenario: accounts straight in the database (with tokens minted from the
//! server's JWT secret, so that thousands of buyers cost no password hashing), the event
//! and its sections through the API, exactly as an organizer would.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::auth::jwt::{Keys, Role};

/// A prepared scenario.
pub struct Prepared {
    /// The run's mark in every account it created (`loadtest-{run}-…`).
    pub run: String,
    /// The organizer's bearer token.
    pub organizer_token: String,
    pub event_id: i64,
    /// The section buyers hit.
    pub section_id: i64,
    /// Bearer tokens of the buyers.
    pub buyer_tokens: Vec<String>,
    /// A discount code of the event, when the scenario uses one.
    pub discount_code: Option<String>,
}

/// What the event should look like.
pub struct EventPlan {
    pub name: String,
    /// `{"name", "type", …}` as `POST /events/{id}/sections` takes it.
    pub section: Value,
    pub max_tickets_per_user: u32,
    pub hold_ttl_seconds: u32,
    pub discount: bool,
}

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let response = client
        .request(method, &url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{url} answered {status}: {body}");
    }
    Ok(body["data"].clone())
}

/// Creates the accounts, the event, its section (and discount) and opens the sale.
pub async fn prepare(
    pool: &PgPool,
    keys: &Keys,
    client: &reqwest::Client,
    target: &str,
    buyers: usize,
    plan: EventPlan,
) -> anyhow::Result<Prepared> {
    let run = uuid::Uuid::new_v4().simple().to_string();
    // One real argon2 hash shared by every generated account: they sign in with minted
    // tokens, never with the password.
    let hash = crate::users::hash_password(&run)?;
    let organizer: i64 = sqlx::query_scalar(
        "INSERT INTO users (email, password_hash, role) VALUES ($1, $2, 'ORGANIZER') RETURNING id",
    )
    .bind(format!("loadtest-{run}-organizer@example.com"))
    .bind(&hash)
    .fetch_one(pool)
    .await?;
    let buyer_ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO users (email, password_hash)
         SELECT 'loadtest-' || $1 || '-' || g || '@example.com', $2 FROM generate_series(1, $3) g
         RETURNING id",
    )
    .bind(&run)
    .bind(&hash)
    .bind(buyers as i32)
    .fetch_all(pool)
    .await?;
    let organizer_token = keys
        .issue(organizer, Role::Organizer)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let buyer_tokens = buyer_ids
        .iter()
        .map(|&id| {
            keys.issue(id, Role::Customer)
                .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let post = reqwest::Method::POST;
    let event = send(
        client,
        post.clone(),
        format!("{target}/events"),
        &organizer_token,
        json!({
            "eventName": plan.name,
            "eventDate": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339(),
            "saleStartTime": chrono::Utc::now().to_rfc3339(),
            "maxTicketsPerUser": plan.max_tickets_per_user,
            "holdTtlSeconds": plan.hold_ttl_seconds,
        }),
    )
    .await?;
    let event_id = event["id"].as_i64().context("event id")?;
    let section = send(
        client,
        post.clone(),
        format!("{target}/events/{event_id}/sections"),
        &organizer_token,
        plan.section,
    )
    .await?;
    let section_id = section["id"].as_i64().context("section id")?;
    let discount_code = if plan.discount {
        let code = format!("LOAD{}", &run[..8]).to_uppercase();
        send(
            client,
            post.clone(),
            format!("{target}/events/{event_id}/discounts"),
            &organizer_token,
            json!({"code": code, "percentOff": 10, "maxUses": 10_000_000}),
        )
        .await?;
        Some(code)
    } else {
        None
    };
    send(
        client,
        reqwest::Method::PATCH,
        format!("{target}/events/{event_id}"),
        &organizer_token,
        json!({"status": "ON_SALE"}),
    )
    .await?;
    Ok(Prepared {
        run,
        organizer_token,
        event_id,
        section_id,
        buyer_tokens,
        discount_code,
    })
}

/// Turns the waiting room of a prepared event on, at `admit_per_minute`, and moves its
/// opening an hour away: buyers who join now are drawn at the opening.
pub async fn open_waiting_room(
    client: &reqwest::Client,
    target: &str,
    prepared: &Prepared,
    admit_per_minute: u32,
) -> anyhow::Result<()> {
    let opens = chrono::Utc::now() + chrono::Duration::hours(1);
    let room = json!({"enabled": true, "admitPerMinute": admit_per_minute, "passTtlSeconds": 60});
    patch_event(
        client,
        target,
        prepared,
        json!({"saleStartTime": opens.to_rfc3339(), "waitingRoom": room}),
    )
    .await
}

/// Opens the sale of a prepared event now.
pub async fn open_sale_now(
    client: &reqwest::Client,
    target: &str,
    prepared: &Prepared,
) -> anyhow::Result<()> {
    let now = chrono::Utc::now().to_rfc3339();
    patch_event(client, target, prepared, json!({"saleStartTime": now})).await
}

/// `PATCH /events/{id}` of a prepared event, as its organizer.
async fn patch_event(
    client: &reqwest::Client,
    target: &str,
    prepared: &Prepared,
    body: Value,
) -> anyhow::Result<()> {
    let url = format!("{target}/events/{}", prepared.event_id);
    send(
        client,
        reqwest::Method::PATCH,
        url,
        &prepared.organizer_token,
        body,
    )
    .await?;
    Ok(())
}

/// Removes what [`prepare`] made, so that load tests leave no events or accounts in the
/// server's listings: the event is cancelled through the API first (its actor stops
/// selling), then its rows and the run's accounts are deleted in one transaction. The event
/// row goes last and its lock comes first, so a flush still in flight finishes before, and
/// any later one finds no row and is fenced like a superseded owner's (its actor then
/// stops: the event no longer exists).
pub async fn clean_up(
    pool: &PgPool,
    client: &reqwest::Client,
    target: &str,
    prepared: &Prepared,
) -> anyhow::Result<()> {
    let event_id = prepared.event_id;
    send(
        client,
        reqwest::Method::PATCH,
        format!("{target}/events/{event_id}"),
        &prepared.organizer_token,
        json!({"status": "CANCELLED"}),
    )
    .await?;
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT id FROM events WHERE id = $1 FOR UPDATE")
        .bind(event_id)
        .execute(&mut *tx)
        .await?;
    for statement in [
        "DELETE FROM outbox WHERE (payload->>'eventId')::bigint = $1",
        "DELETE FROM seats WHERE event_id = $1",
        "DELETE FROM reservations WHERE event_id = $1",
        "DELETE FROM bookings WHERE event_id = $1",
        "DELETE FROM discounts WHERE event_id = $1",
        "DELETE FROM queue_entries WHERE event_id = $1",
        "DELETE FROM event_sections WHERE event_id = $1",
        "DELETE FROM events WHERE id = $1",
    ] {
        sqlx::query(statement)
            .bind(event_id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM users WHERE email LIKE 'loadtest-' || $1 || '-%@example.com'")
        .bind(&prepared.run)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
