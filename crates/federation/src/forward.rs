//! Distributed operations (NGSI-LD 1.8, 4.3.6 and 6.3.17): entity queries and
//! retrievals sent to the registered context sources as well as answered locally, and
//! the answers merged.
//!
//! - A source is asked when a registration in force allows the operation and one of its
//!   `information` entries may hold what is asked (types, ids, attributes, and its
//!   `location` and `scope` against a geo-query and `scopeQ`). `local=true` asks none.
//! - Each source gets the query as the client sent it (its `Link` context, so the
//!   answer reads with the same terms), `attrs` narrowed to what the entry registers,
//!   the page it needs (`limit` = offset + limit), `Via` with this broker's alias,
//!   `NGSILD-Tenant` when the registration names one, and `contextSourceInfo` as
//!   headers (`urn:ngsi-ld:request` copies the incoming header of that name).
//! - Sources are asked at once, each within its timeout (`management.timeout` or
//!   `federation.timeout_ms`); one that fails, answers with an error or with a payload
//!   that is not NGSI-LD is left out of the answer and named in an `NGSILD-Warning`
//!   header (299 error answer, 111 invalid payload, 199 no answer in time); a 404 is no
//!   data, not a failure.
//! - Merging (4.3.6.2): an entity's attributes from several places are joined; where
//!   the same attribute instance (name and `datasetId`) comes from two, the most recent
//!   `observedAt` wins, and without one the first place asked (this broker, then the
//!   registrations in creation order); auxiliary sources only fill what nothing else
//!   has. Every merged entity passes the caller's access policies like a local one.
//! - Paging: each place is asked for the first offset + limit entities; the merged list
//!   is cut at the offset. The count is the sum of the places' counts less the entities
//!   seen in more than one of the fetched pages: exact when every page was whole,
//!   otherwise an upper bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use citybrain_broker::query::{EntityQuery, QueryPage, QueryParams};
use citybrain_model::entity::parse_entity;
use citybrain_model::{Entity, ErrorKind, JsonLdContext};
use citybrain_telemetry::MetricDef;
use serde_json::Value;

pub use crate::error::Warning;
use crate::error::{FederationError, Result};
use crate::outgoing::warning;
use crate::registration::{Mode, Registration};
use crate::{Entry, Federation};

pub static FORWARDED: MetricDef = MetricDef::counter(
    "federation_requests",
    "Requests sent to context sources by distributed operations",
);
pub static FAILED: MetricDef = MetricDef::counter(
    "federation_failures",
    "Requests to context sources that failed (no answer in time, an error answer or an invalid payload)",
);
pub static LOOPS: MetricDef = MetricDef::counter(
    "federation_loops",
    "Requests refused with 508 because they came back to this broker (Via)",
);

/// Headers the broker sets itself: never a registration's (`contextSourceInfo`) or a
/// subscription's (`receiverInfo`) to set.
pub(crate) fn reserved_header(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "via"
            | "ngsild-tenant"
            | "host"
            | "content-length"
            | "content-type"
            | "link"
            | "transfer-encoding"
            | "connection"
            | "upgrade"
            | "te"
            | "trailer"
            | "keep-alive"
            | "proxy-authorization"
            | "expect"
    )
}

/// Where batch queries go (a source that allows `queryBatch` but not `queryEntity`).
const BATCH_QUERY: &str = "/ngsi-ld/v1/entityOperations/query";

