//! `/events/{id}/reservations` and `/reservations`: holds.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use boxoffice_engine::limits::MAX_TICKETS_PER_REQUEST;
use boxoffice_engine::types::{HoldKind, HoldRequest, HoldView};
use boxoffice_engine::{EngineError, Refusal};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access;
use crate::auth::AuthUser;
use crate::error::{created, ApiError, Data, NotFound};
use crate::extract::{IdempotencyKey, Json, Path};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events/{id}/reservations", post(create))
        .route("/reservations", get(mine))
        .route("/reservations/{id}", get(one).delete(release))
}

/// What to hold.
#[derive(Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
#[schema(example = json!({"type": "GENERAL", "sectionId": 1, "quantity": 2}))]
pub enum ReservationBody {
    /// `quantity` tickets of a GENERAL section.
    #[serde(rename_all = "camelCase")]
    General {
        section_id: i64,
        /// 1 to 100 (and within the event's per-buyer limit).
        #[schema(minimum = 1, maximum = 100)]
        quantity: u32,
    },
    /// These seats of one RESERVED section.
    #[serde(rename_all = "camelCase")]
    Seats {
        /// 1 to 100 seats, each listed once.
        #[schema(min_items = 1, max_items = 100)]
        seat_ids: Vec<i64>,
    },
    /// The best `quantity` adjacent seats of a RESERVED section; `allowSplit` accepts
    /// non-adjacent seats when no row has them together.
    #[serde(rename_all = "camelCase")]
    BestAvailable {
        section_id: i64,
        /// 1 to 100 (and within the event's per-buyer limit).
        #[schema(minimum = 1, maximum = 100)]
        quantity: u32,
        #[serde(default)]
        allow_split: bool,
    },
}

/// A hold.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct ReservationView {
    pub id: i64,
    pub event_id: i64,
    pub section_id: i64,
    pub quantity: i32,
    pub seat_ids: Vec<i64>,
    /// ACTIVE, CONFIRMED, EXPIRED or CANCELLED.
    pub status: String,
    pub expires_at: DateTime<Utc>,
}

impl From<HoldView> for ReservationView {
    fn from(h: HoldView) -> Self {
        ReservationView {
            id: h.id,
            event_id: h.event_id,
            section_id: h.section_id,
            quantity: h.quantity as i32,
            seat_ids: h.seat_ids,
            status: h.status.as_str().to_string(),
            expires_at: DateTime::from_timestamp_millis(h.expires_at_ms).unwrap_or_default(),
        }
    }
}

/// A hold the engine would not shed right now. Refuses with 503 before the token is
/// checked or the body read when it would: with thousands of buyers retrying at once, what
/// a refusal costs is what the admitted holds lose. An extractor, first in `create`'s list,
/// rather than a route layer: a layer costs every admitted hold a boxed clone of the route
/// and another future (a few per cent of nominal throughput in a side-by-side probe).
pub struct NotShed;

impl axum::extract::FromRequestParts<AppState> for NotShed {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, Response> {
        let event_id = crate::extract::event_id_in_path(parts.uri.path());
        if event_id.is_some_and(|id| state.engine.sheds_now(id)) {
            metrics::counter!("boxoffice_reservations_total", "outcome" => "overloaded")
                .increment(1);
            return Err(ApiError::from(EngineError::Overloaded).into_response());
        }
        Ok(NotShed)
    }
}

/// The outcome label of a hold request, refusals made before the engine included.
fn outcome_label(result: &Result<Response, ApiError>) -> &'static str {
    let Err(e) = result else {
        return "granted";
    };
    // Decided by the node that owns the event, which counts it: counted here only as sent on.
    if matches!(e, ApiError::OwnedElsewhere { .. }) {
        return "forwarded";
    }
    match e.code() {
        "SOLD_OUT" => "sold_out",
        "SEAT_UNAVAILABLE" => "seat_unavailable",
        "TICKET_LIMIT" => "limit",
        "QUEUE_PASS_REQUIRED" | "QUEUE_PASS_EXPIRED" => "no_pass",
        "SALE_NOT_OPEN" | "EVENT_CLOSED" => "not_on_sale",
        "OVERLOADED" | "SHUTTING_DOWN" => "overloaded",
        "UNAUTHORIZED" => "unauthorized",
        _ if e.status() == StatusCode::NOT_FOUND => "not_found",
        _ if e.status().is_client_error() => "invalid",
        _ => "error",
    }
}

