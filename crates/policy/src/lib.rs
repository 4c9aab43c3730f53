//! Governance of every read and write: the [`Governance`] authorizer.
//!
//! - **Policies** are Cedar ([`cedar_policy`]), over principals (users in roles and a
//!   department; anonymous callers), actions (`read`, `create`, `update`, `delete`,
//!   `subscribe`, `export`, `administer`) and resources (entity types, attributes, the
//!   platform's other APIs), with the request's context (tenant, hour, weekday). The
//!   vocabulary is `schema.cedarschema`; the roles a city starts with are
//!   `default.cedar`. Policies are replaced through the API, validated against the
//!   schema first (the policy and the place named), and every version is kept.
//! - **Classification** ([`classify`]) gives every type and attribute a level, an owner
//!   and a sharing condition, which policies read as the resource's attributes.
//! - **Filtering, not refusing**: the broker asks [`Authorizer::view`] for every entity
//!   an answer would carry; an entity whose type may not be read is left out, an
//!   attribute that may not be read is removed, and one permitted only by policies
//!   carrying `@mask("…")` is masked ([`mask`]).
//!
//! Decisions are cached per (principal, action, resource, context) and per (principal,
//! type) for views, and the caches are dropped whenever policies or classification
//! change, so the hot paths pay a hash lookup, not a policy evaluation.

mod cache;
pub mod classify;
mod evaluate;
pub mod mask;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use crate::cache::{Cache, CtxKey, DatasetRes, DecisionEntry, Plan, PlanEntry, Res};
use cedar_policy::{PolicySet, Schema, ValidationMode, Validator};
use chrono::{DateTime, Datelike, Timelike, Utc};
use citybrain_access::{
    Action, Authorizer, DatasetRef, Denied, Principal, RequestContext, Resource, Verb, View,
};
use citybrain_model::time::Clock;
use citybrain_model::{Entity, ErrorCode, ErrorKind};
use citybrain_storage::EntityStore;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

pub use classify::{short, Class, Classification, Level, Sharing};
pub use mask::{Mask, PseudonymKeys};

/// The policy vocabulary.
pub const SCHEMA: &str = include_str!("schema.cedarschema");
/// The roles a city starts with.
pub const DEFAULT_POLICIES: &str = include_str!("default.cedar");

/// Where governance keeps its documents (default tenant).
const COLLECTION: &str = "governance";

/// The document id prefix of a policy version (`policies-v000001`).
const VERSION_PREFIX: &str = "policies-v";

/// A stored policy version, read back (an unreadable one is an error naming it).
fn stored_version(id: &str, v: serde_json::Value) -> Result<PolicyVersion, PolicyError> {
    serde_json::from_value(v).map_err(|e| PolicyError::Invalid(format!("stored {id}: {e}")))
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Invalid(String),
    #[error("no policy version {0}")]
    NoVersion(u64),
    #[error("{0}")]
    Io(String),
    /// The store refused or failed a write (a full disk is a 507).
    #[error(transparent)]
    Store(#[from] citybrain_storage::StoreError),
    #[error(transparent)]
    Denied(#[from] Denied),
}

impl ErrorCode for PolicyError {
    fn kind(&self) -> ErrorKind {
        match self {
            PolicyError::Invalid(_) => ErrorKind::BadRequestData,
            PolicyError::NoVersion(_) => ErrorKind::ResourceNotFound,
            PolicyError::Io(_) => ErrorKind::InternalError,
            PolicyError::Store(e) => e.kind(),
            PolicyError::Denied(d) => d.kind(),
        }
    }
    fn public_detail(&self) -> String {
        match self {
            PolicyError::Io(_) => "governance settings could not be stored".into(),
            PolicyError::Store(e) => e.public_detail(),
            e => e.to_string(),
        }
    }
}

/// One version of the policy set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyVersion {
    pub version: u64,
    pub policies: String,
    /// Who submitted it (`user:<id>`, or `system` for the defaults).
    pub author: String,
    pub at: DateTime<Utc>,
}

/// What a decision came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    Deny,
    /// Allowed, masked when every permitting policy carries a mask.
    Allow(Option<Mask>),
}

pub(crate) struct State {
    generation: u64,
    pub(crate) policies: PolicySet,
    /// Mask of each policy that carries one.
    pub(crate) masks: HashMap<String, Mask>,
    current: PolicyVersion,
    pub(crate) classes: Arc<Classification>,
}

