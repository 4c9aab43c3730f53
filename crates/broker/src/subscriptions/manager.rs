//! Subscription lifecycle (CRUD, persistence) and matching of the change feed.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use citybrain_model::context::CORE_CONTEXT_URL;
use citybrain_model::time::{format_datetime, Clock};
use citybrain_model::uri::is_absolute_uri;
use citybrain_model::{Entity, ErrorKind, JsonLdContext};
use citybrain_storage::{Change, EntityStore, Feed};
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Map, Value};

use super::dispatch::{DispatchSettings, DispatchStats, Dispatcher, Job};
use super::live::{LiveRegistry, LiveStats, LiveSubscription};
use super::model::{Compiled, Status};
use super::notify::{notification, trigger};
use crate::contexts::ContextResolver;
use crate::error::{BrokerError, Result};
use crate::request::RequestContext;
use citybrain_access::{Action, Authorizer, Principal, Resource, Verb, View};

const COLLECTION: &str = "subscriptions";
/// Saved delivery status, per subscription id (`Status`).
const STATUS: &str = "subscription_status";
/// How often changed statuses are saved.
const STATUS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// A live subscription: its compiled form and its status.
#[derive(Debug)]
pub struct SubEntry {
    pub sub: RwLock<Compiled>,
    /// Who created the subscription: its notifications carry what the owner may see.
    owner: Principal,
    status: Mutex<Status>,
    /// The status changed since it was last saved.
    dirty: std::sync::atomic::AtomicBool,
    created_at: DateTime<Utc>,
    modified_at: Mutex<DateTime<Utc>>,
    /// Creation order within this process (loaded subscriptions keep their createdAt order).
    seq: u64,
}

impl SubEntry {
    /// Counted when a notification goes out (before its outcome is known).
    pub(crate) fn record_attempt(&self) {
        self.status.lock().times_sent += 1;
        self.touch();
    }
    pub(crate) fn record_success(&self, now: DateTime<Utc>) {
        self.status.lock().last_success = Some(now);
        self.touch();
    }
    pub(crate) fn record_failure(&self, now: DateTime<Utc>) {
        let mut s = self.status.lock();
        s.times_failed += 1;
        s.last_failure = Some(now);
        drop(s);
        self.touch();
    }
    fn touch(&self) {
        self.dirty.store(true, std::sync::atomic::Ordering::Release);
    }
    pub fn status(&self) -> Status {
        self.status.lock().clone()
    }
}

