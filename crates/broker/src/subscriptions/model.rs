//! Subscriptions: validation of the JSON form and the compiled form used for matching.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use citybrain_model::geojson::GeoQuery;
use citybrain_model::q::Query;
use citybrain_model::render::{Format, Join, Projection};
use citybrain_model::time::parse_datetime_field;
use citybrain_model::uri::is_absolute_uri;
use citybrain_model::{Entity, JsonLdContext};
use regex::Regex;
use serde_json::{Map, Value};

use crate::error::{BrokerError, Result};
use crate::query::{geo_matches, geo_query, TypeExpr};

/// Notification triggers (clause 5.8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Triggers {
    pub entity_created: bool,
    pub entity_updated: bool,
    pub entity_deleted: bool,
    pub attribute_created: bool,
    pub attribute_updated: bool,
    pub attribute_deleted: bool,
}

impl Triggers {
    fn parse(v: Option<&Value>) -> Result<Triggers> {
        let Some(v) = v else {
            return Ok(Triggers {
                attribute_created: true,
                attribute_updated: true,
                ..Default::default()
            });
        };
        let items = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
            BrokerError::bad_data("'notificationTrigger' must be a non-empty array")
        })?;
        let mut t = Triggers::default();
        for i in items {
            match i.as_str() {
                Some("entityCreated") => t.entity_created = true,
                Some("entityUpdated") => t.entity_updated = true,
                Some("entityDeleted") => t.entity_deleted = true,
                Some("attributeCreated") => t.attribute_created = true,
                Some("attributeUpdated") => t.attribute_updated = true,
                Some("attributeDeleted") => t.attribute_deleted = true,
                _ => {
                    return Err(BrokerError::bad_data(format!(
                        "unknown notificationTrigger {i}"
                    )))
                }
            }
        }
        Ok(t)
    }
}

/// One entry of `entities`.
#[derive(Debug, Clone)]
pub struct Selector {
    pub id: Option<String>,
    pub id_pattern: Option<Regex>,
    pub types: TypeExpr,
}

impl Selector {
    /// A subscription's `entities` (none when absent): each with a `type`, an `id`
    /// URI or an `idPattern`, types read with `ld`.
    pub fn parse_all(v: Option<&Value>, ld: &JsonLdContext) -> Result<Vec<Selector>> {
        let Some(ents) = v else {
            return Ok(Vec::new());
        };
        let arr = ents
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| BrokerError::bad_data("'entities' must be a non-empty array"))?;
        let mut selectors = Vec::with_capacity(arr.len());
        for e in arr {
            let o = e
                .as_object()
                .ok_or_else(|| BrokerError::bad_data("'entities' items must be objects"))?;
            let ty = o
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| BrokerError::bad_data("each 'entities' item needs a 'type'"))?;
            let id = match o.get("id") {
                None => None,
                Some(Value::String(s)) if is_absolute_uri(s) => Some(s.clone()),
                Some(other) => {
                    return Err(BrokerError::bad_data(format!(
                        "'entities[].id' must be a URI, got {other}"
                    )))
                }
            };
            let id_pattern = match o.get("idPattern") {
                None => None,
                Some(Value::String(p)) => Some(
                    Regex::new(p)
                        .map_err(|e| BrokerError::bad_data(format!("invalid 'idPattern': {e}")))?,
                ),
                Some(other) => {
                    return Err(BrokerError::bad_data(format!(
                        "'idPattern' must be a string, got {other}"
                    )))
                }
            };
            selectors.push(Selector {
                id,
                id_pattern,
                types: TypeExpr::parse(ty, ld)?,
            });
        }
        Ok(selectors)
    }

    pub fn matches(&self, e: &Entity) -> bool {
        self.types.matches(e)
            && self.id.as_ref().is_none_or(|i| *i == e.id)
            && self.id_pattern.as_ref().is_none_or(|r| r.is_match(&e.id))
    }
}

/// Where and how to notify.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub uri: String,
    pub accept: String,
    pub receiver_info: Vec<(String, String)>,
    /// `notifierInfo` (MQTT endpoints: `MQTT-QoS`, `MQTT-Version`).
    pub notifier_info: Vec<(String, String)>,
}

impl Endpoint {
    pub fn is_mqtt(&self) -> bool {
        self.uri.starts_with("mqtt://")
    }

    /// QoS of MQTT notifications (`notifierInfo` `MQTT-QoS`, default 0).
    pub fn mqtt_qos(&self) -> u8 {
        self.notifier_info
            .iter()
            .find(|(k, _)| k == "MQTT-QoS")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    }
}