/// Which optional context attributes policy text may read (bit 0: `source`, bit 1:
/// `purpose`), by name anywhere (a comment naming one only costs cache hits, never a
/// wrong decision). Only those are part of the cache keys: a client varying its
/// address or declared purpose must not churn the caches of policies that ignore them.
fn uses_of(text: &str) -> u8 {
    u8::from(text.contains("source")) | (u8::from(text.contains("purpose")) << 1)
}

/// Most cached decisions and plans before the caches are emptied (a bound, not an
/// LRU: a flood of distinct principals costs re-evaluation, never memory).
const CACHE: usize = 50_000;

/// The governance authorizer.
pub struct Governance {
    schema: Schema,
    state: RwLock<Arc<State>>,
    decisions: Mutex<Cache<DecisionEntry>>,
    plans: Mutex<Cache<PlanEntry>>,
    /// The state's generation, readable without touching the state's `Arc` (one
    /// shared counter per decision would be contended across cores).
    generation: std::sync::atomic::AtomicU64,
    hasher: foldhash::fast::RandomState,
    clock: Arc<dyn Clock>,
    pub pseudonyms: Arc<PseudonymKeys>,
    store: Option<Arc<dyn EntityStore>>,
    cedar: cedar_policy::Authorizer,
    /// Whether a tenant is in emergency mode (`context.mode`), once the hub is there.
    modes: std::sync::OnceLock<ModeSource>,
    /// The optional context attributes the policies in force read ([`uses_of`]).
    uses: std::sync::atomic::AtomicU8,
}

/// Tells whether a tenant is in emergency mode now.
pub type ModeSource = Arc<dyn Fn(&str) -> bool + Send + Sync>;

impl std::fmt::Debug for Governance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Governance")
            .field("version", &self.state.read().current.version)
            .finish()
    }
}

fn schema() -> Result<Schema, PolicyError> {
    Schema::from_cedarschema_str(SCHEMA)
        .map(|(s, _)| s)
        .map_err(|e| PolicyError::Invalid(format!("policy schema: {e}")))
}

/// Parses and validates a policy set: syntax, the schema (strict), and every `@mask`.
pub fn compile(
    schema: &Schema,
    text: &str,
) -> Result<(PolicySet, HashMap<String, Mask>), PolicyError> {
    let parsed = PolicySet::from_str(text)
        .map_err(|e| PolicyError::Invalid(format!("policies: {}", pretty(&e))))?;
    if parsed.templates().next().is_some() {
        return Err(PolicyError::Invalid(
            "policies: templates are not supported; write static policies".into(),
        ));
    }
    // Policies are named by their @id annotation (what errors, logs and masks name).
    let mut set = PolicySet::new();
    for p in parsed.policies() {
        let id = p
            .annotation("id")
            .map(str::to_string)
            .unwrap_or_else(|| p.id().to_string());
        set.add(p.new_id(cedar_policy::PolicyId::new(&id)))
            .map_err(|_| PolicyError::Invalid(format!("policies: two policies are named {id}")))?;
    }
    let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
    let errors: Vec<String> = result.validation_errors().map(|e| pretty(e)).collect();
    if !errors.is_empty() {
        return Err(PolicyError::Invalid(format!(
            "policies: {}",
            errors.join("; ")
        )));
    }
    let mut masks = HashMap::new();
    for p in set.policies() {
        if let Some(m) = p.annotation("mask") {
            let m = Mask::parse(m)
                .map_err(|e| PolicyError::Invalid(format!("policy {}: {e}", p.id())))?;
            if p.effect() != cedar_policy::Effect::Permit {
                return Err(PolicyError::Invalid(format!(
                    "policy {}: @mask belongs on a permit",
                    p.id()
                )));
            }
            masks.insert(p.id().to_string(), m);
        }
    }
    Ok((set, masks))
}

/// A diagnostic's message with its help, on one line.
fn pretty(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The Cedar action of a verb. Creating, changing and deleting a subscription are all
/// `subscribe` (who may subscribe manages their own subscriptions; whose they are is
/// decided by ownership in the broker).
fn action_name(verb: Verb, subscription: bool) -> &'static str {
    match verb {
        Verb::Read => "read",
        Verb::Create | Verb::Update | Verb::Delete if subscription => "subscribe",
        Verb::Create => "create",
        Verb::Update => "update",
        Verb::Delete => "delete",
        Verb::Administer => "administer",
        Verb::Export => "export",
        Verb::Aggregate => "aggregate",
    }
}

