//! The database: created if missing, migrated, pooled, with slow statements logged.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::config::Settings;

/// Why the database could not be made ready, phrased for the operator who must fix it.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL {url} is not a valid PostgreSQL URL: {reason}")]
    BadUrl { url: String, reason: sqlx::Error },
    #[error(
        "cannot reach PostgreSQL at {url} ({reason}). Start it (for example \
         `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` or \
         `docker compose up -d postgres`) or point DATABASE_URL at a running server."
    )]
    Unreachable { url: String, reason: sqlx::Error },
    #[error("PostgreSQL at {url} refused: {reason}")]
    Refused { url: String, reason: sqlx::Error },
    #[error("migrating {url} failed: {reason}")]
    Migrate {
        url: String,
        reason: sqlx::migrate::MigrateError,
    },
}

fn classify(url: &str, reason: sqlx::Error) -> DbError {
    let url = url.to_string();
    match reason {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => {
            DbError::Unreachable { url, reason }
        }
        other => DbError::Refused { url, reason: other },
    }
}

/// Creates the database named in the URL if it does not exist yet.
pub async fn ensure_database(settings: &Settings) -> Result<(), DbError> {
    let url = settings.database_url_redacted();
    let options = PgConnectOptions::from_str(settings.database_url.expose()).map_err(|reason| {
        DbError::BadUrl {
            url: url.clone(),
            reason,
        }
    })?;
    let name = options.get_database().unwrap_or("postgres").to_string();
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .map_err(|e| classify(&url, e))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .map_err(|e| classify(&url, e))?;
    if !exists {
        let quoted = name.replace('"', "\"\"");
        match sqlx::query(&format!(r#"CREATE DATABASE "{quoted}""#))
            .execute(&mut admin)
            .await
        {
            Ok(_) => tracing::info!(database = %name, "created database"),
            // Another instance created it at the same moment: fine.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(classify(&url, e)),
        }
    }
    admin.close().await.ok();
    Ok(())
}

/// A connection pool, with statements slower than the threshold logged at WARN.
pub async fn connect(settings: &Settings) -> Result<PgPool, DbError> {
    let url = settings.database_url_redacted();
    let options = PgConnectOptions::from_str(settings.database_url.expose())
        .map_err(|reason| DbError::BadUrl {
            url: url.clone(),
            reason,
        })?
        .application_name("boxoffice")
        .log_statements(log::LevelFilter::Trace)
        .log_slow_statements(
            log::LevelFilter::Warn,
            Duration::from_millis(settings.slow_statement_ms),
        );
    PgPoolOptions::new()
        .max_connections(settings.db_max_connections)
        .min_connections(settings.db_min_connections)
        .acquire_timeout(Duration::from_millis(settings.db_acquire_timeout_ms))
        .connect_with(options)
        .await
        .map_err(|e| classify(&url, e))
}

/// Brings the schema up to date, on a connection of its own that does not log its
/// statements: a migration is slow by nature, and the pool's slow-statement warning would
/// print the whole schema at every first start.
pub async fn migrate(settings: &Settings, pool: &PgPool) -> Result<(), DbError> {
    let url = settings.database_url_redacted();
    let options = (*pool.connect_options())
        .clone()
        .log_statements(log::LevelFilter::Off)
        .log_slow_statements(log::LevelFilter::Off, Duration::ZERO);
    let mut conn = sqlx::postgres::PgConnection::connect_with(&options)
        .await
        .map_err(|e| classify(&url, e))?;
    let migrated = boxoffice_engine::MIGRATOR.run(&mut conn).await;
    let _ = conn.close().await;
    migrated.map_err(|reason| DbError::Migrate { url, reason })
}

/// Creates, connects and migrates: everything `serve` and `migrate` need.
pub async fn prepare(settings: &Settings) -> Result<PgPool, DbError> {
    ensure_database(settings).await?;
    let pool = connect(settings).await?;
    migrate(settings, &pool).await?;
    Ok(pool)
}
