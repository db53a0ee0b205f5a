//! The durable picture of one event's inventory, as the live feed shows it.
//!
//! The actor's own snapshot runs ahead of the database: it shows every decision the moment
//! it is made, before its batch commits. A buyer's seat map must not: a seat shown as taken
//! by a hold whose batch then fails would have been a lie. So the feed keeps its own picture,
//! moved only by batches that have committed: after COMMIT a batch's coalesced writes are
//! folded into a [`Delta`] (`Delta::add`), and the delta of one or more commits moves the
//! picture (`LiveView::apply`). Every message the feed sends is therefore a difference
//! between two durable states.

use std::collections::HashMap;

use serde::Serialize;

use crate::inventory::{InventorySnapshot, RowSnapshot, SeatSnapshot, SectionRow};
use crate::types::{EventId, EventStatus, SeatId, SeatStatus, SectionId, SectionKind};
use crate::write_behind::{SectionCounts, Writes};

/// One section as the feed shows it: counts and, when seated, every seat.
///
/// On the wire a seated section is compact, because a 20,000-seat arena is sent whole to
/// every subscriber that connects: its layout as runs of seats, and only the seats that are
/// not available, by status —
///
/// ```json
/// {"id": 7, "name": "Stalls", "type": "RESERVED", "capacity": 400, "priceCents": 8000,
///  "available": 397, "held": 2, "booked": 1,
///  "rows": [{"label": "A", "index": 0, "seats": [[1001, 1, 20]]}, ...],
///  "seats": {"RESERVED": [1004, 1005], "BOOKED": [1010]}}
/// ```
///
/// where `[1001, 1, 20]` is a run of 20 seats with ids 1001… and numbers 1… (a row whose ids
/// are not consecutive has several runs). Every seat not listed under `seats` is available.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveSection {
    pub id: SectionId,
    pub name: String,
    pub kind: SectionKind,
    pub capacity: u32,
    pub price_cents: i64,
    pub available: u32,
    pub held: u32,
    pub booked: u32,
    /// Rows front first, seats left to right (seated sections only).
    pub rows: Option<Vec<RowSnapshot>>,
}

/// A row on the wire: its seats as runs `[first id, first number, count]`.
#[derive(Serialize)]
struct WireRow<'a> {
    label: &'a str,
    index: i32,
    seats: Vec<[i64; 3]>,
}

impl Serialize for LiveSection {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let fields = if self.rows.is_some() { 10 } else { 8 };
        let mut out = serializer.serialize_struct("LiveSection", fields)?;
        out.serialize_field("id", &self.id)?;
        out.serialize_field("name", &self.name)?;
        out.serialize_field("type", &self.kind)?;
        out.serialize_field("capacity", &self.capacity)?;
        out.serialize_field("priceCents", &self.price_cents)?;
        out.serialize_field("available", &self.available)?;
        out.serialize_field("held", &self.held)?;
        out.serialize_field("booked", &self.booked)?;
        if let Some(rows) = &self.rows {
            let mut taken = SeatChanges::default();
            let wire: Vec<WireRow> = rows
                .iter()
                .map(|row| {
                    let mut runs: Vec<[i64; 3]> = Vec::new();
                    for seat in &row.seats {
                        if seat.status != SeatStatus::Available {
                            taken.push(seat.id, seat.status);
                        }
                        match runs.last_mut() {
                            Some([id, number, count])
                                if *id + *count == seat.id
                                    && *number + *count == i64::from(seat.number) =>
                            {
                                *count += 1
                            }
                            _ => runs.push([seat.id, seat.number.into(), 1]),
                        }
                    }
                    WireRow {
                        label: &row.label,
                        index: row.index,
                        seats: runs,
                    }
                })
                .collect();
            taken.sort();
            out.serialize_field("rows", &wire)?;
            out.serialize_field("seats", &taken)?;
        }
        out.end()
    }
}

/// A whole event: what a subscriber receives first, and again after a reload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveState {
    pub event_id: EventId,
    pub status: EventStatus,
    pub capacity: u32,
    pub available: u32,
    pub held: u32,
    pub booked: u32,
    pub sections: Vec<LiveSection>,
}

