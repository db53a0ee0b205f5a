//! `/events`: creating, listing, reading and updating events.

mod etag;
mod view;

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use boxoffice_engine::limits;
use boxoffice_engine::types::{EventStatus, SettingsUpdate};
use boxoffice_engine::waiting_room::{WaitingRoomRules, WaitingRoomUpdate};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

pub use view::{EventSummary, EventView, SectionView, WaitingRoomView};

use crate::access;
use crate::auth::{AuthUser, MaybeAuthUser};
use crate::error::{ApiError, Data, NotFound};
use crate::extract::{Json, Path, Query};
use crate::pagination::{self, trim_page, Page};
use crate::state::AppState;

/// Event details are cached briefly: availability in them is a convenience; live counts
/// are `/events/{id}/inventory`.
const DETAILS_TTL: Duration = Duration::from_secs(5);
const LISTING_TTL: Duration = Duration::from_secs(10);
/// The cache family of listings, bumped when any event changes.
pub const LISTINGS: &str = "events-list";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(list).post(create))
        .route("/events/{id}", get(details).patch(update))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"eventName": "Summer Night", "eventDate": "2030-07-01T20:00:00Z", "saleStartTime": "2030-05-01T10:00:00Z", "holdTtlSeconds": 600, "maxTicketsPerUser": 8, "waitingRoom": {"enabled": true, "admitPerMinute": 1000, "passTtlSeconds": 600}}))]
pub struct NewEvent {
    /// 1 to 200 characters, not only blanks.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^ \t\r\n\u0000][^\u0000]*$"
    )]
    pub event_name: String,
    pub event_date: DateTime<Utc>,
    /// An existing venue; the event's sections may then seat at most its capacity.
    pub venue_id: Option<i64>,
    /// When the sale opens; not after `eventDate`.
    pub sale_start_time: DateTime<Utc>,
    /// 10 to 86400 (default HOLD_TTL_SECONDS).
    #[schema(minimum = 10, maximum = 86_400)]
    pub hold_ttl_seconds: Option<u32>,
    /// Tickets one buyer may have, 1 to 1000 (default 8); `null` for no limit (box-office
    /// accounts, load tests).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, nullable, minimum = 1, maximum = 1_000)]
    pub max_tickets_per_user: Option<Option<u32>>,
    /// The waiting room in front of the sale (off unless enabled).
    pub waiting_room: Option<WaitingRoomInput>,
}

/// A waiting room's settings; an absent field keeps its value (or its default).
#[derive(Deserialize, ToSchema, Default, Clone, Copy)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaitingRoomInput {
    /// When on, buyers join `/events/{id}/queue` and hold only once let in (default off).
    pub enabled: Option<bool>,
    /// Buyers let in per minute, 1 to 600000 (default 1000).
    #[schema(minimum = 1, maximum = 600_000)]
    pub admit_per_minute: Option<u32>,
    /// How long a buyer let in may start holding, 10 to 7200 seconds (default 600).
    #[schema(minimum = 10, maximum = 7_200)]
    pub pass_ttl_seconds: Option<u32>,
}

