//! Keyset pagination, the same for every listing: one page-size rule, one cursor format,
//! one way to cut a page.
//!
//! A cursor names the last row of the previous page by its sort key. It is opaque to
//! clients — base64url of the key — so the key can change without breaking them.

use axum::http::StatusCode;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::error::ApiError;

/// Rows per page at most.
pub const MAX_PAGE_SIZE: i64 = 100;

/// A page of a listing: `{"data": [...], "nextCursor": "..."}`; no `nextCursor` on the last.
#[derive(Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub data: Vec<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The page size asked for, or `default`; refused outside 1 to [`MAX_PAGE_SIZE`].
pub fn page_size(limit: Option<i64>, default: i64) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(default);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_QUERY",
            format!("limit must be between 1 and {MAX_PAGE_SIZE}"),
        ));
    }
    Ok(limit)
}

/// Keyset pagination: a page is fetched with `limit + 1` rows; if the extra row came, it is
/// dropped and the cursor of the page's last row returned for the next page.
pub fn trim_page<T>(
    rows: &mut Vec<T>,
    limit: i64,
    cursor_of: impl Fn(&T) -> String,
) -> Option<String> {
    if rows.len() as i64 <= limit {
        return None;
    }
    rows.truncate(limit as usize);
    rows.last().map(cursor_of)
}

/// The cursor after a row sorted by (time, id).
pub fn time_id_cursor(at: DateTime<Utc>, id: i64) -> String {
    encode(&format!("{}:{id}", at.timestamp_micros()))
}

/// Parses a [`time_id_cursor`].
pub fn parse_time_id_cursor(
    cursor: Option<&str>,
) -> Result<Option<(DateTime<Utc>, i64)>, ApiError> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let text = decode(cursor)?;
    let (micros, id) = text.split_once(':').ok_or_else(invalid)?;
    let at = DateTime::from_timestamp_micros(micros.parse().map_err(|_| invalid())?)
        .ok_or_else(invalid)?;
    Ok(Some((at, id.parse().map_err(|_| invalid())?)))
}

/// The cursor after a row sorted by id.
pub fn id_cursor(id: i64) -> String {
    encode(&id.to_string())
}

/// Parses an [`id_cursor`].
pub fn parse_id_cursor(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    cursor
        .map(|c| decode(c)?.parse().map_err(|_| invalid()))
        .transpose()
}

fn encode(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

fn decode(cursor: &str) -> Result<String, ApiError> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid())?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

fn invalid() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "INVALID_CURSOR",
        "cursor is not valid: pass the nextCursor of the previous page as it was given",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let c = time_id_cursor(at, 42);
        assert_eq!(parse_time_id_cursor(Some(&c)).unwrap(), Some((at, 42)));
        assert_eq!(parse_id_cursor(Some(&id_cursor(7))).unwrap(), Some(7));
        assert_eq!(parse_id_cursor(None).unwrap(), None);
        for bad in ["", "!!", &id_cursor(7)] {
            assert!(parse_time_id_cursor(Some(bad)).is_err(), "{bad}");
        }
        assert!(parse_id_cursor(Some(&c)).is_err());
    }

    #[test]
    fn page_sizes_outside_the_bounds_are_refused() {
        assert_eq!(page_size(None, 20).unwrap(), 20);
        assert_eq!(page_size(Some(MAX_PAGE_SIZE), 20).unwrap(), MAX_PAGE_SIZE);
        assert!(page_size(Some(0), 20).is_err());
        assert!(page_size(Some(MAX_PAGE_SIZE + 1), 20).is_err());
    }
}
