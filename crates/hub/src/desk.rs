//! The incident desk: rule events become incidents (gathered by category, place and
//! time), routed to a department by category, moved through their lifecycle by the
//! people handling them, with comments and attachments.
//!
//! Each incident is a document in the store's `incidents` collection (the whole
//! record: history, attachments) and an NGSI-LD entity of type `Incident` (its
//! summary: category, severity, status, department, unit, location, related entities,
//! event count), so incidents are queried and subscribed to like any entity, and the
//! temporal API shows how their status changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use citybrain_access::{Principal, RequestContext, Resource, Verb};
use citybrain_model::entity::parse_entity;
use citybrain_rules::{Event, EventKind};
use serde_json::{json, Map, Value};

use crate::book::Book;
use crate::incident::{Attachment, Correlation, Incident, Move, Status, Step};
pub use crate::requests::{DeskError, IncidentFilter, NewIncident};
use crate::sla::{Mode, Policy, SlaPolicy};
use crate::tasks::{self, Plan, TaskError, TaskStatus};
use crate::{Hub, HubError};

const INCIDENTS: &str = "incidents";
const ROUTING: &str = "routing";
pub(crate) const SLA: &str = "sla_policy";
const PLANS: &str = "plans";

/// Every tenant's desk, each behind a lock of its own: one tenant's write, held while
/// it waits for durability, never holds up another tenant.
#[derive(Default)]
pub(crate) struct Desks {
    map: parking_lot::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Desk>>>>,
}

pub(crate) type DeskGuard = tokio::sync::OwnedMutexGuard<Desk>;

impl Desks {
    pub(crate) fn new(desks: HashMap<String, Desk>) -> Desks {
        Desks {
            map: parking_lot::Mutex::new(
                desks
                    .into_iter()
                    .map(|(t, d)| (t, Arc::new(tokio::sync::Mutex::new(d))))
                    .collect(),
            ),
        }
    }

    /// The desk of `tenant`, created empty when it has none, locked.
    pub(crate) async fn lock(&self, tenant: &str) -> DeskGuard {
        let desk = self
            .map
            .lock()
            .entry(tenant.to_string())
            .or_default()
            .clone();
        desk.lock_owned().await
    }

    /// The desk of `tenant`, locked, when it has one.
    pub(crate) async fn lock_existing(&self, tenant: &str) -> Option<DeskGuard> {
        let desk = self.map.lock().get(tenant).cloned()?;
        Some(desk.lock_owned().await)
    }

    /// What `f` reads from `tenant`'s desk, when it has one.
    pub(crate) async fn read<T>(&self, tenant: &str, f: impl FnOnce(&Desk) -> T) -> Option<T> {
        let d = self.lock_existing(tenant).await?;
        Some(f(&d))
    }

    /// Every tenant with a desk (each locked in turn by the caller).
    pub(crate) fn tenants(&self) -> Vec<(String, Arc<tokio::sync::Mutex<Desk>>)> {
        self.map
            .lock()
            .iter()
            .map(|(t, d)| (t.clone(), d.clone()))
            .collect()
    }
}

/// One tenant's incidents, routing tables, service levels and mode.
#[derive(Default)]
pub(crate) struct Desk {
    pub(crate) incidents: Book,
    next: u64,
    routing: BTreeMap<String, String>,
    /// Routing in emergency mode (falls back to `routing`).
    emergency_routing: BTreeMap<String, String>,
    pub(crate) policy: Policy,
    /// The tenant's mode, its areas and theirs.
    pub(crate) modes: crate::modes::ModeState,
    plans: Vec<Plan>,
}

impl Desk {
    fn department(&self, category: &str, mode: Mode) -> Option<String> {
        let pick = |t: &BTreeMap<String, String>| t.get(category).or_else(|| t.get("*")).cloned();
        match mode {
            Mode::Emergency => pick(&self.emergency_routing).or_else(|| pick(&self.routing)),
            Mode::Normal => pick(&self.routing),
        }
    }
}

