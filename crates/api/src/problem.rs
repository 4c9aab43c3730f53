//! The one table from error kinds to HTTP statuses and NGSI-LD ProblemDetails types.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use citybrain_broker::BrokerError;
use citybrain_model::{ErrorKind, ModelError};
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
    }
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub detail: String,
    /// Overrides the kind's status (413, 415, 406, 405).
    pub status: Option<StatusCode>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            status: None,
        }
    }
    pub fn with_status(mut self, s: StatusCode) -> Self {
        self.status = Some(s);
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
        let (status, ty, title) = describe(self.kind);
        let status = self.status.unwrap_or(status);
        json!({"type": ty, "title": title, "status": status.as_u16(), "detail": self.detail})
    }
}

impl ApiError {
    pub fn from_ref(e: &BrokerError) -> Self {
        if let BrokerError::Store(inner) = e {
            tracing::error!(error = %inner, "storage error");
        }
        ApiError::new(e.kind(), e.public_detail())
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        ApiError::from_ref(&e)
    }
}

impl From<citybrain_ingest::IngestError> for ApiError {
    fn from(e: citybrain_ingest::IngestError) -> Self {
        use citybrain_ingest::IngestError as E;
        match e {
            E::UnknownSource(_) | E::UnknownTopic(_) | E::NoSuchLetter(_) => {
                ApiError::new(ErrorKind::ResourceNotFound, e.to_string())
            }
            E::Mapping(m) => ApiError::bad_data(m.to_string()),
            E::Store(detail) => {
                tracing::error!(%detail, "ingest: the store failed; nothing was acknowledged");
                ApiError::new(
                    ErrorKind::InternalError,
                    "the data could not be stored; nothing of it was acknowledged, send it again",
                )
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
            }
            E::DeadLetters(inner) => {
                tracing::error!(error = %inner, "ingest: dead-letter store failed");
                ApiError::new(
                    ErrorKind::InternalError,
                    "internal storage error; see the server log",
                )
            }
        }
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        ApiError::new(e.kind, e.detail)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _, _) = describe(self.kind);
        let status = self.status.unwrap_or(status);
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
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
