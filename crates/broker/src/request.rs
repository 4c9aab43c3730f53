//! The context every domain call carries: tenant, principal, request id. Authentication,
//! policies, masking and audit will hook in here, in one place, not in each handler.

/// Who is calling. Today every caller is anonymous; the governance work fills this in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Principal {
    #[default]
    Anonymous,
    User {
        id: String,
        roles: Vec<String>,
    },
}

/// Per-request context passed through every domain call.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The tenant (`NGSILD-Tenant`); empty for the default tenant.
    pub tenant: String,
    pub principal: Principal,
    pub request_id: String,
}

impl RequestContext {
    pub fn tenant(tenant: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            ..Default::default()
        }
    }
}

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
