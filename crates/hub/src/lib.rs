//! The coordination hub (issue #5), first layer: rules managed as data and evaluated
//! on the live change feed.
//!
//! - **Rules are versioned documents.** `put_rule` validates a [`RuleSpec`] (the error
//!   names the field), stores it durably in the store's `rules` collection with the
//!   next version number, and keeps every version, with who wrote it and when, in
//!   `rule_versions`: the audit trail of a rule. A deletion is a version too.
//! - **Evaluation follows the change feed.** Every durable entity change becomes
//!   observations: one per attribute instance whose value or `observedAt` changed, at
//!   its `observedAt` (or its modification time). The tenant's [`Engine`] evaluates
//!   them, and a ticker moves its clock every second, for windows closing and
//!   heartbeats missed.
//! - **Events go out** on a broadcast channel (the live feed), into a bounded list of
//!   recent events per tenant, and into counters for `/metrics`.
//!
//! Rules are written with short names (`NO2`, `AirQualityObserved`); the hub expands
//! them with the NGSI-LD core context, as entities are stored.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use citybrain_access::{Action, Authorizer, RequestContext, Resource, Verb};
use citybrain_model::context::JsonLdContext;
use citybrain_model::time::Clock;
use citybrain_model::Entity;
use citybrain_rules::{Engine, Event, ObsValue, Observation, RuleError, RuleSpec, RuleStatus};
use citybrain_storage::{Change, ChangeKind, EntityStore, Feed, StoreError};
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;

mod backtest;
mod book;
mod desk;
mod errors;
pub mod incident;
mod modes;
pub mod open311;
pub mod parts;
mod requests;
mod rulebook;
mod service_levels;
pub mod sla;
pub mod tasks;

pub use backtest::{Backtest, MAX_OBSERVATIONS};
pub use desk::{DeskError, IncidentFilter, NewIncident};
pub use incident::{Correlation, Incident, Move, Status};
pub use modes::{AreaSpec, EmergencyFlags, ModeChange, Modes};

const RULES: &str = "rules";
const VERSIONS: &str = "rule_versions";
/// Recent events kept per tenant for `GET /platform/v1/events`.
const RECENT: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{0}")]
    Invalid(#[from] RuleError),
    #[error("no rule '{0}'")]
    NotFound(String),
    #[error("rule '{0}' exists already")]
    Exists(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("this store keeps no history to back-test against")]
    NoHistory,
    /// The caller may not do this.
    #[error(transparent)]
    Denied(#[from] citybrain_access::Denied),
    /// A document could not be encoded: nothing was written.
    #[error("a document could not be encoded: {0}")]
    Encode(serde_json::Error),
}

/// `value` as JSON; what cannot be encoded is logged and counted (`EncodeFailed`) and
/// refused: nothing is written as `null`.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T, what: &str) -> Result<Value, HubError> {
    use citybrain_telemetry::InternalEvent;
    serde_json::to_value(value).map_err(|error| {
        citybrain_telemetry::EncodeFailed {
            what,
            error: &error,
        }
        .emit();
        HubError::Encode(error)
    })
}

/// A rule as stored: what was submitted, its version and when it was written.
#[derive(Debug, Clone, Serialize)]
pub struct RuleRecord {
    pub rule: RuleSpec,
    pub version: u64,
    #[serde(rename = "modifiedAt")]
    pub modified_at: DateTime<Utc>,
    #[serde(rename = "modifiedBy")]
    pub modified_by: String,
}

/// A rule with its run-time status.
#[derive(Debug, Clone, Serialize)]
pub struct RuleView {
    #[serde(flatten)]
    pub record: RuleRecord,
    pub status: RuleStatus,
}

/// An event of one tenant, numbered in the order the hub saw it.
#[derive(Debug, Clone, Serialize)]
pub struct HubEvent {
    pub seq: u64,
    pub tenant: String,
    #[serde(flatten)]
    pub event: Event,
}

