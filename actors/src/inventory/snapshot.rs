//! Immutable pictures of an event's inventory, published by its actor so that availability
//! reads never wait in the actor's mailbox and never touch the database.

use std::sync::Arc;

use serde::Serialize;

use crate::types::{EventId, EventStatus, SeatId, SeatStatus, SectionId, SectionKind};

/// One seat as a seat map shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeatSnapshot {
    pub id: SeatId,
    pub number: i32,
    pub status: SeatStatus,
}

/// One row of a seat map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RowSnapshot {
    pub label: String,
    pub index: i32,
    pub seats: Vec<SeatSnapshot>,
}

/// The seat map of a seated section.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SeatMapSnapshot {
    pub rows: Vec<RowSnapshot>,
}

/// One section's availability.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SectionSnapshot {
    pub id: SectionId,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: SectionKind,
    pub capacity: u32,
    pub price_cents: i64,
    pub available: u32,
    pub held: u32,
    pub booked: u32,
    /// The seat map (seated sections only). Refreshed once per group commit rather than on
    /// every decision, because copying thousands of seats per hold would cost more than the
    /// hold itself; the counts above are always current.
    #[serde(skip)]
    pub seats: Option<Arc<SeatMapSnapshot>>,
}

/// An event's whole availability at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InventorySnapshot {
    pub event_id: EventId,
    pub status: EventStatus,
    pub sale_start_ms: i64,
    pub hold_ttl_seconds: u32,
    pub max_tickets_per_user: Option<u32>,
    pub capacity: u32,
    pub available: u32,
    pub held: u32,
    pub booked: u32,
    pub active_holds: usize,
    pub sections: Vec<SectionSnapshot>,
    /// Increases with every change; good for ETags and for tests that wait for a change.
    pub version: u64,
}

impl InventorySnapshot {
    /// The section with this id.
    pub fn section(&self, id: SectionId) -> Option<&SectionSnapshot> {
        self.sections.iter().find(|s| s.id == id)
    }
}
