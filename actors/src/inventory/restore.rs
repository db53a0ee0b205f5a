//! Rebuilding an inventory from what PostgreSQL holds, after a restart or a failure.
//!
//! The rows are the truth: counts are recomputed from the holds and bookings rather than
//! trusted, holds already past their expiry are released at once, and any difference from
//! the stored counts comes back as changes for the first batch to write.

use super::{
    Change, EventRules, Hold, Inventory, KeyedBooking, KeyedHold, RowSpec, SeatMap, SeatOwner,
    Section,
};
use crate::types::{
    BookingId, BookingItem, BookingStatus, BookingView, DiscountView, EventId, HoldStatus,
    HoldView, SectionId, SectionKind,
};
use crate::waiting_room::{RestoredEntry, WaitingRoom};

/// A section as stored.
#[derive(Clone, Debug)]
pub struct RestoredSection {
    pub id: SectionId,
    pub name: String,
    pub kind: SectionKind,
    pub capacity: u32,
    pub price_cents: i64,
    /// Seats by row (seated sections).
    pub rows: Vec<RowSpec>,
    /// The counts as stored, compared with the recomputed ones.
    pub stored_counts: (u32, u32, u32),
}

/// A reservation row as stored: ACTIVE and CONFIRMED ones, those of bookings, and those with
/// an idempotency key (whose first answer a retry must get).
#[derive(Clone, Debug)]
pub struct RestoredHold {
    /// The hold; `status` is the stored status.
    pub view: HoldView,
    pub booking_id: Option<BookingId>,
    pub idempotency_key: Option<String>,
    /// What the keyed request asked; `None` for rows stored before fingerprints were kept.
    pub request_fingerprint: Option<String>,
}

/// A booking row as stored; its `items` are empty and come from its holds.
#[derive(Clone, Debug)]
pub struct RestoredBooking {
    pub view: BookingView,
    pub idempotency_key: Option<String>,
    /// What the keyed request asked; `None` for rows stored before fingerprints were kept.
    pub request_fingerprint: Option<String>,
}

/// Everything stored about one event.
#[derive(Clone, Debug)]
pub struct Restored {
    pub event_id: EventId,
    pub rules: EventRules,
    /// `events.available_seats` as stored.
    pub stored_available: u32,
    pub sections: Vec<RestoredSection>,
    pub holds: Vec<RestoredHold>,
    pub bookings: Vec<RestoredBooking>,
    pub discounts: Vec<DiscountView>,
    /// The waiting room's entries.
    pub queue: Vec<RestoredEntry>,
    /// `events.holds_expired_through`: the moment the event's holds were expired through.
    pub holds_expired_through_ms: Option<i64>,
}

impl Inventory {
    /// Rebuilds an inventory. Returns it with the changes that bring PostgreSQL in line
    /// (expired holds, corrected counts), or a description of stored data that breaks an
    /// invariant.
    pub fn restore(stored: Restored, clock_ms: i64) -> Result<(Inventory, Vec<Change>), String> {
        let mut inv = Inventory::new(stored.event_id, stored.rules);
        inv.time_floor_ms = stored.holds_expired_through_ms.unwrap_or(i64::MIN);
        let now_ms = inv.now_ms(clock_ms);
        let mut stored_counts = Vec::new();
        for s in stored.sections {
            let seats = (s.kind == SectionKind::Seated).then(|| SeatMap::new(s.rows));
            if let Some(seats) = &seats {
                if seats.capacity() != s.capacity {
                    return Err(format!(
                        "section {} has {} seats for capacity {}",
                        s.id,
                        seats.capacity(),
                        s.capacity
                    ));
                }
            }
            stored_counts.push((s.id, s.stored_counts));
            inv.sections.insert(
                s.id,
                Section {
                    id: s.id,
                    name: s.name,
                    kind: s.kind,
                    capacity: s.capacity,
                    price_cents: s.price_cents,
                    held: 0,
                    booked: 0,
                    seats,
                    seat_snapshot: None,
                    seats_dirty: true,
                },
            );
        }
        for d in stored.discounts {
            inv.discounts.insert(d.code.to_uppercase(), d);
        }
        for stored_booking in stored.bookings {
            let booking = stored_booking.view;
            if let Some(key) = stored_booking.idempotency_key {
                inv.booking_keys.insert(
                    (booking.user_id, key),
                    KeyedBooking {
                        fingerprint: stored_booking.request_fingerprint,
                        booking_id: booking.id,
                    },
                );
            }
            inv.bookings.insert(booking.id, booking);
        }

        for stored_hold in stored.holds {
            inv.restore_hold(stored_hold)?;
        }
        for booking in inv.bookings.values_mut() {
            booking.items.sort_by_key(|i| i.hold_id);
        }
        for section in inv.sections.values() {
            if section.held + section.booked > section.capacity {
                return Err(format!("section {} is oversold in storage", section.id));
            }
        }
        inv.check_invariants()?;
        inv.queue = WaitingRoom::restore(stored.queue, now_ms)?;

        let mut changes = Vec::new();
        for (id, counts) in stored_counts {
            let s = &inv.sections[&id];
            if counts != (s.available(), s.held, s.booked) {
                changes.push(s.counts_change());
            }
        }
        inv.last_event_counts = Some((stored.stored_available, inv.rules.status));
        let (_, expired) = inv.expire_due(now_ms);
        changes.extend(expired);
        inv.finish(&mut changes);
        Ok((inv, changes))
    }

