//! The live feed of each event: what buyers' seat maps are told after every commit.
//!
//! - The flush task calls [`Feed::committed`] on the I/O thread right after COMMIT, with the
//!   batch's coalesced writes: the feed folds them into its pending [`view::Delta`] and wakes
//!   its fan-out task (one wake-up). Nothing else happens on the I/O thread, and nothing on
//!   the actor's turn.
//! - The fan-out task, on the server's runtime, moves the durable picture
//!   ([`view::LiveView`]) by the pending delta, serializes the difference once for every
//!   subscriber (as a ready Server-Sent Events frame) and broadcasts it. It then rests
//!   ([`Pace`]): a commit after a quiet spell is shown at once, while commits that come
//!   faster are shown together, one message per rest (Ably and Pusher call it conflation).
//!   Each subscriber costs a wake-up and a write per *message*, so the rest grows with the
//!   node's audience: at most `stream_deliveries_per_second` writes to subscribers a second
//!   whatever the commit rate — what lets ten thousand seat maps follow a sellout that
//!   commits a hundred times a second on two cores.
//! - A feed with nothing to say broadcasts a heartbeat now and then, so that proxies keep
//!   its streams open: one per feed, not a timer per subscriber.
//! - A subscriber gets, under the feed's lock, either the messages it missed (it names the
//!   last one it saw; the feed keeps the last [`RECENT_MESSAGES_MAX`]) or the whole state,
//!   then a receiver for what follows. A message can reach it twice (once in the state, once
//!   from the receiver): [`Position::accepts`] tells which to skip.
//! - Every (re)load of the event starts a new epoch (the fencing epoch of the load) with a
//!   whole-state message, so a subscriber from before a crash is brought up to date without
//!   reconnecting.
//!
//! Memory is bounded per event, not per subscriber: the recent messages, the broadcast ring
//! and one cached whole state. How far one subscriber may fall behind is the server's
//! decision (its own bounded buffer).

pub mod view;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use tokio::sync::{broadcast, Notify};

use crate::inventory::InventorySnapshot;
use crate::types::EventId;
use crate::write_behind::Writes;
use view::{Delta, LiveView};

/// Messages kept for subscribers that reconnect with the id of the last one they saw.
pub const RECENT_MESSAGES_MAX: usize = 256;
/// Messages the broadcast ring holds for a subscriber's forwarder that fell behind.
pub const BROADCAST_RING_MESSAGES: usize = 1024;
/// Messages waiting for the fan-out task; beyond it they are replaced by one whole state.
const UNSENT_MESSAGES_MAX: usize = 1024;

/// What a message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// The whole state: replaces whatever the subscriber had.
    State,
    /// What changed since the previous message.
    Change,
    /// Nothing: a comment that keeps idle connections open.
    Heartbeat,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::State => "state",
            MessageKind::Change => "change",
            MessageKind::Heartbeat => "heartbeat",
        }
    }
}

/// How often a feed may send: its rest after a message, and its heartbeat.
#[derive(Clone, Debug)]
pub struct Pace {
    /// The least rest between two messages.
    pub interval: Duration,
    /// Writes to subscribers per second the node allows, across its feeds.
    pub deliveries_per_second: u64,
    /// A quiet feed's heartbeat.
    pub heartbeat: Duration,
    /// Subscribers of every feed of the node.
    subscribers: Arc<AtomicU64>,
}

impl Pace {
    pub fn of(config: &crate::config::EngineConfig) -> Pace {
        Pace {
            interval: Duration::from_millis(config.stream_interval_ms),
            deliveries_per_second: config.stream_deliveries_per_second.max(1),
            heartbeat: Duration::from_secs(config.stream_heartbeat_seconds.max(1)),
            subscribers: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The rest after a message: the interval, or longer when the node has so many
    /// subscribers that a message to each every interval would exceed its deliveries.
    pub fn rest(&self) -> Duration {
        let subscribers = self.subscribers.load(Ordering::Relaxed);
        let budgeted =
            Duration::from_secs_f64(subscribers as f64 / self.deliveries_per_second as f64);
        self.interval.max(budgeted)
    }
}

/// Where a message stands in an event's feed: the epoch of the load it follows, and its
/// number within it (0 is the state at load).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub epoch: i64,
    pub seq: u64,
}

impl Position {
    /// As an SSE `id`: `epoch-seq`.
    pub fn id(self) -> String {
        format!("{}-{}", self.epoch, self.seq)
    }

