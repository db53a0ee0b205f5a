//! How a message becomes a durable decision.
//!
//! 1. Every message first expires the holds that are due, so expiry never depends on the
//!    timer alone and a request never sees a hold that should be gone.
//! 2. The inventory decides. A refusal is answered at once: nothing changed.
//! 3. Otherwise the decision's row changes go into the open batch and the reply is parked
//!    there. If no flush is running, the batch is handed to a flush task at once (so a lone
//!    request waits for one commit, not for a timer); if one is running, the batch keeps
//!    filling until it returns. That is group commit: batches grow with load.
//! 4. The flush task commits, answers every parked reply, and tells the actor it is done.
//!    If it fails, the actor answers every reply still waiting with an error and fails
//!    itself; the supervisor rebuilds it from PostgreSQL.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::messages::{EventMessage, Reply};
use crate::context::EngineContext;
use crate::error::EngineError;
use crate::feed::Feed;
use crate::ids;
use crate::inventory::{Change, Decision, Inventory, InventorySnapshot, SectionSnapshot};
use crate::types::{
    BookingOutcome, ConfirmRequest, DiscountView, HoldOutcome, HoldRequest, NewDiscount, NewSection,
};
use crate::write_behind::{flush, Batch};

/// A pending `send_after` timer.
type TimerHandle = JoinHandle<Result<(), ractor::MessagingErr<EventMessage>>>;

/// The event actor. Stateless itself; its [`EventState`] holds the inventory.
pub struct EventActor;

/// What an event actor starts from: an inventory freshly loaded from PostgreSQL.
pub struct EventArgs {
    /// Engine-wide resources: pool, id allocators, configuration, clock.
    pub(crate) ctx: Arc<EngineContext>,
    /// The loaded inventory.
    pub inventory: Inventory,
    /// The fencing epoch taken when loading; every flush checks it.
    pub epoch: i64,
    /// Changes found while loading (expired holds, corrected counts), written first.
    pub pending: Vec<Change>,
    /// Where snapshots are published for readers.
    pub snapshot: Arc<ArcSwap<InventorySnapshot>>,
    /// The event's live feed, told of every commit.
    pub feed: Arc<Feed>,
}

/// The state of one event actor.
pub struct EventState {
    /// Engine-wide resources.
    ctx: Arc<EngineContext>,
    /// The event's inventory: the one place its seats are decided.
    inventory: Inventory,
    /// The fencing epoch this actor writes under.
    epoch: i64,
    /// Published snapshots, read without a mailbox round trip.
    snapshot: Arc<ArcSwap<InventorySnapshot>>,
    /// The inventory version last published.
    published_version: u64,
    /// The event's live feed: every committed batch is shown to subscribers.
    feed: Arc<Feed>,
    /// The batch filling now.
    open: Batch,
    /// Full batches waiting for the flush in flight to finish, oldest first.
    sealed: VecDeque<Batch>,
    /// Whether a flush task is running. At most one runs per event, because each batch's
    /// decisions were made on top of the previous batch's.
    flushing: bool,
    /// The pending expiry timer and the expiry time it was set for.
    expiry_timer: Option<(i64, TimerHandle)>,
    /// The periodic idle check.
    idle_timer: Option<JoinHandle<()>>,
    /// When the last request arrived.
    last_request: Instant,
    /// Who waits for this actor to flush everything and stop.
    drain_waiters: Vec<RpcReplyPort<()>>,
    /// This event's (available, held, booked) as last added to the node-wide gauges.
    reported_seats: (u32, u32, u32),
    /// The node-wide seat gauges (available, held, booked), registered once: moved after
    /// nearly every decision, and `gauge!` with a label builds and looks up its key each call.
    seat_gauges: [metrics::Gauge; 3],
    /// This event's buyers in line as last added to the node-wide gauge.
    reported_waiting: usize,
}