    fn restore_hold(&mut self, stored: RestoredHold) -> Result<(), String> {
        let RestoredHold {
            mut view,
            booking_id,
            idempotency_key,
            request_fingerprint,
        } = stored;
        let status = view.status;
        if let Some(key) = idempotency_key {
            let mut first = view.clone();
            first.status = HoldStatus::Active;
            self.hold_keys.insert(
                (view.user_id, key),
                KeyedHold {
                    fingerprint: request_fingerprint,
                    view: first,
                },
            );
        }
        let section = self.sections.get_mut(&view.section_id).ok_or(format!(
            "hold {} names unknown section {}",
            view.id, view.section_id
        ))?;
        let owner = match (status, booking_id) {
            (HoldStatus::Active, None) => SeatOwner::Held(view.id),
            (HoldStatus::Confirmed, Some(b)) => SeatOwner::Booked(b),
            (HoldStatus::Cancelled, Some(b)) => {
                // A hold of a cancelled booking: part of that booking's history only.
                push_item(&mut self.bookings, b, &view, section.price_cents)?;
                return Ok(());
            }
            (HoldStatus::Expired | HoldStatus::Cancelled, None) => return Ok(()),
            _ => {
                return Err(format!(
                    "hold {} is {status} with booking {booking_id:?}",
                    view.id
                ))
            }
        };
        if let Some(seats) = section.seats.as_mut() {
            for &seat_id in &view.seat_ids {
                let p = seats
                    .position(seat_id)
                    .ok_or(format!("hold {} names unknown seat {seat_id}", view.id))?;
                if seats.owner(p) != SeatOwner::Free {
                    return Err(format!("seat {seat_id} is claimed twice"));
                }
                seats.set_owner(p, owner);
            }
        }
        *self.tickets_by_user.entry(view.user_id).or_insert(0) += view.quantity;
        match owner {
            SeatOwner::Held(_) => {
                section.held += view.quantity;
                self.expiry.insert((view.expires_at_ms, view.id));
                view.status = HoldStatus::Active;
                self.holds.insert(view.id, Hold { view });
            }
            SeatOwner::Booked(b) => {
                section.booked += view.quantity;
                let price = section.price_cents;
                push_item(&mut self.bookings, b, &view, price)?;
                if self.bookings[&b].status != BookingStatus::Confirmed {
                    return Err(format!(
                        "hold {} is CONFIRMED in cancelled booking {b}",
                        view.id
                    ));
                }
            }
            SeatOwner::Free => unreachable!(),
        }
        Ok(())
    }
}

