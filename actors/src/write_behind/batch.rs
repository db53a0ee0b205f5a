//! A batch of row changes waiting to be written, and the replies waiting on it.
//!
//! Changes are coalesced as they arrive: a hold created and confirmed in the same batch is
//! inserted once with its final status, a seat touched twice is written once with its last
//! owner, and counts keep only their last value. This keeps every bulk statement free of
//! duplicate keys (an `UPDATE … FROM UNNEST` with one id twice would apply an arbitrary one).

use std::collections::HashMap;

use crate::error::EngineError;
use crate::inventory::{BookingRow, Change, DiscountRow, HoldRow, SectionRow};
use crate::types::{
    BookingId, DiscountId, EventStatus, HoldId, HoldStatus, SeatId, SeatStatus, SectionId, UserId,
};
use crate::waiting_room::{QueueChange, QueueRow, WaitingRoomRules};

/// A reply waiting for its batch to commit: called with `Ok` after COMMIT, or with the error
/// that kept the batch from committing.
pub type Parked = Box<dyn FnOnce(Result<(), EngineError>) + Send>;

/// A status change of a hold created in an earlier batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HoldUpdate {
    pub status: HoldStatus,
    /// The booking that confirmed it (or the cancelled booking it belonged to).
    pub booking_id: Option<BookingId>,
    pub at_ms: i64,
}

/// The last owner of a seat in this batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeatUpdate {
    pub status: SeatStatus,
    pub hold_id: Option<HoldId>,
    pub booking_id: Option<BookingId>,
}

/// The last counts of a section in this batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SectionCounts {
    pub available: u32,
    pub held: u32,
    pub booked: u32,
}

/// The event's last counts in this batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventCounts {
    pub available_seats: u32,
    pub status: EventStatus,
}

/// The event's selling rules, when this batch changed them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventSettings {
    pub sale_start_ms: i64,
    pub hold_ttl_seconds: u32,
    pub max_tickets_per_user: Option<u32>,
    pub waiting_room: WaitingRoomRules,
}

/// One tick's admissions: ranks `from_rank..to_rank`, let in at `at_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueAdmission {
    pub from_rank: u32,
    pub to_rank: u32,
    pub at_ms: i64,
    pub pass_expires_at_ms: i64,
}

/// Coalesced row changes, ready to be written with one bulk statement per table.
#[derive(Debug, Default)]
pub struct Writes {
    pub sections_new: Vec<SectionRow>,
    pub discounts_new: Vec<DiscountRow>,
    pub bookings_new: Vec<BookingRow>,
    pub holds_new: Vec<HoldRow>,
    /// Status changes of holds created in earlier batches — releases and confirmations.
    /// Expiries are not among them: see `expired_through_ms`.
    pub hold_updates: HashMap<HoldId, HoldUpdate>,
    /// The latest moment at which the actor expired holds of earlier batches, if it did:
    /// stored as `events.holds_expired_through`, which makes every ACTIVE reservation due by
    /// then EXPIRED without a row write per hold (migrations/20261204000008_unwritten_expiry.sql).
    pub expired_through_ms: Option<i64>,
    /// Seats whose owner changed.
    pub seats: HashMap<SeatId, SeatUpdate>,
    /// Sections whose counts changed.
    pub sections: HashMap<SectionId, SectionCounts>,
    /// Bookings created in earlier batches and now cancelled, with when.
    pub booking_cancels: HashMap<BookingId, i64>,
    /// Discounts whose use count changed: the new count.
    pub discounts_used: HashMap<DiscountId, u32>,
    /// The event's counts, when they changed.
    pub event: Option<EventCounts>,
    /// The event's rules, when they changed.
    pub settings: Option<EventSettings>,
    /// New waiting-room entries.
    pub queue_new: Vec<QueueRow>,
    /// Ranks given by the draw: (buyer, rank).
    pub queue_ranked: Vec<(UserId, u32)>,
    /// Admissions, in order (their rank ranges never overlap).
    pub queue_admitted: Vec<QueueAdmission>,
    /// Passes used for the first time, and when.
    pub queue_used: HashMap<UserId, i64>,
    /// Where each new hold / booking sits in its vector, for coalescing.
    hold_index: HashMap<HoldId, usize>,
    booking_index: HashMap<BookingId, usize>,
}

