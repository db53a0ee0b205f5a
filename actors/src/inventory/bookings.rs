//! Bookings: turning ACTIVE holds into a paid booking, and cancelling a booking.

use super::{same_request, BookingRow, Change, Decision, Inventory, KeyedBooking, SeatOwner};
use crate::error::Refusal;
use crate::limits::MAX_HOLDS_PER_BOOKING;
use crate::types::{
    BookingId, BookingItem, BookingOutcome, BookingStatus, BookingView, ConfirmRequest, DiscountId,
    EventStatus, HoldId, HoldStatus, Requester, UserId,
};

/// A confirm that passed every check: what `apply_confirm` turns into a booking.
struct ConfirmPlan {
    /// The holds, in id order.
    hold_ids: Vec<HoldId>,
    /// The buyer every hold belongs to.
    buyer: UserId,
    /// Sum of the holds' tickets at their section's price.
    subtotal_cents: i64,
    /// The discount applied: its id, its amount off the subtotal, its code.
    discount: Option<(DiscountId, i64, String)>,
}

impl Inventory {
    /// Confirms ACTIVE holds into one booking, applying a discount code if given.
    /// `booking_id` and `reference` are minted by the caller; `reference` must be unguessable.
    ///
    /// Three steps, as for holds: answer a retry from memory; check everything (a refused
    /// confirm changes nothing); apply.
    pub fn confirm(
        &mut self,
        request: ConfirmRequest,
        booking_id: BookingId,
        reference: String,
        now_ms: i64,
    ) -> Decision<BookingOutcome> {
        let fingerprint = request
            .idempotency_key
            .as_ref()
            .map(|_| request.fingerprint());
        if let Some(first) = self.replay_booking(&request, fingerprint.as_deref())? {
            return Ok((first, Vec::new()));
        }
        let plan = self.check_confirm(&request, now_ms)?;
        let key = request.idempotency_key.map(|key| (key, fingerprint));
        Ok(self.apply_confirm(plan, key, booking_id, reference, now_ms))
    }

    /// The buyer a confirm is for: the requester, or for a privileged requester the owner of
    /// the first hold named (ACTIVE, or already confirmed into a booking). `None` when no
    /// hold names one, in which case the checks refuse the request.
    fn buyer_of(&self, request: &ConfirmRequest) -> Option<UserId> {
        if !request.requester.privileged {
            return Some(request.requester.user_id);
        }
        let first = *request.hold_ids.first()?;
        if let Some(hold) = self.holds.get(&first) {
            return Some(hold.view.user_id);
        }
        self.bookings
            .values()
            .find(|b| b.items.iter().any(|i| i.hold_id == first))
            .map(|b| b.user_id)
    }

    /// The first answer when this is a retry of a keyed confirm; `IdempotencyKeyReused` when
    /// the buyer used the key for a different request. Keys belong to the buyer, whoever
    /// confirms, as in the `bookings_idempotency_key` index: checking them here is what keeps
    /// a reused key from failing the whole batch at COMMIT.
    fn replay_booking(
        &self,
        request: &ConfirmRequest,
        fingerprint: Option<&str>,
    ) -> Result<Option<BookingOutcome>, Refusal> {
        let Some(key) = &request.idempotency_key else {
            return Ok(None);
        };
        let Some(buyer) = self.buyer_of(request) else {
            return Ok(None);
        };
        let Some(first) = self.booking_keys.get(&(buyer, key.clone())) else {
            return Ok(None);
        };
        same_request(first.fingerprint.as_deref(), fingerprint)?;
        Ok(Some(BookingOutcome {
            booking: self.bookings[&first.booking_id].clone(),
            replayed: true,
        }))
    }

    /// Checks a confirm: the event sells, every hold is ACTIVE and the buyer's, the discount
    /// is valid now and has uses left. Prices it.
    fn check_confirm(&self, request: &ConfirmRequest, now_ms: i64) -> Result<ConfirmPlan, Refusal> {
        let mut hold_ids = request.hold_ids.clone();
        hold_ids.sort_unstable();
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
        let mut buyer = None;
        let mut subtotal_cents = 0i64;
        for id in &hold_ids {
            let hold = match self.holds.get(id) {
                Some(h) if request.requester.may_act_for(h.view.user_id) => &h.view,
                _ => return Err(Refusal::HoldNotFound(*id)),
            };
            if *buyer.get_or_insert(hold.user_id) != hold.user_id {
                return Err(Refusal::Invalid(
                    "all reservations of a booking must belong to one buyer".into(),
                ));
            }
            subtotal_cents +=
                i64::from(hold.quantity) * self.sections[&hold.section_id].price_cents;
        }
        let discount = match request.normalized_code() {
            None => None,
            Some(code) => {
                let d = self.discounts.get(&code).ok_or(Refusal::DiscountNotFound)?;
                let started = d.valid_from_ms.is_none_or(|from| now_ms >= from);
                let not_ended = d.valid_until_ms.is_none_or(|until| now_ms < until);
                if !(started && not_ended) {
                    return Err(Refusal::DiscountNotValidNow);
                }
                if d.used >= d.max_uses {
                    return Err(Refusal::DiscountExhausted);
                }
                Some((d.id, d.amount.on(subtotal_cents), code))
            }
        };
        Ok(ConfirmPlan {
            hold_ids,
            buyer: buyer.expect("at least one hold"),
            subtotal_cents,
            discount,
        })
    }

