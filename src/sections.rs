//! `/events/{id}/sections`, `/events/{id}/inventory` and the seat map: what an event sells
//! and what is left. Reads come from the event actor's published snapshot — no database,
//! no mailbox.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use boxoffice_engine::inventory::{InventorySnapshot, SeatMapSnapshot, SectionSnapshot};
use boxoffice_engine::types::{NewSection, SectionSpec};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access;
use crate::auth::{AuthUser, MaybeAuthUser};
use crate::error::{ApiError, Data, NotFound};
use crate::extract::{Json, Path};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events/{id}/sections", post(create))
        .route("/events/{id}/inventory", get(inventory))
        .route("/events/{id}/sections/{sectionId}/seats", get(seat_map))
}

/// A new section: GENERAL (sold by quantity) or RESERVED (rows × seats generated).
#[derive(Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
#[schema(example = json!({"name": "Stalls", "type": "RESERVED", "rows": 10, "seatsPerRow": 20, "priceCents": 8000}))]
pub enum NewSectionBody {
    /// Sold by quantity.
    #[serde(rename_all = "camelCase")]
    General {
        /// 1 to 100 characters, not only blanks; unique in the event.
        #[schema(
            min_length = 1,
            max_length = 100,
            pattern = r"^[^\u0000]*[^ \t\r\n\u0000][^\u0000]*$"
        )]
        name: String,
        #[schema(minimum = 1, maximum = 1_000_000)]
        capacity: u32,
        #[schema(minimum = 0, maximum = 100_000_000)]
        price_cents: i64,
    },
    /// Sold by seat: `rows` × `seatsPerRow` seats, at most 200,000 in all.
    #[serde(rename_all = "camelCase")]
    Reserved {
        /// 1 to 100 characters, not only blanks; unique in the event.
        #[schema(
            min_length = 1,
            max_length = 100,
            pattern = r"^[^\u0000]*[^ \t\r\n\u0000][^\u0000]*$"
        )]
        name: String,
        #[schema(minimum = 1, maximum = 1_000)]
        rows: u32,
        #[schema(minimum = 1, maximum = 1_000)]
        seats_per_row: u32,
        #[schema(minimum = 0, maximum = 100_000_000)]
        price_cents: i64,
    },
}

/// A section with live counts.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SectionCounts {
    pub id: i64,
    pub name: String,
    /// GENERAL or RESERVED.
    #[serde(rename = "type")]
    pub kind: String,
    pub capacity: u32,
    pub price_cents: i64,
    pub available: u32,
    pub held: u32,
    pub booked: u32,
}

impl From<&SectionSnapshot> for SectionCounts {
    fn from(s: &SectionSnapshot) -> Self {
        SectionCounts {
            id: s.id,
            name: s.name.clone(),
            kind: s.kind.as_str().to_string(),
            capacity: s.capacity,
            price_cents: s.price_cents,
            available: s.available,
            held: s.held,
            booked: s.booked,
        }
    }
}

/// An event's live availability.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryView {
    pub event_id: i64,
    pub status: String,
    pub capacity: u32,
    pub available: u32,
    pub held: u32,
    pub booked: u32,
    pub sections: Vec<SectionCounts>,
}

impl From<&InventorySnapshot> for InventoryView {
    fn from(s: &InventorySnapshot) -> Self {
        InventoryView {
            event_id: s.event_id,
            status: s.status.as_str().to_string(),
            capacity: s.capacity,
            available: s.available,
            held: s.held,
            booked: s.booked,
            sections: s.sections.iter().map(SectionCounts::from).collect(),
        }
    }
}

