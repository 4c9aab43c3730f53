//! Every path of the HTTP API, in one place: `grep` this file to see the whole surface.

pub const BASE: &str = "/ngsi-ld/v1";
pub const ENTITIES: &str = "/ngsi-ld/v1/entities";
pub const ENTITY: &str = "/ngsi-ld/v1/entities/{entityId}";
pub const ENTITY_ATTRS: &str = "/ngsi-ld/v1/entities/{entityId}/attrs";
pub const ENTITY_ATTR: &str = "/ngsi-ld/v1/entities/{entityId}/attrs/{attrId}";
pub const BATCH_CREATE: &str = "/ngsi-ld/v1/entityOperations/create";
pub const BATCH_UPSERT: &str = "/ngsi-ld/v1/entityOperations/upsert";
pub const BATCH_UPDATE: &str = "/ngsi-ld/v1/entityOperations/update";
pub const BATCH_DELETE: &str = "/ngsi-ld/v1/entityOperations/delete";
pub const BATCH_MERGE: &str = "/ngsi-ld/v1/entityOperations/merge";
pub const BATCH_QUERY: &str = "/ngsi-ld/v1/entityOperations/query";
pub const SUBSCRIPTIONS: &str = "/ngsi-ld/v1/subscriptions";
pub const SUBSCRIPTION: &str = "/ngsi-ld/v1/subscriptions/{subscriptionId}";
pub const REGISTRATIONS: &str = "/ngsi-ld/v1/csourceRegistrations";
pub const REGISTRATION: &str = "/ngsi-ld/v1/csourceRegistrations/{registrationId}";
pub const SOURCE_IDENTITY: &str = "/ngsi-ld/v1/info/sourceIdentity";
pub const CSOURCE_SUBSCRIPTIONS: &str = "/ngsi-ld/v1/csourceSubscriptions";
pub const CSOURCE_SUBSCRIPTION: &str = "/ngsi-ld/v1/csourceSubscriptions/{subscriptionId}";
pub const TYPES: &str = "/ngsi-ld/v1/types";
pub const TYPE: &str = "/ngsi-ld/v1/types/{type}";
pub const ATTRIBUTES: &str = "/ngsi-ld/v1/attributes";
pub const ATTRIBUTE: &str = "/ngsi-ld/v1/attributes/{attrId}";
pub const CONTEXTS: &str = "/ngsi-ld/v1/jsonldContexts";
pub const CONTEXT: &str = "/ngsi-ld/v1/jsonldContexts/{contextId}";
pub const TEMPORAL_ENTITIES: &str = "/ngsi-ld/v1/temporal/entities";
pub const TEMPORAL_ENTITY: &str = "/ngsi-ld/v1/temporal/entities/{entityId}";
pub const TEMPORAL_ATTRS: &str = "/ngsi-ld/v1/temporal/entities/{entityId}/attrs";
pub const TEMPORAL_ATTR: &str = "/ngsi-ld/v1/temporal/entities/{entityId}/attrs/{attrId}";
pub const TEMPORAL_INSTANCE: &str =
    "/ngsi-ld/v1/temporal/entities/{entityId}/attrs/{attrId}/{instanceId}";
