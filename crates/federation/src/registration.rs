//! A context source registration (NGSI-LD 1.8, 5.2.9): validation of the JSON form and
//! the compiled form that discovery, subscriptions and forwarding match on.
//!
//! The registration is kept as the client wrote it (its members in their order, its
//! date-times as written) and only its terms are compacted again for a reader: entity
//! types, attribute names and the names of the context source's own properties.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use citybrain_broker::query::TypeExpr;
use citybrain_model::entity::parse_entity;
use citybrain_model::time::parse_datetime;
use citybrain_model::uri::is_absolute_uri;
use citybrain_model::{Entity, JsonLdContext};
use regex::Regex;
use serde_json::{json, Map, Value};

use crate::error::{FederationError, Result};

/// The registration's `type`.
pub const TYPE: &str = "ContextSourceRegistration";

/// How the registered source relates to the local data (4.3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The source holds more of the same: local and remote answers are merged.
    Inclusive,
    /// The source alone holds the registered attributes of the registered entity.
    Exclusive,
    /// The source holds the registered data instead of this broker.
    Redirect,
    /// The source is read only where nothing else has the data; never written to.
    Auxiliary,
}

impl Mode {
    fn parse(v: Option<&Value>) -> Result<Mode> {
        Ok(match v.map(|v| v.as_str()) {
            None => Mode::Inclusive,
            Some(Some("inclusive")) => Mode::Inclusive,
            Some(Some("exclusive")) => Mode::Exclusive,
            Some(Some("redirect")) => Mode::Redirect,
            Some(Some("auxiliary")) => Mode::Auxiliary,
            Some(_) => {
                return Err(FederationError::bad_data(
                    "'mode' must be one of inclusive, exclusive, redirect, auxiliary",
                ))
            }
        })
    }
}

/// Every operation a registration may name (NGSI-LD 1.8, table 4.20-1).
const OPERATIONS: &[&str] = &[
    "createEntity",
    "updateEntity",
    "appendAttrs",
    "updateAttrs",
    "deleteAttrs",
    "deleteEntity",
    "createBatch",
    "upsertBatch",
    "updateBatch",
    "deleteBatch",
    "upsertTemporal",
    "appendAttrsTemporal",
    "deleteAttrsTemporal",
    "updateAttrsTemporal",
    "deleteAttrInstanceTemporal",
    "deleteTemporal",
    "mergeEntity",
    "replaceEntity",
    "replaceAttrs",
    "mergeBatch",
    "purgeEntity",
    "retrieveEntity",
    "queryEntity",
    "queryBatch",
    "retrieveTemporal",
    "queryTemporal",
    "retrieveEntityTypes",
    "retrieveEntityTypeDetails",
    "retrieveEntityTypeInfo",
    "retrieveAttrTypes",
    "retrieveAttrTypeDetails",
    "retrieveAttrTypeInfo",
    "createSubscription",
    "updateSubscription",
    "retrieveSubscription",
    "querySubscription",
    "deleteSubscription",
    "queryEntityMap",
    "createEntityMap",
    "updateEntityMap",
    "deleteEntityMap",
    "retrieveEntityMap",
];

const DISCOVERY_OPS: &[&str] = &[
    "retrieveEntityTypes",
    "retrieveEntityTypeDetails",
    "retrieveEntityTypeInfo",
    "retrieveAttrTypes",
    "retrieveAttrTypeDetails",
    "retrieveAttrTypeInfo",
];

const SUBSCRIPTION_OPS: &[&str] = &[
    "createSubscription",
    "updateSubscription",
    "retrieveSubscription",
    "querySubscription",
    "deleteSubscription",
];

/// The operations of a group name (4.20), or the one operation named.
fn expand_operation(name: &str) -> Option<Vec<&'static str>> {
    let group: Vec<&'static str> = match name {
        "federationOps" => [
            &[
                "retrieveEntity",
                "queryEntity",
                "queryBatch",
                "retrieveTemporal",
                "queryTemporal",
            ][..],
            DISCOVERY_OPS,
            SUBSCRIPTION_OPS,
        ]
        .concat(),
        "updateOps" => vec![
            "updateEntity",
            "updateAttrs",
            "replaceEntity",
            "replaceAttrs",
        ],
        "retrieveOps" => vec!["retrieveEntity", "queryEntity"],
        "redirectionOps" => [
            &[
                "createEntity",
                "updateEntity",
                "appendAttrs",
                "updateAttrs",
                "deleteAttrs",
                "deleteEntity",
                "mergeEntity",
                "replaceEntity",
                "replaceAttrs",
                "retrieveEntity",
                "queryEntity",
            ][..],
            DISCOVERY_OPS,
            SUBSCRIPTION_OPS,
        ]
        .concat(),
        other => vec![*OPERATIONS.iter().find(|o| **o == other)?],
    };
    Some(group)
}

