//! The conformance suite of the storage API: what every backend must do, run against
//! the embedded engine by its tests (and by any other backend's). Each check makes a
//! fresh store with the factory it is given, and panics with what went wrong.
//!
//! ```ignore
//! citybrain_storage::conformance::run_all(&|| {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = MyStore::open(dir.path()).unwrap();
//!     (Arc::new(store) as Arc<dyn EntityStore>, Box::new(dir) as Box<dyn std::any::Any>)
//! });
//! ```

use std::any::Any;
use std::ops::ControlFlow;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use citybrain_model::entity::parse_entity;
use citybrain_model::{Entity, JsonLdContext, ModelError};
use serde_json::json;

use crate::{EntityStore, ModifyOptions, Origin, Write};

/// Makes a fresh, empty store; the second value is kept alive as long as the store
/// is used (a temporary directory, a database schema...).
pub type Factory<'a> = &'a dyn Fn() -> (Arc<dyn EntityStore>, Box<dyn Any>);

/// Runs every check.
pub fn run_all(make: Factory<'_>) {
    entities_are_written_read_and_scanned_in_id_order(make);
    a_refused_write_writes_nothing(make);
    bulk_writes_are_index_aligned(make);
    documents_are_kept_per_tenant_and_collection(make);
    the_feed_carries_every_change_in_order_with_its_origin(make);
    the_feed_resumes_from_a_position(make);
    history_is_recorded_and_read_back(make);
}

fn rt() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("conformance: no runtime: {e}"),
    }
}

fn at() -> DateTime<Utc> {
    citybrain_model::time::from_millis(1_767_225_600_000) // 2026-01-01
}

fn entity(id: &str, ty: &str, v: i64) -> Entity {
    let body = json!({"id": id, "type": ty, "v": {"type": "Property", "value": v, "observedAt": "2026-01-01T00:00:00Z"}});
    match body
        .as_object()
        .map(|o| parse_entity(o, &JsonLdContext::core(), at()))
    {
        Some(Ok(e)) => e,
        other => panic!("conformance: bad fixture: {other:?}"),
    }
}

fn put(store: &dyn EntityStore, tenant: &str, e: Entity, origin: &Origin) {
    let id = e.id.clone();
    let m = store
        .modify(
            tenant,
            &id,
            &mut |_| Ok(Some(Write::Put(e.clone()))),
            origin,
        )
        .unwrap_or_else(|err| panic!("conformance: put {id}: {err}"))
        .unwrap_or_else(|| panic!("conformance: put {id} wrote nothing"));
    rt().block_on(m.commit.wait())
        .unwrap_or_else(|err| panic!("conformance: put {id} never became durable: {err}"));
}

fn ids(
    store: &dyn EntityStore,
    tenant: &str,
    types: Option<&[String]>,
    after: Option<&str>,
) -> Vec<String> {
    let mut out = Vec::new();
    store
        .scan(tenant, types, after, &mut |e| {
            out.push(e.id.clone());
            ControlFlow::Continue(())
        })
        .unwrap_or_else(|err| panic!("conformance: scan: {err}"));
    out
}