/// Holds tickets or seats. Answered only once the hold is durable. With an
/// `Idempotency-Key`, a retry gets the first answer (`Idempotent-Replayed: true`).
#[utoipa::path(post, path = "/events/{id}/reservations", tag = "reservations", params(("id" = i64, Path),
    ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
        description = "1 to 255 visible ASCII characters, naming this request: a retry with the same key replays the first answer")),
    request_body = ReservationBody, security(("bearer" = [])),
    responses((status = 201, body = Data<ReservationView>),
              (status = 403, description = "QUEUE_PASS_REQUIRED, QUEUE_PASS_EXPIRED: the event's waiting room is on and the buyer holds no good pass"),
              (status = 404, description = "EVENT_NOT_FOUND, SECTION_NOT_FOUND, SEAT_NOT_FOUND"),
              (status = 409, description = "SOLD_OUT, SEAT_UNAVAILABLE, SALE_NOT_OPEN, EVENT_CLOSED, TICKET_LIMIT, WRONG_SECTION_TYPE"),
              (status = 422, description = "VALIDATION_FAILED"),
              (status = 503, description = "OVERLOADED, with Retry-After")))]
pub async fn create(
    _admitted: NotShed,
    State(state): State<AppState>,
    auth: Result<AuthUser, ApiError>,
    path: Result<Path<i64>, ApiError>,
    key: Result<IdempotencyKey, ApiError>,
    body: Result<Json<ReservationBody>, ApiError>,
) -> Result<Response, ApiError> {
    // Extractors' refusals are taken as values so that every hold request is counted by
    // its outcome, however early it was refused.
    let result = hold(&state, auth, path, key, body).await;
    metrics::counter!("boxoffice_reservations_total", "outcome" => outcome_label(&result))
        .increment(1);
    result
}

async fn hold(
    state: &AppState,
    auth: Result<AuthUser, ApiError>,
    path: Result<Path<i64>, ApiError>,
    key: Result<IdempotencyKey, ApiError>,
    body: Result<Json<ReservationBody>, ApiError>,
) -> Result<Response, ApiError> {
    let auth = auth?;
    let Path(event_id) = path?;
    let IdempotencyKey(key) = key?;
    let Json(body) = body?;
    let kind = match body {
        ReservationBody::General {
            section_id,
            quantity,
        } => HoldKind::General {
            section_id,
            quantity,
        },
        ReservationBody::Seats { seat_ids } => {
            if seat_ids.is_empty() {
                return Err(ApiError::validation("seatIds must name at least one seat"));
            }
            HoldKind::Seats { seat_ids }
        }
        ReservationBody::BestAvailable {
            section_id,
            quantity,
            allow_split,
        } => HoldKind::BestAvailable {
            section_id,
            quantity,
            allow_split,
        },
    };
    if !(1..=MAX_TICKETS_PER_REQUEST).contains(&kind.quantity()) {
        return Err(ApiError::validation(format!(
            "a reservation is for 1 to {MAX_TICKETS_PER_REQUEST} tickets"
        )));
    }
    let request = HoldRequest {
        user_id: auth.id,
        kind,
        idempotency_key: key,
        session_id: None,
    };
    let result = state.engine.hold(event_id, request).await;
    if matches!(result, Err(EngineError::Refused(Refusal::SaleNotOpen))) {
        // A draft refuses every hold as "not open"; to anyone but its organizer it must not
        // exist at all, as on every other route. Only this refusal pays for the look-up.
        access::event(&state.pool, event_id, Some(&auth)).await?;
    }
    let outcome = result?;
    Ok(created(
        ReservationView::from(outcome.hold),
        outcome.replayed,
    ))
}

