//! NGSI-LD federation (NGSI-LD 1.8, 5.9 and 4.3): a city's departments keep their own
//! brokers, and this one answers for them too.
//!
//! - **Registrations** (`/csourceRegistrations`): a context source says which entities
//!   and attributes it holds, how (`mode`) and for which operations; kept as documents
//!   of the tenant's `csource_registrations` collection, validated naming the member
//!   (`registration.rs`), discovered by query (`discovery.rs`).
//! - **Distributed operations** (`forward.rs`): entity queries and retrievals are sent
//!   to the matching sources as well, each within its timeout, and the answers merged
//!   with the local data; a source that fails is named in an `NGSILD-Warning` header and
//!   never stalls the answer; a request that comes back (`Via`) is refused with 508.
//!
//! Access: reading registrations is `read` on the `registrations` API; creating,
//! changing and removing them is `administer`: a registration decides where this
//! broker sends requests, and with which headers (`contextSourceInfo`).

pub mod csub;
pub mod discovery;
pub mod error;
pub mod forward;
mod outgoing;
pub mod registration;
pub mod write;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use citybrain_access::{Action, Principal, RequestContext, Resource, Verb};
use citybrain_broker::docs::Collection;
use citybrain_broker::Broker;
use citybrain_model::time::format_datetime;
use citybrain_model::uri::is_absolute_uri;
use citybrain_model::ErrorKind;
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Map, Value};

pub use discovery::CsrQuery;
pub use error::{FederationError, Result};
pub use forward::{Forwarded, Warning};
pub use registration::{Mode, Registration};

/// The document collections registrations and subscriptions to them are kept in.
const COLLECTION: &str = "csource_registrations";
const CSUB_COLLECTION: &str = "csource_subscriptions";
const IDENTITY_COLLECTION: &str = "federation_identity";

/// How distributed operations are run.
#[derive(Debug, Clone)]
pub struct FederationSettings {
    /// How long a context source may take to answer (a registration's
    /// `management.timeout` overrides it).
    pub timeout: Duration,
    /// This broker's name in `Via` headers: a request that already names it came
    /// back in a loop. Empty for [`Federation::new`]: one chosen at the first start
    /// and kept with the data.
    pub alias: String,
    /// Most context sources one request is sent to.
    pub max_sources: usize,
}

impl Default for FederationSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            alias: format!("citybrain-{}", uuid::Uuid::new_v4().simple()),
            max_sources: 32,
        }
    }
}

/// What the broker knows of a source's answers (5.2.9 `status`, `timesSent`, …).
#[derive(Debug, Default, Clone)]
pub struct SourceStatus {
    pub times_sent: u64,
    pub times_failed: u64,
    pub last_success: Option<DateTime<Utc>>,
    pub last_failure: Option<DateTime<Utc>>,
}

/// A registration with what the broker keeps beside it.
pub struct Entry {
    pub reg: Arc<Registration>,
    owner: Principal,
    created_at: DateTime<Utc>,
    modified_at: DateTime<Utc>,
    /// Creation order, for listing.
    seq: u64,
    status: Arc<Mutex<SourceStatus>>,
}

/// Context source registrations and the distributed operations that use them.
pub struct Federation {
    broker: Arc<Broker>,
    docs: Collection,
    /// By (tenant, id): a tenant's registrations are one range of the map.
    regs: RwLock<BTreeMap<(String, String), Arc<Entry>>>,
    next_seq: AtomicU64,
    settings: FederationSettings,
    client: reqwest::Client,
    pub stats: Arc<forward::Stats>,
    /// Subscriptions to registrations (`csub.rs`).
    csubs: csub::CsrSubscriptions,
    csub_docs: Collection,
    /// Held across every change of registrations and their subscriptions (check,
    /// persist, swap in memory, notify), so that concurrent changes apply one after
    /// the other: a PATCH cannot bring back what a DELETE removed, and two exclusive
    /// registrations cannot both pass the conflict check.
    writes: tokio::sync::Mutex<()>,
    /// When this federation (the server) started, for the source identity's uptime.
    started: DateTime<Utc>,
}

impl Federation {
    /// Builds the federation and loads the stored registrations (one no longer valid
    /// is skipped with a warning).
    pub async fn new(broker: Arc<Broker>, settings: FederationSettings) -> Result<Arc<Federation>> {
        let mut f = Self::build(broker, settings)?;
        if f.settings.alias.is_empty() {
            f.settings.alias = f.stored_alias().await?;
        }
        f.load().await;
        f.load_csubs().await;
        Ok(Arc::new(f))
    }

