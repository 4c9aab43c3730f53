//! HTTP adapters of citybrain: the NGSI-LD API under `/ngsi-ld/v1`, `/health` and
//! Prometheus `/metrics`. Handlers decode ([`request`]), call the broker, and encode
//! ([`response`]); errors map to ProblemDetails in one table ([`problem`]).

pub mod auth;
pub mod context;
pub mod front;
pub mod handlers;
pub mod lenient;
pub mod metrics;
pub mod problem;
pub mod request;
pub mod response;
pub mod routes;
pub mod scenarios;
pub mod serve;
pub mod timeout;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use citybrain_broker::Broker;
use citybrain_model::ErrorKind;

use crate::context::Family;
use crate::handlers::{
    audit, backups, batch, catalog, console, contexts, csource_subscriptions, discovery, entities,
    governance, incidents, ingest, live, modes, open311, openapi, registrations, rules,
    subscriptions, temporal, twin,
};
use crate::metrics::Metrics;
use crate::problem::ApiError;
use crate::routes::*;

/// Limits on what a request may carry.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    pub max_json_depth: usize,
    /// Requests handled at once; beyond it new requests get 503 at once (load shedding)
    /// instead of queueing without bound.
    pub max_concurrent_requests: usize,
    /// Most time a request with a body may take until its answer starts (a slow upload
    /// included); beyond it the client gets 408 ([`timeout`]).
    pub request_timeout: std::time::Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            max_json_depth: 64,
            max_concurrent_requests: 4096,
            request_timeout: std::time::Duration::from_secs(300),
        }
    }
}

/// Shared state of every handler: one `Arc`, so that extracting it costs one counter
/// increment however many parts the server has.
#[derive(Clone)]
pub struct AppState(Arc<AppParts>);

impl std::ops::Deref for AppState {
    type Target = AppParts;
    fn deref(&self) -> &AppParts {
        &self.0
    }
}

/// What the handlers share.
pub struct AppParts {
    pub broker: Arc<Broker>,
    /// The ingestion pipeline (`/ingest`), when enabled.
    pub ingest: Option<Arc<citybrain_ingest::Ingest>>,
    /// The coordination hub (`/platform/v1/rules`, `/platform/v1/events`), when enabled.
    pub hub: Option<Arc<citybrain_hub::Hub>>,
    /// Authentication (API keys, OIDC tokens); `None`: every caller is anonymous
    /// (the loopback demo).
    pub auth: Option<Arc<citybrain_identity::Authenticator>>,
    /// Access policies and classification (with authentication).
    pub governance: Option<Arc<citybrain_policy::Governance>>,
    /// The tamper-evident audit log (with authentication).
    pub audit: Option<Arc<citybrain_audit::AuditLog>>,
    /// The data catalogue: datasets, DCAT-AP, exports, private aggregates.
    pub catalog: Option<Arc<citybrain_catalog::Catalog>>,
    /// The traffic twin's what-if runs, when the twin runs.
    pub scenarios: Option<Arc<dyn scenarios::Scenarios>>,
    /// Context source registrations and distributed operations.
    pub federation: Arc<citybrain_federation::Federation>,
    pub limits: Arc<HttpLimits>,
    pub metrics: Arc<Metrics>,
}

