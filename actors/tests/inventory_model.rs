//! A state-machine property test: thousands of random sequences of holds, releases,
//! confirmations, cancellations and expiries run against the real `Inventory` and against
//! a deliberately simple reference model. After every step both must agree on the answer,
//! on every count and on every seat, and the inventory's own invariant check must pass.
//!
//! The model covers every rule the inventory decides for holds and bookings: sale state,
//! quantities, the per-buyer limit, seat availability, best-available, ownership, discount
//! uses and validity windows, and idempotency keys (replays and reuse).

use std::collections::BTreeMap;

use boxoffice_engine::inventory::{EventRules, Inventory};
use boxoffice_engine::types::{
    ConfirmRequest, DiscountAmount, EventStatus, HoldKind, HoldRequest, NewDiscount, NewSection,
    Requester, SectionSpec,
};
use boxoffice_engine::{EngineError, Refusal};
use proptest::prelude::*;

const T0: i64 = 1_900_000_000_000;
const GENERAL: i64 = 1;
const RESERVED: i64 = 2;
const GENERAL_CAPACITY: u32 = 12;
const ROWS: usize = 3;
const PER_ROW: usize = 6;
const SEATS: usize = ROWS * PER_ROW;
const FIRST_SEAT: i64 = 1000;
const MAX_PER_USER: u32 = 5;
const TTL_MS: i64 = 60_000;
const USERS: i64 = 4;
const DISCOUNT_USES: u32 = 2;
/// The windowed discount is valid from T0 + 60 s until (not including) T0 + 150 s.
const WINDOW_FROM_MS: i64 = T0 + 60_000;
const WINDOW_UNTIL_MS: i64 = T0 + 150_000;
const WINDOW_OFF_CENTS: i64 = 1_000;

/// Which discount a confirm names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Code {
    None,
    /// 50 % off, `DISCOUNT_USES` uses, always valid.
    Half,
    /// `WINDOW_OFF_CENTS` off, plenty of uses, valid in its window only.
    Window,
}

