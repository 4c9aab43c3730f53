//! The broker's error type: a model error (kind + detail for the client) or a storage
//! failure (reported to clients as an internal error without internals).

use citybrain_model::{ErrorCode, ErrorKind, ModelError};
use citybrain_storage::StoreError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BrokerError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("storage failure: {0}")]
    Store(StoreError),
}

impl From<StoreError> for BrokerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Rejected(m) => BrokerError::Model(m),
            other => BrokerError::Store(other),
        }
    }
}

impl ErrorCode for BrokerError {
    fn kind(&self) -> ErrorKind {
        match self {
            BrokerError::Model(m) => m.kind,
            BrokerError::Store(s) => s.kind(),
        }
    }

    /// Model details name the field; storage internals are never shown.
    fn public_detail(&self) -> String {
        match self {
            BrokerError::Model(m) => m.detail.clone(),
            BrokerError::Store(s) => s.public_detail(),
        }
    }
}

impl From<citybrain_access::Denied> for BrokerError {
    fn from(d: citybrain_access::Denied) -> Self {
        BrokerError::Model(d.into())
    }
}

impl BrokerError {
    pub fn bad_data(detail: impl Into<String>) -> Self {
        BrokerError::Model(ModelError::bad_data(detail))
    }
    pub fn invalid(detail: impl Into<String>) -> Self {
        BrokerError::Model(ModelError::invalid(detail))
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        BrokerError::Model(ModelError::not_found(detail))
    }
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        BrokerError::Model(ModelError::new(kind, detail))
    }
}

pub type Result<T, E = BrokerError> = std::result::Result<T, E>;
