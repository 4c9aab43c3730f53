//! Rules as versioned documents: put (validated first; a rule put judges the entities
//! as they are), delete (kept as a version), read with their run-time status.

use std::collections::HashMap;
use std::sync::Arc;

use citybrain_access::{RequestContext, Resource, Verb};
use citybrain_model::time::format_datetime;
use citybrain_model::Entity;
use citybrain_rules::{Engine, RuleSpec, RuleStatus};
use serde_json::{json, Value};

use crate::{
    encode, for_each_observation, Hub, HubError, HubEvent, RuleRecord, RuleView, RULES, VERSIONS,
};

impl Hub {
    /// Puts a validated record into the tenant's engine.
    pub(crate) fn install(&self, tenant: &str, rec: RuleRecord) -> Result<(), HubError> {
        let mut tenants = self.tenants.lock();
        let t = tenants
            .entry(tenant.to_string())
            .or_insert_with(|| self.new_tenant());
        t.engine.put(self.expanded(&rec.rule))?;
        t.rules.insert(rec.rule.id.clone(), rec);
        Ok(())
    }

    /// Creates (`create_only`) or replaces a rule; durable when it answers.
    pub async fn put_rule(
        &self,
        rc: &RequestContext,
        spec: RuleSpec,
        create_only: bool,
    ) -> Result<RuleRecord, HubError> {
        let verb = if create_only {
            Verb::Create
        } else {
            Verb::Update
        };
        self.allow(rc, verb, Resource::Rule(Some(&spec.id)))?;
        let tenant = rc.tenant.as_str();
        let origin = rc.origin();
        // Validate before anything is written (the emergency condition too).
        citybrain_rules::Engine::new().put(self.expanded(&spec))?;
        let id = spec.id.clone();
        let exists = self
            .tenants
            .lock()
            .get(tenant)
            .is_some_and(|t| t.rules.contains_key(&id));
        if create_only && exists {
            return Err(HubError::Exists(id));
        }
        let version = self.next_version(tenant, &id);
        let rec = RuleRecord {
            rule: spec,
            version,
            modified_at: self.clock.now(),
            modified_by: rc.actor(),
        };
        let doc = doc_of(&rec)?;
        self.store
            .put_doc(
                tenant,
                VERSIONS,
                &format!("{id}@{version:010}"),
                doc.clone(),
                &origin,
            )?
            .wait()
            .await?;
        self.store
            .put_doc(tenant, RULES, &id, doc, &origin)?
            .wait()
            .await?;
        self.install(tenant, rec.clone())?;
        let events = self.seed_rule(tenant, &id);
        if !events.is_empty() {
            self.file(tenant, &events).await;
        }
        Ok(rec)
    }

    /// Gives a rule just put the current state of the entities it selects (each
    /// attribute instance one observation at its `observedAt`); answers the events
    /// published.
    ///
    /// Decision: unlike the rebuild at start, these events are raised and filed: a
    /// new or changed rule judges the city as it is now (a meter already silent is
    /// reported at the next tick, a value already over a lowered threshold raises).
    /// The tenant's engine is held for the scan (about 1 µs per entity selected by
    /// type, less by id), during which changes wait.
    pub(crate) fn seed_rule(&self, tenant: &str, id: &str) -> Vec<Arc<HubEvent>> {
        let mut tenants = self.tenants.lock();
        let Some(t) = tenants.get_mut(tenant) else {
            return Vec::new();
        };
        let Some(rec) = t.rules.get(id) else {
            return Vec::new();
        };
        let sel = self.expanded(&rec.rule).select;
        let mut events = Vec::new();
        let mut feed = |e: &Arc<Entity>, engine: &mut Engine| {
            if self.is_own(e) {
                return;
            }
            for_each_observation(None, e, &mut |obs| {
                events.extend(engine.observe_rule(id, obs));
            });
        };
        if sel.ids.is_empty() {
            let scanned = self.store.scan(
                tenant,
                Some(std::slice::from_ref(&sel.ty)),
                None,
                &mut |e| {
                    feed(e, &mut t.engine);
                    std::ops::ControlFlow::Continue(())
                },
            );
            if let Err(error) = scanned {
                tracing::error!(tenant, rule = id, %error, "a rule could not judge the entities as they are");
            }
        } else {
            for i in &sel.ids {
                match self.store.get(tenant, i) {
                    Ok(Some(e)) => feed(&e, &mut t.engine),
                    Ok(None) => {}
                    Err(error) => {
                        tracing::error!(tenant, entity = %i, %error, "a rule's entity could not be read")
                    }
                }
            }
        }
        self.publish(tenant, t, events)
    }