    /// Turns the planned holds into a booking: their seats become booked, the discount use
    /// is counted, the key (with the request's fingerprint) is remembered.
    fn apply_confirm(
        &mut self,
        plan: ConfirmPlan,
        key: Option<(String, Option<String>)>,
        booking_id: BookingId,
        reference: String,
        now_ms: i64,
    ) -> (BookingOutcome, Vec<Change>) {
        let discount_cents = plan.discount.as_ref().map_or(0, |d| d.1);
        let total_cents = plan.subtotal_cents - discount_cents;
        assert!(
            (0..=plan.subtotal_cents).contains(&total_cents),
            "a discount never exceeds the subtotal"
        );
        let discount_id = plan.discount.as_ref().map(|d| d.0);
        let (idempotency_key, request_fingerprint) = match &key {
            Some((key, fingerprint)) => (Some(key.clone()), fingerprint.clone()),
            None => (None, None),
        };
        let mut changes = vec![Change::BookingCreated(BookingRow {
            id: booking_id,
            reference: reference.clone(),
            user_id: plan.buyer,
            status: BookingStatus::Confirmed,
            subtotal_cents: plan.subtotal_cents,
            discount_cents,
            total_cents,
            discount_id,
            idempotency_key,
            request_fingerprint,
            created_at_ms: now_ms,
            cancelled_at_ms: None,
        })];
        let mut items = Vec::with_capacity(plan.hold_ids.len());
        for id in &plan.hold_ids {
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
            section.move_seats(
                &hold.seat_ids,
                hold.id,
                SeatOwner::Held(hold.id),
                SeatOwner::Booked(booking_id),
                &mut changes,
            );
            changes.push(section.counts_change());
            items.push(BookingItem {
                hold_id: hold.id,
                section_id: hold.section_id,
                quantity: hold.quantity,
                seat_ids: hold.seat_ids,
                unit_price_cents: section.price_cents,
            });
        }
        if let Some((discount_id, _, code)) = &plan.discount {
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
            user_id: plan.buyer,
            status: BookingStatus::Confirmed,
            subtotal_cents: plan.subtotal_cents,
            discount_cents,
            total_cents,
            discount_id,
            items,
            created_at_ms: now_ms,
        };
        if let Some((key, fingerprint)) = key {
            self.booking_keys.insert(
                (plan.buyer, key),
                KeyedBooking {
                    fingerprint,
                    booking_id,
                },
            );
        }
        self.bookings.insert(booking_id, booking.clone());
        self.finish(&mut changes);
        (
            BookingOutcome {
                booking,
                replayed: false,
            },
            changes,
        )
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
            section.move_seats(
                &item.seat_ids,
                item.hold_id,
                SeatOwner::Booked(booking_id),
                SeatOwner::Free,
                &mut changes,
            );
            changes.push(section.counts_change());
            self.untake_tickets(buyer, item.quantity);
        }
        if let Some(discount_id) = discount_id {
            let d = self
                .discounts
                .values_mut()
                .find(|d| d.id == discount_id)
                .expect("a booking's discount exists");
            assert!(d.used > 0, "a booking's discount use was counted");
            d.used -= 1;
            changes.push(Change::DiscountUsed {
                discount_id,
                used: d.used,
            });
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
    fn a_booking_confirms_at_most_the_limit_of_holds() {
        let mut inv = on_sale(200, 1, 1, 200);
        let ids: Vec<i64> = (0..=MAX_HOLDS_PER_BOOKING as i64)
            .map(|i| 100 + i)
            .collect();
        for &id in &ids {
            let one = HoldKind::General {
                section_id: 1,
                quantity: 1,
            };
            hold(&mut inv, 1, one, id);
        }
        assert!(matches!(
            inv.confirm(confirm(1, ids.clone(), None), 500, "R1".into(), T0),
            Err(Refusal::Invalid(_))
        ));
        assert_eq!(
            inv.sections[&1].booked, 0,
            "the refused confirm changed nothing"
        );
        let at_limit = ids[..MAX_HOLDS_PER_BOOKING].to_vec();
        let (out, _) = inv
            .confirm(confirm(1, at_limit, None), 501, "R2".into(), T0)
            .unwrap();
        assert_eq!(out.booking.items.len(), MAX_HOLDS_PER_BOOKING);
        assert!(matches!(
            inv.confirm(confirm(1, vec![], None), 502, "R3".into(), T0),
            Err(Refusal::Invalid(_))
        ));
        inv.check_invariants().unwrap();
    }

    fn keyed(request: ConfirmRequest, key: &str) -> ConfirmRequest {
        ConfirmRequest {
            idempotency_key: Some(key.into()),
            ..request
        }
    }

    #[test]
    fn a_key_names_one_request_whether_it_differs_by_holds_or_by_code() {
        let mut inv = on_sale(10, 1, 1, 8);
        for code in ["A", "B"] {
            let new = NewDiscount {
                code: code.into(),
                amount: DiscountAmount::AmountOffCents(100),
                max_uses: 10,
                valid_from_ms: None,
                valid_until_ms: None,
            };
            inv.add_discount(if code == "A" { 50 } else { 51 }, new, T0)
                .unwrap();
        }
        for id in [100, 101] {
            let one = HoldKind::General {
                section_id: 1,
                quantity: 1,
            };
            hold(&mut inv, 1, one, id);
        }
        let first = keyed(confirm(1, vec![100], Some("a")), "K");
        let (made, _) = inv.confirm(first.clone(), 500, "R1".into(), T0).unwrap();
        // Same holds, other code; other holds, same code: both reuse the key.
        for other in [
            keyed(confirm(1, vec![100], Some("b")), "K"),
            keyed(confirm(1, vec![101], Some("a")), "K"),
        ] {
            assert_eq!(
                inv.confirm(other, 501, "R2".into(), T0),
                Err(Refusal::IdempotencyKeyReused)
            );
        }
        // The same request, the code spelled differently: a retry.
        let (again, changes) = inv
            .confirm(
                keyed(confirm(1, vec![100], Some(" A ")), "K"),
                502,
                "R3".into(),
                T0,
            )
            .unwrap();
        assert!(again.replayed && changes.is_empty());
        assert_eq!(again.booking, made.booking);
    }

    #[test]
    fn a_key_belongs_to_the_buyer_even_when_an_organizer_confirms() {
        // The buyer books one hold with key K; an organizer books the buyer's other hold
        // with the same K. The stored key is the buyer's (bookings_idempotency_key is on
        // user_id), so this is a reuse, refused here rather than at COMMIT.
        let mut inv = on_sale(10, 1, 1, 8);
        for id in [100, 101] {
            let one = HoldKind::General {
                section_id: 1,
                quantity: 1,
            };
            hold(&mut inv, 1, one, id);
        }
        let (made, _) = inv
            .confirm(
                keyed(confirm(1, vec![100], None), "K"),
                500,
                "R1".into(),
                T0,
            )
            .unwrap();
        let staff = Requester {
            user_id: 9,
            privileged: true,
        };
        let by_staff = |holds| ConfirmRequest {
            requester: staff,
            ..keyed(confirm(1, holds, None), "K")
        };
        assert_eq!(
            inv.confirm(by_staff(vec![101]), 501, "R2".into(), T0),
            Err(Refusal::IdempotencyKeyReused)
        );
        // The organizer retrying the buyer's own request gets the buyer's booking.
        let (again, _) = inv
            .confirm(by_staff(vec![100]), 502, "R3".into(), T0)
            .unwrap();
        assert!(again.replayed);
        assert_eq!(again.booking.id, made.booking.id);
        // A different key works, and the booking is the buyer's.
        let (other, _) = inv
            .confirm(
                ConfirmRequest {
                    requester: staff,
                    ..keyed(confirm(1, vec![101], None), "K2")
                },
                503,
                "R4".into(),
                T0,
            )
            .unwrap();
        assert_eq!(other.booking.user_id, 1);
        // Staff naming a hold nobody has is refused as unknown, key or not.
        assert_eq!(
            inv.confirm(by_staff(vec![999]), 504, "R5".into(), T0),
            Err(Refusal::HoldNotFound(999))
        );
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
            Err(Refusal::HoldNotFound(100))
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
