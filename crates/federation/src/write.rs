//! Distributed writes (NGSI-LD 1.8, 4.3.6.3): an entity write whose entity or
//! attributes a registration holds is sent to its context source as well as, or
//! instead of, this broker.
//!
//! - Which registrations: those in force that allow the operation (`createEntity`,
//!   `appendAttrs`, …), are not auxiliary (never written), and have an `information`
//!   entry naming the entity (its id, an id pattern that matches, or its type).
//! - What goes where, attribute by attribute (the attributes an entry registers; all
//!   of them when it names none):
//!   - `inclusive`: the registered attributes go to the source and stay here too;
//!   - `exclusive` and `redirect`: they go to the source only.
//!   - A create or replace sends `id` and `type` with them; a deletion of the entity
//!     goes to every such source, and stays here unless a redirect registration
//!     holds the whole entity.
//! - Each source is written at once, within its timeout; a source that fails is named
//!   in an `NGSILD-Warning` header and the answer is 207 (the local part stands).

use std::sync::Arc;

use citybrain_access::{Action, RequestContext, Verb};
use serde_json::{Map, Value};

use crate::error::{FederationError, Result, Warning};
use crate::forward::Incoming;
use crate::outgoing::warning;
use crate::registration::{Mode, Registration};
use crate::{Entry, Federation};

/// An entity write, as the API received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    Create,
    Replace,
    Merge,
    Append {
        no_overwrite: bool,
    },
    Update,
    Delete,
    /// `PATCH /entities/{id}/attrs/{attr}`, `PUT …`, `DELETE …`: the body given to
    /// [`Federation::split_write`] is `{attr: content}` (`{attr: null}` to delete).
    PatchAttr,
    ReplaceAttr,
    DeleteAttr,
}

impl WriteKind {
    fn op(self) -> &'static str {
        match self {
            WriteKind::Create => "createEntity",
            WriteKind::Replace => "replaceEntity",
            WriteKind::Merge => "mergeEntity",
            WriteKind::Append { .. } => "appendAttrs",
            WriteKind::Update => "updateEntity",
            WriteKind::Delete => "deleteEntity",
            WriteKind::PatchAttr => "updateAttrs",
            WriteKind::ReplaceAttr => "replaceAttrs",
            WriteKind::DeleteAttr => "deleteAttrs",
        }
    }

    /// Whether the body is a whole entity (`id` and `type` travel with each part).
    fn whole(self) -> bool {
        matches!(self, WriteKind::Create | WriteKind::Replace)
    }
}

/// What the sources made of a write.
#[derive(Debug, Default)]
pub struct Sent {
    /// A source had what was written to (a deletion it answered with 404 had not).
    pub found: bool,
    /// The sources that failed.
    pub warnings: Vec<Warning>,
}

/// A source and what it is sent (`None`: a deletion, no body).
type Part = (Arc<Entry>, Option<Map<String, Value>>);

/// Where the parts of a write go.
pub struct Split {
    /// What stays here (`None`: nothing; a body with no attribute left is `None`
    /// unless the write is a create or replace, which keeps the entity here).
    pub local: Option<Map<String, Value>>,
    remote: Vec<Part>,
    /// The context the body was written in.
    ld: Arc<citybrain_model::JsonLdContext>,
    /// What of the client's request travels with the sources' parts.
    inc: Incoming,
}

/// Members of an entity body that are not attributes.
fn is_member(k: &str) -> bool {
    matches!(k, "id" | "type" | "@context" | "scope" | "@id" | "@type")
}

