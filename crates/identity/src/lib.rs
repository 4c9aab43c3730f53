//! Who is calling: one [`Authenticator`] for every protocol (HTTP headers, MQTT
//! passwords) over two kinds of credential:
//! - API keys ([`keys`]), made by `citybrain keys create` or `citybrain bootstrap`;
//! - OIDC/JWT bearer tokens of a configured issuer ([`oidc`]).
//!
//! The result is a [`Principal`]: [`Principal::Anonymous`] when no credential was
//! presented (what an anonymous caller may do is for the policies to say), a user
//! otherwise. A credential that is presented and fails is an error, never a silent
//! fall-back to anonymous.

pub mod keys;
pub mod limit;
pub mod oidc;
pub mod tls;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use citybrain_access::Principal;
use citybrain_model::time::Clock;
use citybrain_model::{ErrorCode, ErrorKind};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

pub use keys::{ApiKey, KeyStore, NewKey, KEY_PREFIX};
pub use limit::{Rate, RateLimiter};
pub use oidc::{Oidc, OidcSettings};

/// Why a presented credential was refused. The detail told to clients is deliberately
/// coarse for unknown keys (no oracle on which key ids exist).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the {0} is malformed")]
    Malformed(&'static str),
    #[error("unknown or wrong API key")]
    UnknownKey,
    #[error("the API key is revoked")]
    Revoked,
    #[error("the credential has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's '{0}' claim is missing or wrong")]
    InvalidClaim(&'static str),
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token's algorithm is not accepted: {0}")]
    Algorithm(String),
    #[error("the token's signing key is not known to the issuer's JWKS")]
    UnknownSigningKey,
    #[error("the identity provider's keys could not be fetched: {0}")]
    Jwks(String),
    #[error("bearer tokens are not accepted: no OIDC issuer is configured")]
    NoIssuer,
    #[error("API keys are not accepted here")]
    NoKeys,
}

impl AuthError {
    /// A short reason for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Malformed(_) => "malformed",
            AuthError::UnknownKey => "unknown_key",
            AuthError::Revoked => "revoked",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::InvalidClaim(_) => "invalid_claim",
            AuthError::Signature => "signature",
            AuthError::Algorithm(_) => "algorithm",
            AuthError::UnknownSigningKey => "unknown_signing_key",
            AuthError::Jwks(_) => "jwks_unavailable",
            AuthError::NoIssuer | AuthError::NoKeys => "not_configured",
        }
    }
}

impl ErrorCode for AuthError {
    fn kind(&self) -> ErrorKind {
        match self {
            // The provider being unreachable is our failure, not the caller's.
            AuthError::Jwks(_) => ErrorKind::Unavailable,
            _ => ErrorKind::Unauthenticated,
        }
    }

    fn public_detail(&self) -> String {
        match self {
            AuthError::Jwks(_) => "the identity provider cannot be reached; retry shortly".into(),
            e => e.to_string(),
        }
    }
}

/// Errors of key management and configuration.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0}")]
    Invalid(String),
    #[error("no API key with id {0}")]
    NotFound(String),
    #[error("{0}")]
    Io(String),
    /// The key store's disk is full (507; nothing changed).
    #[error("{0}")]
    DiskFull(String),
}

impl IdentityError {
    fn io(path: &std::path::Path, e: std::io::Error) -> IdentityError {
        let msg = format!("{}: {e}", path.display());
        if matches!(
            e.kind(),
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
        ) {
            IdentityError::DiskFull(msg)
        } else {
            IdentityError::Io(msg)
        }
    }
}

impl ErrorCode for IdentityError {
    fn kind(&self) -> ErrorKind {
        match self {
            IdentityError::Invalid(_) => ErrorKind::BadRequestData,
            IdentityError::NotFound(_) => ErrorKind::ResourceNotFound,
            IdentityError::Io(_) => ErrorKind::InternalError,
            IdentityError::DiskFull(_) => ErrorKind::InsufficientStorage,
        }
    }
    fn public_detail(&self) -> String {
        match self {
            IdentityError::Io(_) => "the key store could not be written".into(),
            IdentityError::DiskFull(_) => {
                "the server's disk is full; the key store was not changed".into()
            }
            e => e.to_string(),
        }
    }
}

/// A credential as a protocol presents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    None,
    /// An API key (`cbk_…`) or a JWT, told apart by the key prefix.
    Secret(&'a str),
}

impl<'a> Credential<'a> {
    /// From HTTP headers' values: `Authorization: Bearer …` (or `ApiKey …`), else
    /// `X-API-Key`. A malformed `Authorization` header is an error.
    pub fn from_http(
        authorization: Option<&'a str>,
        api_key: Option<&'a str>,
    ) -> Result<Credential<'a>, AuthError> {
        if let Some(a) = authorization {
            let (scheme, value) = a
                .trim()
                .split_once(' ')
                .ok_or(AuthError::Malformed("Authorization header"))?;
            let value = value.trim();
            if value.is_empty() {
                return Err(AuthError::Malformed("Authorization header"));
            }
            return if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("apikey")
            {
                Ok(Credential::Secret(value))
            } else {
                Err(AuthError::Malformed("Authorization header (use Bearer)"))
            };
        }
        match api_key.map(str::trim) {
            Some(k) if !k.is_empty() => Ok(Credential::Secret(k)),
            Some(_) => Err(AuthError::Malformed("X-API-Key header")),
            None => Ok(Credential::None),
        }
    }
}

