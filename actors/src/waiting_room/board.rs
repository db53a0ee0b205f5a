//! The waiting room as readers see it: every buyer's spot, written by the event's actor and
//! read by anyone without a mailbox round trip or a database query.
//!
//! A million buyers polling their position must not queue behind the decisions they wait
//! for. So the actor writes each spot into a concurrent map as it decides (joins, the draw,
//! admissions, a pass's first use) and readers derive the rest — position, buyers ahead,
//! whether a pass has run out — from the spot, a few counters and the clock.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};

use dashmap::DashMap;
use serde::Serialize;
use tokio::sync::watch;

use crate::error::Refusal;
use crate::types::UserId;

/// Where one buyer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spot {
    /// Place in the order (0 first); `None` for an early arrival before the draw.
    pub rank: Option<u32>,
    /// When the buyer joined.
    pub joined_at_ms: i64,
    /// When the buyer was let in, if they were.
    pub admitted_at_ms: Option<i64>,
    /// Until when their pass lets them hold.
    pub pass_expires_at_ms: Option<i64>,
    /// Whether they placed a hold with it.
    pub pass_used: bool,
}

/// A buyer's status in the waiting room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QueueStatus {
    /// In line (or, before the sale opens, waiting for the draw).
    Waiting,
    /// Let in: the pass is good until `passExpiresAt`.
    Admitted,
    /// No tickets are left now. The place is kept: if tickets come back (a hold expires, a
    /// booking is cancelled) the line moves again.
    SoldOut,
    /// The pass ran out.
    Expired,
}

/// What a buyer is told about their place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueView {
    pub status: QueueStatus,
    /// 1 for the next buyer to be let in; `None` before the draw and once admitted.
    pub position: Option<u32>,
    /// Buyers in line ahead (`position − 1`).
    pub buyers_ahead: Option<u32>,
    /// Seconds until admission at the current pace, when waiting after the draw.
    pub estimated_wait_seconds: Option<u32>,
    /// When the buyer joined.
    pub joined_at_ms: i64,
    /// When the draw places early arrivals (the sale's opening); `None` once placed.
    pub draw_at_ms: Option<i64>,
    pub admitted_at_ms: Option<i64>,
    pub pass_expires_at_ms: Option<i64>,
    /// Whether a hold was placed with the pass.
    pub pass_used: bool,
}

/// The shared picture of one event's waiting room.
#[derive(Debug)]
pub struct QueueBoard {
    /// Every buyer's spot.
    spots: DashMap<UserId, Spot>,
    /// Entries let in, durably: ranks `0..admitted`.
    admitted: AtomicU64,
    /// Whether the waiting room is on.
    enabled: AtomicBool,
    /// Whether the event has nothing left to sell now.
    sold_out: AtomicBool,
    /// Whether early arrivals have been placed, durably.
    drawn: AtomicBool,
    /// The pace, for estimated waits.
    admit_per_minute: AtomicU32,
    /// When the sale opens (the draw).
    sale_start_ms: AtomicI64,
    /// Bumped whenever positions or statuses may have moved (the draw, an admission, a
    /// change of rules or of sold-out): position streams wait on it.
    changed: watch::Sender<u64>,
    /// Set when the actor that wrote this board stops: a reader holding it must ask the
    /// engine for the board of the event's next actor.
    retired: AtomicBool,
}

impl QueueBoard {
    pub(crate) fn new() -> Self {
        QueueBoard {
            spots: DashMap::new(),
            admitted: AtomicU64::new(0),
            enabled: AtomicBool::new(false),
            sold_out: AtomicBool::new(false),
            drawn: AtomicBool::new(false),
            admit_per_minute: AtomicU32::new(1),
            sale_start_ms: AtomicI64::new(0),
            changed: watch::Sender::new(0),
            retired: AtomicBool::new(false),
        }
    }

    /// Whether the waiting room is on.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Buyers with an entry.
    pub fn len(&self) -> usize {
        self.spots.len()
    }

    /// Whether nobody has joined.
    pub fn is_empty(&self) -> bool {
        self.spots.is_empty()
    }

    /// A buyer's spot.
    pub fn spot(&self, user_id: UserId) -> Option<Spot> {
        self.spots.get(&user_id).map(|s| *s)
    }

    /// What a buyer is told at `now_ms`; `None` when they have no entry.
    pub fn view(&self, user_id: UserId, now_ms: i64) -> Option<QueueView> {
        let spot = self.spot(user_id)?;
        Some(self.view_of(spot, now_ms))
    }

    /// What a buyer is told at `now_ms`, or why nothing: the room is off, or they never
    /// joined.
    pub fn place(&self, user_id: UserId, now_ms: i64) -> Result<QueueView, Refusal> {
        if !self.is_enabled() {
            return Err(Refusal::WaitingRoomOff);
        }
        self.view(user_id, now_ms).ok_or(Refusal::NotInQueue)
    }

