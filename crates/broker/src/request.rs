//! The context every domain call carries lives in `citybrain-access` (one crate for
//! identity and authorization); this module validates tenant names.

pub use citybrain_access::{Principal, RequestContext};

/// Validates a tenant name from a header: a short name of URL-safe characters.
pub fn validate_tenant(t: &str) -> Result<(), citybrain_model::ModelError> {
    let ok = !t.is_empty()
        && t.len() <= 64
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(citybrain_model::ModelError::bad_data(format!(
            "NGSILD-Tenant '{t}' must be 1-64 characters of letters, digits, '_', '-', '.', ':'"
        )))
    }
}