/// What the HTTP service serves: the broker and the optional parts.
pub struct Parts {
    pub broker: Arc<Broker>,
    pub ingest: Option<Arc<citybrain_ingest::Ingest>>,
    pub hub: Option<Arc<citybrain_hub::Hub>>,
    pub auth: Option<Arc<citybrain_identity::Authenticator>>,
    pub governance: Option<Arc<citybrain_policy::Governance>>,
    pub limits: HttpLimits,
    /// Requests per principal (`None`: no limit).
    pub rate: Option<citybrain_identity::Rate>,
    /// Where writes, administrative actions, refusals and authenticated reads are
    /// recorded before they are answered.
    pub audit: Option<Arc<citybrain_audit::AuditLog>>,
    /// The data catalogue (`/platform/v1/catalog`, `/platform/v1/datasets`).
    pub catalog: Option<Arc<citybrain_catalog::Catalog>>,
    /// Web origins allowed to call the API from a browser (CORS); `*` for any. Empty:
    /// no CORS headers (same-origin only).
    pub cors_origins: Vec<String>,
    /// Served over TLS: answers carry `Strict-Transport-Security`.
    pub tls: bool,
    /// The traffic twin's what-if runs (`/platform/v1/twin/what-ifs`).
    pub scenarios: Option<Arc<dyn scenarios::Scenarios>>,
    /// Context source registrations and distributed operations; `None`: a federation
    /// with the default settings, without the registrations stored earlier (tests).
    pub federation: Option<Arc<citybrain_federation::Federation>>,
}

/// Builds the HTTP service from its parts.
pub fn service(parts: Parts) -> App {
    use tower::Layer;
    tower_http::normalize_path::NormalizePathLayer::trim_trailing_slash().layer(router_of(parts))
}

/// The HTTP service: the router behind trailing-slash normalisation (`/entities/` is
/// `/entities`, as clients such as the ETSI test suite send it).
pub type App = tower_http::normalize_path::NormalizePath<Router>;

/// Builds the HTTP service (NGSI-LD only).
pub fn app(broker: Arc<Broker>, limits: HttpLimits) -> App {
    app_with_ingest(broker, None, limits)
}

/// Builds the HTTP service with the `/ingest` endpoints when `ingest` is given.
pub fn app_with_ingest(
    broker: Arc<Broker>,
    ingest: Option<Arc<citybrain_ingest::Ingest>>,
    limits: HttpLimits,
) -> App {
    use tower::Layer;
    tower_http::normalize_path::NormalizePathLayer::trim_trailing_slash()
        .layer(router(broker, ingest, limits))
}

/// Builds the HTTP service with the optional parts given.
pub fn app_with(
    broker: Arc<Broker>,
    ingest: Option<Arc<citybrain_ingest::Ingest>>,
    hub: Option<Arc<citybrain_hub::Hub>>,
    limits: HttpLimits,
) -> App {
    use tower::Layer;
    tower_http::normalize_path::NormalizePathLayer::trim_trailing_slash()
        .layer(router_with(broker, ingest, hub, limits))
}

/// Builds the whole HTTP router (without the hub).
pub fn router(
    broker: Arc<Broker>,
    ingest: Option<Arc<citybrain_ingest::Ingest>>,
    limits: HttpLimits,
) -> Router {
    router_with(broker, ingest, None, limits)
}

/// Builds the whole HTTP router (without authentication).
pub fn router_with(
    broker: Arc<Broker>,
    ingest: Option<Arc<citybrain_ingest::Ingest>>,
    hub: Option<Arc<citybrain_hub::Hub>>,
    limits: HttpLimits,
) -> Router {
    router_of(Parts {
        broker,
        ingest,
        hub,
        auth: None,
        governance: None,
        limits,
        rate: None,
        audit: None,
        catalog: None,
        cors_origins: Vec::new(),
        tls: false,
        scenarios: None,
        federation: None,
    })
}

