//! Temporal provision (NGSI-LD 5.6.11–5.6.16): create or update a temporal
//! representation, add attribute instances, delete an entity's or an attribute's
//! history, delete or modify one instance.
//!
//! Writing history this way also brings the current entity up to date with the newest
//! instance of each attribute (so the entity API and the temporal API tell one story);
//! that write records no history of its own, the history was logged first.

use std::collections::BTreeMap;
use std::sync::Arc;

use citybrain_model::entity::{
    parse_attr_value, parse_attributes, parse_entity_id, parse_scope, parse_types, ParseMode,
};
use citybrain_model::{Attribute, Entity, Instances, JsonLdContext, ModelError};
use citybrain_storage::history::{parse_instance_id, point_of};
use citybrain_storage::tsdb::{DatasetSel, HistOp, Selection, SeriesKey, TimeProp};
use citybrain_storage::{ModifyOptions, Write};
use serde_json::{Map, Value};

use crate::entities::{check_id, check_uri};
use crate::error::{BrokerError, Result};
use crate::request::RequestContext;
use crate::Broker;
use citybrain_access::{Action, Verb};

const MODE: ParseMode = ParseMode {
    nulls_delete: false,
    temporal: true,
};

fn not_found(id: &str) -> BrokerError {
    ModelError::not_found(format!("entity '{id}' has no temporal representation")).into()
}

/// The time an instance stands for (observedAt, else when it was written).
fn instance_time(a: &Attribute) -> chrono::DateTime<chrono::Utc> {
    a.observed_at.unwrap_or(a.modified_at)
}

impl Broker {
    fn insert_ops(
        &self,
        rc: &RequestContext,
        id: &str,
        attrs: &[(Arc<str>, Instances)],
    ) -> Vec<HistOp> {
        let tenant: Arc<str> = Arc::from(rc.tenant.as_str());
        let entity: Arc<str> = Arc::from(id);
        // One insert per series, instances in the order given.
        let mut groups: BTreeMap<(Arc<str>, Option<String>), Vec<_>> = BTreeMap::new();
        for (name, instances) in attrs {
            for a in instances {
                groups
                    .entry((name.clone(), a.dataset_id().map(str::to_string)))
                    .or_default()
                    .push(point_of(a));
            }
        }
        let db = self.tsdb().ok();
        let existing = db.and_then(|db| db.entity(&rc.tenant, id));
        let mut ops = Vec::new();
        for ((attr, dataset), points) in groups {
            let key = SeriesKey {
                tenant: tenant.clone(),
                entity: entity.clone(),
                attr,
                dataset: dataset.map(Arc::from),
            };
            // An instance observed at the same time as a recorded one replaces it
            // (re-sent observations update rather than duplicate).
            let series = existing.as_ref().and_then(|h| {
                h.series
                    .iter()
                    .find(|s| s.attr == key.attr && s.dataset == key.dataset)
                    .map(|s| s.id)
            });
            let times: Vec<i64> = points.iter().filter(|p| p.observed).map(|p| p.t).collect();
            let recorded = match (db, series) {
                (Some(db), Some(sid)) => db.observed_at(sid, &times),
                _ => Default::default(),
            };
            let mut fresh = Vec::new();
            for p in points {
                match recorded.get(&p.t).filter(|_| p.observed) {
                    Some(old) => ops.push(HistOp::ReplaceInstance {
                        key: key.clone(),
                        point: citybrain_storage::tsdb::Point { rec: old.rec, ..p },
                    }),
                    None => fresh.push(p),
                }
            }
            if !fresh.is_empty() {
                ops.push(HistOp::Insert { key, points: fresh });
            }
        }
        ops
    }

    /// A write to the current entity that records no history (the caller logged it).
    async fn quiet_write(
        &self,
        rc: &RequestContext,
        id: &str,
        decide: &mut citybrain_storage::Decide<'_>,
    ) -> Result<()> {
        let opts = ModifyOptions {
            history: false,
            origin: rc.origin(),
        };
        let authz = &*self.authz;
        let mut checked = |cur: Option<&Arc<Entity>>| {
            let w = decide(cur)?;
            crate::access::check_write(authz, rc, id, cur, w.as_ref())?;
            Ok(w)
        };
        if let Some(m) = self.store.modify_opts(&rc.tenant, id, &mut checked, opts)? {
            m.commit.wait().await?;
        }
        Ok(())
    }

