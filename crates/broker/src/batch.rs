//! Batch operations (`/entityOperations/{create,upsert,update,delete,merge}`). Each entity
//! is applied on its own (a failure does not undo the others, as the spec says); the
//! whole batch is acknowledged after one durable flush.

use std::sync::Arc;

use citybrain_model::entity::{parse_attributes, parse_types, ParseMode};
use citybrain_model::ops;
use citybrain_model::{Entity, ErrorKind, JsonLdContext, ModelError};
use citybrain_storage::{Commit, Write};
use serde_json::Value;

use crate::entities::Applied;
use crate::error::{BrokerError, Result};
use crate::request::RequestContext;
use crate::Broker;

/// The outcome of a batch: ids that succeeded (with whether they were created) and errors.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub success: Vec<String>,
    pub created: Vec<String>,
    pub errors: Vec<(String, BrokerError)>,
}

impl BatchOutcome {
    /// Records one entity's result; a write keeps its commit as the batch's latest.
    fn record(&mut self, id: String, res: Result<Option<Applied>>, last: &mut Option<Commit>) {
        match res {
            Ok(applied) => {
                if let Some(a) = applied {
                    *last = Some(a.commit);
                }
                self.success.push(id);
            }
            Err(e) => self.errors.push((id, e)),
        }
    }
}

/// One batch item with the `@context` that applies to it (each item may carry its own),
/// or the reason its context is unusable.
pub struct BatchItem {
    pub body: Value,
    pub ld: Result<Arc<JsonLdContext>, ModelError>,
}

impl BatchItem {
    /// An entity in normalized NGSI-LD under the core `@context` (what the platform
    /// writes itself: the demo city, the twin, forecasts).
    pub fn core(body: Value) -> BatchItem {
        BatchItem {
            body,
            ld: Ok(JsonLdContext::core()),
        }
    }

    fn split(&self) -> Result<(&Value, &JsonLdContext), (String, BrokerError)> {
        match &self.ld {
            Ok(ld) => Ok((&self.body, ld)),
            Err(e) => Err((entity_id_of(&self.body), BrokerError::Model(e.clone()))),
        }
    }
}

/// How upsert treats existing entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertMode {
    /// Replace the whole entity (the default).
    Replace,
    /// Add/overwrite the given attributes, keep the others.
    Update,
}

/// The attributes of a batch item that names an existing entity (update, merge).
fn parse_item_attrs(
    item: &Value,
    ld: &JsonLdContext,
    now: chrono::DateTime<chrono::Utc>,
    nulls_delete: bool,
) -> Result<Vec<citybrain_model::entity::ParsedAttr>> {
    let o = item
        .as_object()
        .ok_or_else(|| BrokerError::bad_data("batch items must be entity objects"))?;
    Broker::id_from_value(o.get("id").unwrap_or(&Value::Null))?;
    Ok(parse_attributes(
        o,
        ld,
        now,
        ParseMode {
            nulls_delete,
            temporal: false,
        },
    )?)
}

