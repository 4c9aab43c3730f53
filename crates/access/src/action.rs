//! What a caller wants to do: a verb on a resource.

use std::sync::Arc;

/// The kind of access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verb {
    Read,
    Create,
    Update,
    Delete,
    /// Configuration of the platform (rules, routing, modes, mappings, keys).
    Administer,
    /// Bulk copies of data leaving the platform (CSV exports of a dataset).
    Export,
    /// Differentially private aggregates of a dataset (open data).
    Aggregate,
}

impl Verb {
    pub fn writes(self) -> bool {
        !matches!(self, Verb::Read | Verb::Export | Verb::Aggregate)
    }
}

/// What is acted on. Borrowed, so that building an action costs nothing on hot paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    /// Entities: their types (expanded) where known, and the id for a single entity.
    /// An empty `types` with no id is "entities in general" (a query over all types).
    Entity {
        types: &'a [Arc<str>],
        id: Option<&'a str>,
    },
    /// Attribute history (the temporal API, exports).
    History {
        types: &'a [Arc<str>],
        id: Option<&'a str>,
    },
    Subscription(Option<&'a str>),
    /// Context source registrations (`/csourceRegistrations`): reading them shows the
    /// departments' endpoints; writing them decides where requests are forwarded.
    Registration(Option<&'a str>),
    /// User `@context`s (`/jsonldContexts`).
    Context,
    /// Types and attributes (`/types`, `/attributes`).
    Catalogue,
    Rule(Option<&'a str>),
    /// Events of the rules and the live feed.
    Event,
    Incident(Option<&'a str>),
    /// Routing tables, SLA policies, plans.
    Routing,
    /// The normal/emergency mode and areas.
    Mode,
    /// What-if runs of the traffic twin.
    Scenario,
    /// An ingestion source (`POST /ingest/{source}`, an MQTT topic's mapping).
    IngestSource(&'a str),
    DeadLetter,
    /// Open311 services and citizen requests.
    Open311,
    /// Operations: metrics, health.
    Operations,
    /// Access policies, classification, API keys.
    Governance,
    /// The audit log: who did what (its entries, checkpoints and proofs).
    Audit,
    /// The data catalogue as a whole (defining and removing datasets).
    Datasets,
    /// One dataset of the catalogue: seeing it listed (read), its differentially
    /// private aggregates (aggregate).
    Dataset(DatasetRef<'a>),
}

/// A dataset as policies see it: what it selects, who publishes it, and its access
/// rights (`PUBLIC`, `RESTRICTED`, `NON_PUBLIC`, the EU access-right vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatasetRef<'a> {
    pub id: &'a str,
    /// Entity types (expanded or short names).
    pub types: &'a [Arc<str>],
    /// Attributes selected (short names); empty: every attribute of the types.
    pub attrs: &'a [Arc<str>],
    /// The publishing department.
    pub publisher: &'a str,
    pub access: &'a str,
}

/// A verb on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action<'a> {
    pub verb: Verb,
    pub resource: Resource<'a>,
}

impl<'a> Action<'a> {
    pub fn new(verb: Verb, resource: Resource<'a>) -> Self {
        Action { verb, resource }
    }
    pub fn read(resource: Resource<'a>) -> Self {
        Action::new(Verb::Read, resource)
    }
    pub fn entity(verb: Verb, types: &'a [Arc<str>], id: Option<&'a str>) -> Self {
        Action::new(verb, Resource::Entity { types, id })
    }
    pub fn history(verb: Verb, types: &'a [Arc<str>], id: Option<&'a str>) -> Self {
        Action::new(verb, Resource::History { types, id })
    }
}