    /// A federation that has not loaded the registrations stored earlier (an HTTP
    /// service built without one: tests and tools). Its HTTP client uses the egress
    /// policy; should that fail to build, it uses a client without one.
    pub fn unloaded(broker: Arc<Broker>, settings: FederationSettings) -> Arc<Federation> {
        match Self::build(broker.clone(), settings.clone()) {
            Ok(f) => Arc::new(f),
            Err(error) => {
                tracing::warn!(%error, "federation client without the egress policy");
                Arc::new(Federation {
                    docs: broker.collection(COLLECTION),
                    csub_docs: broker.collection(CSUB_COLLECTION),
                    started: broker.clock().now(),
                    broker,
                    regs: RwLock::new(BTreeMap::new()),
                    next_seq: AtomicU64::new(0),
                    settings,
                    // Without the egress policy's resolver: no redirects at least, and
                    // every endpoint is still checked by `check_url` before use.
                    client: reqwest::Client::builder()
                        .redirect(reqwest::redirect::Policy::none())
                        .build()
                        .unwrap_or_default(),
                    stats: Arc::new(forward::Stats::default()),
                    csubs: Default::default(),
                    writes: tokio::sync::Mutex::new(()),
                })
            }
        }
    }

    fn build(broker: Arc<Broker>, settings: FederationSettings) -> Result<Federation> {
        let client = broker
            .egress
            // Header names in their usual spelling (`Via`, `Link`): some context
            // sources look them up that way.
            .client(
                reqwest::Client::builder()
                    .connect_timeout(settings.timeout)
                    .http1_title_case_headers(),
            )
            .map_err(|e| {
                FederationError::new(ErrorKind::InternalError, format!("HTTP client: {e}"))
            })?;
        Ok(Federation {
            docs: broker.collection(COLLECTION),
            csubs: Default::default(),
            csub_docs: broker.collection(CSUB_COLLECTION),
            writes: tokio::sync::Mutex::new(()),
            started: broker.clock().now(),
            broker,
            regs: RwLock::new(BTreeMap::new()),
            next_seq: AtomicU64::new(0),
            settings,
            client,
            stats: Arc::new(forward::Stats::default()),
        })
    }

    /// The alias chosen at the first start and kept with the data (a peer that names
    /// this broker keeps knowing it across restarts).
    async fn stored_alias(&self) -> Result<String> {
        let docs = self.broker.collection(IDENTITY_COLLECTION);
        let stored = docs
            .load()?
            .into_iter()
            .find(|(t, id, _)| t.is_empty() && id == "alias")
            .and_then(|(_, _, v)| v.get("alias").and_then(Value::as_str).map(str::to_string));
        if let Some(a) = stored {
            return Ok(a);
        }
        let alias = format!("citybrain-{}", uuid::Uuid::new_v4().simple());
        let rc = RequestContext::service("", Principal::SYSTEM);
        docs.put(&rc, "alias", json!({"alias": alias})).await?;
        Ok(alias)
    }

    async fn load(&self) {
        let stored = match self.docs.load() {
            Ok(s) => s,
            Err(error) => {
                tracing::error!(error = %citybrain_model::ErrorCode::public_detail(&error), "context source registrations could not be loaded");
                return;
            }
        };
        let now = self.broker.clock().now();
        let mut loaded = Vec::new();
        for (tenant, id, doc) in stored {
            let Some(body) = doc.get("body").and_then(Value::as_object).cloned() else {
                continue;
            };
            let context = doc.get("context").cloned().filter(|c| !c.is_null());
            let ld = match self.broker.contexts.resolve(context.as_ref()).await {
                Ok(ld) => ld,
                Err(error) => {
                    tracing::warn!(registration = %id, error = %citybrain_model::ErrorCode::public_detail(&error), "registration @context unavailable; using the core context");
                    citybrain_model::JsonLdContext::core()
                }
            };
            let time = |k: &str| {
                doc.get(k)
                    .and_then(Value::as_str)
                    .and_then(citybrain_model::time::parse_datetime)
                    .unwrap_or(now)
            };
            // Expiry is checked when the registration is used: a stored one may have
            // expired while the server was down.
            match Registration::compile(&tenant, &id, body, context, ld, None) {
                Ok(reg) => loaded.push((
                    (tenant, id),
                    Arc::new(Entry {
                        reg: Arc::new(reg),
                        owner: Principal::from_json(doc.get("owner").unwrap_or(&Value::Null)),
                        created_at: time("createdAt"),
                        modified_at: time("modifiedAt"),
                        seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
                        status: Arc::default(),
                    }),
                )),
                Err(error) => {
                    tracing::warn!(registration = %id, error = %citybrain_model::ErrorCode::public_detail(&error), "stored context source registration no longer valid; skipped")
                }
            }
        }
        let mut regs = self.regs.write();
        regs.extend(loaded);
        tracing::info!(count = regs.len(), "context source registrations loaded");
    }

