//! `/auth`: registration, login and the current user.

pub mod jwt;
pub mod password;
pub mod throttle;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, Data};
use crate::extract::Json;
use crate::state::AppState;
pub use jwt::{AuthUser, MaybeAuthUser, Role};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/me", get(me))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct-horse-battery", "firstName": "Ada", "lastName": "Lovelace"}))]
pub struct RegisterBody {
    /// An address like `ada@example.com`: ASCII, a dot-separated domain, at most 254
    /// characters.
    #[schema(
        example = "ada@example.com",
        max_length = 254,
        pattern = r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
    )]
    pub email: String,
    /// 8 to 128 characters.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    /// At most 100 characters.
    #[serde(default)]
    #[schema(max_length = 100, pattern = r"^[^\u0000]*$")]
    pub first_name: String,
    /// At most 100 characters.
    #[serde(default)]
    #[schema(max_length = 100, pattern = r"^[^\u0000]*$")]
    pub last_name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"email": "test@example.com", "password": "password"}))]
pub struct LoginBody {
    pub email: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub access_token: String,
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u64,
    pub user: UserView,
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: i64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub role: String,
}

fn validate_email(email: &str) -> Result<String, ApiError> {
    if is_email(email) {
        Ok(email.to_string())
    } else {
        Err(ApiError::validation(
            "email is not a valid address: letters, digits and .!#$%&'*+/=?^_`{|}~- before the @, \
             a domain like example.com after it, at most 254 characters",
        ))
    }
}

/// The pattern of `RegisterBody::email`.
pub const EMAIL_PATTERN: &str =
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$";

/// The rule `RegisterBody::email` states as its pattern, checked by hand: one `@`, a local
/// part of the pattern's characters, a domain of two or more labels of letters, digits and
/// `-`.
fn is_email(email: &str) -> bool {
    const LOCAL: &[u8] = b".!#$%&'*+/=?^_`{|}~-";
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let label =
        |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    email.len() <= 254
        && !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || LOCAL.contains(&b))
        && domain.split('.').count() >= 2
        && domain.split('.').all(label)
}

/// Creates a CUSTOMER account and signs it in.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterBody,
    responses((status = 201, body = inline(Data<TokenView>)), (status = 409, description = "EMAIL_TAKEN"),
              (status = 422, description = "VALIDATION_FAILED")))]
pub async fn register(
    State(state): State<AppState>,
    Json(body): Json<RegisterBody>,
) -> Result<impl IntoResponse, ApiError> {
    let email = validate_email(&body.email)?;
    if !(8..=128).contains(&body.password.chars().count()) {
        return Err(ApiError::validation(
            "password must have 8 to 128 characters",
        ));
    }
    let name_ok = |n: &str| n.chars().count() <= 100 && boxoffice_engine::limits::is_text(n);
    if !name_ok(&body.first_name) || !name_ok(&body.last_name) {
        return Err(ApiError::validation("names have at most 100 characters"));
    }
    let hash = state.passwords.hash(body.password).await?;
    let user: UserView = sqlx::query_as(
        "INSERT INTO users (email, password_hash, first_name, last_name) VALUES ($1, $2, $3, $4)
         RETURNING id, email, first_name, last_name, role",
    )
    .bind(&email)
    .bind(hash)
    .bind(body.first_name.trim())
    .bind(body.last_name.trim())
    .fetch_one(&state.pool)
    .await
    .map_err(|e| match &e {
        sqlx::Error::Database(db) if db.constraint() == Some("users_email_key") => ApiError::new(
            StatusCode::CONFLICT,
            "EMAIL_TAKEN",
            "an account with this email exists",
        ),
        _ => e.into(),
    })?;
    let token = token_view(&state, user)?;
    Ok((StatusCode::CREATED, Data::json(token)))
}

fn token_view(state: &AppState, user: UserView) -> Result<TokenView, ApiError> {
    let role =
        Role::parse(&user.role).ok_or_else(|| ApiError::Internal(anyhow::anyhow!("bad role")))?;
    Ok(TokenView {
        access_token: state.keys.issue(user.id, role)?,
        token_type: "Bearer",
        expires_in: state.keys.ttl_seconds,
        user,
    })
}

/// Exchanges email and password for an access token. Repeated failures for one account or
/// one address are throttled with 429.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = inline(Data<TokenView>)), (status = 401, description = "INVALID_CREDENTIALS"),
              (status = 429, description = "TOO_MANY_ATTEMPTS")))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(body): Json<LoginBody>,
) -> Result<impl IntoResponse, ApiError> {
    let address = Some(peer.ip());
    if let Some(wait) = state
        .login_throttle
        .locked_for(&body.email, address)
        .await?
    {
        return Err(ApiError::TooManyRequests {
            retry_after_seconds: wait,
        });
    }
    // No stored address holds a NUL (registration refuses it), and PostgreSQL cannot even
    // compare one: such an email is simply unknown.
    let email = Some(body.email.trim()).filter(|e| boxoffice_engine::limits::is_text(e));
    let row: Option<(UserView, String)> = match email {
        None => None,
        Some(email) => sqlx::query_as::<_, (i64, String, String, String, String, String)>(
            "SELECT id, email, first_name, last_name, role, password_hash FROM users WHERE lower(email) = lower($1)",
        )
        .bind(email)
        .fetch_optional(&state.pool)
        .await?,
    }
    .map(|(id, email, first_name, last_name, role, hash)| {
        (UserView { id, email, first_name, last_name, role }, hash)
    });
    let (user, hash) = match row {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let ok = state.passwords.verify(body.password, hash).await?;
    match (ok, user) {
        (true, Some(user)) => {
            state.login_throttle.succeeded(&body.email).await?;
            Ok(Data::json(token_view(&state, user)?))
        }
        _ => {
            state.login_throttle.failed(&body.email, address).await?;
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "INVALID_CREDENTIALS",
                "wrong email or password",
            ))
        }
    }
}

/// The signed-in user.
#[utoipa::path(get, path = "/auth/me", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = inline(Data<UserView>)), (status = 401, description = "UNAUTHORIZED")))]
pub async fn me(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<impl IntoResponse, ApiError> {
    let user: UserView =
        sqlx::query_as("SELECT id, email, first_name, last_name, role FROM users WHERE id = $1")
            .bind(auth.id)
            .fetch_optional(&state.pool)
            .await?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "the account no longer exists",
                )
            })?;
    Ok(Data::json(user))
}
