//! `/venues`: where events happen (organizers).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::AuthUser;
use crate::error::{ApiError, Data};
use crate::extract::{Json, Query};
use crate::pagination::{self, trim_page, Page};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/venues", get(list).post(create))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"name": "Riverside Hall", "address": "1 Quay Street", "capacity": 2000}))]
pub struct NewVenue {
    /// 1 to 200 characters, not only blanks.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^ \t\r\n\u0000][^\u0000]*$"
    )]
    pub name: String,
    /// At most 500 characters.
    #[serde(default)]
    #[schema(max_length = 500, pattern = r"^[^\u0000]*$")]
    pub address: String,
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub capacity: u32,
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct VenueView {
    pub id: i64,
    pub name: String,
    pub address: String,
    pub capacity: i32,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VenueQuery {
    /// Page size, 1 to 100 (default 50).
    #[param(example = 50, minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
    /// The `nextCursor` of the previous page.
    #[param(pattern = "^[A-Za-z0-9_-]{22}$")]
    pub cursor: Option<String>,
}

/// Creates a venue.
#[utoipa::path(post, path = "/venues", tag = "venues", request_body = NewVenue, security(("bearer" = [])),
    responses((status = 201, body = Data<VenueView>), (status = 403, description = "FORBIDDEN")))]
pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    Json(body): Json<NewVenue>,
) -> Result<impl IntoResponse, ApiError> {
    auth.require_organizer()?;
    use boxoffice_engine::limits::{is_name, is_text, trim_blank};
    let name = trim_blank(&body.name);
    if !is_name(&body.name)
        || body.name.chars().count() > 200
        || !is_text(&body.address)
        || body.address.chars().count() > 500
    {
        return Err(ApiError::validation(
            "name has 1 to 200 characters, address at most 500",
        ));
    }
    let max = boxoffice_engine::limits::MAX_VENUE_CAPACITY;
    if !(1..=max).contains(&body.capacity) {
        return Err(ApiError::validation(format!(
            "capacity must be between 1 and {max}"
        )));
    }
    let venue: VenueView = sqlx::query_as(
        "INSERT INTO venues (name, address, capacity, created_by) VALUES ($1, $2, $3, $4)
         RETURNING id, name, address, capacity",
    )
    .bind(name)
    .bind(body.address.trim())
    .bind(body.capacity as i32)
    .bind(auth.id)
    .fetch_one(&state.pool)
    .await?;
    Ok((StatusCode::CREATED, Data::json(venue)))
}

/// Lists venues, oldest first.
#[utoipa::path(get, path = "/venues", tag = "venues", params(VenueQuery), security(("bearer" = [])),
    responses((status = 200, body = Page<VenueView>), (status = 403, description = "FORBIDDEN")))]
pub async fn list(
    State(state): State<AppState>,
    auth: AuthUser,
    Query(q): Query<VenueQuery>,
) -> Result<impl IntoResponse, ApiError> {
    auth.require_organizer()?;
    let limit = pagination::page_size(q.limit, 50)?;
    let after = pagination::parse_id_cursor(q.cursor.as_deref())?.unwrap_or(0);
    let mut venues: Vec<VenueView> = sqlx::query_as(
        "SELECT id, name, address, capacity FROM venues WHERE id > $1 ORDER BY id LIMIT $2",
    )
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await?;
    let next_cursor = trim_page(&mut venues, limit, |v| pagination::id_cursor(v.id));
    Ok(axum::Json(Page {
        data: venues,
        next_cursor,
    }))
}
