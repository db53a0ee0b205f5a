//! `GET /events/{id}/inventory/stream`: the event's availability as Server-Sent Events.
//!
//! On connect the subscriber gets the whole durable state (`event: state`) — or, when it
//! reconnects with `Last-Event-ID` and the feed still has what followed, only the messages
//! it missed — then one `event: change` per commit with only what changed. Each message has
//! an `id:` (`epoch-seq`) for the next reconnect; a comment every `STREAM_HEARTBEAT_SECONDS`
//! keeps proxies from closing an idle stream. Only committed state is ever sent (the
//! engine's `feed` module).
//!
//! Each subscriber has a forwarder task and a bounded buffer (`STREAM_BUFFER_MESSAGES`)
//! between the event's broadcast and its socket. When the buffer is full the subscriber is
//! too slow: its connection is dropped (its `EventSource` reconnects and resumes from its
//! last id) — never allowed to grow memory, and never able to slow the actor or the other
//! subscribers, which only ever wait for the broadcast.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use boxoffice_engine::feed::{FeedMessage, Position};
use boxoffice_engine::types::EventStatus;
use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::access;
use crate::auth::MaybeAuthUser;
use crate::connections::ConnectionCloser;
use crate::error::ApiError;
use crate::extract::Path;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/events/{id}/inventory/stream", get(stream))
}

/// How long a client should wait before reconnecting (the SSE `retry:` field).
const RECONNECT_AFTER: Duration = Duration::from_secs(2);

/// Counts a subscriber for as long as its forwarder runs.
struct Subscribed {
    state: AppState,
    event_id: i64,
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        metrics::gauge!("boxoffice_stream_subscribers").decrement(1.0);
        self.state.engine.unsubscribed(self.event_id);
    }
}

/// Live availability as Server-Sent Events. `event: state` carries the whole state
/// (`LiveState`: counts and every seat of seated sections), `event: change` what changed
/// since the previous message (`LiveChange`: the event's totals, changed section counts,
/// seats whose status changed grouped by new status — `{"RESERVED": [ids], "BOOKED": [ids],
/// "AVAILABLE": [ids]}` — and new sections). A commit after a quiet spell is sent at once;
/// commits that come faster are sent together, one message per `STREAM_INTERVAL_MS`.
/// Reconnect with `Last-Event-ID` to get what was missed.
#[utoipa::path(get, path = "/events/{id}/inventory/stream", tag = "sections",
    params(("id" = i64, Path),
           ("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last message received (`epoch-seq`); the stream resumes after it when it can, and starts with the whole state otherwise.")),
    responses((status = 200, content_type = "text/event-stream", body = String,
                 description = "`event: state` then `event: change` messages, each with an `id:`; comments as heartbeats"),
              (status = 404, description = "EVENT_NOT_FOUND"),
              (status = 503, description = "OVERLOADED (too many subscribers on this node), SHUTTING_DOWN")))]
pub async fn stream(
    State(state): State<AppState>,
    MaybeAuthUser(auth): MaybeAuthUser,
    Path(id): Path<i64>,
    headers: HeaderMap,
    closer: Option<Extension<ConnectionCloser>>,
) -> Result<Response, ApiError> {
    let snapshot = state.engine.snapshot(id).await?;
    if snapshot.status == EventStatus::Draft {
        access::event(&state.pool, id, auth.as_ref()).await?;
    }
    let Ok(slot) = state.stream_slots.clone().try_acquire_owned() else {
        metrics::counter!("boxoffice_stream_subscribers_refused_total").increment(1);
        return Err(ApiError::Unavailable {
            code: "OVERLOADED",
            message: "this node has as many stream subscribers as it allows; retry".into(),
        });
    };
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(Position::parse);
    let subscription = state.engine.subscribe(id, last).await?;
    metrics::counter!("boxoffice_stream_subscriptions_total",
        "start" => if last.is_some() && subscription.backlog.first().is_some_and(|m| m.kind == boxoffice_engine::feed::MessageKind::Change) { "resumed" } else { "state" })
    .increment(1);
    metrics::gauge!("boxoffice_stream_subscribers").increment(1.0);
    let subscribed = Subscribed {
        state: state.clone(),
        event_id: id,
    };

    // The buffer holds the backlog and then up to STREAM_BUFFER_MESSAGES more.
    let buffer = state.settings.stream_buffer_messages.max(1);
    let (tx, mut rx) = mpsc::channel::<Arc<FeedMessage>>(buffer + subscription.backlog.len());
    let mut position = subscription.position;
    for message in subscription.backlog {
        tx.try_send(message)
            .expect("the buffer has room for the backlog");
    }
    let mut receiver = subscription.receiver;
    let stopping = state.stopping.clone();
    let closer = closer.map(|Extension(c)| c);
    tokio::spawn(async move {
        let _subscribed = subscribed;
        let _slot = slot;
        let slow = loop {
            let message = tokio::select! {
                biased;
                () = stopping.cancelled() => break false,
                () = tx.closed() => break false,
                received = receiver.recv() => match received {
                    Ok(message) => message,
                    // The broadcast ring lapped this forwarder: as slow as slow gets.
                    Err(RecvError::Lagged(_)) => break true,
                    Err(RecvError::Closed) => break false,
                },
            };
            if !position.accepts(&message) {
                continue;
            }
            position = message.at;
            match tx.try_send(message) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => break true,
                Err(TrySendError::Closed(_)) => break false,
            }
        };
        if slow {
            metrics::counter!("boxoffice_stream_subscribers_dropped_total", "reason" => "slow")
                .increment(1);
            tracing::debug!(
                event_id = id,
                "stream subscriber too slow; dropping its connection"
            );
            // Ending the body is not enough: a client that does not read is never polled.
            if let Some(closer) = closer {
                closer.close();
            }
        }
    });

    // The body: a `retry:` line, then each message's frame as the feed built it — the same
    // bytes for every subscriber, never copied or formatted per connection — and a comment
    // when the stream has been quiet for a heartbeat.
    let heartbeat = Duration::from_secs(state.settings.stream_heartbeat_seconds.max(1));
    let frames = async_stream::stream! {
        let sent = metrics::counter!("boxoffice_stream_messages_sent_total");
        yield Ok::<_, Infallible>(Bytes::from(format!(
            "retry: {}\n\n",
            RECONNECT_AFTER.as_millis()
        )));
        let mut quiet = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        quiet.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                message = rx.recv() => {
                    let Some(message) = message else { break };
                    sent.increment(1);
                    quiet.reset();
                    yield Ok(message.frame());
                }
                _ = quiet.tick() => yield Ok(Bytes::from_static(b": heartbeat\n\n")),
            }
        }
    };
    let mut response = Body::from_stream(frames).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies that buffer responses (nginx) would hold the stream back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}