/// Counters of authentication, by outcome (read by `/metrics`).
#[derive(Debug, Default)]
pub struct AuthStats {
    pub ok: AtomicU64,
    pub failed: Mutex<HashMap<&'static str, u64>>,
    /// Requests refused after authentication (401 to anonymous callers, 403).
    pub denied: AtomicU64,
}

impl AuthStats {
    /// Refused credentials and refused requests so far (what a burst is judged on).
    pub fn refusals(&self) -> u64 {
        self.failed.lock().values().sum::<u64>() + self.denied.load(Ordering::Relaxed)
    }
}

pub mod metric {
    use citybrain_telemetry::MetricDef;
    pub static AUTHENTICATED: MetricDef = MetricDef::counter(
        "auth_authenticated",
        "Requests and MQTT connections that presented a valid credential",
    );
    pub static FAILED: MetricDef =
        MetricDef::counter("auth_failed", "Presented credentials refused, by reason");
    pub static DENIED: MetricDef = MetricDef::counter(
        "auth_denied",
        "Requests refused by the access policies (401 to anonymous callers, 403)",
    );
}

impl citybrain_telemetry::Metrics for AuthStats {
    fn visit(&self, out: &mut dyn FnMut(&'static citybrain_telemetry::MetricDef, f64)) {
        out(
            &metric::AUTHENTICATED,
            self.ok.load(Ordering::Relaxed) as f64,
        );
        out(&metric::DENIED, self.denied.load(Ordering::Relaxed) as f64);
    }

    fn visit_labelled(
        &self,
        out: &mut dyn FnMut(
            &'static citybrain_telemetry::MetricDef,
            citybrain_telemetry::Labels<'_>,
            f64,
        ),
    ) {
        for (reason, n) in self.failed.lock().iter() {
            out(&metric::FAILED, &[("reason", reason)], *n as f64);
        }
    }
}

/// Validated tokens kept until they expire, so that a client sending the same token
/// on every request costs one hash, not one signature verification.
const TOKEN_CACHE: usize = 10_000;

/// Authenticates credentials against the key store and the OIDC issuer.
pub struct Authenticator {
    keys: Option<Arc<KeyStore>>,
    oidc: Option<Oidc>,
    clock: Arc<dyn Clock>,
    tokens: Mutex<HashMap<[u8; 32], (Principal, i64)>>,
    pub stats: Arc<AuthStats>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.keys.is_some())
            .field("oidc", &self.oidc)
            .finish()
    }
}

impl Authenticator {
    pub fn new(keys: Option<Arc<KeyStore>>, oidc: Option<Oidc>, clock: Arc<dyn Clock>) -> Self {
        Authenticator {
            keys,
            oidc,
            clock,
            tokens: Mutex::new(HashMap::new()),
            stats: Arc::new(AuthStats::default()),
        }
    }

    pub fn keys(&self) -> Option<&Arc<KeyStore>> {
        self.keys.as_ref()
    }

    /// Whether any credential can be checked (keys exist, or an issuer is configured).
    pub fn configured(&self) -> bool {
        self.oidc.is_some() || self.keys.as_ref().is_some_and(|k| !k.is_empty())
    }

    /// The principal a credential proves.
    pub async fn authenticate(&self, credential: Credential<'_>) -> Result<Principal, AuthError> {
        let r = self.check(credential).await;
        match &r {
            Ok(Principal::Anonymous) => {}
            Ok(_) => {
                self.stats.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                *self.stats.failed.lock().entry(e.reason()).or_default() += 1;
            }
        }
        r
    }

    async fn check(&self, credential: Credential<'_>) -> Result<Principal, AuthError> {
        let secret = match credential {
            Credential::None => return Ok(Principal::Anonymous),
            Credential::Secret(s) => s,
        };
        let now = self.clock.now();
        if secret.starts_with(KEY_PREFIX) {
            let keys = self.keys.as_ref().ok_or(AuthError::NoKeys)?;
            return Ok(Principal::User(keys.verify(secret, now)?));
        }
        let oidc = self.oidc.as_ref().ok_or(AuthError::NoIssuer)?;
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if let Some((p, exp)) = self.tokens.lock().get(&digest) {
            if now.timestamp() <= *exp {
                return Ok(p.clone());
            }
        }
        let (identity, exp) = oidc.validate(secret, now).await?;
        let p = Principal::User(Arc::new(identity));
        let mut cache = self.tokens.lock();
        if cache.len() >= TOKEN_CACHE {
            let t = now.timestamp();
            cache.retain(|_, (_, e)| *e >= t);
            if cache.len() >= TOKEN_CACHE {
                cache.clear();
            }
        }
        // Cached only until `exp` (no leeway): past it, the full check runs again.
        cache.insert(digest, (p.clone(), exp));
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_credentials_are_read_from_either_header() {
        assert_eq!(Credential::from_http(None, None), Ok(Credential::None));
        assert_eq!(
            Credential::from_http(Some("Bearer abc"), None),
            Ok(Credential::Secret("abc"))
        );
        assert_eq!(
            Credential::from_http(Some("bearer   abc "), Some("ignored")),
            Ok(Credential::Secret("abc"))
        );
        assert_eq!(
            Credential::from_http(None, Some("cbk_x")),
            Ok(Credential::Secret("cbk_x"))
        );
        assert!(Credential::from_http(Some("Basic dXNlcjpwdw=="), None).is_err());
        assert!(Credential::from_http(Some("Bearer"), None).is_err());
        assert!(Credential::from_http(Some("Bearer  "), None).is_err());
    }
}