// A hold's status is read through `reservations_effective`: an expiry writes no row
// (migrations/20261204000008_unwritten_expiry.sql).
const SELECT_OWNED: &str =
    "SELECT id, event_id, section_id, quantity, seat_ids, status, expires_at, user_id
     FROM reservations_effective";

/// My active holds, newest first.
#[utoipa::path(get, path = "/reservations", tag = "reservations", security(("bearer" = [])),
    responses((status = 200, body = Data<Vec<ReservationView>>)))]
pub async fn mine(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<impl IntoResponse, ApiError> {
    // The table, not the view: a hold not yet due is not expired, so no watermark is needed
    // here, and `idx_reservations_user_status` finds the buyer's ACTIVE rows — among them
    // every hold they ever abandoned, which the view's derived status could not skip.
    let holds: Vec<ReservationView> = sqlx::query_as(
        "SELECT id, event_id, section_id, quantity, seat_ids, status, expires_at FROM reservations
         WHERE user_id = $1 AND status = 'ACTIVE' AND expires_at > now() ORDER BY id DESC LIMIT 100",
    )
    .bind(auth.id)
    .fetch_all(&state.pool)
    .await?;
    Ok(Data::json(holds))
}

/// Loads a hold the user may see: its buyer, the event's organizer, or an admin.
async fn visible(
    state: &AppState,
    auth: &AuthUser,
    id: i64,
) -> Result<(ReservationView, access::EventAccess), ApiError> {
    #[derive(sqlx::FromRow)]
    struct Owned {
        #[sqlx(flatten)]
        hold: ReservationView,
        user_id: i64,
    }
    let row: Option<Owned> = sqlx::query_as(&format!("{SELECT_OWNED} WHERE id = $1"))
        .bind(id)
        .fetch_optional(&state.pool)
        .await?;
    let Owned {
        hold,
        user_id: owner,
    } = row.ok_or_else(|| ApiError::not_found(NotFound::Reservation(id)))?;
    let event = access::owned_or_managed(
        &state.pool,
        auth,
        hold.event_id,
        owner,
        NotFound::Reservation(id),
    )
    .await?;
    Ok((hold, event))
}

/// One hold.
#[utoipa::path(get, path = "/reservations/{id}", tag = "reservations", params(("id" = i64, Path)),
    security(("bearer" = [])), responses((status = 200, body = Data<ReservationView>), (status = 404, description = "RESERVATION_NOT_FOUND")))]
pub async fn one(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    let (hold, _) = visible(&state, &auth, id).await?;
    Ok(Data::json(hold))
}

/// Releases an active hold: its tickets go back on sale at once.
#[utoipa::path(delete, path = "/reservations/{id}", tag = "reservations", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Data<ReservationView>), (status = 404, description = "RESERVATION_NOT_FOUND"),
              (status = 409, description = "RESERVATION_NOT_ACTIVE")))]
pub async fn release(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    let (hold, event) = visible(&state, &auth, id).await?;
    let not_active = |id: i64| {
        ApiError::new(
            StatusCode::CONFLICT,
            "RESERVATION_NOT_ACTIVE",
            format!("reservation {id} is no longer active: it expired, was released or was booked"),
        )
    };
    if hold.status != "ACTIVE" {
        return Err(not_active(id));
    }
    match state
        .engine
        .release(hold.event_id, event.requester(&auth), id)
        .await
    {
        Ok(released) => Ok(Data::json(ReservationView::from(released))),
        // Stored as ACTIVE but gone from the actor: it expired or was confirmed a moment ago.
        Err(EngineError::Refused(Refusal::HoldNotFound(_))) => Err(not_active(id)),
        Err(e) => Err(e.into()),
    }
}