/// The number in an incident id (`urn:ngsi-ld:Incident:42` → 42).
fn number_of(id: &str) -> u64 {
    id.rsplit(':')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn load(
    store: &dyn citybrain_storage::EntityStore,
) -> Result<HashMap<String, Desk>, citybrain_storage::StoreError> {
    let mut out: HashMap<String, Desk> = HashMap::new();
    for (tenant, id, doc) in citybrain_storage::load_collection(store, INCIDENTS)? {
        match serde_json::from_value::<Incident>(doc) {
            Ok(i) => {
                let d = out.entry(tenant).or_default();
                d.next = d.next.max(number_of(&i.id));
                d.incidents.put(i);
            }
            Err(e) => {
                tracing::warn!(tenant, incident = id, error = %e, "an unreadable incident document")
            }
        }
    }
    for (tenant, id, doc) in citybrain_storage::load_collection(store, ROUTING)? {
        match serde_json::from_value::<BTreeMap<String, String>>(doc) {
            Ok(table) => {
                let d = out.entry(tenant).or_default();
                if id == "emergency" {
                    d.emergency_routing = table;
                } else {
                    d.routing = table;
                }
            }
            Err(e) => {
                tracing::warn!(tenant, table = id, error = %e, "an unreadable routing table: incidents go unrouted until it is put again")
            }
        }
    }
    for (tenant, id, doc) in citybrain_storage::load_collection(store, SLA)? {
        match serde_json::from_value::<SlaPolicy>(doc)
            .map_err(|e| e.to_string())
            .and_then(Policy::compile)
        {
            Ok(p) => out.entry(tenant).or_default().policy = p,
            Err(e) => {
                tracing::warn!(tenant, doc = id, error = %e, "a stored SLA policy no longer loads")
            }
        }
    }
    for (tenant, modes) in crate::modes::load(store)? {
        out.entry(tenant).or_default().modes = modes;
    }
    for (tenant, _, doc) in citybrain_storage::load_collection(store, PLANS)? {
        match serde_json::from_value::<Vec<Plan>>(doc) {
            Ok(p) => out.entry(tenant).or_default().plans = p,
            Err(e) => {
                tracing::warn!(tenant, error = %e, "unreadable emergency plans: none apply until they are put again")
            }
        }
    }
    Ok(out)
}

impl Hub {
    /// Turns raised and momentary events into incidents (cleared ones are noted on the
    /// incident they belong to); answers the incidents touched.
    pub async fn file_events(
        &self,
        tenant: &str,
        events: &[Arc<crate::HubEvent>],
    ) -> Result<Vec<Incident>, HubError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.clock.now();
        let corr: Correlation = *self.correlation.lock();
        let mut touched: BTreeMap<String, Incident> = BTreeMap::new();
        let mut before: BTreeMap<String, Option<Incident>> = BTreeMap::new();
        let rc = RequestContext::service(tenant, Principal::RULES);
        let (list, commits) = {
            let mut d = self.desks.lock(tenant).await;
            for he in events {
                let e: &Event = &he.event;
                let found = d
                    .incidents
                    .open_in(&e.category)
                    .filter(|i| corr.matches(i, e))
                    .max_by_key(|i| i.last_event_at)
                    .map(|i| i.id.clone());
                match (e.kind, found) {
                    (EventKind::Cleared, Some(id)) => {
                        before
                            .entry(id.clone())
                            .or_insert_with(|| d.incidents.get(&id).cloned());
                        if let Some(i) = d.incidents.update(&id, |i| {
                            i.history.push(Step {
                                at: now,
                                by: "rules".into(),
                                action: "cleared".into(),
                                from: None,
                                to: None,
                                reason: None,
                                note: Some(format!(
                                    "rule {} cleared on {} at {}",
                                    e.rule, e.entity, e.at
                                )),
                            });
                            i.updated_at = now;
                            i.clone()
                        }) {
                            touched.insert(id, i);
                        }
                    }
                    (EventKind::Cleared, None) => {}
                    (_, Some(id)) => {
                        before
                            .entry(id.clone())
                            .or_insert_with(|| d.incidents.get(&id).cloned());
                        if let Some(i) = d.incidents.update(&id, |i| {
                            i.attach(e, now);
                            i.clone()
                        }) {
                            touched.insert(id, i);
                        }
                    }
                    (_, None) => {
                        d.next += 1;
                        let id = format!("urn:ngsi-ld:Incident:{}", d.next);
                        let mode = d.modes.at(e.location);
                        let dept = d.department(&e.category, mode);
                        let mut i = Incident::open(id.clone(), e, dept, now);
                        i.sla.mode = mode;
                        apply_plans(&d.plans, mode, &mut i, now);
                        d.incidents.put(i.clone());
                        before.insert(id.clone(), None);
                        touched.insert(id, i);
                    }
                }
            }
            let list: Vec<Incident> = touched.into_values().collect();
            let commits = self.stage_on(&mut d, &rc, &list, before.into_iter().collect())?;
            (list, commits)
        };
        self.publish_incidents(&rc, &list, commits).await?;
        Ok(list)
    }

    /// Logs incidents the desk `d` now shows, while its guard is held: the log takes
    /// changes in the order the desk made them, and no other writer builds on a change
    /// that was not logged. When the store refuses them, the desk shows `before` again
    /// (each incident's state before this change; `None`: it was new), under the same
    /// guard. The commits to wait for, once the guard is released ([`Hub::publish_incidents`]).
    pub(crate) fn stage_on(
        &self,
        d: &mut Desk,
        rc: &RequestContext,
        list: &[Incident],
        before: Vec<(String, Option<Incident>)>,
    ) -> Result<Vec<citybrain_storage::Commit>, HubError> {
        self.stage_incidents(rc, list).inspect_err(|_| {
            for (id, b) in before {
                match b {
                    Some(b) => d.incidents.put(b),
                    None => d.incidents.remove(&id),
                }
            }
        })
    }

    /// Waits once for staged incidents to be durable (group commit), then shows them
    /// on the live feed.
    pub(crate) async fn publish_incidents(
        &self,
        rc: &RequestContext,
        list: &[Incident],
        commits: Vec<citybrain_storage::Commit>,
    ) -> Result<(), HubError> {
        for c in commits {
            c.wait().await?;
        }
        for i in list {
            let _ = self.incident_tx.send(Arc::new(crate::IncidentChange {
                tenant: rc.tenant.clone(),
                incident: i.clone(),
            }));
        }
        Ok(())
    }

    /// Logs incidents' documents, then their entities in one bulk write (one hold of
    /// the tenant's write lock for the lot: under ingestion load each single write
    /// queued behind the ingest batches); the commits to wait for.
    fn stage_incidents(
        &self,
        rc: &RequestContext,
        list: &[Incident],
    ) -> Result<Vec<citybrain_storage::Commit>, HubError> {
        let tenant = rc.tenant.as_str();
        let origin = rc.origin();
        let mut out = Vec::with_capacity(list.len() * 2);
        let now = self.clock.now();
        let mut ids = Vec::with_capacity(list.len());
        let mut entities = Vec::with_capacity(list.len());
        // Every entity is checked before any document is logged: a refused incident
        // leaves no trace on disk.
        for i in list {
            entities.push(self.entity_of(i, now)?);
            ids.push(i.id.clone());
        }
        for i in list {
            let doc = crate::encode(i, "incident document")?;
            out.push(self.store.put_doc(tenant, INCIDENTS, &i.id, doc, &origin)?);
        }
        let results = self.store.modify_many(
            tenant,
            &ids,
            &mut |n, cur| {
                let Some(entity) = entities.get(n) else {
                    return Ok(None);
                };
                Ok(Some(match cur {
                    Some(old) => citybrain_model::ops::replace(old, entity.clone(), now),
                    None => entity.clone(),
                }))
            },
            citybrain_storage::ModifyOptions::by(origin.clone()),
        )?;
        for r in results {
            match r {
                Ok(Some(m)) => out.push(m.commit),
                Ok(None) => {}
                Err(e) => return Err(HubError::Store(citybrain_storage::StoreError::Rejected(e))),
            }
        }
        Ok(out)
    }

    /// The NGSI-LD entity of an incident (a refusal names what is wrong with it).
    fn entity_of(
        &self,
        i: &Incident,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<citybrain_model::Entity, HubError> {
        parse_entity(&entity_body(i)?, &self.ctx, now)
            .map_err(|e| HubError::Store(citybrain_storage::StoreError::Rejected(e)))
    }

    /// Incidents of a tenant, newest first.
    pub async fn incidents(&self, tenant: &str, f: &IncidentFilter) -> Vec<Incident> {
        let Some(d) = self.desks.lock_existing(tenant).await else {
            return Vec::new();
        };
        let mut out: Vec<Incident> = d
            .incidents
            .values()
            .filter(|i| f.status.is_none_or(|s| s == i.status))
            .filter(|i| f.category.as_deref().is_none_or(|c| c == i.category))
            .filter(|i| {
                f.department
                    .as_deref()
                    .is_none_or(|x| Some(x) == i.department.as_deref())
            })
            .filter(|i| f.open.is_none_or(|o| o == i.status.is_open()))
            .cloned()
            .collect();
        out.sort_by_key(|i| std::cmp::Reverse(number_of(&i.id)));
        out
    }

    pub async fn incident(&self, tenant: &str, id: &str) -> Option<Incident> {
        self.desks
            .read(tenant, |d| d.incidents.get(id).cloned())
            .await
            .flatten()
    }

    /// Applies `f` to one incident and saves it.
    async fn update_incident(
        &self,
        rc: &RequestContext,
        id: &str,
        f: &mut (dyn FnMut(&mut Incident) -> Result<(), DeskError> + Send),
    ) -> Result<Incident, DeskError> {
        let (updated, commits) = {
            let mut d = self
                .desks
                .lock_existing(&rc.tenant)
                .await
                .ok_or_else(|| DeskError::NotFound(id.to_string()))?;
            let before = d
                .incidents
                .get(id)
                .ok_or_else(|| DeskError::NotFound(id.to_string()))?
                .clone();
            let mut copy = before.clone();
            f(&mut copy)?;
            d.incidents.put(copy.clone());
            let list = std::slice::from_ref(&copy);
            let commits = self.stage_on(&mut d, rc, list, vec![(copy.id.clone(), Some(before))])?;
            (copy, commits)
        };
        self.publish_incidents(rc, std::slice::from_ref(&updated), commits)
            .await?;
        Ok(updated)
    }

    /// Moves an incident through its lifecycle.
    pub async fn move_incident(
        &self,
        rc: &RequestContext,
        id: &str,
        m: &Move,
    ) -> Result<Incident, DeskError> {
        self.allow(rc, Verb::Update, Resource::Incident(Some(id)))?;
        let by = &rc.actor();
        let now = self.clock.now();
        if let Some(dup) = &m.duplicate_of {
            if self.incident(&rc.tenant, dup).await.is_none() {
                return Err(DeskError::Invalid(format!(
                    "duplicateOf: no incident '{dup}'"
                )));
            }
        }
        self.update_incident(rc, id, &mut |i| Ok(i.transition(m, by, now)?))
            .await
    }

    /// Adds a comment.
    pub async fn comment(
        &self,
        rc: &RequestContext,
        id: &str,
        text: &str,
    ) -> Result<Incident, DeskError> {
        self.allow(rc, Verb::Update, Resource::Incident(Some(id)))?;
        let by = &rc.actor();
        let text = text.trim();
        if text.is_empty() || text.len() > 10_000 {
            return Err(DeskError::Invalid("text: 1 to 10,000 characters".into()));
        }
        let now = self.clock.now();
        self.update_incident(rc, id, &mut |i| {
            i.history.push(Step {
                at: now,
                by: by.to_string(),
                action: "comment".into(),
                from: None,
                to: None,
                reason: None,
                note: Some(text.to_string()),
            });
            i.updated_at = now;
            Ok(())
        })
        .await
    }

    /// Adds an attachment by URL (the file stays where it is).
    pub async fn attach_url(
        &self,
        rc: &RequestContext,
        id: &str,
        url: &str,
        name: Option<&str>,
    ) -> Result<Incident, DeskError> {
        self.allow(rc, Verb::Update, Resource::Incident(Some(id)))?;
        let by = &rc.actor();
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2_048 {
            return Err(DeskError::Invalid(
                "url: an http(s) URL of at most 2,048 characters".into(),
            ));
        }
        let now = self.clock.now();
        self.update_incident(rc, id, &mut |i| {
            i.attachments.push(Attachment {
                url: url.to_string(),
                name: name.map(str::to_string),
                at: now,
                by: by.to_string(),
            });
            i.history.push(Step {
                at: now,
                by: by.to_string(),
                action: "attachment".into(),
                from: None,
                to: None,
                reason: None,
                note: Some(url.to_string()),
            });
            i.updated_at = now;
            Ok(())
        })
        .await
    }

    /// The routing table of a mode: category (or `*`) → department.
    pub async fn routing(&self, tenant: &str, mode: Mode) -> BTreeMap<String, String> {
        self.desks
            .read(tenant, |d| match mode {
                Mode::Normal => d.routing.clone(),
                Mode::Emergency => d.emergency_routing.clone(),
            })
            .await
            .unwrap_or_default()
    }

    /// Replaces the routing table of a mode (new incidents follow it; open ones keep
    /// theirs). The emergency table falls back to the normal one.
    pub async fn set_routing(
        &self,
        rc: &RequestContext,
        mode: Mode,
        table: BTreeMap<String, String>,
    ) -> Result<(), DeskError> {
        self.allow(rc, Verb::Administer, Resource::Routing)?;
        if let Some((k, _)) = table
            .iter()
            .find(|(k, v)| k.trim().is_empty() || v.trim().is_empty())
        {
            return Err(DeskError::Invalid(format!(
                "'{k}': categories and departments must not be empty"
            )));
        }
        let key = match mode {
            Mode::Normal => "table",
            Mode::Emergency => "emergency",
        };
        self.put_doc(rc, ROUTING, key, &table).await?;
        let mut d = self.desks.lock(&rc.tenant).await;
        match mode {
            Mode::Normal => d.routing = table,
            Mode::Emergency => d.emergency_routing = table,
        }
        Ok(())
    }

    /// Writes a document durably, by `rc`. What cannot be encoded is an error
    /// (logged where it is answered), never a `null` document.
    pub(crate) async fn put_doc<T: serde::Serialize + ?Sized>(
        &self,
        rc: &RequestContext,
        coll: &str,
        id: &str,
        doc: &T,
    ) -> Result<(), HubError> {
        let doc = crate::encode(doc, coll)?;
        self.store
            .put_doc(&rc.tenant, coll, id, doc, &rc.origin())?
            .wait()
            .await?;
        Ok(())
    }

    /// The emergency plans.
    pub async fn plans(&self, tenant: &str) -> Vec<Plan> {
        self.desks
            .read(tenant, |d| d.plans.clone())
            .await
            .unwrap_or_default()
    }

    /// Replaces the plans (checked first).
    pub async fn set_plans(&self, rc: &RequestContext, plans: Vec<Plan>) -> Result<(), DeskError> {
        self.allow(rc, Verb::Administer, Resource::Routing)?;
        tasks::check_plans(&plans).map_err(DeskError::Invalid)?;
        self.put_doc(rc, PLANS, "list", &plans).await?;
        self.desks.lock(&rc.tenant).await.plans = plans;
        Ok(())
    }

    /// Files an incident by hand, with its tasks (and the plan's, in its mode).
    pub async fn open_incident(
        &self,
        rc: &RequestContext,
        req: NewIncident,
    ) -> Result<Incident, DeskError> {
        self.allow(rc, Verb::Create, Resource::Incident(None))?;
        self.file_incident(rc, req, &rc.actor(), None).await
    }

    /// Files a citizen's request (Open311) as an incident.
    pub(crate) async fn open_request(
        &self,
        rc: &RequestContext,
        req: NewIncident,
        citizen: crate::parts::CitizenRequest,
    ) -> Result<Incident, DeskError> {
        self.file_incident(rc, req, "open311", Some(citizen)).await
    }

    /// Records the citizen's rating of a resolved or closed request, once.
    pub(crate) async fn rate_request(
        &self,
        rc: &RequestContext,
        id: &str,
        rating: u8,
    ) -> Result<Incident, DeskError> {
        let now = self.clock.now();
        self.update_incident(rc, id, &mut |i| {
            // Only a citizen's request is rated: anything else is not found here.
            if i.request.is_none() {
                return Err(DeskError::NotFound(i.id.clone()));
            }
            if !matches!(i.status, Status::Resolved | Status::Closed) {
                return Err(DeskError::Invalid(format!(
                    "the request is {}; it can be rated once resolved or closed",
                    i.status.name()
                )));
            }
            let Some(r) = i.request.as_mut() else {
                return Err(DeskError::NotFound(i.id.clone()));
            };
            if r.rating.is_some() {
                return Err(DeskError::Invalid("the request is rated already".into()));
            }
            r.rating = Some(rating);
            i.history.push(Step {
                at: now,
                by: "citizen".into(),
                action: "rating".into(),
                from: None,
                to: None,
                reason: None,
                note: Some(format!("{rating} of 5")),
            });
            i.updated_at = now;
            Ok(())
        })
        .await
    }

    async fn file_incident(
        &self,
        rc: &RequestContext,
        req: NewIncident,
        by: &str,
        citizen: Option<crate::parts::CitizenRequest>,
    ) -> Result<Incident, DeskError> {
        if req.category.trim().is_empty() || req.title.trim().is_empty() {
            return Err(DeskError::Invalid(
                "category and title: must not be empty".into(),
            ));
        }
        if let Some([lon, lat]) = req.location {
            if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
                return Err(DeskError::Invalid(
                    "location: [longitude, latitude] in range".into(),
                ));
            }
        }
        tasks::check_tasks("tasks", &req.tasks).map_err(DeskError::Invalid)?;
        let now = self.clock.now();
        let (i, commits) = {
            let mut d = self.desks.lock(&rc.tenant).await;
            d.next += 1;
            let id = format!("urn:ngsi-ld:Incident:{}", d.next);
            let event = citybrain_rules::Event {
                rule: Arc::from("-"),
                category: Arc::from(req.category.as_str()),
                severity: req.severity.unwrap_or(citybrain_rules::Severity::Medium),
                entity: Arc::from(req.entities.first().map(String::as_str).unwrap_or("-")),
                entity_type: Arc::from("-"),
                kind: EventKind::Momentary,
                at: now,
                value: None,
                location: req.location,
            };
            let mode = d.modes.at(req.location);
            let mut i = Incident::open(id.clone(), &event, d.department(&req.category, mode), now);
            i.title = req.title.clone();
            i.rules.clear();
            i.entities = req.entities.clone();
            i.history[0].by = by.to_string();
            i.history[0].note = Some(format!("filed by {by}"));
            i.sla.mode = mode;
            i.request = citizen.clone();
            if !req.tasks.is_empty() {
                tasks::open_tasks(
                    &mut i,
                    &req.tasks,
                    by,
                    format!("{} tasks filed with the request", req.tasks.len()),
                    now,
                );
            }
            apply_plans(&d.plans, mode, &mut i, now);
            d.incidents.put(i.clone());
            let commits = self.stage_on(
                &mut d,
                rc,
                std::slice::from_ref(&i),
                vec![(i.id.clone(), None)],
            )?;
            (i, commits)
        };
        self.publish_incidents(rc, std::slice::from_ref(&i), commits)
            .await?;
        Ok(i)
    }

    /// Moves one task (and the incident with it).
    pub async fn move_task(
        &self,
        rc: &RequestContext,
        id: &str,
        n: usize,
        to: TaskStatus,
    ) -> Result<Incident, DeskError> {
        self.allow(rc, Verb::Update, Resource::Incident(Some(id)))?;
        let by = &rc.actor();
        let now = self.clock.now();
        self.update_incident(rc, id, &mut |i| {
            tasks::move_task(i, n, to, by, now).map_err(|e| {
                let msg = match &e {
                    TaskError::NoSuchTask(n) => format!("no task {n}"),
                    TaskError::Waiting(w) => format!("task {n} waits for tasks {w:?} to be done"),
                    TaskError::Final(s) => format!("task {n} is {s:?} already"),
                    TaskError::Closed(s) => {
                        format!("the incident is {} and takes no task changes", s.name())
                    }
                };
                DeskError::Task(msg, e)
            })
        })
        .await
    }
}

