//! Document collections handed to the crates that keep their own resources beside the
//! broker's (context source registrations): one named collection of each tenant's
//! documents, and nothing else of the store.

use std::sync::Arc;

use citybrain_storage::EntityStore;
use serde_json::Value;

use crate::error::Result;
use crate::request::RequestContext;
use crate::Broker;

/// One named collection of every tenant's documents.
#[derive(Clone)]
pub struct Collection {
    store: Arc<dyn EntityStore>,
    name: &'static str,
}

impl Collection {
    /// Writes a document and waits until it is durable.
    pub async fn put(&self, rc: &RequestContext, id: &str, doc: Value) -> Result<()> {
        self.store
            .put_doc(&rc.tenant, self.name, id, doc, &rc.origin())?
            .wait()
            .await?;
        Ok(())
    }

    /// Removes a document (nothing when there is none) and waits until it is durable.
    pub async fn delete(&self, rc: &RequestContext, id: &str) -> Result<()> {
        if let Some(c) = self
            .store
            .delete_doc(&rc.tenant, self.name, id, &rc.origin())?
        {
            c.wait().await?;
        }
        Ok(())
    }

    /// Every tenant's documents: (tenant, id, document).
    pub fn load(&self) -> Result<Vec<(String, String, Value)>> {
        Ok(citybrain_storage::load_collection(&*self.store, self.name)?)
    }
}

impl Broker {
    /// The documents of one collection, for a crate that keeps its own resources.
    pub fn collection(&self, name: &'static str) -> Collection {
        Collection {
            store: self.store.clone(),
            name,
        }
    }
}
