//! The outermost middleware of every request: its id (`X-Request-Id`, answered on
//! every response), authentication and rate limits ([`crate::auth`]), the audit log,
//! security headers, and the request metrics ([`crate::metrics`]).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use citybrain_model::time::Clock;

use crate::metrics::Metrics;

/// Headers every answer carries: no content sniffing, no framing, no referrer; and,
/// with authentication on, no caching by shared caches of what a caller was shown.
fn secure_headers(h: &mut axum::http::HeaderMap, authenticated: bool, hsts: bool) {
    use axum::http::{header, HeaderValue};
    if hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if authenticated && !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// What the outermost middleware needs.
pub struct Front {
    pub metrics: Arc<Metrics>,
    /// The time audit entries are stamped with (the broker's clock).
    pub clock: Arc<dyn Clock>,
    /// Authentication, when configured.
    pub auth: Option<Arc<citybrain_identity::Authenticator>>,
    /// Per-principal rate limits, when configured.
    pub limiter: Option<Arc<citybrain_identity::RateLimiter>>,
    /// The audit log, when kept.
    pub audit: Option<Arc<citybrain_audit::AuditLog>>,
    /// Served over TLS: tell browsers to keep to HTTPS (`Strict-Transport-Security`).
    pub hsts: bool,
}

/// The outermost middleware: gives each request its id (answered as `X-Request-Id`),
/// authenticates it ([`crate::auth`]) and records its route, status and latency.
pub async fn track(State(front): State<Arc<Front>>, req: Request, next: Next) -> Response {
    let metrics = &front.metrics;
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let id = crate::context::RequestId::of(req.headers());
    let echo = axum::http::HeaderValue::from_str(&id.0).ok();
    // NGSI-LD 6.3.14: a request's `NGSILD-Tenant` is also present in its response.
    let tenant = req.headers().get("ngsild-tenant").cloned();
    let mut req = req;
    req.extensions_mut().insert(id);
    let start = Instant::now();
    let refused = match &front.auth {
        Some(auth) => crate::auth::authenticate(auth, &mut req).await.err(),
        None => None,
    };
    let refused = refused.or_else(|| {
        front
            .limiter
            .as_ref()
            .and_then(|l| crate::auth::limit(l, &req))
    });
    // A write's audit entry goes to the log's writer before the handler runs, so that
    // its fsync overlaps the handler's own write, and the write is answered only once
    // it is durable; its outcome follows as a second entry. A read is recorded after
    // it ran, in one entry with its status, without waiting (it changed nothing).
    let audit = front.audit.as_ref().and_then(|log| {
        let entry = audit_of(&req, &*front.clock)?;
        let write = !matches!(
            *req.method(),
            axum::http::Method::GET | axum::http::Method::HEAD
        );
        let pending = write.then(|| log.submit(entry.clone()));
        Some((log.clone(), entry, pending))
    });
    let credential_refused = refused.is_some();
    let mut resp = match refused {
        Some(r) => r,
        None => crate::problem::problem_of_plain(next.run(req).await).await,
    };
    if let Some(auth) = &front.auth {
        let s = resp.status().as_u16();
        if !credential_refused && (s == 401 || s == 403) {
            auth.stats
                .denied
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    if let Some((log, mut entry, pending)) = audit {
        let status = resp.status().as_u16();
        match pending {
            Some(p) => {
                if let Err(e) = p.wait().await {
                    // Done but not recorded: not acknowledged as a success.
                    resp = axum::response::IntoResponse::into_response(
                        crate::problem::ApiError::of(&e),
                    );
                }
                let outcome = serde_json::json!({
                    "outcome": entry.get("rq").cloned().unwrap_or_default(),
                    "actor": entry["actor"], "status": status,
                });
                log.record(outcome);
            }
            // Reads: by authenticated callers, and refusals of anyone.
            None if entry["actor"] != "anonymous" || matches!(status, 401 | 403 | 429) => {
                entry["status"] = status.into();
                log.record(entry);
            }
            None => {}
        }
    }
    if let Some(v) = echo {
        resp.headers_mut()
            .insert(axum::http::HeaderName::from_static("x-request-id"), v);
    }
    if let Some(t) = tenant {
        resp.headers_mut()
            .insert(axum::http::HeaderName::from_static("ngsild-tenant"), t);
    }
    secure_headers(resp.headers_mut(), front.auth.is_some(), front.hsts);
    metrics.record(
        method,
        route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    resp
}

/// What the audit log records of a request (before it runs): who, what, where; `None`
/// for the operational endpoints.
fn audit_of(req: &Request, clock: &dyn Clock) -> Option<serde_json::Value> {
    let path = req.uri().path();
    if path == crate::routes::HEALTH || path == crate::routes::METRICS {
        return None;
    }
    let anonymous = citybrain_access::Principal::Anonymous;
    let p: &citybrain_access::Principal = req.extensions().get().unwrap_or(&anonymous);
    let rq = req
        .extensions()
        .get::<crate::context::RequestId>()
        .map(|r| r.0.clone());
    let tenant = req
        .headers()
        .get("NGSILD-Tenant")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Some(serde_json::json!({
        "at": citybrain_model::time::format_datetime(&clock.now_precise()),
        "actor": p.actor(),
        "via": p.identity().map(|i| i.via.as_str()),
        "rq": rq,
        "tenant": tenant,
        "method": req.method().as_str(),
        "uri": req.uri().to_string(),
    }))
}
