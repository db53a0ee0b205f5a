//! One error type for every handler. It renders `{"error": {"code", "message"}}` with a
//! stable code and the right status; internal causes are logged, never sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use boxoffice_engine::{EngineError, Refusal};
use serde::Serialize;
use serde_json::json;

/// A success body: `{"data": ...}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Data<T> {
    pub data: T,
}

impl<T: Serialize> Data<T> {
    /// Wraps a value as a JSON success body.
    pub fn json(data: T) -> Json<Data<T>> {
        Json(Data { data })
    }
}

/// A 201 with `{"data": ...}`, marked `Idempotent-Replayed: true` when it answers a retry.
pub fn created<T: Serialize>(data: T, replayed: bool) -> axum::response::Response {
    let mut response = (StatusCode::CREATED, Data::json(data)).into_response();
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// The body of every error answer: `{"error": {"code": "SOLD_OUT", "message": "..."}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: a stable code to branch on, and a message for people.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, SCREAMING_SNAKE_CASE, e.g. `SOLD_OUT`, `VALIDATION_FAILED`.
    #[schema(example = "SOLD_OUT")]
    pub code: String,
    /// What happened and what to do about it; wording may change.
    #[schema(example = "not enough tickets left")]
    pub message: String,
}

/// Marks a response that says the event is owned by another node: the forwarding layer
/// (`cluster::forward_to_owner`) answers with that node's response instead.
#[derive(Clone, Debug)]
pub struct OwnedElsewhere {
    pub event_id: i64,
    pub node_id: String,
    pub url: Option<String>,
}

/// What a 404 is about, named in its code and message.
#[derive(Debug)]
pub enum NotFound {
    Event(i64),
    Reservation(i64),
    Booking(String),
    SeatedSection(i64),
    Route,
}

/// Why a request has no usable access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenProblem {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token whose signature, issuer, audience or form is wrong.
    Invalid,
    /// A well-formed token past its expiry.
    Expired,
}

/// An error answer of the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A client error with a stable code.
    #[error("{message}")]
    Client {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// No usable access token: 401 with `WWW-Authenticate`.
    #[error("unauthorized: {0:?}")]
    Unauthorized(TokenProblem),
    /// Too many attempts: 429 with `Retry-After`.
    #[error("too many attempts")]
    TooManyRequests { retry_after_seconds: u64 },
    /// Shed load or a dependency down: 503 with `Retry-After`.
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    /// Another node owns the event: answered by forwarding the request there
    /// (`cluster::forward_to_owner`), or 503 when it cannot be.
    #[error("event {event_id} is owned by node {node_id}")]
    OwnedElsewhere {
        event_id: i64,
        node_id: String,
        url: Option<String>,
    },
    /// A bug or an unexpected failure: logged in full, answered with a generic 500.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Client {
            status,
            code,
            message: message.into(),
        }
    }

    /// 422 with `VALIDATION_FAILED`.
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
            message,
        )
    }

    /// 403 with `FORBIDDEN`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    /// 404 with the code of what was not found: `EVENT_NOT_FOUND`, `RESERVATION_NOT_FOUND`,
    /// `BOOKING_NOT_FOUND`, `SECTION_NOT_FOUND`, or `NOT_FOUND` for an unknown route. The
    /// same situation gets the same code on every route (someone else's hold is
    /// `RESERVATION_NOT_FOUND` whether it is read, released or booked).
    pub fn not_found(what: NotFound) -> Self {
        let (code, message) = match what {
            NotFound::Event(id) => ("EVENT_NOT_FOUND", format!("no event {id}")),
            NotFound::Reservation(id) => (
                "RESERVATION_NOT_FOUND",
                format!("no reservation {id} of yours"),
            ),
            NotFound::Booking(reference) => (
                "BOOKING_NOT_FOUND",
                format!("no booking {reference} of yours"),
            ),
            NotFound::SeatedSection(id) => (
                "SECTION_NOT_FOUND",
                format!("no seated section {id} in this event"),
            ),
            NotFound::Route => ("NOT_FOUND", "no such route".to_string()),
        };
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// The stable code this error is answered with.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Client { code, .. } | ApiError::Unavailable { code, .. } => code,
            ApiError::OwnedElsewhere { .. } => "UNAVAILABLE",
            ApiError::Unauthorized(_) => "UNAUTHORIZED",
            ApiError::TooManyRequests { .. } => "TOO_MANY_ATTEMPTS",
            ApiError::Internal(_) => "INTERNAL",
        }
    }

    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Client { status, .. } => *status,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } | ApiError::OwnedElsewhere { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// 401 for a request without a usable token, with the RFC 6750 challenge.
    pub fn unauthorized(problem: TokenProblem) -> Self {
        ApiError::Unauthorized(problem)
    }
}

