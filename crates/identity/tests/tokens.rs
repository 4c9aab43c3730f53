#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure
//! OIDC bearer tokens against a JWKS served by the test, with keys the test makes:
//! valid tokens, every refused variant (issuer, audience, expiry, not-before, string
//! dates, `alg: none`, RS/HS confusion, a forged signature), key rotation through a
//! refresh on an unknown `kid`, and the fetch limit that keeps made-up `kid`s from
//! hammering the provider.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use chrono::{TimeZone, Utc};
use citybrain_access::Principal;
use citybrain_identity::{AuthError, Authenticator, Credential, Oidc, OidcSettings};
use citybrain_model::time::ManualClock;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use rsa::pkcs1::EncodeRsaPrivateKey;
use serde_json::{json, Value};

struct Provider {
    base: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

fn rsa_key(kid: &str) -> (EncodingKey, Value) {
    let mut rng = getrandom::SysRng;
    let k = rsa::PrivateKey::new(&mut rng, 2048).unwrap();
    let der = k.to_pkcs1_der().unwrap();
    let enc = EncodingKey::from_rsa_der(der.as_bytes());
    let mut jwk =
        serde_json::to_value(Jwk::from_encoding_key(&enc, Algorithm::RS256).unwrap()).unwrap();
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    (enc, jwk)
}

async fn provider(keys: Vec<Value>) -> Provider {
    use axum::routing::get;
    let keys = Arc::new(Mutex::new(keys));
    let fetches = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (k, f, b) = (keys.clone(), fetches.clone(), base.clone());
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move || {
                let b = b.clone();
                async move { axum::Json(json!({"issuer": b, "jwks_uri": format!("{b}/jwks")})) }
            }),
        )
        .route(
            "/jwks",
            get(move || {
                let (k, f) = (k.clone(), f.clone());
                async move {
                    f.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({"keys": *k.lock()}))
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Provider {
        base,
        keys,
        fetches,
    }
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0).unwrap()
}

fn claims(p: &Provider) -> Value {
    json!({
        "iss": p.base, "aud": ["citybrain", "other"], "sub": "u-42",
        "exp": now().timestamp() + 300, "iat": now().timestamp(),
        "realm_access": {"roles": ["operator", "traffic"]},
        "department": "transport", "tenants": ["traffic"]
    })
}

fn sign(key: &EncodingKey, kid: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

fn auth(p: &Provider, clock: Arc<ManualClock>) -> Authenticator {
    let oidc = Oidc::new(OidcSettings {
        issuer: p.base.clone(),
        audience: vec!["citybrain".into()],
        roles_claim: "realm_access.roles".into(),
        ..Default::default()
    })
    .unwrap();
    Authenticator::new(None, Some(oidc), clock)
}

async fn check(a: &Authenticator, token: &str) -> Result<Principal, AuthError> {
    a.authenticate(Credential::Secret(token)).await
}

#[tokio::test]
async fn tokens_are_validated_against_the_issuers_keys() {
    let (key, jwk) = rsa_key("k1");
    let p = provider(vec![jwk.clone()]).await;
    let clock = Arc::new(ManualClock::new(now()));
    let a = auth(&p, clock.clone());

    let token = sign(&key, "k1", &claims(&p));
    let who = check(&a, &token).await.unwrap();
    let id = who.identity().unwrap();
    assert_eq!(id.id, "u-42");
    assert_eq!(id.roles, ["operator", "traffic"]);
    assert_eq!(id.department.as_deref(), Some("transport"));
    assert_eq!(id.tenants, Some(vec!["traffic".to_string()]));
    assert_eq!(id.via, format!("token:{}", p.base));
    // Discovery, then one JWKS fetch; the second use is served from the caches.
    check(&a, &token).await.unwrap();
    assert_eq!(p.fetches.load(Ordering::SeqCst), 1);

    let refused = |c: Value| sign(&key, "k1", &c);
    let mut c = claims(&p);
    c["iss"] = json!("https://evil.example");
    assert_eq!(
        check(&a, &refused(c)).await,
        Err(AuthError::InvalidClaim("iss"))
    );
    let mut c = claims(&p);
    c["aud"] = json!("someone-else");
    assert_eq!(
        check(&a, &refused(c)).await,
        Err(AuthError::InvalidClaim("aud"))
    );
    let mut c = claims(&p);
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        check(&a, &refused(c)).await,
        Err(AuthError::InvalidClaim("exp"))
    );
    let mut c = claims(&p);
    c["exp"] = json!("99999999999");
    assert!(
        check(&a, &refused(c)).await.is_err(),
        "a string exp is not 'no expiry'"
    );
    let mut c = claims(&p);
    c["nbf"] = json!(now().timestamp() + 120);
    assert_eq!(check(&a, &refused(c)).await, Err(AuthError::NotYetValid));
    let mut c = claims(&p);
    c["nbf"] = json!("later");
    assert_eq!(
        check(&a, &refused(c)).await,
        Err(AuthError::InvalidClaim("nbf"))
    );
    let mut c = claims(&p);
    c.as_object_mut().unwrap().remove("sub");
    assert_eq!(
        check(&a, &refused(c)).await,
        Err(AuthError::InvalidClaim("sub"))
    );

    // Expiry follows the injected clock, leeway (30 s) included, cache or not.
    clock.set(now() + chrono::Duration::seconds(320));
    assert!(check(&a, &token).await.is_ok(), "within the leeway");
    clock.set(now() + chrono::Duration::seconds(400));
    assert_eq!(check(&a, &token).await, Err(AuthError::Expired));
}

#[tokio::test]
async fn forged_tokens_are_refused() {
    let (key, jwk) = rsa_key("k1");
    let p = provider(vec![jwk.clone()]).await;
    let a = auth(&p, Arc::new(ManualClock::new(now())));
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());

    // alg: none, with and without a signature part.
    let body = b64(&claims(&p));
    let none = format!("{}.{body}.", b64(&json!({"alg": "none", "kid": "k1"})));
    assert!(check(&a, &none).await.is_err());
    let none = format!("{}.{body}", b64(&json!({"alg": "none"})));
    assert!(check(&a, &none).await.is_err());

    // RS/HS confusion: HS256 "signed" with the RSA public key as the HMAC secret.
    let public = serde_json::to_vec(&jwk).unwrap();
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("k1".into());
    let hs =
        jsonwebtoken::encode(&h, &claims(&p), &EncodingKey::from_secret(&public).unwrap()).unwrap();
    assert!(matches!(check(&a, &hs).await, Err(AuthError::Algorithm(_))));
    let n = jwk["n"].as_str().unwrap().as_bytes();
    let hs = jsonwebtoken::encode(&h, &claims(&p), &EncodingKey::from_secret(n).unwrap()).unwrap();
    assert!(matches!(check(&a, &hs).await, Err(AuthError::Algorithm(_))));

    // Another key claiming the same kid.
    let (other, _) = rsa_key("k1");
    let forged = sign(&other, "k1", &claims(&p));
    assert_eq!(check(&a, &forged).await, Err(AuthError::Signature));

    // A payload changed after signing.
    let good = sign(&key, "k1", &claims(&p));
    let parts: Vec<&str> = good.split('.').collect();
    let mut c = claims(&p);
    c["realm_access"]["roles"] = json!(["admin"]);
    let tampered = format!("{}.{}.{}", parts[0], b64(&c), parts[2]);
    assert_eq!(check(&a, &tampered).await, Err(AuthError::Signature));

    // Garbage.
    assert!(matches!(
        check(&a, "not-a-jwt").await,
        Err(AuthError::Malformed(_))
    ));
    // An API key without a key store.
    assert_eq!(
        check(&a, "cbk_0123456789abcdef_x").await,
        Err(AuthError::NoKeys)
    );
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_made_up_kids_do_not_hammer_the_provider() {
    let (k1, jwk1) = rsa_key("k1");
    let p = provider(vec![jwk1.clone()]).await;
    let a = auth(&p, Arc::new(ManualClock::new(now())));
    check(&a, &sign(&k1, "k1", &claims(&p))).await.unwrap();
    assert_eq!(p.fetches.load(Ordering::SeqCst), 1);

    // A token naming a kid nobody has: within the minimum refresh interval (30 s) no
    // new fetch, however many such tokens come.
    for i in 0..20 {
        let t = sign(&k1, &format!("made-up-{i}"), &claims(&p));
        assert_eq!(check(&a, &t).await, Err(AuthError::UnknownSigningKey));
    }
    assert_eq!(p.fetches.load(Ordering::SeqCst), 1);

    // The provider rotates: k2 joins. A fresh validator (its minimum interval not
    // spent) refreshes on k2's unknown kid and accepts the token; k1 keeps working.
    let (k2, jwk2) = rsa_key("k2");
    p.keys.lock().push(jwk2);
    let a = auth(&p, Arc::new(ManualClock::new(now())));
    check(&a, &sign(&k1, "k1", &claims(&p))).await.unwrap();
    let before = p.fetches.load(Ordering::SeqCst);
    assert!(check(&a, &sign(&k2, "k2", &claims(&p))).await.is_ok());
    assert_eq!(p.fetches.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn settings_refuse_symmetric_algorithms_and_name_the_field() {
    let bad = OidcSettings {
        issuer: "https://idp".into(),
        audience: vec!["a".into()],
        algorithms: vec!["HS256".into()],
        ..Default::default()
    };
    assert!(Oidc::new(bad).unwrap_err().contains("auth.oidc.algorithms"));
    let bad = OidcSettings {
        issuer: "https://idp".into(),
        ..Default::default()
    };
    assert!(Oidc::new(bad).unwrap_err().contains("auth.oidc.audience"));
}
