//! `/events/{id}/queue`: the event's waiting room. A buyer joins, then follows their place
//! (`GET .../queue/me`, or the `.../queue/me/stream` Server-Sent Events) until they are let
//! in; their pass then lets them hold until it runs out.
//!
//! Joining goes through the event's actor (it decides the place and writes it in the same
//! group commit as holds). Reading a place never does: the actor's board answers it from
//! memory, so a million buyers polling cost no database query and no mailbox wait.

pub mod stream;

use axum::extract::State;
use axum::routing::{get, post};
use axum::Router;
use boxoffice_engine::types::EventStatus;
use boxoffice_engine::waiting_room::{QueueStatus, QueueView};
use boxoffice_engine::{EngineError, Refusal};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::access;
use crate::auth::AuthUser;
use crate::error::{ApiError, Data};
use crate::extract::Path;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events/{id}/queue", post(join))
        .route("/events/{id}/queue/me", get(me))
        .route("/events/{id}/queue/me/stream", get(stream::stream))
}

/// A buyer's place in an event's waiting room.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueEntryView {
    pub event_id: i64,
    pub status: EntryStatus,
    /// 1 for the next buyer let in; `null` before the draw and once let in.
    pub position: Option<u32>,
    /// Buyers in line ahead; `null` when `position` is.
    pub buyers_ahead: Option<u32>,
    /// Seconds until admission at the event's pace; `null` when `position` is.
    pub estimated_wait_seconds: Option<u32>,
    pub joined_at: DateTime<Utc>,
    /// When an early arrival is placed by the draw (the sale's opening); `null` once placed.
    pub draw_at: Option<DateTime<Utc>>,
    pub admitted_at: Option<DateTime<Utc>>,
    /// Holds are accepted until then.
    pub pass_expires_at: Option<DateTime<Utc>>,
    /// Whether a hold was placed with the pass.
    pub pass_used: bool,
}

/// Where a buyer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntryStatus {
    /// In line, or (before the opening) waiting for the draw.
    Waiting,
    /// Let in: holds are accepted until `passExpiresAt`.
    Admitted,
    /// Nothing is left now. The place is kept: the line moves again if tickets come back.
    SoldOut,
    /// The pass ran out.
    Expired,
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

impl QueueEntryView {
    pub fn new(event_id: i64, v: &QueueView) -> Self {
        let status = match v.status {
            QueueStatus::Waiting => EntryStatus::Waiting,
            QueueStatus::Admitted => EntryStatus::Admitted,
            QueueStatus::SoldOut => EntryStatus::SoldOut,
            QueueStatus::Expired => EntryStatus::Expired,
        };
        QueueEntryView {
            event_id,
            status,
            position: v.position,
            buyers_ahead: v.buyers_ahead,
            estimated_wait_seconds: v.estimated_wait_seconds,
            joined_at: time(v.joined_at_ms),
            draw_at: v.draw_at_ms.map(time),
            admitted_at: v.admitted_at_ms.map(time),
            pass_expires_at: v.pass_expires_at_ms.map(time),
            pass_used: v.pass_used,
        }
    }
}

/// A draft answers like an event that does not exist, except to its organizer: checked
/// (one query) only when the event's snapshot says it is a draft.
async fn hide_drafts(state: &AppState, event_id: i64, auth: &AuthUser) -> Result<(), ApiError> {
    let snapshot = state.engine.snapshot(event_id).await?;
    if snapshot.status == EventStatus::Draft {
        access::event(&state.pool, event_id, Some(auth)).await?;
    }
    Ok(())
}

/// Joins the event's waiting room, or answers the entry the buyer already has (one entry
/// per buyer per event). Answered once the entry is durable. Early arrivals (before the sale
/// opens) are placed by a random draw at the opening; later ones queue behind, in order.
#[utoipa::path(post, path = "/events/{id}/queue", tag = "queue", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Data<QueueEntryView>),
              (status = 404, description = "EVENT_NOT_FOUND"),
              (status = 409, description = "WAITING_ROOM_OFF, SALE_NOT_OPEN, LIMIT_REACHED (the waiting room is full)")))]
pub async fn join(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(event_id): Path<i64>,
) -> Result<axum::Json<Data<QueueEntryView>>, ApiError> {
    let joined = state.engine.join_queue(event_id, auth.id).await;
    if matches!(joined, Err(EngineError::Refused(Refusal::SaleNotOpen))) {
        hide_drafts(&state, event_id, &auth).await?;
    }
    Ok(Data::json(QueueEntryView::new(event_id, &joined?)))
}

/// The buyer's place and status, from memory: no database query, no wait behind the
/// event's decisions. Poll it, or follow `/events/{id}/queue/me/stream`.
#[utoipa::path(get, path = "/events/{id}/queue/me", tag = "queue", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Data<QueueEntryView>),
              (status = 404, description = "EVENT_NOT_FOUND, QUEUE_ENTRY_NOT_FOUND (join first)"),
              (status = 409, description = "WAITING_ROOM_OFF")))]
pub async fn me(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(event_id): Path<i64>,
) -> Result<axum::Json<Data<QueueEntryView>>, ApiError> {
    let place = state.engine.queue_position(event_id, auth.id).await;
    if place.is_err() {
        hide_drafts(&state, event_id, &auth).await?;
    }
    Ok(Data::json(QueueEntryView::new(event_id, &place?)))
}
