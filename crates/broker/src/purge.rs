//! Purge (NGSI-LD 1.9, 5.6.21): `DELETE /entities` with a query deletes every
//! matching entity the caller may delete, or, with `drop`, only the attributes named
//! (with `keep`, every attribute but those named), leaving the entities.
//!
//! - **A qualifying filter is required** (5.6.21.4): a type, `attrs` naming a
//!   non-system attribute, a `q` over a non-system attribute, a geo-query or `scopeQ`;
//!   or `local=true`, which purges everything the caller may delete in the tenant.
//!   `id` and `idPattern` narrow a purge but do not qualify one: a match-all pattern
//!   must not become a tenant-wide delete. Linked-entity forms are refused (the
//!   query language and attribute names already refuse `{…}`).
//! - **`keep` and `drop` exclude each other.**
//! - **History**: each entity goes as `DELETE /entities/{id}` would take it (its
//!   history stays, ending where it was deleted; docs/history.md); a dropped attribute
//!   as `DELETE /entities/{id}/attrs/{attr}` would. Subscriptions are notified of
//!   each change.
//! - The matching entities are listed first; every write is checked against the
//!   caller's rights before any is made (a 403 changes nothing); then each entity is
//!   changed if it still matches (one changed, deleted or re-created meanwhile is
//!   left alone), and the purge answers once every change is durable.
//! - Matching and `keep` go by what the caller sees: an attribute an access policy
//!   hides from it is neither matched nor removed by `keep`.

use citybrain_model::entity::{validate_name, Entity};
use citybrain_model::{ops, JsonLdContext};

use crate::query::{split_list, EntityQuery, QueryParams};
use crate::{Broker, BrokerError, RequestContext, Result};
use citybrain_storage::Write;

/// System attributes: never the subject of a purge (5.6.21.4).
const SYSTEM: [&str; 3] = ["createdAt", "modifiedAt", "deletedAt"];

/// A system attribute, by the core `@context`'s IRI or its short name (a user
/// attribute `…/vocab#createdAt` is not one).
fn is_system(iri: &str) -> bool {
    SYSTEM.iter().any(|s| {
        iri == *s
            || iri
                .strip_prefix(citybrain_model::context::NGSI_LD_NS)
                .is_some_and(|rest| rest == *s)
    })
}

/// What a purge did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Entities deleted.
    pub deleted: usize,
    /// Entities that lost attributes (`keep`/`drop`).
    pub trimmed: usize,
}

/// Which attributes a purge removes from each matching entity.
enum Trim {
    /// The whole entity.
    Entity,
    Drop(Vec<String>),
    Keep(Vec<String>),
}

fn attribute_list(param: &str, list: &str, ld: &JsonLdContext) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for a in split_list(param, list)? {
        validate_name("attribute", &a)?;
        if SYSTEM.contains(&a.as_str()) || a == "scope" || a.starts_with('@') {
            return Err(BrokerError::bad_data(format!(
                "'{a}' in '{param}' is not an attribute that can be purged"
            )));
        }
        out.push(ld.expand(&a));
    }
    Ok(out)
}

