//! Holds: taking tickets or seats out of sale for a while, releasing them, expiring them.

use super::{same_request, Change, Decision, Hold, HoldRow, Inventory, KeyedHold, SeatOwner};
use crate::error::Refusal;
use crate::limits::MAX_TICKETS_PER_REQUEST;
use crate::types::{
    EventStatus, HoldId, HoldKind, HoldOutcome, HoldRequest, HoldStatus, HoldView, Requester,
    SeatId, SectionId, SectionKind,
};

impl Inventory {
    /// Refuses unless the event is selling now.
    pub(crate) fn check_selling(&self, now_ms: i64) -> Result<(), Refusal> {
        match self.rules.status {
            EventStatus::OnSale if now_ms >= self.rules.sale_start_ms => Ok(()),
            EventStatus::OnSale | EventStatus::Draft => Err(Refusal::SaleNotOpen),
            EventStatus::SoldOut => Err(Refusal::SoldOut),
            closed => Err(Refusal::EventClosed(closed)),
        }
    }

    /// Places a hold. `hold_id` is the id the hold gets if one is made (ids are minted by the
    /// caller, ahead of need, so that no database round trip sits on this path).
    ///
    /// Three steps: answer a retry from memory; check everything (a refusal changes
    /// nothing); apply.
    pub fn place_hold(
        &mut self,
        request: HoldRequest,
        hold_id: HoldId,
        now_ms: i64,
    ) -> Decision<HoldOutcome> {
        let fingerprint = request
            .idempotency_key
            .as_ref()
            .map(|_| request.kind.fingerprint());
        if let Some(first) = self.replay_hold(&request, fingerprint.as_deref())? {
            return Ok((first, Vec::new()));
        }
        // With the waiting room on, a hold needs a good pass (checked before anything else,
        // so that a buyer without one learns nothing about the seats).
        let first_use = match self.rules.waiting_room.enabled {
            true => self.queue.check_pass(request.user_id, now_ms)?,
            false => false,
        };
        let user_id = request.user_id;
        let (section_id, positions) = self.check_hold(&request, now_ms)?;
        let (outcome, mut changes) = self.apply_hold(
            request,
            fingerprint,
            hold_id,
            section_id,
            &positions,
            now_ms,
        );
        if first_use {
            let tickets = outcome.hold.quantity;
            changes.push(Change::Queue(self.queue.use_pass(user_id, now_ms, tickets)));
        }
        Ok((outcome, changes))
    }

    /// The first answer when this is a retry of a keyed request; `IdempotencyKeyReused` when
    /// the key was used for a different request. Keys belong to the buyer, as in the
    /// `reservations_idempotency_key` index.
    fn replay_hold(
        &self,
        request: &HoldRequest,
        fingerprint: Option<&str>,
    ) -> Result<Option<HoldOutcome>, Refusal> {
        let Some(key) = &request.idempotency_key else {
            return Ok(None);
        };
        let Some(first) = self.hold_keys.get(&(request.user_id, key.clone())) else {
            return Ok(None);
        };
        same_request(first.fingerprint.as_deref(), fingerprint)?;
        Ok(Some(HoldOutcome {
            hold: first.view.clone(),
            replayed: true,
        }))
    }

    /// Checks a new hold against the event's rules and picks its section and seats.
    fn check_hold(
        &self,
        request: &HoldRequest,
        now_ms: i64,
    ) -> Result<(SectionId, Vec<u32>), Refusal> {
        self.check_selling(now_ms)?;
        let quantity = request.kind.quantity();
        if quantity == 0 {
            return Err(Refusal::Invalid("quantity must be at least 1".into()));
        }
        if quantity > MAX_TICKETS_PER_REQUEST {
            return Err(Refusal::Invalid(format!(
                "at most {MAX_TICKETS_PER_REQUEST} tickets per request"
            )));
        }
        if let Some(limit) = self.rules.max_tickets_per_user {
            let already = self.tickets_of(request.user_id);
            if already + quantity > limit {
                return Err(Refusal::TicketLimit {
                    limit,
                    already,
                    asked: quantity,
                });
            }
        }
        self.choose(&request.kind, quantity)
    }

