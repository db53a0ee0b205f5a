//! `/events/{id}/discounts` and `/discounts/validate`: discount codes.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use boxoffice_engine::types::{DiscountAmount, DiscountView as EngineDiscount, NewDiscount};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::access;
use crate::auth::AuthUser;
use crate::error::{ApiError, Data};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

/// Look-ups are cached this long; the engine enforces the real use count at confirmation.
const LOOKUP_TTL: Duration = Duration::from_secs(30);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events/{id}/discounts", post(create))
        .route("/discounts/validate", get(validate))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"code": "EARLYBIRD", "percentOff": 10, "maxUses": 100, "validUntil": "2030-06-01T00:00:00Z"}))]
pub struct NewDiscountBody {
    /// 1 to 32 letters, digits, '-' or '_'; case-insensitive.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,32}$")]
    pub code: String,
    /// 1 to 100; exactly one of percentOff and amountOffCents.
    #[schema(minimum = 1, maximum = 100)]
    pub percent_off: Option<u8>,
    /// 1 to 100,000,000; exactly one of percentOff and amountOffCents.
    #[schema(minimum = 1, maximum = 100_000_000)]
    pub amount_off_cents: Option<i64>,
    #[schema(minimum = 1, maximum = 10_000_000)]
    pub max_uses: u32,
    /// Before `validUntil` when both are given.
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
}

/// A discount code.
#[derive(Serialize, Deserialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct DiscountView {
    pub id: i64,
    pub event_id: i64,
    pub code: String,
    pub percent_off: Option<i32>,
    pub amount_off_cents: Option<i64>,
    pub max_uses: i32,
    pub used: i32,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_until: Option<DateTime<Utc>>,
}

impl From<EngineDiscount> for DiscountView {
    fn from(d: EngineDiscount) -> Self {
        let (percent_off, amount_off_cents) = match d.amount {
            DiscountAmount::PercentOff(p) => (Some(i32::from(p)), None),
            DiscountAmount::AmountOffCents(c) => (None, Some(c)),
        };
        DiscountView {
            id: d.id,
            event_id: d.event_id,
            code: d.code,
            percent_off,
            amount_off_cents,
            max_uses: d.max_uses as i32,
            used: d.used as i32,
            valid_from: d.valid_from_ms.and_then(DateTime::from_timestamp_millis),
            valid_until: d.valid_until_ms.and_then(DateTime::from_timestamp_millis),
        }
    }
}

/// A code checked against now.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    pub valid: bool,
    /// Why not, when not valid: NOT_STARTED, EXPIRED or EXHAUSTED.
    pub reason: Option<&'static str>,
    pub remaining_uses: i32,
    pub discount: DiscountView,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct ValidateQuery {
    /// The code, any case: 1 to 32 letters, digits, '-' or '_'.
    #[param(example = "EARLYBIRD", pattern = "^[A-Za-z0-9_-]{1,32}$")]
    pub code: String,
    /// The event the code is for.
    #[param(example = 1)]
    pub event_id: i64,
}

fn cache_key(event_id: i64, code: &str) -> String {
    format!("discount:{event_id}:{}", code.trim().to_uppercase())
}

/// Creates a discount code for an event (its organizer).
#[utoipa::path(post, path = "/events/{id}/discounts", tag = "discounts", params(("id" = i64, Path)),
    request_body = NewDiscountBody, security(("bearer" = [])),
    responses((status = 201, body = Data<DiscountView>), (status = 403, description = "FORBIDDEN"),
              (status = 404, description = "EVENT_NOT_FOUND"),
              (status = 409, description = "DISCOUNT_EXISTS, EVENT_CLOSED, LIMIT_REACHED (codes per event)"),
              (status = 422, description = "VALIDATION_FAILED")))]
pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(event_id): Path<i64>,
    Json(body): Json<NewDiscountBody>,
) -> Result<impl IntoResponse, ApiError> {
    access::managed_event(&state.pool, event_id, &auth).await?;
    let amount = match (body.percent_off, body.amount_off_cents) {
        (Some(p), None) => DiscountAmount::PercentOff(p),
        (None, Some(c)) => DiscountAmount::AmountOffCents(c),
        _ => {
            return Err(ApiError::validation(
                "give exactly one of percentOff and amountOffCents",
            ))
        }
    };
    let new = NewDiscount {
        code: body.code.clone(),
        amount,
        max_uses: body.max_uses,
        valid_from_ms: body.valid_from.map(|t| t.timestamp_millis()),
        valid_until_ms: body.valid_until.map(|t| t.timestamp_millis()),
    };
    let created = state.engine.add_discount(event_id, new).await?;
    state
        .cache
        .invalidate(&cache_key(event_id, &body.code))
        .await;
    Ok((StatusCode::CREATED, Data::json(DiscountView::from(created))))
}

/// Checks a discount code for an event.
#[utoipa::path(get, path = "/discounts/validate", tag = "discounts", params(ValidateQuery), security(("bearer" = [])),
    responses((status = 200, body = Data<Validation>), (status = 404, description = "DISCOUNT_NOT_FOUND")))]
pub async fn validate(
    State(state): State<AppState>,
    _auth: AuthUser,
    Query(q): Query<ValidateQuery>,
) -> Result<impl IntoResponse, ApiError> {
    if !boxoffice_engine::limits::is_discount_code(&q.code) {
        return Err(ApiError::validation(
            "code has 1 to 32 letters, digits, '-' or '_'",
        ));
    }
    let code = q.code.to_uppercase();
    let key = cache_key(q.event_id, &code);
    let found: Option<DiscountView> = state
        .cache
        .get_or_load("discount", &key, LOOKUP_TTL, || async {
            let row: Option<DiscountView> = sqlx::query_as(
                    "SELECT d.id, d.event_id, d.code, d.percent_off, d.amount_off_cents, d.max_uses, d.used,
                            d.valid_from, d.valid_until
                     FROM discounts d JOIN events e ON e.id = d.event_id
                     WHERE d.event_id = $1 AND upper(d.code) = $2 AND e.status <> 'DRAFT'",
                )
                .bind(q.event_id)
                .bind(&code)
                .fetch_optional(&state.pool)
                .await?;
            Ok(row)
        })
        .await?;
    let discount = found.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "DISCOUNT_NOT_FOUND",
            "no such discount code for this event",
        )
    })?;
    let now = Utc::now();
    let reason = if discount.valid_from.is_some_and(|from| now < from) {
        Some("NOT_STARTED")
    } else if discount.valid_until.is_some_and(|until| now >= until) {
        Some("EXPIRED")
    } else if discount.used >= discount.max_uses {
        Some("EXHAUSTED")
    } else {
        None
    };
    Ok(Data::json(Validation {
        valid: reason.is_none(),
        reason,
        remaining_uses: (discount.max_uses - discount.used).max(0),
        discount,
    }))
}