    fn allow(&self, rc: &RequestContext, verb: Verb, id: Option<&str>) -> Result<()> {
        self.broker
            .allow(rc, Action::new(verb, Resource::Registration(id)))?;
        Ok(())
    }

    /// This broker's alias for `tenant` in `Via` headers and its source identity: the
    /// configured (or stored) alias for the default tenant, with `.{tenant}` for the
    /// others, so that two tenants of one broker federated with each other are not
    /// taken for a loop (5.2.40).
    pub fn alias_for(&self, tenant: &str) -> String {
        if tenant.is_empty() {
            self.settings.alias.clone()
        } else {
            format!("{}.{tenant}", self.settings.alias)
        }
    }

    /// `GET /info/sourceIdentity` (5.15, 5.2.40): who this broker is for `tenant`.
    pub fn source_identity(&self, tenant: &str) -> Value {
        let now = self.broker.clock().now();
        let up = (now - self.started).num_milliseconds().max(0);
        let alias = self.alias_for(tenant);
        json!({
            "id": format!("urn:ngsi-ld:ContextSource:{alias}"),
            "type": "ContextSourceIdentity",
            "contextSourceAlias": alias,
            "contextSourceUptime": format!("PT{}.{:03}S", up / 1000, up % 1000),
            "contextSourceTimeAt": format_datetime(&now),
        })
    }

    /// The tenant's registrations in force (not expired), in creation order.
    pub(crate) fn in_force(&self, tenant: &str) -> Vec<Arc<Entry>> {
        let now = self.broker.clock().now();
        let regs = self.regs.read();
        let mut v: Vec<Arc<Entry>> = Self::of_tenant(&regs, tenant)
            .filter(|(_, e)| !e.reg.expired(now))
            .map(|(_, e)| e.clone())
            .collect();
        v.sort_by_key(|e| e.seq);
        v
    }

    /// Whether the tenant has any registration (the common case is none: then every
    /// operation stays local without further work).
    /// On the path of every entity query and write: one lookup in the ordered map, not
    /// a scan of every tenant's registrations.
    pub fn has_registrations(&self, tenant: &str) -> bool {
        Self::of_tenant(&self.regs.read(), tenant).next().is_some()
    }