    /// Takes the chosen tickets or seats out of sale for the buyer.
    fn apply_hold(
        &mut self,
        request: HoldRequest,
        fingerprint: Option<String>,
        hold_id: HoldId,
        section_id: SectionId,
        positions: &[u32],
        now_ms: i64,
    ) -> (HoldOutcome, Vec<Change>) {
        let quantity = request.kind.quantity();
        let expires_at_ms = now_ms + i64::from(self.rules.hold_ttl_seconds) * 1000;
        let section = self.sections.get_mut(&section_id).expect("chosen above");
        let seat_ids = section
            .seats
            .as_ref()
            .map(|seats| positions.iter().map(|&p| seats.seat_id(p)).collect())
            .unwrap_or_default();
        let view = HoldView {
            id: hold_id,
            event_id: self.event_id,
            user_id: request.user_id,
            section_id,
            quantity,
            seat_ids,
            status: HoldStatus::Active,
            expires_at_ms,
            created_at_ms: now_ms,
        };
        // The reservation row goes first: seat rows point at it.
        let mut changes = Vec::with_capacity(positions.len() + 3);
        changes.push(Change::HoldCreated(HoldRow {
            id: hold_id,
            user_id: request.user_id,
            section_id,
            quantity,
            seat_ids: view.seat_ids.clone(),
            status: HoldStatus::Active,
            booking_id: None,
            idempotency_key: request.idempotency_key.clone(),
            request_fingerprint: fingerprint.clone(),
            session_id: request.session_id,
            expires_at_ms,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        }));
        section.move_seats(
            &view.seat_ids,
            hold_id,
            SeatOwner::Free,
            SeatOwner::Held(hold_id),
            &mut changes,
        );
        section.held += quantity;
        changes.push(section.counts_change());

        *self.tickets_by_user.entry(request.user_id).or_insert(0) += quantity;
        self.expiry.insert((expires_at_ms, hold_id));
        if let Some(key) = request.idempotency_key {
            self.hold_keys.insert(
                (request.user_id, key),
                KeyedHold {
                    fingerprint,
                    view: view.clone(),
                },
            );
        }
        self.holds.insert(hold_id, Hold { view: view.clone() });
        self.finish(&mut changes);
        (
            HoldOutcome {
                hold: view,
                replayed: false,
            },
            changes,
        )
    }

    /// Picks the section and (for seated sections) the seat positions for a hold.
    fn choose(&self, kind: &HoldKind, quantity: u32) -> Result<(SectionId, Vec<u32>), Refusal> {
        match kind {
            HoldKind::General { section_id, .. } => {
                let section = self
                    .sections
                    .get(section_id)
                    .ok_or(Refusal::SectionNotFound)?;
                if section.kind != SectionKind::General {
                    return Err(Refusal::WrongSectionType(
                        "this section is sold by seat: ask for SEATS or BEST_AVAILABLE".into(),
                    ));
                }
                if section.available() < quantity {
                    return Err(Refusal::SoldOut);
                }
                Ok((*section_id, Vec::new()))
            }
            HoldKind::BestAvailable {
                section_id,
                allow_split,
                ..
            } => {
                let section = self
                    .sections
                    .get(section_id)
                    .ok_or(Refusal::SectionNotFound)?;
                let Some(seats) = section.seats.as_ref() else {
                    return Err(Refusal::WrongSectionType(
                        "this section is sold by quantity: ask for GENERAL".into(),
                    ));
                };
                if seats.free_count() < quantity {
                    return Err(Refusal::SoldOut);
                }
                let positions = seats.best_adjacent(quantity).or_else(|| {
                    allow_split
                        .then(|| seats.best_scattered(quantity))
                        .flatten()
                });
                positions
                    .map(|p| (*section_id, p))
                    .ok_or(Refusal::SeatUnavailable {
                        seat_ids: Vec::new(),
                    })
            }
            HoldKind::Seats { seat_ids } => self.choose_seats(seat_ids),
        }
    }

