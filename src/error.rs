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
    /// Too many attempts: 429 with `Retry-After`.
    #[error("too many attempts")]
    TooManyRequests { retry_after_seconds: u64 },
    /// Shed load or a dependency down: 503 with `Retry-After`.
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
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

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("{what} not found"),
        )
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
            ApiError::TooManyRequests {
                retry_after_seconds,
            } => ApiError::TooManyRequests {
                retry_after_seconds: *retry_after_seconds,
            },
            ApiError::Unavailable { code, message } => ApiError::Unavailable {
                code,
                message: message.clone(),
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
            _ => ApiError::Internal(e.into()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Refused(r) => r.into(),
            EngineError::EventNotFound => ApiError::not_found("event"),
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
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        let status = match r {
            Refusal::SectionNotFound
            | Refusal::SeatNotFound
            | Refusal::HoldNotFound
            | Refusal::BookingNotFound
            | Refusal::DiscountNotFound => StatusCode::NOT_FOUND,
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