    /// The registrations of one tenant (a range of the map).
    fn of_tenant<'a>(
        regs: &'a BTreeMap<(String, String), Arc<Entry>>,
        tenant: &'a str,
    ) -> impl Iterator<Item = (&'a (String, String), &'a Arc<Entry>)> + 'a {
        regs.range((tenant.to_string(), String::new())..)
            .take_while(move |((t, _), _)| t == tenant)
    }

    async fn persist(&self, rc: &RequestContext, e: &Entry) -> Result<()> {
        let doc = stored(
            &e.reg.body,
            &e.reg.context_source,
            (e.created_at, e.modified_at),
            &e.owner,
        );
        self.docs.put(rc, &e.reg.id, doc).await?;
        Ok(())
    }

    fn check_endpoint(&self, reg: &Registration) -> Result<()> {
        self.broker
            .egress
            .check_url(&reg.endpoint)
            .map_err(|e| FederationError::bad_data(format!("'endpoint': {e}")))
    }

    /// `POST /csourceRegistrations`; `link` is the `Link` header's context, if any.
    pub async fn create(
        &self,
        rc: &RequestContext,
        mut body: Map<String, Value>,
        context: Option<Value>,
    ) -> Result<String> {
        self.allow(rc, Verb::Administer, None)?;
        let ld = self.broker.contexts.resolve(context.as_ref()).await?;
        let id = id_of(
            &mut body,
            "registration",
            "urn:ngsi-ld:ContextSourceRegistration",
        )?;
        let _writes = self.writes.lock().await;
        self.sweep_locked(rc).await;
        let now = self.broker.clock().now();
        let reg = Registration::compile(&rc.tenant, &id, body, context, ld, Some(now))?;
        self.check_endpoint(&reg)?;
        self.check_conflicts(rc, &reg, None)?;
        let key = (rc.tenant.clone(), id.clone());
        if self.regs.read().contains_key(&key) {
            return Err(FederationError::new(
                ErrorKind::AlreadyExists,
                format!("registration '{id}' already exists"),
            ));
        }
        let entry = Arc::new(Entry {
            reg: Arc::new(reg),
            owner: rc.principal.clone(),
            created_at: now,
            modified_at: now,
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            status: Arc::default(),
        });
        // In force only once it is durable.
        self.persist(rc, &entry).await?;
        self.regs.write().insert(key, entry.clone());
        tracing::info!(registration = %id, endpoint = %entry.reg.endpoint, mode = ?entry.reg.mode, "context source registered");
        self.registration_changed(&rc.tenant, csub::RegChange::Created(&entry.reg));
        Ok(id)
    }

    /// A registration in force by id (404 when there is none, 400 for a bad id).
    pub fn entry(&self, rc: &RequestContext, id: &str, verb: Verb) -> Result<Arc<Entry>> {
        self.allow(rc, verb, Some(id))?;
        if !is_absolute_uri(id) {
            return Err(FederationError::bad_data(format!(
                "registration id '{id}' is not a URI"
            )));
        }
        let now = self.broker.clock().now();
        self.regs
            .read()
            .get(&(rc.tenant.clone(), id.to_string()))
            .filter(|e| !e.reg.expired(now))
            .cloned()
            .ok_or_else(|| FederationError::not_found(format!("registration '{id}' not found")))
    }

    /// `PATCH /csourceRegistrations/{id}`: the fragment's members replace the stored
    /// ones (`null` removes one), then the whole is validated again.
    pub async fn update(
        &self,
        rc: &RequestContext,
        id: &str,
        mut fragment: Map<String, Value>,
        context: Option<Value>,
    ) -> Result<()> {
        let entry = self.entry(rc, id, Verb::Administer)?;
        if fragment.is_empty() {
            return Err(FederationError::bad_data(
                "the registration fragment is empty",
            ));
        }
        match fragment.remove("id") {
            Some(Value::String(fid)) if fid != id => {
                return Err(FederationError::bad_data(
                    "a registration's id cannot be changed",
                ))
            }
            _ => {}
        }
        let old = &entry.reg;
        let ld = match &context {
            Some(_) => self.broker.contexts.resolve(context.as_ref()).await?,
            None if old.context_source.is_none() => citybrain_model::JsonLdContext::core(),
            None => self.broker.contexts.resolve(None).await?,
        };
        // The stored members are re-expressed in the fragment's context, so that one
        // context reads the whole.
        let mut body = old.render(&ld, None);
        for (k, v) in fragment {
            if v.is_null() {
                body.remove(&k);
            } else {
                body.insert(k, v);
            }
        }
        let now = self.broker.clock().now();
        let reg = Registration::compile(&rc.tenant, id, body, context, ld, Some(now))?;
        self.check_endpoint(&reg)?;
        self.check_conflicts(rc, &reg, Some(id))?;
        let next = Arc::new(Entry {
            reg: Arc::new(reg),
            owner: entry.owner.clone(),
            created_at: entry.created_at,
            modified_at: now,
            seq: entry.seq,
            status: entry.status.clone(),
        });
        self.persist(rc, &next).await?;
        self.regs
            .write()
            .insert((rc.tenant.clone(), id.to_string()), next.clone());
        self.registration_changed(&rc.tenant, csub::RegChange::Updated(&entry.reg, &next.reg));
        Ok(())
    }

    /// `DELETE /csourceRegistrations/{id}`.
    pub async fn delete(&self, rc: &RequestContext, id: &str) -> Result<()> {
        let _writes = self.writes.lock().await;
        let entry = self.entry(rc, id, Verb::Administer)?;
        self.docs.delete(rc, id).await?;
        self.regs
            .write()
            .remove(&(rc.tenant.clone(), id.to_string()));
        self.registration_changed(&rc.tenant, csub::RegChange::Deleted(&entry.reg));
        Ok(())
    }

    /// Removes the tenant's expired registrations (a registration that expired is
    /// gone: 404, as if deleted); their subscribers hear `noLongerMatching`.
    async fn sweep(&self, rc: &RequestContext) {
        let now = self.broker.clock().now();
        let any = self
            .regs
            .read()
            .iter()
            .any(|((t, _), e)| *t == rc.tenant && e.reg.expired(now));
        if any {
            let _writes = self.writes.lock().await;
            self.sweep_locked(rc).await;
        }
    }

    /// [`Federation::sweep`] with the write lock held.
    async fn sweep_locked(&self, rc: &RequestContext) {
        let now = self.broker.clock().now();
        let expired: Vec<Arc<Entry>> = self
            .regs
            .read()
            .iter()
            .filter(|((t, _), e)| *t == rc.tenant && e.reg.expired(now))
            .map(|(_, e)| e.clone())
            .collect();
        let system = RequestContext::service(rc.tenant.clone(), Principal::SYSTEM);
        for e in expired {
            let id = &e.reg.id;
            if let Err(error) = self.docs.delete(&system, id).await {
                tracing::warn!(registration = %id, error = %citybrain_model::ErrorCode::public_detail(&error), "expired registration could not be removed");
                continue;
            }
            self.regs.write().remove(&(rc.tenant.clone(), id.clone()));
            self.registration_changed(&rc.tenant, csub::RegChange::Deleted(&e.reg));
        }
    }

    /// Refuses a registration that would take data the broker holds, or that another
    /// registration holds alone (4.3.6.3): an exclusive one over attributes of a local
    /// entity, a redirect over a local entity by id, and either over what an
    /// exclusive registration already covers.
    fn check_conflicts(
        &self,
        rc: &RequestContext,
        reg: &Registration,
        replacing: Option<&str>,
    ) -> Result<()> {
        let conflict = |why: String| FederationError::new(ErrorKind::Conflict, why);
        for other in self.in_force(&rc.tenant) {
            let o = &other.reg;
            if Some(o.id.as_str()) == replacing || !overlaps(reg, o) {
                continue;
            }
            // What an exclusive registration holds, nobody else registers; an
            // exclusive one cannot take what a redirect already sends elsewhere.
            if o.mode == Mode::Exclusive
                || (reg.mode == Mode::Exclusive && o.mode == Mode::Redirect)
            {
                return Err(conflict(format!(
                    "Conflict: registration '{}' ({:?}) already covers these attributes",
                    o.id, o.mode
                )));
            }
        }
        if !matches!(reg.mode, Mode::Exclusive | Mode::Redirect) {
            return Ok(());
        }
        let system = RequestContext::service(rc.tenant.clone(), Principal::SYSTEM);
        for info in &reg.infos {
            for ei in info.entities.iter().flatten() {
                let Some(id) = &ei.id else { continue };
                let Ok(local) = self.broker.retrieve_entity(&system, id) else {
                    continue;
                };
                if !ei.covers(id, &local.types) {
                    continue;
                }
                let clash = match info.attributes() {
                    None => true,
                    Some(attrs) => attrs.iter().any(|a| local.attr(a).is_some()),
                };
                if clash {
                    return Err(conflict(format!(
                        "Conflict: entity '{id}' holds registered data locally; a {} registration cannot take it over",
                        if reg.mode == Mode::Exclusive { "exclusive" } else { "redirect" }
                    )));
                }
            }
        }
        Ok(())
    }

    /// A registration as a reader sees it: compacted with `to`, with `createdAt` and
    /// `modifiedAt` for `sys_attrs`, and the source's status once it has been asked.
    pub fn render(
        &self,
        rc: &RequestContext,
        e: &Entry,
        to: &citybrain_model::JsonLdContext,
        sys_attrs: bool,
    ) -> Map<String, Value> {
        let mut out = e.reg.render(to, None);
        // `contextSourceInfo` may carry a department's credentials: its values are
        // shown only to those who may change registrations.
        if self.allow(rc, Verb::Administer, Some(&e.reg.id)).is_err() {
            registration::redact_source_info(&mut out);
        }
        if sys_attrs {
            out.insert(
                "createdAt".into(),
                Value::String(format_datetime(&e.created_at)),
            );
            out.insert(
                "modifiedAt".into(),
                Value::String(format_datetime(&e.modified_at)),
            );
        }
        let st = e.status.lock().clone();
        put_status(
            &mut out,
            (st.times_sent, st.times_failed),
            None,
            (st.last_success, st.last_failure),
        );
        out
    }

    /// `GET /csourceRegistrations`: the registrations the query selects, in creation
    /// order, and how many there are in all.
    pub async fn query(
        &self,
        rc: &RequestContext,
        q: &CsrQuery,
    ) -> Result<(Vec<Arc<Entry>>, usize)> {
        self.allow(rc, Verb::Read, None)?;
        self.sweep(rc).await;
        let all: Vec<Arc<Entry>> = self
            .in_force(&rc.tenant)
            .into_iter()
            .filter(|e| q.matches(&e.reg))
            .collect();
        let total = all.len();
        Ok((
            all.into_iter().skip(q.offset).take(q.limit).collect(),
            total,
        ))
    }

    /// `GET /csourceRegistrations/{id}`.
    pub async fn get(&self, rc: &RequestContext, id: &str) -> Result<Arc<Entry>> {
        self.allow(rc, Verb::Read, Some(id))?;
        self.sweep(rc).await;
        self.entry(rc, id, Verb::Read)
    }
}

