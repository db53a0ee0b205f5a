//! `/bookings`: confirming holds into bookings, reading and cancelling them, and the
//! organizer's view of an event's bookings.

pub mod export;
mod view;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use boxoffice_engine::types::ConfirmRequest;
use boxoffice_engine::{EngineError, Refusal};

use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

pub use view::{BookingView, ItemView};

use crate::access;
use crate::auth::AuthUser;
use crate::error::{created, ApiError, Data, NotFound};
use crate::extract::{IdempotencyKey, Json, Path, Query};
use crate::pagination::{self, trim_page, Page};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/bookings", get(mine).post(create))
        .route("/bookings/{reference}", get(one))
        .route("/bookings/{reference}/cancel", post(cancel))
        .route("/events/{id}/bookings", get(of_event))
        .route("/events/{id}/bookings/export", get(export::export))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"reservationIds": [1], "discountCode": "EARLYBIRD"}))]
pub struct NewBooking {
    /// ACTIVE holds of one event, 1 to 64, each listed once.
    #[schema(min_items = 1, max_items = 64)]
    pub reservation_ids: Vec<i64>,
    /// At most 64 characters.
    #[schema(max_length = 64)]
    pub discount_code: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 100 (default 20).
    #[param(example = 20, minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]{22}$")]
    pub cursor: Option<String>,
}

/// The outcome label of a booking request, refusals made before the engine included.
fn outcome_label(result: &Result<Response, ApiError>) -> &'static str {
    let Err(e) = result else {
        return "confirmed";
    };
    // Decided by the node that owns the event, which counts it: counted here only as sent on.
    if matches!(e, ApiError::OwnedElsewhere { .. }) {
        return "forwarded";
    }
    match e.code() {
        "DISCOUNT_EXHAUSTED" | "DISCOUNT_NOT_VALID" | "DISCOUNT_NOT_FOUND" => "discount_refused",
        "RESERVATION_NOT_FOUND" | "RESERVATION_NOT_ACTIVE" => "hold_gone",
        "OVERLOADED" | "SHUTTING_DOWN" => "overloaded",
        "UNAUTHORIZED" => "unauthorized",
        _ if e.status() == StatusCode::NOT_FOUND => "not_found",
        _ if e.status().is_client_error() => "invalid",
        _ => "error",
    }
}

/// Confirms holds into a booking, applying a discount code if given. Answered only once the
/// booking is durable; its confirmation and analytics jobs are queued in the same
/// transaction. With an `Idempotency-Key`, a retry gets the first answer.
#[utoipa::path(post, path = "/bookings", tag = "bookings", request_body = NewBooking, security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
        description = "1 to 255 visible ASCII characters, naming this request: a retry with the same key replays the first answer")),
    responses((status = 201, body = Data<BookingView>), (status = 404, description = "RESERVATION_NOT_FOUND"),
              (status = 409, description = "DISCOUNT_EXHAUSTED, DISCOUNT_NOT_VALID, RESERVATION_NOT_ACTIVE"),
              (status = 422, description = "VALIDATION_FAILED")))]
pub async fn create(
    State(state): State<AppState>,
    auth: Result<AuthUser, ApiError>,
    key: Result<IdempotencyKey, ApiError>,
    body: Result<Json<NewBooking>, ApiError>,
) -> Result<Response, ApiError> {
    // As for holds: every booking request is counted by its outcome, early refusals too.
    let result = confirm(&state, auth, key, body).await;
    metrics::counter!("boxoffice_bookings_total", "outcome" => outcome_label(&result)).increment(1);
    result
}

async fn confirm(
    state: &AppState,
    auth: Result<AuthUser, ApiError>,
    key: Result<IdempotencyKey, ApiError>,
    body: Result<Json<NewBooking>, ApiError>,
) -> Result<Response, ApiError> {
    let auth = auth?;
    let IdempotencyKey(key) = key?;
    let Json(body) = body?;
    let n = body.reservation_ids.len();
    if !(1..=boxoffice_engine::limits::MAX_HOLDS_PER_BOOKING).contains(&n) {
        return Err(ApiError::validation(
            "reservationIds lists 1 to 64 reservations",
        ));
    }
    if body
        .discount_code
        .as_ref()
        .is_some_and(|c| c.chars().count() > 64)
    {
        return Err(ApiError::validation("discountCode is too long"));
    }
    // Route to the event's actor: the holds' event, from their rows.
    let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(
        "SELECT id, user_id, event_id, status FROM reservations_effective WHERE id = ANY($1)",
    )
    .bind(&body.reservation_ids)
    .fetch_all(&state.pool)
    .await?;
    let mut ids = body.reservation_ids.clone();
    ids.sort_unstable();
    ids.dedup();
    // The first id listed that is unknown or someone else's, named in the answer.
    let unknown = ids.iter().find(|id| {
        rows.iter()
            .find(|r| r.0 == **id)
            .is_none_or(|r| r.1 != auth.id && !auth.is_admin())
    });
    if let Some(&id) = unknown {
        return Err(Refusal::HoldNotFound(id).into());
    }
    let event_id = rows[0].2;
    if rows.iter().any(|r| r.2 != event_id) {
        return Err(ApiError::validation(
            "all reservations of a booking must be for one event",
        ));
    }
    if key.is_none() {
        if let Some(r) = rows.iter().find(|r| r.3 != "ACTIVE") {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "RESERVATION_NOT_ACTIVE",
                format!("reservation {} is {}", r.0, r.3),
            ));
        }
    }
    let event = access::event(&state.pool, event_id, Some(&auth)).await?;
    let request = ConfirmRequest {
        requester: event.requester(&auth),
        hold_ids: body.reservation_ids,
        discount_code: body.discount_code,
        idempotency_key: key,
    };
    let result = state.engine.confirm(event_id, request).await;
    let outcome = match result {
        // The holds expired or were confirmed a moment ago.
        Err(EngineError::Refused(Refusal::HoldNotFound(id))) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "RESERVATION_NOT_ACTIVE",
                format!("reservation {id} is no longer active: it expired or was just booked"),
            ))
        }
        other => other?,
    };
    Ok(created(
        BookingView::from(outcome.booking),
        outcome.replayed,
    ))
}