impl ApiError {
    /// A copy of an error shared between callers (concurrent cache loads share one result).
    pub fn shared_copy(self: std::sync::Arc<Self>) -> ApiError {
        match &*self {
            ApiError::Client {
                status,
                code,
                message,
            } => ApiError::new(*status, code, message.clone()),
            ApiError::Unauthorized(problem) => ApiError::Unauthorized(*problem),
            ApiError::TooManyRequests {
                retry_after_seconds,
            } => ApiError::TooManyRequests {
                retry_after_seconds: *retry_after_seconds,
            },
            ApiError::Unavailable { code, message } => ApiError::Unavailable {
                code,
                message: message.clone(),
            },
            ApiError::OwnedElsewhere {
                event_id,
                node_id,
                url,
            } => ApiError::OwnedElsewhere {
                event_id: *event_id,
                node_id: node_id.clone(),
                url: url.clone(),
            },
            ApiError::Internal(e) => ApiError::Internal(anyhow::anyhow!("{e:#}")),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::error!(error = %e, "database unavailable");
                ApiError::Unavailable {
                    code: "DATABASE_UNAVAILABLE",
                    message: "the database is unavailable; retry shortly".into(),
                }
            }
            // 22021: a text value PostgreSQL cannot store (a NUL character). The schema's
            // patterns exclude it from every stored text field; this is the backstop.
            sqlx::Error::Database(db) if db.code().as_deref() == Some("22021") => {
                ApiError::validation("text may not contain the NUL character (U+0000)")
            }
            _ => ApiError::Internal(e.into()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Refused(r) => r.into(),
            EngineError::EventNotFound => {
                ApiError::new(StatusCode::NOT_FOUND, "EVENT_NOT_FOUND", "no such event")
            }
            EngineError::Overloaded => ApiError::Unavailable {
                code: "OVERLOADED",
                message: e.to_string(),
            },
            EngineError::ShuttingDown => ApiError::Unavailable {
                code: "SHUTTING_DOWN",
                message: e.to_string(),
            },
            EngineError::Unavailable(message) => ApiError::Unavailable {
                code: "UNAVAILABLE",
                message,
            },
            EngineError::NotOwner {
                event_id,
                node_id,
                url,
            } => ApiError::OwnedElsewhere {
                event_id,
                node_id,
                url,
            },
            EngineError::NotMember => ApiError::Unavailable {
                code: "UNAVAILABLE",
                message: "this node is rejoining the cluster; retry".into(),
            },
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let status = match r {
            Refusal::SectionNotFound
            | Refusal::SeatNotFound
            | Refusal::HoldNotFound(_)
            | Refusal::BookingNotFound
            | Refusal::DiscountNotFound
            | Refusal::NotInQueue => StatusCode::NOT_FOUND,
            Refusal::QueuePassRequired | Refusal::QueuePassExpired => StatusCode::FORBIDDEN,
            Refusal::Invalid(_) | Refusal::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::CONFLICT,
        };
        ApiError::new(status, r.code(), r.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = match self {
            ApiError::Client {
                status,
                code,
                message,
            } => (status, code, message),
            ApiError::Unauthorized(problem) => {
                // RFC 6750 §3: the challenge says what is wrong with the token, if one came.
                let (message, challenge) = match problem {
                    TokenProblem::Missing => (
                        "an access token is required: Authorization: Bearer <accessToken> (POST /auth/login gives one)",
                        r#"Bearer realm="boxoffice""#,
                    ),
                    TokenProblem::Invalid => (
                        "the access token is not valid: sign in again (POST /auth/login)",
                        r#"Bearer realm="boxoffice", error="invalid_token", error_description="the access token is not valid""#,
                    ),
                    TokenProblem::Expired => (
                        "the access token has expired: sign in again (POST /auth/login)",
                        r#"Bearer realm="boxoffice", error="invalid_token", error_description="the access token expired""#,
                    ),
                };
                let body = json!({"error": {"code": "UNAUTHORIZED", "message": message}});
                let mut response = (StatusCode::UNAUTHORIZED, Json(body)).into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
                return response;
            }
            ApiError::TooManyRequests {
                retry_after_seconds,
            } => {
                let body = json!({"error": {
                    "code": "TOO_MANY_ATTEMPTS",
                    "message": format!("too many failed attempts; retry in {retry_after_seconds} s"),
                }});
                let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_seconds));
                return response;
            }
            ApiError::Unavailable { code, message } => {
                let body = json!({"error": {"code": code, "message": message}});
                let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return response;
            }
            ApiError::OwnedElsewhere {
                event_id,
                node_id,
                url,
            } => {
                let body = json!({"error": {
                    "code": "UNAVAILABLE",
                    "message": "the event is served by another node that could not be reached; retry",
                }});
                let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                // For the forwarding layer, which answers with the owner's response instead.
                response.extensions_mut().insert(OwnedElsewhere {
                    event_id,
                    node_id,
                    url,
                });
                return response;
            }
            ApiError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "something went wrong on our side".to_string(),
                )
            }
        };
        (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response()
    }
}