impl Actor for EventActor {
    type Msg = EventMessage;
    type State = EventState;
    type Arguments = EventArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<EventMessage>,
        args: EventArgs,
    ) -> Result<EventState, ActorProcessingErr> {
        let mut state = EventState {
            ctx: args.ctx,
            inventory: args.inventory,
            epoch: args.epoch,
            snapshot: args.snapshot,
            published_version: u64::MAX,
            feed: args.feed,
            open: Batch::default(),
            sealed: VecDeque::new(),
            flushing: false,
            expiry_timer: None,
            idle_timer: None,
            last_request: Instant::now(),
            drain_waiters: Vec::new(),
            reported_seats: (0, 0, 0),
            seat_gauges: ["available", "held", "booked"]
                .map(|state| metrics::gauge!("boxoffice_inventory_seats", "state" => state)),
            reported_waiting: 0,
        };
        state.open.add(args.pending);
        state.publish(true);
        Ok(state)
    }

    async fn post_start(
        &self,
        myself: ActorRef<EventMessage>,
        state: &mut EventState,
    ) -> Result<(), ActorProcessingErr> {
        let period = state.ctx.config.idle_check_period();
        state.idle_timer = Some(myself.send_interval(period, || EventMessage::IdleCheck));
        state.after_message(&myself);
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<EventMessage>,
        message: EventMessage,
        state: &mut EventState,
    ) -> Result<(), ActorProcessingErr> {
        let now_ms = state.now_ms();
        state.expire(now_ms);
        let queue_changes = state.inventory.advance_queue(now_ms);
        state.open.add(queue_changes);
        if let Some(visibility) = state.inventory.queue_visibility() {
            // The draw and admissions are shown to buyers once durable, never before.
            state.open.park(Box::new(move |outcome| {
                if outcome.is_ok() {
                    visibility.show();
                }
            }));
        }
        if message.is_request() {
            state.last_request = Instant::now();
        }
        match message {
            EventMessage::Hold(request, reply) => state.on_hold(request, reply, now_ms).await,
            EventMessage::Release(requester, hold_id, reply) => {
                let decision = state.inventory.release_hold(requester, hold_id, now_ms);
                state.decide(decision, reply);
            }
            EventMessage::Confirm(request, reply) => state.on_confirm(request, reply, now_ms).await,
            EventMessage::CancelBooking(requester, booking_id, reply) => {
                let decision = state
                    .inventory
                    .cancel_booking(requester, booking_id, now_ms);
                state.decide(decision, reply);
            }
            EventMessage::AddSection(new, reply) => state.on_add_section(new, reply).await,
            EventMessage::AddDiscount(new, reply) => {
                state.on_add_discount(new, reply, now_ms).await
            }
            EventMessage::UpdateSettings(update, reply) => {
                let decision = state.inventory.update_settings(update);
                state.decide(decision, reply);
            }
            EventMessage::JoinQueue(user_id, reply) => {
                let decision = state.inventory.join_queue(user_id, now_ms);
                state.decide(decision, reply);
            }
            EventMessage::Sync(reply) => state.decide(Ok(((), Vec::new())), reply),
            EventMessage::Expire => state.expiry_timer = None,
            EventMessage::IdleCheck => {
                if state.is_idle() {
                    myself.stop(Some("idle".into()));
                    return Ok(());
                }
            }
            EventMessage::FlushDone(Ok(())) => state.flushing = false,
            EventMessage::FlushDone(Err(error)) => {
                state.fail_everything_waiting();
                return Err(format!("flush failed: {error}").into());
            }
            EventMessage::Drain(reply) => state.drain_waiters.push(reply),
        }
        state.after_message(&myself);
        if !state.drain_waiters.is_empty() && state.is_quiet() {
            for waiter in state.drain_waiters.drain(..) {
                let _ = waiter.send(());
            }
            myself.stop(Some("drained".into()));
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<EventMessage>,
        state: &mut EventState,
    ) -> Result<(), ActorProcessingErr> {
        state.cancel_timers();
        Ok(())
    }
}

/// The error a client gets when its decision could not be made durable. The cause is logged,
/// never sent: it may name tables, hosts or constraints.
fn unavailable() -> EngineError {
    EngineError::Unavailable(
        "the decision could not be recorded; retry with the same Idempotency-Key".into(),
    )
}