fn principal_key(hasher: &foldhash::fast::RandomState, p: &Principal) -> u64 {
    use std::hash::BuildHasher;
    let mut h = hasher.build_hasher();
    match p {
        Principal::Anonymous => 0u8.hash(&mut h),
        Principal::User(i) => {
            1u8.hash(&mut h);
            i.id.hash(&mut h);
            i.roles.hash(&mut h);
            i.department.hash(&mut h);
        }
        Principal::Service(s) => {
            2u8.hash(&mut h);
            s.hash(&mut h);
        }
    }
    h.finish()
}

impl Governance {
    /// Governance with the default policies and classification, held in memory.
    pub fn new(
        clock: Arc<dyn Clock>,
        pseudonyms: Arc<PseudonymKeys>,
    ) -> Result<Governance, PolicyError> {
        let defaults = PolicyVersion {
            version: 0,
            policies: DEFAULT_POLICIES.to_string(),
            author: "system".into(),
            at: clock.now(),
        };
        Governance::build(clock, pseudonyms, None, defaults, Classification::default())
    }

    /// Governance kept in `store` (the default tenant's `governance` documents):
    /// loads the newest policy version and the classification.
    pub fn with_store(
        clock: Arc<dyn Clock>,
        pseudonyms: Arc<PseudonymKeys>,
        store: Arc<dyn EntityStore>,
        default_class: Option<Class>,
    ) -> Result<Governance, PolicyError> {
        let docs = store
            .docs("", COLLECTION)
            .map_err(|e| PolicyError::Io(e.to_string()))?;
        let mut newest: Option<PolicyVersion> = None;
        let mut classes = Classification::default();
        if let Some(d) = default_class {
            classes.default = d;
        }
        for (id, v) in docs {
            if id.starts_with(VERSION_PREFIX) {
                let pv = stored_version(&id, v)?;
                if newest.as_ref().is_none_or(|n| pv.version > n.version) {
                    newest = Some(pv);
                }
            } else if id == "classification" {
                classes = Classification::parse(v)?;
            }
        }
        let current = newest.unwrap_or_else(|| PolicyVersion {
            version: 0,
            policies: DEFAULT_POLICIES.to_string(),
            author: "system".into(),
            at: clock.now(),
        });
        Governance::build(clock, pseudonyms, Some(store), current, classes)
    }

    fn build(
        clock: Arc<dyn Clock>,
        pseudonyms: Arc<PseudonymKeys>,
        store: Option<Arc<dyn EntityStore>>,
        current: PolicyVersion,
        classes: Classification,
    ) -> Result<Governance, PolicyError> {
        let schema = schema()?;
        let (policies, masks) = compile(&schema, &current.policies)?;
        let current_text = current.policies.clone();
        Ok(Governance {
            state: RwLock::new(Arc::new(State {
                generation: 1,
                policies,
                masks,
                current,
                classes: Arc::new(classes),
            })),
            uses: std::sync::atomic::AtomicU8::new(uses_of(&current_text)),
            schema,
            decisions: Mutex::new(Cache::default()),
            plans: Mutex::new(Cache::default()),
            generation: std::sync::atomic::AtomicU64::new(1),
            hasher: foldhash::fast::RandomState::default(),
            clock,
            pseudonyms,
            store,
            cedar: cedar_policy::Authorizer::new(),
            modes: std::sync::OnceLock::new(),
        })
    }

    /// The policy set in force.
    pub fn policies(&self) -> PolicyVersion {
        self.state.read().current.clone()
    }

    /// Every stored version, oldest first (the defaults are version 0).
    pub fn policy_versions(&self) -> Result<Vec<PolicyVersion>, PolicyError> {
        let Some(store) = &self.store else {
            return Ok(vec![self.policies()]);
        };
        let mut v: Vec<PolicyVersion> = store
            .docs("", COLLECTION)
            .map_err(|e| PolicyError::Io(e.to_string()))?
            .into_iter()
            .filter(|(id, _)| id.starts_with(VERSION_PREFIX))
            .map(|(id, v)| stored_version(&id, v))
            .collect::<Result<_, _>>()?;
        v.sort_by_key(|p: &PolicyVersion| p.version);
        Ok(v)
    }