#[derive(Default)]
struct TenantHub {
    engine: Engine,
    rules: BTreeMap<String, RuleRecord>,
    recent: VecDeque<Arc<HubEvent>>,
}

/// The hub's metrics, each defined once (see `citybrain-telemetry`).
pub mod metric {
    use citybrain_telemetry::MetricDef;
    pub static OBSERVATIONS: MetricDef = MetricDef::counter(
        "rules_observations",
        "Observations evaluated by the rule engine",
    );
    pub static RAISED: MetricDef =
        MetricDef::counter("rules_events_raised", "Rule events: conditions raised");
    pub static CLEARED: MetricDef =
        MetricDef::counter("rules_events_cleared", "Rule events: conditions cleared");
    pub static MOMENTARY: MetricDef = MetricDef::counter(
        "rules_events_momentary",
        "Rule events: momentary (geofence crossings, sequences)",
    );
    pub static MTTA: MetricDef = MetricDef::gauge(
        "incidents_mtta_seconds",
        "Mean time to acknowledge incidents, by department",
    );
    pub static MTTR: MetricDef = MetricDef::gauge(
        "incidents_mttr_seconds",
        "Mean time to resolve incidents, by department",
    );
    pub static ACK_COMPLIANCE: MetricDef = MetricDef::gauge(
        "incidents_ack_sla_compliance_ratio",
        "Share of incidents acknowledged within their SLA target, by department",
    );
    pub static RESOLVE_COMPLIANCE: MetricDef = MetricDef::gauge(
        "incidents_resolve_sla_compliance_ratio",
        "Share of incidents resolved within their SLA target, by department",
    );
    pub static OPEN: MetricDef =
        MetricDef::gauge("incidents_open", "Incidents being handled, by department");
    pub static DEPARTMENT_BREACHES: MetricDef =
        MetricDef::gauge("incidents_sla_breaches", "SLA breaches, by department");
    pub static SLA_BREACHES: MetricDef = MetricDef::counter(
        "incidents_sla_breaches_found",
        "SLA breaches found since start, all tenants",
    );
}