    /// Brings the current entity up to date with the newest instances (no history).
    async fn sync_current(
        &self,
        rc: &RequestContext,
        id: &str,
        types: &[Arc<str>],
        scope: Option<&Vec<String>>,
        attrs: &[(Arc<str>, Instances)],
    ) -> Result<()> {
        let now = self.clock.now();
        let mut decide = |cur: Option<&Arc<Entity>>| {
            let mut e = match cur {
                Some(c) => c.as_ref().clone(),
                None => Entity {
                    id: id.to_string(),
                    types: types.to_vec(),
                    scope: scope.cloned(),
                    created_at: now,
                    modified_at: now,
                    attrs: Vec::new(),
                },
            };
            for t in types {
                if !e.types.contains(t) {
                    e.types.push(t.clone());
                }
            }
            let mut changed = cur.is_none();
            for (name, instances) in attrs {
                // The newest instance per datasetId.
                let mut newest: Vec<&Attribute> = Vec::new();
                for a in instances {
                    match newest.iter_mut().find(|n| n.dataset_id() == a.dataset_id()) {
                        Some(n) if instance_time(a) >= instance_time(n) => *n = a,
                        Some(_) => {}
                        None => newest.push(a),
                    }
                }
                let slot = match e.attrs.iter_mut().position(|(n, _)| n == name) {
                    Some(i) => &mut e.attrs[i].1,
                    None => {
                        e.attrs.push((name.clone(), Instances::new()));
                        let last = e.attrs.len() - 1;
                        &mut e.attrs[last].1
                    }
                };
                for a in newest {
                    match slot.iter_mut().find(|x| x.dataset_id() == a.dataset_id()) {
                        Some(x) if instance_time(a) >= instance_time(x) => {
                            let created = x.created_at;
                            *x = a.clone();
                            x.created_at = created;
                            changed = true;
                        }
                        Some(_) => {}
                        None => {
                            slot.push(a.clone());
                            changed = true;
                        }
                    }
                }
            }
            if !changed {
                return Ok(None);
            }
            e.modified_at = now;
            Ok(Some(Write::Put(e)))
        };
        self.quiet_write(rc, id, &mut decide).await?;
        Ok(())
    }

    /// `POST /temporal/entities`: true when the temporal representation was created (201),
    /// false when instances were added to an existing one (204).
    pub async fn upsert_temporal(
        &self,
        rc: &RequestContext,
        ld: &JsonLdContext,
        body: &Map<String, Value>,
    ) -> Result<(String, bool)> {
        if body.is_empty() {
            return Err(BrokerError::invalid("the temporal entity body is empty"));
        }
        let history = self.tsdb()?;
        let id = parse_entity_id(body.get("id").or_else(|| body.get("@id")))?;
        let types = parse_types(body.get("type").or_else(|| body.get("@type")), ld)?;
        let scope = body.get("scope").map(parse_scope).transpose()?;
        let now = self.clock.now();
        let attrs: Vec<(Arc<str>, Instances)> = parse_attributes(body, ld, now, MODE)?
            .into_iter()
            .filter_map(|(n, a)| a.map(|a| (n, a)))
            .collect();
        let created = history.entity(&rc.tenant, &id).is_none();
        let mut ops = vec![HistOp::EntityMeta {
            tenant: Arc::from(rc.tenant.as_str()),
            entity: Arc::from(id.as_str()),
            types: types.clone(),
            scope: scope
                .as_ref()
                .and_then(|s| serde_json::to_string(s).ok())
                .map(Arc::from),
        }];
        ops.extend(self.insert_ops(rc, &id, &attrs));
        self.history_write(rc, ops).await?;
        self.sync_current(rc, &id, &types, scope.as_ref(), &attrs)
            .await?;
        Ok((id, created))
    }

    async fn history_write(&self, rc: &RequestContext, ops: Vec<HistOp>) -> Result<()> {
        let h = self.store.history().ok_or_else(|| {
            BrokerError::new(
                citybrain_model::ErrorKind::OperationNotSupported,
                "this store keeps no history",
            )
        })?;
        self.allow_history_write(rc, &ops)?;
        h.append_history(&rc.tenant, ops)?.wait().await?;
        Ok(())
    }

