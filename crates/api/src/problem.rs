//! The one table from error kinds to HTTP statuses and NGSI-LD ProblemDetails types.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use citybrain_model::{ErrorCode, ErrorKind};
use serde_json::json;

/// Status, type URI and title of an error kind.
pub fn describe(kind: ErrorKind) -> (StatusCode, &'static str, &'static str) {
    match kind {
        ErrorKind::BadRequestData => (
            StatusCode::BAD_REQUEST,
            "https://uri.etsi.org/ngsi-ld/errors/BadRequestData",
            "Bad request data",
        ),
        ErrorKind::InvalidRequest => (
            StatusCode::BAD_REQUEST,
            "https://uri.etsi.org/ngsi-ld/errors/InvalidRequest",
            "Invalid request",
        ),
        ErrorKind::AlreadyExists => (
            StatusCode::CONFLICT,
            "https://uri.etsi.org/ngsi-ld/errors/AlreadyExists",
            "Already exists",
        ),
        ErrorKind::ResourceNotFound => (
            StatusCode::NOT_FOUND,
            "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound",
            "Resource not found",
        ),
        ErrorKind::OperationNotSupported => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "https://uri.etsi.org/ngsi-ld/errors/OperationNotSupported",
            "Operation not supported",
        ),
        ErrorKind::TooManyResults => (
            StatusCode::FORBIDDEN,
            "https://uri.etsi.org/ngsi-ld/errors/TooManyResults",
            "Too many results",
        ),
        ErrorKind::LdContextNotAvailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "https://uri.etsi.org/ngsi-ld/errors/LdContextNotAvailable",
            "@context not available",
        ),
        ErrorKind::NonexistentTenant => (
            StatusCode::NOT_FOUND,
            "https://uri.etsi.org/ngsi-ld/errors/NonexistentTenant",
            "Nonexistent tenant",
        ),
        ErrorKind::InternalError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "https://uri.etsi.org/ngsi-ld/errors/InternalError",
            "Internal error",
        ),
        ErrorKind::Unauthenticated => (
            StatusCode::UNAUTHORIZED,
            "https://citybrain.example/errors/Unauthenticated",
            "Authentication required",
        ),
        ErrorKind::Forbidden => (
            StatusCode::FORBIDDEN,
            "https://citybrain.example/errors/Forbidden",
            "Not allowed",
        ),
        ErrorKind::Conflict => (
            StatusCode::CONFLICT,
            "https://citybrain.example/errors/Conflict",
            "The request conflicts with the current state",
        ),
        ErrorKind::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "https://citybrain.example/errors/Unavailable",
            "The data could not be stored",
        ),
        ErrorKind::TooManyRequests => (
            StatusCode::TOO_MANY_REQUESTS,
            "https://citybrain.example/errors/TooManyRequests",
            "Too many requests",
        ),
        ErrorKind::InsufficientStorage => (
            StatusCode::INSUFFICIENT_STORAGE,
            "https://citybrain.example/errors/InsufficientStorage",
            "The server is out of storage",
        ),
        ErrorKind::LoopDetected => (
            StatusCode::LOOP_DETECTED,
            "https://uri.etsi.org/ngsi-ld/errors/LoopDetected",
            "Loop detected",
        ),
    }
}

/// The base of citybrain's own problem type URIs (`ErrorCode::problem_type`).
pub const PLATFORM_TYPES: &str = "https://citybrain.example/errors/";

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub detail: String,
    /// Overrides the kind's status: only for HTTP-level refusals made in this crate
    /// (413, 415, 406, 405); domain errors take their status from [`describe`].
    pub status: Option<StatusCode>,
    /// The rare parts, boxed so that `Result<T, ApiError>` stays small.
    pub extra: Option<Box<Extra>>,
}