/// An operation writes no entity data (what an auxiliary source may be asked:
/// reads, and subscriptions, which `federationOps` names too).
fn reads_only(op: &str) -> bool {
    op.starts_with("retrieve") || op.starts_with("query") || SUBSCRIPTION_OPS.contains(&op)
}

/// One `entities` entry of a `RegistrationInfo`.
#[derive(Debug, Clone)]
pub struct EntityInfo {
    pub id: Option<String>,
    pub id_pattern: Option<Regex>,
    /// Expanded type IRIs (any of them).
    pub types: Vec<String>,
}

impl EntityInfo {
    /// Whether an entity of these types and this id may be held by the source.
    pub fn covers(&self, id: &str, types: &[Arc<str>]) -> bool {
        (types.is_empty() || types.iter().any(|t| self.types.iter().any(|s| s == &**t)))
            && self.id.as_ref().is_none_or(|i| i == id)
            && self.id_pattern.as_ref().is_none_or(|r| r.is_match(id))
    }
}

/// One `information` entry.
#[derive(Debug, Clone)]
pub struct RegInfo {
    /// `None`: any entity.
    pub entities: Option<Vec<EntityInfo>>,
    /// Expanded attribute names; `None`: any attribute.
    pub properties: Option<Vec<String>>,
    pub relationships: Option<Vec<String>>,
}

impl RegInfo {
    /// The attribute names the entry registers; `None`: any attribute.
    pub fn attributes(&self) -> Option<Vec<&str>> {
        if self.properties.is_none() && self.relationships.is_none() {
            return None;
        }
        Some(
            self.properties
                .iter()
                .chain(&self.relationships)
                .flatten()
                .map(String::as_str)
                .collect(),
        )
    }

    /// Whether the entry registers one of `attrs` (every one when it names none).
    pub fn has_any(&self, attrs: &[String]) -> bool {
        self.attributes()
            .is_none_or(|mine| attrs.iter().any(|a| mine.contains(&a.as_str())))
    }
}

/// `observationInterval` / `managementInterval`.
#[derive(Debug, Clone, Copy)]
pub struct Interval {
    pub start: DateTime<Utc>,
    pub end: Option<DateTime<Utc>>,
}

/// `management` (5.2.9): how the source is to be called.
#[derive(Debug, Clone, Copy, Default)]
pub struct Management {
    pub local_only: bool,
    pub timeout: Option<Duration>,
    pub cooldown: Option<Duration>,
}

/// A registration compiled for matching and forwarding.
#[derive(Debug, Clone)]
pub struct Registration {
    pub tenant: String,
    pub id: String,
    /// The registration as the client wrote it (without `@context`).
    pub body: Map<String, Value>,
    pub context_source: Option<Value>,
    pub ld: Arc<JsonLdContext>,
    pub infos: Vec<RegInfo>,
    pub mode: Mode,
    pub operations: BTreeSet<&'static str>,
    pub endpoint: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub observation: Option<Interval>,
    pub management_interval: Option<Interval>,
    pub management: Management,
    /// `contextSourceInfo`: headers for the requests sent to the source.
    pub source_info: Vec<(String, String)>,
    /// The tenant at the source (`tenant`), sent as `NGSILD-Tenant`.
    pub remote_tenant: Option<String>,
    /// The registration as an entity of its own properties, `location` and `scope`:
    /// what `q`, `csf`, geo-queries and `scopeQ` are evaluated on.
    pub doc: Entity,
}

/// Members the broker sets; a client's values for them are dropped.
const READ_ONLY: &[&str] = &[
    "createdAt",
    "modifiedAt",
    "status",
    "timesSent",
    "timesFailed",
    "lastSuccess",
    "lastFailure",
];