impl Federation {
    /// How a write divides between this broker and the sources; `None` when no
    /// registration takes part (the write is local, as without federation).
    /// `types` are the entity's (expanded) types, from the body or as stored.
    pub fn split_write(
        &self,
        rc: &RequestContext,
        (kind, id): (WriteKind, &str),
        types: &[Arc<str>],
        body: Option<&Map<String, Value>>,
        ld: &Arc<citybrain_model::JsonLdContext>,
        inc: Incoming,
    ) -> Result<Option<Split>> {
        if !self.has_registrations(&rc.tenant) {
            return Ok(None);
        }
        // The id and attribute names become path segments at the source: checked
        // here, whatever this broker would have said of them ("." and ".." would
        // name another resource there).
        citybrain_broker::entities::check_id(id)?;
        if let Some(b) = body {
            for k in b.keys().filter(|k| !is_member(k)) {
                citybrain_model::entity::validate_name("attribute", k)?;
                if k == "." || k == ".." || k.contains('/') {
                    return Err(FederationError::bad_data(format!(
                        "'{k}' is not an attribute name"
                    )));
                }
            }
        }
        if kind.whole() && types.is_empty() {
            // No type: the local write refuses it.
            return Ok(None);
        }
        // An entity whose types are not known here is matched by id or id pattern
        // only, never by a registration of a type.
        let covers = |ei: &crate::registration::EntityInfo| {
            ei.covers(id, types)
                && (!types.is_empty() || ei.id.is_some() || ei.id_pattern.is_some())
        };
        // Sources asked: every one that may hold the entity. Refusals (409) only
        // from those known to hold it (by its types, or by id).
        let names = |e: &Entry, strict: bool| {
            e.reg.infos.iter().any(|i| {
                i.entities.as_ref().is_some_and(|es| {
                    es.iter().any(|ei| {
                        if strict {
                            covers(ei)
                        } else {
                            ei.covers(id, types)
                        }
                    })
                })
            })
        };
        let mut targets: Vec<Arc<Entry>> = Vec::new();
        for e in self.in_force(&rc.tenant) {
            if e.reg.mode == Mode::Auxiliary || !names(&e, false) {
                continue;
            }
            if e.reg.allows(kind.op()) {
                targets.push(e);
            } else if matches!(e.reg.mode, Mode::Redirect | Mode::Exclusive)
                && names(&e, true)
                && writes_held(&e.reg, id, types, body, ld)
            {
                // The data lives only at that source, which does not take this
                // operation: neither here nor there can do it.
                return Err(FederationError::new(
                    citybrain_model::ErrorKind::Conflict,
                    format!(
                        "Conflict: registration '{}' holds this entity's data at its source alone, which does not allow {}",
                        e.reg.id,
                        kind.op()
                    ),
                ));
            }
        }
        if targets.is_empty() {
            return Ok(None);
        }
        let mut local = body.cloned();
        let mut keep_local_entity = true;
        let mut remote: Vec<Part> = Vec::new();
        for e in targets {
            let held = held_attributes(&e.reg, id, types);
            // A redirect registration that holds the whole entity keeps nothing of it
            // here.
            if e.reg.mode == Mode::Redirect && held.is_none() {
                keep_local_entity = false;
            }
            let Some(body) = body else {
                // A deletion: every source.
                remote.push((e, None));
                continue;
            };
            let mut part = Map::new();
            for (k, v) in body {
                if is_member(k) {
                    if kind.whole() && k != "@context" {
                        part.insert(k.clone(), v.clone());
                    }
                    continue;
                }
                let name = ld.expand(k);
                if held.as_ref().is_none_or(|h| h.contains(&name)) {
                    part.insert(k.clone(), v.clone());
                    if e.reg.mode != Mode::Inclusive {
                        if let Some(l) = local.as_mut() {
                            l.remove(k);
                        }
                    }
                }
            }
            let has_attrs = part.keys().any(|k| !is_member(k));
            if has_attrs || (kind.whole() && held.is_none()) {
                remote.push((e, Some(part)));
            }
        }
        if remote.is_empty() {
            return Ok(None);
        }
        let local = match (body, local) {
            (None, _) => keep_local_entity.then(Map::new),
            (Some(_), Some(l)) => {
                let attrs_left = l.keys().any(|k| !is_member(k));
                (attrs_left || (kind.whole() && keep_local_entity)).then_some(l)
            }
            (Some(_), None) => None,
        };
        // An entity this broker does not hold is judged by the types the
        // registrations name for it.
        // Before anything is written, here or there: a request that came back is
        // refused, and the sources' parts are the caller's writes as much as the
        // local part, decided by the same policies (the local part may be empty).
        self.check_loop(&rc.tenant, &inc)?;
        let verb = match kind {
            WriteKind::Create => Verb::Create,
            WriteKind::Delete => Verb::Delete,
            _ => Verb::Update,
        };
        if !types.is_empty() {
            self.broker
                .allow(rc, Action::entity(verb, types, Some(id)))?;
        } else {
            // An entity this broker does not hold is judged, source by source, by
            // the types that registration names for it; a source the caller may not
            // write to is not written to.
            let mut refused = None;
            remote.retain(|(e, _)| {
                let mut judged: Vec<Arc<str>> = e
                    .reg
                    .infos
                    .iter()
                    .flat_map(|i| i.entities.iter().flatten())
                    .filter(|ei| ei.covers(id, &[]))
                    .flat_map(|ei| ei.types.iter().map(|t| Arc::from(t.as_str())))
                    .collect();
                judged.sort();
                judged.dedup();
                match self
                    .broker
                    .allow(rc, Action::entity(verb, &judged, Some(id)))
                {
                    Ok(()) => true,
                    Err(err) => {
                        refused = Some(err);
                        false
                    }
                }
            });
            if remote.is_empty() {
                return match refused {
                    Some(err) => Err(err.into()),
                    None => Ok(None),
                };
            }
        }
        Ok(Some(Split {
            local,
            remote,
            ld: ld.clone(),
            inc,
        }))
    }

