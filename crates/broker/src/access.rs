//! The broker's side of the authorization seam: every operation asks the
//! [`Authorizer`] before it reads or writes, and every entity an answer carries passes
//! its [`Authorizer::view`]. Entity writes are checked in the one place every write goes
//! through (`decide` of the read-modify-write), with the entity's types as stored, so a
//! policy on types cannot be bypassed by naming another type in the request.

use std::sync::Arc;

use citybrain_access::{Action, Authorizer, Resource, Verb, View};
use citybrain_model::{Entity, ModelError};
use citybrain_storage::Write;

use crate::error::Result;
use crate::request::RequestContext;
use crate::Broker;

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

    /// Keeps the entities `rc` may see, masked as its policy says.
    pub fn visible_all(&self, rc: &RequestContext, list: Vec<Arc<Entity>>) -> Vec<Arc<Entity>> {
        if self.authz.sees_everything(rc) {
            return list;
        }
        list.into_iter()
            .filter_map(|e| self.visible(rc, e))
            .collect()
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
    let (verb, types): (Verb, &[Arc<str>]) = match (w, cur) {
        (None, _) => return Ok(()),
        (Some(Write::Put(e)), None) => (Verb::Create, &e.types),
        (Some(Write::Put(_)), Some(c)) => (Verb::Update, &c.types),
        (Some(Write::Delete), Some(c)) => (Verb::Delete, &c.types),
        (Some(Write::Delete), None) => return Ok(()),
    };
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