impl Code {
    fn text(self) -> Option<String> {
        match self {
            Code::None => None,
            Code::Half => Some("half".into()),
            Code::Window => Some("Window".into()),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    HoldGeneral {
        user: i64,
        quantity: u32,
        key: Option<u8>,
    },
    HoldSeats {
        user: i64,
        seats: Vec<usize>,
    },
    HoldBest {
        user: i64,
        quantity: u32,
        split: bool,
    },
    Release {
        user: i64,
        pick: usize,
    },
    Confirm {
        user: i64,
        picks: Vec<usize>,
        discount: Code,
        key: Option<u8>,
    },
    Cancel {
        user: i64,
        pick: usize,
    },
    Advance {
        seconds: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let user = 1..=USERS;
    prop_oneof![
        4 => (user.clone(), 0..=6u32, key())
            .prop_map(|(user, quantity, key)| Op::HoldGeneral { user, quantity, key }),
        3 => (user.clone(), proptest::sample::subsequence((0..SEATS).collect::<Vec<_>>(), 1..=4))
            .prop_map(|(user, seats)| Op::HoldSeats { user, seats }),
        4 => (user.clone(), 0..=5u32, any::<bool>())
            .prop_map(|(user, quantity, split)| Op::HoldBest { user, quantity, split }),
        2 => (user.clone(), any::<usize>()).prop_map(|(user, pick)| Op::Release { user, pick }),
        3 => (user.clone(), proptest::collection::vec(any::<usize>(), 0..=3), discount_code(), key())
            .prop_map(|(user, picks, discount, key)| Op::Confirm { user, picks, discount, key }),
        1 => (user.clone(), any::<usize>()).prop_map(|(user, pick)| Op::Cancel { user, pick }),
        2 => (0..=90i64).prop_map(|seconds| Op::Advance { seconds }),
    ]
}

/// Mostly no key; otherwise one of two, so that keys are often reused.
fn key() -> impl Strategy<Value = Option<u8>> {
    prop_oneof![2 => Just(None), 1 => (0..2u8).prop_map(Some)]
}

fn discount_code() -> impl Strategy<Value = Code> {
    prop_oneof![Just(Code::None), Just(Code::Half), Just(Code::Window)]
}

fn key_text(key: Option<u8>) -> Option<String> {
    key.map(|k| format!("key-{k}"))
}

/// What a confirm asked: its holds (sorted) and its code.
type Asked = (Vec<i64>, Code);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Free,
    Held(i64),
    Booked(i64),
}

#[derive(Clone, Debug)]
struct MHold {
    user: i64,
    section: i64,
    quantity: u32,
    seats: Vec<usize>,
    expires_ms: i64,
}

#[derive(Clone, Debug)]
struct MBooking {
    user: i64,
    holds: Vec<MHold>,
    cancelled: bool,
    discount: Code,
    subtotal_cents: i64,
    total_cents: i64,
}

/// The reference model: plain maps and vectors, every question answered by brute force.
struct Model {
    now_ms: i64,
    general_held: u32,
    general_booked: u32,
    seats: Vec<Owner>,
    holds: BTreeMap<i64, MHold>,
    bookings: BTreeMap<i64, MBooking>,
    discount_used: u32,
    window_used: u32,
    /// Keyed holds: (buyer, key) → (quantity asked, hold id).
    hold_keys: BTreeMap<(i64, u8), (u32, i64)>,
    /// Keyed bookings: (buyer, key) → (what was asked, booking id).
    booking_keys: BTreeMap<(i64, u8), (Asked, i64)>,
}

impl Model {
    fn tickets(&self, user: i64) -> u32 {
        let held: u32 = self
            .holds
            .values()
            .filter(|h| h.user == user)
            .map(|h| h.quantity)
            .sum();
        let booked: u32 = self
            .bookings
            .values()
            .filter(|b| b.user == user && !b.cancelled)
            .flat_map(|b| &b.holds)
            .map(|h| h.quantity)
            .sum();
        held + booked
    }

    fn general_available(&self) -> u32 {
        GENERAL_CAPACITY - self.general_held - self.general_booked
    }

    fn seats_free(&self) -> usize {
        self.seats.iter().filter(|o| **o == Owner::Free).count()
    }

    fn window_open(&self) -> bool {
        self.now_ms >= WINDOW_FROM_MS && self.now_ms < WINDOW_UNTIL_MS
    }

    fn sold_out(&self) -> bool {
        self.general_available() == 0 && self.seats_free() == 0
    }

    /// The front-most row with `q` adjacent free seats, and the most central such window in
    /// it: as best-available must choose.
    /// Best available, by brute force: in each row every free window of `q` seats is scored
    /// by the lone seats it would leave beside it within its free run, then by its distance
    /// from the row's centre. The front-most row that can seat the group wins, unless its
    /// best window strands a seat and one of the next `ORPHAN_LOOKBACK_ROWS` rows that can
    /// seat it does not. Every window with the winning score is an acceptable answer.
    fn best_adjacent(&self, q: usize) -> Option<Vec<usize>> {
        let free = |row: usize, i: usize| self.seats[row * PER_ROW + i] == Owner::Free;
        let row_best = |row: usize| -> Option<((usize, usize), Vec<usize>)> {
            let mut scored = Vec::new();
            for start in 0..=(PER_ROW - q) {
                if !(start..start + q).all(|i| free(row, i)) {
                    continue;
                }
                let mut left = 0;
                while start > left && free(row, start - left - 1) {
                    left += 1;
                }
                let mut right = 0;
                while start + q + right < PER_ROW && free(row, start + q + right) {
                    right += 1;
                }
                let orphans = usize::from(left == 1) + usize::from(right == 1);
                scored.push(((orphans, (2 * start + q).abs_diff(PER_ROW)), start));
            }
            let best = scored.iter().map(|(score, _)| *score).min()?;
            let starts = scored
                .iter()
                .filter(|(score, _)| *score == best)
                .map(|(_, s)| row * PER_ROW + s)
                .collect();
            Some((best, starts))
        };
        let mut rows = (0..ROWS).filter_map(row_best);
        let (first_score, first) = rows.next()?;
        if first_score.0 == 0 {
            return Some(first);
        }
        rows.take(boxoffice_engine::inventory::ORPHAN_LOOKBACK_ROWS)
            .find(|(score, _)| score.0 == 0)
            .map(|(_, starts)| starts)
            .or(Some(first))
    }

    fn expire(&mut self) -> usize {
        let due: Vec<i64> = self
            .holds
            .iter()
            .filter(|(_, h)| h.expires_ms <= self.now_ms)
            .map(|(id, _)| *id)
            .collect();
        for id in &due {
            self.end_hold(*id);
        }
        due.len()
    }

    fn end_hold(&mut self, id: i64) -> MHold {
        let hold = self.holds.remove(&id).unwrap();
        if hold.section == GENERAL {
            self.general_held -= hold.quantity;
        }
        for &s in &hold.seats {
            self.seats[s] = Owner::Free;
        }
        hold
    }

    fn add_hold(&mut self, id: i64, user: i64, section: i64, quantity: u32, seats: Vec<usize>) {
        if section == GENERAL {
            self.general_held += quantity;
        }
        for &s in &seats {
            self.seats[s] = Owner::Held(id);
        }
        let expires_ms = self.now_ms + TTL_MS;
        self.holds.insert(
            id,
            MHold {
                user,
                section,
                quantity,
                seats,
                expires_ms,
            },
        );
    }
}

fn new_inventory() -> Inventory {
    let mut inv = Inventory::new(
        7,
        EventRules {
            status: EventStatus::OnSale,
            sale_start_ms: T0,
            hold_ttl_seconds: (TTL_MS / 1000) as u32,
            max_tickets_per_user: Some(MAX_PER_USER),
            waiting_room: Default::default(),
        },
    );
    let general = NewSection {
        name: "Floor".into(),
        spec: SectionSpec::General {
            capacity: GENERAL_CAPACITY,
        },
        price_cents: 5000,
        capacity_limit: None,
    };
    inv.add_section(GENERAL, general, &[]).unwrap();
    let seat_ids: Vec<i64> = (0..SEATS as i64).map(|i| FIRST_SEAT + i).collect();
    let spec = SectionSpec::Seated {
        rows: ROWS as u32,
        seats_per_row: PER_ROW as u32,
    };
    inv.add_section(
        RESERVED,
        NewSection {
            name: "Stalls".into(),
            spec,
            price_cents: 8000,
            capacity_limit: None,
        },
        &seat_ids,
    )
    .unwrap();
    let discount = NewDiscount {
        code: "half".into(),
        amount: DiscountAmount::PercentOff(50),
        max_uses: DISCOUNT_USES,
        valid_from_ms: None,
        valid_until_ms: None,
    };
    inv.add_discount(1, discount, T0).unwrap();
    let window = NewDiscount {
        code: "window".into(),
        amount: DiscountAmount::AmountOffCents(WINDOW_OFF_CENTS),
        max_uses: 1_000,
        valid_from_ms: Some(WINDOW_FROM_MS),
        valid_until_ms: Some(WINDOW_UNTIL_MS),
    };
    inv.add_discount(2, window, T0).unwrap();
    inv
}

fn code<T>(r: &Result<T, Refusal>) -> Result<(), &'static str> {
    r.as_ref().map(|_| ()).map_err(Refusal::code)
}

fn seat_index(seat_id: i64) -> usize {
    (seat_id - FIRST_SEAT) as usize
}

/// Runs one sequence, checking agreement after every step.
fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut inv = new_inventory();
    let mut model = Model {
        now_ms: T0,
        general_held: 0,
        general_booked: 0,
        seats: vec![Owner::Free; SEATS],
        holds: BTreeMap::new(),
        bookings: BTreeMap::new(),
        discount_used: 0,
        window_used: 0,
        hold_keys: BTreeMap::new(),
        booking_keys: BTreeMap::new(),
    };
    for (id, op) in (101i64..).zip(ops) {
        // As the actor does before every message.
        let (expired, _) = inv.expire_due(model.now_ms);
        prop_assert_eq!(expired, model.expire());
        match op {
            Op::HoldGeneral {
                user,
                quantity,
                key,
            } => {
                let first = key.and_then(|k| model.hold_keys.get(&(user, k)).copied());
                let expected = if first.is_some_and(|(q, _)| q != quantity) {
                    Err("IDEMPOTENCY_KEY_REUSED")
                } else if first.is_some() {
                    Ok(())
                } else if model.sold_out() {
                    Err("SOLD_OUT")
                } else if quantity == 0 {
                    Err("VALIDATION_FAILED")
                } else if model.tickets(user) + quantity > MAX_PER_USER {
                    Err("TICKET_LIMIT")
                } else if model.general_available() < quantity {
                    Err("SOLD_OUT")
                } else {
                    Ok(())
                };
                let kind = HoldKind::General {
                    section_id: GENERAL,
                    quantity,
                };
                let keyed = HoldRequest {
                    idempotency_key: key_text(key),
                    ..request(user, kind)
                };
                let got = inv.place_hold(keyed, id, model.now_ms);
                prop_assert_eq!(code(&got), expected);
                if let Ok((outcome, changes)) = got {
                    if let Some((_, first_id)) = first {
                        prop_assert!(outcome.replayed && changes.is_empty());
                        prop_assert_eq!(outcome.hold.id, first_id);
                    } else {
                        prop_assert!(!outcome.replayed);
                        model.add_hold(id, user, GENERAL, quantity, vec![]);
                        if let Some(k) = key {
                            model.hold_keys.insert((user, k), (quantity, id));
                        }
                    }
                }
            }
            Op::HoldSeats { user, seats } => {
                let n = seats.len() as u32;
                let expected = if model.sold_out() {
                    Err("SOLD_OUT")
                } else if model.tickets(user) + n > MAX_PER_USER {
                    Err("TICKET_LIMIT")
                } else if seats.iter().any(|&s| model.seats[s] != Owner::Free) {
                    Err("SEAT_UNAVAILABLE")
                } else {
                    Ok(())
                };
                let seat_ids = seats.iter().map(|&s| FIRST_SEAT + s as i64).collect();
                let kind = HoldKind::Seats { seat_ids };
                let got = inv.place_hold(request(user, kind), id, model.now_ms);
                prop_assert_eq!(code(&got), expected);
                if got.is_ok() {
                    model.add_hold(id, user, RESERVED, n, seats);
                }
            }
            Op::HoldBest {
                user,
                quantity,
                split,
            } => {
                let q = quantity as usize;
                let adjacent = if q > 0 { model.best_adjacent(q) } else { None };
                let expected = if model.sold_out() {
                    Err("SOLD_OUT")
                } else if quantity == 0 {
                    Err("VALIDATION_FAILED")
                } else if model.tickets(user) + quantity > MAX_PER_USER {
                    Err("TICKET_LIMIT")
                } else if model.seats_free() < q {
                    Err("SOLD_OUT")
                } else if adjacent.is_none() && !split {
                    Err("SEAT_UNAVAILABLE")
                } else {
                    Ok(())
                };
                let kind = HoldKind::BestAvailable {
                    section_id: RESERVED,
                    quantity,
                    allow_split: split,
                };
                let got = inv.place_hold(request(user, kind), id, model.now_ms);
                prop_assert_eq!(code(&got), expected);
                if let Ok((outcome, _)) = got {
                    let mut chosen: Vec<usize> = outcome
                        .hold
                        .seat_ids
                        .iter()
                        .map(|&s| seat_index(s))
                        .collect();
                    chosen.sort_unstable();
                    prop_assert_eq!(chosen.len(), q);
                    prop_assert!(
                        chosen.iter().all(|&s| model.seats[s] == Owner::Free),
                        "chose a taken seat"
                    );
                    if let Some(best_starts) = adjacent {
                        prop_assert!(
                            best_starts.contains(&chosen[0]),
                            "not the best window: {:?} vs {:?}",
                            chosen,
                            best_starts
                        );
                        prop_assert!(chosen.windows(2).all(|w| w[1] == w[0] + 1), "not adjacent");
                    }
                    model.add_hold(id, user, RESERVED, quantity, chosen);
                }
            }
            Op::Release { user, pick } => {
                let target = pick_hold(&model, pick);
                let expected = match target.and_then(|h| model.holds.get(&h)) {
                    Some(h) if h.user == user => Ok(()),
                    _ => Err("RESERVATION_NOT_FOUND"),
                };
                let got =
                    inv.release_hold(Requester::buyer(user), target.unwrap_or(1), model.now_ms);
                prop_assert_eq!(code(&got), expected);
                if got.is_ok() {
                    model.end_hold(target.unwrap());
                }
            }
            Op::Confirm {
                user,
                picks,
                discount,
                key,
            } => {
                // Mostly the buyer's own holds; sometimes someone else's.
                let mut ids: Vec<i64> =
                    picks.iter().filter_map(|&p| pick_hold(&model, p)).collect();
                ids.sort_unstable();
                ids.dedup();
                let first = key.and_then(|k| model.booking_keys.get(&(user, k)).cloned());
                let fingerprint = (ids.clone(), discount);
                let expected = if first.as_ref().is_some_and(|(f, _)| *f != fingerprint) {
                    Err("IDEMPOTENCY_KEY_REUSED")
                } else if first.is_some() {
                    Ok(())
                } else if ids.is_empty() {
                    Err("VALIDATION_FAILED")
                } else if ids.iter().any(|id| model.holds[id].user != user) {
                    Err("RESERVATION_NOT_FOUND")
                } else if discount == Code::Window && !model.window_open() {
                    Err("DISCOUNT_NOT_VALID")
                } else if discount == Code::Half && model.discount_used >= DISCOUNT_USES {
                    Err("DISCOUNT_EXHAUSTED")
                } else {
                    Ok(())
                };
                let request = ConfirmRequest {
                    requester: Requester::buyer(user),
                    hold_ids: ids.clone(),
                    discount_code: discount.text(),
                    idempotency_key: key_text(key),
                };
                let got = inv.confirm(request, id, format!("R{id}"), model.now_ms);
                prop_assert_eq!(code(&got), expected);
                let Ok((outcome, changes)) = got else {
                    continue_checks(&inv, &model)?;
                    continue;
                };
                if let Some((_, first_id)) = first {
                    prop_assert!(outcome.replayed && changes.is_empty());
                    let b = &model.bookings[&first_id];
                    prop_assert_eq!(outcome.booking.id, first_id);
                    prop_assert_eq!(outcome.booking.total_cents, b.total_cents);
                    prop_assert_eq!(outcome.booking.subtotal_cents, b.subtotal_cents);
                    continue_checks(&inv, &model)?;
                    continue;
                }
                let holds: Vec<MHold> =
                    ids.iter().map(|h| model.holds.remove(h).unwrap()).collect();
                let subtotal: i64 = holds
                    .iter()
                    .map(|h| i64::from(h.quantity) * if h.section == GENERAL { 5000 } else { 8000 })
                    .sum();
                let total = match discount {
                    Code::None => subtotal,
                    Code::Half => subtotal - subtotal / 2,
                    Code::Window => subtotal - WINDOW_OFF_CENTS.min(subtotal),
                };
                prop_assert_eq!(outcome.booking.subtotal_cents, subtotal);
                prop_assert_eq!(outcome.booking.total_cents, total);
                for h in &holds {
                    if h.section == GENERAL {
                        model.general_held -= h.quantity;
                        model.general_booked += h.quantity;
                    }
                    for &s in &h.seats {
                        model.seats[s] = Owner::Booked(id);
                    }
                }
                match discount {
                    Code::None => {}
                    Code::Half => model.discount_used += 1,
                    Code::Window => model.window_used += 1,
                }
                if let Some(k) = key {
                    model.booking_keys.insert((user, k), (fingerprint, id));
                }
                model.bookings.insert(
                    id,
                    MBooking {
                        user,
                        holds,
                        cancelled: false,
                        discount,
                        subtotal_cents: subtotal,
                        total_cents: total,
                    },
                );
            }
            Op::Cancel { user, pick } => {
                let ids: Vec<i64> = model.bookings.keys().copied().collect();
                let target = (!ids.is_empty()).then(|| ids[pick % ids.len()]);
                let expected = match target.map(|b| &model.bookings[&b]) {
                    Some(b) if b.user != user => Err("BOOKING_NOT_FOUND"),
                    Some(b) if b.cancelled => Err("BOOKING_NOT_ACTIVE"),
                    Some(_) => Ok(()),
                    None => Err("BOOKING_NOT_FOUND"),
                };
                let got =
                    inv.cancel_booking(Requester::buyer(user), target.unwrap_or(1), model.now_ms);
                prop_assert_eq!(code(&got), expected);
                if got.is_ok() {
                    let b = model.bookings.get_mut(&target.unwrap()).unwrap();
                    b.cancelled = true;
                    let discount = b.discount;
                    for h in b.holds.clone() {
                        if h.section == GENERAL {
                            model.general_booked -= h.quantity;
                        }
                        for &s in &h.seats {
                            model.seats[s] = Owner::Free;
                        }
                    }
                    match discount {
                        Code::None => {}
                        Code::Half => model.discount_used -= 1,
                        Code::Window => model.window_used -= 1,
                    }
                }
            }
            Op::Advance { seconds } => model.now_ms += seconds * 1000,
        }

        continue_checks(&inv, &model)?;
    }
    Ok(())
}

