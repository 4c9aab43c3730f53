//! Who is calling and what they may do.
//!
//! Every API family (NGSI-LD, temporal, platform, ingest, Open311, MQTT, the live feed)
//! builds a [`RequestContext`] in one place, and every read, write and administrative
//! action of the domain passes it, with an [`Action`], through one [`Authorizer`].
//! Writes carry the context's [`Origin`] (actor and request id) down to the storage log,
//! so that who did what is recorded with the change itself.
//!
//! Today the authorizer is [`AllowAll`]; identity, policies and masking (the governance
//! work) implement the same trait, so no handler changes when they land.

use std::sync::Arc;

use citybrain_model::{Entity, ErrorKind, ModelError};

mod action;
mod identity;
pub use action::{Action, DatasetRef, Resource, Verb};
pub use identity::{Identity, Scopes};

/// Who is calling.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Principal {
    /// Nobody authenticated (the loopback demo, or anonymous access where configured).
    #[default]
    Anonymous,
    /// A person or a client acting for one, authenticated by an API key or a token.
    User(Arc<Identity>),
    /// The platform itself: the hub's rules, SLA checks, Open311, ingestion, the demo.
    Service(&'static str),
}

impl Principal {
    /// The hub's rule evaluation and incident filing.
    pub const RULES: Principal = Principal::Service("rules");
    /// SLA checks and escalations.
    pub const SLA: Principal = Principal::Service("sla");
    /// Mapped vendor data (HTTP, MQTT, files).
    pub const INGEST: Principal = Principal::Service("ingest");
    /// Citizen reports through Open311.
    pub const OPEN311: Principal = Principal::Service("open311");
    /// The platform's own start-up work (demo data, migrations).
    pub const SYSTEM: Principal = Principal::Service("system");

    /// A user with `roles` and no other limit (tests, tools).
    pub fn user(id: &str, roles: &[&str]) -> Principal {
        Principal::User(Arc::new(Identity::new(id, roles)))
    }

    /// The authenticated identity, for users.
    pub fn identity(&self) -> Option<&Identity> {
        match self {
            Principal::User(i) => Some(i),
            _ => None,
        }
    }

    /// The actor as recorded with a change, an incident step or a rule version:
    /// `anonymous`, `user:<id>` or `service:<name>`.
    pub fn actor(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".into(),
            Principal::User(i) => format!("user:{}", i.id),
            Principal::Service(s) => format!("service:{s}"),
        }
    }

    pub fn is_anonymous(&self) -> bool {
        matches!(self, Principal::Anonymous)
    }

    /// The principal as stored with what it owns (a subscription acts for its owner).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Principal::Anonymous => json!({"kind": "anonymous"}),
            Principal::Service(s) => json!({"kind": "service", "name": s}),
            Principal::User(i) => json!({
                "kind": "user", "id": i.id, "roles": i.roles, "department": i.department,
                "tenants": i.tenants, "scopes": i.scopes.names(), "via": i.via,
            }),
        }
    }

    /// Reads [`Principal::to_json`]; anything unreadable is anonymous (the least
    /// privileged principal), never more.
    pub fn from_json(v: &serde_json::Value) -> Principal {
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        match v.get("kind").and_then(|k| k.as_str()) {
            Some("user") => {
                let Some(id) = v.get("id").and_then(|x| x.as_str()) else {
                    return Principal::Anonymous;
                };
                let Ok(scopes) = Scopes::parse(&strings(&v["scopes"])) else {
                    return Principal::Anonymous;
                };
                Principal::User(Arc::new(Identity {
                    id: id.to_string(),
                    roles: strings(&v["roles"]),
                    department: v
                        .get("department")
                        .and_then(|x| x.as_str())
                        .map(str::to_string),
                    tenants: v.get("tenants").filter(|t| t.is_array()).map(strings),
                    scopes,
                    via: v
                        .get("via")
                        .and_then(|x| x.as_str())
                        .unwrap_or_default()
                        .to_string(),
                }))
            }
            Some("service") => match v.get("name").and_then(|x| x.as_str()) {
                Some("rules") => Principal::RULES,
                Some("sla") => Principal::SLA,
                Some("ingest") => Principal::INGEST,
                Some("open311") => Principal::OPEN311,
                Some("system") => Principal::SYSTEM,
                _ => Principal::Anonymous,
            },
            _ => Principal::Anonymous,
        }
    }
}

