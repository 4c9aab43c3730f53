//! The embedded engine as an [`EntityStore`]: reads under the tenant's read lock,
//! read-modify-writes under its write lock (append to the log, then apply), documents,
//! the change feed.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use citybrain_model::Entity;
use citybrain_storage::{Feed, FeedGap};
use serde_json::Value;

use super::*;

impl EmbeddedStore {
    /// Visits what an index of the tenant's state finds (`find`), in its order,
    /// under the tenant's read lock; false when the state keeps no such index.
    fn visit_found(
        &self,
        tenant: &str,
        find: impl FnOnce(&crate::state::TenantState) -> Option<Vec<Arc<Entity>>>,
        visit: &mut dyn FnMut(&Arc<Entity>) -> ControlFlow<()>,
    ) -> bool {
        let Some(t) = self.tenant(tenant) else {
            return true;
        };
        let st = t.state.read();
        let Some(found) = find(&st) else {
            return false;
        };
        for e in &found {
            if visit(e).is_break() {
                break;
            }
        }
        true
    }
}

impl EntityStore for EmbeddedStore {
    fn tenant_exists(&self, tenant: &str) -> Result<bool, StoreError> {
        Ok(self
            .tenant(tenant)
            .is_some_and(|t| t.written.load(Ordering::Acquire)))
    }

    fn tenants(&self) -> Result<Vec<String>, StoreError> {
        let mut v: Vec<String> = self
            .inner
            .tenants
            .read()
            .iter()
            .filter(|(_, t)| t.written.load(Ordering::Acquire))
            .map(|(k, _)| k.to_string())
            .collect();
        v.sort();
        Ok(v)
    }

    fn get(&self, tenant: &str, id: &str) -> Result<Option<Arc<Entity>>, StoreError> {
        Ok(self
            .tenant(tenant)
            .and_then(|t| t.state.read().get(id).cloned()))
    }

    fn scan(
        &self,
        tenant: &str,
        types: Option<&[String]>,
        after: Option<&str>,
        visit: &mut dyn FnMut(&Arc<Entity>) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        if let Some(t) = self.tenant(tenant) {
            t.state.read().scan(types, after, visit);
        }
        Ok(())
    }

    fn scan_values(
        &self,
        tenant: &str,
        attr: &str,
        ranges: &[citybrain_model::q::KeyRange],
        visit: &mut dyn FnMut(&Arc<Entity>) -> ControlFlow<()>,
    ) -> Result<bool, StoreError> {
        Ok(self.visit_found(tenant, |st| st.in_ranges(attr, ranges), visit))
    }

    fn scan_area(
        &self,
        tenant: &str,
        attr: &str,
        boxes: &[citybrain_model::geobox::BBox],
        visit: &mut dyn FnMut(&Arc<Entity>) -> ControlFlow<()>,
    ) -> Result<bool, StoreError> {
        Ok(self.visit_found(tenant, |st| st.in_boxes(attr, boxes), visit))
    }

    fn type_names(&self, tenant: &str) -> Result<Option<Vec<Arc<str>>>, StoreError> {
        Ok(Some(
            self.tenant(tenant)
                .map(|t| t.state.read().type_names())
                .unwrap_or_default(),
        ))
    }

    fn backup(&self, dest: &std::path::Path) -> Result<BackupReport, StoreError> {
        self.backup_to(dest)
    }

    fn count(&self, tenant: &str) -> Result<usize, StoreError> {
        Ok(self
            .tenant(tenant)
            .map(|t| t.state.read().len())
            .unwrap_or(0))
    }