impl Writes {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.sections_new.is_empty()
            && self.discounts_new.is_empty()
            && self.bookings_new.is_empty()
            && self.holds_new.is_empty()
            && self.hold_updates.is_empty()
            && self.expired_through_ms.is_none()
            && self.seats.is_empty()
            && self.sections.is_empty()
            && self.booking_cancels.is_empty()
            && self.discounts_used.is_empty()
            && self.event.is_none()
            && self.settings.is_none()
            && self.queue_new.is_empty()
            && self.queue_ranked.is_empty()
            && self.queue_admitted.is_empty()
            && self.queue_used.is_empty()
    }

    /// Whether the batch holds nothing but new holds, expiries, section counts and event
    /// counts — what `one_statement` writes. Every field is named (no `..`): a field added to
    /// `Writes` fails to compile here until someone decides which path writes it, rather
    /// than being silently left out of the one statement.
    pub fn only_new_holds_and_counts(&self) -> bool {
        let Writes {
            sections_new,
            discounts_new,
            bookings_new,
            holds_new: _,
            hold_updates,
            expired_through_ms: _,
            seats,
            sections: _,
            booking_cancels,
            discounts_used,
            event: _,
            settings,
            queue_new,
            queue_ranked,
            queue_admitted,
            queue_used,
            hold_index: _,
            booking_index: _,
        } = self;
        hold_updates.is_empty()
            && sections_new.is_empty()
            && discounts_new.is_empty()
            && bookings_new.is_empty()
            && seats.is_empty()
            && booking_cancels.is_empty()
            && discounts_used.is_empty()
            && settings.is_none()
            && queue_new.is_empty()
            && queue_ranked.is_empty()
            && queue_admitted.is_empty()
            && queue_used.is_empty()
    }

    /// Rows this batch writes (after coalescing), seats of new sections included.
    pub fn rows(&self) -> usize {
        self.sections_new.len()
            + self
                .sections_new
                .iter()
                .map(|s| s.seats.len())
                .sum::<usize>()
            + self.discounts_new.len()
            + self.bookings_new.len()
            + self.holds_new.len()
            + self.hold_updates.len()
            + self.seats.len()
            + self.sections.len()
            + self.booking_cancels.len()
            + self.discounts_used.len()
            + usize::from(
                self.event.is_some()
                    || self.settings.is_some()
                    || self.expired_through_ms.is_some(),
            )
            + self.queue_new.len()
            + self.queue_ranked.len()
            + self.queue_admitted.len()
            + self.queue_used.len()
    }

    fn add(&mut self, change: Change) {
        match change {
            Change::HoldCreated(row) => {
                self.hold_index.insert(row.id, self.holds_new.len());
                self.holds_new.push(row);
            }
            Change::HoldStatus {
                hold_id,
                status,
                booking_id,
                at_ms,
            } => match self.hold_index.get(&hold_id) {
                Some(&i) => {
                    let row = &mut self.holds_new[i];
                    row.status = status;
                    row.booking_id = booking_id;
                    row.updated_at_ms = at_ms;
                }
                // An earlier hold's expiry is no row: the event's watermark covers it.
                None if status == HoldStatus::Expired => {
                    self.expired_through_ms = self.expired_through_ms.max(Some(at_ms));
                }
                None => {
                    let update = HoldUpdate {
                        status,
                        booking_id,
                        at_ms,
                    };
                    self.hold_updates.insert(hold_id, update);
                }
            },
            Change::Seat {
                seat_id,
                status,
                hold_id,
                booking_id,
            } => {
                let update = SeatUpdate {
                    status,
                    hold_id,
                    booking_id,
                };
                self.seats.insert(seat_id, update);
            }
            Change::SectionCounts {
                section_id,
                available,
                held,
                booked,
            } => {
                let counts = SectionCounts {
                    available,
                    held,
                    booked,
                };
                self.sections.insert(section_id, counts);
            }
            Change::EventCounts {
                available_seats,
                status,
            } => {
                self.event = Some(EventCounts {
                    available_seats,
                    status,
                })
            }
            Change::EventSettings {
                sale_start_ms,
                hold_ttl_seconds,
                max_tickets_per_user,
                waiting_room,
            } => {
                self.settings = Some(EventSettings {
                    sale_start_ms,
                    hold_ttl_seconds,
                    max_tickets_per_user,
                    waiting_room,
                })
            }
            Change::BookingCreated(row) => {
                self.booking_index.insert(row.id, self.bookings_new.len());
                self.bookings_new.push(row);
            }
            Change::BookingCancelled { booking_id, at_ms } => {
                match self.booking_index.get(&booking_id) {
                    Some(&i) => {
                        let row = &mut self.bookings_new[i];
                        row.status = crate::types::BookingStatus::Cancelled;
                        row.cancelled_at_ms = Some(at_ms);
                    }
                    None => {
                        self.booking_cancels.insert(booking_id, at_ms);
                    }
                }
            }
            Change::DiscountUsed { discount_id, used } => {
                self.discounts_used.insert(discount_id, used);
            }
            Change::SectionCreated(row) => self.sections_new.push(row),
            Change::DiscountCreated(row) => self.discounts_new.push(row),
            Change::Queue(QueueChange::Joined(row)) => self.queue_new.push(row),
            Change::Queue(QueueChange::Ranked {
                user_ids,
                first_rank,
            }) => {
                let ranks = (first_rank..)
                    .zip(user_ids)
                    .map(|(rank, user)| (user, rank));
                self.queue_ranked.extend(ranks);
            }
            Change::Queue(QueueChange::Admitted {
                from_rank,
                to_rank,
                at_ms,
                pass_expires_at_ms,
            }) => self.queue_admitted.push(QueueAdmission {
                from_rank,
                to_rank,
                at_ms,
                pass_expires_at_ms,
            }),
            Change::Queue(QueueChange::PassUsed { user_id, at_ms }) => {
                self.queue_used.entry(user_id).or_insert(at_ms);
            }
        }
    }
}

