//! The federation's error type: what the broker refuses, what a registration's
//! validation refuses (naming the member), and the failures of a context source.

use citybrain_broker::BrokerError;
use citybrain_model::{ErrorCode, ErrorKind, ModelError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FederationError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Model(#[from] ModelError),
    /// An error answer that also names the context sources that failed.
    #[error("{0}")]
    Warned(Box<FederationError>, Vec<crate::forward::Warning>),
}

impl From<citybrain_access::Denied> for FederationError {
    fn from(d: citybrain_access::Denied) -> Self {
        FederationError::Model(d.into())
    }
}

impl ErrorCode for FederationError {
    fn kind(&self) -> ErrorKind {
        match self {
            FederationError::Broker(b) => b.kind(),
            FederationError::Model(m) => m.kind,
            FederationError::Warned(e, _) => e.kind(),
        }
    }

    fn public_detail(&self) -> String {
        match self {
            FederationError::Broker(b) => b.public_detail(),
            FederationError::Model(m) => m.detail.clone(),
            FederationError::Warned(e, _) => e.public_detail(),
        }
    }
}

impl FederationError {
    pub fn bad_data(detail: impl Into<String>) -> Self {
        FederationError::Model(ModelError::bad_data(detail))
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        FederationError::Model(ModelError::not_found(detail))
    }
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        FederationError::Model(ModelError::new(kind, detail))
    }
}

pub type Result<T, E = FederationError> = std::result::Result<T, E>;