impl citybrain_telemetry::Metrics for HubStats {
    fn visit(&self, out: &mut dyn FnMut(&'static citybrain_telemetry::MetricDef, f64)) {
        for (def, c) in [
            (&metric::OBSERVATIONS, &self.observations),
            (&metric::RAISED, &self.events_raised),
            (&metric::CLEARED, &self.events_cleared),
            (&metric::MOMENTARY, &self.events_momentary),
            (&metric::SLA_BREACHES, &self.sla_breaches),
        ] {
            out(def, c.load(Ordering::Relaxed) as f64);
        }
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct HubStats {
    pub observations: AtomicU64,
    pub events_raised: AtomicU64,
    pub events_cleared: AtomicU64,
    pub events_momentary: AtomicU64,
    pub sla_breaches: AtomicU64,
}

pub struct Hub {
    store: Arc<dyn EntityStore>,
    clock: Arc<dyn Clock>,
    ctx: Arc<JsonLdContext>,
    location: String,
    /// The expanded type of incident entities (their changes are not observations).
    incident_type: String,
    tenants: Mutex<HashMap<String, TenantHub>>,
    events: tokio::sync::broadcast::Sender<Arc<HubEvent>>,
    seq: AtomicU64,
    pub stats: HubStats,
    /// Incidents and routing per tenant (async: saving waits for durability).
    desks: desk::Desks,
    correlation: Mutex<Correlation>,
    incident_tx: tokio::sync::broadcast::Sender<Arc<IncidentChange>>,
    /// The last version number written per (tenant, rule).
    last_versions: Mutex<HashMap<(String, String), u64>>,
    /// What every request's action passes through.
    authz: Arc<dyn Authorizer>,
    /// Tenants in emergency mode as a whole, readable without a desk lock (access
    /// policies see it as `context.mode`).
    emergency: Arc<modes::EmergencyFlags>,
}

/// Events published, per tenant.
pub type TenantEvents = Vec<(String, Vec<Arc<HubEvent>>)>;

/// An incident as saved (opened or changed), for the live feed.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentChange {
    pub tenant: String,
    pub incident: Incident,
}

impl Hub {
    /// The hub over `store`, with the rules it holds loaded.
    pub fn new(store: Arc<dyn EntityStore>, clock: Arc<dyn Clock>) -> Result<Arc<Hub>, HubError> {
        Hub::with_authorizer(store, clock, Arc::new(citybrain_access::AllowAll))
    }

    /// [`Hub::new`] with the authorizer every request's action passes through.
    pub fn with_authorizer(
        store: Arc<dyn EntityStore>,
        clock: Arc<dyn Clock>,
        authz: Arc<dyn Authorizer>,
    ) -> Result<Arc<Hub>, HubError> {
        let ctx = JsonLdContext::core();
        let location = ctx.expand("location");
        let incident_type = ctx.expand("Incident");
        let (events, _) = tokio::sync::broadcast::channel(4_096);
        let (incident_tx, _) = tokio::sync::broadcast::channel(1_024);
        let desks = desk::load(&*store)?;
        let hub = Hub {
            desks: desk::Desks::new(desks),
            incident_tx,
            last_versions: Mutex::new(HashMap::new()),
            correlation: Mutex::new(Correlation::default()),
            store,
            clock,
            ctx,
            location,
            incident_type,
            tenants: Mutex::new(HashMap::new()),
            events,
            seq: AtomicU64::new(0),
            stats: HubStats::default(),
            authz,
            emergency: Default::default(),
        };
        {
            let mut lv = hub.last_versions.lock();
            for (tenant, key, doc) in citybrain_storage::load_collection(&*hub.store, VERSIONS)? {
                if let (Some((id, _)), Some(v)) = (key.rsplit_once('@'), doc["version"].as_u64()) {
                    let e = lv.entry((tenant, id.to_string())).or_insert(0);
                    *e = (*e).max(v);
                }
            }
        }
        for (tenant, id, doc) in citybrain_storage::load_collection(&*hub.store, RULES)? {
            match rulebook::record_of(&doc) {
                Some(rec) => {
                    if let Err(e) = hub.install(&tenant, rec) {
                        tracing::warn!(tenant, rule = id, error = %e, "a stored rule no longer loads");
                    }
                }
                None => tracing::warn!(tenant, rule = id, "an unreadable rule document"),
            }
        }
        for (t, desk) in hub.desks.tenants() {
            // Nobody else holds a desk while the hub is being built.
            if let Ok(d) = desk.try_lock() {
                hub.apply_modes(&t, &d.modes);
            }
        }
        hub.seed();
        Ok(Arc::new(hub))
    }

    /// Rebuilds the rule states of every tenant with rules from its entities as they
    /// are (each attribute instance one observation at its `observedAt`), dropping the
    /// events this raises.
    ///
    /// Decision: rule states are not persisted; they are derived again at start.
    /// Otherwise a meter that fell silent before a restart would never be reported
    /// (its heartbeat is armed by its last reading, which comes before the restart),
    /// and a level raised before would never clear. The events are dropped because
    /// they were raised (and filed) the first time; what follows from the rebuilt
    /// states (a heartbeat missed since, a clear) is raised as usual. A window holds
    /// only the last value of each attribute after a restart.
    fn seed(&self) {
        let mut tenants = self.tenants.lock();
        for (tenant, t) in tenants.iter_mut() {
            let started = std::time::Instant::now();
            let (mut entities, mut observations) = (0u64, 0u64);
            let scanned = self.store.scan(tenant, None, None, &mut |e| {
                if !self.is_own(e) {
                    entities += 1;
                    for_each_observation(None, e, &mut |obs| {
                        observations += 1;
                        let _ = t.engine.observe(obs);
                    });
                }
                std::ops::ControlFlow::Continue(())
            });
            if let Err(error) = scanned {
                tracing::error!(tenant, %error, "rule states could not be rebuilt from the entities");
            }
            tracing::info!(
                tenant,
                entities,
                observations,
                ms = started.elapsed().as_millis() as u64,
                "rule states rebuilt from the entities as they are"
            );
        }
    }

    /// Whether an entity is one of the hub's own writes (an incident): its changes
    /// are not observations.
    fn is_own(&self, e: &Entity) -> bool {
        e.types.iter().any(|t| **t == *self.incident_type)
    }

    fn expanded(&self, spec: &RuleSpec) -> RuleSpec {
        let ctx = self.ctx.clone();
        // A blank name stays blank, so that the rule's checks refuse it (expanded, it
        // would be the @vocab IRI, which is not empty).
        spec.map_names(&move |n: &str| {
            if n.trim().is_empty() {
                n.to_string()
            } else {
                ctx.expand(n)
            }
        })
    }

    /// Refuses what `rc` may not do.
    pub fn allow(
        &self,
        rc: &RequestContext,
        verb: Verb,
        resource: Resource<'_>,
    ) -> Result<(), HubError> {
        self.authz.authorize(rc, &Action::new(verb, resource))?;
        Ok(())
    }

    /// A feed that ended: `None` when the store closed; when the store cut it for
    /// falling behind, the feed from where it stopped, or, if the store no longer has
    /// those changes, from now on with the rule states rebuilt from the entities as
    /// they are (as at start: the events of the rebuilding are dropped).
    fn resume(&self, ended: &Feed) -> Option<Feed> {
        let gap = ended.gap()?;
        match self.store.subscribe_from(Some(gap.after)) {
            Ok(f) => {
                tracing::warn!(
                    after = gap.after,
                    "rule evaluation fell behind the change feed; resumed"
                );
                Some(f)
            }
            Err(_) => {
                tracing::warn!(after = gap.after, "rule evaluation fell behind the change feed beyond what the store retains; rule states rebuilt from the entities");
                let feed = self.store.subscribe();
                self.seed();
                Some(feed)
            }
        }
    }

    /// A tenant's empty rule state (events located by the expanded `location`).
    fn new_tenant(&self) -> TenantHub {
        let mut th = TenantHub::default();
        th.engine.set_location_attr(&self.location);
        th
    }

    /// Recent events of a tenant, oldest first, after `after` (a `seq`).
    pub fn recent(&self, tenant: &str, after: u64) -> Vec<Arc<HubEvent>> {
        let tenants = self.tenants.lock();
        tenants
            .get(tenant)
            .map(|t| t.recent.iter().filter(|e| e.seq > after).cloned().collect())
            .unwrap_or_default()
    }

    /// An event as `rc` may see it: none when `rc` may not see the entity it is about;
    /// without the crossing value and position unless `rc` may administer rules (those
    /// could mask values the reader sees only masked). Events carry what rules saw, so
    /// they are filtered like the entities they come from.
    pub fn event_for(&self, rc: &RequestContext, e: &Arc<HubEvent>) -> Option<Arc<HubEvent>> {
        if self.authz.sees_everything(rc) {
            return Some(e.clone());
        }
        let stub = citybrain_model::Entity::shell(
            e.event.entity.to_string(),
            vec![e.event.entity_type.clone()],
        );
        if matches!(self.authz.view(rc, &stub), citybrain_access::View::Hidden) {
            return None;
        }
        if self.shows_event_values(rc) || (e.event.value.is_none() && e.event.location.is_none()) {
            return Some(e.clone());
        }
        let mut bare = (**e).clone();
        bare.event.value = None;
        bare.event.location = None;
        Some(Arc::new(bare))
    }

    /// Whether events shown to `rc` keep their crossing value and position (see
    /// [`Hub::event_for`]).
    pub(crate) fn shows_event_values(&self, rc: &RequestContext) -> bool {
        self.authz.sees_everything(rc)
            || self
                .authz
                .authorize(rc, &Action::new(Verb::Administer, Resource::Rule(None)))
                .is_ok()
    }

    /// Whether `rc` reads attribute `attr` of entities of `types` as stored (the type
    /// not hidden, the attribute neither left out nor masked): what a back-test may
    /// replay of a series. Decided by the policies on a stand-in entity holding `sample`
    /// (a value of the series), so that it holds for history whatever the entity is now.
    pub(crate) fn reads_as_stored(
        &self,
        rc: &RequestContext,
        types: &[Arc<str>],
        attr: &str,
        sample: citybrain_model::Attribute,
    ) -> bool {
        if self.authz.sees_everything(rc) {
            return true;
        }
        let mut stand_in =
            citybrain_model::Entity::shell("urn:ngsi-ld:BackTest:sample", types.to_vec());
        stand_in
            .attrs
            .push((Arc::from(attr), std::iter::once(sample).collect()));
        matches!(self.authz.view(rc, &stand_in), citybrain_access::View::Full)
    }

    /// The live feed: every event from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<HubEvent>> {
        self.events.subscribe()
    }

    /// The live feed of incidents: every incident opened or changed from now on.
    pub fn subscribe_incidents(&self) -> tokio::sync::broadcast::Receiver<Arc<IncidentChange>> {
        self.incident_tx.subscribe()
    }

    /// Evaluates observations given directly (not from the change feed: replays, case
    /// files, bridges that see every record); answers the events published.
    pub fn observe(&self, tenant: &str, observations: &[Observation]) -> Vec<Arc<HubEvent>> {
        let mut tenants = self.tenants.lock();
        let Some(t) = tenants.get_mut(tenant) else {
            return Vec::new();
        };
        let mut events = Vec::new();
        for o in observations {
            events.extend(t.engine.observe(o));
        }
        self.stats
            .observations
            .fetch_add(observations.len() as u64, Ordering::Relaxed);
        self.publish(tenant, t, events)
    }

    /// How events are gathered into incidents.
    pub fn set_correlation(&self, c: Correlation) {
        *self.correlation.lock() = c;
    }

    /// Evaluates one durable change; answers the events published.
    pub fn on_change(&self, change: &Change) -> Vec<Arc<HubEvent>> {
        if change.kind == ChangeKind::Deleted {
            // Its rule states go: a deleted entity is not a silent one.
            if let Some(before) = &change.before {
                if let Some(t) = self.tenants.lock().get_mut(&*change.tenant) {
                    t.engine.forget(&before.id);
                }
            }
            return Vec::new();
        }
        let Some(after) = &change.after else {
            return Vec::new();
        };
        if self.is_own(after) {
            return Vec::new();
        }
        let mut tenants = self.tenants.lock();
        let Some(t) = tenants.get_mut(&*change.tenant) else {
            return Vec::new(); // no rules in this tenant
        };
        let mut events = Vec::new();
        let mut n = 0u64;
        for_each_observation(change.before.as_deref(), after, &mut |obs| {
            n += 1;
            events.extend(t.engine.observe(obs));
        });
        self.stats.observations.fetch_add(n, Ordering::Relaxed);
        self.publish(&change.tenant, t, events)
    }

    /// Moves every tenant's rule clock to now; answers the events published, per tenant.
    pub fn tick(&self) -> TenantEvents {
        let now = self.clock.now();
        let mut out = Vec::new();
        loop {
            let (slice, more) = self.tick_slice(now);
            out.extend(slice);
            if !more {
                return out;
            }
        }
    }

    /// Due states visited per hold of the tenants' lock: between slices the change
    /// feed goes on.
    const TICK_SLICE: usize = 2_000;

    /// One slice of a tick over every tenant; answers whether work remains.
    fn tick_slice(&self, now: DateTime<Utc>) -> (TenantEvents, bool) {
        let mut tenants = self.tenants.lock();
        let mut out = Vec::new();
        let mut more = false;
        for (tenant, t) in tenants.iter_mut() {
            let (events, m) = t.engine.tick_some(now, Self::TICK_SLICE);
            more |= m;
            let published = self.publish(tenant, t, events);
            if !published.is_empty() {
                out.push((tenant.clone(), published));
            }
        }
        (out, more)
    }

    fn publish(&self, tenant: &str, t: &mut TenantHub, events: Vec<Event>) -> Vec<Arc<HubEvent>> {
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            let counter = match event.kind {
                citybrain_rules::EventKind::Raised => &self.stats.events_raised,
                citybrain_rules::EventKind::Cleared => &self.stats.events_cleared,
                citybrain_rules::EventKind::Momentary => &self.stats.events_momentary,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let e = Arc::new(HubEvent {
                seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
                tenant: tenant.to_string(),
                event,
            });
            tracing::info!(
                tenant,
                rule = %e.event.rule,
                entity = %e.event.entity,
                kind = ?e.event.kind,
                "rule event"
            );
            if t.recent.len() >= RECENT {
                t.recent.pop_front();
            }
            t.recent.push_back(e.clone());
            // No receiver is fine: nobody is watching the live feed.
            let _ = self.events.send(e.clone());
            out.push(e);
        }
        out
    }

    async fn file(&self, tenant: &str, events: &[Arc<HubEvent>]) {
        if let Err(e) = self.file_events(tenant, events).await {
            tracing::error!(tenant, error = %e, "rule events could not be filed as incidents");
        }
    }

    /// Follows the change feed until it ends, and moves the rule clocks every second.
    /// Evaluation never waits for incidents to be written: events go to a filing task,
    /// which files what has gathered in one go (one wait for durability per round,
    /// however many incidents).
    ///
    /// Decision: rules are evaluated on a thread of their own (`citybrain-rules`), not
    /// on the async runtime. Evaluation is pure CPU work on every change; as a task it
    /// waited behind the request and ingest tasks (a task woken from the store's log
    /// thread is polled from the runtime's shared queue, and yields every 128
    /// messages), so under a 100,000 observations/s load it fell seconds behind while
    /// a core was idle. A thread is scheduled by the OS as soon as a change arrives.
    ///
    /// Decision: the same thread moves the rule clocks (windows closing, heartbeats
    /// missed), a slice of due states at a time with the pending changes evaluated
    /// between slices. Ticking from another task held the engines' lock slice after
    /// slice: when 90,000 tumbling windows closed together (every 5 s in the hub
    /// benchmark) the tick took 70–230 ms and changes waited behind it, which made
    /// the benchmark's p99.
    pub async fn run(self: Arc<Self>, feed: Feed) {
        self.run_until(feed, None).await
    }

    /// [`Hub::run`] until `stop` turns true (or its sender goes): then the changes
    /// already on the feed are evaluated, their events filed and made durable, and it
    /// returns. Shutdown stops the intake first, so nothing acknowledged is left
    /// unevaluated.
    pub async fn run_until(
        self: Arc<Self>,
        feed: Feed,
        stop: Option<tokio::sync::watch::Receiver<bool>>,
    ) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Vec<Arc<HubEvent>>)>();
        let filer = self.clone();
        let filing = tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut by_tenant: BTreeMap<String, Vec<Arc<HubEvent>>> = BTreeMap::new();
                by_tenant.entry(first.0).or_default().extend(first.1);
                while let Ok((t, evs)) = rx.try_recv() {
                    by_tenant.entry(t).or_default().extend(evs);
                }
                for (t, evs) in by_tenant {
                    filer.file(&t, &evs).await;
                }
            }
        });
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let evaluate = move || {
            match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => rt.block_on(self.evaluate(feed, tx, stop)),
                Err(e) => tracing::error!(error = %e, "could not start the rule evaluation loop"),
            }
            let _ = done_tx.send(());
        };
        match std::thread::Builder::new()
            .name("citybrain-rules".into())
            .spawn(evaluate)
        {
            Ok(_) => {
                let _ = done_rx.await;
            }
            Err(e) => tracing::error!(error = %e, "could not start the rule evaluation thread"),
        }
        // The evaluation loop has ended and dropped its sender: the filer files what it
        // holds and ends.
        if let Err(e) = filing.await {
            tracing::error!(error = %e, "the incident filing task failed");
        }
    }

    /// The evaluation loop (on the rules thread): changes as they come, and every
    /// second a tick, done in slices with the changes pending evaluated in between.
    async fn evaluate(
        &self,
        mut feed: Feed,
        tx: tokio::sync::mpsc::UnboundedSender<(String, Vec<Arc<HubEvent>>)>,
        mut stop: Option<tokio::sync::watch::Receiver<bool>>,
    ) {
        let eval = |change: Arc<Change>| {
            let events = self.on_change(&change);
            if !events.is_empty() {
                let _ = tx.send((change.tenant.to_string(), events));
            }
        };
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The time of the tick under way, if one is.
        let mut ticking: Option<DateTime<Utc>> = None;
        loop {
            if let Some(now) = ticking {
                loop {
                    match feed.try_recv() {
                        Ok(change) => eval(change),
                        Err(tokio::sync::mpsc::error::TryRecvError::Empty) => break,
                        Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => {
                            match self.resume(&feed) {
                                Some(f) => feed = f,
                                None => return,
                            }
                        }
                    }
                }
                let (slice, more) = self.tick_slice(now);
                for (tenant, events) in slice {
                    let _ = tx.send((tenant, events));
                }
                if !more {
                    ticking = None;
                }
                continue;
            }
            let stopping = async {
                match stop.as_mut() {
                    Some(s) => {
                        let _ = s.wait_for(|v| *v).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                change = feed.recv() => match change {
                    Some(change) => eval(change),
                    None => match self.resume(&feed) {
                        Some(f) => feed = f,
                        None => return,
                    },
                },
                _ = every.tick() => ticking = Some(self.clock.now()),
                _ = stopping => {
                    // Drain: what is on the feed now was acknowledged before the stop.
                    while let Ok(change) = feed.try_recv() {
                        eval(change);
                    }
                    tracing::info!("rule evaluation drained and stopped");
                    return;
                }
            }
        }
    }

    /// Checks the service levels every second until the process ends (rule clocks
    /// move on the evaluation thread, see [`Hub::run`]).
    pub async fn run_ticks(self: Arc<Self>) {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = self.check_slas().await {
                tracing::error!(error = %e, "SLA check failed");
            }
        }
    }
}

/// The observations a change makes: each attribute instance of `after` that is new, or
/// whose value or `observedAt` differs from `before`; once per entity type.
pub fn for_each_observation(
    before: Option<&Entity>,
    after: &Entity,
    f: &mut dyn FnMut(&Observation),
) {
    for (i, (name, instances)) in after.attrs.iter().enumerate() {
        // Names are interned: the same position and pointer in the common case.
        let prev = before.and_then(|b| b.attr_position(name, i).map(|at| &b.attrs[at].1));
        for a in instances {
            let old = prev.and_then(|l| l.iter().find(|x| x.dataset_id() == a.dataset_id()));
            if old.is_some_and(|o| o.observed_at == a.observed_at && o.value == a.value) {
                continue;
            }
            let value = ObsValue::from_attr(&a.value);
            let at = a.observed_at.unwrap_or(a.modified_at);
            for ty in &after.types {
                f(&Observation {
                    entity: &after.id,
                    entity_type: ty,
                    attr: name,
                    at,
                    value: value.clone(),
                });
            }
        }
    }
}
