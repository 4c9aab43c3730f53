//! OIDC/JWT bearer tokens, validated against the configured issuer's JWKS.
//!
//! - The JWKS is fetched from `jwks_url`, or found through the issuer's
//!   `/.well-known/openid-configuration`; it is cached, refreshed every
//!   `refresh_secs`, and at once when a token names an unknown `kid` (at most once per
//!   `min_refresh_secs`, so that made-up `kid`s cannot turn the server into a load
//!   generator against the identity provider).
//! - Only asymmetric algorithms are accepted, from a configured list (RS256, PS256,
//!   ES256, EdDSA by default): `alg: none` and every HS algorithm are refused before any
//!   key is looked at, and the header's algorithm must belong to the family of the key
//!   it names (and equal the key's own `alg` where the JWKS gives one), which closes
//!   the RS/HS confusion (a token "signed" with the public key as an HMAC secret).
//! - `iss` and `aud` must match; `exp` is required; `exp` and `nbf` are checked here
//!   with the injected clock and a leeway, and must be numbers (a string `exp` is a
//!   refusal, not "no expiry").

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use citybrain_access::{Identity, Scopes};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AuthError;

/// How tokens of one issuer are validated and read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OidcSettings {
    /// The issuer (`iss`), e.g. `https://login.city.example/realms/city`.
    pub issuer: String,
    /// Accepted audiences (`aud`); at least one must be in the token.
    pub audience: Vec<String>,
    /// The JWKS URL; default: discovered from the issuer's OpenID configuration.
    pub jwks_url: Option<String>,
    /// Accepted signature algorithms (asymmetric only).
    pub algorithms: Vec<String>,
    /// Claim naming the user (default `sub`; `preferred_username` reads better in
    /// audit logs where the provider guarantees it is unique).
    pub user_claim: String,
    /// Dotted path of the roles claim (`roles`; Keycloak: `realm_access.roles`).
    pub roles_claim: String,
    /// Dotted path of the department claim.
    pub department_claim: String,
    /// Dotted path of the tenants claim (a list); absent in a token: every tenant.
    pub tenants_claim: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// How often the JWKS is refreshed, in seconds.
    pub refresh_secs: u64,
    /// Least time between two fetches, in seconds (an unknown `kid` triggers one).
    pub min_refresh_secs: u64,
    /// Timeout of one JWKS or discovery fetch, in milliseconds.
    pub fetch_timeout_ms: u64,
}

impl Default for OidcSettings {
    fn default() -> Self {
        Self {
            issuer: String::new(),
            audience: Vec::new(),
            jwks_url: None,
            algorithms: vec![
                "RS256".into(),
                "PS256".into(),
                "ES256".into(),
                "EdDSA".into(),
            ],
            user_claim: "sub".into(),
            roles_claim: "roles".into(),
            department_claim: "department".into(),
            tenants_claim: "tenants".into(),
            leeway_secs: 30,
            refresh_secs: 3600,
            min_refresh_secs: 30,
            fetch_timeout_ms: 5000,
        }
    }
}

impl OidcSettings {
    /// Checks the settings, naming the field at fault.
    pub fn validate(&self) -> Result<Vec<Algorithm>, String> {
        if self.issuer.is_empty() {
            return Err("auth.oidc.issuer: must be set".into());
        }
        if self.audience.is_empty() {
            return Err("auth.oidc.audience: name at least one audience".into());
        }
        let mut algs = Vec::new();
        for a in &self.algorithms {
            let alg: Algorithm = a
                .parse()
                .map_err(|_| format!("auth.oidc.algorithms: unknown algorithm '{a}'"))?;
            if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
                return Err(format!(
                    "auth.oidc.algorithms: '{a}' is symmetric; only public-key algorithms are accepted"
                ));
            }
            algs.push(alg);
        }
        if algs.is_empty() {
            return Err("auth.oidc.algorithms: name at least one algorithm".into());
        }
        Ok(algs)
    }
}

struct Keys {
    by_kid: HashMap<String, (Jwk, Arc<DecodingKey>)>,
    fetched: Option<Instant>,
    jwks_url: Option<String>,
}

