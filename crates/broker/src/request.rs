//! The context every domain call carries lives in `citybrain-access` (one crate for
//! identity and authorization); this module validates tenant names.

pub use citybrain_access::{Principal, RequestContext};

pub use citybrain_access::validate_tenant;