/// A section's counts after a commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SectionCountsChange {
    pub id: SectionId,
    pub available: u32,
    pub held: u32,
    pub booked: u32,
}

/// Seats grouped by status: `{"RESERVED": [ids], ...}`, each list in ascending order and
/// written as runs ([`ids_as_runs`]).
///
/// A sellout changes thousands of seats a second and every subscriber receives each change,
/// so the wire cost of a seat decides what ten thousand subscribers cost: never an object
/// per seat, and, because best-available fills rows in order and seat ids run along a row,
/// a block of neighbours costs two numbers, not one each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SeatChanges {
    #[serde(
        rename = "AVAILABLE",
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "ids_as_runs"
    )]
    pub available: Vec<SeatId>,
    #[serde(
        rename = "RESERVED",
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "ids_as_runs"
    )]
    pub held: Vec<SeatId>,
    #[serde(
        rename = "BOOKED",
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "ids_as_runs"
    )]
    pub booked: Vec<SeatId>,
}

/// Ascending ids as a list of lone ids and runs: `[3, [7, 4], 12]` is seats 3, 7, 8, 9, 10
/// and 12 — a run `[first, count]` for two or more consecutive ids.
fn ids_as_runs<S: serde::Serializer>(ids: &[SeatId], serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Item {
        One(SeatId),
        Run([i64; 2]),
    }
    let mut out = serializer.serialize_seq(None)?;
    let mut at = 0;
    while at < ids.len() {
        let first = ids[at];
        let mut count = 1;
        while at + count < ids.len() && ids[at + count] == first + count as i64 {
            count += 1;
        }
        if count == 1 {
            out.serialize_element(&Item::One(first))?;
        } else {
            out.serialize_element(&Item::Run([first, count as i64]))?;
        }
        at += count;
    }
    out.end()
}

impl SeatChanges {
    fn push(&mut self, id: SeatId, status: SeatStatus) {
        match status {
            SeatStatus::Available => self.available.push(id),
            SeatStatus::Held => self.held.push(id),
            SeatStatus::Booked => self.booked.push(id),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.available.is_empty() && self.held.is_empty() && self.booked.is_empty()
    }

    /// Seats changed in all.
    pub fn len(&self) -> usize {
        self.available.len() + self.held.len() + self.booked.len()
    }

    fn sort(&mut self) {
        self.available.sort_unstable();
        self.held.sort_unstable();
        self.booked.sort_unstable();
    }
}

/// What one or more commits changed, not yet shown: the last status of each seat they
/// touched, the last counts of each section, the sections they created, the event's status.
/// Commits are folded in as they happen; the feed turns the delta into one message when it
/// next sends (`LiveView::apply`), so a subscriber that receives the message ends where it
/// would have ended applying each commit on its own.
#[derive(Debug, Default)]
pub struct Delta {
    seats: HashMap<SeatId, SeatStatus>,
    sections: HashMap<SectionId, SectionCounts>,
    new_sections: Vec<SectionRow>,
    status: Option<EventStatus>,
}

impl Delta {
    /// Folds in one committed batch's writes.
    pub(crate) fn add(&mut self, w: &Writes) {
        self.new_sections.extend(w.sections_new.iter().cloned());
        self.seats
            .extend(w.seats.iter().map(|(&id, update)| (id, update.status)));
        self.sections
            .extend(w.sections.iter().map(|(&id, &c)| (id, c)));
        if let Some(e) = w.event {
            self.status = Some(e.status);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.seats.is_empty()
            && self.sections.is_empty()
            && self.new_sections.is_empty()
            && self.status.is_none()
    }
}

/// What one commit changed that a buyer can see. The event's totals are always included
/// (they are a few bytes), so a client never has to add sections up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveChange {
    pub status: EventStatus,
    pub capacity: u32,
    pub available: u32,
    pub held: u32,
    pub booked: u32,
    /// Sections whose counts changed.
    pub sections: Vec<SectionCountsChange>,
    /// Seats whose status changed, by new status, ids in ascending order.
    pub seats: SeatChanges,
    /// Sections created by this commit, whole.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub new_sections: Vec<LiveSection>,
}

/// The durable picture, with an index from seat to its place for O(1) updates.
#[derive(Debug)]
pub struct LiveView {
    event_id: EventId,
    status: EventStatus,
    sections: Vec<LiveSection>,
    /// Section id → index in `sections`.
    section_at: HashMap<SectionId, usize>,
    /// Seat id → (section index, row index, seat index).
    seat_at: HashMap<SeatId, (u32, u32, u32)>,
}

impl LiveView {
    /// The picture of a freshly loaded inventory. A load reads only committed rows (and
    /// treats holds past their expiry as released, as any later load would), so what it
    /// yields is durable.
    pub fn from_snapshot(snapshot: &InventorySnapshot) -> LiveView {
        let mut view = LiveView {
            event_id: snapshot.event_id,
            status: snapshot.status,
            sections: Vec::with_capacity(snapshot.sections.len()),
            section_at: HashMap::new(),
            seat_at: HashMap::new(),
        };
        for s in &snapshot.sections {
            view.push_section(LiveSection {
                id: s.id,
                name: s.name.clone(),
                kind: s.kind,
                capacity: s.capacity,
                price_cents: s.price_cents,
                available: s.available,
                held: s.held,
                booked: s.booked,
                rows: s.seats.as_ref().map(|m| m.rows.clone()),
            });
        }
        view
    }