/// Writes, reads, counts and scans (id order, type filter, cursor, early stop).
pub fn entities_are_written_read_and_scanned_in_id_order(make: Factory<'_>) {
    let (store, _keep) = make();
    let s = &*store;
    assert!(
        !s.tenant_exists("t").unwrap_or(true),
        "an unwritten tenant exists"
    );
    for (id, ty) in [("urn:c", "A"), ("urn:a", "A"), ("urn:b", "B")] {
        put(s, "t", entity(id, ty, 1), &Origin::default());
    }
    put(s, "u", entity("urn:z", "A", 1), &Origin::default());
    assert_eq!(s.tenant_exists("t").ok(), Some(true));
    let tenants = s.tenants().unwrap_or_default();
    assert!(tenants.contains(&"t".to_string()) && tenants.contains(&"u".to_string()));
    assert_eq!(s.count("t").ok(), Some(3));
    let got = s.get("t", "urn:a").ok().flatten().map(|e| e.id.clone());
    assert_eq!(got.as_deref(), Some("urn:a"));
    assert!(
        s.get("t", "urn:z").ok().flatten().is_none(),
        "tenants are isolated"
    );
    assert_eq!(ids(s, "t", None, None), ["urn:a", "urn:b", "urn:c"]);
    assert_eq!(
        ids(s, "t", None, Some("urn:a")),
        ["urn:b", "urn:c"],
        "paged by cursor"
    );
    let a = JsonLdContext::core().expand("A");
    assert_eq!(ids(s, "t", Some(&[a]), None), ["urn:a", "urn:c"]);
    let mut first = Vec::new();
    s.scan("t", None, None, &mut |e| {
        first.push(e.id.clone());
        ControlFlow::Break(())
    })
    .unwrap_or_else(|err| panic!("conformance: scan: {err}"));
    assert_eq!(first, ["urn:a"], "a scan stops when the visitor breaks");
    let m = s
        .modify(
            "t",
            "urn:a",
            &mut |_| Ok(Some(Write::Delete)),
            &Origin::default(),
        )
        .ok()
        .flatten();
    assert!(m.is_some(), "delete wrote nothing");
    assert_eq!(s.count("t").ok(), Some(2));
}

/// A refused decision writes nothing and does not create the tenant.
pub fn a_refused_write_writes_nothing(make: Factory<'_>) {
    let (store, _keep) = make();
    let r = store.modify(
        "ghost",
        "urn:a",
        &mut |_| Err(ModelError::bad_data("no")),
        &Origin::default(),
    );
    assert!(r.is_err(), "a refusal is an error");
    assert_eq!(store.tenant_exists("ghost").ok(), Some(false));
    let none = store.modify("t", "urn:a", &mut |_| Ok(None), &Origin::default());
    assert!(matches!(none, Ok(None)));
    assert_eq!(store.count("t").ok(), Some(0));
}

/// `modify_many` answers per item, in order; a refused item leaves the others.
pub fn bulk_writes_are_index_aligned(make: Factory<'_>) {
    let (store, _keep) = make();
    let ids = vec![
        "urn:1".to_string(),
        "urn:2".to_string(),
        "urn:3".to_string(),
    ];
    let res = store
        .modify_many(
            "t",
            &ids,
            &mut |i, _| match i {
                1 => Err(ModelError::bad_data("refused")),
                _ => Ok(Some(entity(&format!("urn:{}", i + 1), "A", i as i64))),
            },
            ModifyOptions::default(),
        )
        .unwrap_or_else(|err| panic!("conformance: modify_many: {err}"));
    assert_eq!(res.len(), 3);
    assert!(matches!(res[0], Ok(Some(_))) && res[1].is_err() && matches!(res[2], Ok(Some(_))));
    for r in res.into_iter().flatten().flatten() {
        rt().block_on(r.commit.wait())
            .unwrap_or_else(|err| panic!("conformance: bulk commit: {err}"));
    }
    assert_eq!(ids_of(&*store), ["urn:1", "urn:3"]);
}

fn ids_of(store: &dyn EntityStore) -> Vec<String> {
    ids(store, "t", None, None)
}

/// Documents are keyed by tenant, collection and id; no read crosses tenants.
pub fn documents_are_kept_per_tenant_and_collection(make: Factory<'_>) {
    let (store, _keep) = make();
    let o = Origin::new("service:test", None);
    for (t, c, id) in [
        ("t", "rules", "b"),
        ("t", "rules", "a"),
        ("u", "rules", "a"),
        ("t", "plans", "x"),
    ] {
        let commit = store
            .put_doc(t, c, id, json!({"t": t, "id": id}), &o)
            .unwrap_or_else(|err| panic!("conformance: put_doc: {err}"));
        rt().block_on(commit.wait())
            .unwrap_or_else(|err| panic!("conformance: put_doc commit: {err}"));
    }
    let docs = store.docs("t", "rules").unwrap_or_default();
    let keys: Vec<&str> = docs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "b"], "one tenant's collection, in id order");
    assert_eq!(
        store.get_doc("u", "rules", "a").ok().flatten(),
        Some(json!({"t": "u", "id": "a"}))
    );
    assert_eq!(store.get_doc("u", "rules", "b").ok().flatten(), None);
    let tenants = store.doc_tenants("rules").unwrap_or_default();
    assert_eq!(tenants, ["t", "u"]);
    let gone = store.delete_doc("t", "rules", "a", &o).ok().flatten();
    assert!(gone.is_some());
    assert!(store
        .delete_doc("t", "rules", "a", &o)
        .ok()
        .flatten()
        .is_none());
    assert_eq!(store.docs("t", "rules").unwrap_or_default().len(), 1);
}

