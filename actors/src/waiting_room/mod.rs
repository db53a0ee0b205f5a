//! The waiting room of one event: a fair line in front of its on-sale, kept by the event's
//! actor next to the inventory it protects.
//!
//! - Buyers who join before the sale opens are placed by a random draw when it opens
//!   (a uniform shuffle), so arriving at 9:59:59.999 gives no edge over 9:45; later arrivals
//!   queue behind them, first come first served.
//! - Buyers are let in from the front at the event's pace (`admitPerMinute`), never while
//!   nothing is left to sell, and never more passes unused at once than the tickets left
//!   can serve (at what buyers let in took so far, on average). A buyer let in gets a pass
//!   good for `passTtlSeconds`; a pass that runs out unused gives its place to the next
//!   buyer in line.
//! - When the room is on, a hold needs a good pass.
//!
//! Like the inventory, this is synchronous and free of I/O: it takes the time as an
//! argument and returns the row changes its decisions imply, which reach PostgreSQL in the
//! same group commit as the holds. Readers see it through the [`QueueBoard`].

mod board;

use std::collections::BTreeSet;
use std::sync::Arc;

use rand::seq::SliceRandom;

pub use board::{QueueBoard, QueueStatus, QueueView, Spot};

use crate::error::Refusal;
use crate::limits::{self, MAX_QUEUE_ENTRIES};
use crate::types::UserId;
pub use crate::types::{WaitingRoomRules, WaitingRoomUpdate};

impl WaitingRoomRules {
    /// These rules with `update` applied, or why it breaks a limit.
    pub fn with(self, update: WaitingRoomUpdate) -> Result<WaitingRoomRules, Refusal> {
        let mut rules = self;
        if let Some(enabled) = update.enabled {
            rules.enabled = enabled;
        }
        if let Some(pace) = update.admit_per_minute {
            if !(limits::MIN_ADMIT_PER_MINUTE..=limits::MAX_ADMIT_PER_MINUTE).contains(&pace) {
                return Err(Refusal::Invalid(format!(
                    "waitingRoom.admitPerMinute must be between {} and {}",
                    limits::MIN_ADMIT_PER_MINUTE,
                    limits::MAX_ADMIT_PER_MINUTE
                )));
            }
            rules.admit_per_minute = pace;
        }
        if let Some(ttl) = update.pass_ttl_seconds {
            if !(limits::MIN_PASS_TTL_SECONDS..=limits::MAX_PASS_TTL_SECONDS).contains(&ttl) {
                return Err(Refusal::Invalid(format!(
                    "waitingRoom.passTtlSeconds must be between {} and {}",
                    limits::MIN_PASS_TTL_SECONDS,
                    limits::MAX_PASS_TTL_SECONDS
                )));
            }
            rules.pass_ttl_seconds = ttl;
        }
        Ok(rules)
    }

    /// How often the line is looked at while buyers wait: about one admission per tick, but
    /// never more often than ten times a second nor less than once a second.
    fn tick_ms(self) -> i64 {
        (60_000 / i64::from(self.admit_per_minute.max(1))).clamp(100, 1_000)
    }
}

/// What the waiting room needs to know of the event at a moment.
#[derive(Clone, Copy, Debug)]
pub struct Sale {
    pub rules: WaitingRoomRules,
    /// The sale is open (ON_SALE or SOLD_OUT, and past its start).
    pub opened: bool,
    /// Published (ON_SALE or SOLD_OUT): buyers may join.
    pub published: bool,
    /// Tickets left to sell now (0 unless ON_SALE).
    pub available: u32,
    /// The event is SOLD_OUT: the line is told so.
    pub sold_out: bool,
    pub sale_start_ms: i64,
}

/// A new `queue_entries` row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueRow {
    pub user_id: UserId,
    /// Order of arrival within the event.
    pub arrival_seq: i64,
    /// Joined before the draw: placed by it.
    pub early: bool,
    /// Place in line; `None` until the draw for an early arrival.
    pub rank: Option<u32>,
    pub joined_at_ms: i64,
}

