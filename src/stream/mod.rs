//! `GET /events/{id}/inventory/stream`: the event's availability as Server-Sent Events.
//!
//! On connect the subscriber gets the whole durable state (`event: state`) — or, when it
//! reconnects with `Last-Event-ID` and the feed still has what followed, only the messages
//! it missed — then `event: change` messages with only what changed. Each message has an
//! `id:` (`epoch-seq`) for the next reconnect; a comment when the feed has been quiet for
//! `STREAM_HEARTBEAT_SECONDS` keeps proxies from closing an idle stream. Only committed state is ever sent (the
//! engine's `feed` module).
//!
//! A subscriber costs its connection and nothing more: its response body takes the feed's
//! messages straight from the event's broadcast and hands hyper each message's frame, the
//! same bytes for every subscriber. No task, queue or copy of its own — ten thousand of them
//! follow a sellout on two cores.
//!
//! A subscriber whose client stops reading is never polled again (hyper polls a body only
//! when the socket takes more), so it cannot notice by itself that it fell behind. The
//! node's [`subscribers::Subscribers`] looks from outside instead: twice a second it compares each
//! subscriber's position with its feed's, and drops the connection of one more than
//! `STREAM_BUFFER_MESSAGES` behind (its `EventSource` reconnects and resumes from its last
//! id). What a stalled subscriber can pin meanwhile is bounded: the broadcast ring is shared,
//! and its socket's send buffer is kept small (`STREAM_SEND_BUFFER_BYTES`).

pub mod subscribers;

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use boxoffice_engine::feed::{MessageKind, Position};
use boxoffice_engine::types::EventStatus;
use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;

use crate::access;
use crate::auth::MaybeAuthUser;
use crate::connections::ConnectionControl;
use crate::error::ApiError;
use crate::extract::Path;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/events/{id}/inventory/stream", get(stream))
}

/// How long a client should wait before reconnecting (the SSE `retry:` field).
const RECONNECT_AFTER: Duration = Duration::from_secs(2);

/// Counts a subscriber for as long as its response body lives.
struct Subscribed {
    state: AppState,
    event_id: i64,
    id: u64,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        metrics::gauge!("boxoffice_stream_subscribers").decrement(1.0);
        self.state.streams.forget(self.id);
        self.state.engine.unsubscribed(self.event_id);
    }
}

/// Live availability as Server-Sent Events. `event: state` carries the whole state
/// (`LiveState`: counts and every seat of seated sections), `event: change` what changed
/// since the previous message (`LiveChange`: the event's totals, changed section counts,
/// seats whose status changed by new status, new sections). Seat lists are compact: a
/// seated section's rows are runs `[first seat id, first number, count]` and its `seats`
/// names only the seats not available, `{"RESERVED": [...], "BOOKED": [...]}`; a change's
/// `seats` is `{"RESERVED": [...], "BOOKED": [...], "AVAILABLE": [...]}`; every such list
/// is ascending, each item a seat id or a run `[first id, count]` of neighbours. A commit
/// after a quiet spell is sent at once; commits that come faster are sent together, at most
/// one message per `STREAM_INTERVAL_MS`. Reconnect with `Last-Event-ID` to get what was
/// missed.
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
    connection: Option<Extension<ConnectionControl>>,
) -> Result<Response, ApiError> {
    let snapshot = state.engine.snapshot(id).await?;
    if snapshot.status == EventStatus::Draft {
        access::event(&state.pool, id, auth.as_ref()).await?;
    }
    let Some(slot) = state.streams.slot() else {
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
    let resumed = last.is_some()
        && subscription
            .backlog
            .first()
            .is_some_and(|m| m.kind == MessageKind::Change);
    metrics::counter!("boxoffice_stream_subscriptions_total",
        "start" => if resumed { "resumed" } else { "state" })
    .increment(1);
    metrics::gauge!("boxoffice_stream_subscribers").increment(1.0);
    let connection = connection.map(|Extension(c)| c);
    if let Some(connection) = &connection {
        // What the kernel may queue for a client that stops reading: kept small, so that a
        // stalled subscriber falls behind (and is dropped) within a few messages, instead of
        // pinning megabytes of kernel memory each.
        connection.limit_send_buffer(state.settings.stream_send_buffer_bytes);
    }
    let subscriber = state.streams.watch(subscription.lag.clone(), connection);
    let subscribed = Subscribed {
        state: state.clone(),
        event_id: id,
        id: subscriber,
        _slot: slot,
    };
    let backlog = subscription.backlog;
    let mut position = subscription.position;
    let mut receiver = subscription.receiver;
    let lag = subscription.lag;
    let stopping = state.stopping.clone();

    // The body: a `retry:` line, then each message's frame as the feed built it — the same
    // bytes for every subscriber, never copied or formatted per connection — heartbeats
    // included (the feed sends them, so no subscriber needs a timer of its own).
    let frames = async_stream::stream! {
        let _subscribed = subscribed;
        let sent = metrics::counter!("boxoffice_stream_messages_sent_total");
        yield Ok::<_, Infallible>(Bytes::from(format!(
            "retry: {}\n\n",
            RECONNECT_AFTER.as_millis()
        )));
        for message in backlog {
            sent.increment(1);
            yield Ok(message.frame());
        }
        // Made once, not once per message: waiting on it costs nothing while it is not due.
        let stopped = stopping.cancelled();
        tokio::pin!(stopped);
        loop {
            let received = tokio::select! {
                biased;
                () = &mut stopped => break,
                received = receiver.recv() => received,
            };
            match received {
                Ok(message) => {
                    lag.received();
                    if message.kind == MessageKind::Heartbeat {
                        yield Ok(message.frame());
                        continue;
                    }
                    // The backlog may already have had it.
                    if !position.accepts(&message) {
                        continue;
                    }
                    position = message.at;
                    sent.increment(1);
                    yield Ok(message.frame());
                }
                // The broadcast ring lapped this subscriber: it lost messages. Ending the
                // stream makes its client reconnect and resume.
                Err(RecvError::Lagged(_)) => {
                    metrics::counter!("boxoffice_stream_subscribers_dropped_total", "reason" => "slow")
                        .increment(1);
                    break;
                }
                Err(RecvError::Closed) => break,
            }
        }
    };
    Ok(event_stream(Body::from_stream(frames)))
}

/// A Server-Sent Events response around `body`: its content type, never cached, and never
/// buffered by a proxy (nginx would hold the stream back).
pub fn event_stream(body: Body) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