/// A validator of one issuer's tokens.
pub struct Oidc {
    settings: OidcSettings,
    algorithms: Vec<Algorithm>,
    http: reqwest::Client,
    keys: tokio::sync::Mutex<()>,
    cache: Mutex<Keys>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.settings.issuer)
            .finish()
    }
}

/// Which key family an algorithm needs.
fn family_fits(alg: Algorithm, key: &Jwk) -> bool {
    use Algorithm::*;
    match &key.algorithm {
        AlgorithmParameters::RSA(_) => {
            matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
        }
        AlgorithmParameters::EllipticCurve(_) => matches!(alg, ES256 | ES384),
        AlgorithmParameters::OctetKeyPair(_) => matches!(alg, EdDSA),
        // Symmetric keys (and key types added later) never verify tokens.
        _ => false,
    }
}

fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(claims, |v, k| v.get(k))
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// A numeric date claim: absent is `None`; anything but a number is an error.
fn numeric_date(claims: &Value, name: &'static str) -> Result<Option<i64>, AuthError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or(AuthError::InvalidClaim(name)),
    }
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> Result<Oidc, String> {
        let algorithms = settings.validate()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.fetch_timeout_ms))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| format!("auth.oidc: HTTP client: {e}"))?;
        Ok(Oidc {
            cache: Mutex::new(Keys {
                by_kid: HashMap::new(),
                fetched: None,
                jwks_url: settings.jwks_url.clone(),
            }),
            settings,
            algorithms,
            http,
            keys: tokio::sync::Mutex::new(()),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    async fn get_json(&self, url: &str) -> Result<Value, AuthError> {
        let fail = |e: String| AuthError::Jwks(format!("{url}: {e}"));
        let r = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !r.status().is_success() {
            return Err(fail(format!("status {}", r.status())));
        }
        r.json().await.map_err(|e| fail(e.to_string()))
    }

    /// Fetches the JWKS (discovering its URL first if needed) and replaces the cache.
    async fn fetch(&self) -> Result<(), AuthError> {
        // Bound first: a guard in the match scrutinee would live through the match.
        let known = self.cache.lock().jwks_url.clone();
        let url = match known {
            Some(u) => u,
            None => {
                let base = self.settings.issuer.trim_end_matches('/');
                let conf = self
                    .get_json(&format!("{base}/.well-known/openid-configuration"))
                    .await?;
                let u = conf
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        AuthError::Jwks("the OpenID configuration has no jwks_uri".into())
                    })?
                    .to_string();
                self.cache.lock().jwks_url = Some(u.clone());
                u
            }
        };
        let set = self.get_json(&url).await?;
        let mut by_kid = HashMap::new();
        for (i, k) in set
            .get("keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            // Keys of other uses or unknown types are skipped, not fatal.
            let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
                continue;
            };
            if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
                continue;
            }
            if let Some(u) = k.get("use").and_then(Value::as_str) {
                if u != "sig" {
                    continue;
                }
            }
            let Ok(dk) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            let kid = jwk.common.key_id.clone().unwrap_or_else(|| format!("#{i}"));
            by_kid.insert(kid, (jwk, Arc::new(dk)));
        }
        tracing::info!(issuer = %self.settings.issuer, keys = by_kid.len(), "JWKS fetched");
        let mut c = self.cache.lock();
        c.by_kid = by_kid;
        c.fetched = Some(Instant::now());
        Ok(())
    }

    /// The key a token names; fetches the JWKS when stale or when the `kid` is unknown.
    async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<(Jwk, Arc<DecodingKey>), AuthError> {
        let lookup = |c: &Keys| -> Option<(Jwk, Arc<DecodingKey>)> {
            match kid {
                Some(k) => c.by_kid.get(k).cloned(),
                // No kid: only unambiguous when one key fits the algorithm.
                None => {
                    let mut fits = c.by_kid.values().filter(|(j, _)| family_fits(alg, j));
                    match (fits.next(), fits.next()) {
                        (Some(one), None) => Some(one.clone()),
                        _ => None,
                    }
                }
            }
        };
        let refresh = Duration::from_secs(self.settings.refresh_secs);
        let min = Duration::from_secs(self.settings.min_refresh_secs);
        {
            let c = self.cache.lock();
            let fresh = c.fetched.is_some_and(|t| t.elapsed() < refresh);
            if fresh {
                if let Some(k) = lookup(&c) {
                    return Ok(k);
                }
                if c.fetched.is_some_and(|t| t.elapsed() < min) {
                    return Err(AuthError::UnknownSigningKey);
                }
            }
        }
        // One fetch at a time; whoever waited re-checks first.
        let _one = self.keys.lock().await;
        {
            let c = self.cache.lock();
            if c.fetched.is_some_and(|t| t.elapsed() < min) {
                return lookup(&c).ok_or(AuthError::UnknownSigningKey);
            }
        }
        if let Err(e) = self.fetch().await {
            tracing::warn!(error = %e, "JWKS fetch failed");
            // Keep serving with the keys we have (the provider may be down briefly).
            let c = self.cache.lock();
            return lookup(&c).ok_or(e);
        }
        let c = self.cache.lock();
        lookup(&c).ok_or(AuthError::UnknownSigningKey)
    }

    /// Validates a token and returns the identity it carries, and its expiry.
    pub async fn validate(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<(Identity, i64), AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed("token"))?;
        // `alg: none` does not even parse as an Algorithm; HS* are refused here.
        if !self.algorithms.contains(&header.alg) {
            return Err(AuthError::Algorithm(format!("{:?}", header.alg)));
        }
        let (jwk, key) = self.key(header.kid.as_deref(), header.alg).await?;
        if !family_fits(header.alg, &jwk) {
            return Err(AuthError::Algorithm(format!(
                "{:?} does not fit the key's type",
                header.alg
            )));
        }
        if let Some(ka) = &jwk.common.key_algorithm {
            if format!("{ka:?}") != format!("{:?}", header.alg) {
                return Err(AuthError::Algorithm(format!(
                    "{:?} is not the key's algorithm",
                    header.alg
                )));
            }
        }
        let mut v = Validation::new(header.alg);
        // exp and nbf are checked below with the injected clock.
        v.validate_exp = false;
        v.validate_nbf = false;
        v.required_spec_claims = ["exp", "iss", "aud"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.set_issuer(&[&self.settings.issuer]);
        v.set_audience(&self.settings.audience);
        let data = jsonwebtoken::decode::<Value>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidIssuer => AuthError::InvalidClaim("iss"),
                K::InvalidAudience => AuthError::InvalidClaim("aud"),
                K::MissingRequiredClaim(c) if c == "exp" => AuthError::InvalidClaim("exp"),
                K::MissingRequiredClaim(_) => AuthError::InvalidClaim("iss"),
                K::InvalidSignature => AuthError::Signature,
                K::InvalidAlgorithm => AuthError::Algorithm(format!("{:?}", header.alg)),
                _ => AuthError::Malformed("token"),
            }
        })?;
        let claims = data.claims;
        let leeway = self.settings.leeway_secs as i64;
        let now_s = now.timestamp();
        let exp = numeric_date(&claims, "exp")?.ok_or(AuthError::InvalidClaim("exp"))?;
        if now_s > exp + leeway {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = numeric_date(&claims, "nbf")? {
            if now_s + leeway < nbf {
                return Err(AuthError::NotYetValid);
            }
        }
        let user = claim(&claims, &self.settings.user_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(AuthError::InvalidClaim("sub"))?;
        let tenants = claim(&claims, &self.settings.tenants_claim).map(|v| strings(Some(v)));
        // `scope` entries `citybrain:read|write|admin` narrow the token; without any,
        // the roles and policies alone decide.
        let scoped: Vec<String> = strings(claims.get("scope"))
            .into_iter()
            .filter_map(|s| s.strip_prefix("citybrain:").map(str::to_string))
            .collect();
        let scopes = if scoped.is_empty() {
            Scopes::ALL
        } else {
            Scopes::parse(&scoped).map_err(|_| AuthError::InvalidClaim("scope"))?
        };
        Ok((
            Identity {
                id: user.to_string(),
                roles: strings(claim(&claims, &self.settings.roles_claim)),
                department: claim(&claims, &self.settings.department_claim)
                    .and_then(Value::as_str)
                    .map(str::to_string),
                tenants,
                scopes,
                via: format!("token:{}", self.settings.issuer),
            },
            exp,
        ))
    }
}
