//! Ingestion: vendor payloads (JSON, JSON Lines, CSV, XML) arrive over MQTT, HTTP or
//! files; a declarative mapping (`mapping`) turns each record into an NGSI-LD entity
//! fragment; the pipeline (`pipeline`) writes them through the broker's durable path,
//! and everything that fails goes to the dead-letter store (`deadletter`) with a reason.
//! Edge pre-aggregation (`reduce`) thins streams by rule. Nothing here knows HTTP.

pub mod deadletter;
pub mod decode;
pub mod edge;
pub mod mapping;
pub mod record;
pub mod reduce;
pub mod reject;
pub mod timefmt;
pub mod units;

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

/// JSON text of a JSON tree (a `Value`, a record's `Node`, a list of them), for dead
/// letters and forwarded bodies. Serializing such a tree into memory does not fail
/// (string keys, no I/O); were it to, the failure is logged and counted and its text
/// kept in place of the bytes, so a dead letter still says what happened: never an
/// empty payload in silence.
pub fn json_bytes<T: serde::Serialize + ?Sized>(value: &T, what: &str) -> Vec<u8> {
    use citybrain_telemetry::InternalEvent;
    match serde_json::to_vec(value) {
        Ok(b) => b,
        Err(error) => {
            citybrain_telemetry::EncodeFailed {
                what,
                error: &error,
            }
            .emit();
            format!("<not encodable: {error}>").into_bytes()
        }
    }
}
