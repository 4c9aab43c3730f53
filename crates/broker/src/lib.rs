//! The NGSI-LD context broker domain. [`Broker`] holds the store, the `@context`
//! resolver, the clock and the subscription manager, and implements every operation of
//! the API as a method taking a [`RequestContext`]. HTTP is an adapter on top
//! (`citybrain-api`); nothing here knows about HTTP.

pub mod access;
pub mod backup;
pub mod batch;
pub mod contexts;
pub mod discovery;
pub mod docs;
pub mod entities;
pub mod error;
pub mod observations;
pub mod order;
pub mod purge;
pub mod query;
pub mod request;
pub mod subscriptions;
pub mod temporal;

use std::sync::Arc;
use std::time::Duration;

use citybrain_access::{AllowAll, Authorizer};
use citybrain_model::time::Clock;
use citybrain_storage::EntityStore;

pub use batch::{BatchItem, BatchOutcome, UpsertMode};
pub use contexts::{ContextResolver, ContextSettings};
pub use error::{BrokerError, Result};
pub use observations::{ObservationBatch, StagedObservations};
pub use query::{EntityQuery, QueryPage, QueryParams};
pub use request::{Principal, RequestContext};
pub use subscriptions::{DispatchSettings, SubscriptionManager};
pub use temporal::{TemporalFormat, TemporalPage, TemporalParams, TemporalQuery};

/// A background task of the broker, for a supervisor to run.
pub type BackgroundTask = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Limits that protect the broker from oversized requests.
#[derive(Debug, Clone)]
pub struct Limits {
    pub default_limit: usize,
    pub max_limit: usize,
    pub max_batch: usize,
    /// Most instances per attribute series in one temporal answer (more: 206).
    pub max_instances: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            default_limit: 20,
            max_limit: 1000,
            max_batch: 100_000,
            max_instances: 10_000,
        }
    }
}

/// Everything the broker needs to be built.
pub struct BrokerConfig {
    pub limits: Limits,
    pub contexts: ContextSettings,
    pub dispatch: DispatchSettings,
    /// What every operation passes through (allow-all until governance lands).
    pub authorizer: Arc<dyn Authorizer>,
    /// Where `@context` fetches and notifications may go.
    pub egress: Arc<citybrain_egress::EgressPolicy>,
    /// Where online backups go (`storage.backup_dir`); `None`: no backups on request.
    pub backup_dir: Option<std::path::PathBuf>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            contexts: ContextSettings {
                public_base: "http://127.0.0.1:1026".into(),
                fetch_timeout: Duration::from_secs(5),
                max_bytes: 1 << 20,
            },
            dispatch: DispatchSettings::default(),
            authorizer: Arc::new(AllowAll),
            egress: Arc::new(citybrain_egress::EgressPolicy::open()),
            backup_dir: None,
        }
    }
}

/// The context broker.
pub struct Broker {
    pub(crate) store: Arc<dyn EntityStore>,
    pub contexts: Arc<ContextResolver>,
    pub(crate) clock: Arc<dyn Clock>,
    pub subscriptions: Arc<SubscriptionManager>,
    pub limits: Limits,
    pub(crate) authz: Arc<dyn Authorizer>,
    /// Where outbound requests may go (its refusals are counted).
    pub egress: Arc<citybrain_egress::EgressPolicy>,
    pub(crate) backup_dir: Option<std::path::PathBuf>,
}

impl Broker {
    /// Builds the broker and loads persisted subscriptions. Call [`Broker::start`] inside
    /// a Tokio runtime to start notification delivery.
    pub async fn new(
        store: Arc<dyn EntityStore>,
        clock: Arc<dyn Clock>,
        config: BrokerConfig,
    ) -> Arc<Broker> {
        let contexts = Arc::new(ContextResolver::new(
            config.contexts,
            store.clone(),
            clock.clone(),
            config.egress.clone(),
        ));
        let subscriptions = SubscriptionManager::new(
            store.clone(),
            contexts.clone(),
            clock.clone(),
            config.dispatch,
            config.authorizer.clone(),
            config.egress.clone(),
        );
        subscriptions.load().await;
        Arc::new(Broker {
            store,
            contexts,
            clock,
            subscriptions,
            limits: config.limits,
            authz: config.authorizer,
            egress: config.egress,
            backup_dir: config.backup_dir,
        })
    }

    /// Starts the background tasks (see [`Broker::background`]) on the runtime,
    /// unsupervised (tests, tools).
    pub fn start(&self) {
        for (_, task) in self.background() {
            tokio::spawn(task);
        }
    }

    /// The background tasks, named, for a supervisor to run and stop: change-feed
    /// matching and periodic notifications.
    pub fn background(&self) -> Vec<(&'static str, BackgroundTask)> {
        let feed = self.store.subscribe();
        vec![
            (
                "subscriptions",
                Box::pin(self.subscriptions.clone().run(feed)) as BackgroundTask,
            ),
            (
                "periodic-notifications",
                Box::pin(self.subscriptions.clone().run_periodic()),
            ),
        ]
    }

    /// Storage counters for `/health` and `/metrics` (the store itself is not handed
    /// out: every read and write goes through the broker's operations and its
    /// authorizer).
    pub fn storage_stats(&self) -> citybrain_storage::StoreStats {
        self.store.stats()
    }

    /// History counters for `/metrics`, when the store keeps history.
    pub fn history_stats(&self) -> Option<citybrain_storage::tsdb::TsdbStats> {
        self.store.history().map(|h| h.reader().stats())
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
}
