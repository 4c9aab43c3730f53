//! Subscriptions to context source registrations (`/csourceSubscriptions`, NGSI-LD
//! 1.8 5.11): a client hears when a registration that matches starts or stops
//! matching, or changes.
//!
//! - Matching: `entities` and `watchedAttributes` against each `information` entry (as
//!   discovery matches them), `q` and `csf` on the registration's own properties,
//!   `geoQ` on its `location`, `temporalQ` on its intervals.
//! - A notification (`ContextSourceNotification`) carries the registrations, each with
//!   only the `information` entries that match, compacted with the subscription's
//!   context, and a `triggerReason`: `newlyMatching` (a registration created or
//!   changed into matching; all matching ones when the subscription is created or
//!   changed), `updated` (changed, still matching), `noLongerMatching` (changed out of
//!   matching, or deleted).
//! - Delivery: one HTTP POST per notification, within the federation's timeout, not
//!   retried (a registration's next change notifies again); the subscription's
//!   `notification` shows `timesSent`, `timesFailed`, `lastSuccess`, `lastFailure`
//!   once something was sent. A paused (`isActive: false`) or expired subscription
//!   sends nothing. `timeInterval` is accepted and kept, but notifications are sent on
//!   changes only (written in docs/federation.md).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use citybrain_access::{Action, RequestContext, Resource, Verb};
use citybrain_broker::query::geo_query;
use citybrain_broker::subscriptions::Selector;
use citybrain_model::geojson::GeoQuery;
use citybrain_model::q::Query;
use citybrain_model::time::{format_datetime, parse_datetime};
use citybrain_model::uri::is_absolute_uri;
use citybrain_model::{ErrorKind, JsonLdContext};
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Map, Value};

use crate::discovery::{TimeFilter, TimeParams};
use crate::error::{FederationError, Result};
use crate::registration::{RegInfo, Registration};

/// A subscription to registrations, compiled.
#[derive(Debug, Clone)]
pub struct CsrSubscription {
    pub id: String,
    body: Map<String, Value>,
    context_source: Option<Value>,
    ld: Arc<JsonLdContext>,
    selectors: Vec<Selector>,
    watched: Option<Vec<String>>,
    q: Option<Query>,
    csf: Option<Query>,
    geo: Option<GeoQuery>,
    time: Option<TimeFilter>,
    endpoint: String,
    accept_ld: bool,
    receiver_info: Vec<(String, String)>,
    is_active: bool,
    expires_at: Option<DateTime<Utc>>,
}

fn bad(detail: impl Into<String>) -> FederationError {
    FederationError::bad_data(detail)
}