    fn choose_seats(&self, seat_ids: &[SeatId]) -> Result<(SectionId, Vec<u32>), Refusal> {
        let mut unique = seat_ids.to_vec();
        unique.sort_unstable();
        unique.dedup();
        if unique.len() != seat_ids.len() {
            return Err(Refusal::Invalid("a seat is listed twice".into()));
        }
        let (section_id, _) = self.locate_seat(seat_ids[0]).ok_or(Refusal::SeatNotFound)?;
        let seats = self.sections[&section_id]
            .seats
            .as_ref()
            .expect("located in a seat map");
        let mut positions = Vec::with_capacity(seat_ids.len());
        let mut taken = Vec::new();
        for &seat_id in seat_ids {
            let position = match seats.position(seat_id) {
                Some(p) => p,
                None if self.locate_seat(seat_id).is_some() => {
                    return Err(Refusal::Invalid("all seats must be in one section".into()))
                }
                None => return Err(Refusal::SeatNotFound),
            };
            if seats.owner(position) != SeatOwner::Free {
                taken.push(seat_id);
            }
            positions.push(position);
        }
        if !taken.is_empty() {
            return Err(Refusal::SeatUnavailable { seat_ids: taken });
        }
        Ok((section_id, positions))
    }

    /// Releases an ACTIVE hold at the buyer's request.
    pub fn release_hold(
        &mut self,
        requester: Requester,
        hold_id: HoldId,
        now_ms: i64,
    ) -> Decision<HoldView> {
        match self.holds.get(&hold_id) {
            Some(h) if requester.may_act_for(h.view.user_id) => {}
            _ => return Err(Refusal::HoldNotFound(hold_id)),
        }
        let mut changes = Vec::new();
        let view = self.end_hold(hold_id, HoldStatus::Cancelled, now_ms, &mut changes);
        self.finish(&mut changes);
        Ok((view, changes))
    }

    /// Expires every hold due at `now_ms`. Returns how many expired and the changes.
    pub fn expire_due(&mut self, now_ms: i64) -> (usize, Vec<Change>) {
        let mut changes = Vec::new();
        let mut expired = 0;
        while let Some(&(at, hold_id)) = self.expiry.first() {
            if at > now_ms {
                break;
            }
            self.end_hold(hold_id, HoldStatus::Expired, now_ms, &mut changes);
            expired += 1;
        }
        self.finish(&mut changes);
        (expired, changes)
    }

    /// Ends an ACTIVE hold without a booking (released or expired): its tickets go back on
    /// sale and stop counting against the buyer.
    pub(crate) fn end_hold(
        &mut self,
        hold_id: HoldId,
        status: HoldStatus,
        now_ms: i64,
        changes: &mut Vec<Change>,
    ) -> HoldView {
        let Hold { mut view } = self.holds.remove(&hold_id).expect("caller checked");
        self.expiry.remove(&(view.expires_at_ms, hold_id));
        let section = self
            .sections
            .get_mut(&view.section_id)
            .expect("a hold's section exists");
        section.held -= view.quantity;
        changes.push(Change::HoldStatus {
            hold_id,
            status,
            booking_id: None,
            at_ms: now_ms,
        });
        section.move_seats(
            &view.seat_ids,
            hold_id,
            SeatOwner::Held(hold_id),
            SeatOwner::Free,
            changes,
        );
        changes.push(section.counts_change());
        self.untake_tickets(view.user_id, view.quantity);
        view.status = status;
        view
    }