/// Reads a `[{"key": .., "value": ..}]` list of an endpoint.
fn key_values(
    ep: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Vec<(String, String)>, BrokerError> {
    let mut out = Vec::new();
    if let Some(ri) = ep.get(name) {
        for kv in ri
            .as_array()
            .ok_or_else(|| BrokerError::bad_data(format!("'{name}' must be an array")))?
        {
            let (Some(k), Some(v)) = (
                kv.get("key").and_then(Value::as_str),
                kv.get("value").and_then(Value::as_str),
            ) else {
                return Err(BrokerError::bad_data(format!(
                    "'{name}' entries need string 'key' and 'value'"
                )));
            };
            out.push((k.to_string(), v.to_string()));
        }
    }
    Ok(out)
}

/// Delivery status of a subscription. Saved every few seconds while it changes and
/// at shutdown (`subscription_status` documents), so counters and times survive a
/// restart; a crash loses at most the last few seconds of counting.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Status {
    pub times_sent: u64,
    pub times_failed: u64,
    pub last_notification: Option<DateTime<Utc>>,
    pub last_success: Option<DateTime<Utc>>,
    pub last_failure: Option<DateTime<Utc>>,
}

/// A subscription compiled for matching.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub tenant: String,
    pub id: String,
    /// The subscription as the client wrote it (without `@context`).
    pub body: Map<String, Value>,
    pub context_source: Option<Value>,
    pub ld: Arc<JsonLdContext>,
    pub selectors: Vec<Selector>,
    pub watched: Option<HashSet<String>>,
    pub triggers: Triggers,
    pub q: Option<Query>,
    pub geo: Option<GeoQuery>,
    pub time_interval: Option<f64>,
    pub throttling: Option<f64>,
    pub expires_at: Option<DateTime<Utc>>,
    pub is_active: bool,
    /// Which members notifications carry (`attributes`, `pick`, `omit`).
    pub projection: Projection,
    /// Only these attribute instances are notified (`datasetId`).
    pub dataset_ids: Option<Vec<Option<String>>>,
    pub show_changes: bool,
    /// Linked entities in notifications (`notification.join`, `joinLevel`).
    pub join: Join,
    pub join_level: usize,
    /// The context notifications are compacted with (`jsonldContext`, or the subscription's).
    pub notify_ld: Arc<JsonLdContext>,
    pub format: Format,
    pub sys_attrs: bool,
    pub endpoint: Endpoint,
}

/// Decodes `%XX` escapes; text that is not valid escaped UTF-8 is kept as it is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

fn positive(name: &str, v: Option<&Value>) -> Result<Option<f64>> {
    match v {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(n) if n > 0.0 && n.is_finite() => Ok(Some(n)),
            _ => Err(BrokerError::bad_data(format!(
                "'{name}' must be a positive number, got {v}"
            ))),
        },
    }
}

fn string_list(name: &str, v: &Value) -> Result<Vec<String>> {
    let a = v.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
        BrokerError::bad_data(format!("'{name}' must be a non-empty array of strings"))
    })?;
    a.iter()
        .map(|s| {
            s.as_str()
                .map(str::to_string)
                .ok_or_else(|| BrokerError::bad_data(format!("'{name}' must contain strings only")))
        })
        .collect()
}

