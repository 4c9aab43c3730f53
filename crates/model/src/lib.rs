//! citybrain's information model: NGSI-LD entities and attributes in expanded form,
//! JSON-LD `@context` processing with the embedded core context, the `q` query language,
//! GeoJSON and geo-queries, output representations, and the pure entity operations
//! (append, update, merge, replace) that the broker runs under the store's lock.
//!
//! Nothing here does I/O: remote contexts are fetched by the broker and handed in.

pub mod context;
pub mod duration;
pub mod entity;
pub mod error;
pub mod geobox;
pub mod geojson;
pub mod intern;
pub mod ops;
pub mod q;
pub mod render;
pub mod time;
pub mod uri;
pub mod value;

pub use context::JsonLdContext;
pub use entity::{AttrKind, Attribute, Entity, Instances};
pub use error::{ErrorCode, ErrorKind, ModelError, Result};
/// Builds [`Instances`] like `vec!`.
pub use smallvec::smallvec as instances;
pub use value::AttrValue;
