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
pub const TYPES: &str = "/ngsi-ld/v1/types";
pub const TYPE: &str = "/ngsi-ld/v1/types/{type}";
pub const ATTRIBUTES: &str = "/ngsi-ld/v1/attributes";
pub const ATTRIBUTE: &str = "/ngsi-ld/v1/attributes/{attrId}";
pub const CONTEXTS: &str = "/ngsi-ld/v1/jsonldContexts";
pub const CONTEXT: &str = "/ngsi-ld/v1/jsonldContexts/{contextId}";
pub const HEALTH: &str = "/health";
pub const METRICS: &str = "/metrics";
