//! Cluster mode, as the HTTP server sees it: any node accepts any request, and a request for
//! an event another node owns is forwarded there — once.
//!
//! The engine says when an event is owned elsewhere ([`boxoffice_engine::EngineError::NotOwner`],
//! from a short cache of owners or from the claim it attempted); the handler turns that into
//! an [`ApiError::OwnedElsewhere`] whose response carries an [`OwnedElsewhere`] marker, and [`forward_to_owner`], run around every route (`startup::around_route`), answers
//! with the owner's response instead. So no handler knows about forwarding, and a request
//! is decided by exactly one node.
//!
//! - **Once**: a forwarded request carries [`FORWARDED_BY`]. A node that receives one for
//!   an event it does not own answers 503 (retryable) with [`NOT_OWNER`] instead of
//!   forwarding again, so a stale view of ownership can never make a loop.
//! - **Refused or unreachable**: the forwarding node forgets the owner it had (the next
//!   request asks PostgreSQL, and claims the event if its owner is gone) and answers 503 with
//!   `Retry-After`.
//! - The request is sent on as it came (method, path, headers, body), which the layer keeps
//!   aside before the handler runs — unless the event's actor runs on this node, whose
//!   requests are decided here; the owner's response — a live stream included — is passed
//!   back as it comes.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;

use crate::error::{ApiError, OwnedElsewhere};
use crate::state::AppState;
pub use headers::{FORWARDED_BY, NOT_OWNER};

pub mod headers;
pub mod status;

/// Headers that belong to one connection, never sent on (RFC 9110 §7.6.1), and `host`,
/// which names the node the request is sent to.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// The client requests are forwarded with: pooled connections to the other nodes, a short
/// connect timeout (a dead owner is found out quickly), no redirects, no proxy.
///
/// A pooled connection is retired after half of `peer_header_timeout` idle — the time
/// after which the owner closes a connection that sends no request (`HEADER_TIMEOUT_MS`,
/// the same on every node). Kept longer, a connection idle for that long could be reused
/// at the very instant the owner closes it: the forwarded request would fail unread
/// although the owner is healthy, the buyer would be answered 503, and the owner looked up
/// again.
pub fn peer_client(peer_header_timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(Duration::from_millis(1_000))
        .pool_idle_timeout((peer_header_timeout / 2).min(Duration::from_secs(30)))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?)
}

/// Answers a request for an event another node owns with that node's answer.
pub async fn forward_to_owner(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let forwarded = request.headers().contains_key(FORWARDED_BY);
    // An event whose actor runs here is decided here: nothing to keep for a forward. Only
    // if the actor stops between this look and the request reaching it (its node lost the
    // event) is the request refused (503, retryable) instead of forwarded; the next one
    // finds no actor and takes the path below. This spares the hot event's every request a
    // copy of its body and headers.
    let event_id = crate::extract::event_id_in_path(request.uri().path());
    if event_id.is_some_and(|id| state.engine.runs_here(id)) {
        let mut response = next.run(request).await;
        if let Some(owner) = response.extensions_mut().remove::<OwnedElsewhere>() {
            not_forwarded(&state, &owner, forwarded, &mut response);
        }
        return response;
    }
    // Keep what is needed to send the request again; the body is bounded like any body.
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, state.settings.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                format!(
                    "the request body is larger than {} bytes",
                    state.settings.max_body_bytes
                ),
            )
            .into_response()
        }
    };
    let method = parts.method.clone();
    let uri = parts.uri.clone();
    let headers = parts.headers.clone();
    let mut response = next
        .run(Request::from_parts(parts, Body::from(bytes.clone())))
        .await;
    let Some(owner) = response.extensions_mut().remove::<OwnedElsewhere>() else {
        return response;
    };
    let url = match &owner.url {
        Some(url) if !forwarded => url.clone(),
        _ => {
            not_forwarded(&state, &owner, forwarded, &mut response);
            return response;
        }
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = state.peers.request(method, format!("{url}{path}"));
    for (name, value) in &headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            outgoing = outgoing.header(name, value);
        }
    }
    outgoing = outgoing
        .header(FORWARDED_BY, state.engine.node_id())
        .body(bytes);
    let answered = match outgoing.send().await {
        Ok(answered) => answered,
        Err(e) => {
            metrics::counter!("boxoffice_cluster_forwards_total", "result" => "unreachable")
                .increment(1);
            tracing::debug!(event_id = owner.event_id, owner = %owner.node_id, error = %e, "the event's owner could not be reached");
            state.engine.forget_owner(owner.event_id);
            return response;
        }
    };
    if answered.headers().contains_key(NOT_OWNER) {
        metrics::counter!("boxoffice_cluster_forwards_total", "result" => "refused").increment(1);
        state.engine.forget_owner(owner.event_id);
        return response;
    }
    metrics::counter!("boxoffice_cluster_forwards_total", "result" => "answered").increment(1);
    let mut passed = Response::builder().status(answered.status());
    for (name, value) in answered.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != header::CONTENT_LENGTH {
            passed = passed.header(name, value);
        }
    }
    let body = Body::from_stream(answered.bytes_stream().map_err(std::io::Error::other));
    passed.body(body).unwrap_or_else(|e| {
        ApiError::Internal(anyhow::anyhow!("passing a forwarded answer back: {e}")).into_response()
    })
}

/// A refusal for an event owned elsewhere that is answered as it is: to a node that
/// forwarded it here (which is told this node is not the owner, once), or when the owner is
/// not known or the request's body was not kept (the next request asks PostgreSQL).
fn not_forwarded(
    state: &AppState,
    owner: &OwnedElsewhere,
    forwarded: bool,
    response: &mut Response,
) {
    if forwarded {
        metrics::counter!("boxoffice_cluster_forwards_received_total", "result" => "not_owner")
            .increment(1);
        response.headers_mut().insert(
            HeaderName::from_static(NOT_OWNER),
            HeaderValue::from_static("1"),
        );
    } else {
        state.engine.forget_owner(owner.event_id);
    }
}