    /// The classification in force.
    pub fn classification(&self) -> Arc<Classification> {
        self.state.read().classes.clone()
    }

    fn may_govern(&self, rc: &RequestContext) -> Result<(), PolicyError> {
        self.authorize(rc, &Action::new(Verb::Administer, Resource::Governance))?;
        Ok(())
    }

    /// Refuses policies under which their author could no longer administer
    /// governance: such a set (an empty one, a comment, a `forbid` on everything) would
    /// lock every administrator out of the API that could undo it.
    fn keeps_author(
        &self,
        rc: &RequestContext,
        policies: &PolicySet,
        masks: &HashMap<String, Mask>,
    ) -> Result<(), PolicyError> {
        if matches!(rc.principal, Principal::Service(_)) {
            return Ok(());
        }
        let candidate = {
            let st = self.state.read();
            State {
                generation: st.generation,
                policies: policies.clone(),
                masks: masks.clone(),
                current: st.current.clone(),
                classes: st.classes.clone(),
            }
        };
        // The request's whole context (the cache key keeps only what the policies in
        // force read; the new ones may read more).
        let (mut ctx, hour, weekday) = self.context_key(rc);
        ctx.source = rc.source;
        ctx.purpose = rc.purpose.clone();
        let action = action_name(Verb::Administer, false);
        let res = Res::Api(api_of(&Resource::Governance));
        match evaluate::evaluate(
            &self.cedar,
            &candidate,
            rc,
            action,
            res,
            (hour, weekday, &ctx),
        ) {
            Decided::Allow(_) => Ok(()),
            Decided::Deny => Err(PolicyError::Invalid(format!(
                "policies: they would not permit {} to administer governance now, so \
                 nobody could change them back; keep a policy that permits it",
                rc.actor()
            ))),
        }
    }

    fn install(&self, change: impl FnOnce(&mut State)) {
        let mut st = self.state.write();
        let mut next = State {
            generation: st.generation + 1,
            policies: st.policies.clone(),
            masks: st.masks.clone(),
            current: st.current.clone(),
            classes: st.classes.clone(),
        };
        change(&mut next);
        self.generation
            .store(next.generation, std::sync::atomic::Ordering::Release);
        *st = Arc::new(next);
        self.decisions.lock().clear();
        self.plans.lock().clear();
    }

    async fn persist(
        &self,
        rc: &RequestContext,
        id: &str,
        v: serde_json::Value,
    ) -> Result<(), PolicyError> {
        if let Some(store) = &self.store {
            store
                .put_doc("", COLLECTION, id, v, &rc.origin())?
                .wait()
                .await?;
        }
        Ok(())
    }

    /// Replaces the policy set (validated first); returns the new version.
    pub async fn set_policies(
        &self,
        rc: &RequestContext,
        text: &str,
    ) -> Result<PolicyVersion, PolicyError> {
        self.may_govern(rc)?;
        let (policies, masks) = compile(&self.schema, text)?;
        self.keeps_author(rc, &policies, &masks)?;
        let version = self.state.read().current.version + 1;
        let pv = PolicyVersion {
            version,
            policies: text.to_string(),
            author: rc.actor(),
            at: self.clock.now(),
        };
        let doc = serde_json::to_value(&pv).map_err(|e| PolicyError::Io(e.to_string()))?;
        self.persist(rc, &format!("{VERSION_PREFIX}{version:06}"), doc)
            .await?;
        let current = pv.clone();
        self.uses
            .store(uses_of(text), std::sync::atomic::Ordering::Relaxed);
        self.install(move |s| {
            s.policies = policies;
            s.masks = masks;
            s.current = current;
        });
        tracing::info!(version, actor = %rc.actor(), "access policies replaced");
        Ok(pv)
    }

    /// Replaces the classification (validated first).
    pub async fn set_classification(
        &self,
        rc: &RequestContext,
        v: serde_json::Value,
    ) -> Result<Arc<Classification>, PolicyError> {
        self.may_govern(rc)?;
        let c = Arc::new(Classification::parse(v)?);
        let doc = serde_json::to_value(&*c).map_err(|e| PolicyError::Io(e.to_string()))?;
        self.persist(rc, "classification", doc).await?;
        let next = c.clone();
        self.install(move |s| s.classes = next);
        tracing::info!(actor = %rc.actor(), "data classification replaced");
        Ok(c)
    }

