//! `GET /events/{id}/queue/me/stream`: a buyer's place as Server-Sent Events, so that a
//! waiting page need not poll.
//!
//! Each subscriber waits on its event's board, which the actor bumps when places may have
//! moved (the draw, each admission tick, sold out and back). A subscriber looks at its own
//! spot at most once per `QUEUE_STREAM_INTERVAL` however often the board moves, and sends
//! only when what it would show changed — so a million waiting buyers cost a million map
//! look-ups a second at most, and far fewer messages. The stream ends once the pass has run
//! out (EXPIRED is final), or at shutdown; a client reconnects with a plain `EventSource`.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use bytes::Bytes;

use super::{hide_drafts, EntryStatus, QueueEntryView};
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::Path;
use crate::state::AppState;

/// The least time between two looks at a subscriber's spot.
const QUEUE_STREAM_INTERVAL: Duration = Duration::from_secs(1);
/// How long a client should wait before reconnecting (the SSE `retry:` field).
const RECONNECT_AFTER: Duration = Duration::from_secs(2);

/// Counts a subscriber for as long as its response body lives.
struct Subscribed {
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        metrics::gauge!("boxoffice_queue_stream_subscribers").decrement(1.0);
    }
}

fn frame(view: &QueueEntryView) -> Bytes {
    let json = serde_json::to_string(view).unwrap_or_default();
    Bytes::from(format!("event: position\ndata: {json}\n\n"))
}

/// The buyer's place as Server-Sent Events: `event: position` with a `QueueEntryView` on
/// connect and whenever it changes (at most once a second), comments as heartbeats. The
/// stream ends after EXPIRED.
#[utoipa::path(get, path = "/events/{id}/queue/me/stream", tag = "queue", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 200, content_type = "text/event-stream", body = String,
                 description = "`event: position` messages whose data is a QueueEntryView; comments as heartbeats"),
              (status = 404, description = "EVENT_NOT_FOUND, QUEUE_ENTRY_NOT_FOUND (join first)"),
              (status = 409, description = "WAITING_ROOM_OFF"),
              (status = 503, description = "OVERLOADED (too many subscribers on this node), SHUTTING_DOWN")))]
pub async fn stream(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(event_id): Path<i64>,
) -> Result<Response, ApiError> {
    let mut board = state.engine.queue_board(event_id).await?;
    let first = board.place(auth.id, state.engine.now_ms());
    if first.is_err() {
        hide_drafts(&state, event_id, &auth).await?;
    }
    let first = QueueEntryView::new(event_id, &first?);
    let Some(slot) = state.streams.slot() else {
        metrics::counter!("boxoffice_stream_subscribers_refused_total").increment(1);
        return Err(ApiError::Unavailable {
            code: "OVERLOADED",
            message: "this node has as many stream subscribers as it allows; retry".into(),
        });
    };
    metrics::gauge!("boxoffice_queue_stream_subscribers").increment(1.0);
    let subscribed = Subscribed { _slot: slot };
    let heartbeat = Duration::from_secs(state.settings.engine.stream_heartbeat_seconds.max(1));
    let stopping = state.stopping.clone();
    let engine = state.engine.clone();
    let user_id = auth.id;

    let frames = async_stream::stream! {
        let _subscribed = subscribed;
        yield Ok::<_, Infallible>(Bytes::from(format!(
            "retry: {}\n\n",
            RECONNECT_AFTER.as_millis()
        )));
        yield Ok(frame(&first));
        let mut last = first;
        let stopped = stopping.cancelled();
        tokio::pin!(stopped);
        loop {
            if last.status == EntryStatus::Expired {
                break;
            }
            let mut changed = board.watch();
            // A pass runs out by the clock alone: wake for it even if the board stays still.
            let expires_in = last
                .pass_expires_at
                .filter(|_| last.status == EntryStatus::Admitted)
                .map(|at| Duration::from_millis((at.timestamp_millis() - engine.now_ms()).max(0) as u64 + 1));
            let wait = expires_in.map_or(heartbeat, |e| e.min(heartbeat));
            let quiet = tokio::select! {
                biased;
                () = &mut stopped => break,
                woke = changed.changed() => {
                    if woke.is_err() {
                        break;
                    }
                    false
                }
                () = tokio::time::sleep(wait) => true,
            };
            if board.is_retired() {
                // The actor stopped (idle, or rebuilt): follow its successor's board.
                match engine.queue_board(event_id).await {
                    Ok(next) => board = next,
                    Err(_) => break,
                }
            }
            let view = match board.place(user_id, engine.now_ms()) {
                Ok(view) => QueueEntryView::new(event_id, &view),
                Err(_) => break,
            };
            if view != last {
                yield Ok(frame(&view));
                last = view;
            } else if quiet {
                // Keeps proxies from closing a stream that has had nothing to say.
                yield Ok(Bytes::from_static(b": heartbeat\n\n"));
            }
            tokio::select! {
                biased;
                () = &mut stopped => break,
                () = tokio::time::sleep(QUEUE_STREAM_INTERVAL) => {}
            }
        }
    };
    Ok(crate::stream::event_stream(Body::from_stream(frames)))
}
