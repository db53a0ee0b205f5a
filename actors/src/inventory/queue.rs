//! The inventory's side of the waiting room: what the line needs to know of the sale
//! (its rules, whether it opened, what is left), and the operations the actor calls.

use super::{Change, Decision, Inventory};
use crate::types::{EventStatus, UserId};
use crate::waiting_room::{QueueBoard, QueueView, Sale, Visibility};

impl Inventory {
    /// The sale as the waiting room sees it at `now_ms`.
    fn sale(&self, now_ms: i64) -> Sale {
        let published = matches!(
            self.rules.status,
            EventStatus::OnSale | EventStatus::SoldOut
        );
        Sale {
            rules: self.rules.waiting_room,
            opened: published && now_ms >= self.rules.sale_start_ms,
            published,
            available: match self.rules.status {
                EventStatus::OnSale => self.available_total(),
                _ => 0,
            },
            sold_out: self.rules.status == EventStatus::SoldOut,
            sale_start_ms: self.rules.sale_start_ms,
        }
    }

    /// A buyer joins the waiting room (or hears where they already stand).
    pub fn join_queue(&mut self, user_id: UserId, now_ms: i64) -> Decision<QueueView> {
        let sale = self.sale(now_ms);
        let (view, change) = self.queue.join(user_id, now_ms, &sale)?;
        Ok((view, change.into_iter().map(Change::Queue).collect()))
    }

    /// Moves the waiting room to `now_ms` (the draw, admissions, passes run out). The actor
    /// calls it before every message, as it expires holds.
    pub fn advance_queue(&mut self, now_ms: i64) -> Vec<Change> {
        // Every message of every event comes through here: an event without a waiting
        // room pays one branch, not a sum over its sections.
        if !self.rules.waiting_room.enabled {
            self.queue.pause();
            return Vec::new();
        }
        let sale = self.sale(now_ms);
        let changes = self.queue.advance(now_ms, &sale);
        if !changes.is_empty() {
            self.version += 1;
        }
        changes.into_iter().map(Change::Queue).collect()
    }

    /// What to show the waiting room's readers once the batch now filling commits.
    pub fn queue_visibility(&mut self) -> Option<Visibility> {
        self.queue.visibility()
    }

    /// When the waiting room next needs the actor without a request.
    pub fn next_queue_wakeup_ms(&self, now_ms: i64) -> Option<i64> {
        if !self.rules.waiting_room.enabled {
            return None;
        }
        self.queue.next_wakeup_ms(now_ms, &self.sale(now_ms))
    }

    /// Shows the waiting room's rules and the event's sold-out state to readers.
    pub fn publish_queue(&self, now_ms: i64) {
        self.queue.publish(&self.sale(now_ms));
    }

    /// Whether the waiting room has nothing to do without a request.
    pub fn queue_is_idle(&self) -> bool {
        !self.rules.waiting_room.enabled || self.queue.is_idle()
    }

    /// The board readers see the waiting room on.
    pub fn queue_board(&self) -> std::sync::Arc<QueueBoard> {
        self.queue.board()
    }

    /// Buyers waiting in line (for the node-wide gauge).
    pub fn queue_waiting(&self) -> usize {
        self.queue.waiting()
    }

    /// Stops the board being read as current (the actor stopped).
    pub fn retire_queue(&self) {
        self.queue.retire();
    }
}