    /// Where policies learn each tenant's mode (`context.mode`); set once, when the
    /// coordination hub exists. Until then every tenant is "normal".
    pub fn set_mode_source(&self, modes: ModeSource) {
        if self.modes.set(modes).is_err() {
            tracing::warn!("the mode source of the access policies was already set");
        }
    }

    /// The context of a request beyond principal and tenant: (cache key, hour,
    /// weekday).
    fn context_key(&self, rc: &RequestContext) -> (CtxKey, i64, i64) {
        let now = self.clock.now();
        let (hour, weekday) = (now.hour() as i64, now.weekday().number_from_monday() as i64);
        let emergency = self.modes.get().is_some_and(|m| m(&rc.tenant));
        let uses = self.uses.load(std::sync::atomic::Ordering::Relaxed);
        let key = CtxKey {
            bucket: (hour * 10 + weekday) as u32,
            emergency,
            source: if uses & 1 != 0 { rc.source } else { None },
            purpose: if uses & 2 != 0 {
                rc.purpose.clone()
            } else {
                None
            },
        };
        (key, hour, weekday)
    }

    /// The caller's cache identity under the policies in force.
    fn principal_of(&self, rc: &RequestContext) -> u64 {
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        principal_key(&self.hasher, &rc.principal) ^ generation.rotate_left(32)
    }

    /// A cached decision.
    fn decide(&self, rc: &RequestContext, action: &'static str, res: Res<'_>) -> Decided {
        use std::hash::BuildHasher;
        let principal = self.principal_of(rc);
        let (ctx, hour, weekday) = self.context_key(rc);
        let h = {
            let mut h = self.hasher.build_hasher();
            (principal, action, &ctx).hash(&mut h);
            rc.tenant.hash(&mut h);
            match res {
                Res::Type(t) => (0u8, t).hash(&mut h),
                Res::Attr(t, a) => (1u8, t, a).hash(&mut h),
                Res::Api(a) => (2u8, a).hash(&mut h),
                Res::Dataset(d) => (3u8, d.id).hash(&mut h),
            }
            h.finish()
        };
        let hit = |e: &DecisionEntry| {
            e.principal == principal
                && e.action == action
                && e.ctx == ctx
                && *e.tenant == *rc.tenant
                && res.is(&e.res)
        };
        if let Some(d) = self
            .decisions
            .lock()
            .get(&h)
            .and_then(|v| v.iter().find(|e| hit(e)))
        {
            return d.decided;
        }
        let st = self.state.read().clone();
        let d = evaluate::evaluate(&self.cedar, &st, rc, action, res, (hour, weekday, &ctx));
        let mut cache = self.decisions.lock();
        if cache.len() >= CACHE {
            cache.clear();
        }
        cache.entry(h).or_default().push(DecisionEntry {
            principal,
            action,
            res: res.owned(),
            tenant: rc.tenant.as_str().into(),
            ctx,
            decided: d,
        });
        d
    }

    /// Whether `rc` may read entities of a type (expanded or short name): they are not
    /// left out of its answers.
    pub fn may_read_type(&self, rc: &RequestContext, ty: &str) -> bool {
        matches!(rc.principal, Principal::Service(_))
            || matches!(
                self.decide(rc, "read", Res::Type(short(ty))),
                Decided::Allow(_)
            )
    }

    /// The level of a dataset under the classification in force.
    pub fn dataset_level(&self, d: &DatasetRef<'_>) -> Level {
        dataset_level(&self.state.read().classes, d)
    }

    /// The decision of `rc` reading a type's attribute (short names).
    pub fn attribute_decision(&self, rc: &RequestContext, ty: &str, attr: &str) -> Decided {
        self.decide(rc, "read", Res::Attr(ty, attr))
    }