/// A query's parameters as a `Query` body (5.2.23), with the paging parameters left
/// in the URL.
fn query_body(query: &[(String, String)]) -> (Vec<(String, String)>, Value) {
    let mut url = Vec::new();
    let mut body = serde_json::Map::new();
    body.insert("type".into(), Value::String("Query".into()));
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let types = get("type");
    let mut entities = Vec::new();
    match get("id") {
        Some(ids) => {
            for id in ids.split(',') {
                let mut e = serde_json::Map::new();
                e.insert("id".into(), Value::String(id.to_string()));
                if let Some(t) = &types {
                    e.insert("type".into(), Value::String(t.clone()));
                }
                entities.push(Value::Object(e));
            }
        }
        None => {
            if let Some(t) = &types {
                let mut e = serde_json::Map::new();
                e.insert("type".into(), Value::String(t.clone()));
                if let Some(p) = get("idPattern") {
                    e.insert("idPattern".into(), Value::String(p));
                }
                entities.push(Value::Object(e));
            }
        }
    }
    if !entities.is_empty() {
        body.insert("entities".into(), Value::Array(entities));
    }
    if let Some(a) = get("attrs") {
        body.insert(
            "attrs".into(),
            Value::Array(a.split(',').map(|s| Value::String(s.to_string())).collect()),
        );
    }
    for k in ["q", "scopeQ"] {
        if let Some(v) = get(k) {
            body.insert(k.into(), Value::String(v));
        }
    }
    if let Some(georel) = get("georel") {
        let mut g = serde_json::Map::new();
        g.insert("georel".into(), Value::String(georel));
        for k in ["geometry", "geoproperty"] {
            if let Some(v) = get(k) {
                g.insert(k.into(), Value::String(v));
            }
        }
        if let Some(c) = get("coordinates") {
            g.insert(
                "coordinates".into(),
                serde_json::from_str(&c).unwrap_or(Value::String(c)),
            );
        }
        body.insert("geoQ".into(), Value::Object(g));
    }
    for (k, v) in query {
        if matches!(k.as_str(), "limit" | "offset" | "count" | "local") {
            url.push((k.clone(), v.clone()));
        }
    }
    (url, Value::Object(body))
}

/// The most a source's answer may hold; a larger one is left out (warning 111).
const MAX_ANSWER: usize = 32 << 20;

/// Counters of distributed operations.
#[derive(Debug, Default)]
pub struct Stats {
    pub forwarded: AtomicU64,
    pub failed: AtomicU64,
    pub loops: AtomicU64,
}

impl Stats {
    /// Each counter with its definition, for `/metrics`.
    pub fn visit(&self, mut f: impl FnMut(&'static MetricDef, f64)) {
        f(&FORWARDED, self.forwarded.load(Ordering::Relaxed) as f64);
        f(&FAILED, self.failed.load(Ordering::Relaxed) as f64);
        f(&LOOPS, self.loops.load(Ordering::Relaxed) as f64);
    }
}

/// A distributed operation's answer and its warnings.
#[derive(Debug)]
pub struct Forwarded<T> {
    pub value: T,
    pub warnings: Vec<Warning>,
}

/// What of the incoming request travels with the forwarded ones.
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    /// The `Via` header as received.
    pub via: Option<String>,
    /// The `Link` context URL as received.
    pub link: Option<String>,
    /// `local=true`: this broker's data only.
    pub local: bool,
    /// `csf`: only the sources whose registrations match it are asked.
    pub csf: Option<String>,
    /// The body carried its `@context` inline (JSON-LD), not by `Link`.
    pub inline_context: bool,
    /// The request's headers, for `contextSourceInfo` entries whose value is
    /// `urn:ngsi-ld:request`.
    pub headers: reqwest::header::HeaderMap,
}

/// One source's answer.
struct Answer {
    entities: Vec<Entity>,
    count: Option<usize>,
    auxiliary: bool,
}

impl Federation {
    /// Refuses a request that already passed through this broker's `tenant` (508).
    pub fn check_loop(&self, tenant: &str, inc: &Incoming) -> Result<()> {
        let alias = self.alias_for(tenant);
        let came_back = inc.via.as_deref().is_some_and(|via| {
            via.split(',').any(|hop| {
                hop.split_whitespace()
                    .any(|part| part.eq_ignore_ascii_case(&alias))
            })
        });
        if came_back {
            self.stats.loops.fetch_add(1, Ordering::Relaxed);
            return Err(FederationError::new(
                ErrorKind::LoopDetected,
                format!("the request came back to this broker ('{alias}' is in its Via header)"),
            ));
        }
        Ok(())
    }

    /// Remote entities as the caller may see them, and how many were hidden.
    fn seen(&self, rc: &citybrain_access::RequestContext, es: Vec<Entity>) -> (Vec<Entity>, usize) {
        let n = es.len();
        let kept: Vec<Entity> = es
            .into_iter()
            .filter_map(|e| self.broker.visible(rc, Arc::new(e)))
            .map(Arc::unwrap_or_clone)
            .collect();
        let hidden = n - kept.len();
        (kept, hidden)
    }

