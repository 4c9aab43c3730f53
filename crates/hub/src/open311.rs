//! Open311 GeoReport v2: citizen requests enter the same incident pipeline. A tenant's
//! service list (with service definitions) and API keys are set through the platform
//! API; a request becomes an incident of the service's category, routed, handled and
//! tracked like any other, and its Open311 status and `status_notes` follow the
//! incident. After it is closed, the citizen may rate the outcome (1-5).

use chrono::{DateTime, Duration, Utc};
use citybrain_access::{Principal, RequestContext, Resource, Verb};
use citybrain_model::{ErrorCode, ErrorKind};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::incident::{Incident, Status};
pub use crate::parts::CitizenRequest;
use crate::requests::{DeskError, NewIncident};
use crate::Hub;

const CONFIG: &str = "open311";

/// A service attribute (GeoReport v2 service definition).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAttribute {
    #[serde(default = "yes")]
    pub variable: bool,
    pub code: String,
    /// `string`, `number`, `datetime`, `text`, `singlevaluelist`, `multivaluelist`.
    pub datatype: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub datatype_description: String,
    #[serde(default)]
    pub order: u32,
    pub description: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<AttributeValue>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeValue {
    pub key: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub service_code: String,
    pub service_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub group: String,
    /// The incident category its requests take (by default the service code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<ServiceAttribute>,
}

/// A tenant's Open311 set-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Open311Config {
    pub services: Vec<Service>,
    /// Keys accepted for `POST requests` (and ratings).
    #[serde(default)]
    pub api_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
}

/// An Open311 error: its kind (the API gives it the status, which GeoReport v2 also
/// puts in the body's `code`) and a description.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind:?}: {description}")]
pub struct Open311Error {
    pub kind: ErrorKind,
    pub description: String,
}

impl Open311Error {
    pub fn new(kind: ErrorKind, d: impl Into<String>) -> Open311Error {
        Open311Error {
            kind,
            description: d.into(),
        }
    }
}

fn err(kind: ErrorKind, d: impl Into<String>) -> Open311Error {
    Open311Error::new(kind, d)
}

impl From<DeskError> for Open311Error {
    fn from(e: DeskError) -> Self {
        match e {
            DeskError::NotFound(_) => err(ErrorKind::ResourceNotFound, e.to_string()),
            DeskError::Hub(crate::HubError::Denied(d)) => err(d.kind(), d.to_string()),
            DeskError::Invalid(m) => err(ErrorKind::BadRequestData, m),
            other => {
                tracing::error!(error = %other, "open311: the desk failed");
                // A full disk or a store refusing writes keeps its status (507, 503):
                // the client may retry later; anything else is the server's fault.
                let kind = match other.kind() {
                    k @ (ErrorKind::InsufficientStorage | ErrorKind::Unavailable) => k,
                    _ => ErrorKind::InternalError,
                };
                err(kind, "the request could not be stored; try again")
            }
        }
    }
}

/// Filters of `GET requests`.
#[derive(Debug, Default, Clone)]
pub struct RequestQuery {
    pub ids: Option<Vec<String>>,
    pub service_codes: Option<Vec<String>>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// `open`, `closed`.
    pub statuses: Option<Vec<String>>,
}

/// The Open311 status of an incident.
fn open_or_closed(s: Status) -> &'static str {
    if s.is_open() {
        "open"
    } else {
        "closed"
    }
}

/// The request number of an incident id (`urn:ngsi-ld:Incident:42` → `42`).
fn request_id(i: &Incident) -> String {
    i.id.rsplit(':').next().unwrap_or_default().to_string()
}

/// The latest note a citizen may read: the reason or note of the last status change,
/// or the last comment.
fn status_notes(i: &Incident) -> String {
    i.history
        .iter()
        .rev()
        .find_map(|s| match s.action.as_str() {
            "status" => s.reason.clone().or_else(|| s.note.clone()),
            "comment" => s.note.clone(),
            _ => None,
        })
        .unwrap_or_default()
}