    fn plan(&self, rc: &RequestContext, types: &[Arc<str>]) -> Arc<Plan> {
        use std::hash::BuildHasher;
        let principal = self.principal_of(rc);
        let (ctx, _, _) = self.context_key(rc);
        let h = {
            let mut h = self.hasher.build_hasher();
            (principal, &ctx).hash(&mut h);
            rc.tenant.hash(&mut h);
            for t in types {
                t.hash(&mut h);
            }
            h.finish()
        };
        let hit = |e: &PlanEntry| {
            e.principal == principal
                && e.ctx == ctx
                && *e.tenant == *rc.tenant
                && e.types.len() == types.len()
                && e.types.iter().zip(types).all(|(a, b)| a == b)
        };
        if let Some(p) = self
            .plans
            .lock()
            .get(&h)
            .and_then(|v| v.iter().find(|e| hit(e)))
        {
            return p.plan.clone();
        }
        let visible = !types.is_empty()
            && types.iter().all(|t| {
                matches!(
                    self.decide(rc, "read", Res::Type(short(t))),
                    Decided::Allow(_)
                )
            });
        let plan = Arc::new(Plan {
            visible,
            attrs: RwLock::new(HashMap::default()),
        });
        let mut plans = self.plans.lock();
        if plans.len() >= CACHE {
            plans.clear();
        }
        plans.entry(h).or_default().push(PlanEntry {
            principal,
            types: types.to_vec(),
            tenant: rc.tenant.as_str().into(),
            ctx,
            plan: plan.clone(),
        });
        plan
    }

    /// The decision on one attribute of an entity: the strictest over its types.
    fn attr_decision(
        &self,
        rc: &RequestContext,
        plan: &Plan,
        types: &[Arc<str>],
        name: &Arc<str>,
    ) -> Decided {
        if let Some(d) = plan.attrs.read().get(name) {
            return *d;
        }
        let attr = short(name);
        let mut out = Decided::Allow(None);
        for t in types {
            match self.decide(rc, "read", Res::Attr(short(t), attr)) {
                Decided::Deny => {
                    out = Decided::Deny;
                    break;
                }
                Decided::Allow(Some(m)) => {
                    if let Decided::Allow(prev) = out {
                        if prev.is_none_or(|p| m.strength() > p.strength()) {
                            out = Decided::Allow(Some(m));
                        }
                    }
                }
                Decided::Allow(None) => {}
            }
        }
        plan.attrs.write().insert(name.clone(), out);
        out
    }
}

/// The level of a dataset: the highest of the types and attributes it selects (every
/// classified attribute of its types when it names none).
pub fn dataset_level(classes: &Classification, d: &DatasetRef<'_>) -> Level {
    let mut level = Level::Public;
    for t in d.types {
        let t = short(t);
        level = level.max(classes.of_type(t).level);
        if d.attrs.is_empty() {
            let prefix = format!("{t}.");
            for (k, c) in classes.attributes.range(prefix.clone()..) {
                if !k.starts_with(&prefix) {
                    break;
                }
                level = level.max(c.level);
            }
        }
        for a in d.attrs {
            level = level.max(classes.of_attribute(t, short(a)).level);
        }
    }
    level
}

