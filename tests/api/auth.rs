use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::helpers::{data, error_code, error_message, spawn_app};

const SECRET: &str = "test-secret-test-secret-test-secret";

#[tokio::test]
async fn register_then_me_and_login() {
    let app = spawn_app().await;
    let body = json!({"email": "ada@example.com", "password": "analytical", "firstName": "Ada", "lastName": "L"});
    let registered = app.post("/auth/register", None, body.clone()).await;
    assert_eq!(registered.status(), 201);
    let registered = data(registered).await;
    assert_eq!(registered["user"]["role"], "CUSTOMER");
    let token = registered["accessToken"].as_str().unwrap();
    let me = data(app.get_as("/auth/me", token).await).await;
    assert_eq!(me["email"], "ada@example.com");

    // The same email again, in any case, is taken.
    let again = app
        .post(
            "/auth/register",
            None,
            json!({"email": "ADA@example.com", "password": "something"}),
        )
        .await;
    assert_eq!(again.status(), 409);
    assert_eq!(error_code(again).await, "EMAIL_TAKEN");

    let login = app
        .post(
            "/auth/login",
            None,
            json!({"email": "ada@example.com", "password": "analytical"}),
        )
        .await;
    assert_eq!(login.status(), 200);
    let login = data(login).await;
    assert!(login["accessToken"].is_string());
    assert_eq!(login["expiresIn"], 3600);

    // Passwords are stored as argon2id hashes, never in clear.
    let hash: String =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE email = 'ada@example.com'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn registration_input_is_validated() {
    let app = spawn_app().await;
    for (body, code) in [
        (
            json!({"email": "not-an-email", "password": "longenough"}),
            "VALIDATION_FAILED",
        ),
        (
            json!({"email": "a@example.com", "password": "short"}),
            "VALIDATION_FAILED",
        ),
        (json!({"email": "a@example.com"}), "VALIDATION_FAILED"),
        (
            json!({"email": 5, "password": "longenough"}),
            "VALIDATION_FAILED",
        ),
    ] {
        let response = app.post("/auth/register", None, body.clone()).await;
        assert_eq!(response.status(), 422, "{body}");
        assert_eq!(error_code(response).await, code);
    }
    let malformed = app
        .client
        .post(format!("{}/auth/register", app.address))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(error_code(malformed).await, "MALFORMED_JSON");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn repeated_failed_logins_are_throttled() {
    let app = spawn_app().await;
    boxoffice::users::upsert(
        &app.db.pool,
        "victim@example.com",
        "the-real-one",
        "CUSTOMER",
        "",
        "",
    )
    .await
    .unwrap();
    for _ in 0..5 {
        let r = app
            .post(
                "/auth/login",
                None,
                json!({"email": "victim@example.com", "password": "guess"}),
            )
            .await;
        assert_eq!(r.status(), 401);
        assert_eq!(error_code(r).await, "INVALID_CREDENTIALS");
    }
    // Locked now, even with the right password: guessing cannot continue.
    let r = app
        .post(
            "/auth/login",
            None,
            json!({"email": "victim@example.com", "password": "the-real-one"}),
        )
        .await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(error_code(r).await, "TOO_MANY_ATTEMPTS");
    // An unknown account answers exactly like a wrong password.
    let r = app
        .post(
            "/auth/login",
            None,
            json!({"email": "nobody@example.com", "password": "guess"}),
        )
        .await;
    assert_eq!(r.status(), 401);
    app.stop().await.unwrap();
}

fn token(claims: serde_json::Value, secret: &str, alg: Algorithm) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn forged_expired_and_malformed_tokens_are_refused() {
    let app = spawn_app().await;
    let (user_id, _) = app.user("ADMIN").await;
    let now = jsonwebtoken::get_current_timestamp();
    let good = json!({"sub": user_id.to_string(), "role": "ADMIN", "iss": "boxoffice", "aud": "boxoffice-api", "iat": now, "exp": now + 600});
    assert_eq!(
        app.get_as("/auth/me", &token(good.clone(), SECRET, Algorithm::HS256))
            .await
            .status(),
        200
    );

    let mut cases = Vec::new();
    cases.push((
        "wrong key",
        token(
            good.clone(),
            "another-secret-another-secret-xx",
            Algorithm::HS256,
        ),
    ));
    let mut c = good.clone();
    c["iss"] = json!("someone-else");
    cases.push(("wrong issuer", token(c, SECRET, Algorithm::HS256)));
    let mut c = good.clone();
    c["aud"] = json!("another-api");
    cases.push(("wrong audience", token(c, SECRET, Algorithm::HS256)));
    let mut c = good.clone();
    c["exp"] = json!(now - 3600);
    cases.push(("expired", token(c, SECRET, Algorithm::HS256)));
    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("exp");
    cases.push(("no expiry", token(c, SECRET, Algorithm::HS256)));
    cases.push((
        "other algorithm",
        token(good.clone(), SECRET, Algorithm::HS512),
    ));
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    cases.push((
        "alg none",
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&good)
        ),
    ));
    cases.push(("garbage", "not.a.token".to_string()));

    for (what, t) in cases {
        let r = app.get_as("/auth/me", &t).await;
        assert_eq!(r.status(), 401, "{what} must be refused");
        let challenge = r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            challenge.starts_with("Bearer ") && challenge.contains(r#"error="invalid_token""#),
            "{what}: RFC 6750 challenge, got {challenge}"
        );
        // Only a genuine token past its expiry is told it expired.
        assert_eq!(
            challenge.contains("expired"),
            what == "expired",
            "{what}: {challenge}"
        );
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "UNAUTHORIZED");
        assert_eq!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("expired"),
            what == "expired",
            "{what}: {body}"
        );
    }
    let r = app.get("/auth/me").await;
    assert_eq!(r.status(), 401, "no token");
    assert_eq!(
        r.headers()["www-authenticate"],
        r#"Bearer realm="boxoffice""#
    );
    assert!(error_message(r).await.contains("Authorization: Bearer"));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_verified_password_is_remembered_until_it_changes_and_a_wrong_one_never_is() {
    let app = spawn_app().await;
    let pool = &app.db.pool;
    boxoffice::users::upsert(
        pool,
        "box@example.com",
        "first password",
        "CUSTOMER",
        "",
        "",
    )
    .await
    .unwrap();
    let login = |password: &'static str| {
        app.post(
            "/auth/login",
            None,
            json!({"email": "box@example.com", "password": password}),
        )
    };
    let (argon_before, remembered_before) = (
        checks(&app, "argon2").await,
        checks(&app, "remembered").await,
    );
    for _ in 0..3 {
        assert_eq!(login("first password").await.status(), 200);
    }
    assert_eq!(login("wrong password").await.status(), 401);
    assert_eq!(login("wrong password").await.status(), 401);
    // One full check for the right password, then remembered; every wrong one checked.
    assert_eq!(checks(&app, "argon2").await - argon_before, 3.0);
    assert_eq!(checks(&app, "remembered").await - remembered_before, 2.0);
    // A new password: the old one no longer signs in, remembered or not.
    boxoffice::users::upsert(
        pool,
        "box@example.com",
        "second password",
        "CUSTOMER",
        "",
        "",
    )
    .await
    .unwrap();
    assert_eq!(login("first password").await.status(), 401);
    assert_eq!(login("second password").await.status(), 200);
}

/// Password checks so far, by how they were decided.
async fn checks(app: &crate::helpers::TestApp, check: &str) -> f64 {
    let text = app.get("/metrics").await.text().await.unwrap();
    let series = format!("boxoffice_login_checks_total{{check=\"{check}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.trim().parse::<f64>().ok())
        .unwrap_or(0.0)
}