/// A row-level consequence of a waiting-room decision (carried in the inventory's
/// `Change::Queue`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueChange {
    /// A buyer joined.
    Joined(QueueRow),
    /// The draw placed early arrivals: `user_ids[i]` gets rank `first_rank + i`.
    Ranked {
        user_ids: Vec<UserId>,
        first_rank: u32,
    },
    /// Ranks `from_rank..to_rank` were let in, with passes good until `pass_expires_at_ms`.
    Admitted {
        from_rank: u32,
        to_rank: u32,
        at_ms: i64,
        pass_expires_at_ms: i64,
    },
    /// A buyer placed their first hold with their pass.
    PassUsed { user_id: UserId, at_ms: i64 },
}

/// A stored queue entry, for rebuilding after a restart.
#[derive(Clone, Debug)]
pub struct RestoredEntry {
    pub user_id: UserId,
    pub arrival_seq: i64,
    pub early: bool,
    pub rank: Option<u32>,
    pub joined_at_ms: i64,
    pub admitted_at_ms: Option<i64>,
    pub pass_expires_at_ms: Option<i64>,
    pub pass_used: bool,
}

/// One event's waiting room.
#[derive(Clone, Debug)]
pub struct WaitingRoom {
    /// What readers see; written here as decisions are made.
    board: Arc<QueueBoard>,
    /// Buyers by rank: the line after the draw.
    order: Vec<UserId>,
    /// Early arrivals waiting for the draw, in arrival order.
    undrawn: Vec<UserId>,
    /// Whether the draw was made.
    drawn: bool,
    /// Buyers let in: `order[..admitted]`.
    admitted: usize,
    /// The next arrival's sequence number.
    next_arrival: i64,
    /// Passes not yet used, by expiry: each one that runs out gives its place back.
    unused_passes: BTreeSet<(i64, UserId)>,
    /// Admissions owed at the pace and not yet made (fractional).
    credit: f64,
    /// Admissions owed for passes that ran out unused.
    returned: usize,
    /// When `credit` last grew; `None` while it does not.
    accrued_at_ms: Option<i64>,
    /// Tickets taken by the first hold of each pass used so far, and how many passes: what
    /// a buyer let in takes, on average, in this sale (not kept across a restart, which
    /// starts again from one ticket a pass).
    first_hold_tickets: u64,
    passes_used: u64,
    /// (admitted, drawn) as last handed out by [`WaitingRoom::visibility`].
    shown: (usize, bool),
}

/// What readers may be shown once the changes decided so far are durable: the actor parks
/// it on the batch that carries them, and [`Visibility::show`] runs after its COMMIT.
#[derive(Debug)]
pub struct Visibility {
    board: Arc<QueueBoard>,
    admitted: usize,
    drawn: bool,
}

impl Visibility {
    /// Shows the draw and the admissions (batches commit in order, so these only grow).
    pub fn show(self) {
        self.board.set_drawn(self.drawn);
        self.board.set_admitted(self.admitted as u64);
        self.board.bump();
    }
}

impl Default for WaitingRoom {
    fn default() -> Self {
        WaitingRoom {
            board: Arc::new(QueueBoard::new()),
            order: Vec::new(),
            undrawn: Vec::new(),
            drawn: false,
            admitted: 0,
            next_arrival: 0,
            unused_passes: BTreeSet::new(),
            credit: 0.0,
            returned: 0,
            accrued_at_ms: None,
            first_hold_tickets: 0,
            passes_used: 0,
            shown: (0, false),
        }
    }
}

impl WaitingRoom {
    /// The board readers look at.
    pub fn board(&self) -> Arc<QueueBoard> {
        self.board.clone()
    }

    /// What to show readers once the batch now filling commits, if the draw or the
    /// admissions moved since the last call.
    pub fn visibility(&mut self) -> Option<Visibility> {
        let now = (self.admitted, self.drawn);
        if now == self.shown {
            return None;
        }
        self.shown = now;
        Some(Visibility {
            board: self.board.clone(),
            admitted: self.admitted,
            drawn: self.drawn,
        })
    }

