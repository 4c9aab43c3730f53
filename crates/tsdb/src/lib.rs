//! citybrain's embedded time-series engine.
//!
//! Series are keyed by (tenant, entity, attribute, datasetId). New points land in a
//! per-series in-memory head; a checkpoint freezes every head, writes them as one
//! immutable segment file of compressed columnar blocks (`segment.rs`, codecs in
//! `codec.rs`), then records the file list, series registry and checkpoint LSN in
//! `registry.log`, an append-only log of what changed (`registry.rs`). Compaction merges
//! files, applies instance edits and retention.
//!
//! The engine has no log of its own: its owner (the store) logs every [`HistOp`] in its
//! write-ahead log *before* calling [`Tsdb::apply`], and replays the records after
//! [`Tsdb::checkpoint_lsn`] on start. One log, one fsync, one durability rule.

pub mod agg;
pub mod backup;
pub mod codec;
mod engine;
pub mod error;
pub mod io;
pub mod point;
mod registry;
pub mod segment;
pub mod wire;

pub use agg::{AggMethod, AggValue, Bucket};
pub use engine::{
    EntityHistory, FlushJob, Retention, Selection, SeriesInfo, TimeProp, Tsdb, TsdbOptions,
    TsdbStats,
};
pub use error::TsdbError;
pub use point::{DatasetSel, HistOp, Point, SeriesKey, Val};