/// After every step: the inventory's own invariants, and agreement with the model.
fn continue_checks(inv: &Inventory, model: &Model) -> Result<(), TestCaseError> {
    inv.check_invariants().map_err(TestCaseError::fail)?;
    let snapshot = inv.clone().snapshot(true);
    let general = snapshot.section(GENERAL).unwrap();
    prop_assert_eq!(
        (general.held, general.booked),
        (model.general_held, model.general_booked)
    );
    let seat_map = snapshot.section(RESERVED).unwrap().seats.clone().unwrap();
    let statuses: Vec<&str> = seat_map
        .rows
        .iter()
        .flat_map(|r| &r.seats)
        .map(|s| s.status.as_str())
        .collect();
    let expected: Vec<&str> = model
        .seats
        .iter()
        .map(|o| match o {
            Owner::Free => "AVAILABLE",
            Owner::Held(_) => "RESERVED",
            Owner::Booked(_) => "BOOKED",
        })
        .collect();
    prop_assert_eq!(statuses, expected);
    for user in 1..=USERS {
        prop_assert_eq!(inv.tickets_of(user), model.tickets(user));
        prop_assert!(model.tickets(user) <= MAX_PER_USER);
    }
    prop_assert_eq!(inv.active_holds(), model.holds.len());
    let sold_out = snapshot.status == EventStatus::SoldOut;
    prop_assert_eq!(sold_out, model.sold_out());
    prop_assert_eq!(inv.discount("HALF").unwrap().used, model.discount_used);
    prop_assert_eq!(inv.discount("WINDOW").unwrap().used, model.window_used);
    Ok(())
}

/// A hold request without idempotency key or session.
fn request(user_id: i64, kind: HoldKind) -> HoldRequest {
    HoldRequest {
        user_id,
        kind,
        idempotency_key: None,
        session_id: None,
    }
}

/// An ACTIVE hold of the model chosen by `pick`, or `None` when there is none.
fn pick_hold(model: &Model, pick: usize) -> Option<i64> {
    let ids: Vec<i64> = model.holds.keys().copied().collect();
    (!ids.is_empty()).then(|| ids[pick % ids.len()])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn the_inventory_agrees_with_the_reference_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}

#[test]
fn engine_errors_carry_refusals() {
    // The code the API reports for a refusal is the refusal's own.
    let e: EngineError = Refusal::SoldOut.into();
    assert!(matches!(e, EngineError::Refused(Refusal::SoldOut)));
    assert!(!e.is_retryable());
}