fn entity_id_of(v: &Value) -> String {
    v.get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Broker {
    fn check_batch<T>(&self, items: &[T]) -> Result<()> {
        if items.is_empty() {
            return Err(BrokerError::bad_data("the batch is empty"));
        }
        if items.len() > self.limits.max_batch {
            return Err(BrokerError::bad_data(format!(
                "the batch has {} items; the maximum is {}",
                items.len(),
                self.limits.max_batch
            )));
        }
        Ok(())
    }

    async fn finish(&self, last: Option<Commit>, outcome: BatchOutcome) -> Result<BatchOutcome> {
        if let Some(c) = last {
            c.wait().await?;
        }
        Ok(outcome)
    }

    fn parse_item(&self, ld: &JsonLdContext, item: &Value) -> Result<Entity> {
        let obj = item
            .as_object()
            .ok_or_else(|| BrokerError::bad_data("batch items must be entity objects"))?;
        self.prepare_create(ld, obj)
    }

    /// `POST /entityOperations/create`.
    pub async fn batch_create(
        &self,
        rc: &RequestContext,
        items: &[BatchItem],
    ) -> Result<BatchOutcome> {
        self.check_batch(items)?;
        let mut out = BatchOutcome::default();
        let mut last = None;
        for bi in items {
            let (item, ld) = match bi.split() {
                Ok(x) => x,
                Err(failed) => {
                    out.errors.push(failed);
                    continue;
                }
            };
            let res = self
                .parse_item(ld, item)
                .and_then(|e| self.create_nowait(rc, &e).map(|c| (e.id, c)));
            match res {
                Ok((id, c)) => {
                    last = Some(c);
                    out.created.push(id.clone());
                    out.success.push(id);
                }
                Err(e) => out.errors.push((entity_id_of(item), e)),
            }
        }
        self.finish(last, out).await
    }

    /// `POST /entityOperations/upsert`.
    pub async fn batch_upsert(
        &self,
        rc: &RequestContext,
        items: &[BatchItem],
        mode: UpsertMode,
    ) -> Result<BatchOutcome> {
        self.check_batch(items)?;
        let mut out = BatchOutcome::default();
        let mut last = None;
        let now = self.clock.now();
        for bi in items {
            let (item, ld) = match bi.split() {
                Ok(x) => x,
                Err(failed) => {
                    out.errors.push(failed);
                    continue;
                }
            };
            match self.upsert_one(rc, ld, item, mode, now) {
                Ok((id, Some(a))) => {
                    if a.before.is_none() {
                        out.created.push(id.clone());
                    }
                    out.success.push(id);
                    last = Some(a.commit);
                }
                Ok((id, None)) => out.success.push(id),
                Err(e) => out.errors.push((entity_id_of(item), e)),
            }
        }
        self.finish(last, out).await
    }

    /// Upserts each item in order and answers one result per item, index-aligned (the
    /// ingestion pipeline needs to know which record failed, and one payload may carry
    /// several observations of the same entity). `Ok(true)` means the entity was created.
    /// Answers once every successful write is durable.
    pub async fn upsert_each(
        &self,
        rc: &RequestContext,
        items: &[BatchItem],
        mode: UpsertMode,
    ) -> Result<Vec<Result<bool>>> {
        let mut out = Vec::with_capacity(items.len());
        let mut last = None;
        let now = self.clock.now();
        for bi in items {
            let res = match bi.split() {
                Ok((item, ld)) => self.upsert_one(rc, ld, item, mode, now),
                Err((_, e)) => Err(e),
            };
            out.push(match res {
                Ok((_, Some(a))) => {
                    let created = a.before.is_none();
                    last = Some(a.commit);
                    Ok(created)
                }
                Ok((_, None)) => Ok(false),
                Err(e) => Err(e),
            });
        }
        if let Some(c) = last {
            c.wait().await?;
        }
        Ok(out)
    }

    /// One upsert without waiting for durability: the entity id and what was applied.
    fn upsert_one(
        &self,
        rc: &RequestContext,
        ld: &JsonLdContext,
        item: &Value,
        mode: UpsertMode,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<(String, Option<Applied>)> {
        let new = self.parse_item(ld, item)?;
        let res = self.apply_nowait(rc, &new.id.clone(), &mut |cur| {
            Ok(Some(Write::Put(match (cur, mode) {
                (None, _) => new.clone(),
                (Some(old), UpsertMode::Replace) => ops::replace(old, new.clone(), now),
                (Some(old), UpsertMode::Update) => {
                    let mut e = Entity::clone(old);
                    ops::append(&mut e, new.attrs.clone(), false, now);
                    for t in &new.types {
                        if !e.types.contains(t) {
                            e.types.push(t.clone());
                        }
                    }
                    e
                }
            })))
        })?;
        Ok((new.id, res))
    }

    /// `POST /entityOperations/update` (append attributes to existing entities).
    pub async fn batch_update(
        &self,
        rc: &RequestContext,
        items: &[BatchItem],
        no_overwrite: bool,
    ) -> Result<BatchOutcome> {
        self.check_batch(items)?;
        let mut out = BatchOutcome::default();
        let mut last = None;
        let now = self.clock.now();
        for bi in items {
            let (item, ld) = match bi.split() {
                Ok(x) => x,
                Err(failed) => {
                    out.errors.push(failed);
                    continue;
                }
            };
            let id = entity_id_of(item);
            let attrs: Vec<_> = match parse_item_attrs(item, ld, now, false) {
                Ok(a) => a
                    .into_iter()
                    .filter_map(|(n, a)| a.map(|a| (n, a)))
                    .collect(),
                Err(e) => {
                    out.errors.push((id, e));
                    continue;
                }
            };
            let types = match item
                .get("type")
                .map(|t| parse_types(Some(t), ld))
                .transpose()
            {
                Ok(t) => t.unwrap_or_default(),
                Err(e) => {
                    out.errors.push((id, e.into()));
                    continue;
                }
            };
            if attrs.is_empty() && types.is_empty() {
                out.errors.push((
                    id,
                    BrokerError::bad_data("the entity has no attributes to update"),
                ));
                continue;
            }
            let mut outcome = ops::UpdateOutcome::default();
            let res = self.apply_nowait(rc, &id, &mut |cur| {
                let Some(cur) = cur else {
                    return Err(ModelError::not_found(format!("entity '{id}' not found")));
                };
                let mut e = Entity::clone(cur);
                let o = ops::append(&mut e, attrs.clone(), no_overwrite, now);
                outcome = o.clone();
                let mut changed = o.changed();
                let mut types_added = false;
                for t in &types {
                    if !e.types.contains(t) {
                        e.types.push(t.clone());
                        types_added = true;
                    }
                }
                if attrs.is_empty() && !types_added {
                    return Err(ModelError::bad_data(format!(
                        "entity '{id}': nothing to update (no attributes, no new type)"
                    )));
                }
                changed |= types_added;
                Ok(changed.then_some(Write::Put(e)))
            });
            match res {
                Ok(a) => {
                    if let Some(a) = a {
                        last = Some(a.commit);
                    }
                    // Attributes kept by noOverwrite make the entity a partial failure
                    // (207), though what could be appended was.
                    if outcome.not_updated.is_empty() {
                        out.success.push(id);
                    } else {
                        let names: Vec<&str> = outcome
                            .not_updated
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect();
                        let detail =
                            format!("attributes not updated (noOverwrite): {}", names.join(", "));
                        out.errors.push((id, BrokerError::bad_data(detail)));
                    }
                }
                Err(e) => out.errors.push((id, e)),
            }
        }
        self.finish(last, out).await
    }

    /// `POST /entityOperations/merge`.
    pub async fn batch_merge(
        &self,
        rc: &RequestContext,
        items: &[BatchItem],
    ) -> Result<BatchOutcome> {
        self.check_batch(items)?;
        let mut out = BatchOutcome::default();
        let mut last = None;
        let now = self.clock.now();
        for bi in items {
            let (item, ld) = match bi.split() {
                Ok(x) => x,
                Err(failed) => {
                    out.errors.push(failed);
                    continue;
                }
            };
            let id = entity_id_of(item);
            let attrs = match parse_item_attrs(item, ld, now, true) {
                Ok(a) => a,
                Err(e) => {
                    out.errors.push((id, e));
                    continue;
                }
            };
            let res = self.apply_nowait(rc, &id, &mut |cur| {
                let Some(cur) = cur else {
                    return Err(ModelError::not_found(format!("entity '{id}' not found")));
                };
                let mut e = Entity::clone(cur);
                ops::merge(&mut e, attrs.clone(), now);
                Ok(Some(Write::Put(e)))
            });
            out.record(id, res, &mut last);
        }
        self.finish(last, out).await
    }

    /// `POST /entityOperations/delete` (a list of ids).
    pub async fn batch_delete(&self, rc: &RequestContext, ids: &[Value]) -> Result<BatchOutcome> {
        self.check_batch(ids)?;
        let mut out = BatchOutcome::default();
        let mut last = None;
        for v in ids {
            let id = match Broker::id_from_value(v) {
                Ok(id) => id,
                Err(e) => {
                    out.errors
                        .push((v.as_str().unwrap_or_default().to_string(), e));
                    continue;
                }
            };
            let res = self.apply_nowait(rc, &id, &mut |cur| match cur {
                None => Err(ModelError::new(
                    ErrorKind::ResourceNotFound,
                    format!("entity '{id}' not found"),
                )),
                Some(_) => Ok(Some(Write::Delete)),
            });
            out.record(id, res, &mut last);
        }
        self.finish(last, out).await
    }
}