/// The API resource a platform action is about.
fn api_of(r: &Resource<'_>) -> &'static str {
    match r {
        Resource::Entity { .. } => "entities",
        Resource::History { .. } => "temporal",
        Resource::Subscription(_) => "subscriptions",
        Resource::Registration(_) => "registrations",
        Resource::Context => "contexts",
        Resource::Catalogue => "catalogue",
        Resource::Rule(_) => "rules",
        Resource::Event => "events",
        Resource::Incident(_) => "incidents",
        Resource::Routing => "routing",
        Resource::Mode => "modes",
        Resource::Scenario => "scenarios",
        Resource::IngestSource(_) => "ingest",
        Resource::DeadLetter => "deadletters",
        Resource::Open311 => "open311",
        Resource::Operations => "operations",
        Resource::Governance => "governance",
        Resource::Audit => "audit",
        Resource::Datasets | Resource::Dataset(_) => "datasets",
    }
}

impl Authorizer for Governance {
    fn authorize(&self, rc: &RequestContext, a: &Action<'_>) -> Result<(), Denied> {
        if matches!(rc.principal, Principal::Service(_)) {
            return Ok(());
        }
        let action = action_name(a.verb, matches!(a.resource, Resource::Subscription(_)));
        let denied = |what: String| {
            let msg = format!("the access policies do not permit {action} on {what}");
            if rc.principal.is_anonymous() {
                Denied::Unauthenticated(msg)
            } else {
                Denied::Forbidden(msg)
            }
        };
        match a.resource {
            Resource::Entity { types, .. } | Resource::History { types, .. } => {
                if a.verb == Verb::Read {
                    // Reads are filtered, not refused: what the caller may not read is
                    // left out of the answer (and a single entity is "not found"), by
                    // `view`, entity by entity and attribute by attribute.
                    return Ok(());
                }
                if types.is_empty() {
                    // A write always names its types.
                    return Err(denied("entities of no named type".into()));
                }
                for t in types {
                    let t = short(t);
                    if self.decide(rc, action, Res::Type(t)) == Decided::Deny {
                        return Err(denied(format!("entities of type {t}")));
                    }
                }
                Ok(())
            }
            Resource::Dataset(d) => {
                let st = self.state.read().clone();
                let (ctx, hour, weekday) = self.context_key(rc);
                // Not cached: a catalogue lists a few datasets, rarely.
                let res = Res::Dataset(DatasetRes {
                    id: d.id,
                    level: dataset_level(&st.classes, &d),
                    owner: d.publisher,
                    access: d.access,
                });
                match evaluate::evaluate(&self.cedar, &st, rc, action, res, (hour, weekday, &ctx)) {
                    Decided::Deny => Err(denied(format!("dataset {}", d.id))),
                    Decided::Allow(_) => Ok(()),
                }
            }
            ref r => {
                let api = api_of(r);
                match self.decide(rc, action, Res::Api(api)) {
                    Decided::Deny => Err(denied(format!("the {api} API"))),
                    Decided::Allow(_) => Ok(()),
                }
            }
        }
    }

    fn view(&self, rc: &RequestContext, e: &Entity) -> View {
        if matches!(rc.principal, Principal::Service(_)) {
            return View::Full;
        }
        let plan = self.plan(rc, &e.types);
        if !plan.visible {
            return View::Hidden;
        }
        let decided = |name: &Arc<str>| self.attr_decision(rc, &plan, &e.types, name);
        // The common case first, without allocating: every attribute shown as stored.
        if e.attrs
            .iter()
            .all(|(name, _)| decided(name) == Decided::Allow(None))
        {
            return View::Full;
        }
        let mut m = e.clone();
        m.attrs = e
            .attrs
            .iter()
            .filter_map(|(name, inst)| match decided(name) {
                Decided::Deny => None,
                Decided::Allow(None) => Some((name.clone(), inst.clone())),
                Decided::Allow(Some(mask)) => {
                    let masked: citybrain_model::Instances = inst
                        .iter()
                        .filter_map(|a| mask::apply(mask, a, &self.pseudonyms))
                        .collect();
                    (!masked.is_empty()).then(|| (name.clone(), masked))
                }
            })
            .collect();
        View::Masked(Box::new(m))
    }

    fn sees_everything(&self, rc: &RequestContext) -> bool {
        matches!(rc.principal, Principal::Service(_))
    }

    fn mask_history(
        &self,
        rc: &RequestContext,
        types: &[Arc<str>],
        attr: &str,
        instances: &[citybrain_model::Attribute],
    ) -> Vec<Option<citybrain_model::Attribute>> {
        if matches!(rc.principal, Principal::Service(_)) {
            return instances.iter().cloned().map(Some).collect();
        }
        let plan = self.plan(rc, types);
        let decided = if plan.visible {
            self.attr_decision(rc, &plan, types, &Arc::from(attr))
        } else {
            Decided::Deny
        };
        instances
            .iter()
            .map(|a| match decided {
                Decided::Deny => None,
                Decided::Allow(None) => Some(a.clone()),
                Decided::Allow(Some(mask)) => mask::apply(mask, a, &self.pseudonyms),
            })
            .collect()
    }

    fn shows_as_stored(&self, rc: &RequestContext, types: &[Arc<str>], attr: &str) -> bool {
        if matches!(rc.principal, Principal::Service(_)) {
            return true;
        }
        !types.is_empty()
            && types.iter().all(|t| {
                // Unmasked, or not shown at all (a hidden attribute or type cannot be
                // probed: the caller's own view, which the filter checks, lacks it).
                matches!(
                    self.decide(rc, "read", Res::Attr(short(t), short(attr))),
                    Decided::Allow(None) | Decided::Deny
                )
            })
    }
}