    /// The view of a spot at `now_ms`.
    pub fn view_of(&self, spot: Spot, now_ms: i64) -> QueueView {
        let mut view = QueueView {
            status: QueueStatus::Waiting,
            position: None,
            buyers_ahead: None,
            estimated_wait_seconds: None,
            joined_at_ms: spot.joined_at_ms,
            draw_at_ms: None,
            admitted_at_ms: spot.admitted_at_ms,
            pass_expires_at_ms: spot.pass_expires_at_ms,
            pass_used: spot.pass_used,
        };
        // Only what is durable is shown: the draw and admissions count from the moment their
        // batch committed (the actor moves `drawn` and `admitted` then), so a buyer is never
        // shown a place or a pass that a crash could take back.
        let admitted = self.admitted.load(Ordering::Acquire);
        let rank = spot.rank.filter(|_| self.drawn.load(Ordering::Acquire));
        if rank.is_some_and(|r| u64::from(r) < admitted) {
            let expires_ms = spot.pass_expires_at_ms.unwrap_or(0);
            view.status = if now_ms < expires_ms {
                QueueStatus::Admitted
            } else {
                QueueStatus::Expired
            };
            return view;
        }
        view.admitted_at_ms = None;
        view.pass_expires_at_ms = None;
        if self.sold_out.load(Ordering::Acquire) {
            view.status = QueueStatus::SoldOut;
        }
        match rank {
            None => view.draw_at_ms = Some(self.sale_start_ms.load(Ordering::Acquire)),
            Some(rank) => {
                let position = (u64::from(rank) + 1).saturating_sub(admitted).max(1);
                let position = u32::try_from(position).unwrap_or(u32::MAX);
                let pace = u64::from(self.admit_per_minute.load(Ordering::Acquire).max(1));
                view.position = Some(position);
                view.buyers_ahead = Some(position - 1);
                let wait_seconds = (u64::from(position) * 60).div_ceil(pace);
                view.estimated_wait_seconds = Some(u32::try_from(wait_seconds).unwrap_or(u32::MAX));
            }
        }
        view
    }

    /// A receiver woken whenever positions or statuses may have moved.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Whether the actor that wrote this board has stopped.
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    pub(crate) fn put(&self, user_id: UserId, spot: Spot) {
        self.spots.insert(user_id, spot);
    }

    pub(crate) fn update(&self, user_id: UserId, f: impl FnOnce(&mut Spot)) {
        if let Some(mut spot) = self.spots.get_mut(&user_id) {
            f(&mut spot);
        }
    }

    pub(crate) fn set_admitted(&self, admitted: u64) {
        self.admitted.store(admitted, Ordering::Release);
    }

    pub(crate) fn set_drawn(&self, drawn: bool) {
        self.drawn.store(drawn, Ordering::Release);
    }

    /// Stores the rules and the sold-out state; returns whether any of them changed.
    pub(crate) fn set_state(
        &self,
        enabled: bool,
        sold_out: bool,
        admit_per_minute: u32,
        sale_start_ms: i64,
    ) -> bool {
        let a = self.enabled.swap(enabled, Ordering::AcqRel) != enabled;
        let b = self.sold_out.swap(sold_out, Ordering::AcqRel) != sold_out;
        let c = self
            .admit_per_minute
            .swap(admit_per_minute, Ordering::AcqRel)
            != admit_per_minute;
        let d = self.sale_start_ms.swap(sale_start_ms, Ordering::AcqRel) != sale_start_ms;
        a || b || c || d
    }

    /// Wakes every position stream.
    pub(crate) fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Marks the board as no longer written, and wakes its readers so they move on.
    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
        self.bump();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spot(rank: Option<u32>) -> Spot {
        Spot {
            rank,
            joined_at_ms: 5,
            admitted_at_ms: None,
            pass_expires_at_ms: None,
            pass_used: false,
        }
    }

    #[test]
    fn positions_count_from_the_front_of_the_line() {
        let board = QueueBoard::new();
        board.set_state(true, false, 120, 1_000);
        board.put(1, spot(Some(10)));
        board.set_drawn(true);
        board.set_admitted(4);
        let view = board.view(1, 0).unwrap();
        assert_eq!(view.status, QueueStatus::Waiting);
        assert_eq!(view.position, Some(7));
        assert_eq!(view.buyers_ahead, Some(6));
        assert_eq!(
            view.estimated_wait_seconds,
            Some(4),
            "7 buyers at 2 a second"
        );
        assert_eq!(board.view(2, 0), None);
    }

    #[test]
    fn an_early_arrival_waits_for_the_draw_and_a_pass_runs_out() {
        let board = QueueBoard::new();
        board.set_state(true, false, 60, 1_000);
        board.put(1, spot(None));
        let view = board.view(1, 0).unwrap();
        assert_eq!((view.position, view.draw_at_ms), (None, Some(1_000)));
        board.update(1, |s| {
            s.rank = Some(0);
            s.admitted_at_ms = Some(2_000);
            s.pass_expires_at_ms = Some(3_000);
        });
        assert_eq!(
            board.view(1, 2_000).unwrap().position,
            None,
            "the draw is not durable yet"
        );
        board.set_drawn(true);
        assert_eq!(
            board.view(1, 2_000).unwrap().status,
            QueueStatus::Waiting,
            "nor the pass"
        );
        board.set_admitted(1);
        assert_eq!(board.view(1, 2_999).unwrap().status, QueueStatus::Admitted);
        assert_eq!(board.view(1, 3_000).unwrap().status, QueueStatus::Expired);
    }

    #[test]
    fn a_sold_out_event_tells_the_line_so() {
        let board = QueueBoard::new();
        board.put(1, spot(Some(0)));
        board.set_drawn(true);
        assert!(board.set_state(true, true, 60, 0));
        assert!(!board.set_state(true, true, 60, 0), "nothing changed");
        assert_eq!(board.view(1, 0).unwrap().status, QueueStatus::SoldOut);
    }
}