    /// The registrations a query or retrieval goes to: those allowing one of `ops`.
    fn sources(
        &self,
        tenant: &str,
        ops: &[&str],
        pick: impl Fn(&Registration) -> bool,
    ) -> Vec<Arc<Entry>> {
        let mut v: Vec<Arc<Entry>> = self
            .in_force(tenant)
            .into_iter()
            .filter(|e| ops.iter().any(|op| e.reg.allows(op)) && pick(&e.reg))
            .collect();
        // Auxiliary sources last: they only fill gaps.
        v.sort_by_key(|e| e.reg.mode == Mode::Auxiliary);
        if v.len() > self.settings.max_sources {
            tracing::warn!(
                matching = v.len(),
                asked = self.settings.max_sources,
                "more context sources match than federation.max_sources; the last ones are not asked"
            );
            v.truncate(self.settings.max_sources);
        }
        v
    }

    /// `GET /entities` across this broker and the matching context sources.
    pub async fn query_entities(
        &self,
        rc: &citybrain_access::RequestContext,
        params: &QueryParams,
        q: &EntityQuery,
        ld: &JsonLdContext,
        inc: &Incoming,
    ) -> Result<Forwarded<QueryPage>> {
        let local_only = |page| Forwarded {
            value: page,
            warnings: Vec::new(),
        };
        if inc.local || !self.has_registrations(&rc.tenant) {
            return Ok(local_only(self.broker.query_entities(rc, q)?));
        }
        let csf = inc
            .csf
            .as_deref()
            .map(|s| -> Result<citybrain_model::q::Query> {
                let mut q = citybrain_model::q::Query::parse(s)
                    .map_err(|e| FederationError::bad_data(format!("'csf': {}", e.detail)))?;
                q.resolve(ld);
                Ok(q)
            })
            .transpose()?;
        let sources = self.sources(&rc.tenant, &["queryEntity", "queryBatch"], |r| {
            csf.as_ref().is_none_or(|c| c.matches(&r.doc))
                // A registration that says where or in which scope its data lies is
                // asked only for queries there; one that says nothing, for any.
                && q.geo.as_ref().is_none_or(|g| {
                    r.doc.attr(&g.geoproperty).is_none() || crate::discovery::place_matches(g, r)
                })
                && q.scope.as_ref().is_none_or(|patterns| match &r.doc.scope {
                    None => true,
                    Some(scopes) => patterns
                        .iter()
                        .any(|p| citybrain_broker::query::scope_matches(p, scopes)),
                })
                && r.infos.iter().any(|i| {
                    crate::discovery::entities_match(
                        i,
                        q.types.as_ref(),
                        q.ids.as_deref(),
                        q.id_pattern.as_ref(),
                        true,
                    ) && q.attrs.as_ref().is_none_or(|a| i.has_any(a))
                })
        });
        if sources.is_empty() {
            return Ok(local_only(self.broker.query_entities(rc, q)?));
        }
        self.check_loop(&rc.tenant, inc)?;
        if q.order_by.is_some() {
            return Err(FederationError::bad_data(
                "'orderBy' is not supported by distributed queries; add local=true to order this broker's entities",
            ));
        }
        let want = q.offset.saturating_add(q.limit);
        if want > self.broker.limits.max_limit {
            return Err(FederationError::new(
                ErrorKind::TooManyResults,
                format!(
                    "a distributed query pages through its first {} entities (offset + limit); narrow the query, or add local=true",
                    self.broker.limits.max_limit
                ),
            ));
        }
        let mut local_q = q.clone();
        local_q.offset = 0;
        local_q.limit = want;
        local_q.count = true;
        let local = self.broker.query_entities(rc, &local_q)?;
        let calls = sources.iter().map(|e| {
            let attrs = narrowed_attrs(&e.reg, q.attrs.as_deref(), ld);
            let mut query: Vec<(String, String)> = Vec::new();
            let p = |k: &str, v: &Option<String>, out: &mut Vec<(String, String)>| {
                if let Some(v) = v {
                    out.push((k.to_string(), v.clone()));
                }
            };
            let ids = held_ids(&e.reg, q).or_else(|| params.id.clone());
            p("id", &ids, &mut query);
            p("type", &params.type_, &mut query);
            p("idPattern", &params.id_pattern, &mut query);
            p("attrs", &attrs, &mut query);
            p("q", &params.q, &mut query);
            p("georel", &params.georel, &mut query);
            p("geometry", &params.geometry, &mut query);
            let coords = params.coordinates.as_ref().map(|c| match c {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            p("coordinates", &coords, &mut query);
            p("geoproperty", &params.geoproperty, &mut query);
            p("scopeQ", &params.scope_q, &mut query);
            query.push(("limit".into(), want.max(1).to_string()));
            query.push(("count".into(), "true".into()));
            if e.reg.allows("queryEntity") {
                self.ask(e, "/ngsi-ld/v1/entities", query, ld, inc)
            } else {
                // A source that only takes batch queries gets the same as a Query.
                self.ask(e, BATCH_QUERY, query, ld, inc)
            }
        });
        let answers = futures::future::join_all(calls).await;
        let mut warnings = Vec::new();
        let mut fetched = vec![(
            local
                .entities
                .iter()
                .map(|e| (**e).clone())
                .collect::<Vec<_>>(),
            local.total,
            false,
        )];
        let mut more = local.has_more;
        let mut hidden = 0usize;
        for a in answers {
            match a {
                Ok(Some(mut a)) => {
                    if a.count.is_some_and(|c| c > a.entities.len()) || a.entities.len() > want {
                        more = true;
                    }
                    a.entities.truncate(want);
                    // Remote entities pass the caller's view before merging, as the
                    // local ones already did (a masked value is never masked twice).
                    let seen = self.seen(rc, a.entities);
                    hidden += seen.1;
                    fetched.push((seen.0, a.count, a.auxiliary));
                }
                Ok(None) => {}
                Err(w) => warnings.push(w),
            }
        }
        let counted: usize = fetched.iter().map(|(es, c, _)| c.unwrap_or(es.len())).sum();
        let fetched_len: usize = fetched.iter().map(|(es, _, _)| es.len()).sum();
        let merged = merge(fetched);
        let duplicates = fetched_len - merged.len();
        let merged: Vec<Arc<Entity>> = merged.into_iter().map(Arc::new).collect();
        let has_more = more || merged.len() > want;
        let total = q
            .count
            .then(|| counted.saturating_sub(duplicates).saturating_sub(hidden));
        let entities: Vec<Arc<Entity>> = merged.into_iter().skip(q.offset).take(q.limit).collect();
        Ok(Forwarded {
            value: QueryPage {
                entities,
                total,
                has_more,
                offset: q.offset,
                limit: q.limit,
            },
            warnings,
        })
    }

    /// `GET /entities/{id}` across this broker and the matching context sources: the
    /// entity as merged from every place that holds part of it (404 when none does).
    pub async fn retrieve_entity(
        &self,
        rc: &citybrain_access::RequestContext,
        id: &str,
        attrs: Option<&[String]>,
        ld: &JsonLdContext,
        inc: &Incoming,
    ) -> Result<Forwarded<Arc<Entity>>> {
        if inc.local || !self.has_registrations(&rc.tenant) {
            return Ok(Forwarded {
                value: self.broker.retrieve_entity(rc, id)?,
                warnings: Vec::new(),
            });
        }
        let local = match self.broker.retrieve_entity(rc, id) {
            Ok(e) => Some(e),
            Err(e) if e_kind(&e) == ErrorKind::ResourceNotFound => None,
            Err(e) => return Err(e.into()),
        };
        let local_types: Vec<Arc<str>> =
            local.as_ref().map(|e| e.types.clone()).unwrap_or_default();
        let sources = self.sources(
            &rc.tenant,
            &["retrieveEntity", "queryEntity", "queryBatch"],
            |r| {
                r.infos.iter().any(|i| {
                    let held = i
                        .entities
                        .as_ref()
                        .is_none_or(|es| es.iter().any(|ei| ei.covers(id, &local_types)));
                    held && attrs.is_none_or(|a| i.has_any(a))
                })
            },
        );
        if sources.is_empty() {
            return local
                .map(|e| Forwarded {
                    value: e,
                    warnings: Vec::new(),
                })
                .ok_or_else(|| FederationError::not_found(format!("entity '{id}' not found")));
        }
        self.check_loop(&rc.tenant, inc)?;
        let path = format!("/ngsi-ld/v1/entities/{}", encode(id));
        let calls = sources.iter().map(|e| {
            let mut query = Vec::new();
            if let Some(a) = narrowed_attrs(&e.reg, attrs, ld) {
                query.push(("attrs".to_string(), a));
            }
            if e.reg.allows("retrieveEntity") {
                return self.ask(e, &path, query, ld, inc);
            }
            // A source that only answers queries is asked for the entity by id (with
            // the types it may hold it as: a query names a type).
            query.push(("id".to_string(), id.to_string()));
            let types: Vec<String> = if local_types.is_empty() {
                e.reg
                    .infos
                    .iter()
                    .flat_map(|i| i.entities.iter().flatten())
                    .filter(|ei| ei.covers(id, &[]))
                    .flat_map(|ei| ei.types.iter().map(|t| ld.compact(t)))
                    .collect()
            } else {
                local_types.iter().map(|t| ld.compact(t)).collect()
            };
            if !types.is_empty() {
                query.push(("type".to_string(), types.join(",")));
            }
            let path = if e.reg.allows("queryEntity") {
                "/ngsi-ld/v1/entities"
            } else {
                BATCH_QUERY
            };
            self.ask(e, path, query, ld, inc)
        });
        let answers = futures::future::join_all(calls).await;
        let mut warnings = Vec::new();
        let mut fetched = vec![(
            local.iter().map(|e| (**e).clone()).collect::<Vec<_>>(),
            None,
            false,
        )];
        for a in answers {
            match a {
                Ok(Some(a)) => {
                    let es = a
                        .entities
                        .into_iter()
                        .filter(|e| e.id == id)
                        .take(1)
                        .collect();
                    fetched.push((self.seen(rc, es).0, None, a.auxiliary));
                }
                Ok(None) => {}
                Err(w) => warnings.push(w),
            }
        }
        let seen = merge(fetched).into_iter().next().map(Arc::new);
        match seen {
            Some(e) => Ok(Forwarded { value: e, warnings }),
            None => Err(
                FederationError::not_found(format!("entity '{id}' not found"))
                    .with_warnings(warnings),
            ),
        }
    }

    /// Sends one GET to a source. `Ok(None)`: the source has nothing (404, or a loop
    /// it refused); `Err`: the warning naming its failure.
    async fn ask(
        &self,
        e: &Entry,
        path: &str,
        mut query: Vec<(String, String)>,
        ld: &JsonLdContext,
        inc: &Incoming,
    ) -> std::result::Result<Option<Answer>, Warning> {
        let out = self.outgoing(e, inc)?;
        let now = self.broker.clock().now();
        if e.reg.management.local_only {
            query.push(("local".into(), "true".into()));
        }
        if out.expand {
            for (k, v) in query.iter_mut() {
                if matches!(k.as_str(), "type" | "attrs") && !v.contains([';', '|', '(', ')']) {
                    *v = v
                        .split(',')
                        .map(|t| ld.expand(t))
                        .collect::<Vec<_>>()
                        .join(",");
                }
            }
        }
        let url = format!("{}{}", e.reg.endpoint, path);
        let mut req = if path == BATCH_QUERY {
            let (url_part, body) = query_body(&query);
            self.client
                .post(url)
                .query(&url_part)
                .header("Content-Type", "application/json")
                .body(body.to_string())
        } else {
            self.client.get(url).query(&query)
        };
        // A source that wants another media type is asked in it (JSON-LD reads as
        // JSON; its @context is dropped).
        req = req.headers(out.headers.clone()).header(
            "Accept",
            out.accept.as_deref().unwrap_or("application/json"),
        );
        if let Some(l) = out.link_header() {
            req = req.header("Link", l);
        }
        let timeout = out.timeout;
        let outcome = tokio::time::timeout(timeout, async {
            let resp = req
                .send()
                .await
                .map_err(|err| (199, format!("no answer: {}", err.without_url())))?;
            let status = resp.status();
            let count = resp
                .headers()
                .get("ngsild-results-count")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            let mut resp = resp;
            let mut body = Vec::new();
            while let Some(chunk) = resp
                .chunk()
                .await
                .map_err(|err| (199, format!("answer cut: {}", err.without_url())))?
            {
                if body.len() + chunk.len() > MAX_ANSWER {
                    return Err((111, format!("answer larger than {MAX_ANSWER} bytes")));
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, (u16, String)>((status, count, body))
        })
        .await
        .unwrap_or_else(|_| Err((199, format!("no answer within {} ms", timeout.as_millis()))));
        let fail = |code: u16, text: String| {
            let w = warning(e, code, text);
            self.record(e, now, Err(&w));
            w
        };
        let (status, count, body) = outcome.map_err(|(c, t)| fail(c, t))?;
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::LOOP_DETECTED
        {
            self.record(e, now, Ok(()));
            return Ok(None);
        }
        if !status.is_success() {
            return Err(fail(299, format!("answered {status}")));
        }
        // The answer reads with the context the source was told: the client's, or
        // (when it differs) that one, or the core context when none was named.
        let theirs;
        let ctx: &JsonLdContext = match (&out.link, out.expand) {
            (_, false) => ld,
            (Some(l), true) => {
                theirs = self
                    .broker
                    .contexts
                    .resolve(Some(&Value::String(l.clone())))
                    .await
                    .map_err(|err| {
                        fail(
                            111,
                            format!(
                                "its @context: {}",
                                citybrain_model::ErrorCode::public_detail(&err)
                            ),
                        )
                    })?;
                &theirs
            }
            (None, true) => {
                theirs = JsonLdContext::core();
                &theirs
            }
        };
        let entities = parse_entities(&body, ctx, now).map_err(|why| fail(111, why))?;
        self.record(e, now, Ok(()));
        Ok(Some(Answer {
            entities,
            count,
            auxiliary: e.reg.mode == Mode::Auxiliary,
        }))
    }
}

fn e_kind(e: &citybrain_broker::BrokerError) -> ErrorKind {
    citybrain_model::ErrorCode::kind(e)
}

/// The entity ids a registration holds of what the query asks, when every matching
/// `information` entry names its entities by id (an exclusive registration, say): the
/// source is asked for those only. `None`: the query's own `id`, if any.
fn held_ids(reg: &Registration, q: &EntityQuery) -> Option<String> {
    let mut ids: Vec<&str> = Vec::new();
    for i in &reg.infos {
        if !crate::discovery::entities_match(
            i,
            q.types.as_ref(),
            q.ids.as_deref(),
            q.id_pattern.as_ref(),
            true,
        ) {
            continue;
        }
        for ei in i.entities.as_ref()? {
            let id = ei.id.as_deref()?;
            if q.ids
                .as_ref()
                .is_none_or(|asked| asked.iter().any(|a| a == id))
            {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    (!ids.is_empty()).then(|| ids.join(","))
}

/// The attributes to ask a source for: those asked that it registers, or all it
/// registers when none were asked (compacted with the request's context); `None`
/// when it registers any attribute and none were asked.
fn narrowed_attrs(
    reg: &Registration,
    asked: Option<&[String]>,
    ld: &JsonLdContext,
) -> Option<String> {
    let registered: Option<Vec<&str>> = reg.infos.iter().try_fold(Vec::new(), |mut acc, i| {
        acc.extend(i.attributes()?);
        Some(acc)
    });
    let names: Vec<String> = match (asked, registered) {
        (None, None) => return None,
        (Some(a), None) => a.to_vec(),
        (None, Some(r)) => r.iter().map(|s| s.to_string()).collect(),
        (Some(a), Some(r)) => a
            .iter()
            .filter(|n| r.contains(&n.as_str()))
            .cloned()
            .collect(),
    };
    let mut out: Vec<String> = names.iter().map(|n| ld.compact(n)).collect();
    out.dedup();
    (!out.is_empty()).then(|| out.join(","))
}

/// A source's payload as entities: an array of entities, or one entity.
fn parse_entities(
    body: &[u8],
    ld: &JsonLdContext,
    now: chrono::DateTime<chrono::Utc>,
) -> std::result::Result<Vec<Entity>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let items = match v {
        Value::Array(a) => a,
        o @ Value::Object(_) => vec![o],
        _ => return Err("not an entity or a list of entities".into()),
    };
    items
        .into_iter()
        .map(|i| {
            let Value::Object(mut m) = i else {
                return Err("a list item is not an entity".to_string());
            };
            m.remove("@context");
            parse_entity(&m, ld, now).map_err(|e| format!("not an NGSI-LD entity: {}", e.detail))
        })
        .collect()
}

/// Joins the entities of several places (the first is this broker's), each list in
/// its place's order; see the module's rules.
fn merge(places: Vec<(Vec<Entity>, Option<usize>, bool)>) -> Vec<Entity> {
    let mut order: Vec<Entity> = Vec::new();
    let mut at: HashMap<String, usize> = HashMap::new();
    for (entities, _, auxiliary) in places {
        for e in entities {
            match at.get(&e.id) {
                None => {
                    at.insert(e.id.clone(), order.len());
                    order.push(e);
                }
                Some(&i) => join_into(&mut order[i], e, auxiliary),
            }
        }
    }
    order
}

fn join_into(into: &mut Entity, from: Entity, auxiliary: bool) {
    for t in from.types {
        if !into.types.contains(&t) {
            into.types.push(t);
        }
    }
    for (name, instances) in from.attrs {
        let Some(mine) = into.attr_mut(&name) else {
            into.attrs.push((name, instances));
            continue;
        };
        for inst in instances {
            match mine
                .iter_mut()
                .find(|m| m.dataset_id() == inst.dataset_id())
            {
                None => mine.push(inst),
                Some(m) => {
                    let newer = match (m.observed_at, inst.observed_at) {
                        (Some(a), Some(b)) => b > a,
                        (None, Some(_)) => true,
                        _ => false,
                    };
                    if newer && !auxiliary {
                        *m = inst;
                    }
                }
            }
        }
    }
}

pub(crate) fn encode(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl FederationError {
    /// Keeps the sources' warnings with an error answer (a retrieval that found
    /// nothing because a source failed).
    pub fn with_warnings(self, warnings: Vec<Warning>) -> FederationError {
        if warnings.is_empty() {
            return self;
        }
        FederationError::Warned(Box::new(self), warnings)
    }

    /// The sources' warnings an error answer carries.
    pub fn warnings(&self) -> &[Warning] {
        match self {
            FederationError::Warned(_, w) => w,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    fn entity(v: Value) -> Entity {
        let Value::Object(m) = v else { panic!() };
        parse_entity(&m, &JsonLdContext::core(), chrono::DateTime::UNIX_EPOCH).unwrap()
    }

    #[test]
    fn merge_joins_attributes_and_keeps_the_latest_observation() {
        let local = entity(json!({"id": "urn:a", "type": "V",
            "speed": {"type": "Property", "value": 10, "observedAt": "2026-01-01T00:00:00Z"},
            "name": {"type": "Property", "value": "local"}}));
        let remote = entity(json!({"id": "urn:a", "type": "W",
            "speed": {"type": "Property", "value": 20, "observedAt": "2026-01-01T00:01:00Z"},
            "name": {"type": "Property", "value": "remote"},
            "fuel": {"type": "Property", "value": 3}}));
        let other = entity(json!({"id": "urn:b", "type": "V"}));
        let aux = entity(json!({"id": "urn:a", "type": "V",
            "speed": {"type": "Property", "value": 99, "observedAt": "2027-01-01T00:00:00Z"},
            "colour": {"type": "Property", "value": "red"}}));
        let m = merge(vec![
            (vec![local], None, false),
            (vec![remote, other], None, false),
            (vec![aux], None, true),
        ]);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].id, "urn:a");
        assert_eq!(m[1].id, "urn:b");
        let core = JsonLdContext::core();
        let value = |name: &str| {
            let a = &m[0].attr(&core.expand(name)).unwrap()[0];
            citybrain_model::render::content(a, &core)
        };
        assert_eq!(value("speed"), json!(20), "the later observation wins");
        assert_eq!(
            value("name"),
            json!("local"),
            "without observedAt the first place wins"
        );
        assert_eq!(value("fuel"), json!(3));
        assert_eq!(value("colour"), json!("red"), "auxiliary fills gaps");
        assert_eq!(m[0].types.len(), 2);
    }

    #[test]
    fn warnings_are_one_header_value() {
        let w = Warning {
            code: 299,
            agent: "http://a b:1".into(),
            text: "urn:r: answered \"403\"\n".into(),
        };
        assert_eq!(
            w.header_value(),
            "299 http://ab:1 \"urn:r: answered '403''\""
        );
    }

    #[test]
    fn ids_are_path_encoded() {
        assert_eq!(encode("urn:ngsi-ld:V:1"), "urn:ngsi-ld:V:1");
        assert_eq!(encode("urn:a/b c#"), "urn:a%2Fb%20c%23");
    }
}
