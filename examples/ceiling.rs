//! The design's own limit: a hold served by nothing but the design, for `bench/wrk.sh` to
//! measure beside the engine in the same run.
//!
//! What it keeps of boxoffice: axum over HTTP/1.1, the same JWT check (HS256, issuer,
//! audience, expiry), one task deciding holds in memory, and group commit — one
//! `INSERT … SELECT FROM UNNEST` per batch into a table with a primary key and three
//! secondary indexes, in its own transaction, a buyer answered only after the commit.
//! What it leaves out is everything else a product needs: sections and seats, limits per
//! buyer, idempotency keys, expiry, admission control, metrics, tracing, time limits,
//! clusters, recovery. The engine's holds/s over this program's, measured the same way on
//! the same machine in the same minute, is how much of the design's limit the product
//! keeps; it does not depend on how fast the machine is that hour.
//!
//!   DATABASE_URL=postgres://postgres@127.0.0.1:5432/db JWT_SECRET=… \
//!     BIND_ADDR=127.0.0.1:3998 cargo run --release --example ceiling
//!
//! It creates its own table (`ceiling_holds`) in that database and never reads it back.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Holds one batch may carry: a bound on a commit's size, as the engine has.
const BATCH_MAX_HOLDS: usize = 4_096;

/// Seats the one section has: more than any run of the benchmark sells.
const CAPACITY: i64 = 100_000_000;

/// A buyer's request as the engine's route takes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HoldRequest {
    section_id: i64,
    quantity: i32,
}

/// What a token must say (the engine checks the same claims).
#[derive(Deserialize)]
struct Claims {
    sub: String,
}

/// A hold on its way to the decider, with where to answer.
struct Ask {
    event_id: i64,
    section_id: i64,
    user_id: i64,
    quantity: i32,
    reply: oneshot::Sender<Result<i64, StatusCode>>,
}

/// What the handlers share.
struct Shared {
    decoding: DecodingKey,
    validation: Validation,
    decider: mpsc::Sender<Ask>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::var("BIND_ADDR").unwrap_or("127.0.0.1:3998".into());
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&std::env::var("DATABASE_URL")?)
        .await?;
    for ddl in [
        "CREATE TABLE IF NOT EXISTS ceiling_holds (id bigint PRIMARY KEY, event_id bigint NOT NULL,
           section_id bigint NOT NULL, user_id bigint NOT NULL, quantity int NOT NULL,
           status text NOT NULL, expires_at timestamptz NOT NULL, created_at timestamptz NOT NULL)",
        "CREATE INDEX IF NOT EXISTS ceiling_holds_event ON ceiling_holds (event_id, status)",
        "CREATE INDEX IF NOT EXISTS ceiling_holds_user ON ceiling_holds (user_id)",
        "CREATE INDEX IF NOT EXISTS ceiling_holds_expiry ON ceiling_holds (expires_at)",
    ] {
        sqlx::query(ddl).execute(&pool).await?;
    }
    let first_id: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) + 1 FROM ceiling_holds")
        .fetch_one(&pool)
        .await?;

    let (decider, asks) = mpsc::channel(65_536);
    let (flusher, batches) = mpsc::channel(1);
    tokio::spawn(decide(asks, flusher, first_id));
    tokio::spawn(flush(pool, batches));

    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    validation.set_issuer(&[boxoffice::auth::jwt::ISSUER]);
    validation.set_audience(&[boxoffice::auth::jwt::AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let shared = Arc::new(Shared {
        decoding: DecodingKey::from_secret(std::env::var("JWT_SECRET")?.as_bytes())?,
        validation,
        decider,
    });
    let app = Router::new()
        .route("/events/{id}/reservations", post(hold))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// `POST /events/{id}/reservations`: check the token, ask the decider, answer once durable.
async fn hold(
    State(shared): State<Arc<Shared>>,
    Path(event_id): Path<i64>,
    headers: HeaderMap,
    Json(request): Json<HoldRequest>,
) -> (StatusCode, Json<serde_json::Value>) {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let user_id = token
        .and_then(|t| jsonwebtoken::decode::<Claims>(t, &shared.decoding, &shared.validation).ok())
        .and_then(|data| data.claims.sub.parse::<i64>().ok());
    let Some(user_id) = user_id else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"code": "UNAUTHORIZED"})),
        );
    };
    let (reply, answer) = oneshot::channel();
    let ask = Ask {
        event_id,
        section_id: request.section_id,
        user_id,
        quantity: request.quantity,
        reply,
    };
    if shared.decider.send(ask).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"code": "UNAVAILABLE"})),
        );
    }
    match answer.await {
        Ok(Ok(hold_id)) => (
            StatusCode::CREATED,
            Json(json!({"holdId": hold_id, "status": "HELD"})),
        ),
        Ok(Err(status)) => (status, Json(json!({"code": status.as_str()}))),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"code": "500"})),
        ),
    }
}

/// The one task that decides: takes every waiting request at once, grants what the
/// section still has, and hands the batch to the flusher — waiting only while the
/// previous batch is still committing (group commit).
async fn decide(
    mut asks: mpsc::Receiver<Ask>,
    flusher: mpsc::Sender<Vec<(Ask, i64)>>,
    first_id: i64,
) {
    let mut available = CAPACITY;
    let mut next_id = first_id;
    let mut waiting = Vec::with_capacity(BATCH_MAX_HOLDS);
    while asks.recv_many(&mut waiting, BATCH_MAX_HOLDS).await > 0 {
        let mut batch = Vec::with_capacity(waiting.len());
        for ask in waiting.drain(..) {
            if i64::from(ask.quantity) > available || ask.quantity < 1 {
                let _ = ask.reply.send(Err(StatusCode::CONFLICT));
                continue;
            }
            available -= i64::from(ask.quantity);
            batch.push((ask, next_id));
            next_id += 1;
        }
        if !batch.is_empty() && flusher.send(batch).await.is_err() {
            return;
        }
    }
}

/// Commits each batch in one statement, then answers its buyers.
async fn flush(pool: sqlx::PgPool, mut batches: mpsc::Receiver<Vec<(Ask, i64)>>) {
    while let Some(batch) = batches.recv().await {
        let ids: Vec<i64> = batch.iter().map(|(_, id)| *id).collect();
        let events: Vec<i64> = batch.iter().map(|(a, _)| a.event_id).collect();
        let sections: Vec<i64> = batch.iter().map(|(a, _)| a.section_id).collect();
        let users: Vec<i64> = batch.iter().map(|(a, _)| a.user_id).collect();
        let quantities: Vec<i32> = batch.iter().map(|(a, _)| a.quantity).collect();
        let stored = sqlx::query(
            "INSERT INTO ceiling_holds (id, event_id, section_id, user_id, quantity, status, expires_at, created_at)
             SELECT id, e, s, u, q, 'HELD', now() + interval '10 minutes', now()
             FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::int[]) AS t(id, e, s, u, q)",
        )
        .bind(&ids)
        .bind(&events)
        .bind(&sections)
        .bind(&users)
        .bind(&quantities)
        .execute(&pool)
        .await;
        if let Err(e) = &stored {
            eprintln!("flush failed: {e}");
        }
        for (ask, id) in batch {
            let answer = match stored {
                Ok(_) => Ok(id),
                Err(_) => Err(StatusCode::INTERNAL_SERVER_ERROR),
            };
            let _ = ask.reply.send(answer);
        }
    }
}