/// Builds the whole HTTP router.
pub fn router_of(parts: Parts) -> Router {
    let Parts {
        broker,
        ingest,
        hub,
        auth,
        governance,
        limits,
        rate,
        audit,
        catalog: datasets,
        cors_origins,
        tls,
        scenarios,
        federation,
    } = parts;
    let federation = federation.unwrap_or_else(|| {
        citybrain_federation::Federation::unloaded(broker.clone(), Default::default())
    });
    let metrics = Metrics::new();
    let clock = broker.clock().clone();
    let body_limit = limits.max_body_bytes;
    let concurrency = limits.max_concurrent_requests.max(1);
    let request_timeout = limits.request_timeout;
    let state = AppState(Arc::new(AppParts {
        broker,
        ingest,
        hub,
        auth: auth.clone(),
        governance,
        audit: audit.clone(),
        catalog: datasets,
        scenarios,
        federation,
        limits: Arc::new(limits),
        metrics: metrics.clone(),
    }));
    let family = |r: Router<AppState>, f: Family| {
        r.route_layer(axum::middleware::from_fn_with_state(
            (state.clone(), f),
            context::contextualize,
        ))
    };
    let router = Router::new()
        // NGSI-LD builds its context in `NgsiRequest` and is authorized per entity in the
        // broker: no route layer on the hot path.
        .merge(ngsi_ld_routes())
        .merge(family(ingest_routes(), Family::Ingest))
        .merge(family(platform_routes(), Family::Platform))
        .merge(family(open311_routes(), Family::Open311))
        .merge(family(
            Router::new()
                .route(HEALTH, get(health))
                .route(METRICS, get(metrics_text)),
            Family::Operations,
        ))
        // The console's files are public (no data in them): no family, no route layer.
        .route(CONSOLE, get(console::file))
        .route(CONSOLE_FILES, get(console::file))
        // The API's description is public too (no data in it).
        .route(OPENAPI, get(openapi::document))
        .route(API_CATALOG, get(openapi::catalog))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    // Authentication runs in the outermost layer, after the request id is set (a
    // refusal is counted and answers its id) and before every family (whose contexts
    // take the principal it sets): one middleware, not two, on every request.
    router
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(front::Front {
                metrics,
                clock,
                auth,
                limiter: rate.map(|r| Arc::new(citybrain_identity::RateLimiter::new(r))),
                audit,
                hsts: tls,
            }),
            front::track,
        ))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(timeout::BodyTimeoutLayer(request_timeout))
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(overloaded))
                .load_shed()
                // Global: Router::layer wraps every route, and they must share one limit.
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(concurrency)),
        )
        // Outermost: a browser's preflight is answered before authentication. Without
        // configured origins there is no layer at all (no Vary headers, no work).
        .layer(tower::util::option_layer(cors(&cors_origins)))
        .with_state(state)
}

/// CORS for the configured origins: the API's methods, the headers NGSI-LD clients
/// send (credentials travel as `Authorization` headers, never cookies), and the headers
/// they read (paging, counts, locations, request ids).
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderName, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    let h = |n: &'static str| HeaderName::from_static(n);
    let layer = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::LINK,
            h("ngsild-tenant"),
            h("x-api-key"),
            h("x-request-id"),
        ])
        .expose_headers([
            header::LINK,
            header::LOCATION,
            header::CONTENT_RANGE,
            h("ngsild-results-count"),
            h("ngsild-tenant"),
            h("x-request-id"),
            header::RETRY_AFTER,
        ])
        .max_age(std::time::Duration::from_secs(3600));
    Some(layer)
}