/// Members with a meaning of their own (not context source properties).
const KNOWN: &[&str] = &[
    "id",
    "type",
    "registrationName",
    "description",
    "information",
    "tenant",
    "observationInterval",
    "managementInterval",
    "location",
    "observationSpace",
    "operationSpace",
    "expiresAt",
    "expires",
    "endpoint",
    "contextSourceInfo",
    "scope",
    "mode",
    "operations",
    "refreshRate",
    "management",
    "localOnly",
];

fn strings(v: &Value, what: &str) -> Result<Vec<String>> {
    let items = v
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| FederationError::bad_data(format!("'{what}' must be a non-empty array")))?;
    items
        .iter()
        .map(|i| {
            i.as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| {
                    FederationError::bad_data(format!("'{what}' must list non-empty strings"))
                })
        })
        .collect()
}

fn parse_names(v: Option<&Value>, what: &str, ld: &JsonLdContext) -> Result<Option<Vec<String>>> {
    v.map(|v| {
        strings(v, what)?
            .into_iter()
            .map(|n| {
                citybrain_model::entity::validate_name("attribute", &n)?;
                Ok(ld.expand(&n))
            })
            .collect()
    })
    .transpose()
}

fn parse_entity_info(v: &Value, ld: &JsonLdContext) -> Result<EntityInfo> {
    let m = v.as_object().ok_or_else(|| {
        FederationError::bad_data("'information[].entities' entries must be objects")
    })?;
    let types = match m.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(v @ Value::Array(_)) => strings(v, "information[].entities[].type")?,
        _ => {
            return Err(FederationError::bad_data(
                "'information[].entities[].type' is required (a type name or a list of them)",
            ))
        }
    };
    let mut expanded = Vec::new();
    for t in types {
        // A type expression is not allowed here: one name each.
        let e = TypeExpr::parse(&t, ld)?;
        match e.all_types().as_slice() {
            [one] if e.0.len() == 1 => expanded.push(one.clone()),
            _ => {
                return Err(FederationError::bad_data(format!(
                    "'information[].entities[].type' '{t}' must be one type name"
                )))
            }
        }
    }
    let id = match m.get("id") {
        None => None,
        Some(Value::String(s)) if is_absolute_uri(s) => Some(s.clone()),
        Some(other) => {
            return Err(FederationError::bad_data(format!(
                "'information[].entities[].id' must be a URI, got {other}"
            )))
        }
    };
    let id_pattern = match m.get("idPattern") {
        None => None,
        Some(Value::String(p)) => Some(Regex::new(p).map_err(|e| {
            FederationError::bad_data(format!("'information[].entities[].idPattern': {e}"))
        })?),
        Some(_) => {
            return Err(FederationError::bad_data(
                "'information[].entities[].idPattern' must be a string",
            ))
        }
    };
    Ok(EntityInfo {
        id,
        id_pattern,
        types: expanded,
    })
}