    /// Reads an SSE `Last-Event-ID`.
    pub fn parse(id: &str) -> Option<Position> {
        let (epoch, seq) = id.trim().split_once('-')?;
        Some(Position {
            epoch: epoch.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// Whether a subscriber standing here should apply `message`: a change only if it is the
    /// next in the same epoch; a whole state if it is newer; a heartbeat never (it carries
    /// nothing, and moves no one).
    pub fn accepts(self, message: &FeedMessage) -> bool {
        match message.kind {
            MessageKind::Change => message.at.epoch == self.epoch && message.at.seq > self.seq,
            MessageKind::State => message.at > self,
            MessageKind::Heartbeat => false,
        }
    }
}

/// One message, serialized once for every subscriber.
#[derive(Debug)]
pub struct FeedMessage {
    pub at: Position,
    pub kind: MessageKind,
    /// The message as a Server-Sent Events frame (`id:`, `event:` and `data:` lines and the
    /// blank line that ends it), shared by every subscriber's socket without a copy.
    frame: Bytes,
    /// Where the JSON sits in `frame` (empty for a heartbeat).
    data_at: std::ops::Range<usize>,
}

impl FeedMessage {
    fn heartbeat(at: Position) -> FeedMessage {
        FeedMessage {
            at,
            kind: MessageKind::Heartbeat,
            frame: Bytes::from_static(b": heartbeat\n\n"),
            data_at: 0..0,
        }
    }

    fn new(at: Position, kind: MessageKind, data: &impl serde::Serialize) -> FeedMessage {
        let mut frame = format!("id: {}\nevent: {}\ndata: ", at.id(), kind.as_str()).into_bytes();
        let start = frame.len();
        // Compact JSON has no line breaks, so the data is one `data:` line.
        serde_json::to_writer(&mut frame, data).expect("serializable");
        let end = frame.len();
        frame.extend_from_slice(b"\n\n");
        FeedMessage {
            at,
            kind,
            frame: Bytes::from(frame),
            data_at: start..end,
        }
    }

    /// JSON: a [`view::LiveState`] or a [`view::LiveChange`].
    pub fn data(&self) -> &str {
        std::str::from_utf8(&self.frame[self.data_at.clone()]).expect("JSON is UTF-8")
    }

    /// The whole Server-Sent Events frame, ready to write.
    pub fn frame(&self) -> Bytes {
        self.frame.clone()
    }
}

/// What a new subscriber starts from.
pub struct Subscription {
    /// To send first, in order: the messages it missed, or one whole state.
    pub backlog: Vec<Arc<FeedMessage>>,
    /// Where the backlog leaves it.
    pub position: Position,
    /// Everything after, possibly starting with messages already in the backlog.
    pub receiver: broadcast::Receiver<Arc<FeedMessage>>,
    /// How far behind the broadcast the subscriber is, for whoever watches for slow ones.
    pub lag: Arc<Lag>,
}

/// How far a subscriber is behind its feed: messages broadcast since it subscribed, less
/// those it took from its receiver. Read from outside the subscriber: a subscriber whose
/// client stopped reading is never polled, so it cannot notice by itself that it fell
/// behind.
#[derive(Debug)]
pub struct Lag {
    /// The feed's count of messages handed to the broadcast.
    broadcast: Arc<AtomicU64>,
    /// That count when the subscriber's receiver was made.
    start: u64,
    /// Messages the subscriber took from its receiver.
    received: AtomicU64,
    /// The node's count of subscribers, which this one leaves when dropped.
    subscribers: Arc<AtomicU64>,
}

impl Drop for Lag {
    fn drop(&mut self) {
        self.subscribers.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Lag {
    /// The subscriber took one message from its receiver.
    pub fn received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages broadcast that the subscriber has not taken yet. (A receiver made while a
    /// broadcast was under way may also get messages counted before it: never negative.)
    pub fn behind(&self) -> u64 {
        let sent = self.broadcast.load(Ordering::Relaxed) - self.start;
        sent.saturating_sub(self.received.load(Ordering::Relaxed))
    }
}

/// The feed of one event.
pub struct Feed {
    inner: Mutex<FeedInner>,
    sender: broadcast::Sender<Arc<FeedMessage>>,
    /// Messages handed to `sender` (counted under `inner`'s lock, as they are taken).
    broadcast: Arc<AtomicU64>,
    /// Shared with the fan-out task, which outlives nothing: it stops when the feed is gone.
    wake: Arc<Notify>,
    /// The node's subscriber count, shared by every feed's [`Pace`].
    subscribers: Arc<AtomicU64>,
}

struct FeedInner {
    /// Where the feed stands: the last message made.
    at: Position,
    /// The durable picture as of `at`.
    view: LiveView,
    /// What committed since `at`: durable, not yet shown.
    pending: Delta,
    /// The last messages, oldest first, for reconnecting subscribers.
    recent: VecDeque<Arc<FeedMessage>>,
    /// Messages the fan-out task has not broadcast yet.
    unsent: Vec<Arc<FeedMessage>>,
    /// The whole state at `at`, built when a subscriber first needs it.
    state: Option<Arc<FeedMessage>>,
}

impl FeedInner {
    fn state_message(&mut self) -> Arc<FeedMessage> {
        if let Some(state) = self.state.as_ref().filter(|s| s.at == self.at) {
            return state.clone();
        }
        let state = Arc::new(FeedMessage::new(
            self.at,
            MessageKind::State,
            &self.view.state(),
        ));
        self.state = Some(state.clone());
        state
    }

    fn queue(&mut self, message: Arc<FeedMessage>) {
        if self.unsent.len() >= UNSENT_MESSAGES_MAX {
            // The fan-out task is starved: whoever is behind gets one whole state instead.
            self.unsent.clear();
            let state = self.state_message();
            self.unsent.push(state);
            return;
        }
        self.unsent.push(message);
    }
}

impl Feed {
    fn new(
        epoch: i64,
        snapshot: &InventorySnapshot,
        fanout: &tokio::runtime::Handle,
        pace: Pace,
    ) -> Arc<Feed> {
        let (sender, _) = broadcast::channel(BROADCAST_RING_MESSAGES);
        let feed = Arc::new(Feed {
            inner: Mutex::new(FeedInner {
                at: Position { epoch, seq: 0 },
                view: LiveView::from_snapshot(snapshot),
                pending: Delta::default(),
                recent: VecDeque::new(),
                unsent: Vec::new(),
                state: None,
            }),
            sender,
            broadcast: Arc::new(AtomicU64::new(0)),
            wake: Arc::new(Notify::new()),
            subscribers: pace.subscribers.clone(),
        });
        fanout.spawn(fan_out(Arc::downgrade(&feed), feed.wake.clone(), pace));
        feed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FeedInner> {
        self.inner.lock().expect("feed lock not poisoned")
    }

    /// A new load of the event (a new epoch): subscribers get the whole state again.
    fn reload(&self, epoch: i64, snapshot: &InventorySnapshot) {
        let mut inner = self.lock();
        assert!(epoch > inner.at.epoch, "epochs only grow");
        inner.at = Position { epoch, seq: 0 };
        inner.view = LiveView::from_snapshot(snapshot);
        inner.pending = Delta::default();
        inner.recent.clear();
        inner.unsent.clear();
        let state = inner.state_message();
        inner.recent.push_back(state.clone());
        inner.unsent.push(state);
        drop(inner);
        self.wake.notify_one();
    }

    /// A batch written under `epoch` has committed. Runs on the I/O thread, after COMMIT:
    /// folds the batch into the pending delta and wakes the fan-out task, which shows it.
    pub(crate) fn committed(&self, epoch: i64, writes: &Writes) {
        let mut inner = self.lock();
        if inner.at.epoch != epoch {
            // A flush of a superseded actor cannot commit (the fence); nothing to show.
            return;
        }
        inner.pending.add(writes);
        drop(inner);
        metrics::counter!("boxoffice_stream_changes_total").increment(1);
        self.wake.notify_one();
    }

    /// Moves the picture by everything pending as one message, and hands over what is to be
    /// broadcast, in order.
    fn take_unsent(&self) -> Vec<Arc<FeedMessage>> {
        let mut inner = self.lock();
        let delta = std::mem::take(&mut inner.pending);
        if !delta.is_empty() {
            if let Some(change) = inner.view.apply(delta) {
                inner.at.seq += 1;
                let message = Arc::new(FeedMessage::new(inner.at, MessageKind::Change, &change));
                if inner.recent.len() >= RECENT_MESSAGES_MAX {
                    inner.recent.pop_front();
                }
                inner.recent.push_back(message.clone());
                inner.queue(message);
            }
        }
        let unsent = std::mem::take(&mut inner.unsent);
        self.broadcast
            .fetch_add(unsent.len() as u64, Ordering::Relaxed);
        unsent
    }

    /// The heartbeat of a quiet feed, when anyone listens.
    fn heartbeat(&self) -> Option<Arc<FeedMessage>> {
        if self.sender.receiver_count() == 0 {
            return None;
        }
        let inner = self.lock();
        self.broadcast.fetch_add(1, Ordering::Relaxed);
        Some(Arc::new(FeedMessage::heartbeat(inner.at)))
    }

    /// Subscribes. `last` is the last message the subscriber saw (SSE `Last-Event-ID`):
    /// when the feed still has everything after it, only that is sent; otherwise the whole
    /// state.
    pub fn subscribe(&self, last: Option<Position>) -> Subscription {
        let mut inner = self.lock();
        let receiver = self.sender.subscribe();
        let resumable = last.filter(|last| {
            last.epoch == inner.at.epoch
                && last.seq <= inner.at.seq
                && inner
                    .recent
                    .front()
                    .is_some_and(|first| first.at.seq <= last.seq + 1)
        });
        let backlog = match resumable {
            Some(last) => inner
                .recent
                .iter()
                .filter(|m| m.at.seq > last.seq)
                .cloned()
                .collect(),
            None => vec![inner.state_message()],
        };
        Subscription {
            backlog,
            position: inner.at,
            receiver,
            lag: {
                self.subscribers.fetch_add(1, Ordering::Relaxed);
                Arc::new(Lag {
                    broadcast: self.broadcast.clone(),
                    start: self.broadcast.load(Ordering::Relaxed),
                    received: AtomicU64::new(0),
                    subscribers: self.subscribers.clone(),
                })
            },
        }
    }

    /// Subscribers connected now.
    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        // Lets the fan-out task see the feed is gone and end.
        self.wake.notify_one();
    }
}

/// Broadcasts each feed's messages in order, off the I/O thread and off the actor, resting
/// after each as long as the [`Pace`] says (whatever commits meanwhile is shown together
/// when it wakes), and a heartbeat when the feed has been quiet for one.
async fn fan_out(feed: std::sync::Weak<Feed>, wake: Arc<Notify>, pace: Pace) {
    loop {
        let woken = tokio::time::timeout(pace.heartbeat, wake.notified())
            .await
            .is_ok();
        let Some(feed) = feed.upgrade() else {
            return;
        };
        if !woken {
            if let Some(heartbeat) = feed.heartbeat() {
                let _ = feed.sender.send(heartbeat);
            }
            continue;
        }
        let unsent = feed.take_unsent();
        let sent = !unsent.is_empty();
        for message in unsent {
            // No receiver is not an error: the message stays in `recent` for reconnects.
            let _ = feed.sender.send(message);
        }
        drop(feed);
        let rest = pace.rest();
        if sent && !rest.is_zero() {
            tokio::time::sleep(rest).await;
        }
    }
}

/// Every event's feed. A feed is made when its event is loaded and kept while the event's
/// actor lives or anyone subscribes.
pub struct Feeds {
    feeds: DashMap<EventId, Arc<Feed>>,
    /// The runtime fan-out tasks run on (the server's).
    fanout: tokio::runtime::Handle,
    /// How often feeds send; one subscriber count for the node.
    pace: Pace,
}

impl Feeds {
    pub(crate) fn new(fanout: tokio::runtime::Handle, pace: Pace) -> Feeds {
        Feeds {
            feeds: DashMap::new(),
            fanout,
            pace,
        }
    }

    /// The event was loaded under `epoch`: its feed starts (or starts over) from here.
    pub(crate) fn loaded(&self, epoch: i64, snapshot: &InventorySnapshot) -> Arc<Feed> {
        let event_id = snapshot.event_id;
        let mut entry = self
            .feeds
            .entry(event_id)
            .or_insert_with(|| Feed::new(epoch, snapshot, &self.fanout, self.pace.clone()));
        let current = entry.lock().at.epoch;
        if current < epoch {
            entry.reload(epoch, snapshot);
        } else if current > epoch {
            // Cannot happen (every load takes a newer epoch); should it, start afresh.
            *entry = Feed::new(epoch, snapshot, &self.fanout, self.pace.clone());
        }
        entry.clone()
    }

    /// The feed of a loaded event.
    pub fn get(&self, event_id: EventId) -> Option<Arc<Feed>> {
        self.feeds.get(&event_id).map(|f| f.clone())
    }

    /// Forgets a feed nobody listens to, when its event has no actor (`live` false).
    pub(crate) fn retire_if_unused(&self, event_id: EventId, live: bool) {
        if !live {
            self.feeds.remove_if(&event_id, |_, f| f.subscribers() == 0);
        }
    }

    /// Feeds kept now.
    pub fn len(&self) -> usize {
        self.feeds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.feeds.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_rests_its_interval_until_the_audience_would_pass_the_budget() {
        let config = crate::config::EngineConfig {
            stream_interval_ms: 250,
            stream_deliveries_per_second: 10_000,
            ..Default::default()
        };
        let pace = Pace::of(&config);
        let rest_with = |subscribers: u64| {
            pace.subscribers.store(subscribers, Ordering::Relaxed);
            pace.rest()
        };
        assert_eq!(rest_with(0), Duration::from_millis(250));
        // 2,500 subscribers at four messages a second is the budget exactly.
        assert_eq!(rest_with(2_500), Duration::from_millis(250));
        assert_eq!(rest_with(5_000), Duration::from_millis(500));
        assert_eq!(rest_with(10_000), Duration::from_secs(1));
    }
}
