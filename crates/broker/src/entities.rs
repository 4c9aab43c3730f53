//! Entity operations of the NGSI-LD API (clause 5.6): create, retrieve, replace, merge,
//! append/update/patch/replace/delete attributes, delete.

use std::sync::Arc;

use citybrain_access::{Action, Verb};
use citybrain_model::entity::{
    parse_attr_value, parse_attributes, parse_entity, parse_entity_id, parse_scope, parse_types,
    validate_name, ParseMode,
};
use citybrain_model::ops::{self, UpdateOutcome};
use citybrain_model::uri::is_absolute_uri;
use citybrain_model::{Entity, ErrorKind, JsonLdContext, ModelError};
use citybrain_storage::{Commit, Decide, Write};
use serde_json::{Map, Value};

use crate::error::{BrokerError, Result};
use crate::request::RequestContext;
use crate::Broker;

/// A parsed attributes body.
struct Fragment {
    attrs: Vec<(std::sync::Arc<str>, citybrain_model::Instances)>,
    types: Option<Vec<std::sync::Arc<str>>>,
    scope: Option<Vec<String>>,
}

/// What a write did: the entity before and after.
pub(crate) struct Applied {
    pub commit: Commit,
    pub before: Option<Arc<Entity>>,
    pub after: Option<Arc<Entity>>,
}

fn not_found(id: &str) -> ModelError {
    ModelError::not_found(format!("entity '{id}' not found"))
}

/// An attribute name in a path: a valid name, and not a member that is not an attribute.
pub(crate) fn check_attr_name(attr: &str) -> Result<()> {
    validate_name("attribute", attr)?;
    if matches!(
        attr,
        "id" | "type" | "scope" | "@id" | "@type" | "@context" | "createdAt" | "modifiedAt"
    ) || attr.starts_with('@')
    {
        // `@…` names JSON-LD keywords, never an attribute (the suite's 055_03_03).
        return Err(BrokerError::bad_data(format!(
            "'{attr}' is not an attribute"
        )));
    }
    Ok(())
}

pub fn check_id(id: &str) -> Result<()> {
    check_uri("entity id", id)
}

/// `what` (named in the error) must be an absolute URI.
pub(crate) fn check_uri(what: &str, v: &str) -> Result<()> {
    if is_absolute_uri(v) {
        Ok(())
    } else {
        Err(BrokerError::bad_data(format!(
            "{what} '{v}' is not an absolute URI"
        )))
    }
}

impl Broker {
    /// Fails with NonexistentTenant for a named tenant that was never written to.
    pub fn check_tenant(&self, rc: &RequestContext) -> Result<()> {
        if rc.tenant.is_empty() || self.store.tenant_exists(&rc.tenant)? {
            Ok(())
        } else {
            Err(BrokerError::new(
                ErrorKind::NonexistentTenant,
                format!("tenant '{}' does not exist", rc.tenant),
            ))
        }
    }

    /// Read-modify-write without waiting for durability (batches wait once at the end).
    pub(crate) fn apply_nowait(
        &self,
        rc: &RequestContext,
        id: &str,
        decide: &mut Decide<'_>,
    ) -> Result<Option<Applied>> {
        let authz = &*self.authz;
        let mut checked = |cur: Option<&Arc<Entity>>| {
            let w = decide(cur)?;
            crate::access::check_write(authz, rc, id, cur, w.as_ref())?;
            Ok(w)
        };
        let origin = rc.origin();
        Ok(self
            .store
            .modify(&rc.tenant, id, &mut checked, &origin)?
            .map(|m| Applied {
                commit: m.commit,
                before: m.before,
                after: m.after,
            }))
    }

    /// Read-modify-write, acknowledged once durable.
    pub(crate) async fn apply(
        &self,
        rc: &RequestContext,
        id: &str,
        decide: &mut Decide<'_>,
    ) -> Result<Option<(Option<Arc<Entity>>, Option<Arc<Entity>>)>> {
        match self.apply_nowait(rc, id, decide)? {
            None => Ok(None),
            Some(a) => {
                a.commit.wait().await?;
                Ok(Some((a.before, a.after)))
            }
        }
    }