    /// Sends the remote parts of a write, all at once.
    pub async fn send_write(&self, kind: WriteKind, id: &str, split: Split) -> Sent {
        let Split {
            remote, ld, inc, ..
        } = split;
        let calls = remote
            .into_iter()
            .map(|(e, part)| self.write_one(e, kind, id, part, &ld, &inc));
        let mut sent = Sent::default();
        for r in futures::future::join_all(calls).await {
            match r {
                Ok(true) => sent.found = true,
                Ok(false) => {}
                Err(w) => sent.warnings.push(w),
            }
        }
        sent
    }

    async fn write_one(
        &self,
        e: Arc<Entry>,
        kind: WriteKind,
        id: &str,
        part: Option<Map<String, Value>>,
        ld: &citybrain_model::JsonLdContext,
        inc: &Incoming,
    ) -> std::result::Result<bool, Warning> {
        let out = self.outgoing(&e, inc)?;
        let base = format!("{}/ngsi-ld/v1/entities", e.reg.endpoint);
        let one = format!("{base}/{}", crate::forward::encode(id));
        let attr_kind = matches!(
            kind,
            WriteKind::PatchAttr | WriteKind::ReplaceAttr | WriteKind::DeleteAttr
        );
        // An attribute write's part is `{attr: content}`: the URL names the
        // attribute and the body is its content.
        let (attr, part) = match part {
            Some(p) if attr_kind => match p.into_iter().find(|(k, _)| !is_member(k)) {
                Some((k, v)) => (
                    Some(if out.expand { ld.expand(&k) } else { k }),
                    match (kind, v) {
                        (WriteKind::DeleteAttr, _) => None,
                        (_, Value::Object(m)) => Some(m),
                        (_, other) => Some(Map::from_iter([("value".to_string(), other)])),
                    },
                ),
                None => return Ok(true),
            },
            p => (None, p),
        };
        let attr_url = || {
            format!(
                "{one}/attrs/{}",
                crate::forward::encode(attr.as_deref().unwrap_or_default())
            )
        };
        let (method, url) = match kind {
            WriteKind::Create => (reqwest::Method::POST, base.clone()),
            WriteKind::Replace => (reqwest::Method::PUT, one.clone()),
            WriteKind::Merge => (reqwest::Method::PATCH, one.clone()),
            WriteKind::Append { .. } => (reqwest::Method::POST, format!("{one}/attrs")),
            WriteKind::Update => (reqwest::Method::PATCH, format!("{one}/attrs")),
            WriteKind::Delete => (reqwest::Method::DELETE, one.clone()),
            WriteKind::PatchAttr => (reqwest::Method::PATCH, attr_url()),
            WriteKind::ReplaceAttr => (reqwest::Method::PUT, attr_url()),
            WriteKind::DeleteAttr => (reqwest::Method::DELETE, attr_url()),
        };
        let mut req = self
            .client
            .request(method, url)
            .headers(out.headers.clone());
        if let WriteKind::Append { no_overwrite: true } = kind {
            req = req.query(&[("options", "noOverwrite")]);
        }
        if e.reg.management.local_only {
            req = req.query(&[("local", "true")]);
        }
        if let Some(a) = &out.accept {
            req = req.header(reqwest::header::ACCEPT, a);
        }
        if let Some(mut part) = part {
            if out.expand && !attr_kind {
                part = expanded(part, ld);
            }
            if out.ld_body {
                let context = out
                    .link
                    .clone()
                    .unwrap_or_else(|| citybrain_model::context::CORE_CONTEXT_URL.to_string());
                part.insert("@context".into(), Value::String(context));
                req = req.header("Content-Type", "application/ld+json");
            } else {
                req = req.header("Content-Type", "application/json");
                if let Some(l) = out.link_header() {
                    req = req.header("Link", l);
                }
            }
            req = req.body(Value::Object(part).to_string());
        }
        let now = self.broker.clock().now();
        let outcome = match tokio::time::timeout(out.timeout, req.send()).await {
            Err(_) => Err(warning(
                &e,
                199,
                format!("no answer within {} ms", out.timeout.as_millis()),
            )),
            Ok(Err(err)) => Err(warning(
                &e,
                199,
                format!("no answer: {}", err.without_url()),
            )),
            Ok(Ok(r)) if r.status().is_success() => Ok(true),
            // Deleting what a source does not have leaves it as wanted.
            Ok(Ok(r))
                if matches!(kind, WriteKind::Delete | WriteKind::DeleteAttr)
                    && r.status() == reqwest::StatusCode::NOT_FOUND =>
            {
                Ok(false)
            }
            Ok(Ok(r)) => Err(warning(&e, 299, format!("answered {}", r.status()))),
        };
        self.record(&e, now, outcome.as_ref().map(|_| ()));
        outcome
    }
}

