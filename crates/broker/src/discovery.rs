//! Type and attribute discovery (`/types`, `/attributes`), computed from current state.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use crate::error::Result;
use crate::request::RequestContext;
use crate::Broker;
use citybrain_access::{Action, Resource};

/// What is known of one entity type.
#[derive(Debug, Clone, Default)]
pub struct TypeInfo {
    pub iri: String,
    pub entity_count: usize,
    /// Attribute IRI → attribute kinds seen (wire type names).
    pub attributes: BTreeMap<String, BTreeSet<&'static str>>,
}

/// What is known of one attribute.
#[derive(Debug, Clone, Default)]
pub struct AttributeInfo {
    pub iri: String,
    pub count: usize,
    pub kinds: BTreeSet<&'static str>,
    pub types: BTreeSet<String>,
}

impl Broker {
    /// All entity types of the tenant, in IRI order.
    pub fn entity_types(&self, rc: &RequestContext) -> Result<Vec<TypeInfo>> {
        self.check_tenant(rc)?;
        self.allow(rc, Action::read(Resource::Catalogue))?;
        let mut map: BTreeMap<String, TypeInfo> = BTreeMap::new();
        let everything = self.authorizer().sees_everything(rc);
        self.store.scan(&rc.tenant, None, None, &mut |e| {
            // What the caller may not see is not in its catalogue either.
            let Some(e) = self.seen(rc, everything, e) else {
                return ControlFlow::Continue(());
            };
            for t in &e.types {
                let info = map.entry(t.to_string()).or_insert_with(|| TypeInfo {
                    iri: t.to_string(),
                    ..Default::default()
                });
                info.entity_count += 1;
                for (name, instances) in &e.attrs {
                    let kinds = info.attributes.entry(name.to_string()).or_default();
                    kinds.extend(instances.iter().map(|a| a.kind.type_name()));
                }
            }
            ControlFlow::Continue(())
        })?;
        Ok(map.into_values().collect())
    }

    /// All attributes of the tenant, in IRI order.
    pub fn attributes(&self, rc: &RequestContext) -> Result<Vec<AttributeInfo>> {
        self.check_tenant(rc)?;
        self.allow(rc, Action::read(Resource::Catalogue))?;
        let mut map: BTreeMap<String, AttributeInfo> = BTreeMap::new();
        let everything = self.authorizer().sees_everything(rc);
        self.store.scan(&rc.tenant, None, None, &mut |e| {
            let Some(e) = self.seen(rc, everything, e) else {
                return ControlFlow::Continue(());
            };
            for (name, instances) in &e.attrs {
                let info = map
                    .entry(name.to_string())
                    .or_insert_with(|| AttributeInfo {
                        iri: name.to_string(),
                        ..Default::default()
                    });
                info.count += instances.len();
                info.kinds
                    .extend(instances.iter().map(|a| a.kind.type_name()));
                info.types.extend(e.types.iter().map(|t| t.to_string()));
            }
            ControlFlow::Continue(())
        })?;
        Ok(map.into_values().collect())
    }
}
