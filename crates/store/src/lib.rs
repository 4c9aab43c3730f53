//! The embedded storage engine ([`EmbeddedStore`]): an in-memory state with a
//! write-ahead log (group commit, fsync before acknowledgement) and snapshots on local
//! disk, implementing the storage API of `citybrain-storage` (re-exported here for the
//! binary and tests). The domain crates depend on the API only; a PostgreSQL backend
//! will implement the same traits and pass the same conformance suite.

mod delta;
mod engine;
mod snapshot;
mod spatial;
mod state;
mod wal;

// The storage API this engine implements (`citybrain-storage`), under the paths its
// modules use.
pub(crate) use citybrain_storage::{error, history, traits};

pub use citybrain_storage as storage;
pub use citybrain_storage::tsdb;
pub use citybrain_storage::{
    BackupReport, Change, ChangeKind, Commit, Decide, EntityStore, Feed, FeedGap, HistoryReader,
    HistoryStore, ManyDecide, Modified, ModifyOptions, Origin, StoreError, StoreStats, Write,
};
pub use engine::{restore, EmbeddedStore, FaultPoint, Faults, StoreOptions, BACKUP_MANIFEST};

/// Version of the snapshot format written by this build. Bump it on any incompatible
/// change and keep a reader for the old one.
pub const FORMAT_VERSION: u32 = 1;

/// Version of the write-ahead log format (2 added binary history frames, 3 update
/// records that carry only the changed attributes; 1 and 2 are read).
pub const WAL_FORMAT_VERSION: u32 = 3;