/// `/ngsi-ld/v1`: entities, batch operations, subscriptions, discovery, `@context`s
/// and the temporal API.
fn ngsi_ld_routes() -> Router<AppState> {
    Router::new()
        .route(
            ENTITIES,
            get(entities::query)
                .post(entities::create)
                .delete(entities::purge)
                .patch(missing_id)
                .put(missing_id),
        )
        .route(
            ENTITY,
            get(entities::retrieve)
                .put(entities::replace)
                .patch(entities::merge)
                .delete(entities::delete),
        )
        .route(
            ENTITY_ATTRS,
            post(entities::append_attrs).patch(entities::update_attrs),
        )
        .route(
            ENTITY_ATTR,
            axum::routing::patch(entities::patch_attr)
                .put(entities::replace_attr)
                .delete(entities::delete_attr),
        )
        .route(BATCH_CREATE, post(batch::create))
        .route(BATCH_UPSERT, post(batch::upsert))
        .route(BATCH_UPDATE, post(batch::update))
        .route(BATCH_DELETE, post(batch::delete))
        .route(BATCH_MERGE, post(batch::merge))
        .route(BATCH_QUERY, post(batch::query))
        .route(
            SUBSCRIPTIONS,
            get(subscriptions::list).post(subscriptions::create),
        )
        .route(
            SUBSCRIPTION,
            get(subscriptions::retrieve)
                .patch(subscriptions::update)
                .delete(subscriptions::delete),
        )
        .route(
            REGISTRATIONS,
            get(registrations::query).post(registrations::create),
        )
        .route(
            REGISTRATION,
            get(registrations::retrieve)
                .patch(registrations::update)
                .delete(registrations::delete),
        )
        .route(SOURCE_IDENTITY, get(registrations::source_identity))
        .route(
            CSOURCE_SUBSCRIPTIONS,
            get(csource_subscriptions::list).post(csource_subscriptions::create),
        )
        .route(
            CSOURCE_SUBSCRIPTION,
            get(csource_subscriptions::retrieve)
                .patch(csource_subscriptions::update)
                .delete(csource_subscriptions::delete),
        )
        .route(TYPES, get(discovery::types))
        .route(TYPE, get(discovery::type_info))
        .route(ATTRIBUTES, get(discovery::attributes))
        .route(ATTRIBUTE, get(discovery::attribute_info))
        .route(CONTEXTS, get(contexts::list).post(contexts::create))
        .route(CONTEXT, get(contexts::retrieve).delete(contexts::delete))
        .route(
            TEMPORAL_ENTITIES,
            get(temporal::query).post(temporal::upsert),
        )
        .route(
            TEMPORAL_ENTITY,
            get(temporal::retrieve).delete(temporal::delete),
        )
        .route(TEMPORAL_ATTRS, post(temporal::append_attrs))
        .route(TEMPORAL_ATTR, axum::routing::delete(temporal::delete_attr))
        .route(
            TEMPORAL_INSTANCE,
            axum::routing::patch(temporal::modify_instance).delete(temporal::delete_instance),
        )
        .route(TEMPORAL_QUERY, post(temporal::query_post))
}

/// `/ingest`: vendor payloads and dead letters.
fn ingest_routes() -> Router<AppState> {
    Router::new()
        .route(INGEST_SOURCES, get(ingest::sources))
        .route(INGEST_RELOAD, post(ingest::reload))
        .route(INGEST_DEADLETTERS, get(ingest::list_letters))
        .route(INGEST_REPLAY, post(ingest::replay))
        .route(
            INGEST_DEADLETTER,
            get(ingest::get_letter).delete(ingest::delete_letter),
        )
        .route(
            INGEST_SOURCE,
            // The ingest handler enforces its own payload limit (oversized payloads
            // become dead letters), so the general body limit does not apply.
            post(ingest::post_payload).layer(DefaultBodyLimit::disable()),
        )
}

