//! The broker's error type: a model error (kind + detail for the client) or a storage
//! failure (reported to clients as an internal error without internals).

use citybrain_model::{ErrorKind, ModelError};
use citybrain_store::StoreError;
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

impl BrokerError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BrokerError::Model(m) => m.kind,
            BrokerError::Store(_) => ErrorKind::InternalError,
        }
    }

    /// The text shown to clients: model details name the field; storage internals are
    /// never shown.
    pub fn public_detail(&self) -> String {
        match self {
            BrokerError::Model(m) => m.detail.clone(),
            BrokerError::Store(StoreError::ShuttingDown) => "the server is shutting down".into(),
            BrokerError::Store(_) => "internal storage error; see the server log".into(),
        }
    }

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