    /// Every history write is authorized before anything is logged: per entity it
    /// touches, by the types it has now, the types its history knows and the types
    /// the write sets (a policy on a type cannot be side-stepped through history).
    fn allow_history_write(&self, rc: &RequestContext, ops: &[HistOp]) -> Result<()> {
        let mut seen: Vec<(&str, Verb)> = Vec::new();
        for op in ops {
            let (entity, verb, new_types): (&str, Verb, &[Arc<str>]) = match op {
                HistOp::Insert { key, .. }
                | HistOp::DeleteInstance { key, .. }
                | HistOp::ReplaceInstance { key, .. } => (&key.entity, Verb::Update, &[]),
                HistOp::EntityMeta { entity, types, .. } => (entity, Verb::Update, types),
                HistOp::DeleteEntity { entity, .. } | HistOp::DeleteAttr { entity, .. } => {
                    (entity, Verb::Delete, &[])
                }
            };
            if seen.contains(&(entity, verb)) && new_types.is_empty() {
                continue;
            }
            seen.push((entity, verb));
            let mut types: Vec<Arc<str>> = new_types.to_vec();
            if let Some(e) = self.store.get(&rc.tenant, entity)? {
                types.extend(e.types.iter().cloned());
            }
            if let Ok(db) = self.tsdb() {
                if let Some(h) = db.entity(&rc.tenant, entity) {
                    types.extend(h.types.iter().cloned());
                }
            }
            types.sort();
            types.dedup();
            self.allow(rc, Action::history(verb, &types, Some(entity)))?;
        }
        Ok(())
    }

    /// `POST /temporal/entities/{id}/attrs`.
    pub async fn append_temporal_attrs(
        &self,
        rc: &RequestContext,
        ld: &JsonLdContext,
        id: &str,
        body: &Map<String, Value>,
    ) -> Result<()> {
        check_id(id)?;
        self.check_tenant(rc)?;
        let h = self
            .tsdb()?
            .entity(&rc.tenant, id)
            .ok_or_else(|| not_found(id))?;
        let attrs: Vec<(Arc<str>, Instances)> = parse_attributes(body, ld, self.clock.now(), MODE)?
            .into_iter()
            .filter_map(|(n, a)| a.map(|a| (n, a)))
            .collect();
        if attrs.is_empty() {
            return Err(BrokerError::bad_data("no attribute instances to add"));
        }
        let ops = self.insert_ops(rc, id, &attrs);
        self.history_write(rc, ops).await?;
        self.sync_current(rc, id, &h.types, None, &attrs).await
    }

    /// `DELETE /temporal/entities/{id}`: the history and the entity.
    pub async fn delete_temporal(&self, rc: &RequestContext, id: &str) -> Result<()> {
        check_id(id)?;
        self.check_tenant(rc)?;
        self.tsdb()?
            .entity(&rc.tenant, id)
            .ok_or_else(|| not_found(id))?;
        self.history_write(
            rc,
            vec![HistOp::DeleteEntity {
                tenant: Arc::from(rc.tenant.as_str()),
                entity: Arc::from(id),
            }],
        )
        .await?;
        self.quiet_write(rc, id, &mut |cur| Ok(cur.map(|_| Write::Delete)))
            .await?;
        Ok(())
    }

    /// `DELETE /temporal/entities/{id}/attrs/{attr}` (`datasetId`, `deleteAll`).
    pub async fn delete_temporal_attr(
        &self,
        rc: &RequestContext,
        ld: &JsonLdContext,
        id: &str,
        attr: &str,
        dataset_id: Option<&str>,
        delete_all: bool,
    ) -> Result<()> {
        check_id(id)?;
        crate::entities::check_attr_name(attr)?;
        if let Some(d) = dataset_id {
            check_uri("datasetId", d)?;
        }
        self.check_tenant(rc)?;
        let h = self
            .tsdb()?
            .entity(&rc.tenant, id)
            .ok_or_else(|| not_found(id))?;
        let iri = ld.expand(attr);
        let sel = if delete_all {
            DatasetSel::All
        } else {
            DatasetSel::One(dataset_id.map(Arc::from))
        };
        let hit = h.series.iter().any(|s| {
            *s.attr == *iri
                && match &sel {
                    DatasetSel::All => true,
                    DatasetSel::One(d) => s.dataset == *d,
                }
        });
        if !hit {
            return Err(ModelError::not_found(format!(
                "entity '{id}' has no history of attribute '{attr}'{}",
                dataset_id
                    .map(|d| format!(" with datasetId '{d}'"))
                    .unwrap_or_default()
            ))
            .into());
        }
        self.history_write(
            rc,
            vec![HistOp::DeleteAttr {
                tenant: Arc::from(rc.tenant.as_str()),
                entity: Arc::from(id),
                attr: Arc::from(iri.as_str()),
                dataset: sel.clone(),
            }],
        )
        .await?;
        let mut decide = |cur: Option<&Arc<Entity>>| {
            let Some(cur) = cur else { return Ok(None) };
            let mut e = cur.as_ref().clone();
            let before = e.attrs.iter().map(|(_, v)| v.len()).sum::<usize>();
            for (name, instances) in &mut e.attrs {
                if **name == *iri {
                    instances.retain(|a| match &sel {
                        DatasetSel::All => false,
                        DatasetSel::One(d) => a.dataset_id() != d.as_deref(),
                    });
                }
            }
            e.attrs.retain(|(_, v)| !v.is_empty());
            let after = e.attrs.iter().map(|(_, v)| v.len()).sum::<usize>();
            Ok((after != before).then_some(Write::Put(e)))
        };
        self.quiet_write(rc, id, &mut decide).await?;
        Ok(())
    }

