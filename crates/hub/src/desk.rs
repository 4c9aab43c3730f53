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

use citybrain_model::entity::parse_entity;
use citybrain_rules::{Event, EventKind};
use citybrain_store::Write;
use serde_json::{json, Map, Value};

use crate::incident::{Attachment, Correlation, Incident, Move, Status, Step, TransitionError};
use crate::{Hub, HubError};

const INCIDENTS: &str = "incidents";
const ROUTING: &str = "routing";

/// One tenant's incidents and routing table.
#[derive(Default)]
pub(crate) struct Desk {
    incidents: BTreeMap<String, Incident>,
    next: u64,
    routing: BTreeMap<String, String>,
}

/// Filters of the incident list.
#[derive(Debug, Default, Clone)]
pub struct IncidentFilter {
    pub status: Option<Status>,
    pub category: Option<String>,
    pub department: Option<String>,
    /// Only incidents still being handled.
    pub open: Option<bool>,
}

/// Why a desk operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DeskError {
    #[error("no incident '{0}'")]
    NotFound(String),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Hub(#[from] HubError),
}

/// The number in an incident id (`urn:ngsi-ld:Incident:42` → 42).
fn number_of(id: &str) -> u64 {
    id.rsplit(':')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn load(store: &dyn citybrain_store::EntityStore) -> HashMap<String, Desk> {
    let mut out: HashMap<String, Desk> = HashMap::new();
    for (tenant, id, doc) in store.docs(INCIDENTS) {
        match serde_json::from_value::<Incident>(doc) {
            Ok(i) => {
                let d = out.entry(tenant).or_default();
                d.next = d.next.max(number_of(&i.id));
                d.incidents.insert(i.id.clone(), i);
            }
            Err(e) => {
                tracing::warn!(tenant, incident = id, error = %e, "an unreadable incident document")
            }
        }
    }
    for (tenant, _, doc) in store.docs(ROUTING) {
        if let Ok(table) = serde_json::from_value::<BTreeMap<String, String>>(doc) {
            out.entry(tenant).or_default().routing = table;
        }
    }
    out
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
        {
            let mut desks = self.desks.lock().await;
            let d = desks.entry(tenant.to_string()).or_default();
            for he in events {
                let e: &Event = &he.event;
                let found = d
                    .incidents
                    .values()
                    .filter(|i| corr.matches(i, e))
                    .max_by_key(|i| i.last_event_at)
                    .map(|i| i.id.clone());
                match (e.kind, found) {
                    (EventKind::Cleared, Some(id)) => {
                        if let Some(i) = d.incidents.get_mut(&id) {
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
                            touched.insert(id, i.clone());
                        }
                    }
                    (EventKind::Cleared, None) => {}
                    (_, Some(id)) => {
                        if let Some(i) = d.incidents.get_mut(&id) {
                            i.attach(e, now);
                            touched.insert(id, i.clone());
                        }
                    }
                    (_, None) => {
                        d.next += 1;
                        let id = format!("urn:ngsi-ld:Incident:{}", d.next);
                        let dept = d.routing.get(&*e.category).cloned();
                        let i = Incident::open(id.clone(), e, dept, now);
                        d.incidents.insert(id.clone(), i.clone());
                        touched.insert(id, i);
                    }
                }
            }
        }
        for i in touched.values() {
            self.save_incident(tenant, i).await?;
        }
        Ok(touched.into_values().collect())
    }

    /// Writes the incident document and its NGSI-LD entity; durable when it answers.
    async fn save_incident(&self, tenant: &str, i: &Incident) -> Result<(), HubError> {
        let doc = serde_json::to_value(i).unwrap_or(Value::Null);
        self.store
            .put_doc(tenant, INCIDENTS, &i.id, doc)?
            .wait()
            .await?;
        let body = entity_body(i);
        let now = self.clock.now();
        let entity = parse_entity(&body, &self.ctx, now)
            .map_err(|e| HubError::Store(citybrain_store::StoreError::Rejected(e)))?;
        let modified = self.store.modify(tenant, &i.id, &mut |cur| {
            Ok(Some(Write::Put(match cur {
                Some(old) => citybrain_model::ops::replace(old, entity.clone(), now),
                None => entity.clone(),
            })))
        })?;
        if let Some(m) = modified {
            m.commit.wait().await?;
        }
        Ok(())
    }

    /// Incidents of a tenant, newest first.
    pub async fn incidents(&self, tenant: &str, f: &IncidentFilter) -> Vec<Incident> {
        let desks = self.desks.lock().await;
        let Some(d) = desks.get(tenant) else {
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
            .lock()
            .await
            .get(tenant)?
            .incidents
            .get(id)
            .cloned()
    }

    /// Applies `f` to one incident and saves it.
    async fn update_incident(
        &self,
        tenant: &str,
        id: &str,
        f: &mut (dyn FnMut(&mut Incident) -> Result<(), DeskError> + Send),
    ) -> Result<Incident, DeskError> {
        let updated = {
            let mut desks = self.desks.lock().await;
            let i = desks
                .get_mut(tenant)
                .and_then(|d| d.incidents.get_mut(id))
                .ok_or_else(|| DeskError::NotFound(id.to_string()))?;
            let mut copy = i.clone();
            f(&mut copy)?;
            *i = copy.clone();
            copy
        };
        self.save_incident(tenant, &updated).await?;
        Ok(updated)
    }

    /// Moves an incident through its lifecycle.
    pub async fn move_incident(
        &self,
        tenant: &str,
        id: &str,
        m: &Move,
        by: &str,
    ) -> Result<Incident, DeskError> {
        let now = self.clock.now();
        if let Some(dup) = &m.duplicate_of {
            if self.incident(tenant, dup).await.is_none() {
                return Err(DeskError::Invalid(format!(
                    "duplicateOf: no incident '{dup}'"
                )));
            }
        }
        self.update_incident(tenant, id, &mut |i| Ok(i.transition(m, by, now)?))
            .await
    }

    /// Adds a comment.
    pub async fn comment(
        &self,
        tenant: &str,
        id: &str,
        text: &str,
        by: &str,
    ) -> Result<Incident, DeskError> {
        let text = text.trim();
        if text.is_empty() || text.len() > 10_000 {
            return Err(DeskError::Invalid("text: 1 to 10,000 characters".into()));
        }
        let now = self.clock.now();
        self.update_incident(tenant, id, &mut |i| {
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
        tenant: &str,
        id: &str,
        url: &str,
        name: Option<&str>,
        by: &str,
    ) -> Result<Incident, DeskError> {
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2_048 {
            return Err(DeskError::Invalid(
                "url: an http(s) URL of at most 2,048 characters".into(),
            ));
        }
        let now = self.clock.now();
        self.update_incident(tenant, id, &mut |i| {
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

    /// The routing table: category → department.
    pub async fn routing(&self, tenant: &str) -> BTreeMap<String, String> {
        self.desks
            .lock()
            .await
            .get(tenant)
            .map(|d| d.routing.clone())
            .unwrap_or_default()
    }

    /// Replaces the routing table (new incidents follow it; open ones keep theirs).
    pub async fn set_routing(
        &self,
        tenant: &str,
        table: BTreeMap<String, String>,
    ) -> Result<(), DeskError> {
        if let Some((k, _)) = table
            .iter()
            .find(|(k, v)| k.trim().is_empty() || v.trim().is_empty())
        {
            return Err(DeskError::Invalid(format!(
                "'{k}': categories and departments must not be empty"
            )));
        }
        let doc = serde_json::to_value(&table).unwrap_or(Value::Null);
        self.store
            .put_doc(tenant, ROUTING, "table", doc)
            .map_err(HubError::from)?
            .wait()
            .await
            .map_err(HubError::from)?;
        self.desks
            .lock()
            .await
            .entry(tenant.to_string())
            .or_default()
            .routing = table;
        Ok(())
    }
}

/// The NGSI-LD entity of an incident (its queryable summary).
fn entity_body(i: &Incident) -> Map<String, Value> {
    let prop = |v: Value| json!({"type": "Property", "value": v});
    let mut b = Map::new();
    b.insert("id".into(), json!(i.id));
    b.insert("type".into(), json!("Incident"));
    b.insert("category".into(), prop(json!(i.category)));
    b.insert(
        "severity".into(),
        prop(serde_json::to_value(i.severity).unwrap_or(Value::Null)),
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
    b
}