/// Who wrote a change, as the storage log records it: the actor and, where the write
/// came from a request, its id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub actor: Option<Arc<str>>,
    pub request_id: Option<Arc<str>>,
}

impl Origin {
    pub fn new(actor: &str, request_id: Option<&str>) -> Origin {
        Origin {
            actor: Some(actor.into()),
            request_id: request_id.filter(|r| !r.is_empty()).map(Arc::from),
        }
    }
}

/// The context every domain call carries.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The tenant (`NGSILD-Tenant`); empty for the default tenant.
    pub tenant: String,
    pub principal: Principal,
    /// The request's id (`X-Request-Id` when the client sent one, else generated);
    /// empty for work that no request started.
    pub request_id: String,
    /// The client's address (the TCP peer), when a connection brought the request.
    pub source: Option<std::net::IpAddr>,
    /// The purpose the caller declared (`X-Purpose`), which policies may require.
    pub purpose: Option<Arc<str>>,
}

impl RequestContext {
    /// An anonymous context for `tenant` (tests, tools).
    pub fn tenant(tenant: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            ..Default::default()
        }
    }

    /// The platform acting on its own behalf in `tenant`.
    pub fn service(tenant: impl Into<String>, principal: Principal) -> Self {
        Self {
            tenant: tenant.into(),
            principal,
            ..Default::default()
        }
    }

    /// A request's context.
    pub fn request(tenant: impl Into<String>, principal: Principal, request_id: String) -> Self {
        Self {
            tenant: tenant.into(),
            principal,
            request_id,
            ..Default::default()
        }
    }

    /// The actor recorded for what this context does.
    pub fn actor(&self) -> String {
        self.principal.actor()
    }

    /// What the storage log records with the writes of this context.
    pub fn origin(&self) -> Origin {
        Origin::new(&self.actor(), Some(&self.request_id))
    }
}

/// Validates a tenant name (`NGSILD-Tenant`, a mapping's `tenant`): a short name of
/// URL-safe characters.
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

/// A new request id, for requests that brought none: unique within the process and,
/// with a random per-process prefix, across restarts (`3f9c01a2-1b7`). Cheaper than a
/// UUID (no system call per request), and short, since every write logs it.
pub fn new_request_id() -> String {
    use std::hash::BuildHasher;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let prefix = *PREFIX.get_or_init(|| {
        // RandomState is seeded from the operating system's randomness once.
        std::collections::hash_map::RandomState::new().hash_one(std::process::id()) as u32
    });
    format!("{prefix:08x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The caller must authenticate first.
    #[error("authentication required: {0}")]
    Unauthenticated(String),
    /// The caller is known and may not do this.
    #[error("not allowed: {0}")]
    Forbidden(String),
}

impl Denied {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Denied::Unauthenticated(_) => ErrorKind::Unauthenticated,
            Denied::Forbidden(_) => ErrorKind::Forbidden,
        }
    }
}

impl From<Denied> for ModelError {
    fn from(d: Denied) -> ModelError {
        ModelError::new(d.kind(), d.to_string())
    }
}

/// What a caller may see of one entity.
#[derive(Debug, Clone)]
pub enum View {
    /// The entity as stored.
    Full,
    /// Nothing: the entity is left out of answers as if it did not exist.
    Hidden,
    /// A masked copy (attributes removed or generalised).
    Masked(Box<Entity>),
}