impl Compiled {
    /// Validates and compiles a subscription body (already stripped of `@context`).
    pub fn compile(
        tenant: &str,
        id: &str,
        body: Map<String, Value>,
        context_source: Option<Value>,
        ld: Arc<JsonLdContext>,
        now: DateTime<Utc>,
        creating: bool,
    ) -> Result<Compiled> {
        match body.get("type") {
            Some(Value::String(t)) if t == "Subscription" => {}
            Some(other) => {
                return Err(BrokerError::bad_data(format!(
                    "subscription 'type' must be \"Subscription\", got {other}"
                )))
            }
            None => return Err(BrokerError::bad_data("subscription 'type' is missing")),
        }
        let selectors = Selector::parse_all(body.get("entities"), &ld)?;
        let watched = body
            .get("watchedAttributes")
            .map(|v| string_list("watchedAttributes", v))
            .transpose()?
            .map(|v| v.iter().map(|a| ld.expand(a)).collect::<HashSet<_>>());
        if selectors.is_empty() && watched.is_none() {
            return Err(BrokerError::bad_data(
                "a subscription needs 'entities' or 'watchedAttributes'",
            ));
        }
        let time_interval = positive("timeInterval", body.get("timeInterval"))?;
        let throttling = positive("throttling", body.get("throttling"))?;
        if time_interval.is_some() && watched.is_some() {
            return Err(BrokerError::bad_data(
                "'timeInterval' and 'watchedAttributes' cannot be used together",
            ));
        }
        if time_interval.is_some() && throttling.is_some() {
            return Err(BrokerError::bad_data(
                "'timeInterval' and 'throttling' cannot be used together",
            ));
        }
        let triggers = Triggers::parse(body.get("notificationTrigger"))?;
        let q = match body.get("q") {
            None => None,
            Some(Value::String(s)) => {
                // Clients percent-encode q as they would in a URL; accept both forms.
                let mut q = Query::parse(&percent_decode(s))?;
                q.resolve(&ld);
                Some(q)
            }
            Some(other) => {
                return Err(BrokerError::bad_data(format!(
                    "'q' must be a string, got {other}"
                )))
            }
        };
        let geo = match body.get("geoQ") {
            None => None,
            Some(Value::Object(g)) => geo_query(
                &ld,
                Some(
                    g.get("georel")
                        .and_then(Value::as_str)
                        .ok_or_else(|| BrokerError::bad_data("'geoQ.georel' is missing"))?,
                ),
                Some(
                    g.get("geometry")
                        .and_then(Value::as_str)
                        .ok_or_else(|| BrokerError::bad_data("'geoQ.geometry' is missing"))?,
                ),
                Some(
                    g.get("coordinates")
                        .ok_or_else(|| BrokerError::bad_data("'geoQ.coordinates' is missing"))?,
                ),
                g.get("geoproperty").and_then(Value::as_str),
            )?,
            Some(other) => {
                return Err(BrokerError::bad_data(format!(
                    "'geoQ' must be an object, got {other}"
                )))
            }
        };
        let expires_at = body
            .get("expiresAt")
            .map(|v| parse_datetime_field("expiresAt", v))
            .transpose()?;
        if creating && expires_at.is_some_and(|t| t <= now) {
            return Err(BrokerError::bad_data("'expiresAt' is in the past"));
        }
        let is_active = match body.get("isActive") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(BrokerError::bad_data(format!(
                    "'isActive' must be a boolean, got {other}"
                )))
            }
        };
        let n = body
            .get("notification")
            .and_then(Value::as_object)
            .ok_or_else(|| BrokerError::bad_data("'notification' is missing or not an object"))?;
        let notify_attrs: Option<Vec<String>> = n
            .get("attributes")
            .map(|v| string_list("notification.attributes", v))
            .transpose()?;
        let pick = n
            .get("pick")
            .map(|v| string_list("notification.pick", v))
            .transpose()?;
        let omit = n
            .get("omit")
            .map(|v| string_list("notification.omit", v))
            .transpose()?;
        if notify_attrs.is_some() && (pick.is_some() || omit.is_some()) {
            return Err(BrokerError::bad_data(
                "'notification.attributes' cannot be combined with 'pick' or 'omit'",
            ));
        }
        let parse = |k: &str,
                     v: &Option<Vec<String>>|
         -> Result<Option<Vec<citybrain_model::render::Member>>> {
            v.as_ref()
                .map(|v| {
                    citybrain_model::render::parse_members(k, &v.join(","))
                        .map_err(BrokerError::from)
                })
                .transpose()
        };
        let (pick, omit) = (parse("pick", &pick)?, parse("omit", &omit)?);
        let mut projection = Projection::from_pick_omit(pick.as_deref(), omit.as_deref(), &ld)?;
        if let Some(a) = &notify_attrs {
            projection.attrs = Some(a.iter().map(|a| ld.expand(a)).collect());
        }
        let dataset_ids = body
            .get("datasetId")
            .map(|v| string_list("datasetId", v))
            .transpose()?
            .map(|v| citybrain_model::render::parse_dataset_ids(&v));
        let show_changes = n
            .get("showChanges")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let join = Join::parse(n.get("join").and_then(Value::as_str))?;
        let level_text = n.get("joinLevel").map(|v| v.to_string());
        let join_level = Join::parse_level(level_text.as_deref())?;
        if let Some(j) = body.get("jsonldContext") {
            if !j.as_str().is_some_and(is_absolute_uri) {
                return Err(BrokerError::bad_data(format!(
                    "'jsonldContext' must be a URI, got {j}"
                )));
            }
        }
        let format = match n.get("format").and_then(Value::as_str) {
            None | Some("normalized") => Format::Normalized,
            Some("keyValues") | Some("simplified") => Format::KeyValues,
            Some("concise") => Format::Concise,
            Some(other) => {
                return Err(BrokerError::bad_data(format!(
                    "unknown notification format '{other}'"
                )))
            }
        };
        let sys_attrs = n.get("sysAttrs").and_then(Value::as_bool).unwrap_or(false);
        let ep = n
            .get("endpoint")
            .and_then(Value::as_object)
            .ok_or_else(|| BrokerError::bad_data("'notification.endpoint' is missing"))?;
        let uri = ep
            .get("uri")
            .and_then(Value::as_str)
            .ok_or_else(|| BrokerError::bad_data("'notification.endpoint.uri' is missing"))?
            .to_string();
        let uri = uri.as_str();
        if !is_absolute_uri(uri) {
            return Err(BrokerError::bad_data(format!(
                "'notification.endpoint.uri' '{uri}' is not a URI"
            )));
        }
        if uri.starts_with("mqtts://") {
            return Err(BrokerError::bad_data(format!(
                "endpoint '{uri}': mqtts (MQTT over TLS) is not supported; use mqtt:// on a trusted network or a TLS-terminating proxy"
            )));
        }
        if !(uri.starts_with("http://")
            || uri.starts_with("https://")
            || uri.starts_with("mqtt://"))
        {
            return Err(BrokerError::bad_data(format!(
                "endpoint '{uri}': only http, https and mqtt endpoints are supported"
            )));
        }
        if let Some(rest) = uri.strip_prefix("mqtt://") {
            let topic = rest.split_once('/').map(|(_, t)| t).unwrap_or("");
            if topic.is_empty() || topic.contains(['+', '#']) {
                return Err(BrokerError::bad_data(format!(
                    "endpoint '{uri}': an MQTT endpoint is mqtt://host[:port]/topic, with a topic and no wildcards"
                )));
            }
        }
        let accept = match ep.get("accept").and_then(Value::as_str) {
            None => "application/json".to_string(),
            Some(a @ ("application/json" | "application/ld+json" | "application/geo+json")) => {
                a.to_string()
            }
            Some(other) => {
                return Err(BrokerError::bad_data(format!(
                    "unsupported 'endpoint.accept' '{other}'"
                )))
            }
        };
        let receiver_info = key_values(ep, "receiverInfo")?;
        let notifier_info = key_values(ep, "notifierInfo")?;
        for (k, v) in &notifier_info {
            let ok = match k.as_str() {
                "MQTT-QoS" => matches!(v.as_str(), "0" | "1" | "2"),
                "MQTT-Version" => matches!(v.as_str(), "mqtt3.1.1" | "mqtt5.0"),
                _ => true,
            };
            if !ok {
                return Err(BrokerError::bad_data(format!(
                    "'notifierInfo' {k} '{v}' is not valid (MQTT-QoS 0, 1 or 2; MQTT-Version mqtt3.1.1 or mqtt5.0)"
                )));
            }
        }
        let notify_ld = ld.clone();
        Ok(Compiled {
            notify_ld,
            tenant: tenant.to_string(),
            id: id.to_string(),
            body,
            context_source,
            ld,
            selectors,
            watched,
            triggers,
            q,
            geo,
            time_interval,
            throttling,
            expires_at,
            is_active,
            projection,
            dataset_ids,
            show_changes,
            join,
            join_level,
            format,
            sys_attrs,
            endpoint: Endpoint {
                uri: uri.to_string(),
                accept,
                receiver_info,
                notifier_info,
            },
        })
    }

    /// True when the entity is one this subscription is about (selectors, q, geoQ).
    pub fn selects(&self, e: &Entity, with_filters: bool) -> bool {
        if !self.selectors.is_empty() && !self.selectors.iter().any(|s| s.matches(e)) {
            return false;
        }
        if with_filters {
            if self.q.as_ref().is_some_and(|q| !q.matches(e)) {
                return false;
            }
            if self.geo.as_ref().is_some_and(|g| !geo_matches(g, e)) {
                return false;
            }
        }
        true
    }

    /// The `@context` value notifications carry (`jsonldContext` or the subscription's).
    pub fn notify_context_value(&self) -> Value {
        match self.body.get("jsonldContext") {
            Some(j) => j.clone(),
            None => self.context_source.clone().unwrap_or_else(|| {
                Value::String(citybrain_model::context::CORE_CONTEXT_URL.into())
            }),
        }
    }

    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}
