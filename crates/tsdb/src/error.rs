use thiserror::Error;

/// Errors of the time-series engine.
#[derive(Debug, Error)]
pub enum TsdbError {
    #[error("history I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt history data in {file}: {detail}")]
    Corrupt { file: String, detail: String },
    #[error("unsupported history format version {found} in {file} (this build reads {supported})")]
    Version {
        file: String,
        found: u16,
        supported: u16,
    },
    #[error("a history block exceeds 4 GiB")]
    TooLarge,
    #[error("bad history log record: {0}")]
    BadRecord(&'static str),
    /// A checkpoint that began before another one failed: it is not recorded (the
    /// failed one's points are back in memory and go with the next checkpoint).
    #[error("an earlier history checkpoint failed; this one is not recorded")]
    EarlierCheckpointFailed,
}