/// The `Link` header value for a context.
pub fn link_header(ld: &JsonLdContext) -> String {
    let url = ld.link_url().unwrap_or(CORE_CONTEXT_URL);
    format!("<{url}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"")
}

pub struct SubscriptionManager {
    store: Arc<dyn EntityStore>,
    contexts: Arc<ContextResolver>,
    clock: Arc<dyn Clock>,
    dispatcher: Arc<Dispatcher>,
    authz: Arc<dyn Authorizer>,
    egress: Arc<citybrain_egress::EgressPolicy>,
    subs: RwLock<HashMap<(String, String), Arc<SubEntry>>>,
    next_seq: std::sync::atomic::AtomicU64,
    /// Live subscriptions (`live.rs`): held by a streaming reader, never stored.
    live: Arc<LiveRegistry>,
}

impl SubscriptionManager {
    pub fn new(
        store: Arc<dyn EntityStore>,
        contexts: Arc<ContextResolver>,
        clock: Arc<dyn Clock>,
        settings: DispatchSettings,
        authz: Arc<dyn Authorizer>,
        egress: Arc<citybrain_egress::EgressPolicy>,
    ) -> Arc<Self> {
        let dispatcher = Dispatcher::new(settings, clock.clone(), egress.clone());
        let first_seq = clock.now().timestamp_micros().max(0) as u64;
        Arc::new(Self {
            store,
            contexts,
            clock,
            dispatcher,
            authz,
            egress,
            subs: RwLock::new(HashMap::new()),
            // New subscriptions sort after loaded ones (whose seq is their createdAt in µs).
            next_seq: std::sync::atomic::AtomicU64::new(first_seq),
            live: LiveRegistry::new(),
        })
    }

    /// Enables `mqtt://` notification endpoints.
    pub fn set_mqtt_transport(&self, t: Arc<dyn super::dispatch::MqttTransport>) {
        self.dispatcher.set_mqtt(t);
    }

    pub fn dispatch_stats(&self) -> Arc<DispatchStats> {
        self.dispatcher.stats.clone()
    }

    pub fn active_count(&self) -> usize {
        self.subs.read().len()
    }

    /// Loads persisted subscriptions (at start-up).
    pub async fn load(&self) {
        let all = match citybrain_storage::load_collection(&*self.store, COLLECTION) {
            Ok(all) => all,
            Err(error) => {
                tracing::error!(%error, "stored subscriptions could not be read");
                return;
            }
        };
        let mut saved: HashMap<(String, String), Status> = HashMap::new();
        match citybrain_storage::load_collection(&*self.store, STATUS) {
            Ok(list) => {
                for (tenant, id, doc) in list {
                    if let Ok(st) = serde_json::from_value::<Status>(doc) {
                        saved.insert((tenant, id), st);
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "saved subscription statuses could not be read; counting from zero")
            }
        }
        let live: std::collections::HashSet<(String, String)> =
            all.iter().map(|(t, i, _)| (t.clone(), i.clone())).collect();
        let origin = citybrain_storage::Origin::new("subscriptions", None);
        let orphans: Vec<(String, String)> = saved
            .keys()
            .filter(|k| !live.contains(*k))
            .cloned()
            .collect();
        for key in orphans {
            // A status whose subscription is gone (deleted while it was being saved).
            saved.remove(&key);
            let _ = self.store.delete_doc(&key.0, STATUS, &key.1, &origin);
        }
        for (tenant, id, doc) in all {
            let Some(body) = doc.get("body").and_then(Value::as_object).cloned() else {
                continue;
            };
            let ctx_src = doc.get("context").cloned().filter(|v| !v.is_null());
            let ld = match self.contexts.resolve(ctx_src.as_ref()).await {
                Ok(ld) => ld,
                Err(error) => {
                    tracing::warn!(subscription = %id, error = %citybrain_model::ErrorCode::public_detail(&error), "subscription @context unavailable; using the core context");
                    JsonLdContext::core()
                }
            };
            let created = doc
                .get("createdAt")
                .and_then(Value::as_str)
                .and_then(citybrain_model::time::parse_datetime)
                .unwrap_or_else(|| self.clock.now());
            match Compiled::compile(&tenant, &id, body, ctx_src, ld, self.clock.now(), false) {
                Ok(c) => {
                    let c = match self.with_notify_context(c.clone()).await {
                        Ok(c) => c,
                        Err(error) => {
                            tracing::warn!(subscription = %id, error = %citybrain_model::ErrorCode::public_detail(&error), "jsonldContext unavailable; notifications use the subscription's context");
                            c
                        }
                    };
                    let entry = Arc::new(SubEntry {
                        sub: RwLock::new(c),
                        // Stored before owners were: anonymous, the least privileged.
                        owner: Principal::from_json(doc.get("owner").unwrap_or(&Value::Null)),
                        status: Mutex::new(
                            saved
                                .remove(&(tenant.clone(), id.clone()))
                                .unwrap_or_default(),
                        ),
                        dirty: std::sync::atomic::AtomicBool::new(false),
                        created_at: created,
                        modified_at: Mutex::new(created),
                        seq: created.timestamp_micros().max(0) as u64,
                    });
                    self.subs.write().insert((tenant, id), entry);
                }
                Err(error) => {
                    tracing::warn!(subscription = %id, error = %citybrain_model::ErrorCode::public_detail(&error), "stored subscription no longer valid; skipped")
                }
            }
        }
        tracing::info!(count = self.subs.read().len(), "subscriptions loaded");
    }

    fn split_context(body: &mut Map<String, Value>, link: Option<Value>) -> Option<Value> {
        body.remove("@context").or(link)
    }

    /// A notification endpoint must be a destination the egress policy allows (checked
    /// again, after DNS resolution, at every delivery).
    fn check_endpoint(&self, c: &Compiled) -> Result<()> {
        self.egress
            .check_url(&c.endpoint.uri)
            .map_err(|e| BrokerError::bad_data(format!("notification.endpoint.uri: {e}")))
    }

    fn allow(&self, rc: &RequestContext, verb: Verb, id: Option<&str>) -> Result<()> {
        self.authz
            .authorize(rc, &Action::new(verb, Resource::Subscription(id)))?;
        Ok(())
    }

    /// Whether `rc` may see and manage every subscription of its tenant, not only its
    /// own: those who may administer subscriptions (administrators; everyone in the
    /// open demo).
    fn sees_all(&self, rc: &RequestContext) -> bool {
        self.authz.sees_everything(rc)
            || self
                .authz
                .authorize(
                    rc,
                    &Action::new(Verb::Administer, Resource::Subscription(None)),
                )
                .is_ok()
    }

    /// A subscription is its owner's: another caller neither sees nor changes it
    /// (it is "not found"), unless it [sees all](Self::sees_all).
    /// Anonymous callers own nothing: they cannot be told apart, so one could manage
    /// (and read the endpoints of) another's subscriptions.
    fn owned_by(rc: &RequestContext, e: &SubEntry) -> bool {
        !rc.principal.is_anonymous() && e.owner.actor() == rc.principal.actor()
    }

    async fn persist(&self, rc: &RequestContext, entry: &SubEntry) -> Result<()> {
        let (id, doc) = {
            let s = entry.sub.read();
            (
                s.id.clone(),
                json!({"body": s.body, "context": s.context_source, "createdAt": format_datetime(&entry.created_at), "modifiedAt": format_datetime(&entry.modified_at.lock()), "owner": entry.owner.to_json()}),
            )
        };
        self.store
            .put_doc(&rc.tenant, COLLECTION, &id, doc, &rc.origin())?
            .wait()
            .await?;
        Ok(())
    }

    /// `POST /subscriptions`. `link` is the context from the `Link` header, if any.
    pub async fn create(
        &self,
        rc: &RequestContext,
        mut body: Map<String, Value>,
        link: Option<Value>,
    ) -> Result<String> {
        self.allow(rc, Verb::Create, None)?;
        let ctx_src = Self::split_context(&mut body, link);
        let ld = self.contexts.resolve(ctx_src.as_ref()).await?;
        let id = match body.get("id") {
            None => {
                let id = format!("urn:ngsi-ld:Subscription:{}", uuid::Uuid::new_v4());
                body.insert("id".into(), Value::String(id.clone()));
                id
            }
            Some(Value::String(s)) if is_absolute_uri(s) => s.clone(),
            Some(other) => {
                return Err(BrokerError::bad_data(format!(
                    "subscription 'id' must be a URI, got {other}"
                )))
            }
        };
        let now = self.clock.now();
        self.implicit_context(&mut body, ctx_src.as_ref()).await?;
        let compiled = Compiled::compile(&rc.tenant, &id, body, ctx_src, ld, now, true)?;
        self.check_endpoint(&compiled)?;
        let compiled = self.with_notify_context(compiled).await?;
        let key = (rc.tenant.clone(), id.clone());
        let entry = Arc::new(SubEntry {
            sub: RwLock::new(compiled),
            owner: rc.principal.clone(),
            status: Mutex::new(Status::default()),
            dirty: std::sync::atomic::AtomicBool::new(false),
            created_at: now,
            modified_at: Mutex::new(now),
            seq: self
                .next_seq
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        });
        {
            let mut subs = self.subs.write();
            if subs.contains_key(&key) {
                return Err(BrokerError::new(
                    ErrorKind::AlreadyExists,
                    format!("subscription '{id}' already exists"),
                ));
            }
            subs.insert(key.clone(), entry.clone());
        }
        if let Err(e) = self.persist(rc, &entry).await {
            self.subs.write().remove(&key);
            return Err(e);
        }
        Ok(id)
    }

    fn entry(&self, rc: &RequestContext, id: &str, verb: Verb) -> Result<Arc<SubEntry>> {
        self.allow(rc, verb, Some(id))?;
        if !is_absolute_uri(id) {
            return Err(BrokerError::bad_data(format!(
                "subscription id '{id}' is not a URI"
            )));
        }
        let not_found = || BrokerError::not_found(format!("subscription '{id}' not found"));
        let e = self
            .subs
            .read()
            .get(&(rc.tenant.clone(), id.to_string()))
            .cloned()
            .ok_or_else(not_found)?;
        if !Self::owned_by(rc, &e) && !self.sees_all(rc) {
            return Err(not_found());
        }
        Ok(e)
    }

    /// A subscription whose `@context` is not one URL gets an ImplicitlyCreated context,
    /// named in `jsonldContext`, so that notifications can point at it (NGSI-LD 1.8).
    async fn implicit_context(
        &self,
        body: &mut Map<String, Value>,
        ctx_src: Option<&Value>,
    ) -> Result<()> {
        let Some(src) = ctx_src else { return Ok(()) };
        let one_url = src.is_string()
            || src
                .as_array()
                .is_some_and(|a| a.len() == 1 && a[0].is_string());
        if one_url || body.contains_key("jsonldContext") {
            return Ok(());
        }
        let url = self.contexts.implicit_url(src).await?;
        body.insert("jsonldContext".into(), Value::String(url));
        Ok(())
    }

    /// Resolves `jsonldContext` (503 when it cannot be loaded).
    async fn with_notify_context(&self, mut c: Compiled) -> Result<Compiled> {
        if let Some(url) = c.body.get("jsonldContext").and_then(Value::as_str) {
            c.notify_ld = self
                .contexts
                .resolve(Some(&Value::String(url.to_string())))
                .await?;
        }
        Ok(c)
    }

    /// Renders a subscription with its status (and `createdAt`/`modifiedAt` with
    /// `sys_attrs`), its entity types and attribute names compacted with the
    /// reader's `@context` (`to`; the core one when the request names none): a term
    /// the reader's context does not define reads as its full IRI, as with entities
    /// (NGSI-LD 5.8.2; the suite's 029_05_02). `None`: as the subscription was given.
    pub fn render(
        &self,
        entry: &SubEntry,
        sys_attrs: bool,
        to: Option<&JsonLdContext>,
    ) -> (Map<String, Value>, Arc<JsonLdContext>) {
        let s = entry.sub.read();
        let now = self.clock.now();
        let mut out = s.body.clone();
        if let Some(to) = to {
            recompact(&mut out, &s.ld, to);
        }
        if !out.contains_key("notificationTrigger") {
            out.insert(
                "notificationTrigger".into(),
                json!(["attributeCreated", "attributeUpdated"]),
            );
        }
        if sys_attrs {
            out.insert(
                "createdAt".into(),
                Value::String(format_datetime(&entry.created_at)),
            );
            out.insert(
                "modifiedAt".into(),
                Value::String(format_datetime(&entry.modified_at.lock())),
            );
        }
        let status = if !s.is_active {
            "paused"
        } else if s.expired(now) {
            "expired"
        } else {
            "active"
        };
        out.insert("status".into(), Value::String(status.into()));
        let st = entry.status();
        if let Some(Value::Object(n)) = out.get_mut("notification") {
            if st.times_sent > 0 {
                n.insert("timesSent".into(), json!(st.times_sent));
            }
            if st.times_failed > 0 {
                n.insert("timesFailed".into(), json!(st.times_failed));
            }
            for (k, v) in [
                ("lastNotification", st.last_notification),
                ("lastSuccess", st.last_success),
                ("lastFailure", st.last_failure),
            ] {
                if let Some(t) = v {
                    n.insert(k.into(), Value::String(format_datetime(&t)));
                }
            }
            if st.last_notification.is_some() {
                let ok = st.last_failure.is_none() || st.last_success >= st.last_failure;
                n.insert(
                    "status".into(),
                    Value::String(if ok { "ok" } else { "failed" }.into()),
                );
            }
        }
        (out, s.ld.clone())
    }

    /// `GET /subscriptions/{id}`.
    pub fn get(
        &self,
        rc: &RequestContext,
        id: &str,
        sys_attrs: bool,
        to: Option<&JsonLdContext>,
    ) -> Result<(Map<String, Value>, Arc<JsonLdContext>)> {
        let e = self.entry(rc, id, Verb::Read)?;
        Ok(self.render(&e, sys_attrs, to))
    }

    /// `GET /subscriptions`: the tenant's subscriptions the caller owns (all of them for
    /// those who may administer subscriptions), in creation order.
    pub fn list(&self, rc: &RequestContext) -> Result<Vec<Arc<SubEntry>>> {
        self.allow(rc, Verb::Read, None)?;
        let all = self.sees_all(rc);
        let subs = self.subs.read();
        let mut v: Vec<(String, Arc<SubEntry>)> = subs
            .iter()
            .filter(|((t, _), e)| *t == rc.tenant && (all || Self::owned_by(rc, e)))
            .map(|((_, id), e)| (id.clone(), e.clone()))
            .collect();
        // Creation order (as clients list what they created), then id.
        v.sort_by(|a, b| (a.1.seq, &a.0).cmp(&(b.1.seq, &b.0)));
        Ok(v.into_iter().map(|(_, e)| e).collect())
    }

    /// `PATCH /subscriptions/{id}`: replaces the given members, then re-validates.
    pub async fn update(
        &self,
        rc: &RequestContext,
        id: &str,
        mut fragment: Map<String, Value>,
        link: Option<Value>,
    ) -> Result<()> {
        let entry = self.entry(rc, id, Verb::Update)?;
        if fragment.is_empty() {
            return Err(BrokerError::bad_data("the subscription fragment is empty"));
        }
        if let Some(Value::String(fid)) = fragment.get("id") {
            if fid != id {
                return Err(BrokerError::bad_data(
                    "a subscription's id cannot be changed",
                ));
            }
        }
        let ctx_src = Self::split_context(&mut fragment, link);
        let (mut body, old_ctx) = {
            let s = entry.sub.read();
            (s.body.clone(), s.context_source.clone())
        };
        for (k, v) in fragment {
            if v.is_null() {
                body.remove(&k);
            } else {
                body.insert(k, v);
            }
        }
        let ctx_src = ctx_src.or(old_ctx);
        let ld = self.contexts.resolve(ctx_src.as_ref()).await?;
        let compiled =
            Compiled::compile(&rc.tenant, id, body, ctx_src, ld, self.clock.now(), true)?;
        self.check_endpoint(&compiled)?;
        let compiled = self.with_notify_context(compiled).await?;
        *entry.sub.write() = compiled;
        *entry.modified_at.lock() = self.clock.now();
        self.persist(rc, &entry).await
    }

    /// `DELETE /subscriptions/{id}`.
    pub async fn delete(&self, rc: &RequestContext, id: &str) -> Result<()> {
        self.entry(rc, id, Verb::Delete)?;
        self.subs
            .write()
            .remove(&(rc.tenant.clone(), id.to_string()));
        if let Some(c) = self
            .store
            .delete_doc(&rc.tenant, COLLECTION, id, &rc.origin())?
        {
            c.wait().await?;
        }
        if let Some(c) = self
            .store
            .delete_doc(&rc.tenant, STATUS, id, &rc.origin())?
        {
            c.wait().await?;
        }
        Ok(())
    }

    /// Saves the statuses that changed since the last save (every [`STATUS_EVERY`]
    /// by `run_periodic`, and at shutdown); answers how many were saved.
    pub fn save_statuses(&self) -> usize {
        let entries: Vec<(String, String, Arc<SubEntry>)> = self
            .subs
            .read()
            .iter()
            .map(|((t, i), e)| (t.clone(), i.clone(), e.clone()))
            .collect();
        let origin = citybrain_storage::Origin::new("subscriptions", None);
        let mut saved = 0;
        let mut failed: Option<(citybrain_storage::StoreError, usize)> = None;
        for (tenant, id, entry) in entries {
            if !entry.dirty.swap(false, std::sync::atomic::Ordering::AcqRel) {
                continue;
            }
            let doc = match serde_json::to_value(entry.status()) {
                Ok(d) => d,
                Err(_) => continue,
            };
            match self.store.put_doc(&tenant, STATUS, &id, doc, &origin) {
                Ok(_) => {
                    saved += 1;
                    // Deleted meanwhile: its status goes with it.
                    let key = (tenant.clone(), id.clone());
                    let gone = self
                        .subs
                        .read()
                        .get(&key)
                        .is_none_or(|e| !Arc::ptr_eq(e, &entry));
                    if gone {
                        let _ = self.store.delete_doc(&tenant, STATUS, &id, &origin);
                    }
                }
                Err(error) => {
                    entry.touch();
                    failed.get_or_insert((error, 0)).1 += 1;
                }
            }
        }
        if let Some((error, n)) = failed {
            tracing::warn!(%error, statuses = n, "subscription statuses not saved; retried later");
        }
        saved
    }

    /// Opens a live subscription for `rc` from a subscription body (as for `POST
    /// /subscriptions`, `notification.endpoint` left out) in the context `link`
    /// (`live.rs`). Refused like a subscription (`subscribe`), and when the reader or
    /// the server holds too many already.
    pub async fn live(
        &self,
        rc: &RequestContext,
        mut body: Map<String, Value>,
        link: Option<Value>,
    ) -> Result<LiveSubscription> {
        self.allow(rc, Verb::Create, None)?;
        self.live.check_room(rc)?;
        let id = super::live::prepare(&mut body)?;
        let ctx_src = Self::split_context(&mut body, link);
        let ld = self.contexts.resolve(ctx_src.as_ref()).await?;
        self.implicit_context(&mut body, ctx_src.as_ref()).await?;
        let now = self.clock.now();
        let compiled = Compiled::compile(&rc.tenant, &id, body, ctx_src, ld, now, true)?;
        let compiled = self.with_notify_context(compiled).await?;
        self.live.open(rc, compiled)
    }

    /// Live subscriptions open now and notifications dropped since start.
    pub fn live_stats(&self) -> LiveStats {
        self.live.stats()
    }

    /// Consumes the change feed until it closes.
    pub async fn run(self: Arc<Self>, mut feed: Feed) {
        loop {
            while let Some(change) = feed.recv().await {
                self.on_change(&change);
            }
            let Some(gap) = feed.gap() else {
                return; // the store closed
            };
            // Cut off for falling behind: go on from the oldest change the store still
            // has after the gap, or from now (notifications in between are not sent).
            feed = match self.store.subscribe_from(Some(gap.after)) {
                Ok(f) => f,
                Err(_) => {
                    tracing::warn!(after = gap.after, "subscriptions fell behind the change feed; notifications for the changes in between are not sent");
                    // Live readers are told they missed changes (`lagged`), so that
                    // they read the current state again.
                    self.live.missed_by_all();
                    self.store.subscribe()
                }
            };
        }
    }

    /// An entity a notification links to (`join`), when it can be read.
    fn linked(&self, tenant: &str, id: &str) -> Option<Arc<Entity>> {
        match self.store.get(tenant, id) {
            Ok(e) => e,
            Err(error) => {
                tracing::warn!(%error, id, "a linked entity could not be read for a notification");
                None
            }
        }
    }

    /// Sends periodic (`timeInterval`) notifications; ticks every second.
    pub async fn run_periodic(self: Arc<Self>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_save = std::time::Instant::now();
        loop {
            tick.tick().await;
            self.periodic_once();
            if last_save.elapsed() >= STATUS_EVERY {
                last_save = std::time::Instant::now();
                self.save_statuses();
            }
        }
    }

    /// One pass of periodic notifications (public for deterministic tests).
    pub fn periodic_once(&self) {
        let now = self.clock.now();
        let entries: Vec<Arc<SubEntry>> = self.subs.read().values().cloned().collect();
        for entry in entries {
            let s = entry.sub.read();
            let Some(interval) = s.time_interval else {
                continue;
            };
            if !s.is_active || s.expired(now) {
                continue;
            }
            let due = entry
                .status
                .lock()
                .last_notification
                .is_none_or(|t| (now - t).num_milliseconds() as f64 >= interval * 1000.0);
            if !due {
                continue;
            }
            let mut matched: Vec<Arc<Entity>> = Vec::new();
            let scanned = self.store.scan(&s.tenant, None, None, &mut |e| {
                if s.selects(e, true) {
                    matched.push(e.clone());
                }
                if matched.len() >= 1000 {
                    return ControlFlow::Break(());
                }
                ControlFlow::Continue(())
            });
            if let Err(error) = scanned {
                tracing::warn!(%error, subscription = %s.id, "periodic notification skipped: the entities could not be read");
                continue;
            }
            entry.status.lock().last_notification = Some(now);
            entry.touch();
            if matched.is_empty() {
                continue;
            }
            let lookup = |id: &str| self.linked(&s.tenant, id);
            let body = notification(&s, &matched, None, "timeInterval", now, &lookup);
            drop(s);
            self.dispatcher.enqueue(Job {
                entry: entry.clone(),
                body,
                enqueued: std::time::Instant::now(),
            });
        }
    }

    fn on_change(&self, change: &Change) {
        let now = self.clock.now();
        let entries: Vec<Arc<SubEntry>> = self
            .subs
            .read()
            .iter()
            .filter(|((t, _), _)| **t == *change.tenant)
            .map(|(_, e)| e.clone())
            .collect();
        let live = self.live.of_tenant(&change.tenant);
        let mut seen_by: HashMap<Reader, Seen> = HashMap::new();
        for entry in entries {
            let body = {
                let s = entry.sub.read();
                let owner = Owner::Stored(&entry.owner);
                self.notification_for(&s, owner, &entry.status, change, now, &mut seen_by)
            };
            if let Some(body) = body {
                self.dispatcher.enqueue(Job {
                    entry: entry.clone(),
                    body,
                    enqueued: std::time::Instant::now(),
                });
            }
        }
        for l in live {
            if let Some(body) = self.notification_for(
                &l.sub,
                Owner::Live(&l.rc),
                &l.status,
                change,
                now,
                &mut seen_by,
            ) {
                l.push(body);
            }
        }
    }

    /// The notification `s` (owned by `owner`) sends for `change`, if any: what the
    /// owner may see of the change (worked out once per reader in `seen_by`: the
    /// principal with the source address and purpose its policies may weigh), its
    /// triggers and filters, and its throttling.
    fn notification_for(
        &self,
        s: &Compiled,
        owner: Owner<'_>,
        status: &Mutex<Status>,
        change: &Change,
        now: DateTime<Utc>,
        seen_by: &mut HashMap<Reader, Seen>,
    ) -> Option<Value> {
        if !s.is_active || s.expired(now) || s.time_interval.is_some() {
            return None;
        }
        // What the owner may see of the change: nothing (skipped), or a masked copy
        // that triggers and filters are evaluated on; worked out once per owner,
        // however many subscriptions it holds.
        let reader = match owner {
            Owner::Stored(p) => (p.clone(), None, None),
            Owner::Live(rc) => (rc.principal.clone(), rc.source, rc.purpose.clone()),
        };
        let seen = seen_by.entry(reader).or_insert_with(|| {
            // The context is built only here, once per reader and change.
            let stored;
            let rc = match owner {
                Owner::Stored(p) => {
                    stored = RequestContext::request(s.tenant.clone(), p.clone(), String::new());
                    &stored
                }
                Owner::Live(rc) => rc,
            };
            if self.authz.sees_everything(rc) {
                Seen::All
            } else {
                match seen_change(&*self.authz, rc, change) {
                    Some(c) => Seen::Masked(c),
                    None => Seen::Hidden,
                }
            }
        });
        let change = match seen {
            Seen::All => change,
            Seen::Masked(c) => &*c,
            Seen::Hidden => return None,
        };
        let reason = trigger(s, change)?;
        {
            let mut st = status.lock();
            if let (Some(th), Some(last)) = (s.throttling, st.last_notification) {
                if ((now - last).num_milliseconds() as f64) < th * 1000.0 {
                    return None;
                }
            }
            st.last_notification = Some(now);
        }
        let lookup = |id: &str| self.linked(&s.tenant, id);
        Some(match (&change.after, reason) {
            (Some(after), r) if r != "entityDeleted" => notification(
                s,
                std::slice::from_ref(after),
                Some(change),
                r,
                now,
                &lookup,
            ),
            _ => notification(s, &[], Some(change), reason, now, &lookup),
        })
    }
}

/// Whose view a notification carries.
#[derive(Clone, Copy)]
enum Owner<'a> {
    /// A stored subscription's owner: its principal (the request that made it is gone).
    Stored(&'a Principal),
    /// A live reader, with the request that opened its stream.
    Live(&'a RequestContext),
}

/// Who reads notifications, as policies see them: the principal, the source address
/// and the declared purpose (a live reader's; none for stored subscriptions).
type Reader = (Principal, Option<std::net::IpAddr>, Option<Arc<str>>);

/// What a subscription's owner may see of a change.
enum Seen {
    All,
    Hidden,
    Masked(Change),
}

/// A change as `rc` may see it: `None` when the entity is hidden from it, else the
/// change with both versions through the authorizer's view.
fn seen_change(authz: &dyn Authorizer, rc: &RequestContext, change: &Change) -> Option<Change> {
    let see =
        |e: &Option<Arc<citybrain_model::Entity>>| -> Option<Option<Arc<citybrain_model::Entity>>> {
            match e {
                None => Some(None),
                Some(e) => match authz.view(rc, e) {
                    View::Full => Some(Some(e.clone())),
                    View::Hidden => None,
                    View::Masked(m) => Some(Some(Arc::new(*m))),
                },
            }
        };
    Some(Change {
        before: see(&change.before)?,
        after: see(&change.after)?,
        ..change.clone()
    })
}

/// Entity types and attribute names of a subscription body, from the context they
/// were given in to the reader's. Type expressions (`A,B`, `(A;B)|C`) stay as given.
fn recompact(body: &mut Map<String, Value>, from: &JsonLdContext, to: &JsonLdContext) {
    let term = |t: &str| -> String {
        if t.contains([',', ';', '|', '(', ')']) {
            return t.to_string();
        }
        to.compact(&from.expand(t))
    };
    let terms = |v: &mut Value| {
        if let Value::Array(items) = v {
            for i in items.iter_mut() {
                if let Some(t) = i.as_str() {
                    *i = Value::String(term(t));
                }
            }
        }
    };
    if let Some(Value::Array(es)) = body.get_mut("entities") {
        for e in es.iter_mut() {
            if let Some(Value::String(t)) = e.get_mut("type") {
                *t = term(t);
            }
        }
    }
    if let Some(w) = body.get_mut("watchedAttributes") {
        terms(w);
    }
    if let Some(Value::Object(n)) = body.get_mut("notification") {
        if let Some(a) = n.get_mut("attributes") {
            terms(a);
        }
    }
    if let Some(Value::Object(g)) = body.get_mut("geoQ") {
        if let Some(Value::String(p)) = g.get_mut("geoproperty") {
            *p = term(p);
        }
    }
}