/// An entity body with its attribute names and types as full IRIs (the source reads
/// another context than the client wrote it in).
fn expanded(part: Map<String, Value>, ld: &citybrain_model::JsonLdContext) -> Map<String, Value> {
    let iri = |v: Value| match v {
        Value::String(t) => Value::String(ld.expand(&t)),
        o => o,
    };
    part.into_iter()
        .map(|(k, v)| match k.as_str() {
            "type" => {
                let t = match v {
                    Value::Array(a) => Value::Array(a.into_iter().map(iri).collect()),
                    o => iri(o),
                };
                (k, t)
            }
            k2 if is_member(k2) => (k, v),
            _ => (ld.expand(&k), v),
        })
        .collect()
}

/// Whether a write touches what the registration holds of the entity (a deletion of
/// the entity always does).
fn writes_held(
    reg: &Registration,
    id: &str,
    types: &[Arc<str>],
    body: Option<&Map<String, Value>>,
    ld: &citybrain_model::JsonLdContext,
) -> bool {
    let Some(body) = body else { return true };
    match held_attributes(reg, id, types) {
        None => true,
        Some(held) => body
            .keys()
            .filter(|k| !is_member(k))
            .any(|k| held.contains(&ld.expand(k))),
    }
}

/// The attributes a registration holds of this entity (expanded); `None`: all.
fn held_attributes(reg: &Registration, id: &str, types: &[Arc<str>]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for i in &reg.infos {
        let names = i
            .entities
            .as_ref()
            .is_some_and(|es| es.iter().any(|ei| ei.covers(id, types)));
        if !names {
            continue;
        }
        out.extend(i.attributes()?.into_iter().map(str::to_string));
    }
    Some(out)
}
