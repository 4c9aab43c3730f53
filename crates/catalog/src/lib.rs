//! The data catalogue.
//!
//! - **Datasets** ([`dataset`]): named selections of entity types and attributes with a
//!   filter, with title, description, publisher department, licence, access rights and
//!   an optional differential-privacy offer; one document each in the tenant's
//!   `datasets` collection.
//! - **DCAT-AP 3** ([`dcat`]): the catalogue and each dataset as JSON-LD, with the
//!   distributions the caller may use (NGSI-LD query and temporal URLs, the CSV export,
//!   the aggregate endpoint). What a caller may not read is not listed to them.
//! - **Exports** ([`export`]): a dataset as CSV, through the caller's view (filtered
//!   and masked as every read is), for those the policies allow `export`.
//! - **Aggregates** ([`aggregate`]): count, sum, mean and histograms over the dataset,
//!   an area and a time window, with calibrated noise ([`citybrain_privacy`]) and a
//!   privacy budget per dataset and consumer, spent durably before the answer.

pub mod aggregate;
pub mod dataset;
pub mod dcat;
pub mod export;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use citybrain_access::{Action, Denied, RequestContext, Resource, Verb};
use citybrain_broker::Broker;
use citybrain_model::time::Clock;
use citybrain_model::{ErrorCode, ErrorKind};
use citybrain_policy::Governance;
use citybrain_privacy::{OsRandom, Spent};
use citybrain_storage::EntityStore;
use parking_lot::Mutex;
use serde::Serialize;

pub use dataset::{AccessRights, Dataset, DatasetSpec, PrivacySpec};