/// The one seam every read, write and administrative action passes through.
pub trait Authorizer: Send + Sync + 'static {
    /// May `rc` do `action`?
    fn authorize(&self, rc: &RequestContext, action: &Action<'_>) -> Result<(), Denied>;

    /// What `rc` may see of `entity` (called for every entity an answer would carry).
    fn view(&self, rc: &RequestContext, entity: &Entity) -> View {
        let _ = (rc, entity);
        View::Full
    }

    /// True when [`Authorizer::view`] is always [`View::Full`], so that readers may skip
    /// it (the hot path of queries).
    fn sees_everything(&self, rc: &RequestContext) -> bool {
        let _ = rc;
        false
    }

    /// True when `rc` sees attribute `attr` of entities of every type in `types` as
    /// stored or not at all (never masked), so that an index of stored values may pick
    /// the candidates of a filter on it without revealing what a mask hides.
    fn shows_as_stored(&self, rc: &RequestContext, types: &[Arc<str>], attr: &str) -> bool {
        let _ = (types, attr);
        self.sees_everything(rc)
    }

    /// Past instances of attribute `attr` (its history) of an entity of `types`, as
    /// `rc` may see them, index-aligned: each masked, or `None` where it may not be
    /// seen. The default shows them only when they are [shown as
    /// stored](Authorizer::shows_as_stored), and nothing otherwise (an authorizer that
    /// masks must say how, or the history stays hidden).
    fn mask_history(
        &self,
        rc: &RequestContext,
        types: &[Arc<str>],
        attr: &str,
        instances: &[citybrain_model::Attribute],
    ) -> Vec<Option<citybrain_model::Attribute>> {
        let shown = self.shows_as_stored(rc, types, attr);
        instances.iter().map(|a| shown.then(|| a.clone())).collect()
    }
}

/// A shared authorizer is one (the governance object is shared with its API).
impl<A: Authorizer + ?Sized> Authorizer for Arc<A> {
    fn authorize(&self, rc: &RequestContext, action: &Action<'_>) -> Result<(), Denied> {
        (**self).authorize(rc, action)
    }
    fn view(&self, rc: &RequestContext, entity: &Entity) -> View {
        (**self).view(rc, entity)
    }
    fn sees_everything(&self, rc: &RequestContext) -> bool {
        (**self).sees_everything(rc)
    }
    fn shows_as_stored(&self, rc: &RequestContext, types: &[Arc<str>], attr: &str) -> bool {
        (**self).shows_as_stored(rc, types, attr)
    }
    fn mask_history(
        &self,
        rc: &RequestContext,
        types: &[Arc<str>],
        attr: &str,
        instances: &[citybrain_model::Attribute],
    ) -> Vec<Option<citybrain_model::Attribute>> {
        (**self).mask_history(rc, types, attr, instances)
    }
}

/// Everyone may do everything: the authorizer until governance lands, and the one of
/// the loopback demo.
#[derive(Debug, Default, Clone, Copy)]
pub struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize(&self, _rc: &RequestContext, _action: &Action<'_>) -> Result<(), Denied> {
        Ok(())
    }

    fn sees_everything(&self, _rc: &RequestContext) -> bool {
        true
    }
}

/// Any authorizer behind the credential's own limits ([`Identity::limits`]: scopes and
/// tenants), which hold whatever the policies say.
#[derive(Debug, Clone)]
pub struct Limited<A>(pub A);

impl<A: Authorizer> Authorizer for Limited<A> {
    fn authorize(&self, rc: &RequestContext, action: &Action<'_>) -> Result<(), Denied> {
        if let Principal::User(i) = &rc.principal {
            i.limits(&rc.tenant, action.verb)?;
        }
        self.0.authorize(rc, action)
    }

    fn view(&self, rc: &RequestContext, entity: &Entity) -> View {
        self.0.view(rc, entity)
    }

    fn sees_everything(&self, rc: &RequestContext) -> bool {
        self.0.sees_everything(rc)
    }

    fn shows_as_stored(&self, rc: &RequestContext, types: &[Arc<str>], attr: &str) -> bool {
        self.0.shows_as_stored(rc, types, attr)
    }