    /// Stops counting `quantity` tickets against a buyer.
    pub(crate) fn untake_tickets(&mut self, user_id: crate::types::UserId, quantity: u32) {
        let tickets = self
            .tickets_by_user
            .get_mut(&user_id)
            .expect("a buyer with tickets is counted");
        *tickets -= quantity;
        if *tickets == 0 {
            self.tickets_by_user.remove(&user_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{on_sale, T0};
    use super::*;

    fn general(user: i64, quantity: u32) -> HoldRequest {
        HoldRequest {
            user_id: user,
            kind: HoldKind::General {
                section_id: 1,
                quantity,
            },
            idempotency_key: None,
            session_id: None,
        }
    }

    #[test]
    fn a_general_hold_takes_tickets_until_none_are_left() {
        let mut inv = on_sale(3, 1, 1, 4);
        let (first, changes) = inv.place_hold(general(1, 2), 100, T0).unwrap();
        assert_eq!(first.hold.quantity, 2);
        assert!(matches!(changes[0], Change::HoldCreated(_)));
        assert_eq!(
            inv.place_hold(general(2, 2), 101, T0),
            Err(Refusal::SoldOut)
        );
        inv.place_hold(general(2, 1), 102, T0).unwrap();
        assert_eq!(inv.available_total(), 1, "the reserved seat is left");
        inv.check_invariants().unwrap();
    }

    #[test]
    fn the_ticket_limit_counts_holds_of_every_section() {
        let mut inv = on_sale(10, 2, 5, 4);
        inv.place_hold(general(1, 3), 100, T0).unwrap();
        let best = HoldRequest {
            kind: HoldKind::BestAvailable {
                section_id: 2,
                quantity: 2,
                allow_split: false,
            },
            ..general(1, 0)
        };
        assert_eq!(
            inv.place_hold(best, 101, T0),
            Err(Refusal::TicketLimit {
                limit: 4,
                already: 3,
                asked: 2
            })
        );
    }

    #[test]
    fn the_sale_opens_at_its_start_time() {
        let mut inv = on_sale(10, 1, 1, 4);
        inv.rules.sale_start_ms = T0 + 1000;
        assert_eq!(
            inv.place_hold(general(1, 1), 100, T0),
            Err(Refusal::SaleNotOpen)
        );
        assert!(inv.place_hold(general(1, 1), 100, T0 + 1000).is_ok());
    }

    #[test]
    fn a_retry_with_the_same_key_gets_the_first_answer() {
        let mut inv = on_sale(10, 1, 1, 4);
        let keyed = HoldRequest {
            idempotency_key: Some("k1".into()),
            ..general(1, 2)
        };
        let (first, _) = inv.place_hold(keyed.clone(), 100, T0).unwrap();
        let (again, changes) = inv.place_hold(keyed.clone(), 101, T0).unwrap();
        assert!(again.replayed && changes.is_empty());
        assert_eq!(again.hold, first.hold);
        let other = HoldRequest {
            idempotency_key: Some("k1".into()),
            ..general(1, 1)
        };
        assert_eq!(
            inv.place_hold(other, 102, T0),
            Err(Refusal::IdempotencyKeyReused)
        );
        assert_eq!(inv.tickets_of(1), 2);
    }

    #[test]
    fn seats_already_held_are_refused_whole() {
        let mut inv = on_sale(1, 1, 10, 8);
        let seats = |ids: Vec<i64>| HoldRequest {
            kind: HoldKind::Seats { seat_ids: ids },
            ..general(1, 0)
        };
        inv.place_hold(seats(vec![1003, 1004]), 100, T0).unwrap();
        assert_eq!(
            inv.place_hold(seats(vec![1002, 1003]), 101, T0),
            Err(Refusal::SeatUnavailable {
                seat_ids: vec![1003]
            })
        );
        assert_eq!(
            inv.place_hold(seats(vec![99]), 101, T0),
            Err(Refusal::SeatNotFound)
        );
        assert_eq!(inv.sections[&2].held, 2, "the refused request took nothing");
        inv.check_invariants().unwrap();
    }

    #[test]
    fn seats_must_exist_and_share_one_section() {
        let mut inv = on_sale(1, 1, 10, 8);
        let balcony = crate::types::NewSection {
            name: "Balcony".into(),
            spec: crate::types::SectionSpec::Seated {
                rows: 1,
                seats_per_row: 2,
            },
            price_cents: 100,
            capacity_limit: None,
        };
        inv.add_section(3, balcony, &[2000, 2001]).unwrap();
        let seats = |ids: Vec<i64>| HoldRequest {
            kind: HoldKind::Seats { seat_ids: ids },
            ..general(1, 0)
        };
        // The first seat exists, a later one does not: unknown, not "another section".
        assert_eq!(
            inv.place_hold(seats(vec![1000, 99]), 100, T0),
            Err(Refusal::SeatNotFound)
        );
        assert!(matches!(
            inv.place_hold(seats(vec![1000, 2000]), 100, T0),
            Err(Refusal::Invalid(_))
        ));
        assert!(matches!(
            inv.place_hold(seats(vec![1000, 1000]), 100, T0),
            Err(Refusal::Invalid(_))
        ));
        assert_eq!(inv.active_holds(), 0);
        inv.place_hold(seats(vec![2001, 2000]), 100, T0).unwrap();
        inv.check_invariants().unwrap();
    }

    #[test]
    fn a_request_takes_at_most_the_per_request_limit() {
        let mut inv = on_sale(500, 1, 1, 1000);
        assert!(matches!(
            inv.place_hold(general(1, MAX_TICKETS_PER_REQUEST + 1), 100, T0),
            Err(Refusal::Invalid(_))
        ));
        inv.place_hold(general(1, MAX_TICKETS_PER_REQUEST), 100, T0)
            .unwrap();
        assert_eq!(inv.tickets_of(1), MAX_TICKETS_PER_REQUEST);
    }

    #[test]
    fn a_hold_key_reused_for_other_seats_is_refused_but_the_same_seats_in_any_order_replay() {
        let mut inv = on_sale(1, 1, 10, 8);
        let seats = |ids: Vec<i64>| HoldRequest {
            kind: HoldKind::Seats { seat_ids: ids },
            idempotency_key: Some("K".into()),
            ..general(1, 0)
        };
        let (first, _) = inv.place_hold(seats(vec![1001, 1002]), 100, T0).unwrap();
        let (again, _) = inv.place_hold(seats(vec![1002, 1001]), 101, T0).unwrap();
        assert!(again.replayed);
        assert_eq!(again.hold, first.hold);
        assert_eq!(
            inv.place_hold(seats(vec![1003]), 102, T0),
            Err(Refusal::IdempotencyKeyReused)
        );
        // Keys are per buyer: another buyer's K is theirs.
        let other = HoldRequest {
            user_id: 2,
            ..seats(vec![1003])
        };
        assert!(!inv.place_hold(other, 103, T0).unwrap().0.replayed);
    }

    #[test]
    fn expired_holds_go_back_on_sale_and_the_event_leaves_sold_out() {
        let mut inv = on_sale(2, 1, 1, 4);
        inv.place_hold(general(1, 2), 100, T0).unwrap();
        let seat = HoldRequest {
            kind: HoldKind::Seats {
                seat_ids: vec![1000],
            },
            ..general(2, 0)
        };
        inv.place_hold(seat, 101, T0 + 5_000).unwrap();
        assert_eq!(inv.rules.status, EventStatus::SoldOut);
        let (none, _) = inv.expire_due(T0 + 59_999);
        assert_eq!(none, 0);
        let (expired, changes) = inv.expire_due(T0 + 60_000);
        assert_eq!(expired, 1);
        assert!(changes.contains(&Change::EventCounts {
            available_seats: 2,
            status: EventStatus::OnSale
        }));
        assert_eq!(inv.tickets_of(1), 0);
        inv.check_invariants().unwrap();
    }

    #[test]
    fn only_the_owner_or_a_privileged_requester_releases() {
        let mut inv = on_sale(5, 1, 1, 4);
        inv.place_hold(general(1, 2), 100, T0).unwrap();
        assert_eq!(
            inv.release_hold(Requester::buyer(2), 100, T0),
            Err(Refusal::HoldNotFound(100))
        );
        let staff = Requester {
            user_id: 9,
            privileged: true,
        };
        let (view, _) = inv.release_hold(staff, 100, T0).unwrap();
        assert_eq!(view.status, HoldStatus::Cancelled);
        assert_eq!(inv.available_total(), 6);
    }
}