    pub(crate) fn prepare_create(
        &self,
        ld: &JsonLdContext,
        body: &Map<String, Value>,
    ) -> Result<Entity> {
        if body.is_empty() {
            return Err(BrokerError::bad_data("the entity body is empty"));
        }
        Ok(parse_entity(body, ld, self.clock.now())?)
    }

    pub(crate) fn create_nowait(&self, rc: &RequestContext, e: &Entity) -> Result<Commit> {
        let applied = self.apply_nowait(rc, &e.id.clone(), &mut |cur| {
            if cur.is_some() {
                return Err(ModelError::new(
                    ErrorKind::AlreadyExists,
                    format!("entity '{}' already exists", e.id),
                ));
            }
            Ok(Some(Write::Put(e.clone())))
        })?;
        applied
            .map(|a| a.commit)
            .ok_or_else(|| BrokerError::bad_data("nothing to create"))
    }

    /// `POST /entities`. Returns the new entity's id.
    pub async fn create_entity(
        &self,
        rc: &RequestContext,
        ld: &JsonLdContext,
        body: &Map<String, Value>,
    ) -> Result<String> {
        let e = self.prepare_create(ld, body)?;
        self.create_nowait(rc, &e)?.wait().await?;
        Ok(e.id)
    }

    /// `GET /entities/{id}`.
    pub fn retrieve_entity(&self, rc: &RequestContext, id: &str) -> Result<Arc<Entity>> {
        check_id(id)?;
        self.check_tenant(rc)?;
        let e = self
            .store
            .get(&rc.tenant, id)?
            .ok_or_else(|| BrokerError::from(not_found(id)))?;
        // A caller who may not read this entity learns nothing of it: not found.
        if !self.may_read(rc, Action::entity(Verb::Read, &e.types, Some(id)))? {
            return Err(not_found(id).into());
        }
        self.visible(rc, e).ok_or_else(|| not_found(id).into())
    }

    /// `PUT /entities/{id}`: replaces everything but id and createdAt.
    pub async fn replace_entity(
        &self,
        rc: &RequestContext,
        ld: &JsonLdContext,
        id: &str,
        body: &Map<String, Value>,
    ) -> Result<()> {
        check_id(id)?;
        self.check_tenant(rc)?;
        let mut body = body.clone();
        match body.get("id") {
            Some(Value::String(b)) if b != id => {
                return Err(BrokerError::bad_data(format!(
                    "body id '{b}' differs from the id in the path '{id}'"
                )))
            }
            _ => {
                body.insert("id".into(), Value::String(id.to_string()));
            }
        }
        let new = parse_entity(&body, ld, self.clock.now())?;
        let now = self.clock.now();
        let res = self
            .apply(rc, id, &mut |cur| match cur {
                None => Err(not_found(id)),
                Some(old) => Ok(Some(Write::Put(ops::replace(old, new.clone(), now)))),
            })
            .await?;
        res.map(|_| ()).ok_or_else(|| not_found(id).into())
    }

    /// `PATCH /entities/{id}` (merge-patch).
    pub async fn merge_entity(
        &self,
        rc: &RequestContext,
        ld: &JsonLdContext,
        id: &str,
        body: &Map<String, Value>,
    ) -> Result<()> {
        check_id(id)?;
        self.check_tenant(rc)?;
        if let Some(Value::String(b)) = body.get("id") {
            if b != id {
                return Err(BrokerError::bad_data(format!(
                    "body id '{b}' differs from the id in the path '{id}'"
                )));
            }
        }
        let now = self.clock.now();
        let attrs = parse_attributes(
            body,
            ld,
            now,
            ParseMode {
                nulls_delete: true,
                temporal: false,
            },
        )?;
        let types = body
            .get("type")
            .map(|t| parse_types(Some(t), ld))
            .transpose()?;
        if attrs.is_empty() && types.is_none() {
            return Err(BrokerError::bad_data("the merge body has no attributes"));
        }
        let res = self
            .apply(rc, id, &mut |cur| {
                let Some(cur) = cur else {
                    return Err(not_found(id));
                };
                let mut e = Entity::clone(cur);
                ops::merge(&mut e, attrs.clone(), now);
                if let Some(types) = &types {
                    for t in types {
                        if !e.types.contains(t) {
                            e.types.push(t.clone());
                        }
                    }
                }
                e.modified_at = now;
                Ok(Some(Write::Put(e)))
            })
            .await?;
        res.map(|_| ()).ok_or_else(|| not_found(id).into())
    }