fn push_item(
    bookings: &mut std::collections::HashMap<BookingId, BookingView>,
    booking_id: BookingId,
    hold: &HoldView,
    unit_price_cents: i64,
) -> Result<(), String> {
    let booking = bookings.get_mut(&booking_id).ok_or(format!(
        "hold {} names unknown booking {booking_id}",
        hold.id
    ))?;
    booking.items.push(BookingItem {
        hold_id: hold.id,
        section_id: hold.section_id,
        quantity: hold.quantity,
        seat_ids: hold.seat_ids.clone(),
        unit_price_cents,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{on_sale, T0};
    use super::*;
    use crate::types::{ConfirmRequest, HoldKind, HoldRequest, Requester};

    /// Turns a live inventory into what PostgreSQL would hold for it.
    fn store(inv: &Inventory) -> Restored {
        let mut holds = Vec::new();
        for h in inv.holds.values() {
            holds.push(RestoredHold {
                view: h.view.clone(),
                booking_id: None,
                idempotency_key: None,
                request_fingerprint: None,
            });
        }
        let mut bookings = Vec::new();
        for b in inv.bookings.values() {
            for item in &b.items {
                holds.push(RestoredHold {
                    view: HoldView {
                        id: item.hold_id,
                        event_id: inv.event_id,
                        user_id: b.user_id,
                        section_id: item.section_id,
                        quantity: item.quantity,
                        seat_ids: item.seat_ids.clone(),
                        status: if b.status == BookingStatus::Confirmed {
                            HoldStatus::Confirmed
                        } else {
                            HoldStatus::Cancelled
                        },
                        expires_at_ms: 0,
                        created_at_ms: 0,
                    },
                    booking_id: Some(b.id),
                    idempotency_key: None,
                    request_fingerprint: None,
                });
            }
            let mut empty = b.clone();
            empty.items.clear();
            bookings.push(RestoredBooking {
                view: empty,
                idempotency_key: None,
                request_fingerprint: None,
            });
        }
        Restored {
            event_id: inv.event_id,
            rules: inv.rules.clone(),
            stored_available: inv.available_total(),
            sections: inv
                .sections
                .values()
                .map(|s| RestoredSection {
                    id: s.id,
                    name: s.name.clone(),
                    kind: s.kind,
                    capacity: s.capacity,
                    price_cents: s.price_cents,
                    rows: s
                        .seats
                        .as_ref()
                        .map(|m| {
                            let mut rows: Vec<RowSpec> = Vec::new();
                            for (label, index, id, number, _) in m.seats() {
                                if rows.last().is_none_or(|r| r.index != index) {
                                    rows.push(RowSpec {
                                        label: label.into(),
                                        index,
                                        seats: vec![],
                                    });
                                }
                                rows.last_mut().unwrap().seats.push((id, number));
                            }
                            rows
                        })
                        .unwrap_or_default(),
                    stored_counts: (s.available(), s.held, s.booked),
                })
                .collect(),
            holds,
            bookings,
            discounts: inv.discounts.values().cloned().collect(),
            queue: Vec::new(),
            holds_expired_through_ms: None,
        }
    }

    #[test]
    fn a_restored_inventory_equals_the_one_that_was_stored_less_what_expired() {
        let mut inv = on_sale(10, 2, 5, 8);
        let req = |user, kind| HoldRequest {
            user_id: user,
            kind,
            idempotency_key: None,
            session_id: None,
        };
        inv.place_hold(
            req(
                1,
                HoldKind::General {
                    section_id: 1,
                    quantity: 3,
                },
            ),
            100,
            T0,
        )
        .unwrap();
        inv.place_hold(
            req(
                2,
                HoldKind::Seats {
                    seat_ids: vec![1004, 1005],
                },
            ),
            101,
            T0 + 10_000,
        )
        .unwrap();
        inv.place_hold(
            req(
                3,
                HoldKind::BestAvailable {
                    section_id: 2,
                    quantity: 2,
                    allow_split: false,
                },
            ),
            102,
            T0,
        )
        .unwrap();
        let confirm = ConfirmRequest {
            requester: Requester::buyer(3),
            hold_ids: vec![102],
            discount_code: None,
            idempotency_key: None,
        };
        inv.confirm(confirm, 500, "R".into(), T0).unwrap();

        let (mut restored, changes) = Inventory::restore(store(&inv), T0 + 1).unwrap();
        assert!(changes.is_empty(), "nothing to correct: {changes:?}");
        assert_eq!(
            restored.snapshot(true).sections,
            inv.clone().snapshot(true).sections
        );

        // Sixty seconds later the first hold is past its expiry and comes back released.
        let (restored, changes) = Inventory::restore(store(&inv), T0 + 60_000).unwrap();
        assert!(changes.contains(&Change::HoldStatus {
            hold_id: 100,
            status: HoldStatus::Expired,
            booking_id: None,
            at_ms: T0 + 60_000
        }));
        assert_eq!(restored.sections[&1].held, 0);
        assert_eq!(restored.active_holds(), 1);
        restored.check_invariants().unwrap();
    }

    #[test]
    fn stored_data_that_claims_a_seat_twice_is_rejected() {
        let mut inv = on_sale(1, 1, 4, 8);
        let req = |user, id| HoldRequest {
            user_id: user,
            kind: HoldKind::Seats { seat_ids: vec![id] },
            idempotency_key: None,
            session_id: None,
        };
        inv.place_hold(req(1, 1001), 100, T0).unwrap();
        let mut stored = store(&inv);
        let mut twin = stored.holds[0].clone();
        twin.view.id = 101;
        stored.holds.push(twin);
        assert!(Inventory::restore(stored, T0).is_err());
    }
}