/// An id from a prefetching allocator, waiting for the database only when the prefetch ran
/// dry. `None` (logged) when the database could not be reached.
async fn next_id(ids: &Arc<ids::IdAllocator>) -> Option<i64> {
    if let Some(id) = ids.try_next() {
        return Some(id);
    }
    match ids.next().await {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::error!(error = %e, "could not allocate an id");
            None
        }
    }
}

impl EventState {
    /// A hold: an id from the prefetched block, then the inventory decides.
    async fn on_hold(&mut self, request: HoldRequest, reply: Reply<HoldOutcome>, now_ms: i64) {
        let Some(hold_id) = next_id(&self.ctx.hold_ids).await else {
            let _ = reply.send(Err(unavailable()));
            return;
        };
        let decision = self.inventory.place_hold(request, hold_id, now_ms);
        self.decide(decision, reply);
    }

    /// A booking: an id and an unguessable reference, then the inventory decides.
    async fn on_confirm(
        &mut self,
        request: ConfirmRequest,
        reply: Reply<BookingOutcome>,
        now_ms: i64,
    ) {
        let Some(booking_id) = next_id(&self.ctx.booking_ids).await else {
            let _ = reply.send(Err(unavailable()));
            return;
        };
        let reference = ids::booking_reference();
        let decision = self
            .inventory
            .confirm(request, booking_id, reference, now_ms);
        self.decide(decision, reply);
    }

    /// A new section: checked first, so that ids are only fetched for a section that will be
    /// made; then one id for it and one per seat.
    async fn on_add_section(&mut self, new: NewSection, reply: Reply<SectionSnapshot>) {
        if let Err(refusal) = self.inventory.validate_section(&new) {
            let _ = reply.send(Err(refusal.into()));
            return;
        }
        let seats = Inventory::seats_needed(&new.spec) as usize;
        let pool = self.ctx.pool.clone();
        let allocated = self
            .ctx
            .io
            .run(async move {
                let section = ids::fetch(&pool, "event_sections_id_seq", 1).await?;
                let seat_ids = ids::fetch(&pool, "seats_id_seq", seats).await?;
                Ok::<_, sqlx::Error>((section[0], seat_ids))
            })
            .await;
        match allocated {
            Ok((section_id, seat_ids)) => {
                let decision = self.inventory.add_section(section_id, new, &seat_ids);
                self.decide(decision, reply);
            }
            Err(e) => {
                tracing::error!(error = %e, "could not allocate section ids");
                let _ = reply.send(Err(unavailable()));
            }
        }
    }

    /// A new discount code: an id, then the inventory decides.
    async fn on_add_discount(&mut self, new: NewDiscount, reply: Reply<DiscountView>, now_ms: i64) {
        let pool = self.ctx.pool.clone();
        let fetched = self
            .ctx
            .io
            .run(async move { ids::fetch(&pool, "discounts_id_seq", 1).await })
            .await;
        match fetched {
            Ok(id) => {
                let decision = self.inventory.add_discount(id[0], new, now_ms);
                self.decide(decision, reply);
            }
            Err(e) => {
                tracing::error!(error = %e, "could not allocate a discount id");
                let _ = reply.send(Err(unavailable()));
            }
        }
    }

    /// No request for the idle timeout, no hold to expire, nothing to write, nobody waiting.
    fn is_idle(&self) -> bool {
        self.last_request.elapsed() >= self.ctx.config.idle_timeout()
            && self.inventory.active_holds() == 0
            && self.inventory.queue_is_idle()
            && self.is_quiet()
            && self.drain_waiters.is_empty()
    }

    /// After a failed flush: every decision still waiting was made on top of the batch that
    /// failed, so none of them may be acknowledged. Each gets an error; the actor then fails
    /// and the supervisor reloads the truth from PostgreSQL.
    fn fail_everything_waiting(&mut self) {
        self.flushing = false;
        for batch in self.sealed.drain(..) {
            batch.answer(Err(unavailable()));
        }
        std::mem::take(&mut self.open).answer(Err(unavailable()));
        for waiter in self.drain_waiters.drain(..) {
            let _ = waiter.send(());
        }
    }