impl CsrSubscription {
    fn compile(
        id: &str,
        body: Map<String, Value>,
        context_source: Option<Value>,
        ld: Arc<JsonLdContext>,
        now: Option<DateTime<Utc>>,
    ) -> Result<CsrSubscription> {
        match body.get("type") {
            Some(Value::String(t)) if t == "Subscription" => {}
            other => {
                return Err(bad(format!(
                    "a context source subscription's 'type' must be \"Subscription\", got {}",
                    other
                        .map(Value::to_string)
                        .unwrap_or_else(|| "nothing".into())
                )))
            }
        }
        let selectors = Selector::parse_all(body.get("entities"), &ld)?;
        let watched = match body.get("watchedAttributes") {
            None => None,
            Some(v) => {
                let items = v
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| bad("'watchedAttributes' must be a non-empty array"))?;
                Some(
                    items
                        .iter()
                        .map(|a| {
                            a.as_str()
                                .map(|s| ld.expand(s))
                                .ok_or_else(|| bad("'watchedAttributes' must list names"))
                        })
                        .collect::<Result<Vec<_>>>()?,
                )
            }
        };
        let query = |k: &str| -> Result<Option<Query>> {
            body.get(k)
                .map(|v| {
                    let s = v
                        .as_str()
                        .ok_or_else(|| bad(format!("'{k}' must be a string")))?;
                    let mut q = Query::parse(s).map_err(|e| bad(format!("'{k}': {}", e.detail)))?;
                    q.resolve(&ld);
                    Ok(q)
                })
                .transpose()
        };
        let (q, csf) = (query("q")?, query("csf")?);
        let geo = match body.get("geoQ") {
            None => None,
            Some(Value::Object(g)) => {
                let s = |k: &str| g.get(k).and_then(Value::as_str);
                geo_query(
                    &ld,
                    s("georel"),
                    s("geometry"),
                    g.get("coordinates"),
                    s("geoproperty"),
                )?
            }
            Some(_) => return Err(bad("'geoQ' must be an object")),
        };
        let time = match body.get("temporalQ") {
            None => None,
            Some(Value::Object(t)) => {
                let s = |k: &str| t.get(k).and_then(Value::as_str).map(str::to_string);
                TimeParams {
                    timeproperty: s("timeproperty"),
                    timerel: s("timerel"),
                    time_at: s("timeAt"),
                    end_time_at: s("endTimeAt"),
                }
                .parse()?
            }
            Some(_) => return Err(bad("'temporalQ' must be an object")),
        };
        let n = body
            .get("notification")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("'notification' is required"))?;
        let ep = n
            .get("endpoint")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("'notification.endpoint' is required"))?;
        let endpoint = match ep.get("uri") {
            Some(Value::String(u)) if is_absolute_uri(u) && u.contains("://") => u.clone(),
            _ => return Err(bad("'notification.endpoint.uri' must be an absolute URI")),
        };
        let accept_ld = match ep.get("accept").and_then(Value::as_str) {
            None | Some("application/json") => false,
            Some("application/ld+json") => true,
            Some(other) => {
                return Err(bad(format!(
                    "'notification.endpoint.accept' must be application/json or application/ld+json, got '{other}'"
                )))
            }
        };
        let mut receiver_info = Vec::new();
        if let Some(v) = ep.get("receiverInfo") {
            for kv in v
                .as_array()
                .ok_or_else(|| bad("'receiverInfo' must be an array"))?
            {
                match (kv.get("key"), kv.get("value")) {
                    (Some(Value::String(k)), Some(Value::String(v))) => {
                        receiver_info.push((k.clone(), v.clone()))
                    }
                    _ => return Err(bad("'receiverInfo' entries need string key and value")),
                }
            }
        }
        let is_active = match body.get("isActive") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("'isActive' must be a boolean")),
        };
        let expires_at = match body.get("expiresAt") {
            None => None,
            Some(v) => {
                let t = v
                    .as_str()
                    .and_then(parse_datetime)
                    .ok_or_else(|| bad("'expiresAt' must be a DateTime"))?;
                if now.is_some_and(|now| t <= now) {
                    return Err(bad("'expiresAt' is in the past"));
                }
                Some(t)
            }
        };
        if let Some(v) = body.get("timeInterval") {
            if !v.as_f64().is_some_and(|n| n > 0.0 && n.is_finite()) {
                return Err(bad("'timeInterval' must be a positive number of seconds"));
            }
        }
        Ok(CsrSubscription {
            id: id.to_string(),
            body,
            context_source,
            ld,
            selectors,
            watched,
            q,
            csf,
            geo,
            time,
            endpoint,
            accept_ld,
            receiver_info,
            is_active,
            expires_at,
        })
    }

    fn info_matches(&self, info: &RegInfo) -> bool {
        let entities = self.selectors.is_empty()
            || match &info.entities {
                None => true,
                Some(es) => self.selectors.iter().any(|s| {
                    es.iter().any(|ei| {
                        let mine: Vec<Arc<str>> =
                            ei.types.iter().map(|t| Arc::from(t.as_str())).collect();
                        let ids = match (&s.id, &ei.id) {
                            (Some(a), Some(b)) => a == b,
                            (Some(a), None) => ei.id_pattern.as_ref().is_none_or(|p| p.is_match(a)),
                            (None, Some(b)) => s.id_pattern.as_ref().is_none_or(|p| p.is_match(b)),
                            (None, None) => true,
                        };
                        s.types.matches_types(&mine) && ids
                    })
                }),
            };
        entities && self.watched.as_ref().is_none_or(|w| info.has_any(w))
    }

    /// Which `information` entries match; `None` when the registration does not.
    pub fn matches(&self, r: &Registration) -> Option<Vec<bool>> {
        let keep: Vec<bool> = r.infos.iter().map(|i| self.info_matches(i)).collect();
        let whole = keep.iter().any(|k| *k)
            && self.q.as_ref().is_none_or(|q| q.matches(&r.doc))
            && self.csf.as_ref().is_none_or(|q| q.matches(&r.doc))
            && self
                .geo
                .as_ref()
                .is_none_or(|g| crate::discovery::place_matches(g, r))
            && self.time.as_ref().is_none_or(|t| t.meets(r));
        whole.then_some(keep)
    }

    fn live(&self, now: DateTime<Utc>) -> bool {
        self.is_active && self.expires_at.is_none_or(|t| t > now)
    }
}