/// How requests to a source (or notifications) went: `status` (`ok` or `failed`),
/// `timesSent`, `timesFailed` (when any failed) and the times, once one was sent.
pub(crate) fn put_status(
    out: &mut Map<String, Value>,
    (sent, failed): (u64, u64),
    last_notification: Option<DateTime<Utc>>,
    (last_success, last_failure): (Option<DateTime<Utc>>, Option<DateTime<Utc>>),
) {
    if sent == 0 {
        return;
    }
    let ok = last_failure.is_none() || last_success >= last_failure;
    out.insert("status".into(), json!(if ok { "ok" } else { "failed" }));
    out.insert("timesSent".into(), json!(sent));
    if failed > 0 {
        out.insert("timesFailed".into(), json!(failed));
    }
    for (k, t) in [
        ("lastNotification", last_notification),
        ("lastSuccess", last_success),
        ("lastFailure", last_failure),
    ] {
        if let Some(t) = t {
            out.insert(k.into(), Value::String(format_datetime(&t)));
        }
    }
}

/// The document a registration or a subscription to registrations is kept as.
pub(crate) fn stored(
    body: &Map<String, Value>,
    context: &Option<Value>,
    (created, modified): (DateTime<Utc>, DateTime<Utc>),
    owner: &Principal,
) -> Value {
    json!({
        "body": body,
        "context": context,
        "createdAt": format_datetime(&created),
        "modifiedAt": format_datetime(&modified),
        "owner": owner.to_json(),
    })
}

