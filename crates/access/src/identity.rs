//! An authenticated caller: who, in which roles and department, and within which
//! limits their credential was issued (tenants, scopes).

use crate::{Denied, Verb};

/// What a credential may be used for, whatever the policies allow its holder: an API
/// key made for a dashboard can be read-only even when its owner is an administrator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scopes {
    pub read: bool,
    /// Create, update and delete data (NGSI-LD writes, ingestion, incident work).
    pub write: bool,
    /// Configuration of the platform: rules, routing, modes, policies, keys.
    pub admin: bool,
}

impl Default for Scopes {
    fn default() -> Self {
        Scopes::ALL
    }
}

impl Scopes {
    pub const ALL: Scopes = Scopes {
        read: true,
        write: true,
        admin: true,
    };
    pub const NONE: Scopes = Scopes {
        read: false,
        write: false,
        admin: false,
    };

    /// Parses scope names: `read`, `write`, `admin`, `*` (all). Unknown names are an
    /// error naming the scope, so that a typo never widens or silently narrows a key.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Scopes, String> {
        let mut s = Scopes::NONE;
        for n in names {
            match n.as_ref().trim() {
                "read" => s.read = true,
                "write" => s.write = true,
                "admin" => s.admin = true,
                "*" => s = Scopes::ALL,
                other => {
                    return Err(format!(
                        "unknown scope '{other}' (expected read, write, admin or *)"
                    ))
                }
            }
        }
        Ok(s)
    }

    /// The scope names, for listing.
    pub fn names(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.read {
            v.push("read");
        }
        if self.write {
            v.push("write");
        }
        if self.admin {
            v.push("admin");
        }
        v
    }

    pub fn permits(&self, verb: Verb) -> bool {
        match verb {
            Verb::Read | Verb::Export | Verb::Aggregate => self.read,
            Verb::Create | Verb::Update | Verb::Delete => self.write,
            Verb::Administer => self.admin,
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The user's id (`sub` of a token, the owner of an API key).
    pub id: String,
    pub roles: Vec<String>,
    /// The department the user works for (policies grant by department).
    pub department: Option<String>,
    /// The tenants the credential may act in; `None`: every tenant.
    pub tenants: Option<Vec<String>>,
    pub scopes: Scopes,
    /// How the caller authenticated: `key:<key id>` or `token:<issuer>`.
    pub via: String,
}

impl Identity {
    /// A user with `roles` and no other limit.
    pub fn new(id: &str, roles: &[&str]) -> Identity {
        Identity {
            id: id.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        }
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// The credential's own limits: its scopes and tenants. Checked before any policy,
    /// so a tenant header naming another tenant is refused whatever the policies say.
    pub fn limits(&self, tenant: &str, verb: Verb) -> Result<(), Denied> {
        if let Some(ts) = &self.tenants {
            if !ts.iter().any(|t| t == tenant || t == "*") {
                let shown = if tenant.is_empty() {
                    "(default)"
                } else {
                    tenant
                };
                return Err(Denied::Forbidden(format!(
                    "this credential is not valid for tenant {shown}"
                )));
            }
        }
        if !self.scopes.permits(verb) {
            return Err(Denied::Forbidden(format!(
                "this credential's scopes ({}) do not include {verb:?}",
                self.scopes.names().join(", ")
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_and_permit() {
        let s = Scopes::parse(&["read"]).unwrap();
        assert!(s.permits(Verb::Read));
        assert!(!s.permits(Verb::Update));
        assert!(!s.permits(Verb::Administer));
        assert_eq!(Scopes::parse(&["*"]).unwrap(), Scopes::ALL);
        assert!(Scopes::parse(&["raed"]).unwrap_err().contains("raed"));
        assert_eq!(
            Scopes::parse(&["read", "write"]).unwrap().names(),
            ["read", "write"]
        );
    }

    #[test]
    fn a_credential_is_bound_to_its_tenants() {
        let mut i = Identity::new("ana", &[]);
        i.tenants = Some(vec!["water".into()]);
        assert!(i.limits("water", Verb::Read).is_ok());
        assert!(i.limits("", Verb::Read).is_err());
        assert!(i.limits("traffic", Verb::Read).is_err());
        i.tenants = Some(vec!["*".into()]);
        assert!(i.limits("traffic", Verb::Read).is_ok());
    }
}