pub const TEMPORAL_QUERY: &str = "/ngsi-ld/v1/temporal/entityOperations/query";
pub const INGEST_SOURCES: &str = "/ingest/sources";
pub const INGEST_RELOAD: &str = "/ingest/reload";
pub const INGEST_DEADLETTERS: &str = "/ingest/deadletters";
pub const INGEST_DEADLETTER: &str = "/ingest/deadletters/{id}";
pub const INGEST_REPLAY: &str = "/ingest/deadletters/replay";
pub const INGEST_SOURCE: &str = "/ingest/{source}";
pub const RULES: &str = "/platform/v1/rules";
pub const RULE: &str = "/platform/v1/rules/{ruleId}";
pub const RULE_VERSIONS: &str = "/platform/v1/rules/{ruleId}/versions";
pub const EVENTS: &str = "/platform/v1/events";
pub const BACKTESTS: &str = "/platform/v1/backtests";
pub const INCIDENTS: &str = "/platform/v1/incidents";
pub const INCIDENT: &str = "/platform/v1/incidents/{incidentId}";
pub const INCIDENT_TRANSITIONS: &str = "/platform/v1/incidents/{incidentId}/transitions";
pub const INCIDENT_COMMENTS: &str = "/platform/v1/incidents/{incidentId}/comments";
pub const INCIDENT_ATTACHMENTS: &str = "/platform/v1/incidents/{incidentId}/attachments";
pub const ROUTING: &str = "/platform/v1/routing";
pub const SLA_POLICY: &str = "/platform/v1/sla/policy";
pub const SLA_REPORT: &str = "/platform/v1/sla/report";
pub const MODE: &str = "/platform/v1/mode";
pub const AREAS: &str = "/platform/v1/areas";
pub const WHAT_IFS: &str = "/platform/v1/twin/what-ifs";
pub const WHAT_IF: &str = "/platform/v1/twin/what-ifs/{runId}";
pub const AREA: &str = "/platform/v1/areas/{name}";
pub const INCIDENT_TASK: &str = "/platform/v1/incidents/{incidentId}/tasks/{n}";
pub const PLANS: &str = "/platform/v1/plans";
pub const OPEN311_CONFIG: &str = "/platform/v1/open311";
pub const OPEN311_ROOT: &str = "/open311/v2/{file}";
pub const OPEN311_SERVICE: &str = "/open311/v2/services/{file}";
pub const OPEN311_REQUEST: &str = "/open311/v2/requests/{file}";
pub const OPEN311_TOKEN: &str = "/open311/v2/tokens/{file}";
pub const OPEN311_RATING: &str = "/open311/v2/requests/{id}/{file}";
pub const EVENTS_STREAM: &str = "/platform/v1/events/stream";
/// Entity changes as Server-Sent Events (a live subscription; `handlers/live.rs`).
pub const LIVE: &str = "/platform/v1/live";
pub const POLICIES: &str = "/platform/v1/policies";
pub const POLICY_VERSIONS: &str = "/platform/v1/policies/versions";
pub const CLASSIFICATION: &str = "/platform/v1/classification";
pub const KEYS: &str = "/platform/v1/keys";
pub const KEY: &str = "/platform/v1/keys/{keyId}";
pub const AUDIT: &str = "/platform/v1/audit";
pub const BACKUPS: &str = "/platform/v1/backups";
pub const CATALOG: &str = "/platform/v1/catalog";
pub const CATALOG_DATASET: &str = "/platform/v1/catalog/datasets/{datasetId}";
pub const DATASETS: &str = "/platform/v1/datasets";
pub const DATASET: &str = "/platform/v1/datasets/{datasetId}";
pub const DATASET_EXPORT: &str = "/platform/v1/datasets/{datasetId}/export";
pub const DATASET_AGGREGATE: &str = "/platform/v1/datasets/{datasetId}/aggregate";
pub const DATASET_BUDGET: &str = "/platform/v1/datasets/{datasetId}/budget";
pub const AUDIT_ENTRIES: &str = "/platform/v1/audit/entries";
pub const AUDIT_INCLUSION: &str = "/platform/v1/audit/proofs/inclusion";
pub const AUDIT_CONSISTENCY: &str = "/platform/v1/audit/proofs/consistency";
pub const HEALTH: &str = "/health";
/// The web console (`handlers/console.rs`): its page and its built files.
pub const CONSOLE: &str = "/";
pub const CONSOLE_FILES: &str = "/assets/{*path}";
pub const METRICS: &str = "/metrics";
/// The API's own description (`handlers/openapi.rs`) and RFC 9727's catalogue of APIs.
pub const OPENAPI: &str = "/openapi.json";
pub const API_CATALOG: &str = "/.well-known/api-catalog";

/// Query parameters of `GET /platform/v1/live` (`handlers/live.rs`).
pub const LIVE_PARAMS: &[&str] = &[
    "type",
    "id",
    "idPattern",
    "q",
    "georel",
    "geometry",
    "coordinates",
    "geoproperty",
    "attrs",
    "watchedAttributes",
    "format",
    "options",
    "throttling",
    "notificationTrigger",
];

