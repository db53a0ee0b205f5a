//! `GET /events/{id}/bookings/export`: every booking of an event as CSV, streamed.
//!
//! Pages of rows are read with keyset pagination (`id > last`) and written out as they
//! come, so memory stays flat whatever the size of the event, and no query holds a
//! transaction open for the whole export.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::PgPool;

use crate::access;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::Path;
use crate::state::AppState;

/// Rows per page read from PostgreSQL.
const PAGE_ROWS: i64 = 1000;

type ExportRow = (
    i64,
    String,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
    DateTime<Utc>,
);

async fn page(pool: &PgPool, event_id: i64, after: i64) -> Result<Vec<ExportRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT b.id, b.booking_reference, u.email, b.status,
                COALESCE((SELECT sum(r.quantity) FROM reservations r WHERE r.booking_id = b.id), 0),
                b.subtotal_cents, b.discount_cents, b.total_cents, b.created_at
         FROM bookings b JOIN users u ON u.id = b.user_id
         WHERE b.event_id = $1 AND b.id > $2
         ORDER BY b.id LIMIT $3",
    )
    .bind(event_id)
    .bind(after)
    .bind(PAGE_ROWS)
    .fetch_all(pool)
    .await
}

/// Quotes a CSV field when it needs it (RFC 4180), and defuses spreadsheet formulas.
fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn line(r: &ExportRow) -> String {
    format!(
        "{},{},{},{},{},{},{},{}\n",
        field(&r.1),
        field(&r.2),
        r.3,
        r.4,
        r.5,
        r.6,
        r.7,
        r.8.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// Streams an event's bookings as CSV (its organizer).
#[utoipa::path(get, path = "/events/{id}/bookings/export", tag = "bookings", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 200, content_type = "text/csv", body = String), (status = 403, description = "FORBIDDEN"),
              (status = 404, description = "EVENT_NOT_FOUND")))]
pub async fn export(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(event_id): Path<i64>,
) -> Result<Response, ApiError> {
    access::managed_event(&state.pool, event_id, &auth).await?;
    let pool = state.pool.clone();
    let stream = async_stream::stream! {
        yield Ok::<_, std::io::Error>(
            "booking_reference,buyer_email,status,tickets,subtotal_cents,discount_cents,total_cents,created_at\n".to_string(),
        );
        let mut after = 0i64;
        loop {
            let rows = match page(&pool, event_id, after).await {
                Ok(rows) => rows,
                Err(e) => {
                    // Headers are gone already: end the body with an error so the client
                    // sees a broken transfer rather than a silently short file.
                    tracing::error!(event_id, error = %e, "booking export failed mid-stream");
                    yield Err(std::io::Error::other("export failed"));
                    break;
                }
            };
            let Some(last) = rows.last() else { break };
            after = last.0;
            let mut chunk = String::with_capacity(rows.len() * 96);
            for r in &rows {
                chunk.push_str(&line(r));
            }
            yield Ok(chunk);
            if (rows.len() as i64) < PAGE_ROWS {
                break;
            }
        }
    };
    let filename = format!("attachment; filename=\"event-{event_id}-bookings.csv\"");
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, filename),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        assert_eq!(super::field("plain"), "plain");
        assert_eq!(super::field("a,b"), "\"a,b\"");
        assert_eq!(super::field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(super::field("=SUM(A1)"), "'=SUM(A1)");
    }
}