    /// Reserves the next version number of `id` (deletions count too).
    fn next_version(&self, tenant: &str, id: &str) -> u64 {
        let mut m = self.last_versions.lock();
        let v = m.entry((tenant.to_string(), id.to_string())).or_insert(0);
        *v += 1;
        *v
    }

    /// Deletes a rule (its state goes with it); the deletion is kept as a version.
    pub async fn delete_rule(&self, rc: &RequestContext, id: &str) -> Result<(), HubError> {
        self.allow(rc, Verb::Delete, Resource::Rule(Some(id)))?;
        let tenant = rc.tenant.as_str();
        let origin = rc.origin();
        if self.rule(tenant, id).is_none() {
            return Err(HubError::NotFound(id.to_string()));
        }
        let version = self.next_version(tenant, id);
        let tomb = json!({
            "id": id,
            "version": version,
            "deleted": true,
            "modifiedAt": format_datetime(&self.clock.now()),
            "modifiedBy": rc.actor(),
        });
        self.store
            .put_doc(
                tenant,
                VERSIONS,
                &format!("{id}@{version:010}"),
                tomb,
                &origin,
            )?
            .wait()
            .await?;
        if let Some(c) = self.store.delete_doc(tenant, RULES, id, &origin)? {
            c.wait().await?;
        }
        let mut tenants = self.tenants.lock();
        if let Some(t) = tenants.get_mut(tenant) {
            t.engine.remove(id);
            t.rules.remove(id);
        }
        Ok(())
    }

    /// One rule with its status.
    pub fn rule(&self, tenant: &str, id: &str) -> Option<RuleView> {
        let tenants = self.tenants.lock();
        let t = tenants.get(tenant)?;
        let rec = t.rules.get(id)?.clone();
        let status = t.engine.status_of(id)?;
        Some(RuleView {
            record: rec,
            status,
        })
    }

    /// Every rule of a tenant, by id.
    pub fn rules(&self, tenant: &str) -> Vec<RuleView> {
        let tenants = self.tenants.lock();
        let Some(t) = tenants.get(tenant) else {
            return Vec::new();
        };
        let status: HashMap<String, RuleStatus> = t
            .engine
            .status()
            .into_iter()
            .map(|s| (s.id.clone(), s))
            .collect();
        t.rules
            .values()
            .filter_map(|r| {
                Some(RuleView {
                    record: r.clone(),
                    status: status.get(&r.rule.id)?.clone(),
                })
            })
            .collect()
    }

    /// Every version of a rule, oldest first (deletions included).
    pub fn versions(&self, tenant: &str, id: &str) -> Vec<Value> {
        let prefix = format!("{id}@");
        let stored = self.store.docs(tenant, VERSIONS).unwrap_or_else(|error| {
            tracing::error!(tenant, %error, "rule versions could not be read");
            Vec::new()
        });
        let mut out: Vec<(String, Value)> = stored
            .into_iter()
            .filter(|(key, _)| key.starts_with(&prefix))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.into_iter().map(|(_, v)| v).collect()
    }
}

fn doc_of(rec: &RuleRecord) -> Result<Value, HubError> {
    Ok(json!({
        "id": rec.rule.id,
        "version": rec.version,
        "rule": encode(&rec.rule, "rule document")?,
        "modifiedAt": format_datetime(&rec.modified_at),
        "modifiedBy": rec.modified_by,
    }))
}

pub(crate) fn record_of(doc: &Value) -> Option<RuleRecord> {
    Some(RuleRecord {
        rule: serde_json::from_value(doc.get("rule")?.clone()).ok()?,
        version: doc.get("version")?.as_u64()?,
        modified_at: citybrain_model::time::parse_datetime(doc.get("modifiedAt")?.as_str()?)?,
        modified_by: doc.get("modifiedBy")?.as_str()?.to_string(),
    })
}
