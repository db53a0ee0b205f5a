//! Extractors whose rejections speak the API's error format: a malformed body, a wrong
//! type or a bad path segment becomes `{"error": {"code", "message"}}` with a stable code,
//! never axum's plain-text rejection.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The event a request's path names (`/events/{id}/…`), read without the router: for the
/// layers and extractors that decide before a handler runs (cluster forwarding, early
/// shedding). `None` for any other path or an id that is not a number.
pub fn event_id_in_path(path: &str) -> Option<i64> {
    path.strip_prefix("/events/")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// A JSON body.
///
/// A number with a zero fraction (`2.0`, `1e3`) is accepted where a whole number is
/// expected: JSON does not tell them apart, and neither does JSON Schema (`2.0` is an
/// `integer` there), so a client generated from the OpenAPI document may send either. The
/// body is first read the fast way; only when that fails is it read again with such numbers
/// made whole, so the common case pays nothing.
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(json_rejection(JsonRejection::MissingJsonContentType(
                Default::default(),
            )));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| json_rejection(JsonRejection::BytesRejection(e)))?;
        // The fast way is serde_json alone; axum's reader also tracks the path to each
        // value (serde_path_to_error) for its messages, which costs every request — so it
        // reads the body again only when the fast way failed, to say where.
        if let Ok(value) = serde_json::from_slice(&bytes) {
            return Ok(Json(value));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(JsonRejection::JsonDataError(e)) => whole_numbers_made_whole(&bytes)
                .and_then(|value| serde_json::from_value(value).ok())
                .map(Json)
                .ok_or_else(|| json_rejection(JsonRejection::JsonDataError(e))),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// `application/json` or any `application/*+json`, parameters (charset) ignored — what
/// axum's own JSON extractor accepts.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

/// The body with every float that has no fraction turned into a whole number, or `None`
/// when there was none (then a second reading could not succeed where the first failed).
fn whole_numbers_made_whole(bytes: &[u8]) -> Option<serde_json::Value> {
    fn walk(value: &mut serde_json::Value) -> bool {
        match value {
            serde_json::Value::Number(n) if n.is_f64() => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                // Exactly representable whole numbers only: ±2^53.
                if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 {
                    *value = serde_json::Value::from(f as i64);
                    true
                } else {
                    false
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().fold(false, |c, v| walk(v) | c),
            serde_json::Value::Object(map) => map.values_mut().fold(false, |c, v| walk(v) | c),
            _ => false,
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    walk(&mut value).then_some(value)
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "VALIDATION_FAILED",
            plain(&e.body_text()),
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "MALFORMED_JSON",
            format!("the body is not valid JSON: {}", plain(&e.body_text())),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            "send JSON with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "the request body is too large",
            )
        }
        other => ApiError::new(other.status(), "BAD_REQUEST", other.body_text()),
    }
}

/// A deserializer's message in the API's words: without axum's preamble, Rust type names
/// or positions in the input, and with the format a value must have.
fn plain(message: &str) -> String {
    let mut text = message.to_string();
    for preamble in [
        "Failed to deserialize the JSON body into the target type: ",
        "Failed to parse the request body as JSON: ",
        "Failed to deserialize query string: ",
        "Invalid URL: ",
        "Cannot parse ",
    ] {
        if let Some(rest) = text.strip_prefix(preamble) {
            text = rest.to_string();
        }
    }
    if let Some(at) = text.rfind(" at line ") {
        text.truncate(at);
    }
    const WHOLE_FROM_ZERO: &str = "a whole number from 0";
    const WHOLE: &str = "a whole number";
    for (rust, words) in [
        ("expected u8", WHOLE_FROM_ZERO),
        ("expected u16", WHOLE_FROM_ZERO),
        ("expected u32", WHOLE_FROM_ZERO),
        ("expected u64", WHOLE_FROM_ZERO),
        ("expected usize", WHOLE_FROM_ZERO),
        ("expected i32", WHOLE),
        ("expected i64", WHOLE),
        ("expected f64", "a number"),
        ("expected a sequence", "a list"),
        ("expected a string", "text"),
        ("expected a map", "an object"),
        ("expected struct", "an object"),
    ] {
        if let Some(i) = text.find(rust) {
            let end = text[i + rust.len()..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .map_or(text.len(), |j| i + rust.len() + j);
            text.replace_range(i..end, &format!("expected {words}"));
        }
    }
    // chrono's words for a date that does not parse.
    for chrono in [
        "premature end of input",
        "input contains invalid characters",
        "trailing input",
        "input is out of range",
        "input is not enough for unique date and time",
    ] {
        if text.contains(chrono) {
            text = text.replace(
                chrono,
                "expected a date and time in RFC 3339 form, like 2030-06-01T20:00:00Z",
            );
        }
    }
    text.replace('`', "")
}

/// Path parameters.
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_PATH",
                plain(&e.body_text()),
            )),
            Err(other) => Err(ApiError::new(
                other.status(),
                "INVALID_PATH",
                other.body_text(),
            )),
        }
    }
}