/// Query parameters each operation accepts; anything else is a 400 InvalidRequest, as
/// NGSI-LD requires. `None`: the route takes whatever it likes (health, metrics).
pub fn allowed_params(method: &axum::http::Method, route: &str) -> Option<&'static [&'static str]> {
    use axum::http::Method;
    const QUERY: &[&str] = &[
        "id",
        "type",
        "idPattern",
        "attrs",
        "pick",
        "omit",
        "q",
        "csf",
        "georel",
        "geometry",
        "coordinates",
        "geoproperty",
        "geometryProperty",
        "lang",
        "scopeQ",
        "limit",
        "offset",
        "count",
        "options",
        "format",
        "local",
        "datasetId",
        "join",
        "joinLevel",
        "containedBy",
        "entityMap",
        "expandValues",
        "orderBy",
    ];
    const RETRIEVE: &[&str] = &[
        "type",
        "attrs",
        "pick",
        "omit",
        "geometryProperty",
        "lang",
        "options",
        "format",
        "local",
        "datasetId",
        "join",
        "joinLevel",
        "containedBy",
        "entityMap",
        "expandValues",
    ];
    const WRITE: &[&str] = &["options", "local", "format", "lang", "type"];
    // Purge (NGSI-LD 1.9, 5.6.21): the query's filters, and keep or drop.
    const PURGE: &[&str] = &[
        "id",
        "type",
        "idPattern",
        "attrs",
        "q",
        "georel",
        "geometry",
        "coordinates",
        "geoproperty",
        "scopeQ",
        "local",
        "keep",
        "drop",
    ];
    const ATTR: &[&str] = &["datasetId", "deleteAll", "lang", "options", "local"];
    const BATCH_QUERY_PARAMS: &[&str] = &[
        "limit",
        "offset",
        "count",
        "options",
        "format",
        "lang",
        "local",
        "geometryProperty",
        "orderBy",
    ];
    const SUB_LIST: &[&str] = &["limit", "offset", "count", "options", "format", "local"];
    const SUB_ONE: &[&str] = &["options", "format", "local"];
    const CSR_QUERY: &[&str] = &[
        "id",
        "type",
        "idPattern",
        "attrs",
        "q",
        "csf",
        "georel",
        "geometry",
        "coordinates",
        "geoproperty",
        "scopeQ",
        "timeproperty",
        "timerel",
        "timeAt",
        "endTimeAt",
        "limit",
        "offset",
        "count",
        "options",
        "format",
        "local",
    ];
    const DISCOVERY: &[&str] = &["details", "options", "local", "format"];
    const CONTEXT_PARAMS: &[&str] = &["details", "kind", "reload"];
    const TEMPORAL_QUERY_PARAMS: &[&str] = &[
        "id",
        "type",
        "idPattern",
        "attrs",
        "pick",
        "omit",
        "q",
        "csf",
        "georel",
        "geometry",
        "coordinates",
        "geoproperty",
        "lang",
        "scopeQ",
        "limit",
        "offset",
        "count",
        "options",
        "format",
        "local",
        "datasetId",
        "timerel",
        "timeAt",
        "endTimeAt",
        "timeproperty",
        "lastN",
        "aggrMethods",
        "aggrPeriodDuration",
        "orderBy",
    ];
    const TEMPORAL_RETRIEVE: &[&str] = &[
        "attrs",
        "pick",
        "omit",
        "lang",
        "options",
        "format",
        "local",
        "datasetId",
        "timerel",
        "timeAt",
        "endTimeAt",
        "timeproperty",
        "lastN",
        "aggrMethods",
        "aggrPeriodDuration",
    ];
    Some(match (method, route) {
        (&Method::GET, ENTITIES) => QUERY,
        (&Method::DELETE, ENTITIES) => PURGE,
        (_, ENTITIES) => WRITE,
        (&Method::GET, ENTITY) => RETRIEVE,
        (_, ENTITY) | (_, ENTITY_ATTRS) => WRITE,
        (_, ENTITY_ATTR) => ATTR,
        (_, BATCH_QUERY) => BATCH_QUERY_PARAMS,
        (_, BATCH_CREATE | BATCH_UPSERT | BATCH_UPDATE | BATCH_DELETE | BATCH_MERGE) => WRITE,
        (&Method::GET, SUBSCRIPTIONS) => SUB_LIST,
        (_, SUBSCRIPTIONS) | (_, SUBSCRIPTION) => SUB_ONE,
        (&Method::GET, REGISTRATIONS) => CSR_QUERY,
        (_, REGISTRATIONS) | (_, REGISTRATION) => SUB_ONE,
        (_, SOURCE_IDENTITY) => &[],
        (&Method::GET, CSOURCE_SUBSCRIPTIONS) => SUB_LIST,
        (_, CSOURCE_SUBSCRIPTIONS) | (_, CSOURCE_SUBSCRIPTION) => SUB_ONE,
        (_, TYPES | TYPE | ATTRIBUTES | ATTRIBUTE) => DISCOVERY,
        (_, CONTEXTS | CONTEXT) => CONTEXT_PARAMS,
        (&Method::GET, TEMPORAL_ENTITIES) => TEMPORAL_QUERY_PARAMS,
        (&Method::GET, TEMPORAL_ENTITY) => TEMPORAL_RETRIEVE,
        (_, TEMPORAL_QUERY) => TEMPORAL_QUERY_PARAMS,
        (_, TEMPORAL_ENTITIES | TEMPORAL_ENTITY | TEMPORAL_ATTRS | TEMPORAL_INSTANCE) => WRITE,
        (_, TEMPORAL_ATTR) => ATTR,
        (_, LIVE) => LIVE_PARAMS,
        (&Method::GET, INGEST_DEADLETTERS) => &["source", "reason", "limit", "offset"],
        (_, INGEST_SOURCE | INGEST_SOURCES | INGEST_RELOAD | INGEST_REPLAY | INGEST_DEADLETTER) => {
            &[]
        }
        _ => return None,
    })
}