/// Row changes and the replies that wait for them to commit.
#[derive(Default)]
pub struct Batch {
    /// What to write.
    pub writes: Writes,
    /// Changes added (before coalescing); the batch is sealed when this reaches
    /// `max_batch_changes`.
    pub change_count: usize,
    /// Replies to send once the batch has committed.
    pub parked: Vec<Parked>,
    /// The event slots of the requests parked here, given back as soon as the batch is
    /// decided — before the answers are delivered (`EventState::start_flush`).
    pub slots: Vec<tokio::sync::OwnedSemaphorePermit>,
}

impl Batch {
    /// Adds the changes of one decision.
    pub fn add(&mut self, changes: Vec<Change>) {
        self.change_count += changes.len();
        for change in changes {
            self.writes.add(change);
        }
    }

    /// Parks a reply until this batch commits.
    pub fn park(&mut self, reply: Parked) {
        self.parked.push(reply);
    }

    /// Keeps a parked request's event slot until this batch is decided.
    pub fn keep_slot(&mut self, slot: Option<tokio::sync::OwnedSemaphorePermit>) {
        self.slots.extend(slot);
    }

    /// Whether the batch has neither changes nor waiting replies.
    pub fn is_empty(&self) -> bool {
        self.change_count == 0 && self.parked.is_empty()
    }

    /// Sends every parked reply the same outcome.
    pub fn answer(self, outcome: Result<(), EngineError>) {
        for reply in self.parked {
            reply(outcome.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold_row(id: HoldId) -> HoldRow {
        HoldRow {
            id,
            user_id: 1,
            section_id: 1,
            quantity: 1,
            seat_ids: vec![],
            status: HoldStatus::Active,
            booking_id: None,
            idempotency_key: None,
            request_fingerprint: None,
            session_id: None,
            expires_at_ms: 10,
            created_at_ms: 0,
            updated_at_ms: 0,
        }
    }

    #[test]
    fn a_hold_created_and_confirmed_in_one_batch_is_inserted_once_confirmed() {
        let mut batch = Batch::default();
        batch.add(vec![Change::HoldCreated(hold_row(5))]);
        batch.add(vec![
            Change::HoldStatus {
                hold_id: 5,
                status: HoldStatus::Confirmed,
                booking_id: Some(9),
                at_ms: 3,
            },
            Change::HoldStatus {
                hold_id: 4,
                status: HoldStatus::Cancelled,
                booking_id: None,
                at_ms: 3,
            },
        ]);
        assert_eq!(batch.writes.holds_new.len(), 1);
        assert_eq!(batch.writes.holds_new[0].status, HoldStatus::Confirmed);
        assert_eq!(batch.writes.holds_new[0].booking_id, Some(9));
        assert_eq!(
            batch.writes.hold_updates.len(),
            1,
            "only the older hold is an update"
        );
        assert_eq!(batch.change_count, 3);
    }

    #[test]
    fn an_earlier_holds_expiry_is_no_row_but_moves_the_watermark() {
        let expiry = |hold_id, at_ms| Change::HoldStatus {
            hold_id,
            status: HoldStatus::Expired,
            booking_id: None,
            at_ms,
        };
        let mut batch = Batch::default();
        batch.add(vec![Change::HoldCreated(hold_row(5))]);
        batch.add(vec![expiry(4, 20), expiry(3, 20)]);
        batch.add(vec![expiry(2, 25), expiry(5, 25)]);
        assert!(batch.writes.hold_updates.is_empty(), "no row per expiry");
        assert_eq!(batch.writes.expired_through_ms, Some(25));
        // A hold created and expired in one batch is inserted as it ended.
        assert_eq!(batch.writes.holds_new[0].status, HoldStatus::Expired);
        assert!(batch.writes.only_new_holds_and_counts());
        assert!(!batch.writes.is_empty());
    }

    #[test]
    fn counts_and_seats_keep_their_last_value() {
        let mut batch = Batch::default();
        for held in 1..=3 {
            batch.add(vec![
                Change::SectionCounts {
                    section_id: 1,
                    available: 10 - held,
                    held,
                    booked: 0,
                },
                Change::Seat {
                    seat_id: 7,
                    status: SeatStatus::Held,
                    hold_id: Some(i64::from(held)),
                    booking_id: None,
                },
            ]);
        }
        let counts = SectionCounts {
            available: 7,
            held: 3,
            booked: 0,
        };
        assert_eq!(batch.writes.sections[&1], counts);
        let seat = SeatUpdate {
            status: SeatStatus::Held,
            hold_id: Some(3),
            booking_id: None,
        };
        assert_eq!(batch.writes.seats[&7], seat);
    }
}