impl From<WaitingRoomInput> for WaitingRoomUpdate {
    fn from(w: WaitingRoomInput) -> Self {
        WaitingRoomUpdate {
            enabled: w.enabled,
            admit_per_minute: w.admit_per_minute,
            pass_ttl_seconds: w.pass_ttl_seconds,
        }
    }
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"eventName": "Summer Night (late show)", "maxTicketsPerUser": 6}))]
pub struct EventUpdate {
    /// 1 to 200 characters, not only blanks.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^ \t\r\n\u0000][^\u0000]*$"
    )]
    pub event_name: Option<String>,
    pub event_date: Option<DateTime<Utc>>,
    pub venue_id: Option<i64>,
    /// Not after `eventDate`.
    pub sale_start_time: Option<DateTime<Utc>>,
    /// 10 to 86400.
    #[schema(minimum = 10, maximum = 86_400)]
    pub hold_ttl_seconds: Option<u32>,
    /// 1 to 1000, or `null` to remove the limit; absent keeps it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>, nullable, minimum = 1, maximum = 1_000)]
    pub max_tickets_per_user: Option<Option<u32>>,
    /// The next status: DRAFT → ON_SALE → CANCELLED or COMPLETED (an impossible move is 409
    /// INVALID_STATUS_TRANSITION).
    #[schema(pattern = "^(DRAFT|ON_SALE|SOLD_OUT|CANCELLED|COMPLETED)$")]
    pub status: Option<String>,
    /// Changes to the waiting room; absent fields keep their values.
    pub waiting_room: Option<WaitingRoomInput>,
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
pub struct EventQuery {
    /// ON_SALE, SOLD_OUT, CANCELLED, COMPLETED; DRAFT shows your own drafts (organizers).
    #[param(
        example = "ON_SALE",
        pattern = "^(DRAFT|ON_SALE|SOLD_OUT|CANCELLED|COMPLETED)$"
    )]
    pub status: Option<String>,
    /// Events on or after this date.
    pub from: Option<DateTime<Utc>>,
    /// Events before this date.
    pub to: Option<DateTime<Utc>>,
    /// Page size, 1 to 100 (default 20).
    #[param(example = 20, minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]{22}$")]
    pub cursor: Option<String>,
}

/// The statuses as the OpenAPI document states them (`EventStatus::SPELLINGS`).
pub const STATUS_PATTERN: &str = "^(DRAFT|ON_SALE|SOLD_OUT|CANCELLED|COMPLETED)$";

/// The message for a status that is not one: what came, and what may.
fn unknown_status(given: &str) -> String {
    format!(
        "status {given:?} is not one of {}",
        EventStatus::SPELLINGS.join(", ")
    )
}

/// For a field where `null` and absent differ: absent stays `None` (`#[serde(default)]`),
/// present becomes `Some(value)`, `null` included.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

fn validate_name(raw: &str) -> Result<&str, ApiError> {
    let name = limits::trim_blank(raw);
    if !limits::is_name(raw) || raw.chars().count() > 200 {
        return Err(ApiError::validation("eventName has 1 to 200 characters"));
    }
    Ok(name)
}

fn map_venue_fk(e: sqlx::Error) -> ApiError {
    match &e {
        sqlx::Error::Database(db) if db.constraint() == Some("events_venue_id_fkey") => {
            ApiError::validation("no venue with this venueId")
        }
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23514") => {
            ApiError::validation("a value is out of range")
        }
        _ => e.into(),
    }
}

/// Creates an event (DRAFT).
#[utoipa::path(post, path = "/events", tag = "events", request_body = NewEvent, security(("bearer" = [])),
    responses((status = 201, body = Data<EventView>), (status = 403, description = "FORBIDDEN"),
              (status = 422, description = "VALIDATION_FAILED")))]
pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<NewEvent>,
) -> Result<impl IntoResponse, ApiError> {
    auth.require_organizer()?;
    let name = validate_name(&body.event_name)?;
    if body.sale_start_time > body.event_date {
        return Err(ApiError::validation(
            "saleStartTime must not be after eventDate",
        ));
    }
    let ttl = body
        .hold_ttl_seconds
        .unwrap_or(state.settings.default_hold_ttl_seconds);
    let max = body
        .max_tickets_per_user
        .unwrap_or(Some(limits::DEFAULT_MAX_TICKETS_PER_USER));
    if !(limits::MIN_HOLD_TTL_SECONDS..=limits::MAX_HOLD_TTL_SECONDS).contains(&ttl)
        || max.is_some_and(|max| !(1..=limits::MAX_TICKETS_PER_USER).contains(&max))
    {
        return Err(ApiError::validation(format!(
            "holdTtlSeconds must be {} to {} and maxTicketsPerUser 1 to {} (or null for no limit)",
            limits::MIN_HOLD_TTL_SECONDS,
            limits::MAX_HOLD_TTL_SECONDS,
            limits::MAX_TICKETS_PER_USER
        )));
    }
    let room = WaitingRoomRules::default()
        .with(body.waiting_room.unwrap_or_default().into())
        .map_err(|refusal| ApiError::validation(refusal.to_string()))?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO events (event_name, event_date, venue_id, created_by, sale_start_time,
                             hold_ttl_seconds, max_tickets_per_user, waiting_room_enabled,
                             queue_admit_per_minute, queue_pass_ttl_seconds)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(name)
    .bind(body.event_date)
    .bind(body.venue_id)
    .bind(auth.id)
    .bind(body.sale_start_time)
    .bind(ttl as i32)
    .bind(max.map(|max| max as i32))
    .bind(room.enabled)
    .bind(room.admit_per_minute as i32)
    .bind(room.pass_ttl_seconds as i32)
    .fetch_one(&state.pool)
    .await
    .map_err(map_venue_fk)?;
    state.cache.bump(LISTINGS).await;
    Ok((
        StatusCode::CREATED,
        Data::json(view::load(&state.pool, id).await?),
    ))
}

/// Lists events by date with filters and cursor pagination. Public; drafts only for their
/// organizer (`status=DRAFT`).
#[utoipa::path(get, path = "/events", tag = "events", params(EventQuery),
    responses((status = 200, body = Page<EventSummary>), (status = 400, description = "INVALID_QUERY / INVALID_CURSOR")))]
pub async fn list(
    State(state): State<AppState>,
    MaybeAuthUser(auth): MaybeAuthUser,
    Query(q): Query<EventQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let limit = pagination::page_size(q.limit, 20)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(EventStatus::parse(s).ok_or_else(|| {
            ApiError::new(StatusCode::BAD_REQUEST, "INVALID_QUERY", unknown_status(s))
        })?),
    };
    let after = pagination::parse_time_id_cursor(q.cursor.as_deref())?;
    // Drafts are private: only an organizer's own (or an admin's view of all).
    let drafts_of = match status {
        Some(EventStatus::Draft) => match auth {
            Some(a) if a.is_admin() => None,
            Some(a) => {
                a.require_organizer()?;
                Some(a.id)
            }
            None => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "sign in to list drafts",
                ))
            }
        },
        _ => None,
    };
    let load = || async {
        let mut rows: Vec<EventSummary> = sqlx::query_as(
            "SELECT id, event_name, event_date, venue_id, status, sale_start_time, available_seats
             FROM events
             WHERE ($1::text IS NULL AND status <> 'DRAFT' OR status = $1)
               AND ($2::bigint IS NULL OR created_by = $2)
               AND ($3::timestamptz IS NULL OR event_date >= $3)
               AND ($4::timestamptz IS NULL OR event_date < $4)
               AND ($5::timestamptz IS NULL OR (event_date, id) > ($5, $6))
             ORDER BY event_date, id
             LIMIT $7",
        )
        .bind(status.map(|s| s.as_str()))
        .bind(drafts_of)
        .bind(q.from)
        .bind(q.to)
        .bind(after.map(|a| a.0))
        .bind(after.map_or(0, |a| a.1))
        .bind(limit + 1)
        .fetch_all(&state.pool)
        .await?;
        let next_cursor = trim_page(&mut rows, limit, |last| {
            pagination::time_id_cursor(last.event_date, last.id)
        });
        Ok(Page {
            data: rows,
            next_cursor,
        })
    };
    let page = if drafts_of.is_some() || status == Some(EventStatus::Draft) {
        load().await?
    } else {
        let generation = state.cache.generation(LISTINGS).await;
        let key = format!(
            "events:list:{generation}:{}:{}:{}:{limit}:{}",
            status.map_or("", |s| s.as_str()),
            q.from.map(|d| d.timestamp_micros()).unwrap_or(0),
            q.to.map(|d| d.timestamp_micros()).unwrap_or(0),
            q.cursor.as_deref().unwrap_or(""),
        );
        state
            .cache
            .get_or_load("event_listing", &key, LISTING_TTL, load)
            .await?
    };
    Ok(axum::Json(page))
}

