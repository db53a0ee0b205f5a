//! Who may see and change what. A customer acts on their own holds and bookings; an
//! organizer on the events they created (and those events' holds and bookings); an admin on
//! everything. Objects a requester may not see are reported as not found, so ids of other
//! people's holds and bookings cannot be probed.

use boxoffice_engine::types::Requester;
use sqlx::PgPool;

use crate::auth::{AuthUser, Role};
use crate::error::{ApiError, NotFound};

/// The facts about an event that access decisions need.
#[derive(Clone, Copy, Debug)]
pub struct EventAccess {
    pub id: i64,
    pub created_by: i64,
    pub is_draft: bool,
}

impl EventAccess {
    /// Whether the user manages this event: its organizer or an admin.
    pub fn managed_by(&self, auth: Option<&AuthUser>) -> bool {
        auth.is_some_and(|a| a.is_admin() || (a.role == Role::Organizer && a.id == self.created_by))
    }

    /// The engine requester for an action on this event's holds or bookings.
    pub fn requester(&self, auth: &AuthUser) -> Requester {
        Requester {
            user_id: auth.id,
            privileged: self.managed_by(Some(auth)),
        }
    }
}

/// Loads an event's access facts; 404 when it does not exist, or is a draft the user does
/// not manage.
pub async fn event(
    pool: &PgPool,
    event_id: i64,
    auth: Option<&AuthUser>,
) -> Result<EventAccess, ApiError> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT created_by, status FROM events WHERE id = $1")
            .bind(event_id)
            .fetch_optional(pool)
            .await?;
    let (created_by, status) = row.ok_or_else(|| ApiError::not_found(NotFound::Event(event_id)))?;
    let access = EventAccess {
        id: event_id,
        created_by,
        is_draft: status == "DRAFT",
    };
    if access.is_draft && !access.managed_by(auth) {
        return Err(ApiError::not_found(NotFound::Event(event_id)));
    }
    Ok(access)
}

/// Loads an event the user must manage: 404 when it does not exist, 403 when it exists but
/// belongs to someone else or the user is a customer.
pub async fn managed_event(
    pool: &PgPool,
    event_id: i64,
    auth: &AuthUser,
) -> Result<EventAccess, ApiError> {
    auth.require_organizer()?;
    let access = event(pool, event_id, Some(auth)).await?;
    if !access.managed_by(Some(auth)) {
        return Err(ApiError::forbidden(
            "only the event's organizer may do this",
        ));
    }
    Ok(access)
}

/// Loads the event of an object (a hold or a booking) owned by `owner`, and lets the user see
/// the object only if they own it or manage its event; otherwise the object is "not found".
pub async fn owned_or_managed(
    pool: &PgPool,
    auth: &AuthUser,
    event_id: i64,
    owner: i64,
    what: NotFound,
) -> Result<EventAccess, ApiError> {
    let event = event(pool, event_id, Some(auth)).await?;
    if owner != auth.id && !event.managed_by(Some(auth)) {
        return Err(ApiError::not_found(what));
    }
    Ok(event)
}