    /// The event's now: the node's clock, never before the moment the event's holds were
    /// last expired through ([`Inventory::now_ms`]).
    fn now_ms(&self) -> i64 {
        self.inventory.now_ms(self.ctx.clock.now_ms())
    }

    /// Expires due holds; their changes join the open batch with no reply attached.
    fn expire(&mut self, now_ms: i64) {
        let (expired, changes) = self.inventory.expire_due(now_ms);
        if expired > 0 {
            metrics::counter!("boxoffice_holds_expired_total").increment(expired as u64);
            self.open.add(changes);
        }
    }

    /// Answers a refusal at once, or parks the reply with the decision's changes.
    fn decide<T: Send + 'static>(&mut self, decision: Decision<T>, mut reply: Reply<T>) {
        match decision {
            Err(refusal) => {
                let _ = reply.send(Err(refusal.into()));
            }
            Ok((value, changes)) => {
                self.open.add(changes);
                self.open.keep_slot(reply.take_slot());
                self.open.park(Box::new(move |outcome| {
                    let _ = reply.send(outcome.map(|()| value));
                }));
                if self.open.change_count >= self.ctx.config.max_batch_changes {
                    self.sealed.push_back(std::mem::take(&mut self.open));
                }
            }
        }
    }

    /// Nothing is waiting to be written and no flush is running.
    fn is_quiet(&self) -> bool {
        !self.flushing && self.open.is_empty() && self.sealed.is_empty()
    }

    /// Common tail of every message: flush if possible, rearm expiry, publish.
    fn after_message(&mut self, myself: &ActorRef<EventMessage>) {
        self.maybe_flush(myself);
        self.schedule_expiry(myself);
        self.publish(false);
    }

    /// Starts a flush of the oldest waiting batch unless one is running.
    fn maybe_flush(&mut self, myself: &ActorRef<EventMessage>) {
        while !self.flushing {
            let batch = match self.sealed.pop_front() {
                Some(batch) => batch,
                None if !self.open.is_empty() => std::mem::take(&mut self.open),
                None => return,
            };
            if batch.writes.is_empty() {
                // Only replays and barriers: everything they wait for is already durable.
                batch.answer(Ok(()));
                continue;
            }
            // Seat maps are refreshed once per commit, before its replies go out, so that a
            // buyer who was told "yes" sees their seats taken.
            self.publish(true);
            self.start_flush(batch, myself.clone());
        }
    }

    fn start_flush(&mut self, batch: Batch, myself: ActorRef<EventMessage>) {
        self.flushing = true;
        let pool = self.ctx.pool.clone();
        let timeout = self.ctx.config.flush_timeout();
        let (event_id, epoch) = (self.inventory.event_id(), self.epoch);
        let feed = self.feed.clone();
        let callers = self.ctx.callers.clone();
        self.ctx.io.spawn(async move {
            let started = std::time::Instant::now();
            let written =
                tokio::time::timeout(timeout, flush::write(&pool, event_id, epoch, &batch.writes));
            let result = match written.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("flush timed out after {timeout:?}")),
            };
            let elapsed = started.elapsed();
            metrics::histogram!("boxoffice_flush_duration_seconds").record(elapsed.as_secs_f64());
            metrics::histogram!("boxoffice_flush_batch_changes").record(batch.change_count as f64);
            metrics::histogram!("boxoffice_flush_batch_requests").record(batch.parked.len() as f64);
            match &result {
                Ok(()) => {
                    metrics::counter!("boxoffice_flush_rows_total")
                        .increment(batch.writes.rows() as u64);
                    // Durable now: subscribers may see it. Queued before the replies go out,
                    // so a buyer told "yes" finds it on every open seat map.
                    feed.committed(epoch, &batch.writes);
                }
                Err(error) => {
                    metrics::counter!("boxoffice_flush_failures_total").increment(1);
                    tracing::error!(event_id, error = %error, "write-behind flush failed");
                }
            }
            // Decided: the event's slots are free for new requests now, not once the
            // answers below have been delivered.
            let mut batch = batch;
            batch.slots.clear();
            let committed = result.is_ok();
            // The answers are sent from one task on the callers' runtime rather than from
            // this thread. A wake from outside a runtime's workers joins its shared queue,
            // which busy workers serve one task every few polls; under a flood of
            // connections the callers of a flushed batch waited there ~100 ms (p99) after
            // being answered. Woken from a worker, they join its own queue instead.
            callers.spawn(async move {
                batch.answer(if committed {
                    Ok(())
                } else {
                    Err(unavailable())
                });
            });
            if elapsed > Duration::from_millis(500) {
                tracing::warn!(
                    event_id,
                    elapsed_ms = elapsed.as_millis() as u64,
                    "slow flush"
                );
            }
            // If the actor is gone the flush outlived it; nothing is waiting for this.
            let _ = myself.cast(EventMessage::FlushDone(result));
        });
    }

    /// Arms the expiry timer for the earliest hold or the waiting room's next step (the
    /// draw, an admission tick, a pass running out), unless it is armed early enough already.
    fn schedule_expiry(&mut self, myself: &ActorRef<EventMessage>) {
        let now_ms = self.now_ms();
        let next_ms = match (
            self.inventory.next_expiry_ms(),
            self.inventory.next_queue_wakeup_ms(now_ms),
        ) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return,
        };
        if self
            .expiry_timer
            .as_ref()
            .is_some_and(|(at, _)| *at <= next_ms)
        {
            return;
        }
        if let Some((_, timer)) = self.expiry_timer.take() {
            timer.abort();
        }
        // One millisecond late rather than early: the clock reads whole milliseconds.
        let delay_ms = (next_ms - now_ms).max(0) as u64 + 1;
        let timer = myself.send_after(Duration::from_millis(delay_ms), || EventMessage::Expire);
        self.expiry_timer = Some((next_ms, timer));
    }

    /// Publishes a snapshot if anything changed (or seat maps are due for a refresh).
    fn publish(&mut self, refresh_seats: bool) {
        if !refresh_seats && self.inventory.version() == self.published_version {
            return;
        }
        self.inventory.publish_queue(self.now_ms());
        self.report_queue(self.inventory.queue_waiting());
        let snapshot = self.inventory.snapshot(refresh_seats);
        self.report_seats((snapshot.available, snapshot.held, snapshot.booked));
        self.published_version = snapshot.version;
        self.snapshot.store(Arc::new(snapshot));
    }

    /// Moves the node-wide seat gauges (summed over live actors, no event label) by this
    /// event's change since it last reported.
    fn report_seats(&mut self, now: (u32, u32, u32)) {
        let before = self.reported_seats;
        let moves = [(before.0, now.0), (before.1, now.1), (before.2, now.2)];
        for (gauge, (old, new)) in self.seat_gauges.iter().zip(moves) {
            if old != new {
                gauge.increment(f64::from(new) - f64::from(old));
            }
        }
        self.reported_seats = now;
    }

    /// Moves the node-wide waiting-room gauge by this event's change since it last reported.
    fn report_queue(&mut self, waiting: usize) {
        if waiting != self.reported_waiting {
            metrics::gauge!("boxoffice_queue_waiting")
                .increment(waiting as f64 - self.reported_waiting as f64);
            self.reported_waiting = waiting;
        }
    }

    fn cancel_timers(&mut self) {
        if let Some((_, timer)) = self.expiry_timer.take() {
            timer.abort();
        }
        if let Some(timer) = self.idle_timer.take() {
            timer.abort();
        }
    }
}

impl Drop for EventState {
    fn drop(&mut self) {
        // post_stop does not run when an actor fails; make sure no timer outlives it, and
        // take this event out of the node-wide gauges.
        self.cancel_timers();
        self.report_seats((0, 0, 0));
        self.report_queue(0);
        // Readers holding this actor's board move on to the next actor's.
        self.inventory.retire_queue();
    }
}
