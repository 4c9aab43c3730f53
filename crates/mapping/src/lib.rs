//! The mapping language of citybrain's ingestion, pure (no I/O): mappings as written
//! (TOML or YAML) and their validation into a runnable form naming the file, line and
//! field at fault (`mapping`), records and paths into them (`record`), what a record
//! becomes (`mapping::apply`: a model entity fragment), rejections and their reasons
//! (`reject`), units (`units`), time formats and zones (`timefmt`), and edge reduction
//! (`reduce`: deadbands, windows, downsampling). Decoders, the pipeline, dead letters
//! and transports are in `citybrain-ingest`.

pub mod mapping;
pub mod record;
pub mod reduce;
pub mod reject;
pub mod timefmt;
pub mod units;

pub use mapping::{load_dir, load_file, Mapped, Mapping, MappingError};
pub use reject::{Reason, Reject};

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