    /// Buyers in line, not yet let in (early arrivals before the draw included).
    pub fn waiting(&self) -> usize {
        self.undrawn.len() + self.order.len() - self.admitted
    }

    /// Buyers let in so far.
    pub fn admitted(&self) -> usize {
        self.admitted
    }

    /// Nothing left to do without a request: nobody waiting, no pass to watch run out.
    pub fn is_idle(&self) -> bool {
        self.waiting() == 0 && self.unused_passes.is_empty()
    }

    /// Joins a buyer, or answers their existing entry. The change is `None` for a buyer
    /// already in line.
    pub fn join(
        &mut self,
        user_id: UserId,
        now_ms: i64,
        sale: &Sale,
    ) -> Result<(QueueView, Option<QueueChange>), Refusal> {
        if let Some(spot) = self.board.spot(user_id) {
            return Ok((self.board.view_of(spot, now_ms), None));
        }
        if !sale.rules.enabled {
            return Err(Refusal::WaitingRoomOff);
        }
        if !sale.published {
            return Err(Refusal::SaleNotOpen);
        }
        if self.board.len() >= MAX_QUEUE_ENTRIES {
            return Err(Refusal::LimitReached(format!(
                "this waiting room is full ({MAX_QUEUE_ENTRIES} buyers)"
            )));
        }
        // Before the draw every arrival is early, whatever the clock says: the draw is made
        // by the next `advance` after the opening.
        let early = !self.drawn;
        let rank = if early {
            self.undrawn.push(user_id);
            None
        } else {
            self.order.push(user_id);
            Some(rank_of(self.order.len() - 1))
        };
        let spot = Spot {
            rank,
            joined_at_ms: now_ms,
            admitted_at_ms: None,
            pass_expires_at_ms: None,
            pass_used: false,
        };
        self.board.put(user_id, spot);
        let row = QueueRow {
            user_id,
            arrival_seq: self.next_arrival,
            early,
            rank,
            joined_at_ms: now_ms,
        };
        self.next_arrival += 1;
        metrics::counter!("boxoffice_queue_joins_total").increment(1);
        Ok((
            self.board.view_of(spot, now_ms),
            Some(QueueChange::Joined(row)),
        ))
    }

    /// Moves the line to `now_ms`: the draw at the opening, passes that ran out unused, and
    /// the admissions the pace allows. Called before every message the actor handles.
    pub fn advance(&mut self, now_ms: i64, sale: &Sale) -> Vec<QueueChange> {
        let mut changes = Vec::new();
        self.publish(sale);
        if !sale.rules.enabled {
            self.pause();
            return changes;
        }
        if !self.drawn {
            if !sale.opened {
                return changes;
            }
            changes.push(self.draw());
        }
        self.return_unused_passes(now_ms);
        let waiting = self.order.len() - self.admitted;
        if waiting == 0 || sale.available == 0 {
            // Nobody to let in, or nothing to sell: the pace owes nothing for this time.
            self.accrued_at_ms = Some(now_ms);
            return changes;
        }
        let since_ms = self.accrued_at_ms.unwrap_or(now_ms);
        self.accrued_at_ms = Some(now_ms);
        let pace = f64::from(sale.rules.admit_per_minute);
        // At most five seconds of admissions at once (at least one), so that a line held back
        // by unused passes is not let in all together when they are used.
        let burst = (pace / 12.0).max(1.0);
        self.credit =
            (self.credit + (now_ms - since_ms).max(0) as f64 * pace / 60_000.0).min(burst);
        let room = self
            .passes_for(sale.available)
            .saturating_sub(self.unused_passes.len());
        let owed = self.returned + self.credit.floor() as usize;
        let n = owed.min(waiting).min(room);
        if n > 0 {
            // Places given back by unused passes are filled first; the pace pays the rest.
            let from_returned = n.min(self.returned);
            self.returned -= from_returned;
            self.credit -= (n - from_returned) as f64;
            changes.push(self.admit(n, now_ms, sale));
        }
        changes
    }

    /// The room is off: the pace owes nothing for the time it stays off.
    pub fn pause(&mut self) {
        self.accrued_at_ms = None;
    }

