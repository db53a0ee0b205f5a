//! The invariants of docs/ARCHITECTURE.md, checked against the inventory's own bookkeeping. Tests call
//! this after every step; the actor calls it after recovery and in debug builds.

use std::collections::HashMap;

use super::{Inventory, SeatOwner};
use crate::types::{BookingStatus, SectionId, UserId};

impl Inventory {
    /// Checks every invariant, naming the first one broken.
    ///
    /// 1. per section: available + held + booked = capacity, nothing negative (the counts are
    ///    unsigned and `available` is derived, so this is held + booked ≤ capacity, with
    ///    held and booked equal to what the holds and bookings add up to);
    /// 2. a seat is in at most one active hold or booking, and the seat map agrees;
    /// 4. per buyer: held + booked ≤ max_tickets_per_user, and the running count is exact.
    ///
    /// (Invariant 3, "acknowledged means durable", is the write-behind's to keep.)
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut held: HashMap<SectionId, u32> = HashMap::new();
        let mut booked: HashMap<SectionId, u32> = HashMap::new();
        let mut tickets: HashMap<UserId, u32> = HashMap::new();

        for hold in self.holds.values() {
            let h = &hold.view;
            *held.entry(h.section_id).or_default() += h.quantity;
            *tickets.entry(h.user_id).or_default() += h.quantity;
            if !self.expiry.contains(&(h.expires_at_ms, h.id)) {
                return Err(format!("hold {} is missing from the expiry queue", h.id));
            }
            let section = &self.sections[&h.section_id];
            if let Some(seats) = &section.seats {
                if h.seat_ids.len() as u32 != h.quantity {
                    return Err(format!(
                        "hold {} names {} seats for {}",
                        h.id,
                        h.seat_ids.len(),
                        h.quantity
                    ));
                }
                for &s in &h.seat_ids {
                    let p = seats
                        .position(s)
                        .ok_or(format!("hold {} has unknown seat {s}", h.id))?;
                    if seats.owner(p) != SeatOwner::Held(h.id) {
                        return Err(format!(
                            "seat {s} of hold {} is owned by {:?}",
                            h.id,
                            seats.owner(p)
                        ));
                    }
                }
            }
        }
        if self.expiry.len() != self.holds.len() {
            return Err("the expiry queue and the holds disagree".into());
        }
        for b in self.bookings.values() {
            if b.status != BookingStatus::Confirmed {
                continue;
            }
            for item in &b.items {
                *booked.entry(item.section_id).or_default() += item.quantity;
                *tickets.entry(b.user_id).or_default() += item.quantity;
                if let Some(seats) = &self.sections[&item.section_id].seats {
                    for &s in &item.seat_ids {
                        let p = seats
                            .position(s)
                            .ok_or(format!("booking {} has unknown seat {s}", b.id))?;
                        if seats.owner(p) != SeatOwner::Booked(b.id) {
                            return Err(format!(
                                "seat {s} of booking {} is owned by {:?}",
                                b.id,
                                seats.owner(p)
                            ));
                        }
                    }
                }
            }
        }
        for section in self.sections.values() {
            let want_held = held.get(&section.id).copied().unwrap_or(0);
            let want_booked = booked.get(&section.id).copied().unwrap_or(0);
            if section.held != want_held || section.booked != want_booked {
                return Err(format!(
                    "section {}: counts held {} booked {}, but holds add up to {want_held} and bookings to {want_booked}",
                    section.id, section.held, section.booked
                ));
            }
            if section.held + section.booked > section.capacity {
                return Err(format!("section {} is oversold", section.id));
            }
            if let Some(seats) = &section.seats {
                seats.check()?;
                if seats.free_count() != section.available() {
                    return Err(format!(
                        "section {}: {} seats free but {} available",
                        section.id,
                        seats.free_count(),
                        section.available()
                    ));
                }
                // Every owned seat must be claimed by the hold or booking it names.
                for (_, _, seat_id, _, owner) in seats.seats() {
                    let claimed = match owner {
                        SeatOwner::Free => true,
                        SeatOwner::Held(h) => self
                            .holds
                            .get(&h)
                            .is_some_and(|h| h.view.seat_ids.contains(&seat_id)),
                        SeatOwner::Booked(b) => self.bookings.get(&b).is_some_and(|b| {
                            b.status == BookingStatus::Confirmed
                                && b.items.iter().any(|i| i.seat_ids.contains(&seat_id))
                        }),
                    };
                    if !claimed {
                        return Err(format!(
                            "seat {seat_id} is owned by {owner:?}, which does not claim it"
                        ));
                    }
                }
            }
        }
        let mut counted: Vec<_> = self.tickets_by_user.iter().map(|(u, t)| (*u, *t)).collect();
        let mut recounted: Vec<_> = tickets.into_iter().filter(|(_, t)| *t > 0).collect();
        counted.sort_unstable();
        recounted.sort_unstable();
        if counted != recounted {
            return Err("tickets per buyer disagree with the holds and bookings".into());
        }
        if let Some((user, t)) = counted
            .iter()
            .find(|(_, t)| self.rules.max_tickets_per_user.is_some_and(|max| *t > max))
        {
            return Err(format!("buyer {user} has {t} tickets, over the limit"));
        }
        Ok(())
    }
}