    /// Reads an attributes body: attributes (null content = delete), and the optional
    /// `type` (types to add) and `scope` members.
    fn parse_fragment(&self, ld: &JsonLdContext, body: &Map<String, Value>) -> Result<Fragment> {
        let now = self.clock.now();
        let parsed = parse_attributes(
            body,
            ld,
            now,
            ParseMode {
                nulls_delete: true,
                temporal: false,
            },
        )?;
        let attrs: Vec<_> = parsed
            .into_iter()
            .map(|(n, a)| {
                // A whole-attribute null deletes the default instance.
                let a = a.unwrap_or_else(|| {
                    citybrain_model::instances![citybrain_model::Attribute::property(
                        Value::Null,
                        now
                    )]
                });
                (n, a)
            })
            .collect();
        let types = body
            .get("type")
            .map(|t| parse_types(Some(t), ld))
            .transpose()?;
        let scope = body.get("scope").map(parse_scope).transpose()?;
        if attrs.is_empty() && types.is_none() && scope.is_none() {
            return Err(BrokerError::bad_data("the body has no attributes"));
        }
        Ok(Fragment {
            attrs,
            types,
            scope,
        })
    }

    async fn apply_fragment(
        &self,
        rc: &RequestContext,
        id: &str,
        f: Fragment,
        no_overwrite: bool,
        append: bool,
    ) -> Result<UpdateOutcome> {
        let now = self.clock.now();
        let mut outcome = UpdateOutcome::default();
        self.apply(rc, id, &mut |cur| {
            let Some(cur) = cur else {
                return Err(not_found(id));
            };
            let mut e = Entity::clone(cur);
            // NGSI-LD 1.8 (and its test suite, 011_01_03): an update also appends attributes
            // the entity does not have yet; append and update differ in noOverwrite and scope.
            outcome = ops::append(&mut e, f.attrs.clone(), no_overwrite, now);
            let mut changed = outcome.changed();
            for t in f.types.iter().flatten() {
                if !e.types.contains(t) {
                    e.types.push(t.clone());
                    changed = true;
                }
            }
            if f.scope.is_some() && !append && e.scope.is_none() {
                outcome
                    .not_updated
                    .push(("scope".into(), "the entity has no scope to update".into()));
            } else if let Some(scope) = &f.scope {
                let merged = match (&e.scope, no_overwrite) {
                    (Some(old), true) => {
                        let mut m = old.clone();
                        m.extend(scope.iter().filter(|s| !old.contains(s)).cloned());
                        m
                    }
                    _ => scope.clone(),
                };
                e.scope = Some(merged);
                changed = true;
            }
            if changed {
                e.modified_at = now;
            }
            Ok(changed.then_some(Write::Put(e)))
        })
        .await?;
        Ok(outcome)
    }

    /// `POST /entities/{id}/attrs` (append; `noOverwrite` keeps existing attributes).
    pub async fn append_attrs(
        &self,
        rc: &RequestContext,
        ld: &JsonLdContext,
        id: &str,
        body: &Map<String, Value>,
        no_overwrite: bool,
    ) -> Result<UpdateOutcome> {
        check_id(id)?;
        self.check_tenant(rc)?;
        let f = self.parse_fragment(ld, body)?;
        self.apply_fragment(rc, id, f, no_overwrite, true).await
    }

    /// `PATCH /entities/{id}/attrs` (update attributes, appending new ones; `type` adds
    /// types; `scope` is updated only where the entity has one).
    pub async fn update_attrs(
        &self,
        rc: &RequestContext,
        ld: &JsonLdContext,
        id: &str,
        body: &Map<String, Value>,
    ) -> Result<UpdateOutcome> {
        check_id(id)?;
        self.check_tenant(rc)?;
        let f = self.parse_fragment(ld, body)?;
        self.apply_fragment(rc, id, f, false, false).await
    }