/// My bookings, newest first.
#[utoipa::path(get, path = "/bookings", tag = "bookings", params(PageQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<BookingView>)))]
pub async fn mine(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(q): Query<PageQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = pagination::page_size(q.limit, 20)?;
    let before = pagination::parse_time_id_cursor(q.cursor.as_deref())?;
    let mut rows: Vec<view::BookingRow> = sqlx::query_as(&format!(
        "{} WHERE user_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
         ORDER BY created_at DESC, id DESC LIMIT $4",
        view::SELECT
    ))
    .bind(auth.id)
    .bind(before.map(|b| b.0))
    .bind(before.map_or(0, |b| b.1))
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    let next_cursor = trim_page(&mut rows, limit, |last| {
        pagination::time_id_cursor(last.created_at, last.id)
    });
    let data = view::with_items(&state.pool, rows, view::WithBuyer::No).await?;
    Ok(axum::Json(Page { data, next_cursor }))
}

/// Loads a booking the user may see: its buyer, the event's organizer or an admin.
async fn visible(
    state: &AppState,
    auth: &AuthUser,
    reference: &str,
) -> Result<(view::BookingRow, access::EventAccess), ApiError> {
    let row: view::BookingRow =
        sqlx::query_as(&format!("{} WHERE booking_reference = $1", view::SELECT))
            .bind(reference)
            .fetch_optional(&state.pool)
            .await?
            .ok_or_else(|| ApiError::not_found(NotFound::Booking(reference.to_string())))?;
    let event = access::owned_or_managed(
        &state.pool,
        auth,
        row.event_id,
        row.user_id,
        NotFound::Booking(reference.to_string()),
    )
    .await?;
    Ok((row, event))
}

/// One booking by its reference.
#[utoipa::path(get, path = "/bookings/{reference}", tag = "bookings", params(("reference" = String, Path)),
    security(("bearer" = [])), responses((status = 200, body = Data<BookingView>), (status = 404, description = "BOOKING_NOT_FOUND")))]
pub async fn one(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(reference): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (row, _) = visible(&state, &auth, &reference).await?;
    let mut views = view::with_items(&state.pool, vec![row], view::WithBuyer::No).await?;
    Ok(Data::json(views.remove(0)))
}

/// Cancels a booking: its seats go back on sale.
#[utoipa::path(post, path = "/bookings/{reference}/cancel", tag = "bookings", params(("reference" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Data<BookingView>), (status = 404, description = "BOOKING_NOT_FOUND"),
              (status = 409, description = "BOOKING_NOT_ACTIVE")))]
pub async fn cancel(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(reference): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let (row, event) = visible(&state, &auth, &reference).await?;
    let cancelled = state
        .engine
        .cancel_booking(row.event_id, event.requester(&auth), row.id)
        .await?;
    Ok(Data::json(BookingView::from(cancelled)))
}

/// An event's bookings, oldest first (its organizer).
#[utoipa::path(get, path = "/events/{id}/bookings", tag = "bookings", params(("id" = i64, Path), PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = Page<BookingView>), (status = 403, description = "FORBIDDEN"),
              (status = 404, description = "EVENT_NOT_FOUND")))]
pub async fn of_event(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(event_id): Path<i64>,
    Query(q): Query<PageQuery>,
) -> Result<impl IntoResponse, ApiError> {
    access::managed_event(&state.pool, event_id, &auth).await?;
    let limit = pagination::page_size(q.limit, 20)?;
    let after = pagination::parse_id_cursor(q.cursor.as_deref())?.unwrap_or(0);
    let mut rows: Vec<view::BookingRow> = sqlx::query_as(&format!(
        "{} WHERE event_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        view::SELECT
    ))
    .bind(event_id)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    let next_cursor = trim_page(&mut rows, limit, |last| pagination::id_cursor(last.id));
    let data = view::with_items(&state.pool, rows, view::WithBuyer::Yes).await?;
    Ok(axum::Json(Page { data, next_cursor }))
}
