//! Typed errors of the information model. The API layer maps each kind to an NGSI-LD
//! ProblemDetails type and status in one table (`citybrain-api::problem`).

use thiserror::Error;

/// What went wrong, in NGSI-LD's vocabulary of error kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request was well formed but the data in it is wrong (a field, a type, a value).
    BadRequestData,
    /// The request itself is malformed (syntax, media type rules, parameters).
    InvalidRequest,
    AlreadyExists,
    ResourceNotFound,
    OperationNotSupported,
    TooManyResults,
    LdContextNotAvailable,
    NonexistentTenant,
    InternalError,
}

/// A model error: a kind plus a human-readable detail that names the offending field.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{kind:?}: {detail}")]
pub struct ModelError {
    pub kind: ErrorKind,
    pub detail: String,
}

impl ModelError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
    pub fn bad_data(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequestData, detail)
    }
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceNotFound, detail)
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
