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
    // Platform kinds (not in NGSI-LD's list; the API gives them citybrain type URIs).
    /// The caller must authenticate (401).
    Unauthenticated,
    /// The caller may not do this (403).
    Forbidden,
    /// The request conflicts with the current state of a resource (409): an incident
    /// that cannot make a move, a task that waits for others, an area in use.
    Conflict,
    /// The server could not store the data; nothing was acknowledged and the client
    /// should send it again (503).
    Unavailable,
    /// The caller is over its rate limit and should come back later (429).
    TooManyRequests,
    /// The server is out of disk space; nothing was stored (507).
    InsufficientStorage,
    /// A distributed operation came back to this broker (its own alias in `Via`): 508.
    LoopDetected,
}

/// The one trait every crate's error implements: its kind (from which the API derives
/// the status and problem type, in one table) and what a client may be told of it.
/// Domain crates never name HTTP statuses.
pub trait ErrorCode: std::error::Error {
    fn kind(&self) -> ErrorKind;

    /// The detail shown to clients: names the field at fault; never storage internals.
    fn public_detail(&self) -> String {
        self.to_string()
    }

    /// Extension members of the problem body (e.g. the moves an incident allows).
    fn extensions(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }

    /// A more specific problem type than the kind's (a platform URI suffix such as
    /// `InvalidTransition`), with its title.
    fn problem_type(&self) -> Option<(&'static str, &'static str)> {
        None
    }
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

impl ErrorCode for ModelError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
    fn public_detail(&self) -> String {
        self.detail.clone()
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
