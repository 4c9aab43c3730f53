//! The storage API citybrain's domain talks to, in a crate of its own so that a second
//! backend (PostgreSQL for scale-out) implements exactly what the embedded engine
//! (`citybrain-store`) implements, and passes the same [`conformance`] suite:
//!
//! - [`EntityStore`]: entity state and documents, per tenant; reads are fallible and
//!   paged by cursor; writes are read-modify-writes that answer a [`Commit`] (an opaque
//!   durability future) and carry their [`Origin`] down to the log;
//! - the change feed: every durable change in log order, bounded, resumable from a
//!   log position ([`EntityStore::subscribe_from`]);
//! - [`HistoryStore`]: history writes, and reads through [`HistoryReader`] (range,
//!   last N, aggregates) rather than through an engine;
//! - [`history`]: how entity changes become history points and back (shared by every
//!   backend, so that they record the same history).

pub mod conformance;
pub mod error;
pub mod history;
pub mod traits;

pub use citybrain_tsdb as tsdb;
pub use error::{disk_full, StoreError};
pub use traits::load_collection;
pub use traits::{
    BackupReport, Change, ChangeKind, Commit, Decide, EntityStore, Feed, FeedGap, HistoryReader,
    HistoryStore, ManyDecide, Modified, ModifyOptions, Origin, StoreStats, Write,
};
