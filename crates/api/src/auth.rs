//! Authentication of every request, in the outermost layer (`front::track`, after
//! the request id is set, before every family): the credential (`Authorization: Bearer …` with an API key or an OIDC
//! token, or `X-API-Key`) becomes the request's [`Principal`](citybrain_access::Principal),
//! which [`context_of`](crate::context::context_of) puts in every family's context. No
//! credential is the anonymous principal, whose rights the policies decide; a
//! credential that fails is a 401 at once, never a fall-back to anonymous.

use axum::extract::Request;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use citybrain_identity::{AuthError, Authenticator, Credential};

use crate::problem::ApiError;

/// The presented secret, owned (the request, whose body is not `Sync`, must not be
/// borrowed across the await).
fn secret_of(headers: &HeaderMap) -> Result<Option<String>, AuthError> {
    let text = |name: &str| -> Result<Option<&str>, AuthError> {
        headers
            .get(name)
            .map(|v| v.to_str())
            .transpose()
            .map_err(|_| AuthError::Malformed("credential header"))
    };
    Ok(
        match Credential::from_http(text("authorization")?, text("x-api-key")?)? {
            Credential::Secret(s) => Some(s.to_string()),
            Credential::None => None,
        },
    )
}

/// Puts the request's principal in its extensions, or answers the refusal.
pub async fn authenticate(auth: &Authenticator, req: &mut Request) -> Result<(), Response> {
    let secret = secret_of(req.headers()).map_err(refuse)?;
    let credential = match &secret {
        Some(s) => Credential::Secret(s),
        None => Credential::None,
    };
    let p = auth.authenticate(credential).await.map_err(refuse)?;
    req.extensions_mut().insert(p);
    Ok(())
}

/// Takes the request from its principal's rate budget; the refusal (429 with
/// `Retry-After`) when it is spent.
pub fn limit(l: &citybrain_identity::RateLimiter, req: &Request) -> Option<Response> {
    let anonymous = citybrain_access::Principal::Anonymous;
    let p = req.extensions().get().unwrap_or(&anonymous);
    l.take(p, std::time::Instant::now()).err().map(|wait| {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        tracing::debug!(actor = %p.actor(), secs, "rate limit reached");
        let mut r = ApiError::new(
            citybrain_model::ErrorKind::TooManyRequests,
            format!("{} is over its request rate; retry in {secs} s", p.actor()),
        )
        .into_response();
        r.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(secs),
        );
        r
    })
}

fn refuse(e: AuthError) -> Response {
    tracing::info!(reason = e.reason(), error = %e, "credential refused");
    ApiError::of(&e).into_response()
}