/// An event's details, cacheable by clients for 60 s and revalidated with its ETag.
#[utoipa::path(get, path = "/events/{id}", tag = "events", params(("id" = i64, Path)),
    responses((status = 200, body = Data<EventView>, headers(("ETag"), ("Cache-Control"))),
              (status = 304, description = "Not modified"), (status = 404, description = "EVENT_NOT_FOUND")))]
pub async fn details(
    State(state): State<AppState>,
    MaybeAuthUser(auth): MaybeAuthUser,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let event: EventView = state
        .cache
        .get_or_load("event", &view::cache_key(id), DETAILS_TTL, || {
            view::load(&state.pool, id)
        })
        .await?;
    if event.status == "DRAFT" {
        let manages = auth.is_some_and(|a| a.is_admin() || a.id == event.created_by);
        if !manages {
            return Err(ApiError::not_found(NotFound::Event(id)));
        }
    }
    let body =
        serde_json::to_vec(&Data { data: &event }).map_err(|e| ApiError::Internal(e.into()))?;
    let etag = etag::of(&body);
    let cache_control = if event.status == "DRAFT" {
        "private, no-cache"
    } else {
        "public, max-age=60"
    };
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| etag::none_match(v, &etag));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("ASCII"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    Ok(response)
}

/// Updates an event (its organizer): details, selling rules, status.
#[utoipa::path(patch, path = "/events/{id}", tag = "events", params(("id" = i64, Path)), request_body = EventUpdate,
    security(("bearer" = [])),
    responses((status = 200, body = Data<EventView>), (status = 403, description = "FORBIDDEN"),
              (status = 404, description = "EVENT_NOT_FOUND"), (status = 409, description = "INVALID_STATUS_TRANSITION")))]
pub async fn update(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<i64>,
    Json(body): Json<EventUpdate>,
) -> Result<impl IntoResponse, ApiError> {
    access::managed_event(&state.pool, id, &auth).await?;
    let name = body.event_name.as_deref().map(validate_name).transpose()?;
    let status = body
        .status
        .as_deref()
        .map(|s| EventStatus::parse(s).ok_or_else(|| ApiError::validation(unknown_status(s))))
        .transpose()?;
    if name.is_some() || body.event_date.is_some() || body.venue_id.is_some() {
        sqlx::query(
            "UPDATE events SET event_name = COALESCE($2, event_name),
                               event_date = COALESCE($3, event_date),
                               venue_id = COALESCE($4, venue_id),
                               version = version + 1, updated_at = now()
             WHERE id = $1",
        )
        .bind(id)
        .bind(name)
        .bind(body.event_date)
        .bind(body.venue_id)
        .execute(&state.pool)
        .await
        .map_err(map_venue_fk)?;
    }
    let rules = SettingsUpdate {
        status,
        sale_start_ms: body.sale_start_time.map(|t| t.timestamp_millis()),
        hold_ttl_seconds: body.hold_ttl_seconds,
        max_tickets_per_user: body.max_tickets_per_user,
        waiting_room: body.waiting_room.unwrap_or_default().into(),
    };
    if rules != SettingsUpdate::default() {
        // Selling rules belong to the event's actor: it applies them and persists them.
        state.engine.update_settings(id, rules).await?;
    }
    invalidate(&state, id).await;
    Ok(Data::json(view::load(&state.pool, id).await?))
}

/// Invalidates an event's cached details and listings after a change made elsewhere.
pub async fn invalidate(state: &AppState, event_id: i64) {
    state.cache.invalidate(&view::cache_key(event_id)).await;
    state.cache.bump(LISTINGS).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_status_pattern_lists_every_status() {
        assert_eq!(
            super::STATUS_PATTERN,
            format!("^({})$", super::EventStatus::SPELLINGS.join("|"))
        );
    }
}