/// A more specific problem type than the kind's, and extension members.
#[derive(Debug, Default)]
pub struct Extra {
    /// Type URI suffix (under [`PLATFORM_TYPES`]) and title.
    pub problem_type: Option<(&'static str, &'static str)>,
    pub extensions: serde_json::Map<String, serde_json::Value>,
    /// Headers the error answer carries (`NGSILD-Warning`s of distributed operations).
    pub headers: Vec<(axum::http::HeaderName, String)>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            status: None,
            extra: None,
        }
    }

    /// The one mapping of a domain error: its kind, public detail, problem type and
    /// extension members. Server-side failures are logged here with their cause.
    pub fn of<E: ErrorCode + ?Sized>(e: &E) -> Self {
        let kind = e.kind();
        if matches!(
            kind,
            ErrorKind::InternalError | ErrorKind::Unavailable | ErrorKind::InsufficientStorage
        ) {
            tracing::error!(error = %e, "request failed in the server");
        }
        let problem_type = e.problem_type();
        let extensions = e.extensions();
        let extra = (problem_type.is_some() || !extensions.is_empty()).then(|| {
            Box::new(Extra {
                problem_type,
                extensions,
                headers: Vec::new(),
            })
        });
        ApiError {
            kind,
            detail: e.public_detail(),
            status: None,
            extra,
        }
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        self.status.unwrap_or(describe(self.kind).0)
    }
    pub fn with_status(mut self, s: StatusCode) -> Self {
        self.status = Some(s);
        self
    }
    /// Adds a header to the error answer.
    pub fn with_header(mut self, name: axum::http::HeaderName, value: String) -> Self {
        self.extra
            .get_or_insert_with(Box::default)
            .headers
            .push((name, value));
        self
    }
    pub fn bad_data(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequestData, detail)
    }
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, detail)
    }
    /// The ProblemDetails body.
    pub fn body(&self) -> serde_json::Value {
        let (_, ty, title) = describe(self.kind);
        let status = self.status();
        let extra = self.extra.as_deref();
        let mut body = match extra.and_then(|x| x.problem_type) {
            Some((suffix, title)) => json!({
                "type": format!("{PLATFORM_TYPES}{suffix}"),
                "title": title,
                "status": status.as_u16(),
                "detail": self.detail,
            }),
            None => {
                json!({"type": ty, "title": title, "status": status.as_u16(), "detail": self.detail})
            }
        };
        if let (Some(obj), Some(x)) = (body.as_object_mut(), extra) {
            for (k, v) in &x.extensions {
                obj.insert(k.clone(), v.clone());
            }
        }
        body
    }
}

impl<E: ErrorCode> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError::of(&e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(kind = ?self.kind, detail = %self.detail, "request failed");
        } else {
            tracing::debug!(kind = ?self.kind, detail = %self.detail, "request rejected");
        }
        let mut resp = (status, self.body().to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.extra.iter().flat_map(|x| &x.headers) {
            if let Ok(v) = HeaderValue::from_str(value) {
                resp.headers_mut().append(name.clone(), v);
            }
        }
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: how to authenticate (an API key is sent as a bearer token too).
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"citybrain\""),
            );
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Axum's own refusals (a path value that is not UTF-8, a body over the size limit, a
/// query string its extractor cannot read) answer plain text; every refusal of this
/// server is a ProblemDetails body, so the outermost layer rewrites them here, once for
/// every route. Only error answers in `text/plain` are touched (no handler of this
/// crate answers one), and only their first 4 KiB is read.
pub async fn problem_of_plain(resp: Response) -> Response {
    let status = resp.status();
    let plain = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("text/plain"));
    if !plain || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let kind = match status {
        StatusCode::BAD_REQUEST => ErrorKind::BadRequestData,
        StatusCode::NOT_FOUND => ErrorKind::ResourceNotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorKind::OperationNotSupported,
        StatusCode::TOO_MANY_REQUESTS => ErrorKind::TooManyRequests,
        s if s.is_server_error() => ErrorKind::InternalError,
        _ => ErrorKind::InvalidRequest,
    };
    let reason = status.canonical_reason().unwrap_or("refused");
    let detail = if status.is_server_error() {
        // A framework's own server-side text names internals: logged, not shown.
        tracing::error!(%status, text = %text.trim(), "a plain-text server error");
        reason.to_string()
    } else {
        match text.trim() {
            "" => reason.to_string(),
            t => t.to_string(),
        }
    };
    let mut out = ApiError::new(kind, detail)
        .with_status(status)
        .into_response();
    // What the refusal said besides its text (`Allow`, `Retry-After`, …) stays.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    out
}