    fn push_section(&mut self, section: LiveSection) {
        let at = self.sections.len();
        if let Some(rows) = &section.rows {
            for (r, row) in rows.iter().enumerate() {
                for (i, seat) in row.seats.iter().enumerate() {
                    self.seat_at
                        .insert(seat.id, (at as u32, r as u32, i as u32));
                }
            }
        }
        self.section_at.insert(section.id, at);
        self.sections.push(section);
    }

    /// The whole picture.
    pub fn state(&self) -> LiveState {
        let (capacity, available, held, booked) = self.totals();
        LiveState {
            event_id: self.event_id,
            status: self.status,
            capacity,
            available,
            held,
            booked,
            sections: self.sections.clone(),
        }
    }

    fn totals(&self) -> (u32, u32, u32, u32) {
        self.sections.iter().fold((0, 0, 0, 0), |t, s| {
            (
                t.0 + s.capacity,
                t.1 + s.available,
                t.2 + s.held,
                t.3 + s.booked,
            )
        })
    }

    /// Moves the picture by what one or more commits changed. Returns what a buyer can see
    /// changed, or `None` when nothing visible did (a discount created, a booking's
    /// reference, a seat that was taken and freed again between two messages).
    pub(crate) fn apply(&mut self, delta: Delta) -> Option<LiveChange> {
        let mut new_sections = Vec::new();
        for row in &delta.new_sections {
            if self.section_at.contains_key(&row.id) {
                continue;
            }
            let section = new_section(row);
            new_sections.push(section.clone());
            self.push_section(section);
        }
        let mut seats = SeatChanges::default();
        for (id, status) in delta.seats {
            let Some(&(s, r, i)) = self.seat_at.get(&id) else {
                continue;
            };
            let rows = self.sections[s as usize]
                .rows
                .as_mut()
                .expect("indexed seats exist");
            let seat = &mut rows[r as usize].seats[i as usize];
            if seat.status != status {
                seat.status = status;
                seats.push(id, status);
            }
        }
        let mut sections = Vec::new();
        for (id, counts) in delta.sections {
            let Some(&at) = self.section_at.get(&id) else {
                continue;
            };
            let s = &mut self.sections[at];
            if (s.available, s.held, s.booked) != (counts.available, counts.held, counts.booked) {
                s.available = counts.available;
                s.held = counts.held;
                s.booked = counts.booked;
                sections.push(SectionCountsChange {
                    id,
                    available: counts.available,
                    held: counts.held,
                    booked: counts.booked,
                });
            }
        }
        let status_changed = match delta.status {
            Some(status) if status != self.status => {
                self.status = status;
                true
            }
            _ => false,
        };
        if sections.is_empty() && seats.is_empty() && new_sections.is_empty() && !status_changed {
            return None;
        }
        // Hash maps give an arbitrary order; sorted, a message is the same for the same
        // commits, which keeps tests and diffs readable.
        sections.sort_unstable_by_key(|s| s.id);
        seats.sort();
        let (capacity, available, held, booked) = self.totals();
        Some(LiveChange {
            status: self.status,
            capacity,
            available,
            held,
            booked,
            sections,
            seats,
            new_sections,
        })
    }
}

/// A section just created: everything on sale.
fn new_section(row: &SectionRow) -> LiveSection {
    let rows = (row.kind == SectionKind::Seated).then(|| {
        let mut rows: Vec<RowSnapshot> = Vec::new();
        for seat in &row.seats {
            if rows.last().is_none_or(|r| r.index != seat.row_index) {
                rows.push(RowSnapshot {
                    label: seat.row_label.clone(),
                    index: seat.row_index,
                    seats: Vec::new(),
                });
            }
            let last = rows.last_mut().expect("just pushed");
            last.seats.push(SeatSnapshot {
                id: seat.id,
                number: seat.seat_number,
                status: SeatStatus::Available,
            });
        }
        rows
    });
    LiveSection {
        id: row.id,
        name: row.name.clone(),
        kind: row.kind,
        capacity: row.capacity,
        price_cents: row.price_cents,
        available: row.capacity,
        held: 0,
        booked: 0,
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seat(id: SeatId, number: i32, status: SeatStatus) -> SeatSnapshot {
        SeatSnapshot { id, number, status }
    }

    #[test]
    fn a_seated_section_goes_out_as_runs_and_the_seats_not_available() {
        let section = LiveSection {
            id: 7,
            name: "Stalls".into(),
            kind: SectionKind::Seated,
            capacity: 6,
            price_cents: 8000,
            available: 3,
            held: 2,
            booked: 1,
            rows: Some(vec![
                RowSnapshot {
                    label: "A".into(),
                    index: 0,
                    seats: vec![
                        seat(101, 1, SeatStatus::Available),
                        seat(102, 2, SeatStatus::Held),
                        seat(103, 3, SeatStatus::Held),
                    ],
                },
                // Ids that are not consecutive, and a gap in the numbers: three runs.
                RowSnapshot {
                    label: "B".into(),
                    index: 1,
                    seats: vec![
                        seat(104, 1, SeatStatus::Available),
                        seat(200, 2, SeatStatus::Booked),
                        seat(201, 5, SeatStatus::Available),
                    ],
                },
            ]),
        };
        assert_eq!(
            serde_json::to_value(&section).unwrap(),
            serde_json::json!({
                "id": 7, "name": "Stalls", "type": "RESERVED", "capacity": 6, "priceCents": 8000,
                "available": 3, "held": 2, "booked": 1,
                "rows": [
                    {"label": "A", "index": 0, "seats": [[101, 1, 3]]},
                    {"label": "B", "index": 1, "seats": [[104, 1, 1], [200, 2, 1], [201, 5, 1]]}
                ],
                "seats": {"RESERVED": [[102, 2]], "BOOKED": [200]}
            })
        );
        let general = LiveSection {
            kind: SectionKind::General,
            rows: None,
            ..section
        };
        let wire = serde_json::to_value(&general).unwrap();
        assert!(wire.get("rows").is_none() && wire.get("seats").is_none());
    }

    #[test]
    fn ids_go_out_as_lone_ids_and_runs_of_neighbours() {
        let changes = SeatChanges {
            available: vec![5],
            held: vec![1, 2, 3, 7, 9, 10],
            booked: vec![],
        };
        assert_eq!(
            serde_json::to_value(&changes).unwrap(),
            serde_json::json!({"AVAILABLE": [5], "RESERVED": [[1, 3], 7, [9, 2]]})
        );
    }
}
