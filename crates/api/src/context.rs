//! The request context, built in one place for every API family, and the route-level
//! authorization of the families whose resources are not entities.
//!
//! [`context_of`] is the one place a context is built: the tenant (`NGSILD-Tenant`),
//! the request id ([`RequestId`]: `X-Request-Id`, generated when absent, answered on
//! every response by the outermost layer) and the principal (anonymous until
//! authentication lands: an authentication layer will put the caller's [`Principal`]
//! in the request's extensions). The platform, ingest, Open311 and operations
//! families carry [`contextualize`] as a route layer, which builds the context and asks
//! the broker's [`Authorizer`](citybrain_access::Authorizer) whether the caller may do
//! what the route does; their handlers take it with the [`Ctx`] extractor. The NGSI-LD
//! family builds it in its request decoder (`NgsiRequest`, the hot path: no layer of
//! its own) and is authorized inside the broker, on the entities themselves (their
//! types, and what each caller may see of them).

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use citybrain_access::{new_request_id, Action, Principal, RequestContext, Resource, Verb};

use crate::problem::ApiError;
use crate::AppState;
use citybrain_broker::request::validate_tenant;

/// The tenant a request names (`NGSILD-Tenant`; the default tenant without it).
fn tenant_of(headers: &axum::http::HeaderMap) -> Result<String, ApiError> {
    match headers.get("NGSILD-Tenant") {
        None => Ok(String::new()),
        Some(v) => {
            let t = v
                .to_str()
                .map_err(|_| ApiError::bad_data("NGSILD-Tenant is not valid text"))?;
            validate_tenant(t)?;
            Ok(t.to_string())
        }
    }
}

/// The API families: each has its own router, layers and authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `/ngsi-ld/v1` (temporal included): authorized in the broker, per entity.
    NgsiLd,
    /// `/ingest`.
    Ingest,
    /// `/platform/v1`, the live feed included.
    Platform,
    /// `/open311/v2`: the tenant is the `jurisdiction_id`, set by the handler.
    Open311,
    /// `/health`, `/metrics`.
    Operations,
}

/// A request's id: the `X-Request-Id` a client sent, or a new one. The outermost layer
/// (`front::track`) sets it on every request and answers it on every response.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn of(headers: &axum::http::HeaderMap) -> RequestId {
        RequestId(
            headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty() && v.len() <= 128)
                .map(str::to_string)
                .unwrap_or_else(new_request_id),
        )
    }
}

fn request_id_of(headers: &axum::http::HeaderMap, extensions: &axum::http::Extensions) -> String {
    match extensions.get::<RequestId>() {
        Some(id) => id.0.clone(),
        None => RequestId::of(headers).0,
    }
}

/// Builds the context of a request (the one place every family's context comes from).
pub fn context_of(
    family: Family,
    headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
) -> Result<RequestContext, ApiError> {
    let tenant = match family {
        // GeoReport v2 names the tenant in `jurisdiction_id` (the handler sets it, so
        // that a bad one is answered in GeoReport's error format).
        Family::Open311 | Family::Operations => String::new(),
        _ => tenant_of(headers)?,
    };
    let principal = extensions.get::<Principal>().cloned().unwrap_or_default();
    let mut rc = RequestContext::request(tenant, principal, request_id_of(headers, extensions));
    rc.source = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_canonical());
    rc.purpose = purpose_of(headers)?;
    Ok(rc)
}

/// The purpose a caller declares (`X-Purpose: incident-response`), for policies that
/// require one (`context.purpose`): a short name of letters, digits, `-`, `_`, `.`, `:`.
fn purpose_of(headers: &axum::http::HeaderMap) -> Result<Option<std::sync::Arc<str>>, ApiError> {
    let Some(v) = headers.get("x-purpose") else {
        return Ok(None);
    };
    let ok = v.to_str().ok().filter(|p| {
        !p.is_empty()
            && p.len() <= 64
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    });
    match ok {
        Some(p) => Ok(Some(p.into())),
        None => Err(ApiError::bad_data(
            "X-Purpose must be 1-64 letters, digits, '-', '_', '.' or ':'",
        )),
    }
}

/// The valid `jurisdiction_id` of an Open311 query string, if any.
fn jurisdiction_of(query: Option<&str>) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .filter(|(k, _)| k == "jurisdiction_id")
        .last()
        .map(|(_, v)| v.into_owned())
        .filter(|j| citybrain_access::validate_tenant(j).is_ok())
}

