//! Users: creating them (the CLI's `user add`) and hashing their passwords.

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;
use sqlx::PgPool;

/// The roles a user can have.
pub const ROLES: [&str; 3] = ["CUSTOMER", "ORGANIZER", "ADMIN"];

/// Hashes a password with argon2id and a fresh random salt. CPU-heavy by design: call it off
/// the async workers (`spawn_blocking`) on request paths.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::from_b64(&uuid::Uuid::new_v4().simple().to_string())
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
}

/// Creates a user, or updates the password and role of an existing one with that email.
pub async fn upsert(
    pool: &PgPool,
    email: &str,
    password: &str,
    role: &str,
    first: &str,
    last: &str,
) -> anyhow::Result<i64> {
    let email = email.trim();
    anyhow::ensure!(
        email.contains('@') && email.len() <= 254,
        "not an email address: {email}"
    );
    anyhow::ensure!(password.len() >= 8, "a password has at least 8 characters");
    anyhow::ensure!(ROLES.contains(&role), "role must be one of {ROLES:?}");
    let hash = {
        let password = password.to_string();
        tokio::task::spawn_blocking(move || hash_password(&password)).await??
    };
    let id = sqlx::query_scalar(
        "INSERT INTO users (email, password_hash, role, first_name, last_name)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT ((lower(email))) DO UPDATE SET password_hash = EXCLUDED.password_hash, role = EXCLUDED.role
         RETURNING id",
    )
    .bind(email)
    .bind(hash)
    .bind(role)
    .bind(first)
    .bind(last)
    .fetch_one(pool)
    .await?;
    Ok(id)
}
