//! Bookings: turning ACTIVE holds into a paid booking, and cancelling a booking.

use super::{
    BookingRow, Change, Decision, Inventory, KeyedBooking, SeatOwner, MAX_HOLDS_PER_BOOKING,
};
use crate::error::Refusal;
use crate::types::{
    BookingId, BookingItem, BookingOutcome, BookingStatus, BookingView, ConfirmRequest,
    EventStatus, HoldStatus, Requester, SeatStatus,
};

impl Inventory {
    /// Confirms ACTIVE holds into one booking, applying a discount code if given.
    /// `booking_id` and `reference` are minted by the caller; `reference` must be unguessable.
    pub fn confirm(
        &mut self,
        request: ConfirmRequest,
        booking_id: BookingId,
        reference: String,
        now_ms: i64,
    ) -> Decision<BookingOutcome> {
        let mut hold_ids = request.hold_ids.clone();
        hold_ids.sort_unstable();
        let code = request
            .discount_code
            .as_ref()
            .map(|c| c.trim().to_uppercase());
        let owner = request.requester.user_id;
        if let Some(key) = &request.idempotency_key {
            if let Some(first) = self.booking_keys.get(&(owner, key.clone())) {
                if first
                    .fingerprint
                    .as_ref()
                    .is_some_and(|(ids, c)| *ids != hold_ids || *c != code)
                {
                    return Err(Refusal::IdempotencyKeyReused);
                }
                let booking = self.bookings[&first.booking_id].clone();
                return Ok((
                    BookingOutcome {
                        booking,
                        replayed: true,
                    },
                    Vec::new(),
                ));
            }
        }
        if hold_ids.is_empty() || hold_ids.len() > MAX_HOLDS_PER_BOOKING {
            return Err(Refusal::Invalid(format!(
                "a booking confirms between 1 and {MAX_HOLDS_PER_BOOKING} reservations"
            )));
        }
        if hold_ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(Refusal::Invalid("a reservation is listed twice".into()));
        }
        if !matches!(
            self.rules.status,
            EventStatus::OnSale | EventStatus::SoldOut
        ) {
            return Err(Refusal::EventClosed(self.rules.status));
        }

        // Check everything before changing anything: a refused confirm changes nothing.
        let mut buyer = None;
        let mut subtotal_cents = 0i64;
        for id in &hold_ids {
            let hold = match self.holds.get(id) {
                Some(h) if request.requester.may_act_for(h.view.user_id) => &h.view,
                _ => return Err(Refusal::HoldNotFound),
            };
            if *buyer.get_or_insert(hold.user_id) != hold.user_id {
                return Err(Refusal::Invalid(
                    "all reservations of a booking must belong to one buyer".into(),
                ));
            }
            subtotal_cents +=
                i64::from(hold.quantity) * self.sections[&hold.section_id].price_cents;
        }
        let buyer = buyer.expect("at least one hold");
        let discount = match &code {
            None => None,
            Some(code) => {
                let d = self.discounts.get(code).ok_or(Refusal::DiscountNotFound)?;
                let started = d.valid_from_ms.is_none_or(|from| now_ms >= from);
                let not_ended = d.valid_until_ms.is_none_or(|until| now_ms < until);
                if !(started && not_ended) {
                    return Err(Refusal::DiscountNotValidNow);
                }
                if d.used >= d.max_uses {
                    return Err(Refusal::DiscountExhausted);
                }
                Some((d.id, d.amount.on(subtotal_cents), code.clone()))
            }
        };
        let discount_cents = discount.as_ref().map_or(0, |d| d.1);