/// The route layer of a family: context, then route-level authorization.
pub async fn contextualize(
    State((app, family)): State<(AppState, Family)>,
    route: Result<MatchedPath, axum::extract::rejection::MatchedPathRejection>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    mut req: Request,
    next: Next,
) -> Response {
    let mut rc = match context_of(family, req.headers(), req.extensions()) {
        Ok(rc) => rc,
        Err(e) => return e.into_response(),
    };
    if family == Family::Open311 {
        // The route is authorized in the tenant it reads (`jurisdiction_id` of the
        // query string); one that does not validate is answered by the handler, in
        // GeoReport's format, before anything is read.
        if let Some(j) = jurisdiction_of(req.uri().query()) {
            rc.tenant = j;
        }
    }
    let param = |name: &str| {
        params.as_ref().ok().and_then(|p| {
            p.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    };
    if let Ok(route) = &route {
        let id = param("ruleId")
            .or_else(|| param("incidentId"))
            .or_else(|| param("source"));
        if let Some(action) = route_action(family, req.method(), route.as_str(), id.as_deref()) {
            if let Err(denied) = app.broker.authorizer().authorize(&rc, &action) {
                return ApiError::of(&citybrain_model::ModelError::from(denied)).into_response();
            }
        }
    }
    req.extensions_mut().insert(rc);
    next.run(req).await
}

/// What a route of a non-entity family does, as an action; `None` for NGSI-LD routes
/// (the broker authorizes those on the entities).
pub fn route_action<'a>(
    family: Family,
    method: &Method,
    route: &str,
    id: Option<&'a str>,
) -> Option<Action<'a>> {
    use crate::routes::*;
    let verb = match *method {
        Method::GET | Method::HEAD => Verb::Read,
        Method::POST => Verb::Create,
        Method::DELETE => Verb::Delete,
        _ => Verb::Update,
    };
    let admin = |v: Verb| if v == Verb::Read { v } else { Verb::Administer };
    let (verb, resource) = match family {
        Family::NgsiLd => return None,
        // Liveness probes (load balancers, orchestrators) call without credentials.
        Family::Operations if route == HEALTH => return None,
        Family::Operations => (Verb::Read, Resource::Operations),
        // A report or rating names its jurisdiction in its form body, which this layer
        // does not read: the hub authorizes it in that tenant (`open311_submit`,
        // `open311_rate`).
        Family::Open311 if *method == Method::POST => return None,
        Family::Open311 => (verb, Resource::Open311),
        Family::Ingest => match route {
            INGEST_SOURCE => (Verb::Create, Resource::IngestSource(id.unwrap_or_default())),
            INGEST_SOURCES => (Verb::Read, Resource::IngestSource("*")),
            INGEST_RELOAD => (Verb::Administer, Resource::IngestSource("*")),
            INGEST_REPLAY => (Verb::Update, Resource::DeadLetter),
            _ => (verb, Resource::DeadLetter),
        },
        // The catalogue decides per dataset (what a caller may not see is not found);
        // defining and removing datasets is administration.
        Family::Platform
            if matches!(
                route,
                CATALOG
                    | CATALOG_DATASET
                    | DATASETS
                    | DATASET_EXPORT
                    | DATASET_AGGREGATE
                    | DATASET_BUDGET
            ) || (route == DATASET && verb == Verb::Read) =>
        {
            return None
        }
        Family::Platform if route == DATASET => (Verb::Administer, Resource::Datasets),
        // A live subscription is authorized by the broker as any subscription is.
        Family::Platform if route == LIVE => return None,
        Family::Platform => match route {
            RULES | RULE | RULE_VERSIONS => (verb, Resource::Rule(id)),
            // A back-test reads history through a rule that is not stored.
            BACKTESTS => (Verb::Read, Resource::Rule(None)),
            EVENTS | EVENTS_STREAM => (Verb::Read, Resource::Event),
            INCIDENTS => (verb, Resource::Incident(None)),
            INCIDENT | INCIDENT_TRANSITIONS | INCIDENT_COMMENTS | INCIDENT_ATTACHMENTS
            | INCIDENT_TASK => {
                let v = if verb == Verb::Read {
                    verb
                } else {
                    Verb::Update
                };
                (v, Resource::Incident(id))
            }
            ROUTING | SLA_POLICY | SLA_REPORT | PLANS => (admin(verb), Resource::Routing),
            MODE | AREAS | AREA => (admin(verb), Resource::Mode),
            WHAT_IFS | WHAT_IF => (verb, Resource::Scenario),
            // The configuration holds the keys clients file reports with: reading it
            // is administration too (anyone may read Api::"open311" itself).
            OPEN311_CONFIG => (Verb::Administer, Resource::Open311),
            AUDIT | AUDIT_ENTRIES | AUDIT_INCLUSION | AUDIT_CONSISTENCY => {
                (Verb::Read, Resource::Audit)
            }
            POLICIES | POLICY_VERSIONS | CLASSIFICATION | KEYS | KEY => {
                (admin(verb), Resource::Governance)
            }
            BACKUPS => (Verb::Administer, Resource::Operations),
            _ => (verb, Resource::Operations),
        },
    };
    Some(Action::new(verb, resource))
}

/// The request's context, as [`contextualize`] built it.
pub struct Ctx(pub RequestContext);

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        match parts.extensions.get::<RequestContext>() {
            Some(rc) => Ok(Ctx(rc.clone())),
            // Only a route outside every family's router gets here.
            None => context_of(Family::Platform, &parts.headers, &parts.extensions).map(Ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::*;

    #[test]
    fn platform_routes_name_their_resources() {
        let a = route_action(Family::Platform, &Method::PUT, MODE, None).unwrap();
        assert_eq!(a, Action::new(Verb::Administer, Resource::Mode));
        let a = route_action(Family::Platform, &Method::GET, MODE, None).unwrap();
        assert_eq!(a.verb, Verb::Read);
        let a = route_action(
            Family::Platform,
            &Method::POST,
            INCIDENT_COMMENTS,
            Some("urn:i:1"),
        )
        .unwrap();
        assert_eq!(
            a,
            Action::new(Verb::Update, Resource::Incident(Some("urn:i:1")))
        );
        let a = route_action(Family::Ingest, &Method::POST, INGEST_SOURCE, Some("bikes")).unwrap();
        assert_eq!(a.resource, Resource::IngestSource("bikes"));
        assert!(route_action(Family::NgsiLd, &Method::GET, ENTITIES, None).is_none());
    }
}
