//! Storage for citybrain: the traits the domain talks to ([`EntityStore`], the change
//! feed) and the embedded engine ([`EmbeddedStore`]): an in-memory state with a
//! write-ahead log (group commit, fsync before acknowledgement) and snapshots on local
//! disk. A PostgreSQL/NATS implementation will plug in behind the same traits.

mod delta;
mod engine;
mod error;
pub mod history;
mod snapshot;
mod state;
mod traits;
mod wal;

pub use citybrain_tsdb as tsdb;
pub use engine::{EmbeddedStore, StoreOptions};
pub use error::StoreError;
pub use traits::{
    Change, ChangeKind, Commit, Decide, EntityStore, HistoryStore, ManyDecide, Modified,
    ModifyOptions, Origin, StoreStats, Write,
};

/// Version of the snapshot format written by this build. Bump it on any incompatible
/// change and keep a reader for the old one.
pub const FORMAT_VERSION: u32 = 1;

/// Version of the write-ahead log format (2 added binary history frames, 3 update
/// records that carry only the changed attributes; 1 and 2 are read).
pub const WAL_FORMAT_VERSION: u32 = 3;