        let mut changes = Vec::new();
        changes.push(Change::BookingCreated(BookingRow {
            id: booking_id,
            reference: reference.clone(),
            user_id: buyer,
            status: BookingStatus::Confirmed,
            subtotal_cents,
            discount_cents,
            total_cents: subtotal_cents - discount_cents,
            discount_id: discount.as_ref().map(|d| d.0),
            idempotency_key: request.idempotency_key.clone(),
            created_at_ms: now_ms,
            cancelled_at_ms: None,
        }));
        let mut items = Vec::with_capacity(hold_ids.len());
        for id in &hold_ids {
            let hold = self.holds.remove(id).expect("checked above").view;
            self.expiry.remove(&(hold.expires_at_ms, hold.id));
            let section = self.sections.get_mut(&hold.section_id).expect("exists");
            section.held -= hold.quantity;
            section.booked += hold.quantity;
            changes.push(Change::HoldStatus {
                hold_id: hold.id,
                status: HoldStatus::Confirmed,
                booking_id: Some(booking_id),
                at_ms: now_ms,
            });
            if let Some(seats) = section.seats.as_mut() {
                for &seat_id in &hold.seat_ids {
                    let p = seats.position(seat_id).expect("a hold's seats exist");
                    debug_assert_eq!(seats.owner(p), SeatOwner::Held(hold.id));
                    seats.set_owner(p, SeatOwner::Booked(booking_id));
                    changes.push(Change::Seat {
                        seat_id,
                        status: SeatStatus::Booked,
                        hold_id: Some(hold.id),
                        booking_id: Some(booking_id),
                    });
                }
                section.seats_dirty = true;
            }
            changes.push(section.counts_change());
            items.push(BookingItem {
                hold_id: hold.id,
                section_id: hold.section_id,
                quantity: hold.quantity,
                seat_ids: hold.seat_ids,
                unit_price_cents: section.price_cents,
            });
        }
        if let Some((discount_id, _, code)) = &discount {
            let d = self.discounts.get_mut(code).expect("checked above");
            d.used += 1;
            changes.push(Change::DiscountUsed {
                discount_id: *discount_id,
                used: d.used,
            });
        }
        let booking = BookingView {
            id: booking_id,
            booking_reference: reference,
            event_id: self.event_id,
            user_id: buyer,
            status: BookingStatus::Confirmed,
            subtotal_cents,
            discount_cents,
            total_cents: subtotal_cents - discount_cents,
            discount_id: discount.map(|d| d.0),
            items,
            created_at_ms: now_ms,
        };
        if let Some(key) = request.idempotency_key {
            self.booking_keys.insert(
                (owner, key),
                KeyedBooking {
                    fingerprint: Some((hold_ids, code)),
                    booking_id,
                },
            );
        }
        self.bookings.insert(booking_id, booking.clone());
        self.finish(&mut changes);
        Ok((
            BookingOutcome {
                booking,
                replayed: false,
            },
            changes,
        ))
    }

    /// Cancels a CONFIRMED booking: its seats and tickets go back on sale, its holds become
    /// CANCELLED and a discount use it consumed is given back.
    pub fn cancel_booking(
        &mut self,
        requester: Requester,
        booking_id: BookingId,
        now_ms: i64,
    ) -> Decision<BookingView> {
        let booking = match self.bookings.get(&booking_id) {
            Some(b) if requester.may_act_for(b.user_id) => b,
            _ => return Err(Refusal::BookingNotFound),
        };
        if booking.status != BookingStatus::Confirmed {
            return Err(Refusal::BookingNotActive(booking.status));
        }
        let items = booking.items.clone();
        let (buyer, discount_id) = (booking.user_id, booking.discount_id);
        let mut changes = vec![Change::BookingCancelled {
            booking_id,
            at_ms: now_ms,
        }];
        for item in &items {
            let section = self.sections.get_mut(&item.section_id).expect("exists");
            section.booked -= item.quantity;
            changes.push(Change::HoldStatus {
                hold_id: item.hold_id,
                status: HoldStatus::Cancelled,
                booking_id: Some(booking_id),
                at_ms: now_ms,
            });
            if let Some(seats) = section.seats.as_mut() {
                for &seat_id in &item.seat_ids {
                    let p = seats.position(seat_id).expect("a booking's seats exist");
                    debug_assert_eq!(seats.owner(p), SeatOwner::Booked(booking_id));
                    seats.set_owner(p, SeatOwner::Free);
                    changes.push(Change::Seat {
                        seat_id,
                        status: SeatStatus::Available,
                        hold_id: None,
                        booking_id: None,
                    });
                }
                section.seats_dirty = true;
            }
            changes.push(section.counts_change());
            self.untake_tickets(buyer, item.quantity);
        }
        if let Some(discount_id) = discount_id {
            if let Some(d) = self.discounts.values_mut().find(|d| d.id == discount_id) {
                d.used = d.used.saturating_sub(1);
                changes.push(Change::DiscountUsed {
                    discount_id,
                    used: d.used,
                });
            }
        }
        let booking = self.bookings.get_mut(&booking_id).expect("checked above");
        booking.status = BookingStatus::Cancelled;
        let view = booking.clone();
        self.finish(&mut changes);
        Ok((view, changes))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{on_sale, T0};
    use super::*;
    use crate::types::{DiscountAmount, HoldKind, HoldRequest, NewDiscount};

    fn hold(inv: &mut Inventory, user: i64, kind: HoldKind, id: i64) {
        let req = HoldRequest {
            user_id: user,
            kind,
            idempotency_key: None,
            session_id: None,
        };
        inv.place_hold(req, id, T0).unwrap();
    }

    fn confirm(user: i64, holds: Vec<i64>, code: Option<&str>) -> ConfirmRequest {
        ConfirmRequest {
            requester: Requester::buyer(user),
            hold_ids: holds,
            discount_code: code.map(String::from),
            idempotency_key: None,
        }
    }

    #[test]
    fn confirming_prices_the_holds_and_applies_the_discount_once_per_use() {
        let mut inv = on_sale(10, 2, 5, 8);
        inv.add_discount(
            50,
            NewDiscount {
                code: "early".into(),
                amount: DiscountAmount::PercentOff(10),
                max_uses: 1,
                valid_from_ms: None,
                valid_until_ms: None,
            },
            T0,
        )
        .unwrap();
        hold(
            &mut inv,
            1,
            HoldKind::General {
                section_id: 1,
                quantity: 2,
            },
            100,
        );
        hold(
            &mut inv,
            1,
            HoldKind::BestAvailable {
                section_id: 2,
                quantity: 1,
                allow_split: false,
            },
            101,
        );
        let (out, _) = inv
            .confirm(
                confirm(1, vec![100, 101], Some("EARLY")),
                500,
                "R1".into(),
                T0,
            )
            .unwrap();
        assert_eq!(out.booking.subtotal_cents, 2 * 5000 + 8000);
        assert_eq!(out.booking.discount_cents, 1800);
        assert_eq!(out.booking.total_cents, 16200);
        assert_eq!(inv.sections[&1].booked, 2);
        assert_eq!(inv.tickets_of(1), 3);

        hold(
            &mut inv,
            2,
            HoldKind::General {
                section_id: 1,
                quantity: 1,
            },
            102,
        );
        assert_eq!(
            inv.confirm(confirm(2, vec![102], Some("early")), 501, "R2".into(), T0),
            Err(Refusal::DiscountExhausted)
        );
        inv.check_invariants().unwrap();
    }

    #[test]
    fn someone_elses_hold_cannot_be_confirmed() {
        let mut inv = on_sale(10, 1, 1, 8);
        hold(
            &mut inv,
            1,
            HoldKind::General {
                section_id: 1,
                quantity: 2,
            },
            100,
        );
        assert_eq!(
            inv.confirm(confirm(2, vec![100], None), 500, "R".into(), T0),
            Err(Refusal::HoldNotFound)
        );
        assert_eq!(inv.sections[&1].held, 2);
    }

    #[test]
    fn cancelling_returns_seats_and_the_discount_use() {
        let mut inv = on_sale(10, 1, 4, 8);
        inv.add_discount(
            50,
            NewDiscount {
                code: "X".into(),
                amount: DiscountAmount::AmountOffCents(100),
                max_uses: 1,
                valid_from_ms: None,
                valid_until_ms: None,
            },
            T0,
        )
        .unwrap();
        hold(
            &mut inv,
            1,
            HoldKind::Seats {
                seat_ids: vec![1001, 1002],
            },
            100,
        );
        inv.confirm(confirm(1, vec![100], Some("x")), 500, "R".into(), T0)
            .unwrap();
        let (cancelled, _) = inv.cancel_booking(Requester::buyer(1), 500, T0).unwrap();
        assert_eq!(cancelled.status, BookingStatus::Cancelled);
        assert_eq!(inv.sections[&2].available(), 4);
        assert_eq!(inv.discount("x").unwrap().used, 0);
        assert_eq!(inv.tickets_of(1), 0);
        assert_eq!(
            inv.cancel_booking(Requester::buyer(1), 500, T0),
            Err(Refusal::BookingNotActive(BookingStatus::Cancelled))
        );
        inv.check_invariants().unwrap();
    }
}