/// The `id` of a body being created: the one given (a URI), or a new one under
/// `prefix`, written into the body.
pub(crate) fn id_of(body: &mut Map<String, Value>, what: &str, prefix: &str) -> Result<String> {
    match body.get("id") {
        None => {
            let id = format!("{prefix}:{}", uuid::Uuid::new_v4());
            body.insert("id".into(), Value::String(id.clone()));
            Ok(id)
        }
        Some(Value::String(s)) if is_absolute_uri(s) => Ok(s.clone()),
        Some(other) => Err(FederationError::bad_data(format!(
            "{what} 'id' must be a URI, got {other}"
        ))),
    }
}

/// Whether two registrations may hold the same attribute of the same entity.
fn overlaps(a: &Registration, b: &Registration) -> bool {
    a.infos.iter().any(|ia| {
        b.infos.iter().any(|ib| {
            let attrs = match (ia.attributes(), ib.attributes()) {
                (Some(x), Some(y)) => x.iter().any(|n| y.contains(n)),
                _ => true,
            };
            let entities = match (&ia.entities, &ib.entities) {
                (Some(x), Some(y)) => x.iter().any(|ea| {
                    y.iter().any(|eb| {
                        let types = ea.types.iter().any(|t| eb.types.contains(t));
                        let ids = match (&ea.id, &eb.id) {
                            (Some(i), Some(j)) => i == j,
                            (Some(i), None) => eb.id_pattern.as_ref().is_none_or(|p| p.is_match(i)),
                            (None, Some(j)) => ea.id_pattern.as_ref().is_none_or(|p| p.is_match(j)),
                            (None, None) => true,
                        };
                        types && ids
                    })
                }),
                _ => true,
            };
            attrs && entities
        })
    })
}