    /// Finds the series of `attr` holding the instance `instance_id`.
    fn find_instance(
        &self,
        rc: &RequestContext,
        ld: &JsonLdContext,
        id: &str,
        attr: &str,
        instance_id: &str,
    ) -> Result<(SeriesKey, citybrain_storage::tsdb::Point)> {
        check_id(id)?;
        crate::entities::check_attr_name(attr)?;
        check_uri("instanceId", instance_id)?;
        self.check_tenant(rc)?;
        let db = self.tsdb()?;
        let h = db.entity(&rc.tenant, id).ok_or_else(|| not_found(id))?;
        let iri = ld.expand(attr);
        let series: Vec<_> = h.series.iter().filter(|s| *s.attr == *iri).collect();
        if series.is_empty() {
            return Err(ModelError::not_found(format!(
                "entity '{id}' has no history of attribute '{attr}'"
            ))
            .into());
        }
        let missing = || {
            BrokerError::from(ModelError::not_found(format!(
                "attribute '{attr}' of entity '{id}' has no instance '{instance_id}'"
            )))
        };
        let rec = parse_instance_id(instance_id).ok_or_else(missing)?;
        for s in series {
            let sel = Selection {
                time: TimeProp::Recorded,
                lower: std::ops::Bound::Included(rec),
                upper: std::ops::Bound::Included(rec),
                last_n: None,
            };
            if let Some(p) = db.read(s.id, &sel).0.into_iter().next() {
                if let Some(key) = db.key(s.id) {
                    return Ok((key, p));
                }
            }
        }
        Err(missing())
    }

    /// `DELETE /temporal/entities/{id}/attrs/{attr}/{instanceId}`.
    pub async fn delete_temporal_instance(
        &self,
        rc: &RequestContext,
        ld: &JsonLdContext,
        id: &str,
        attr: &str,
        instance_id: &str,
    ) -> Result<()> {
        let (key, p) = self.find_instance(rc, ld, id, attr, instance_id)?;
        self.history_write(rc, vec![HistOp::DeleteInstance { key, rec: p.rec }])
            .await
    }

    /// `PATCH /temporal/entities/{id}/attrs/{attr}/{instanceId}`: replaces the instance's
    /// content (its identity and recording time stay).
    pub async fn modify_temporal_instance(
        &self,
        rc: &RequestContext,
        ld: &JsonLdContext,
        id: &str,
        attr: &str,
        instance_id: &str,
        body: &Map<String, Value>,
    ) -> Result<()> {
        let (key, old) = self.find_instance(rc, ld, id, attr, instance_id)?;
        if body.is_empty() {
            return Err(BrokerError::bad_data(
                "the attribute instance body is empty",
            ));
        }
        // Either the instance itself or a fragment {attr: instance}.
        let raw = match body.get(attr) {
            Some(v) if body.len() == 1 => v.clone(),
            _ => Value::Object(body.clone()),
        };
        let now = self.clock.now();
        let parsed = parse_attr_value(attr, &key.attr, &raw, ld, now, MODE)?
            .and_then(|v| v.into_iter().next())
            .ok_or_else(|| BrokerError::bad_data("no attribute instance in the body"))?;
        let mut p = point_of(&parsed);
        p.rec = old.rec;
        if !p.observed {
            p.t = old.t;
        }
        self.history_write(rc, vec![HistOp::ReplaceInstance { key, point: p }])
            .await
    }
}