    fn mask_history(
        &self,
        rc: &RequestContext,
        types: &[Arc<str>],
        attr: &str,
        instances: &[citybrain_model::Attribute],
    ) -> Vec<Option<citybrain_model::Attribute>> {
        self.0.mask_history(rc, types, attr, instances)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_under_any_policy() {
        let mut i = Identity::new("ana", &["admin"]);
        i.scopes = Scopes::parse(&["read"]).unwrap();
        i.tenants = Some(vec!["water".into()]);
        let rc = RequestContext::request("water", Principal::User(Arc::new(i)), String::new());
        let a = Limited(AllowAll);
        assert!(a.authorize(&rc, &Action::read(Resource::Event)).is_ok());
        let w = Action::new(Verb::Update, Resource::Incident(None));
        assert_eq!(
            a.authorize(&rc, &w).unwrap_err().kind(),
            ErrorKind::Forbidden
        );
        let mut other = rc.clone();
        other.tenant = "traffic".into();
        assert!(a.authorize(&other, &Action::read(Resource::Event)).is_err());
        // Anonymous and services have no credential limits.
        assert!(a.authorize(&RequestContext::tenant("x"), &w).is_ok());
    }

    #[test]
    fn principals_round_trip_and_unknown_ones_are_anonymous() {
        let mut i = Identity::new("ana", &["viewer"]);
        i.department = Some("transport".into());
        i.tenants = Some(vec!["water".into()]);
        i.scopes = Scopes::parse(&["read"]).unwrap();
        for p in [
            Principal::User(Arc::new(i)),
            Principal::Anonymous,
            Principal::RULES,
        ] {
            assert_eq!(Principal::from_json(&p.to_json()), p);
        }
        let odd = serde_json::json!({"kind": "user", "id": "x", "scopes": ["root"]});
        assert_eq!(Principal::from_json(&odd), Principal::Anonymous);
        assert_eq!(
            Principal::from_json(&serde_json::Value::Null),
            Principal::Anonymous
        );
    }

    #[test]
    fn actors_name_their_kind() {
        assert_eq!(Principal::Anonymous.actor(), "anonymous");
        assert_eq!(Principal::user("ana", &[]).actor(), "user:ana");
        assert_eq!(Principal::RULES.actor(), "service:rules");
    }

    #[test]
    fn an_origin_keeps_the_request_id_only_when_there_is_one() {
        let rc = RequestContext::service("t", Principal::SLA);
        assert_eq!(rc.origin().actor.as_deref(), Some("service:sla"));
        assert_eq!(rc.origin().request_id, None);
        let rc = RequestContext::request("t", Principal::Anonymous, "r-1".into());
        assert_eq!(rc.origin().request_id.as_deref(), Some("r-1"));
    }

    /// A policy that refuses writes of one type and hides entities of another, to show
    /// the seam carries what governance needs.
    struct NoParking;
    impl Authorizer for NoParking {
        fn authorize(&self, _rc: &RequestContext, a: &Action<'_>) -> Result<(), Denied> {
            match a.resource {
                Resource::Entity { types, .. }
                    if a.verb.writes() && types.iter().any(|t| t.ends_with("Parking")) =>
                {
                    Err(Denied::Forbidden("parking is read-only".into()))
                }
                _ => Ok(()),
            }
        }
        fn view(&self, _rc: &RequestContext, e: &Entity) -> View {
            if e.types.iter().any(|t| t.ends_with("Camera")) {
                View::Hidden
            } else {
                View::Full
            }
        }
    }

    #[test]
    fn a_policy_decides_on_the_action_and_the_entity() {
        let rc = RequestContext::tenant("");
        let types: [Arc<str>; 1] = ["https://x/OffStreetParking".into()];
        let w = Action::entity(Verb::Update, &types, Some("urn:a"));
        let denied = NoParking.authorize(&rc, &w).unwrap_err();
        assert_eq!(denied.kind(), ErrorKind::Forbidden);
        let r = Action::entity(Verb::Read, &types, Some("urn:a"));
        assert!(NoParking.authorize(&rc, &r).is_ok());
        assert!(AllowAll.authorize(&rc, &w).is_ok());
    }
}