/// One request as `GET requests` shows it.
pub fn request_view(i: &Incident) -> Option<Value> {
    let r = i.request.as_ref()?;
    let mut v = json!({
        "service_request_id": request_id(i),
        "status": open_or_closed(i.status),
        "status_notes": status_notes(i),
        "service_name": r.service_name,
        "service_code": r.service_code,
        "description": r.description.clone().unwrap_or_default(),
        "agency_responsible": i.department.clone().unwrap_or_default(),
        "service_notice": "",
        "requested_datetime": citybrain_model::time::format_datetime(&i.opened_at),
        "updated_datetime": citybrain_model::time::format_datetime(&i.updated_at),
        "expected_datetime": "",
        "address": r.address_string.clone().unwrap_or_default(),
        "address_id": r.address_id.clone().unwrap_or_default(),
        "zipcode": "",
        "media_url": r.media_url.clone().unwrap_or_default(),
    });
    if let Some([lon, lat]) = i.location {
        v["lat"] = json!(lat);
        v["long"] = json!(lon);
    }
    if let Some(rating) = r.rating {
        v["rating"] = json!(rating);
    }
    Some(v)
}

fn field<'a>(form: &'a [(String, String)], k: &str) -> Option<&'a str> {
    form.iter()
        .find(|(key, _)| key == k)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// `api_key` must be one of the tenant's keys (403 otherwise).
fn check_key(cfg: &Open311Config, form: &[(String, String)]) -> Result<(), Open311Error> {
    match field(form, "api_key") {
        Some(k) if cfg.api_keys.iter().any(|x| x == k) => Ok(()),
        Some(_) => Err(err(ErrorKind::Forbidden, "api_key is not valid")),
        None => Err(err(ErrorKind::Forbidden, "api_key is required")),
    }
}

/// Citizens' requests are written by the Open311 service (the citizen is known only by
/// the request's token), in the request that brought them.
fn citizen_writes(rc: &RequestContext) -> RequestContext {
    RequestContext::request(rc.tenant.clone(), Principal::OPEN311, rc.request_id.clone())
}

impl Hub {
    pub async fn open311_config(&self, tenant: &str) -> Open311Config {
        let doc = match self.store.get_doc(tenant, CONFIG, "config") {
            Ok(Some(doc)) => doc,
            Ok(None) => return Open311Config::default(),
            Err(error) => {
                tracing::error!(tenant, %error, "the Open311 configuration could not be read");
                return Open311Config::default();
            }
        };
        serde_json::from_value(doc).unwrap_or_else(|e| {
            tracing::warn!(tenant, error = %e, "the stored Open311 configuration is unreadable: no services until it is put again");
            Open311Config::default()
        })
    }

    /// Sets the services and keys (checked: unique codes, known datatypes, lists with
    /// values).
    pub async fn set_open311_config(
        &self,
        rc: &RequestContext,
        c: Open311Config,
    ) -> Result<(), DeskError> {
        self.allow(rc, Verb::Administer, Resource::Open311)?;
        let mut seen = std::collections::BTreeSet::new();
        for (i, s) in c.services.iter().enumerate() {
            if s.service_code.trim().is_empty() || !seen.insert(s.service_code.clone()) {
                return Err(DeskError::Invalid(format!(
                    "services[{i}].service_code: must be present and unique"
                )));
            }
            for (j, a) in s.attributes.iter().enumerate() {
                let f = format!("services[{i}].attributes[{j}]");
                if !matches!(
                    a.datatype.as_str(),
                    "string"
                        | "number"
                        | "datetime"
                        | "text"
                        | "singlevaluelist"
                        | "multivaluelist"
                ) {
                    return Err(DeskError::Invalid(format!(
                        "{f}.datatype: '{}' is not a GeoReport datatype",
                        a.datatype
                    )));
                }
                if a.datatype.ends_with("valuelist") && a.values.is_empty() {
                    return Err(DeskError::Invalid(format!(
                        "{f}.values: a list needs values"
                    )));
                }
            }
        }
        self.put_doc(rc, CONFIG, "config", &c).await?;
        Ok(())
    }

