//! Access tokens: HS256 JWTs with expiry, issuer and audience, and the extractor that turns
//! a `Bearer` header into the authenticated user.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, TokenProblem};

pub const ISSUER: &str = "boxoffice";
pub const AUDIENCE: &str = "boxoffice-api";

/// A user's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    Customer,
    Organizer,
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "CUSTOMER" => Some(Role::Customer),
            "ORGANIZER" => Some(Role::Organizer),
            "ADMIN" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// What a token says.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub role: Role,
    pub iss: String,
    pub aud: String,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
}

/// Signing and checking keys.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Token lifetime.
    pub ttl_seconds: u64,
}

impl Keys {
    /// Keys from the shared secret. JWT_SECRET should be at least 32 bytes of randomness.
    pub fn new(secret: &str, ttl_seconds: u64) -> anyhow::Result<Keys> {
        anyhow::ensure!(!secret.is_empty(), "JWT_SECRET must not be empty");
        Ok(Keys {
            encoding: EncodingKey::from_secret(secret.as_bytes())
                .map_err(|e| anyhow::anyhow!("JWT_SECRET is not usable: {e}"))?,
            decoding: DecodingKey::from_secret(secret.as_bytes())
                .map_err(|e| anyhow::anyhow!("JWT_SECRET is not usable: {e}"))?,
            ttl_seconds,
        })
    }

    /// A token for a user.
    pub fn issue(&self, user_id: i64, role: Role) -> Result<String, ApiError> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            role,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now + self.ttl_seconds,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(e.into()))
    }

    /// Checks a token: HS256 only (so `alg: none` and key-confusion tricks fail), signature,
    /// expiry (required, no leeway beyond 5 s), issuer and audience.
    /// An expired token is told apart from an invalid one only after its signature checked
    /// out, so the distinction reveals nothing about forged tokens.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenProblem> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenProblem::Expired,
                _ => TokenProblem::Invalid,
            })
    }
}

/// The authenticated user of a request.
#[derive(Clone, Copy, Debug)]
pub struct AuthUser {
    pub id: i64,
    pub role: Role,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Refuses customers: organizer routes.
    pub fn require_organizer(&self) -> Result<(), ApiError> {
        match self.role {
            Role::Organizer | Role::Admin => Ok(()),
            Role::Customer => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "this needs an organizer account",
            )),
        }
    }
}

/// State that holds the access-token keys: what the extractors below need, so that they do
/// not depend on the whole application state.
pub trait HasKeys {
    fn keys(&self) -> &Keys;
}

impl<S: HasKeys + Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::unauthorized(TokenProblem::Missing))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(ApiError::unauthorized(TokenProblem::Missing))?;
        let claims = state
            .keys()
            .verify(token.trim())
            .map_err(ApiError::unauthorized)?;
        let id = claims
            .sub
            .parse()
            .map_err(|_| ApiError::unauthorized(TokenProblem::Invalid))?;
        Ok(AuthUser {
            id,
            role: claims.role,
        })
    }
}

/// The authenticated user if a valid token was sent, for routes open to everyone.
pub struct MaybeAuthUser(pub Option<AuthUser>);

impl<S: HasKeys + Send + Sync> FromRequestParts<S> for MaybeAuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            AuthUser::from_request_parts(parts, state)
                .await
                .map(|u| MaybeAuthUser(Some(u)))
        } else {
            Ok(MaybeAuthUser(None))
        }
    }
}