    fn modify_opts(
        &self,
        tenant: &str,
        id: &str,
        decide: &mut Decide<'_>,
        opts: ModifyOptions,
    ) -> Result<Option<Modified>, StoreError> {
        self.writable()?;
        let existing = self.tenant(tenant);
        let t = match existing {
            Some(t) => t,
            None => {
                // Decide first so that a refused write does not create the tenant.
                if decide(None)?.is_none() {
                    return Ok(None);
                }
                let t = self.tenant_or_create(tenant);
                t.written.store(false, Ordering::Release);
                t
            }
        };
        let mut st = t.state.write();
        let before = st.get(id).cloned();
        let Some(w) = decide(before.as_ref())? else {
            return Ok(None);
        };
        let now = self.inner.options.clock.now_precise();
        let tenant_arc: Arc<str> = Arc::from(tenant);
        let (lsn, after) = match w {
            Write::Put(e) => {
                let (lsn, after) =
                    self.put_locked(&t, &mut st, tenant, &tenant_arc, id, &before, e, &opts, now)?;
                self.inner.wake.notify_one();
                (lsn, Some(after))
            }
            Write::Delete => {
                if before.is_none() {
                    return Ok(None);
                }
                let change = Change {
                    lsn: 0,
                    tenant: tenant_arc,
                    kind: ChangeKind::Deleted,
                    before: before.clone(),
                    after: None,
                    at: now,
                    origin: opts.origin.clone(),
                };
                let at = now.timestamp_micros();
                let ops = match (&before, opts.history) {
                    (Some(b), true) => history::derive_delete(&change.tenant, b, at),
                    _ => Vec::new(),
                };
                let hist = (!ops.is_empty()).then(|| t.hist.lock());
                let lsn = self.append(
                    WalOpRef::DeleteEntity {
                        t: tenant,
                        id,
                        nh: !opts.history,
                        at,
                    },
                    &opts.origin,
                    Some(change),
                )?;
                st.delete(id);
                for op in &ops {
                    self.inner.history.apply(op);
                }
                drop(hist);
                (lsn, None)
            }
        };
        t.written.store(true, Ordering::Release);
        drop(st);
        Ok(Some(Modified {
            commit: self.commit(lsn),
            before,
            after,
        }))
    }

    fn modify_many(
        &self,
        tenant: &str,
        ids: &[String],
        decide: &mut ManyDecide<'_>,
        opts: ModifyOptions,
    ) -> Result<Vec<Result<Option<Modified>, citybrain_model::ModelError>>, StoreError> {
        self.writable()?;
        self.modify_many_locked(tenant, ids, decide, opts)
    }

    fn put_doc(
        &self,
        tenant: &str,
        collection: &str,
        id: &str,
        value: Value,
        origin: &Origin,
    ) -> Result<Commit, StoreError> {
        self.writable()?;
        let t = self.tenant_or_create(tenant);
        let mut docs = self.inner.docs.write();
        let lsn = self.append(
            WalOpRef::PutDoc {
                t: tenant,
                c: collection,
                id,
                v: &value,
            },
            origin,
            None,
        )?;
        let (k, d) = stored(
            collection.to_string(),
            tenant.to_string(),
            id.to_string(),
            value,
        );
        docs.insert(k, d);
        t.written.store(true, Ordering::Release);
        Ok(self.commit(lsn))
    }

    fn delete_doc(
        &self,
        tenant: &str,
        collection: &str,
        id: &str,
        origin: &Origin,
    ) -> Result<Option<Commit>, StoreError> {
        self.writable()?;
        let mut docs = self.inner.docs.write();
        let key = (collection.to_string(), tenant.to_string(), id.to_string());
        if !docs.contains_key(&key) {
            return Ok(None);
        }
        let lsn = self.append(
            WalOpRef::DeleteDoc {
                t: tenant,
                c: collection,
                id,
            },
            origin,
            None,
        )?;
        docs.remove(&key);
        Ok(Some(self.commit(lsn)))
    }

    fn get_doc(
        &self,
        tenant: &str,
        collection: &str,
        id: &str,
    ) -> Result<Option<Value>, StoreError> {
        Ok(self
            .inner
            .docs
            .read()
            .get(&(collection.to_string(), tenant.to_string(), id.to_string()))
            .map(|d| d.v.clone()))
    }

    fn docs(&self, tenant: &str, collection: &str) -> Result<Vec<(String, Value)>, StoreError> {
        let from = (collection.to_string(), tenant.to_string(), String::new());
        Ok(self
            .inner
            .docs
            .read()
            .range(from..)
            .take_while(|((c, t, _), _)| c == collection && t == tenant)
            .map(|((_, _, id), d)| (id.clone(), d.v.clone()))
            .collect())
    }

    fn doc_tenants(&self, collection: &str) -> Result<Vec<String>, StoreError> {
        let from = (collection.to_string(), String::new(), String::new());
        let mut out: Vec<String> = Vec::new();
        for ((c, t, _), _) in self.inner.docs.read().range(from..) {
            if c != collection {
                break;
            }
            if out.last() != Some(t) {
                out.push(t.clone());
            }
        }
        Ok(out)
    }

    fn subscribe_from(&self, from: Option<u64>) -> Result<Feed, FeedGap> {
        self.inner.feed.lock().subscribe(from)
    }

    fn stats(&self) -> StoreStats {
        self.stats_inner()
    }

    fn history(&self) -> Option<&dyn HistoryStore> {
        Some(self)
    }
}