/// A registration as a notification carries it: the matching `information` entries,
/// compacted with the subscription's context, `contextSourceInfo` values hidden (a
/// notification leaves the broker).
fn notified(r: &Registration, ld: &JsonLdContext, keep: &[bool]) -> Map<String, Value> {
    let mut m = r.render(ld, Some(keep));
    crate::registration::redact_source_info(&mut m);
    m
}

/// What delivery has done for a subscription.
#[derive(Debug, Default, Clone)]
struct Delivery {
    times_sent: u64,
    times_failed: u64,
    last_notification: Option<DateTime<Utc>>,
    last_success: Option<DateTime<Utc>>,
    last_failure: Option<DateTime<Utc>>,
}

struct Entry {
    sub: CsrSubscription,
    /// Who made it: only they (and those who may administer registrations) see and
    /// change it.
    owner: citybrain_access::Principal,
    created_at: DateTime<Utc>,
    modified_at: DateTime<Utc>,
    seq: u64,
    delivery: Arc<Mutex<Delivery>>,
}

/// The subscriptions to registrations of every tenant.
#[derive(Default)]
pub struct CsrSubscriptions {
    subs: RwLock<HashMap<(String, String), Arc<Entry>>>,
    next_seq: AtomicU64,
}

/// A change of one registration, as subscriptions hear of it.
pub(crate) enum RegChange<'a> {
    Created(&'a Registration),
    Updated(&'a Registration, &'a Registration),
    Deleted(&'a Registration),
}

impl crate::Federation {
    fn allow_csub(&self, rc: &RequestContext) -> Result<()> {
        self.broker
            .allow(rc, Action::new(Verb::Read, Resource::Registration(None)))?;
        Ok(())
    }

    pub(crate) async fn load_csubs(&self) {
        let Ok(stored) = self.csub_docs.load() else {
            tracing::error!("context source subscriptions could not be loaded");
            return;
        };
        let now = self.broker.clock().now();
        for (tenant, id, doc) in stored {
            let Some(body) = doc.get("body").and_then(Value::as_object).cloned() else {
                continue;
            };
            let context = doc.get("context").cloned().filter(|c| !c.is_null());
            let ld = self
                .broker
                .contexts
                .resolve(context.as_ref())
                .await
                .unwrap_or_else(|_| JsonLdContext::core());
            match CsrSubscription::compile(&id, body, context, ld, None) {
                Ok(sub) => {
                    let t = |k: &str| {
                        doc.get(k)
                            .and_then(Value::as_str)
                            .and_then(parse_datetime)
                            .unwrap_or(now)
                    };
                    let e = Entry {
                        sub,
                        owner: citybrain_access::Principal::from_json(
                            doc.get("owner").unwrap_or(&Value::Null),
                        ),
                        created_at: t("createdAt"),
                        modified_at: t("modifiedAt"),
                        seq: self.csubs.next_seq.fetch_add(1, Ordering::Relaxed),
                        delivery: Arc::default(),
                    };
                    self.csubs.subs.write().insert((tenant, id), Arc::new(e));
                }
                Err(error) => {
                    tracing::warn!(subscription = %id, error = %citybrain_model::ErrorCode::public_detail(&error), "stored context source subscription no longer valid; skipped")
                }
            }
        }
    }

    async fn persist_csub(&self, rc: &RequestContext, e: &Entry) -> Result<()> {
        let doc = crate::stored(
            &e.sub.body,
            &e.sub.context_source,
            (e.created_at, e.modified_at),
            &e.owner,
        );
        self.csub_docs.put(rc, &e.sub.id, doc).await?;
        Ok(())
    }

    /// `POST /csourceSubscriptions`.
    pub async fn create_csub(
        &self,
        rc: &RequestContext,
        mut body: Map<String, Value>,
        context: Option<Value>,
    ) -> Result<String> {
        self.allow_csub(rc)?;
        let ld = self.broker.contexts.resolve(context.as_ref()).await?;
        let id = crate::id_of(&mut body, "subscription", "urn:ngsi-ld:Subscription")?;
        let _writes = self.writes.lock().await;
        let now = self.broker.clock().now();
        let sub = CsrSubscription::compile(&id, body, context, ld, Some(now))?;
        self.broker
            .egress
            .check_url(&sub.endpoint)
            .map_err(|e| bad(format!("'notification.endpoint.uri': {e}")))?;
        let entry = Arc::new(Entry {
            sub,
            owner: rc.principal.clone(),
            created_at: now,
            modified_at: now,
            seq: self.csubs.next_seq.fetch_add(1, Ordering::Relaxed),
            delivery: Arc::default(),
        });
        let key = (rc.tenant.clone(), id.clone());
        {
            let mut subs = self.csubs.subs.write();
            if subs.contains_key(&key) {
                return Err(FederationError::new(
                    ErrorKind::AlreadyExists,
                    format!("subscription '{id}' already exists"),
                ));
            }
            subs.insert(key.clone(), entry.clone());
        }
        if let Err(e) = self.persist_csub(rc, &entry).await {
            self.csubs.subs.write().remove(&key);
            return Err(e);
        }
        self.notify_all_matching(&rc.tenant, &entry);
        Ok(id)
    }

    fn csub_entry(&self, rc: &RequestContext, id: &str) -> Result<Arc<Entry>> {
        self.allow_csub(rc)?;
        if !is_absolute_uri(id) {
            return Err(bad(format!("subscription id '{id}' is not a URI")));
        }
        let not_found = || FederationError::not_found(format!("subscription '{id}' not found"));
        let e = self
            .csubs
            .subs
            .read()
            .get(&(rc.tenant.clone(), id.to_string()))
            .cloned()
            .ok_or_else(not_found)?;
        if !self.owns(rc, &e) {
            return Err(not_found());
        }
        Ok(e)
    }

    /// Whether `rc` may see and change the subscription: its owner (anonymous callers
    /// cannot be told apart, so they own nothing), or whoever may administer
    /// registrations (everyone in the open demo).
    fn owns(&self, rc: &RequestContext, e: &Entry) -> bool {
        (!rc.principal.is_anonymous() && e.owner.actor() == rc.principal.actor())
            || self
                .broker
                .allow(
                    rc,
                    Action::new(Verb::Administer, Resource::Registration(None)),
                )
                .is_ok()
    }

    /// A subscription as its reader sees it (terms compacted with `to`).
    fn render_csub(&self, e: &Entry, to: &JsonLdContext, sys_attrs: bool) -> Map<String, Value> {
        let s = &e.sub;
        let term = |t: &str| to.compact(&s.ld.expand(t));
        let mut out = s.body.clone();
        if let Some(Value::Array(es)) = out.get_mut("entities") {
            for e in es.iter_mut() {
                if let Some(Value::String(t)) = e.get_mut("type") {
                    if !t.contains([',', ';', '|', '(', ')']) {
                        *t = term(t);
                    }
                }
            }
        }
        if let Some(Value::Array(w)) = out.get_mut("watchedAttributes") {
            for a in w.iter_mut() {
                if let Some(t) = a.as_str() {
                    *a = Value::String(term(t));
                }
            }
        }
        let now = self.broker.clock().now();
        let status = if !s.is_active {
            "paused"
        } else if s.expires_at.is_some_and(|t| t <= now) {
            "expired"
        } else {
            "active"
        };
        out.insert("status".into(), json!(status));
        if sys_attrs {
            out.insert("createdAt".into(), json!(format_datetime(&e.created_at)));
            out.insert("modifiedAt".into(), json!(format_datetime(&e.modified_at)));
        }
        let d = e.delivery.lock().clone();
        if let Some(Value::Object(n)) = out.get_mut("notification") {
            crate::put_status(
                n,
                (d.times_sent, d.times_failed),
                d.last_notification,
                (d.last_success, d.last_failure),
            );
        }
        out
    }

    /// `GET /csourceSubscriptions/{id}`.
    pub fn get_csub(
        &self,
        rc: &RequestContext,
        id: &str,
        to: &JsonLdContext,
        sys_attrs: bool,
    ) -> Result<Map<String, Value>> {
        let e = self.csub_entry(rc, id)?;
        Ok(self.render_csub(&e, to, sys_attrs))
    }

    /// `GET /csourceSubscriptions`: the tenant's, in creation order; a page and the
    /// number in all.
    pub fn list_csubs(
        &self,
        rc: &RequestContext,
        to: &JsonLdContext,
        sys_attrs: bool,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Map<String, Value>>, usize)> {
        self.allow_csub(rc)?;
        let mut all: Vec<Arc<Entry>> = self
            .csubs
            .subs
            .read()
            .iter()
            .filter(|((t, _), e)| *t == rc.tenant && self.owns(rc, e))
            .map(|(_, e)| e.clone())
            .collect();
        all.sort_by_key(|e| e.seq);
        let total = all.len();
        let page = all
            .iter()
            .skip(offset)
            .take(limit)
            .map(|e| self.render_csub(e, to, sys_attrs))
            .collect();
        Ok((page, total))
    }

    /// `PATCH /csourceSubscriptions/{id}`: the fragment's members replace the stored
    /// ones (`null` removes one); then every matching registration is notified.
    pub async fn update_csub(
        &self,
        rc: &RequestContext,
        id: &str,
        mut fragment: Map<String, Value>,
        context: Option<Value>,
    ) -> Result<()> {
        let _writes = self.writes.lock().await;
        let entry = self.csub_entry(rc, id)?;
        if fragment.is_empty() {
            return Err(bad("the subscription fragment is empty"));
        }
        if let Some(Value::String(fid)) = fragment.remove("id") {
            if fid != id {
                return Err(bad("a subscription's id cannot be changed"));
            }
        }
        let ld = match &context {
            Some(_) => self.broker.contexts.resolve(context.as_ref()).await?,
            None => entry.sub.ld.clone(),
        };
        let mut body = self.render_csub(&entry, &ld, false);
        body.remove("status");
        if let Some(Value::Object(n)) = body.get_mut("notification") {
            for k in [
                "status",
                "timesSent",
                "timesFailed",
                "lastNotification",
                "lastSuccess",
                "lastFailure",
            ] {
                n.remove(k);
            }
        }
        for (k, v) in fragment {
            if v.is_null() {
                body.remove(&k);
            } else {
                body.insert(k, v);
            }
        }
        let now = self.broker.clock().now();
        let context = context.or_else(|| entry.sub.context_source.clone());
        let sub = CsrSubscription::compile(id, body, context, ld, Some(now))?;
        self.broker
            .egress
            .check_url(&sub.endpoint)
            .map_err(|e| bad(format!("'notification.endpoint.uri': {e}")))?;
        let next = Arc::new(Entry {
            sub,
            owner: entry.owner.clone(),
            created_at: entry.created_at,
            modified_at: now,
            seq: entry.seq,
            delivery: entry.delivery.clone(),
        });
        self.persist_csub(rc, &next).await?;
        self.csubs
            .subs
            .write()
            .insert((rc.tenant.clone(), id.to_string()), next.clone());
        self.notify_all_matching(&rc.tenant, &next);
        Ok(())
    }

    /// `DELETE /csourceSubscriptions/{id}`.
    pub async fn delete_csub(&self, rc: &RequestContext, id: &str) -> Result<()> {
        let _writes = self.writes.lock().await;
        self.csub_entry(rc, id)?;
        self.csub_docs.delete(rc, id).await?;
        self.csubs
            .subs
            .write()
            .remove(&(rc.tenant.clone(), id.to_string()));
        Ok(())
    }

    /// Tells the tenant's subscriptions of a registration's change.
    pub(crate) fn registration_changed(&self, tenant: &str, change: RegChange<'_>) {
        let now = self.broker.clock().now();
        let subs: Vec<Arc<Entry>> = self
            .csubs
            .subs
            .read()
            .iter()
            .filter(|((t, _), e)| t == tenant && e.sub.live(now))
            .map(|(_, e)| e.clone())
            .collect();
        for e in subs {
            let (reason, reg, keep) = match &change {
                RegChange::Created(r) => match e.sub.matches(r) {
                    Some(k) => ("newlyMatching", *r, k),
                    None => continue,
                },
                RegChange::Deleted(r) => match e.sub.matches(r) {
                    Some(k) => ("noLongerMatching", *r, k),
                    None => continue,
                },
                RegChange::Updated(before, after) => {
                    match (e.sub.matches(before), e.sub.matches(after)) {
                        (Some(_), Some(k)) => ("updated", *after, k),
                        (None, Some(k)) => ("newlyMatching", *after, k),
                        (Some(k), None) => ("noLongerMatching", *before, k),
                        (None, None) => continue,
                    }
                }
            };
            let data = vec![notified(reg, &e.sub.ld, &keep)];
            self.send_notification(e, reason, data);
        }
    }

    /// Every registration the subscription matches, as `newlyMatching` (at creation
    /// and after a change); nothing when none matches.
    fn notify_all_matching(&self, tenant: &str, e: &Arc<Entry>) {
        if !e.sub.live(self.broker.clock().now()) {
            return;
        }
        let data: Vec<Map<String, Value>> = self
            .in_force(tenant)
            .iter()
            .filter_map(|r| {
                e.sub
                    .matches(&r.reg)
                    .map(|k| notified(&r.reg, &e.sub.ld, &k))
            })
            .collect();
        if !data.is_empty() {
            self.send_notification(e.clone(), "newlyMatching", data);
        }
    }

    /// Sends one notification in the background; counts the outcome.
    fn send_notification(
        &self,
        e: Arc<Entry>,
        reason: &'static str,
        data: Vec<Map<String, Value>>,
    ) {
        let now = self.broker.clock().now();
        let mut body = json!({
            "id": format!("urn:ngsi-ld:Notification:{}", uuid::Uuid::new_v4()),
            "type": "ContextSourceNotification",
            "subscriptionId": e.sub.id,
            "notifiedAt": format_datetime(&now),
            "data": data,
            "triggerReason": reason,
        });
        let mut req = self.client.post(&e.sub.endpoint);
        let ctx =
            e.sub.context_source.clone().unwrap_or_else(|| {
                Value::String(citybrain_model::context::CORE_CONTEXT_URL.into())
            });
        if e.sub.accept_ld {
            body["@context"] = ctx;
            req = req.header("Content-Type", "application/ld+json");
        } else {
            req = req.header("Content-Type", "application/json");
            if let Some(url) = ctx.as_str() {
                req = req.header(
                    "Link",
                    format!("<{url}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""),
                );
            }
        }
        if let Err(err) = self.broker.egress.check_url(&e.sub.endpoint) {
            tracing::warn!(subscription = %e.sub.id, error = %err, "the egress policy refuses the notification endpoint");
            let mut d = e.delivery.lock();
            d.times_sent += 1;
            d.times_failed += 1;
            d.last_notification = Some(now);
            d.last_failure = Some(now);
            return;
        }
        for (k, v) in &e.sub.receiver_info {
            if crate::forward::reserved_header(k) {
                continue;
            }
            if let (Ok(n), Ok(v)) = (
                reqwest::header::HeaderName::from_bytes(k.as_bytes()),
                reqwest::header::HeaderValue::from_str(v),
            ) {
                req = req.header(n, v);
            }
        }
        let req = req.body(body.to_string()).timeout(self.settings.timeout);
        let clock = self.broker.clock().clone();
        // Counted as sent when it leaves: a receiver that reads the subscription as
        // soon as it has answered sees it counted (the outcome follows).
        {
            let mut d = e.delivery.lock();
            d.times_sent += 1;
            d.last_notification = Some(now);
        }
        tokio::spawn(async move {
            let ok = matches!(req.send().await, Ok(r) if r.status().is_success());
            let at = clock.now();
            let mut d = e.delivery.lock();
            if ok {
                d.last_success = Some(at);
            } else {
                d.times_failed += 1;
                d.last_failure = Some(at);
                tracing::warn!(subscription = %e.sub.id, endpoint = %e.sub.endpoint, "context source notification failed");
            }
        });
    }
}