/// Where datasets are kept (per tenant).
const DATASETS: &str = "datasets";
/// Where the privacy budgets spent are kept (per tenant), one document per dataset and
/// consumer.
const LEDGER: &str = "privacy-ledger";

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Exhausted(String),
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error(transparent)]
    Broker(#[from] citybrain_broker::BrokerError),
    #[error("{0}")]
    Io(String),
    /// The store refused or failed a write (a full disk is a 507).
    #[error(transparent)]
    Store(#[from] citybrain_storage::StoreError),
}

impl ErrorCode for CatalogError {
    fn kind(&self) -> ErrorKind {
        match self {
            CatalogError::Invalid(_) => ErrorKind::BadRequestData,
            CatalogError::NotFound(_) => ErrorKind::ResourceNotFound,
            // The request is understood and will not be answered, now or later, for this
            // consumer: 403, with the budget named.
            CatalogError::Exhausted(_) => ErrorKind::Forbidden,
            CatalogError::Denied(d) => d.kind(),
            CatalogError::Broker(b) => b.kind(),
            CatalogError::Io(_) => ErrorKind::InternalError,
            CatalogError::Store(e) => e.kind(),
        }
    }
    fn public_detail(&self) -> String {
        match self {
            CatalogError::Io(_) => "the catalogue could not be stored".into(),
            CatalogError::Store(e) => e.public_detail(),
            CatalogError::Broker(b) => b.public_detail(),
            e => e.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, CatalogError>;

/// What the catalogue says of itself (DCAT-AP `dcat:Catalog`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogInfo {
    pub title: String,
    pub description: String,
    /// The city or body publishing the catalogue.
    pub publisher: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub homepage: Option<String>,
    /// Languages of the metadata, as EU language codes (`ENG`, `ZHO`).
    pub languages: Vec<String>,
    /// The licence of the catalogue's metadata (an IRI or a short name of
    /// [`dataset::LICENCES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
}

impl Default for CatalogInfo {
    fn default() -> Self {
        CatalogInfo {
            title: "City data catalogue".into(),
            description: "Datasets of the city's operations platform (citybrain)".into(),
            publisher: "City administration".into(),
            homepage: None,
            languages: vec!["ENG".into()],
            license: Some("CC0-1.0".into()),
        }
    }
}

/// A consumer that ran out of budget (for the security watch).
#[derive(Debug, Clone, PartialEq)]
pub struct Exhaustion {
    pub tenant: String,
    pub dataset: String,
    pub consumer: String,
    pub at: DateTime<Utc>,
}

type LedgerKey = (String, String, String);

/// The catalogue service.
pub struct Catalog {
    broker: Arc<Broker>,
    store: Arc<dyn EntityStore>,
    governance: Option<Arc<Governance>>,
    clock: Arc<dyn Clock>,
    info: CatalogInfo,
    /// The base of absolute URLs in DCAT documents (`server.public_url`); `None`: the
    /// request's host.
    base_url: Option<String>,
    /// Budgets spent, loaded from the ledger on first use.
    ledger: Mutex<HashMap<LedgerKey, Spent>>,
    exhausted: Mutex<Vec<Exhaustion>>,
    rng: Mutex<OsRandom>,
}

impl Catalog {
    pub fn new(
        broker: Arc<Broker>,
        store: Arc<dyn EntityStore>,
        governance: Option<Arc<Governance>>,
        info: CatalogInfo,
    ) -> Catalog {
        let clock = broker.clock().clone();
        Catalog {
            broker,
            store,
            governance,
            clock,
            info,
            base_url: None,
            ledger: Mutex::new(HashMap::new()),
            exhausted: Mutex::new(Vec::new()),
            rng: Mutex::new(OsRandom::default()),
        }
    }

    pub fn info(&self) -> &CatalogInfo {
        &self.info
    }

    /// Links in DCAT documents start with `url` (the server's public URL) instead of the
    /// request's host.
    pub fn with_base_url(mut self, url: Option<String>) -> Catalog {
        self.base_url = url.map(|u| u.trim_end_matches('/').to_string());
        self
    }

    /// The configured base of links, if any.
    pub fn base_url(&self) -> Option<&str> {
        self.base_url.as_deref()
    }

    /// The consumers that ran out of budget since the last call.
    pub fn take_exhaustions(&self) -> Vec<Exhaustion> {
        std::mem::take(&mut *self.exhausted.lock())
    }

    /// Whether `rc` may `verb` the dataset (read: see it listed; aggregate).
    pub fn may(&self, rc: &RequestContext, verb: Verb, d: &Dataset) -> bool {
        self.check(rc, verb, d).is_ok()
    }

    fn check(&self, rc: &RequestContext, verb: Verb, d: &Dataset) -> Result<()> {
        d.with_ref(|r| {
            self.broker
                .authorizer()
                .authorize(rc, &Action::new(verb, Resource::Dataset(*r)))
        })?;
        Ok(())
    }

    /// The dataset's classification level under the policies in force (`None` without
    /// governance).
    pub fn level(&self, d: &Dataset) -> Option<citybrain_policy::Level> {
        let g = self.governance.as_ref()?;
        Some(d.with_ref(|r| g.dataset_level(r)))
    }

    /// Whether `rc` may read every type of the dataset (its NGSI-LD URLs answer it).
    pub fn may_read_data(&self, rc: &RequestContext, d: &Dataset) -> bool {
        match &self.governance {
            // Without governance every caller reads everything (the loopback demo).
            None => true,
            Some(g) => d
                .spec
                .expanded_types()
                .iter()
                .all(|t| g.may_read_type(rc, t)),
        }
    }

    /// Whether `rc` may export the dataset as CSV.
    pub fn may_export(&self, rc: &RequestContext, d: &Dataset) -> bool {
        let types = d.spec.expanded_types();
        self.broker
            .authorizer()
            .authorize(rc, &Action::entity(Verb::Export, &types, None))
            .is_ok()
    }

    fn stored(&self, tenant: &str, id: &str, v: serde_json::Value) -> Result<Dataset> {
        serde_json::from_value(v)
            .map_err(|e| CatalogError::Io(format!("stored dataset {tenant}/{id}: {e}")))
    }

    /// The datasets `rc` may see, in id order.
    pub fn datasets(&self, rc: &RequestContext) -> Result<Vec<Dataset>> {
        self.broker.check_tenant(rc)?;
        let mut out = Vec::new();
        for (id, v) in self.store.docs(&rc.tenant, DATASETS)? {
            let d = self.stored(&rc.tenant, &id, v)?;
            if self.may(rc, Verb::Read, &d) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// One dataset, if `rc` may see it (else "not found": its existence is not told).
    pub fn dataset(&self, rc: &RequestContext, id: &str) -> Result<Dataset> {
        dataset::check_id(id)?;
        self.broker.check_tenant(rc)?;
        let not_found = || CatalogError::NotFound(format!("no dataset '{id}'"));
        let v = self
            .store
            .get_doc(&rc.tenant, DATASETS, id)?
            .ok_or_else(not_found)?;
        let d = self.stored(&rc.tenant, id, v)?;
        if !self.may(rc, Verb::Read, &d) {
            return Err(not_found());
        }
        Ok(d)
    }

    /// Defines or redefines a dataset (administrators). Budgets already spent on it
    /// stay spent.
    pub async fn put(&self, rc: &RequestContext, id: &str, spec: DatasetSpec) -> Result<Dataset> {
        self.broker
            .authorizer()
            .authorize(rc, &Action::new(Verb::Administer, Resource::Datasets))?;
        dataset::check_id(id)?;
        self.broker.check_tenant(rc)?;
        spec.validate()?;
        let now = self.clock.now();
        let issued = match self.store.get_doc(&rc.tenant, DATASETS, id)? {
            Some(v) => self.stored(&rc.tenant, id, v)?.issued,
            None => now,
        };
        let d = Dataset {
            id: id.to_string(),
            spec,
            issued,
            modified: now,
            author: rc.actor(),
        };
        let v = serde_json::to_value(&d).map_err(|e| CatalogError::Io(e.to_string()))?;
        self.store
            .put_doc(&rc.tenant, DATASETS, id, v, &rc.origin())?
            .wait()
            .await?;
        tracing::info!(dataset = id, actor = %rc.actor(), "dataset defined");
        Ok(d)
    }

    /// Removes a dataset (administrators). Its budgets stay in the ledger, so that
    /// defining it again does not give consumers a fresh allowance.
    pub async fn delete(&self, rc: &RequestContext, id: &str) -> Result<()> {
        self.broker
            .authorizer()
            .authorize(rc, &Action::new(Verb::Administer, Resource::Datasets))?;
        dataset::check_id(id)?;
        match self
            .store
            .delete_doc(&rc.tenant, DATASETS, id, &rc.origin())?
        {
            Some(c) => c.wait().await?,
            None => return Err(CatalogError::NotFound(format!("no dataset '{id}'"))),
        }
        tracing::info!(dataset = id, actor = %rc.actor(), "dataset removed");
        Ok(())
    }

    /// Who is charged for a release: the authenticated user, or everyone anonymous
    /// together (an open-data consumer is not identifiable, so anonymous callers share
    /// one budget).
    fn consumer(rc: &RequestContext) -> String {
        if rc.principal.is_anonymous() {
            "anonymous".into()
        } else {
            rc.actor()
        }
    }

    fn ledger_id(dataset: &str, consumer: &str) -> String {
        format!("{dataset}|{consumer}")
    }

    /// What `rc` has spent on a dataset.
    pub fn spent(&self, rc: &RequestContext, dataset: &str) -> Result<Spent> {
        let consumer = Catalog::consumer(rc);
        let key = (rc.tenant.clone(), dataset.to_string(), consumer.clone());
        if let Some(s) = self.ledger.lock().get(&key) {
            return Ok(*s);
        }
        let s =
            match self
                .store
                .get_doc(&rc.tenant, LEDGER, &Catalog::ledger_id(dataset, &consumer))?
            {
                Some(v) => serde_json::from_value(v)
                    .map_err(|e| CatalogError::Io(format!("privacy ledger of {dataset}: {e}")))?,
                None => Spent::default(),
            };
        Ok(*self.ledger.lock().entry(key).or_insert(s))
    }

    /// Charges `cost` to `rc` on the dataset if its budget allows, durably, before the
    /// release is answered. A failed write leaves it charged (never the other way).
    async fn charge(
        &self,
        rc: &RequestContext,
        d: &Dataset,
        p: &PrivacySpec,
        cost: citybrain_privacy::Cost,
    ) -> Result<Spent> {
        self.spent(rc, &d.id)?;
        let consumer = Catalog::consumer(rc);
        let key = (rc.tenant.clone(), d.id.clone(), consumer.clone());
        // The ledger document is written while the lock is held (the write is only
        // queued; durability is awaited after), so documents reach the log in the
        // order the charges were admitted and a restart never finds a smaller total.
        let (next, commit) = {
            let mut ledger = self.ledger.lock();
            let now = ledger.get(&key).copied().unwrap_or_default();
            let next = match now.admit(&p.budget, cost) {
                Ok(next) => next,
                Err(ex) => {
                    drop(ledger);
                    self.exhausted.lock().push(Exhaustion {
                        tenant: rc.tenant.clone(),
                        dataset: d.id.clone(),
                        consumer: consumer.clone(),
                        at: self.clock.now(),
                    });
                    tracing::warn!(dataset = %d.id, %consumer, "privacy budget exhausted");
                    return Err(CatalogError::Exhausted(format!("dataset '{}': {ex}", d.id)));
                }
            };
            // Charged in memory before the write: a failed write leaves it charged.
            ledger.insert(key, next);
            let v = serde_json::to_value(next).map_err(|e| CatalogError::Io(e.to_string()))?;
            let commit = self.store.put_doc(
                &rc.tenant,
                LEDGER,
                &Catalog::ledger_id(&d.id, &consumer),
                v,
                &rc.origin(),
            )?;
            (next, commit)
        };
        commit.wait().await?;
        Ok(next)
    }
}
