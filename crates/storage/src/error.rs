use citybrain_model::{ErrorCode, ErrorKind, ModelError};
use thiserror::Error;

/// Errors of the storage layer.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The domain closure refused the change (validation, conflict, not found).
    #[error(transparent)]
    Rejected(#[from] ModelError),
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt data in {file}: {detail}")]
    Corrupt { file: String, detail: String },
    #[error("unsupported on-disk format version {found} in {file} (this build reads {supported})")]
    Version {
        file: String,
        found: u32,
        supported: u32,
    },
    #[error("the store failed to make data durable and stopped accepting writes")]
    Failed,
    /// The log's disk is full: nothing was written; writes resume by themselves when
    /// space returns.
    #[error("the disk holding the log is full; writes resume when space is freed")]
    DiskFull,
    #[error("the store is shutting down")]
    ShuttingDown,
    #[error("this store does not support {0}")]
    Unsupported(&'static str),
    /// A request the store cannot carry out as asked (a backup into a directory that
    /// is not empty); the message is shown.
    #[error("{0}")]
    Invalid(String),
}

impl ErrorCode for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Rejected(m) => m.kind,
            StoreError::Invalid(_) => ErrorKind::BadRequestData,
            StoreError::DiskFull => ErrorKind::InsufficientStorage,
            StoreError::Failed | StoreError::ShuttingDown => ErrorKind::Unavailable,
            StoreError::Unsupported(_) => ErrorKind::OperationNotSupported,
            _ => ErrorKind::InternalError,
        }
    }

    /// Storage internals are never shown to clients.
    fn public_detail(&self) -> String {
        match self {
            StoreError::Rejected(m) => m.detail.clone(),
            StoreError::ShuttingDown => "the server is shutting down".into(),
            StoreError::DiskFull => "the server's disk is full; nothing was stored. Try again once an operator has freed space".into(),
            StoreError::Failed => "the server could not make data durable and refuses writes until it is restarted; nothing was stored".into(),
            StoreError::Unsupported(what) => format!("this store does not support {what}"),
            StoreError::Invalid(m) => m.clone(),
            _ => "internal storage error; see the server log".into(),
        }
    }
}