    /// `PATCH /entities/{id}/attrs/{attr}` (partial attribute update).
    pub async fn patch_attr(
        &self,
        rc: &RequestContext,
        ld: &JsonLdContext,
        id: &str,
        attr: &str,
        body: &Map<String, Value>,
    ) -> Result<()> {
        check_id(id)?;
        self.check_tenant(rc)?;
        check_attr_name(attr)?;
        if body.is_empty() {
            return Err(BrokerError::bad_data("the attribute fragment is empty"));
        }
        let iri = ld.expand(attr);
        let now = self.clock.now();
        self.apply(rc, id, &mut |cur| {
            let Some(cur) = cur else {
                return Err(not_found(id));
            };
            let mut e = Entity::clone(cur);
            ops::patch_attribute(&mut e, attr, &iri, body, ld, now)?;
            Ok(Some(Write::Put(e)))
        })
        .await?;
        Ok(())
    }

    /// `PUT /entities/{id}/attrs/{attr}` (replace one attribute).
    pub async fn replace_attr(
        &self,
        rc: &RequestContext,
        ld: &JsonLdContext,
        id: &str,
        attr: &str,
        body: &Value,
    ) -> Result<()> {
        check_id(id)?;
        self.check_tenant(rc)?;
        check_attr_name(attr)?;
        let iri = ld.expand(attr);
        let now = self.clock.now();
        let instances = parse_attr_value(
            attr,
            &iri,
            body,
            ld,
            now,
            ParseMode {
                nulls_delete: false,
                temporal: false,
            },
        )?
        .unwrap_or_default();
        self.apply(rc, id, &mut |cur| {
            let Some(cur) = cur else {
                return Err(not_found(id));
            };
            let mut e = Entity::clone(cur);
            if e.attr(&iri).is_none() {
                return Err(ModelError::not_found(format!(
                    "attribute '{attr}' not found in entity '{id}'"
                )));
            }
            let all_exist = instances.iter().all(|i| {
                e.attr(&iri)
                    .is_some_and(|l| l.iter().any(|a| a.dataset_id() == i.dataset_id()))
            });
            let out = ops::update(
                &mut e,
                vec![(citybrain_model::intern::intern(&iri), instances.clone())],
                now,
            );
            if !all_exist || !out.changed() {
                return Err(ModelError::not_found(format!(
                    "attribute '{attr}' (with this datasetId) not found in entity '{id}'"
                )));
            }
            Ok(Some(Write::Put(e)))
        })
        .await?;
        Ok(())
    }

    /// `DELETE /entities/{id}/attrs/{attr}` (`datasetId` or `deleteAll`).
    pub async fn delete_attr(
        &self,
        rc: &RequestContext,
        ld: &JsonLdContext,
        id: &str,
        attr: &str,
        dataset_id: Option<&str>,
        all: bool,
    ) -> Result<()> {
        check_id(id)?;
        self.check_tenant(rc)?;
        let iri = ld.expand(attr);
        let now = self.clock.now();
        self.apply(rc, id, &mut |cur| {
            let Some(cur) = cur else {
                return Err(not_found(id));
            };
            let mut e = Entity::clone(cur);
            if attr == "scope" {
                if e.scope.take().is_none() {
                    return Err(ModelError::not_found(format!("entity '{id}' has no scope")));
                }
                e.modified_at = now;
                return Ok(Some(Write::Put(e)));
            }
            if !ops::delete_attribute(&mut e, &iri, dataset_id, all, now) {
                return Err(ModelError::not_found(format!(
                    "attribute '{attr}' not found in entity '{id}'"
                )));
            }
            Ok(Some(Write::Put(e)))
        })
        .await?;
        Ok(())
    }

    /// `DELETE /entities/{id}`.
    pub async fn delete_entity(&self, rc: &RequestContext, id: &str) -> Result<()> {
        check_id(id)?;
        self.check_tenant(rc)?;
        let res = self
            .apply(rc, id, &mut |cur| match cur {
                None => Err(not_found(id)),
                Some(_) => Ok(Some(Write::Delete)),
            })
            .await?;
        res.map(|_| ()).ok_or_else(|| not_found(id).into())
    }

    /// Validates an id given in a body (batch delete lists).
    pub(crate) fn id_from_value(v: &Value) -> Result<String> {
        Ok(parse_entity_id(Some(v))?)
    }
}