    /// When the line next needs looking at without a request: the opening before the draw,
    /// the next tick while buyers wait, the next unused pass to run out.
    pub fn next_wakeup_ms(&self, now_ms: i64, sale: &Sale) -> Option<i64> {
        if !sale.rules.enabled {
            return None;
        }
        if !self.drawn {
            return sale.published.then_some(sale.sale_start_ms);
        }
        let tick = (self.order.len() > self.admitted && sale.available > 0)
            .then(|| now_ms + sale.rules.tick_ms());
        let pass = self.unused_passes.first().map(|&(at, _)| at);
        match (tick, pass) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Checks that a buyer may hold now: an admitted, unexpired pass. Returns whether this is
    /// the pass's first use (which is recorded by [`WaitingRoom::use_pass`]).
    pub fn check_pass(&self, user_id: UserId, now_ms: i64) -> Result<bool, Refusal> {
        let spot = self.board.spot(user_id).ok_or(Refusal::QueuePassRequired)?;
        match spot.pass_expires_at_ms {
            None => Err(Refusal::QueuePassRequired),
            Some(expires_ms) if now_ms >= expires_ms => Err(Refusal::QueuePassExpired),
            Some(_) => Ok(!spot.pass_used),
        }
    }

    /// How many passes `available` tickets can serve: one per ticket until buyers have used
    /// passes, then as many as the tickets would serve at what a buyer has taken on average
    /// (rounded up, so that the last tickets always have a buyer). Counting one ticket a
    /// pass when buyers take two or three let in, at the end of a sale, buyers who found
    /// nothing left after their wait.
    fn passes_for(&self, available: u32) -> usize {
        if self.passes_used == 0 || self.first_hold_tickets <= self.passes_used {
            return available as usize;
        }
        // ceil(available × used / tickets), in integers.
        let (used, tickets) = (self.passes_used, self.first_hold_tickets);
        (u64::from(available) * used).div_ceil(tickets) as usize
    }

    /// Records a pass's first use: a hold of `tickets` placed with it.
    pub fn use_pass(&mut self, user_id: UserId, now_ms: i64, tickets: u32) -> QueueChange {
        self.passes_used += 1;
        self.first_hold_tickets += u64::from(tickets);
        if let Some(expires_ms) = self.board.spot(user_id).and_then(|s| s.pass_expires_at_ms) {
            self.unused_passes.remove(&(expires_ms, user_id));
        }
        self.board.update(user_id, |s| s.pass_used = true);
        QueueChange::PassUsed {
            user_id,
            at_ms: now_ms,
        }
    }

    /// Tells the board the event's state (before a join or a step, and after every
    /// message).
    pub fn publish(&self, sale: &Sale) {
        let changed = self.board.set_state(
            sale.rules.enabled,
            sale.sold_out,
            sale.rules.admit_per_minute,
            sale.sale_start_ms,
        );
        if changed {
            self.board.bump();
        }
    }

    /// Marks the board as no longer written (the actor stopped).
    pub fn retire(&self) {
        self.board.retire();
    }

    /// The draw: early arrivals in a uniformly random order (a Fisher–Yates shuffle from
    /// the operating system's entropy via `rand`'s thread generator), placed ahead of
    /// everyone who arrives after it.
    fn draw(&mut self) -> QueueChange {
        debug_assert!(self.order.is_empty(), "nobody is placed before the draw");
        let mut drawn = std::mem::take(&mut self.undrawn);
        drawn.shuffle(&mut rand::rng());
        let first_rank = rank_of(self.order.len());
        for (i, &user_id) in drawn.iter().enumerate() {
            let rank = first_rank + rank_of(i);
            self.board.update(user_id, |s| s.rank = Some(rank));
        }
        self.order.extend_from_slice(&drawn);
        self.drawn = true;
        QueueChange::Ranked {
            user_ids: drawn,
            first_rank,
        }
    }

    /// Lets the next `n` buyers in.
    fn admit(&mut self, n: usize, now_ms: i64, sale: &Sale) -> QueueChange {
        let from = self.admitted;
        let to = from + n;
        let expires_ms = now_ms + i64::from(sale.rules.pass_ttl_seconds) * 1_000;
        let opened_ms = sale.sale_start_ms;
        for &user_id in &self.order[from..to] {
            self.board.update(user_id, |s| {
                s.admitted_at_ms = Some(now_ms);
                s.pass_expires_at_ms = Some(expires_ms);
                let waited_ms = now_ms - s.joined_at_ms.max(opened_ms);
                metrics::histogram!("boxoffice_queue_wait_seconds")
                    .record(waited_ms.max(0) as f64 / 1_000.0);
            });
            self.unused_passes.insert((expires_ms, user_id));
        }
        self.admitted = to;
        metrics::counter!("boxoffice_queue_admitted_total").increment(n as u64);
        QueueChange::Admitted {
            from_rank: rank_of(from),
            to_rank: rank_of(to),
            at_ms: now_ms,
            pass_expires_at_ms: expires_ms,
        }
    }

    /// Passes that ran out unused each give one admission back to the line.
    fn return_unused_passes(&mut self, now_ms: i64) {
        while let Some(&(expires_ms, user_id)) = self.unused_passes.first() {
            if expires_ms > now_ms {
                break;
            }
            self.unused_passes.remove(&(expires_ms, user_id));
            self.returned += 1;
            metrics::counter!("boxoffice_queue_passes_expired_total").increment(1);
        }
    }

    /// Rebuilds the waiting room from its stored entries, or says which invariant they break.
    pub fn restore(mut entries: Vec<RestoredEntry>, now_ms: i64) -> Result<WaitingRoom, String> {
        let mut room = WaitingRoom::default();
        entries.sort_by_key(|e| e.arrival_seq);
        room.next_arrival = entries.last().map_or(0, |e| e.arrival_seq + 1);
        let mut ranked: Vec<(u32, UserId)> = Vec::new();
        for e in &entries {
            match e.rank {
                Some(rank) => ranked.push((rank, e.user_id)),
                None if e.early => room.undrawn.push(e.user_id),
                None => return Err(format!("queue entry of user {} has no rank", e.user_id)),
            }
            room.board.put(
                e.user_id,
                Spot {
                    rank: e.rank,
                    joined_at_ms: e.joined_at_ms,
                    admitted_at_ms: e.admitted_at_ms,
                    pass_expires_at_ms: e.pass_expires_at_ms,
                    pass_used: e.pass_used,
                },
            );
            if let (Some(expires_ms), false) = (e.pass_expires_at_ms, e.pass_used) {
                if expires_ms > now_ms {
                    room.unused_passes.insert((expires_ms, e.user_id));
                }
            }
        }
        if !ranked.is_empty() && !room.undrawn.is_empty() {
            return Err("queue has placed entries and early arrivals not yet drawn".into());
        }
        ranked.sort_unstable();
        for (i, &(rank, _)) in ranked.iter().enumerate() {
            if rank != rank_of(i) {
                return Err(format!("queue ranks skip from {i} to {rank}"));
            }
        }
        room.order = ranked.into_iter().map(|(_, user_id)| user_id).collect();
        room.drawn = !room.order.is_empty();
        // The admitted are the front of the line, and only they.
        room.admitted = entries
            .iter()
            .filter(|e| e.admitted_at_ms.is_some())
            .count();
        for (i, user_id) in room.order.iter().enumerate() {
            let admitted = room
                .board
                .spot(*user_id)
                .is_some_and(|s| s.admitted_at_ms.is_some());
            if admitted != (i < room.admitted) {
                return Err(format!(
                    "queue admissions are not the front of the line at rank {i}"
                ));
            }
        }
        room.board.set_admitted(room.admitted as u64);
        room.board.set_drawn(room.drawn);
        room.shown = (room.admitted, room.drawn);
        Ok(room)
    }
}

/// A place in line as stored (`integer`); the line is bounded by [`MAX_QUEUE_ENTRIES`].
fn rank_of(index: usize) -> u32 {
    u32::try_from(index).expect("the line is bounded by MAX_QUEUE_ENTRIES")
}

#[cfg(test)]
mod tests;
