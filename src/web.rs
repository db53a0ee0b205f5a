//! The buyer's page: `/` and its modules under `/app/`, compiled into the binary so that it
//! works with no internet and no Node at build time. The sources are plain ES modules in
//! `web/` (no bundler): edit them and rebuild.
//!
//! The page only speaks the public API: `/auth/login`, `/events`, the live inventory stream,
//! the waiting room (`/events/{id}/queue`), `/reservations`, `/bookings`. A Content-Security-Policy of `'self'` makes sure it never
//! loads anything from elsewhere.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::error::{ApiError, NotFound};
use crate::state::AppState;

/// Every file of the page: name, content type, contents.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../web/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/api.js"),
    ),
    (
        "seatmap.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/seatmap.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/dom.js"),
    ),
    (
        "queue.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/queue.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../web/app.css"),
    ),
];

const POLICY: &str = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { file("index.html") }))
        .route(
            "/app/{file}",
            get(|Path(name): Path<String>| async move { file(&name) }),
        )
}

fn file(name: &str) -> Response {
    let Some((_, content_type, body)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return ApiError::not_found(NotFound::Route).into_response();
    };
    let mut response = (StatusCode::OK, *body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidated on every load: a new binary's page is picked up at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
