//! The broker's side of the authorization seam: every operation asks the
//! [`Authorizer`] before it reads or writes, and every entity an answer carries passes
//! its [`Authorizer::view`]. Entity writes are checked in the one place every write goes
//! through (`decide` of the read-modify-write), with the entity's types as stored, so a
//! policy on types cannot be bypassed by naming another type in the request.

use std::sync::Arc;

use citybrain_access::{Action, Authorizer, Denied, Resource, Verb, View};
use citybrain_model::{Entity, ModelError};
use citybrain_storage::Write;

use crate::error::Result;
use crate::request::RequestContext;
use crate::Broker;

/// An entity's history as a reader may see it.
pub(crate) struct Seen {
    /// The series the reader sees as stored: what filters match on.
    pub(crate) h: citybrain_storage::tsdb::EntityHistory,
    /// The series it sees masked: shown through the mask, never matched on.
    pub(crate) masked: Vec<citybrain_storage::tsdb::SeriesInfo>,
}

impl Seen {
    /// Every series shown, as stored or masked.
    pub(crate) fn series(&self) -> impl Iterator<Item = &citybrain_storage::tsdb::SeriesInfo> {
        self.h.series.iter().chain(&self.masked)
    }
}

impl Broker {
    /// The authorizer every operation passes through.
    pub fn authorizer(&self) -> &Arc<dyn Authorizer> {
        &self.authz
    }

    /// Refuses what `rc` may not do.
    pub fn allow(&self, rc: &RequestContext, action: Action<'_>) -> Result<()> {
        self.authz.authorize(rc, &action)?;
        Ok(())
    }

    /// The entity as `rc` may see it; `None` when it is hidden from `rc`.
    pub fn visible(&self, rc: &RequestContext, e: Arc<Entity>) -> Option<Arc<Entity>> {
        if self.authz.sees_everything(rc) {
            return Some(e);
        }
        match self.authz.view(rc, &e) {
            View::Full => Some(e),
            View::Hidden => None,
            View::Masked(m) => Some(Arc::new(*m)),
        }
    }

    /// [`Broker::visible`] for a scan's visitor; `everything` is
    /// [`Authorizer::sees_everything`] for `rc`, asked once per scan.
    pub(crate) fn seen(
        &self,
        rc: &RequestContext,
        everything: bool,
        e: &Arc<Entity>,
    ) -> Option<Arc<Entity>> {
        if everything {
            Some(e.clone())
        } else {
            self.visible(rc, e.clone())
        }
    }

    /// The history of an entity as `rc` may see it: none when the entity is hidden
    /// from `rc`; only the series of the attributes its masked view keeps when masked.
    /// A deleted entity is judged by what its history knows (id and types), with no
    /// attributes: a masking policy then shows none of its series.
    pub(crate) fn history_seen(
        &self,
        rc: &RequestContext,
        everything: bool,
        mut h: citybrain_storage::tsdb::EntityHistory,
    ) -> Result<Option<Seen>> {
        if everything {
            return Ok(Some(Seen {
                h,
                masked: Vec::new(),
            }));
        }
        let current = match self.store.get(&rc.tenant, &h.id)? {
            Some(e) => e,
            None => Arc::new(Entity::shell(h.id.to_string(), h.types.clone())),
        };
        if matches!(self.authz.view(rc, &current), View::Hidden) {
            return Ok(None);
        }
        // Each series is judged by its attribute's name, not by comparing values (a
        // mask may leave a value as it was, and a deleted attribute has none): shown
        // as stored, it is what filters see; otherwise it is read through the mask
        // (`Authorizer::mask_history`), which also removes what may not be read.
        let mut masked = Vec::new();
        h.series.retain(|s| {
            if self.authz.shows_as_stored(rc, &h.types, &s.attr) {
                return true;
            }
            masked.push(s.clone());
            false
        });
        Ok(Some(Seen { h, masked }))
    }

    /// Whether `rc` may read what `action` names. `Ok(false)` when it is forbidden: the
    /// caller then answers "not found", so that existence is not revealed; an
    /// unauthenticated caller is still told to authenticate.
    pub(crate) fn may_read(&self, rc: &RequestContext, action: Action<'_>) -> Result<bool> {
        match self.authz.authorize(rc, &action) {
            Ok(()) => Ok(true),
            Err(Denied::Forbidden(_)) => Ok(false),
            Err(d) => Err(d.into()),
        }
    }
}

/// Checks a write that `decide` chose against the entity as it is: creating,
/// updating or deleting it, by its types.
pub(crate) fn check_write(
    authz: &dyn Authorizer,
    rc: &RequestContext,
    id: &str,
    cur: Option<&Arc<Entity>>,
    w: Option<&Write>,
) -> Result<(), ModelError> {
    match (w, cur) {
        (None, _) | (Some(Write::Delete), None) => Ok(()),
        (Some(Write::Put(e)), cur) => check_put(authz, rc, id, cur, &e.types),
        (Some(Write::Delete), Some(c)) => check_entity(authz, rc, Verb::Delete, &c.types, id),
    }
}

/// Checks writing an entity with `types` over `cur`: a creation, or an update (see
/// [`check_update`]).
pub(crate) fn check_put(
    authz: &dyn Authorizer,
    rc: &RequestContext,
    id: &str,
    cur: Option<&Arc<Entity>>,
    types: &[Arc<str>],
) -> Result<(), ModelError> {
    match cur {
        Some(c) => check_update(authz, rc, id, &c.types, types),
        None => check_entity(authz, rc, Verb::Create, types, id),
    }
}

/// An update is checked against the types the entity has, and, when it retypes the
/// entity, against the types it will have: a caller may not move an entity into (or
/// out of) a type it may not write.
fn check_update(
    authz: &dyn Authorizer,
    rc: &RequestContext,
    id: &str,
    before: &[Arc<str>],
    after: &[Arc<str>],
) -> Result<(), ModelError> {
    check_entity(authz, rc, Verb::Update, before, id)?;
    if after != before {
        check_entity(authz, rc, Verb::Update, after, id)?;
    }
    Ok(())
}

fn check_entity(
    authz: &dyn Authorizer,
    rc: &RequestContext,
    verb: Verb,
    types: &[Arc<str>],
    id: &str,
) -> Result<(), ModelError> {
    authz.authorize(
        rc,
        &Action::new(
            verb,
            Resource::Entity {
                types,
                id: Some(id),
            },
        ),
    )?;
    Ok(())
}

impl Broker {
    /// `POST /jsonldContexts`: hosts a user context.
    pub async fn add_context(
        &self,
        rc: &RequestContext,
        body: serde_json::Value,
    ) -> Result<String> {
        self.allow(rc, Action::new(Verb::Create, Resource::Context))?;
        self.contexts.add_hosted(body, &rc.origin()).await
    }

    /// `DELETE /jsonldContexts/{id}` (`reload=true`: fetch a cached one again).
    pub async fn delete_context(&self, rc: &RequestContext, id: &str, reload: bool) -> Result<()> {
        let verb = if reload { Verb::Update } else { Verb::Delete };
        self.allow(rc, Action::new(verb, Resource::Context))?;
        self.contexts.delete(id, reload, &rc.origin()).await
    }
}