    /// `POST requests`: checks the key, the service, the place and the attributes, then
    /// files the incident. Answers (service_request_id, token).
    pub async fn open311_submit(
        &self,
        rc: &RequestContext,
        form: &[(String, String)],
    ) -> Result<(String, String), Open311Error> {
        self.allow(rc, Verb::Create, Resource::Open311)
            .map_err(DeskError::from)?;
        let tenant = rc.tenant.as_str();
        let cfg = self.open311_config(tenant).await;
        check_key(&cfg, form)?;
        let code = field(form, "service_code")
            .ok_or_else(|| err(ErrorKind::BadRequestData, "service_code is required"))?;
        let service = cfg
            .services
            .iter()
            .find(|s| s.service_code == code)
            .ok_or_else(|| {
                err(
                    ErrorKind::ResourceNotFound,
                    format!("service_code '{code}' not found"),
                )
            })?;
        let lat = field(form, "lat");
        let lon = field(form, "long");
        let location = match (lat, lon) {
            (Some(la), Some(lo)) => {
                let la: f64 = la
                    .parse()
                    .map_err(|_| err(ErrorKind::BadRequestData, "lat is not a number"))?;
                let lo: f64 = lo
                    .parse()
                    .map_err(|_| err(ErrorKind::BadRequestData, "long is not a number"))?;
                if !(-90.0..=90.0).contains(&la) || !(-180.0..=180.0).contains(&lo) {
                    return Err(err(ErrorKind::BadRequestData, "lat/long out of range"));
                }
                Some([lo, la])
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(err(ErrorKind::BadRequestData, "lat and long go together"))
            }
            (None, None) => None,
        };
        let address = field(form, "address_string").map(str::to_string);
        let address_id = field(form, "address_id").map(str::to_string);
        if location.is_none() && address.is_none() && address_id.is_none() {
            return Err(err(
                ErrorKind::BadRequestData,
                "a location is required: lat and long, address_string or address_id",
            ));
        }
        // attribute[code]=value (repeated for multivaluelist).
        let mut attrs: Vec<(String, String)> = Vec::new();
        for (k, v) in form {
            if let Some(code) = k
                .strip_prefix("attribute[")
                .and_then(|r| r.strip_suffix(']'))
            {
                attrs.push((code.to_string(), v.trim().to_string()));
            }
        }
        for a in &service.attributes {
            let given: Vec<&str> = attrs
                .iter()
                .filter(|(c, _)| *c == a.code)
                .map(|(_, v)| v.as_str())
                .filter(|v| !v.is_empty())
                .collect();
            if given.is_empty() {
                if a.required && a.variable {
                    return Err(err(
                        ErrorKind::BadRequestData,
                        format!("attribute[{}] is required ({})", a.code, a.description),
                    ));
                }
                continue;
            }
            let bad = |why: &str| {
                err(
                    ErrorKind::BadRequestData,
                    format!("attribute[{}]: {why}", a.code),
                )
            };
            match a.datatype.as_str() {
                "number" if given.iter().any(|v| v.parse::<f64>().is_err()) => {
                    return Err(bad("must be a number"))
                }
                "datetime"
                    if given
                        .iter()
                        .any(|v| citybrain_model::time::parse_datetime(v).is_none()) =>
                {
                    return Err(bad("must be a w3 date-time"))
                }
                "singlevaluelist" | "multivaluelist" => {
                    if a.datatype == "singlevaluelist" && given.len() > 1 {
                        return Err(bad("takes one value"));
                    }
                    if let Some(v) = given
                        .iter()
                        .find(|v| !a.values.iter().any(|x| x.key == **v))
                    {
                        return Err(bad(&format!("'{v}' is not one of its values")));
                    }
                }
                _ => {}
            }
        }
        if let Some(u) = field(form, "media_url") {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err(err(
                    ErrorKind::BadRequestData,
                    "media_url must be an http(s) URL",
                ));
            }
        }
        let description = field(form, "description").map(str::to_string);
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 4_000)
        {
            return Err(err(
                ErrorKind::BadRequestData,
                "description: at most 4,000 characters",
            ));
        }
        let token = uuid::Uuid::new_v4().to_string();
        let title = match &description {
            Some(d) => format!(
                "{}: {}",
                service.service_name,
                d.chars().take(80).collect::<String>()
            ),
            None => service.service_name.clone(),
        };
        let req = NewIncident {
            category: service
                .category
                .clone()
                .unwrap_or_else(|| service.service_code.clone()),
            title,
            severity: None,
            location,
            entities: Vec::new(),
            tasks: Vec::new(),
        };
        let citizen = CitizenRequest {
            service_code: service.service_code.clone(),
            service_name: service.service_name.clone(),
            description,
            address_string: address,
            address_id,
            media_url: field(form, "media_url").map(str::to_string),
            attributes: attrs,
            email: field(form, "email").map(str::to_string),
            phone: field(form, "phone").map(str::to_string),
            first_name: field(form, "first_name").map(str::to_string),
            last_name: field(form, "last_name").map(str::to_string),
            device_id: field(form, "device_id").map(str::to_string),
            account_id: field(form, "account_id").map(str::to_string),
            token: token.clone(),
            rating: None,
        };
        let i = self.open_request(&citizen_writes(rc), req, citizen).await?;
        Ok((request_id(&i), token))
    }

    /// `GET requests`: newest first, at most 1,000; without dates, the last 90 days.
    pub async fn open311_requests(
        &self,
        tenant: &str,
        q: &RequestQuery,
    ) -> Result<Vec<Value>, Open311Error> {
        let now = self.clock.now();
        let (start, end) = match (q.start, q.end) {
            (Some(s), Some(e)) if e < s => {
                return Err(err(
                    ErrorKind::BadRequestData,
                    "end_date is before start_date",
                ))
            }
            (Some(s), Some(e)) if e - s > Duration::days(90) => {
                return Err(err(
                    ErrorKind::BadRequestData,
                    "start_date and end_date may not span more than 90 days",
                ))
            }
            (Some(s), Some(e)) => (s, e),
            (Some(s), None) => (s, s + Duration::days(90)),
            (None, Some(e)) => (e - Duration::days(90), e),
            (None, None) => (now - Duration::days(90), now),
        };
        let all = self.incidents(tenant, &Default::default()).await;
        let out = all
            .iter()
            .filter(|i| i.request.is_some())
            .filter(|i| match &q.ids {
                // Ids override every other filter.
                Some(ids) => ids.iter().any(|x| *x == request_id(i)),
                None => {
                    i.opened_at >= start
                        && i.opened_at <= end
                        && q.service_codes.as_ref().is_none_or(|c| {
                            i.request
                                .as_ref()
                                .is_some_and(|r| c.contains(&r.service_code))
                        })
                        && q.statuses
                            .as_ref()
                            .is_none_or(|s| s.iter().any(|x| x == open_or_closed(i.status)))
                }
            })
            .filter_map(request_view)
            .take(1_000)
            .collect();
        Ok(out)
    }

    /// `GET requests/{id}`.
    pub async fn open311_request(&self, tenant: &str, id: &str) -> Result<Value, Open311Error> {
        let i = self
            .incident(tenant, &format!("urn:ngsi-ld:Incident:{id}"))
            .await
            .filter(|i| i.request.is_some())
            .ok_or_else(|| {
                err(
                    ErrorKind::ResourceNotFound,
                    format!("service_request_id '{id}' not found"),
                )
            })?;
        request_view(&i).ok_or_else(|| err(ErrorKind::ResourceNotFound, "not a citizen request"))
    }

    /// `GET tokens/{token}`.
    pub async fn open311_token(&self, tenant: &str, token: &str) -> Result<Value, Open311Error> {
        let all = self.incidents(tenant, &Default::default()).await;
        all.iter()
            .find(|i| i.request.as_ref().is_some_and(|r| r.token == token))
            .map(|i| json!({"service_request_id": request_id(i), "token": token}))
            .ok_or_else(|| {
                err(
                    ErrorKind::ResourceNotFound,
                    format!("token '{token}' not found"),
                )
            })
    }

    /// Rates the outcome of a closed request (1-5), once.
    pub async fn open311_rate(
        &self,
        rc: &RequestContext,
        id: &str,
        form: &[(String, String)],
    ) -> Result<Value, Open311Error> {
        self.allow(rc, Verb::Update, Resource::Open311)
            .map_err(DeskError::from)?;
        let tenant = rc.tenant.as_str();
        let cfg = self.open311_config(tenant).await;
        check_key(&cfg, form)?;
        let rating: u8 = field(form, "rating")
            .and_then(|r| r.parse().ok())
            .filter(|r| (1..=5).contains(r))
            .ok_or_else(|| {
                err(
                    ErrorKind::BadRequestData,
                    "rating: a whole number from 1 to 5",
                )
            })?;
        let full = format!("urn:ngsi-ld:Incident:{id}");
        let i = self
            .rate_request(&citizen_writes(rc), &full, rating)
            .await
            .map_err(|e| match e {
                DeskError::Invalid(m) => err(ErrorKind::Conflict, m),
                other => Open311Error::from(other),
            })?;
        request_view(&i).ok_or_else(|| err(ErrorKind::ResourceNotFound, "not a citizen request"))
    }
}