/// The feed carries every durable change in log order, with who made it.
pub fn the_feed_carries_every_change_in_order_with_its_origin(make: Factory<'_>) {
    let (store, _keep) = make();
    let mut feed = store.subscribe();
    let ana = Origin::new("user:ana", Some("r-1"));
    for i in 0..5 {
        put(&*store, "t", entity(&format!("urn:{i}"), "A", i), &ana);
    }
    let rt = rt();
    let mut last = 0;
    for i in 0..5 {
        let c = rt
            .block_on(feed.recv())
            .unwrap_or_else(|| panic!("conformance: change {i} missing from the feed"));
        assert!(c.lsn > last, "log order");
        last = c.lsn;
        assert_eq!(
            c.after.as_ref().map(|e| e.id.clone()),
            Some(format!("urn:{i}"))
        );
        assert_eq!(c.origin, ana);
        assert_eq!(&*c.tenant, "t");
    }
}

/// A subscriber may resume from a position it saw.
pub fn the_feed_resumes_from_a_position(make: Factory<'_>) {
    let (store, _keep) = make();
    let mut feed = store.subscribe();
    for i in 0..4 {
        put(
            &*store,
            "t",
            entity(&format!("urn:{i}"), "A", i),
            &Origin::default(),
        );
    }
    let rt = rt();
    let first = rt
        .block_on(feed.recv())
        .unwrap_or_else(|| panic!("conformance: no change on the feed"));
    let mut resumed = store
        .subscribe_from(Some(first.lsn))
        .unwrap_or_else(|gap| panic!("conformance: cannot resume from {}: {gap}", first.lsn));
    for i in 1..4 {
        let c = rt
            .block_on(resumed.recv())
            .unwrap_or_else(|| panic!("conformance: resumed feed lacks change {i}"));
        assert_eq!(
            c.after.as_ref().map(|e| e.id.clone()),
            Some(format!("urn:{i}"))
        );
    }
    assert!(resumed.try_recv().is_err(), "nothing after the last change");
}

/// A store that keeps history records each change and reads it back.
pub fn history_is_recorded_and_read_back(make: Factory<'_>) {
    let (store, _keep) = make();
    let Some(history) = store.history() else {
        return;
    };
    put(&*store, "t", entity("urn:h", "A", 1), &Origin::default());
    put(&*store, "t", entity("urn:h", "A", 2), &Origin::default());
    let reader = history.reader();
    let h = reader
        .entity("t", "urn:h")
        .unwrap_or_else(|| panic!("conformance: no history for urn:h"));
    assert_eq!(h.series.len(), 1, "one series: attribute v");
    let sel = citybrain_tsdb::Selection {
        time: citybrain_tsdb::TimeProp::Recorded,
        lower: std::ops::Bound::Unbounded,
        upper: std::ops::Bound::Unbounded,
        last_n: None,
    };
    let (points, errors) = reader.read(h.series[0].id, &sel);
    assert!(errors.is_empty());
    assert!(!points.is_empty(), "the recorded instances read back");
    let mut seen = Vec::new();
    reader.scan("t", None, &mut |e| {
        seen.push(e.id.to_string());
        ControlFlow::Continue(())
    });
    assert_eq!(seen, ["urn:h"]);
}
