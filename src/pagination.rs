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

/// What a cursor looks like: base64url (no padding) of 16 bytes, the sort key and the id.
/// Every string of this form is a valid cursor and no other is, so the OpenAPI document can
/// say exactly what the server accepts.
pub const CURSOR_PATTERN: &str = "^[A-Za-z0-9_-]{22}$";

/// Base64url without padding that ignores the unused low bits of the last character, so
/// that every 22-character string of the alphabet decodes to 16 bytes.
const CURSOR_CODEC: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// The earliest and latest instants a cursor may name; PostgreSQL's `timestamptz` cannot go
/// as far as 64 bits of microseconds, and a cursor past every row simply ends the listing.
const CURSOR_TIME_MICROS: std::ops::RangeInclusive<i64> =
    -62_135_596_800_000_000..=253_402_300_799_999_999; // 0001-01-01 ..= 9999-12-31T23:59:59.999999

/// The cursor after a row sorted by (time, id).
pub fn time_id_cursor(at: DateTime<Utc>, id: i64) -> String {
    encode(at.timestamp_micros(), id)
}

/// Parses a [`time_id_cursor`].
pub fn parse_time_id_cursor(
    cursor: Option<&str>,
) -> Result<Option<(DateTime<Utc>, i64)>, ApiError> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let (micros, id) = decode(cursor)?;
    let micros = micros.clamp(*CURSOR_TIME_MICROS.start(), *CURSOR_TIME_MICROS.end());
    let at = DateTime::from_timestamp_micros(micros).ok_or_else(invalid)?;
    Ok(Some((at, id)))
}

/// The cursor after a row sorted by id.
pub fn id_cursor(id: i64) -> String {
    encode(0, id)
}

/// Parses an [`id_cursor`].
pub fn parse_id_cursor(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    cursor.map(|c| decode(c).map(|(_, id)| id)).transpose()
}

fn encode(key: i64, id: i64) -> String {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&key.to_be_bytes());
    bytes[8..].copy_from_slice(&id.to_be_bytes());
    CURSOR_CODEC.encode(bytes)
}

fn decode(cursor: &str) -> Result<(i64, i64), ApiError> {
    if cursor.len() != 22 {
        return Err(invalid());
    }
    let bytes = CURSOR_CODEC.decode(cursor).map_err(|_| invalid())?;
    let bytes: [u8; 16] = bytes.try_into().map_err(|_| invalid())?;
    let (key, id) = bytes.split_at(8);
    Ok((
        i64::from_be_bytes(key.try_into().expect("8 bytes")),
        i64::from_be_bytes(id.try_into().expect("8 bytes")),
    ))
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
    fn cursors_round_trip_and_only_the_documented_form_is_accepted() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let c = time_id_cursor(at, 42);
        assert_eq!(parse_time_id_cursor(Some(&c)).unwrap(), Some((at, 42)));
        assert_eq!(parse_id_cursor(Some(&id_cursor(7))).unwrap(), Some(7));
        assert_eq!(parse_id_cursor(Some(&id_cursor(-7))).unwrap(), Some(-7));
        assert_eq!(parse_id_cursor(None).unwrap(), None);
        let pattern = |s: &str| {
            s.len() == 22
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        assert!(pattern(&c) && pattern(&id_cursor(i64::MAX)) && CURSOR_PATTERN.contains("{22}"));
        // Any string of the documented form is a cursor; times beyond what can be stored
        // are brought within range rather than refused.
        for any in [
            "AAAAAAAAAAAAAAAAAAAAAA",
            "__________________________"[..22].as_ref(),
            "zZ9-_aZ09azAZ-_09azAZx",
        ] {
            assert!(parse_time_id_cursor(Some(any)).is_ok(), "{any}");
            assert!(parse_id_cursor(Some(any)).is_ok(), "{any}");
        }
        for bad in [
            "",
            "!!",
            "AAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAAAA",
            "AAAAAAAAAAAAAAAAAAAAA=",
            "AAAAAAAAAAAAAAAAAAAAA+",
        ] {
            assert!(parse_time_id_cursor(Some(bad)).is_err(), "{bad}");
            assert!(parse_id_cursor(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn page_sizes_outside_the_bounds_are_refused() {
        assert_eq!(page_size(None, 20).unwrap(), 20);
        assert_eq!(page_size(Some(MAX_PAGE_SIZE), 20).unwrap(), MAX_PAGE_SIZE);
        assert!(page_size(Some(0), 20).is_err());
        assert!(page_size(Some(MAX_PAGE_SIZE + 1), 20).is_err());
    }
}
