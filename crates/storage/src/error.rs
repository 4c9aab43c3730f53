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

/// Whether an I/O error says the disk (or the user's quota on it) is full: such a write
/// is answered 507, as a full log is, wherever in the store it failed (a backup's copy,
/// a document, a snapshot).
pub fn disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

impl ErrorCode for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Rejected(m) => m.kind,
            StoreError::Invalid(_) => ErrorKind::BadRequestData,
            StoreError::DiskFull => ErrorKind::InsufficientStorage,
            StoreError::Io(e) if disk_full(e) => ErrorKind::InsufficientStorage,
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
            StoreError::Io(e) if disk_full(e) => StoreError::DiskFull.public_detail(),
            StoreError::DiskFull => "the server's disk is full; nothing was stored. Try again once an operator has freed space".into(),
            StoreError::Failed => "the server could not make data durable and refuses writes until it is restarted; nothing was stored".into(),
            StoreError::Unsupported(what) => format!("this store does not support {what}"),
            StoreError::Invalid(m) => m.clone(),
            _ => "internal storage error; see the server log".into(),
        }
    }
}