/// A seat map: rows front first, seats left to right.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeatMapView {
    pub section_id: i64,
    pub rows: Vec<RowView>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RowView {
    pub label: String,
    pub seats: Vec<SeatView>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeatView {
    pub id: i64,
    pub number: i32,
    /// AVAILABLE, RESERVED or BOOKED.
    pub status: String,
}

fn seat_map_view(section_id: i64, map: &SeatMapSnapshot) -> SeatMapView {
    SeatMapView {
        section_id,
        rows: map
            .rows
            .iter()
            .map(|r| RowView {
                label: r.label.clone(),
                seats: r
                    .seats
                    .iter()
                    .map(|s| SeatView {
                        id: s.id,
                        number: s.number,
                        status: s.status.as_str().to_string(),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Adds a section to an event (its organizer). RESERVED sections get their seats generated.
#[utoipa::path(post, path = "/events/{id}/sections", tag = "sections", params(("id" = i64, Path)),
    request_body = NewSectionBody, security(("bearer" = [])),
    responses((status = 201, body = Data<SectionCounts>), (status = 403, description = "FORBIDDEN"),
              (status = 404, description = "EVENT_NOT_FOUND"),
              (status = 409, description = "SECTION_EXISTS, EVENT_CLOSED, LIMIT_REACHED (sections per event, the venue's capacity)"),
              (status = 422, description = "VALIDATION_FAILED")))]
pub async fn create(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<i64>,
    Json(body): Json<NewSectionBody>,
) -> Result<impl IntoResponse, ApiError> {
    access::managed_event(&state.pool, id, &auth).await?;
    // The event's venue bounds its sections; the actor checks the sum, so two sections
    // added at once cannot both slip under it.
    let venue_capacity: Option<i32> = sqlx::query_scalar(
        "SELECT v.capacity FROM events e JOIN venues v ON v.id = e.venue_id WHERE e.id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?;
    let capacity_limit = venue_capacity.map(|c| c.max(0) as u32);
    let section = match body {
        NewSectionBody::General {
            name,
            capacity,
            price_cents,
        } => NewSection {
            name,
            spec: SectionSpec::General { capacity },
            price_cents,
            capacity_limit,
        },
        NewSectionBody::Reserved {
            name,
            rows,
            seats_per_row,
            price_cents,
        } => NewSection {
            name,
            spec: SectionSpec::Seated {
                rows,
                seats_per_row,
            },
            price_cents,
            capacity_limit,
        },
    };
    let created = state.engine.add_section(id, section).await?;
    crate::events::invalidate(&state, id).await;
    Ok((
        StatusCode::CREATED,
        Data::json(SectionCounts::from(&created)),
    ))
}

/// An event's live availability, from its actor's snapshot.
#[utoipa::path(get, path = "/events/{id}/inventory", tag = "sections", params(("id" = i64, Path)),
    responses((status = 200, body = Data<InventoryView>), (status = 404, description = "EVENT_NOT_FOUND")))]
pub async fn inventory(
    State(state): State<AppState>,
    MaybeAuthUser(auth): MaybeAuthUser,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    let snapshot = visible_snapshot(&state, id, auth.as_ref()).await?;
    Ok((
        [(header::CACHE_CONTROL, "no-cache")],
        Data::json(InventoryView::from(&*snapshot)),
    ))
}

/// A RESERVED section's seat map with each seat's status.
#[utoipa::path(get, path = "/events/{id}/sections/{sectionId}/seats", tag = "sections",
    params(("id" = i64, Path), ("sectionId" = i64, Path)),
    responses((status = 200, body = Data<SeatMapView>), (status = 404, description = "EVENT_NOT_FOUND, SECTION_NOT_FOUND")))]
pub async fn seat_map(
    State(state): State<AppState>,
    MaybeAuthUser(auth): MaybeAuthUser,
    Path((id, section_id)): Path<(i64, i64)>,
) -> Result<impl IntoResponse, ApiError> {
    let snapshot = visible_snapshot(&state, id, auth.as_ref()).await?;
    let map = snapshot
        .section(section_id)
        .and_then(|s| s.seats.as_ref())
        .ok_or_else(|| ApiError::not_found(NotFound::SeatedSection(section_id)))?;
    Ok((
        [(header::CACHE_CONTROL, "no-cache")],
        Data::json(seat_map_view(section_id, map)),
    ))
}

/// The snapshot of an event the requester may see (drafts only for their organizer).
async fn visible_snapshot(
    state: &AppState,
    id: i64,
    auth: Option<&AuthUser>,
) -> Result<std::sync::Arc<InventorySnapshot>, ApiError> {
    let snapshot = state.engine.snapshot(id).await?;
    if snapshot.status == boxoffice_engine::types::EventStatus::Draft {
        // Drafts are private; this costs a query only for drafts.
        access::event(&state.pool, id, auth).await?;
    }
    Ok(snapshot)
}