fn parse_info(v: &Value, ld: &JsonLdContext) -> Result<RegInfo> {
    let m = v
        .as_object()
        .ok_or_else(|| FederationError::bad_data("'information' entries must be objects"))?;
    let entities = m
        .get("entities")
        .map(|v| {
            v.as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| {
                    FederationError::bad_data("'information[].entities' must be a non-empty array")
                })?
                .iter()
                .map(|e| parse_entity_info(e, ld))
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    let properties = parse_names(m.get("propertyNames"), "information[].propertyNames", ld)?;
    let relationships = parse_names(
        m.get("relationshipNames"),
        "information[].relationshipNames",
        ld,
    )?;
    if entities.is_none() && properties.is_none() && relationships.is_none() {
        return Err(FederationError::bad_data(
            "an 'information' entry needs entities, propertyNames or relationshipNames",
        ));
    }
    if let Some(bad) = m.keys().find(|k| {
        !matches!(
            k.as_str(),
            "entities" | "propertyNames" | "relationshipNames"
        )
    }) {
        return Err(FederationError::bad_data(format!(
            "unknown member '{bad}' in an 'information' entry"
        )));
    }
    Ok(RegInfo {
        entities,
        properties,
        relationships,
    })
}

fn parse_interval(v: Option<&Value>, what: &str) -> Result<Option<Interval>> {
    let Some(v) = v else { return Ok(None) };
    let m = v.as_object().ok_or_else(|| {
        FederationError::bad_data(format!("'{what}' must be an object with startAt"))
    })?;
    let time = |k: &str| -> Result<Option<DateTime<Utc>>> {
        m.get(k)
            .map(|v| {
                v.as_str().and_then(parse_datetime).ok_or_else(|| {
                    FederationError::bad_data(format!("'{what}.{k}' must be a DateTime"))
                })
            })
            .transpose()
    };
    let start = time("startAt")?
        .ok_or_else(|| FederationError::bad_data(format!("'{what}.startAt' is required")))?;
    let end = time("endAt")?;
    if end.is_some_and(|e| e < start) {
        return Err(FederationError::bad_data(format!(
            "'{what}.endAt' is before its startAt"
        )));
    }
    Ok(Some(Interval { start, end }))
}

fn parse_management(v: Option<&Value>) -> Result<Management> {
    let Some(v) = v else {
        return Ok(Management::default());
    };
    let m = v
        .as_object()
        .ok_or_else(|| FederationError::bad_data("'management' must be an object"))?;
    let mut out = Management::default();
    for (k, v) in m {
        match k.as_str() {
            "localOnly" => {
                out.local_only = v.as_bool().ok_or_else(|| {
                    FederationError::bad_data("'management.localOnly' must be a boolean")
                })?
            }
            "timeout" | "cooldown" => {
                let ms = v
                    .as_f64()
                    .filter(|n| *n > 0.0 && n.is_finite() && *n <= 86_400_000.0)
                    .ok_or_else(|| {
                        FederationError::bad_data(format!(
                            "'management.{k}' must be a positive number of milliseconds"
                        ))
                    })?;
                let d = Duration::from_secs_f64(ms / 1000.0);
                if k == "timeout" {
                    out.timeout = Some(d);
                } else {
                    out.cooldown = Some(d);
                }
            }
            "cacheDuration" => {
                let ok = v.as_str().is_some_and(|s| {
                    citybrain_model::duration::IsoDuration::parse("duration", s).is_ok()
                });
                if !ok {
                    return Err(FederationError::bad_data(
                        "'management.cacheDuration' must be an ISO 8601 duration",
                    ));
                }
            }
            other => {
                return Err(FederationError::bad_data(format!(
                    "unknown member '{other}' in 'management'"
                )))
            }
        }
    }
    Ok(out)
}

fn parse_source_info(v: Option<&Value>) -> Result<Vec<(String, String)>> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let items = v
        .as_array()
        .ok_or_else(|| FederationError::bad_data("'contextSourceInfo' must be an array"))?;
    items
        .iter()
        .map(|kv| match (kv.get("key"), kv.get("value")) {
            (Some(Value::String(k)), Some(Value::String(v))) if !k.is_empty() => {
                Ok((k.clone(), v.clone()))
            }
            _ => Err(FederationError::bad_data(
                "'contextSourceInfo' entries need a string 'key' and a string 'value'",
            )),
        })
        .collect()
}

fn parse_scope(v: Option<&Value>) -> Result<()> {
    let ok = |s: &str| s.starts_with('/') && !s.contains(char::is_whitespace);
    match v {
        None => Ok(()),
        Some(Value::String(s)) if ok(s) => Ok(()),
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(|s| s.as_str().is_some_and(ok)) => {
            Ok(())
        }
        Some(_) => Err(FederationError::bad_data(
            "'scope' must be a scope ('/a/b') or a list of them",
        )),
    }
}

/// The registration's own properties, `location` and `scope` as an entity (see
/// [`Registration::doc`]).
fn doc_entity(
    id: &str,
    body: &Map<String, Value>,
    ld: &JsonLdContext,
    now: DateTime<Utc>,
) -> Result<Entity> {
    let mut m = Map::new();
    m.insert("id".into(), Value::String(id.to_string()));
    m.insert("type".into(), Value::String(TYPE.into()));
    for (k, v) in body {
        match k.as_str() {
            "location" | "observationSpace" | "operationSpace" => {
                m.insert(k.clone(), json!({"type": "GeoProperty", "value": v}));
            }
            "scope" => {
                m.insert(k.clone(), v.clone());
            }
            "endpoint" | "registrationName" | "description" | "mode" | "tenant" => {
                m.insert(k.clone(), json!({"type": "Property", "value": v}));
            }
            k if KNOWN.contains(&k) => {}
            _ => {
                let attr = match v {
                    Value::Object(o) if o.contains_key("type") => v.clone(),
                    _ => json!({"type": "Property", "value": v}),
                };
                m.insert(k.clone(), attr);
            }
        }
    }
    parse_entity(&m, ld, now)
        .map_err(|e| FederationError::bad_data(format!("a context source property: {}", e.detail)))
}