/// Query parameters.
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_QUERY",
                plain(&e.body_text()),
            )),
            Err(other) => Err(ApiError::new(
                other.status(),
                "INVALID_QUERY",
                other.body_text(),
            )),
        }
    }
}

/// The pattern the OpenAPI document gives the `Idempotency-Key` header.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,255}$";

/// The `Idempotency-Key` header, if sent: 1 to 255 visible ASCII characters.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        let key = value
            .to_str()
            .ok()
            .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()));
        match key {
            Some(k) => Ok(IdempotencyKey(Some(k.to_string()))),
            None => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_IDEMPOTENCY_KEY",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{event_id_in_path, is_json, plain, whole_numbers_made_whole};

    #[test]
    fn the_event_of_a_path_is_read_only_from_an_events_path_with_a_numeric_id() {
        assert_eq!(event_id_in_path("/events/42/reservations"), Some(42));
        assert_eq!(event_id_in_path("/events/42"), Some(42));
        assert_eq!(event_id_in_path("/events/x/reservations"), None);
        assert_eq!(event_id_in_path("/events/"), None);
        assert_eq!(event_id_in_path("/bookings/42"), None);
    }

    #[test]
    fn whole_floats_become_whole_numbers_and_fractions_stay() {
        let v =
            whole_numbers_made_whole(br#"{"quantity": 2.0, "ids": [1e3, 7], "x": {"y": -4.0}}"#)
                .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"quantity": 2, "ids": [1000, 7], "x": {"y": -4}})
        );
        assert!(whole_numbers_made_whole(br#"{"quantity": 2.5}"#).is_none());
        assert!(whole_numbers_made_whole(br#"{"quantity": 2}"#).is_none());
        assert!(whole_numbers_made_whole(br#"{"quantity": 1e300}"#).is_none());
    }

    #[test]
    fn json_content_types() {
        let with = |ct: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert(axum::http::header::CONTENT_TYPE, ct.parse().unwrap());
            is_json(&h)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/problem+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonx"));
        assert!(!is_json(&axum::http::HeaderMap::new()));
    }

    #[test]
    fn messages_speak_the_api_not_rust() {
        assert_eq!(
            plain("Failed to deserialize the JSON body into the target type: quantity: invalid type: string \"x\", expected u32 at line 1 column 40"),
            "quantity: invalid type: string \"x\", expected a whole number from 0"
        );
        assert_eq!(
            plain("Failed to deserialize the JSON body into the target type: eventDate: premature end of input at line 1 column 30"),
            "eventDate: expected a date and time in RFC 3339 form, like 2030-06-01T20:00:00Z"
        );
        assert_eq!(
            plain("Failed to deserialize the JSON body into the target type: unknown field `section_id`, expected `sectionId` or `quantity` at line 1 column 12"),
            "unknown field section_id, expected sectionId or quantity"
        );
        assert_eq!(
            plain("Failed to deserialize query string: limit: invalid digit found in string"),
            "limit: invalid digit found in string"
        );
    }
}
