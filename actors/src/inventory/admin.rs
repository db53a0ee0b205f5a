//! The organizer's changes: sections, discount codes and selling rules.

use super::{
    Change, Decision, DiscountRow, EventRules, Inventory, RowSpec, SeatMap, SeatRow, Section,
    SectionRow, SectionSnapshot,
};
use crate::error::Refusal;
use crate::limits::{
    MAX_DISCOUNTS_PER_EVENT, MAX_DISCOUNT_CODE_CHARS, MAX_DISCOUNT_USES, MAX_GENERAL_CAPACITY,
    MAX_HOLD_TTL_SECONDS, MAX_PRICE_CENTS, MAX_RESERVED_SEATS, MAX_ROWS, MAX_SEATS_PER_ROW,
    MAX_SECTIONS_PER_EVENT, MAX_SECTION_NAME_CHARS, MAX_TICKETS_PER_USER, MIN_HOLD_TTL_SECONDS,
};
use crate::types::{
    row_label, DiscountAmount, DiscountId, DiscountView, EventStatus, NewDiscount, NewSection,
    SeatId, SectionId, SectionKind, SectionSpec, SettingsUpdate,
};

impl Inventory {
    /// How many seat ids a new section needs.
    pub fn seats_needed(spec: &SectionSpec) -> u32 {
        match spec {
            SectionSpec::General { .. } => 0,
            SectionSpec::Seated {
                rows,
                seats_per_row,
            } => rows.saturating_mul(*seats_per_row),
        }
    }

    /// Checks a new section without adding it.
    pub fn validate_section(&self, new: &NewSection) -> Result<(), Refusal> {
        // A NUL would fail the flush of the whole batch (PostgreSQL's text cannot hold it):
        // refused here, alone (invariant 7).
        let name = crate::limits::trim_blank(&new.name);
        if !crate::limits::is_name(&new.name) || new.name.chars().count() > MAX_SECTION_NAME_CHARS {
            return Err(Refusal::Invalid(format!(
                "a section name has 1 to {MAX_SECTION_NAME_CHARS} characters"
            )));
        }
        if self.sections.values().any(|s| s.name == name) {
            return Err(Refusal::SectionExists);
        }
        if self.sections.len() >= MAX_SECTIONS_PER_EVENT {
            return Err(Refusal::LimitReached(format!(
                "an event has at most {MAX_SECTIONS_PER_EVENT} sections"
            )));
        }
        if !(0..=MAX_PRICE_CENTS).contains(&new.price_cents) {
            return Err(Refusal::Invalid(format!(
                "priceCents must be between 0 and {MAX_PRICE_CENTS}"
            )));
        }
        if matches!(
            self.rules.status,
            EventStatus::Cancelled | EventStatus::Completed
        ) {
            return Err(Refusal::EventClosed(self.rules.status));
        }
        Self::validate_spec(&new.spec)?;
        if let Some(limit) = new.capacity_limit {
            let total = self.capacity_total() + Self::capacity_of(&new.spec);
            if total > limit {
                return Err(Refusal::LimitReached(format!(
                    "the event's sections would seat {total}, more than its venue's capacity of {limit}"
                )));
            }
        }
        Ok(())
    }

    /// The seats or tickets a section of this spec holds.
    fn capacity_of(spec: &SectionSpec) -> u32 {
        match *spec {
            SectionSpec::General { capacity } => capacity,
            SectionSpec::Seated {
                rows,
                seats_per_row,
            } => rows.saturating_mul(seats_per_row),
        }
    }

