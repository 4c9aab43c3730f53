//! A broker on a temporary embedded store with the ingestion pipeline.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use citybrain_broker::{Broker, BrokerConfig, EntityQuery, QueryParams, RequestContext};
use citybrain_ingest::deadletter::DeadLetters;
use citybrain_ingest::{Ingest, IngestSettings};
use citybrain_model::time::SystemClock;
use citybrain_model::JsonLdContext;
use citybrain_store::{EmbeddedStore, EntityStore, StoreOptions};
use serde_json::Value;

pub struct Env {
    pub ing: Arc<Ingest>,
    pub broker: Arc<Broker>,
    pub _store: EmbeddedStore,
    pub dir: tempfile::TempDir,
}

pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

pub async fn env_with(mappings: &Path) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(StoreOptions::new(dir.path().join("data"))).unwrap();
    let dynstore: Arc<dyn EntityStore> = Arc::new(store.clone());
    let broker = Broker::new(dynstore, Arc::new(SystemClock), BrokerConfig::default()).await;
    broker.start();
    let dead = Arc::new(DeadLetters::open(&dir.path().join("dead")).unwrap());
    let ing = Ingest::new(
        broker.clone(),
        dead,
        IngestSettings {
            mappings_dir: Some(mappings.to_path_buf()),
            ..Default::default()
        },
    )
    .unwrap();
    Env {
        ing: Arc::new(ing),
        broker,
        _store: store,
        dir,
    }
}

pub fn query(b: &Broker, params: QueryParams) -> Vec<Value> {
    let q = EntityQuery::from_params(&params, &JsonLdContext::core(), 100, 1000).unwrap();
    let page = b.query_entities(&RequestContext::default(), &q).unwrap();
    page.entities
        .iter()
        .map(|e| {
            Value::Object(citybrain_model::render::render_entity(
                e,
                &JsonLdContext::core(),
                &Default::default(),
            ))
        })
        .collect()
}

/// The entity as NGSI-LD normalized JSON, if it exists.
pub fn entity(b: &Broker, id: &str) -> Option<Value> {
    b.retrieve_entity(&RequestContext::default(), id)
        .ok()
        .map(|e| {
            Value::Object(citybrain_model::render::render_entity(
                &e,
                &JsonLdContext::core(),
                &Default::default(),
            ))
        })
}