/// Opens the tasks of the plans for `i`'s category in `mode`.
fn apply_plans(plans: &[Plan], mode: Mode, i: &mut Incident, now: chrono::DateTime<chrono::Utc>) {
    let category = i.category.clone();
    for p in plans
        .iter()
        .filter(|p| p.category == category && p.mode == mode)
    {
        let note = format!("plan {} opened {} tasks", p.id, p.tasks.len());
        tasks::open_tasks(i, &p.tasks, "plan", note, now);
    }
}

/// The NGSI-LD entity of an incident (its queryable summary).
fn entity_body(i: &Incident) -> Result<Map<String, Value>, HubError> {
    let prop = |v: Value| json!({"type": "Property", "value": v});
    let mut b = Map::new();
    b.insert("id".into(), json!(i.id));
    b.insert("type".into(), json!("Incident"));
    b.insert("category".into(), prop(json!(i.category)));
    b.insert(
        "severity".into(),
        prop(crate::encode(&i.severity, "incident severity")?),
    );
    b.insert("status".into(), prop(json!(i.status.name())));
    b.insert("title".into(), prop(json!(i.title)));
    b.insert("eventCount".into(), prop(json!(i.event_count)));
    b.insert("relatedEntities".into(), prop(json!(i.entities)));
    b.insert("rules".into(), prop(json!(i.rules)));
    b.insert(
        "openedAt".into(),
        prop(json!(citybrain_model::time::format_datetime(&i.opened_at))),
    );
    // The mode it was opened in: responders subscribe by mode (their emergency channel).
    b.insert(
        "mode".into(),
        prop(crate::encode(&i.sla.mode, "incident mode")?),
    );
    if let Some(d) = &i.department {
        b.insert("department".into(), prop(json!(d)));
    }
    if let Some(u) = &i.unit {
        b.insert("unit".into(), prop(json!(u)));
    }
    if let Some([lon, lat]) = i.location {
        b.insert(
            "location".into(),
            json!({"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}),
        );
    }
    if let Some(first) = i.entities.first() {
        b.insert(
            "refEntity".into(),
            json!({"type": "Relationship", "object": first}),
        );
    }
    Ok(b)
}

#[cfg(test)]
mod desks_tests {
    use super::*;

    #[tokio::test]
    async fn one_tenants_lock_never_holds_another() {
        let desks = Desks::default();
        let a = desks.lock("a").await;
        let b = tokio::time::timeout(std::time::Duration::from_secs(1), desks.lock("b")).await;
        assert!(b.is_ok(), "tenant b waited for tenant a's desk");
        // The same tenant does wait.
        let again =
            tokio::time::timeout(std::time::Duration::from_millis(50), desks.lock("a")).await;
        assert!(again.is_err());
        drop(a);
        assert!(desks.lock_existing("a").await.is_some());
        assert!(desks.lock_existing("c").await.is_none());
    }
}