impl Broker {
    /// `DELETE /entities` with a query (see the module documentation).
    pub async fn purge_entities(
        &self,
        rc: &RequestContext,
        ld: &JsonLdContext,
        params: &QueryParams,
        keep: Option<&str>,
        drop: Option<&str>,
    ) -> Result<Purged> {
        self.check_tenant(rc)?;
        let trim = match (keep, drop) {
            (Some(_), Some(_)) => {
                return Err(BrokerError::bad_data(
                    "'keep' and 'drop' exclude each other",
                ))
            }
            (Some(k), None) => Trim::Keep(attribute_list("keep", k, ld)?),
            (None, Some(d)) => Trim::Drop(attribute_list("drop", d, ld)?),
            (None, None) => Trim::Entity,
        };
        let max = self.limits.max_limit.max(1);
        let mut p = params.clone();
        p.limit = Some(max.to_string());
        p.offset = None;
        p.count = false;
        p.order_by = None;
        let mut query = EntityQuery::from_params(&p, ld, max, max)?;
        // A linked-entity query (`owner{name}==…`, NGSI-LD 4.9) reaches other entities
        // than those deleted: refused (5.6.21.4).
        let linked = |names: &[String]| names.iter().any(|a| a.contains(['{', '}']));
        if query.q.as_ref().is_some_and(|q| linked(&q.attributes())) {
            return Err(BrokerError::bad_data(
                "a purge's q cannot follow relationships to linked entities ({…})",
            ));
        }
        if query.attrs.as_deref().is_some_and(linked) {
            return Err(BrokerError::bad_data(
                "a purge's attrs cannot name attributes of linked entities ({…})",
            ));
        }
        let qualifying = query.types.is_some()
            || query
                .attrs
                .as_ref()
                .is_some_and(|a| a.iter().any(|x| !is_system(x)))
            || query
                .q
                .as_ref()
                .is_some_and(|q| q.attributes().iter().any(|a| !is_system(a)))
            || query.geo.is_some()
            || query.scope.is_some()
            || params.allow_unfiltered;
        if !qualifying {
            return Err(BrokerError::bad_data(
                "a purge needs a type, attrs or a q over a non-system attribute, a geo-query \
                 or scopeQ (or local=true); id and idPattern alone would reach too far",
            ));
        }
        // List first, in one scan (deleting while paging would shift the pages).
        query.offset = 0;
        query.limit = usize::MAX;
        let ids: Vec<String> = self
            .query_entities(rc, &query)?
            .entities
            .iter()
            .map(|e| e.id.clone())
            .collect();
        let now = self.clock.now();
        let everything = self.authorizer().sees_everything(rc);
        // What the purge would write to an entity as it is now: `None` when it no
        // longer matches (changed or re-created since it was listed) or has nothing
        // to lose. Matching and `keep` go by what the caller sees: an attribute an
        // access policy hides from it is neither matched nor removed by `keep`.
        let plan = |cur: &std::sync::Arc<Entity>| -> Option<Write> {
            let seen = if everything {
                cur.clone()
            } else {
                self.visible(rc, cur.clone())?
            };
            if !query.matches(&seen) {
                return None;
            }
            match &trim {
                Trim::Entity => Some(Write::Delete),
                Trim::Drop(names) => without(cur, |n| names.iter().any(|d| d == n), now),
                Trim::Keep(names) => without(
                    cur,
                    |n| !names.iter().any(|k| k == n) && seen.attrs.iter().any(|(s, _)| &**s == n),
                    now,
                ),
            }
        };
        // All or nothing as far as rights go: every write is checked before any is
        // made, so a refusal (403) leaves everything as it was.
        for id in &ids {
            if let Some(cur) = self.store.get(&rc.tenant, id)? {
                let w = plan(&cur);
                crate::access::check_write(&*self.authz, rc, id, Some(&cur), w.as_ref())?;
            }
        }
        let mut done = Purged::default();
        let mut commits = Vec::new();
        for id in &ids {
            let applied = self.apply_nowait(rc, id, &mut |cur| Ok(cur.and_then(&plan)))?;
            if let Some(a) = applied {
                commits.push(a.commit);
                match trim {
                    Trim::Entity => done.deleted += 1,
                    _ => done.trimmed += 1,
                }
            }
        }
        // Acknowledged once durable, like a batch: one wait per write, in order.
        for c in commits {
            c.wait().await?;
        }
        tracing::info!(tenant = %rc.tenant, deleted = done.deleted, trimmed = done.trimmed, "entities purged");
        Ok(done)
    }
}

/// The entity without the attributes `gone` picks; `None` when it has none of them.
fn without(
    cur: &Entity,
    gone: impl Fn(&str) -> bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<Write> {
    let names: Vec<String> = cur
        .attrs
        .iter()
        .map(|(n, _)| n.to_string())
        .filter(|n| gone(n))
        .collect();
    if names.is_empty() {
        return None;
    }
    let mut e = cur.clone();
    for n in &names {
        ops::delete_attribute(&mut e, n, None, true, now);
    }
    Some(Write::Put(e))
}