impl Registration {
    /// Validates a registration. With `now` (a client's request), an `expiresAt` in
    /// the past is refused; without (loading what was stored), it is kept.
    pub fn compile(
        tenant: &str,
        id: &str,
        mut body: Map<String, Value>,
        context_source: Option<Value>,
        ld: Arc<JsonLdContext>,
        now: Option<DateTime<Utc>>,
    ) -> Result<Registration> {
        for k in READ_ONLY {
            body.remove(*k);
        }
        match body.get("type") {
            None => {
                body.insert("type".into(), Value::String(TYPE.into()));
            }
            Some(Value::String(t)) if t == TYPE || ld.expand(t) == ld.expand(TYPE) => {}
            Some(other) => {
                return Err(FederationError::bad_data(format!(
                    "'type' must be {TYPE}, got {other}"
                )))
            }
        }
        let infos = match body.get("information") {
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .map(|i| parse_info(i, &ld))
                .collect::<Result<Vec<_>>>()?,
            _ => {
                return Err(FederationError::bad_data(
                    "'information' is required: a non-empty array of RegistrationInfo",
                ))
            }
        };
        let endpoint = match body.get("endpoint") {
            Some(Value::String(s)) => endpoint_base(s)?,
            Some(_) => {
                return Err(FederationError::bad_data(
                    "'endpoint' must be an absolute URI (http://host:port)",
                ))
            }
            None => return Err(FederationError::bad_data("'endpoint' is required")),
        };
        let mode = Mode::parse(body.get("mode"))?;
        let mut operations = BTreeSet::new();
        match body.get("operations") {
            None => {
                operations.extend(expand_operation("federationOps").unwrap_or_default());
            }
            Some(v) => {
                for name in strings(v, "operations")? {
                    let ops = expand_operation(&name).ok_or_else(|| {
                        FederationError::bad_data(format!("unknown operation '{name}'"))
                    })?;
                    operations.extend(ops);
                }
            }
        }
        if mode == Mode::Auxiliary {
            if let Some(op) = operations.iter().find(|o| !reads_only(o)) {
                return Err(FederationError::bad_data(format!(
                    "an auxiliary registration is only read: '{op}' is not allowed"
                )));
            }
        }
        if mode == Mode::Exclusive {
            for info in &infos {
                let named = info
                    .entities
                    .as_ref()
                    .is_some_and(|es| es.iter().all(|e| e.id.is_some() && e.id_pattern.is_none()));
                if !named || info.attributes().is_none() {
                    return Err(FederationError::bad_data(
                        "an exclusive registration names entities by id and their propertyNames or relationshipNames",
                    ));
                }
            }
        }
        let expires_at = match body.get("expiresAt").or_else(|| body.get("expires")) {
            None => None,
            Some(v) => {
                let t = v
                    .as_str()
                    .and_then(parse_datetime)
                    .ok_or_else(|| FederationError::bad_data("'expiresAt' must be a DateTime"))?;
                if now.is_some_and(|now| t <= now) {
                    return Err(FederationError::bad_data("'expiresAt' is in the past"));
                }
                Some(t)
            }
        };
        let observation = parse_interval(body.get("observationInterval"), "observationInterval")?;
        let management_interval =
            parse_interval(body.get("managementInterval"), "managementInterval")?;
        let mut management = parse_management(body.get("management"))?;
        // Some clients put `localOnly` beside `management` rather than in it.
        match body.get("localOnly") {
            None => {}
            Some(Value::Bool(b)) => management.local_only |= b,
            Some(_) => return Err(FederationError::bad_data("'localOnly' must be a boolean")),
        }
        let source_info = parse_source_info(body.get("contextSourceInfo"))?;
        parse_scope(body.get("scope"))?;
        let remote_tenant = match body.get("tenant") {
            None => None,
            Some(Value::String(t)) => {
                citybrain_access::validate_tenant(t)?;
                Some(t.clone())
            }
            Some(_) => return Err(FederationError::bad_data("'tenant' must be a string")),
        };
        for (k, what) in [
            ("registrationName", "a string"),
            ("description", "a string"),
            ("refreshRate", "an ISO 8601 duration"),
        ] {
            if let Some(v) = body.get(k) {
                let ok = v.as_str().is_some_and(|s| {
                    k != "refreshRate"
                        || citybrain_model::duration::IsoDuration::parse("duration", s).is_ok()
                });
                if !ok {
                    return Err(FederationError::bad_data(format!("'{k}' must be {what}")));
                }
            }
        }
        let doc = doc_entity(id, &body, &ld, now.unwrap_or_default())?;
        Ok(Registration {
            tenant: tenant.to_string(),
            id: id.to_string(),
            body,
            context_source,
            ld,
            infos,
            mode,
            operations,
            endpoint,
            expires_at,
            observation,
            management_interval,
            management,
            source_info,
            remote_tenant,
            doc,
        })
    }

    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    pub fn allows(&self, op: &str) -> bool {
        self.operations.contains(op)
    }

