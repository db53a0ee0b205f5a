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

/// Tokens remembered as verified, at most. Every buyer of an on-sale sends the same token
/// with each request; 65,536 entries of ~300 bytes are ~20 MiB.
const VERIFIED_TOKENS_MAX: u64 = 65_536;

/// Leeway on `exp`, in seconds, for clocks a little apart.
const EXPIRY_LEEWAY_SECONDS: u64 = 5;

/// Signing and checking keys.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// What a token must satisfy, built once: building it per request (the issuer, audience
    /// and required-claim sets) was a fifth of the token check's time.
    validation: Validation,
    /// Tokens whose signature and claims checked out, by their exact text, with the user
    /// and expiry they carry. A token is immutable and signed, so the same text always
    /// verifies the same way; only expiry depends on time, and it is checked again on every
    /// use. Checking an HS256 token (two base64 decodes, two JSON parses, an HMAC) was
    /// 7.8 % of the server's CPU during an on-sale; a lookup is a hash of the text. Envoy's
    /// JWT filter keeps the same kind of cache (`jwt_cache_config`). Never stores failures.
    verified: moka::sync::Cache<String, Verified>,
    /// Token lifetime.
    pub ttl_seconds: u64,
}

/// What a verified token says, for the cache.
#[derive(Clone, Copy, Debug)]
struct Verified {
    user: AuthUser,
    /// `exp`, seconds since the epoch.
    expires_at_seconds: u64,
}

impl Keys {
    /// Keys from the shared secret. JWT_SECRET should be at least 32 bytes of randomness.
    pub fn new(secret: &str, ttl_seconds: u64) -> anyhow::Result<Keys> {
        anyhow::ensure!(!secret.is_empty(), "JWT_SECRET must not be empty");
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = EXPIRY_LEEWAY_SECONDS;
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Ok(Keys {
            encoding: EncodingKey::from_secret(secret.as_bytes())
                .map_err(|e| anyhow::anyhow!("JWT_SECRET is not usable: {e}"))?,
            decoding: DecodingKey::from_secret(secret.as_bytes())
                .map_err(|e| anyhow::anyhow!("JWT_SECRET is not usable: {e}"))?,
            validation,
            verified: moka::sync::Cache::builder()
                .max_capacity(VERIFIED_TOKENS_MAX)
                // Bounded by the tokens' own lifetime: an entry never outlives its token.
                .time_to_live(std::time::Duration::from_secs(
                    ttl_seconds.max(1) + EXPIRY_LEEWAY_SECONDS,
                ))
                .build(),
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
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenProblem::Expired,
                _ => TokenProblem::Invalid,
            })
    }

    /// The user a token authenticates: [`Keys::verify`], remembered by the token's text
    /// (see `verified`). A remembered token past its expiry is refused as expired, exactly
    /// as checking it again would.
    pub fn authenticate(&self, token: &str) -> Result<AuthUser, TokenProblem> {
        if let Some(known) = self.verified.get(token) {
            let now = jsonwebtoken::get_current_timestamp();
            if known.expires_at_seconds + EXPIRY_LEEWAY_SECONDS < now {
                self.verified.invalidate(token);
                return Err(TokenProblem::Expired);
            }
            return Ok(known.user);
        }
        let claims = self.verify(token)?;
        let user = AuthUser {
            id: claims.sub.parse().map_err(|_| TokenProblem::Invalid)?,
            role: claims.role,
        };
        let known = Verified {
            user,
            expires_at_seconds: claims.exp,
        };
        self.verified.insert(token.to_owned(), known);
        Ok(user)
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
        state
            .keys()
            .authenticate(token.trim())
            .map_err(ApiError::unauthorized)
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

    #[test]
    fn a_remembered_token_answers_as_checking_it_again_would() {
        let keys = Keys::new(SECRET, 3600).unwrap();
        let token = keys.issue(42, Role::Organizer).unwrap();
        let user = keys.authenticate(&token).unwrap();
        assert_eq!((user.id, user.role), (42, Role::Organizer));
        assert!(keys.verified.contains_key(&token), "remembered");
        let again = keys.authenticate(&token).unwrap();
        assert_eq!((again.id, again.role), (42, Role::Organizer));

        // Past its expiry (and the leeway) a remembered token is refused as expired and
        // forgotten.
        let now = jsonwebtoken::get_current_timestamp();
        let lapsed = Verified {
            user,
            expires_at_seconds: now - EXPIRY_LEEWAY_SECONDS - 2,
        };
        keys.verified.insert(token.clone(), lapsed);
        assert_eq!(
            keys.authenticate(&token).unwrap_err(),
            TokenProblem::Expired
        );
        assert!(!keys.verified.contains_key(&token));
    }

    #[test]
    fn failures_are_never_remembered() {
        let keys = Keys::new(SECRET, 3600).unwrap();
        let token = keys.issue(7, Role::Customer).unwrap();
        keys.authenticate(&token).unwrap();
        // The same claims with a tampered signature, and a token of another key.
        let mut forged = token.clone().into_bytes();
        let i = forged.len() - 10;
        forged[i] = if forged[i] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        let other = Keys::new("another-secret-of-at-least-32-bytes!", 3600)
            .unwrap()
            .issue(7, Role::Admin)
            .unwrap();
        for bad in [&forged, &other] {
            assert_eq!(keys.authenticate(bad).unwrap_err(), TokenProblem::Invalid);
            assert!(!keys.verified.contains_key(bad.as_str()));
        }
    }
}