    /// Checks a section's size against the limits.
    fn validate_spec(spec: &SectionSpec) -> Result<(), Refusal> {
        match *spec {
            SectionSpec::General { capacity }
                if !(1..=MAX_GENERAL_CAPACITY).contains(&capacity) =>
            {
                Err(Refusal::Invalid(format!(
                    "capacity must be between 1 and {MAX_GENERAL_CAPACITY}"
                )))
            }
            SectionSpec::Seated {
                rows,
                seats_per_row,
            } if !(1..=MAX_ROWS).contains(&rows)
                || !(1..=MAX_SEATS_PER_ROW).contains(&seats_per_row)
                || rows * seats_per_row > MAX_RESERVED_SEATS =>
            {
                Err(Refusal::Invalid(format!(
                    "a seated section has 1 to {MAX_ROWS} rows of 1 to {MAX_SEATS_PER_ROW} seats, \
                     at most {MAX_RESERVED_SEATS} seats in all"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Adds a section. For a seated section `seat_ids` holds one fresh id per seat, row by
    /// row from the front, left to right.
    pub fn add_section(
        &mut self,
        section_id: SectionId,
        new: NewSection,
        seat_ids: &[SeatId],
    ) -> Decision<SectionSnapshot> {
        self.validate_section(&new)?;
        assert_eq!(
            seat_ids.len() as u32,
            Self::seats_needed(&new.spec),
            "one id per seat"
        );
        let name = crate::limits::trim_blank(&new.name).to_string();
        let (kind, capacity, seats, seat_rows) = match new.spec {
            SectionSpec::General { capacity } => (SectionKind::General, capacity, None, Vec::new()),
            SectionSpec::Seated {
                rows,
                seats_per_row,
            } => {
                let mut ids = seat_ids.iter().copied();
                let mut seat_rows = Vec::with_capacity(seat_ids.len());
                let specs = (0..rows)
                    .map(|r| {
                        let label = row_label(r);
                        let seats = (1..=seats_per_row as i32)
                            .map(|number| {
                                let id = ids.next().expect("length checked");
                                seat_rows.push(SeatRow {
                                    id,
                                    row_label: label.clone(),
                                    row_index: r as i32,
                                    seat_number: number,
                                });
                                (id, number)
                            })
                            .collect();
                        RowSpec {
                            label,
                            index: r as i32,
                            seats,
                        }
                    })
                    .collect();
                (
                    SectionKind::Seated,
                    rows * seats_per_row,
                    Some(SeatMap::new(specs)),
                    seat_rows,
                )
            }
        };
        let section = Section {
            id: section_id,
            name: name.clone(),
            kind,
            capacity,
            price_cents: new.price_cents,
            held: 0,
            booked: 0,
            seats,
            seat_snapshot: None,
            seats_dirty: true,
        };
        let snapshot = SectionSnapshot {
            id: section_id,
            name: name.clone(),
            kind,
            capacity,
            price_cents: new.price_cents,
            available: capacity,
            held: 0,
            booked: 0,
            seats: None,
        };
        self.sections.insert(section_id, section);
        let mut changes = vec![Change::SectionCreated(SectionRow {
            id: section_id,
            name,
            kind,
            capacity,
            price_cents: new.price_cents,
            seats: seat_rows,
        })];
        self.finish(&mut changes);
        Ok((snapshot, changes))
    }

    /// Adds a discount code.
    pub fn add_discount(
        &mut self,
        discount_id: DiscountId,
        new: NewDiscount,
        _now_ms: i64,
    ) -> Decision<DiscountView> {
        let code = new.code.to_uppercase();
        if !crate::limits::is_discount_code(&new.code) {
            return Err(Refusal::Invalid(format!(
                "a code has 1 to {MAX_DISCOUNT_CODE_CHARS} letters, digits, '-' or '_'"
            )));
        }
        match new.amount {
            DiscountAmount::PercentOff(p) if !(1..=100).contains(&p) => {
                return Err(Refusal::Invalid(
                    "percentOff must be between 1 and 100".into(),
                ))
            }
            DiscountAmount::AmountOffCents(c) if !(1..=MAX_PRICE_CENTS).contains(&c) => {
                return Err(Refusal::Invalid(format!(
                    "amountOffCents must be between 1 and {MAX_PRICE_CENTS}"
                )))
            }
            _ => {}
        }
        if !(1..=MAX_DISCOUNT_USES).contains(&new.max_uses) {
            return Err(Refusal::Invalid(format!(
                "maxUses must be between 1 and {MAX_DISCOUNT_USES}"
            )));
        }
        if let (Some(from), Some(until)) = (new.valid_from_ms, new.valid_until_ms) {
            if from >= until {
                return Err(Refusal::Invalid(
                    "validFrom must be before validUntil".into(),
                ));
            }
        }
        if self.discounts.contains_key(&code) {
            return Err(Refusal::DiscountExists);
        }
        if self.discounts.len() >= MAX_DISCOUNTS_PER_EVENT {
            return Err(Refusal::LimitReached(format!(
                "an event has at most {MAX_DISCOUNTS_PER_EVENT} discount codes"
            )));
        }
        let view = DiscountView {
            id: discount_id,
            event_id: self.event_id,
            code: code.clone(),
            amount: new.amount,
            max_uses: new.max_uses,
            used: 0,
            valid_from_ms: new.valid_from_ms,
            valid_until_ms: new.valid_until_ms,
        };
        self.discounts.insert(code.clone(), view.clone());
        let mut changes = vec![Change::DiscountCreated(DiscountRow {
            id: discount_id,
            code,
            amount: new.amount,
            max_uses: new.max_uses,
            valid_from_ms: new.valid_from_ms,
            valid_until_ms: new.valid_until_ms,
        })];
        self.finish(&mut changes);
        Ok((view, changes))
    }

    /// Changes the event's status or selling rules.
    pub fn update_settings(&mut self, update: SettingsUpdate) -> Decision<EventRules> {
        let mut rules = self.rules.clone();
        if let Some(to) = update.status {
            // Asking for the status the event already has (ON_SALE while SOLD_OUT counts as
            // that too) is a no-op, so that a retried PATCH does not fail.
            let same = to == rules.status
                || (to == EventStatus::OnSale && rules.status == EventStatus::SoldOut);
            if !same {
                if !rules.status.can_become(to) {
                    return Err(Refusal::InvalidTransition {
                        from: rules.status,
                        to,
                    });
                }
                rules.status = to;
            }
        }
        if let Some(ttl) = update.hold_ttl_seconds {
            if !(MIN_HOLD_TTL_SECONDS..=MAX_HOLD_TTL_SECONDS).contains(&ttl) {
                return Err(Refusal::Invalid(format!(
                    "holdTtlSeconds must be between {MIN_HOLD_TTL_SECONDS} and {MAX_HOLD_TTL_SECONDS}"
                )));
            }
            rules.hold_ttl_seconds = ttl;
        }
        match update.max_tickets_per_user {
            None => {}
            Some(None) => rules.max_tickets_per_user = None,
            Some(Some(max)) => {
                if !(1..=MAX_TICKETS_PER_USER).contains(&max) {
                    return Err(Refusal::Invalid(format!(
                        "maxTicketsPerUser must be between 1 and {MAX_TICKETS_PER_USER}, or null for no limit"
                    )));
                }
                // Invariant 4 must keep holding for buyers who already have tickets.
                if self.tickets_by_user.values().any(|&t| t > max) {
                    return Err(Refusal::LimitReached(
                        "some buyers already hold more tickets than this limit".into(),
                    ));
                }
                rules.max_tickets_per_user = Some(max);
            }
        }
        if let Some(start) = update.sale_start_ms {
            rules.sale_start_ms = start;
        }
        rules.waiting_room = rules.waiting_room.with(update.waiting_room)?;
        let mut changes = Vec::new();
        if (
            rules.sale_start_ms,
            rules.hold_ttl_seconds,
            rules.max_tickets_per_user,
            rules.waiting_room,
        ) != (
            self.rules.sale_start_ms,
            self.rules.hold_ttl_seconds,
            self.rules.max_tickets_per_user,
            self.rules.waiting_room,
        ) {
            changes.push(Change::EventSettings {
                sale_start_ms: rules.sale_start_ms,
                hold_ttl_seconds: rules.hold_ttl_seconds,
                max_tickets_per_user: rules.max_tickets_per_user,
                waiting_room: rules.waiting_room,
            });
        }
        self.rules = rules;
        self.finish(&mut changes);
        Ok((self.rules.clone(), changes))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{on_sale, T0};
    use super::*;

    #[test]
    fn a_seated_section_gets_labelled_rows() {
        let inv = on_sale(1, 3, 4, 8);
        let section = &inv.sections[&2];
        assert_eq!(section.capacity, 12);
        let seats: Vec<_> = section.seats.as_ref().unwrap().seats().collect();
        assert_eq!(seats[0].0, "A");
        assert_eq!(seats[11].0, "C");
        assert_eq!(seats[11].3, 4);
    }

    #[test]
    fn limits_and_duplicates_are_refused() {
        let mut inv = on_sale(1, 1, 1, 8);
        let dup = NewSection {
            name: "Floor".into(),
            spec: SectionSpec::General { capacity: 5 },
            price_cents: 1,
            capacity_limit: None,
        };
        assert_eq!(inv.validate_section(&dup), Err(Refusal::SectionExists));
        let huge = NewSection {
            name: "Huge".into(),
            spec: SectionSpec::Seated {
                rows: 1000,
                seats_per_row: 1000,
            },
            price_cents: 1,
            capacity_limit: None,
        };
        assert!(matches!(
            inv.validate_section(&huge),
            Err(Refusal::Invalid(_))
        ));
        let new = NewDiscount {
            code: "bad code!".into(),
            amount: DiscountAmount::PercentOff(5),
            max_uses: 1,
            valid_from_ms: None,
            valid_until_ms: None,
        };
        assert!(matches!(
            inv.add_discount(1, new, T0),
            Err(Refusal::Invalid(_))
        ));
    }

    #[test]
    fn status_moves_only_along_allowed_transitions() {
        let mut inv = on_sale(1, 1, 1, 8);
        let to = |s| SettingsUpdate {
            status: Some(s),
            ..Default::default()
        };
        assert!(
            inv.update_settings(to(EventStatus::OnSale)).is_ok(),
            "no-op"
        );
        assert_eq!(
            inv.update_settings(to(EventStatus::Draft)),
            Err(Refusal::InvalidTransition {
                from: EventStatus::OnSale,
                to: EventStatus::Draft
            })
        );
        inv.update_settings(to(EventStatus::Cancelled)).unwrap();
        assert_eq!(
            inv.check_selling(T0),
            Err(Refusal::EventClosed(EventStatus::Cancelled))
        );
    }
}