    /// The registration as a reader sees it: its terms compacted with `to`; only the
    /// `information` entries `keep` lets through (all with `None`).
    pub fn render(&self, to: &JsonLdContext, keep: Option<&[bool]>) -> Map<String, Value> {
        let term = |t: &str| to.compact(&self.ld.expand(t));
        let mut out = Map::new();
        for (k, v) in &self.body {
            match k.as_str() {
                "information" => {
                    let items = v.as_array().cloned().unwrap_or_default();
                    let items = items
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| keep.is_none_or(|k| k.get(*i).copied().unwrap_or(false)))
                        .map(|(_, mut info)| {
                            compact_info(&mut info, &term);
                            info
                        })
                        .collect();
                    out.insert(k.clone(), Value::Array(items));
                }
                k2 if KNOWN.contains(&k2) => {
                    out.insert(k.clone(), v.clone());
                }
                _ => {
                    out.insert(term(k), v.clone());
                }
            }
        }
        out
    }
}

/// A registration's `endpoint` as the base of the URLs requests go to: `http` or
/// `https`, a host, no credentials (they belong in `contextSourceInfo`, which is not
/// shown to every reader), no query or fragment.
fn endpoint_base(s: &str) -> Result<String> {
    let bad = |why: &str| FederationError::bad_data(format!("'endpoint' {why}: '{s}'"));
    let url =
        reqwest::Url::parse(s).map_err(|_| bad("must be an absolute URI (http://host:port)"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("must be an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("needs a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials (use contextSourceInfo)"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not carry a query or fragment"));
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// Hides the values of `contextSourceInfo` in a rendered registration (they may be
/// credentials).
pub fn redact_source_info(out: &mut Map<String, Value>) {
    if let Some(Value::Array(items)) = out.get_mut("contextSourceInfo") {
        for kv in items.iter_mut() {
            if let Some(v) = kv.get_mut("value") {
                *v = Value::String("***".into());
            }
        }
    }
}

fn compact_info(info: &mut Value, term: &dyn Fn(&str) -> String) {
    let names = |v: &mut Value| {
        if let Value::Array(items) = v {
            for i in items.iter_mut() {
                if let Some(t) = i.as_str() {
                    *i = Value::String(term(t));
                }
            }
        }
    };
    if let Some(Value::Array(es)) = info.get_mut("entities") {
        for e in es.iter_mut() {
            match e.get_mut("type") {
                Some(Value::String(t)) => *t = term(t),
                Some(v @ Value::Array(_)) => names(v),
                _ => {}
            }
        }
    }
    for k in ["propertyNames", "relationshipNames"] {
        if let Some(v) = info.get_mut(k) {
            names(v);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn compile(body: Value) -> Result<Registration> {
        let Value::Object(m) = body else { panic!() };
        Registration::compile(
            "",
            "urn:ngsi-ld:ContextSourceRegistration:1",
            m,
            None,
            JsonLdContext::core(),
            Some(now()),
        )
    }

    fn base() -> Value {
        json!({
            "type": "ContextSourceRegistration",
            "information": [{"entities": [{"type": "Vehicle"}], "propertyNames": ["speed"]}],
            "endpoint": "http://source.example:1026"
        })
    }

    #[test]
    fn defaults_and_terms() {
        let r = compile(base()).unwrap();
        assert_eq!(r.mode, Mode::Inclusive);
        assert!(r.allows("queryEntity") && r.allows("retrieveEntity"));
        assert!(!r.allows("createEntity"), "federationOps does not write");
        let info = &r.infos[0];
        assert_eq!(
            info.entities.as_ref().unwrap()[0].types,
            vec!["https://uri.etsi.org/ngsi-ld/default-context/Vehicle".to_string()]
        );
        assert!(info.has_any(&["https://uri.etsi.org/ngsi-ld/default-context/speed".into()]));
        assert!(!info.has_any(&["https://uri.etsi.org/ngsi-ld/default-context/name".into()]));
        let shown = r.render(&JsonLdContext::core(), None);
        assert_eq!(shown["information"], base()["information"]);
    }

    #[test]
    fn refusals_name_the_member() {
        let cases = [
            (json!({"information": null}), "'information'"),
            (json!({"endpoint": "not a uri"}), "'endpoint'"),
            (json!({"endpoint": "http://u:pw@dept:1026"}), "credentials"),
            (json!({"endpoint": "mqtt://dept:1883"}), "http or https"),
            (json!({"endpoint": "http://dept:1026/?a=b"}), "query"),
            (json!({"mode": "sometimes"}), "'mode'"),
            (json!({"operations": ["fly"]}), "unknown operation 'fly'"),
            (json!({"expiresAt": "2018-11-29T14:53:15Z"}), "in the past"),
            (json!({"expiresAt": "2026-13-45T00:00:00Z"}), "'expiresAt'"),
            (json!({"management": "yes"}), "'management'"),
            (
                json!({"management": {"timeout": -5}}),
                "'management.timeout'",
            ),
            (
                json!({"management": {"cooldown": 0}}),
                "'management.cooldown'",
            ),
            (
                json!({"management": {"localOnly": "yes"}}),
                "'management.localOnly'",
            ),
            (
                json!({"management": {"cacheDuration": "bogus"}}),
                "cacheDuration",
            ),
            (
                json!({"contextSourceInfo": [{"key": "a", "value": 1}]}),
                "contextSourceInfo",
            ),
            (
                json!({"contextSourceInfo": [{"key": 1, "value": "a"}]}),
                "contextSourceInfo",
            ),
            (
                json!({"contextSourceInfo": [{"key": "a"}]}),
                "contextSourceInfo",
            ),
            (json!({"type": "Building"}), "'type'"),
            (json!({"scope": "no-slash"}), "'scope'"),
            (
                json!({"observationInterval": {"startAt": "2021-01-01T00:00:00Z", "endAt": "2020-01-01T00:00:00Z"}}),
                "endAt",
            ),
            (
                json!({"mode": "auxiliary", "operations": ["updateEntity"]}),
                "auxiliary",
            ),
            (json!({"mode": "exclusive"}), "exclusive"),
            (
                json!({"information": [{"entities": [{"type": "A", "idPattern": "("}]}]}),
                "idPattern",
            ),
            (json!({"information": [{}]}), "entities, propertyNames"),
        ];
        for (patch, says) in cases {
            let mut b = base();
            for (k, v) in patch.as_object().unwrap() {
                b[k] = v.clone();
            }
            let e = compile(b.clone()).expect_err(&b.to_string());
            assert!(
                e.to_string().contains(says),
                "{b}: '{e}' should contain {says}"
            );
        }
    }

    #[test]
    fn exclusive_needs_ids_and_attributes() {
        let mut b = base();
        b["mode"] = json!("exclusive");
        b["information"] =
            json!([{"entities": [{"id": "urn:a", "type": "Vehicle"}], "propertyNames": ["speed"]}]);
        let r = compile(b).unwrap();
        assert_eq!(r.mode, Mode::Exclusive);
    }

    #[test]
    fn own_properties_are_queryable() {
        let mut b = base();
        b["csourceProperty1"] = json!("aValue");
        b["location"] = json!({"type": "Point", "coordinates": [-8.521, 41.2]});
        let r = compile(b).unwrap();
        let a = r
            .doc
            .attr("https://uri.etsi.org/ngsi-ld/default-context/csourceProperty1")
            .expect("a property");
        assert_eq!(a.len(), 1);
        assert!(r
            .doc
            .attr("https://uri.etsi.org/ngsi-ld/location")
            .is_some());
    }
}
