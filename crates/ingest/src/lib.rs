//! Ingestion: vendor payloads (JSON, JSON Lines, CSV, XML) arrive over MQTT, HTTP or
//! files; a declarative mapping (`mapping`) turns each record into an NGSI-LD entity
//! fragment; the pipeline (`pipeline`) writes them through the broker's durable path,
//! and everything that fails goes to the dead-letter store (`deadletter`) with a reason.
//! Edge pre-aggregation (`reduce`) thins streams by rule. Nothing here knows HTTP. The
//! mapping language is `citybrain-mapping`; MQTT is `citybrain-mqtt`.

pub mod deadletter;
pub mod decode;
pub mod edge;

/// The mapping language and the record model live in their own pure crate
/// (`citybrain-mapping`), re-exported under their old paths.
pub use citybrain_mapping::{json_bytes, mapping, record, reduce, reject, timefmt, units};

pub use mapping::{load_dir, load_file, Mapped, Mapping, MappingError};
pub use reject::{Reason, Reject};
pub mod pipeline;
pub mod stats;

pub use pipeline::{Ingest, IngestError, IngestSettings, Summary};
pub mod import;
/// MQTT lives in its own crate (`citybrain-mqtt`); ingestion is its message sink
/// (`sink.rs`). Re-exported under its old path.
pub use citybrain_mqtt as mqtt;
mod sink;