/// `/platform/v1`: rules, events and their live feed, incidents, routing, SLAs, modes,
/// areas, plans and the Open311 configuration.
fn platform_routes() -> Router<AppState> {
    Router::new()
        .route(RULES, get(rules::list).post(rules::create))
        .route(
            RULE,
            get(rules::retrieve)
                .put(rules::replace)
                .delete(rules::delete),
        )
        .route(RULE_VERSIONS, get(rules::versions))
        .route(EVENTS, get(rules::events))
        .route(BACKTESTS, post(rules::backtest))
        .route(INCIDENTS, get(incidents::list).post(incidents::create))
        .route(INCIDENT, get(incidents::retrieve))
        .route(INCIDENT_TRANSITIONS, post(incidents::transition))
        .route(INCIDENT_COMMENTS, post(incidents::comment))
        .route(INCIDENT_ATTACHMENTS, post(incidents::attach))
        .route(ROUTING, get(incidents::routing).put(incidents::set_routing))
        .route(
            SLA_POLICY,
            get(incidents::sla_policy).put(incidents::set_sla_policy),
        )
        .route(SLA_REPORT, get(incidents::sla_report))
        .route(MODE, get(modes::mode).put(modes::set_mode))
        .route(WHAT_IFS, get(twin::list).post(twin::submit))
        .route(WHAT_IF, get(twin::retrieve))
        .route(AREAS, get(modes::areas))
        .route(
            AREA,
            get(modes::area)
                .put(modes::put_area)
                .delete(modes::delete_area),
        )
        .route(INCIDENT_TASK, post(incidents::task))
        .route(PLANS, get(incidents::plans).put(incidents::set_plans))
        .route(
            OPEN311_CONFIG,
            get(open311::config).put(open311::set_config),
        )
        .route(EVENTS_STREAM, get(rules::stream))
        .route(LIVE, get(live::stream))
        .route(
            POLICIES,
            get(governance::policies).put(governance::set_policies),
        )
        .route(POLICY_VERSIONS, get(governance::policy_versions))
        .route(
            CLASSIFICATION,
            get(governance::classification).put(governance::set_classification),
        )
        .route(
            KEYS,
            get(governance::list_keys).post(governance::create_key),
        )
        .route(KEY, axum::routing::delete(governance::revoke_key))
        .route(BACKUPS, axum::routing::post(backups::take))
        .route(AUDIT, get(audit::summary))
        .route(AUDIT_ENTRIES, get(audit::entries))
        .route(AUDIT_INCLUSION, get(audit::inclusion))
        .route(AUDIT_CONSISTENCY, get(audit::consistency))
        .route(CATALOG, get(catalog::dcat_catalog))
        .route(CATALOG_DATASET, get(catalog::dcat_dataset))
        .route(DATASETS, get(catalog::list))
        .route(
            DATASET,
            get(catalog::retrieve)
                .put(catalog::put)
                .delete(catalog::delete),
        )
        .route(DATASET_EXPORT, get(catalog::export))
        .route(DATASET_AGGREGATE, get(catalog::aggregate))
        .route(DATASET_BUDGET, get(catalog::budget))
}

/// `/open311/v2`: GeoReport v2.
fn open311_routes() -> Router<AppState> {
    Router::new()
        .route(
            OPEN311_ROOT,
            get(open311::get_root).post(open311::post_root),
        )
        .route(OPEN311_SERVICE, get(open311::service_definition))
        .route(OPEN311_REQUEST, get(open311::request))
        .route(OPEN311_TOKEN, get(open311::token))
        .route(OPEN311_RATING, post(open311::rate))
}

/// Answer when the concurrency limit sheds a request.
async fn overloaded(_: tower::BoxError) -> Response {
    ApiError::new(
        ErrorKind::InternalError,
        "the server is at its concurrent request limit; retry shortly",
    )
    .with_status(StatusCode::SERVICE_UNAVAILABLE)
    .into_response()
}

async fn health(State(app): State<AppState>) -> Response {
    let s = app.broker.storage_stats();
    let body =
        serde_json::json!({"status": "ok", "entities": s.entities, "durableLsn": s.durable_lsn});
    let mut r = (StatusCode::OK, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn metrics_text(State(app): State<AppState>) -> Response {
    let sla = match &app.hub {
        Some(h) => h.sla_reports().await,
        None => Vec::new(),
    };
    let text = app.metrics.render(&app, &sla);
    let mut r = (StatusCode::OK, text).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

/// `PATCH`/`PUT /entities/` without an id: a malformed request, not a method error.
async fn missing_id() -> Response {
    ApiError::bad_data("the entity id is missing from the path").into_response()
}

async fn not_found() -> Response {
    ApiError::new(ErrorKind::ResourceNotFound, "no such path in the API").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(
        ErrorKind::OperationNotSupported,
        "this method is not supported on this path",
    )
    .with_status(StatusCode::METHOD_NOT_ALLOWED)
    .into_response()
}
