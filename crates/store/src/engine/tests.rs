use super::*;
use chrono::Utc;
use citybrain_model::entity::parse_entity;
use citybrain_model::{JsonLdContext, ModelError};
use serde_json::json;
use std::ops::ControlFlow;

fn entity(id: &str, ty: &str, v: i64) -> Entity {
    let body = json!({"id": id, "type": ty, "p": v});
    parse_entity(
        body.as_object().unwrap(),
        &JsonLdContext::core(),
        SystemClock.now_precise(),
    )
    .unwrap()
}

fn put(store: &EmbeddedStore, tenant: &str, e: Entity) -> Commit {
    let id = e.id.clone();
    store
        .modify(
            tenant,
            &id,
            &mut |_| Ok(Some(Write::Put(e.clone()))),
            &Origin::default(),
        )
        .unwrap()
        .unwrap()
        .commit
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn writes_survive_reopen_via_log_and_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    {
        let s = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
        for i in 0..50 {
            rt.block_on(put(&s, "", entity(&format!("urn:x:{i:03}"), "T", i)).wait())
                .unwrap();
        }
        rt.block_on(put(&s, "t2", entity("urn:y:1", "U", 1)).wait())
            .unwrap();
        let c = s
            .put_doc(
                "",
                "subscriptions",
                "urn:s:1",
                json!({"a": 1}),
                &Origin::default(),
            )
            .unwrap();
        rt.block_on(c.wait()).unwrap();
        let m = s
            .modify(
                "",
                "urn:x:000",
                &mut |_| Ok(Some(Write::Delete)),
                &Origin::default(),
            )
            .unwrap()
            .unwrap();
        rt.block_on(m.commit.wait()).unwrap();
        // Simulate a crash: no close(), no final snapshot. The committer is detached.
        s.crash();
    }
    let s = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    assert_eq!(s.count("").unwrap(), 49);
    assert!(s.get("", "urn:x:000").unwrap().is_none());
    assert!(s.get("", "urn:x:001").unwrap().is_some());
    assert!(s.tenant_exists("t2").unwrap());
    assert!(!s.tenant_exists("t3").unwrap());
    assert_eq!(
        s.get_doc("", "subscriptions", "urn:s:1").unwrap(),
        Some(json!({"a": 1}))
    );
    // A clean close snapshots; reopening then replays nothing and sees the same state.
    rt.block_on(put(&s, "", entity("urn:x:999", "T", 9)).wait())
        .unwrap();
    s.close();
    assert_eq!(snapshot::list(dir.path()).unwrap().len(), 1);
    let s = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    assert_eq!(s.count("").unwrap(), 50);
    assert_eq!(s.docs("", "subscriptions").unwrap().len(), 1);
    s.close();
}

#[test]
fn refused_writes_do_not_create_tenants_and_scan_is_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let s = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    let r = s.modify(
        "ghost",
        "urn:a:1",
        &mut |_| Err(ModelError::bad_data("no")),
        &Origin::default(),
    );
    assert!(matches!(r, Err(StoreError::Rejected(_))));
    assert!(!s.tenant_exists("ghost").unwrap());
    for (id, ty) in [("urn:b", "A"), ("urn:a", "B"), ("urn:c", "A")] {
        rt.block_on(put(&s, "", entity(id, ty, 1)).wait()).unwrap();
    }
    let mut seen = vec![];
    s.scan("", None, None, &mut |e| {
        seen.push(e.id.clone());
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(seen, ["urn:a", "urn:b", "urn:c"]);
    let a = citybrain_model::context::DEFAULT_VOCAB.to_string() + "A";
    let b = citybrain_model::context::DEFAULT_VOCAB.to_string() + "B";
    let mut seen = vec![];
    s.scan("", Some(&[a.clone(), b]), Some("urn:a"), &mut |e| {
        seen.push(e.id.clone());
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(seen, ["urn:b", "urn:c"]);
    // Retyping an entity moves it in the type index.
    rt.block_on(put(&s, "", entity("urn:b", "B", 2)).wait())
        .unwrap();
    let mut seen = vec![];
    s.scan("", Some(&[a]), None, &mut |e| {
        seen.push(e.id.clone());
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(seen, ["urn:c"]);
    s.close();
}

#[test]
fn change_feed_delivers_in_log_order_after_durability() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let s = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    let mut rx = s.subscribe();
    for i in 0..10 {
        rt.block_on(put(&s, "", entity(&format!("urn:x:{i}"), "T", i)).wait())
            .unwrap();
    }
    let mut last = 0;
    for _ in 0..10 {
        let c = rx.blocking_recv().unwrap();
        assert!(c.lsn > last);
        assert!(c.lsn <= s.stats_inner().durable_lsn);
        assert_eq!(c.kind, ChangeKind::Created);
        last = c.lsn;
    }
    s.close();
}

#[test]
fn torn_log_tail_is_cut_and_snapshots_trim_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    {
        let s = EmbeddedStore::open(StoreOptions {
            snapshot_after_bytes: 2_000,
            ..StoreOptions::new(dir.path())
        })
        .unwrap();
        for i in 0..40 {
            rt.block_on(put(&s, "", entity(&format!("urn:x:{i:03}"), "T", i)).wait())
                .unwrap();
        }
        s.crash();
    }
    assert!(
        !snapshot::list(dir.path()).unwrap().is_empty(),
        "size-triggered snapshot"
    );
    let segs = wal::list_segments(dir.path()).unwrap();
    let last = &segs.last().unwrap().1;
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    f.write_all(&[200, 1, 0, 0, 9, 9, 9]).unwrap();
    drop(f);
    let s = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    assert_eq!(s.count("").unwrap(), 40);
    rt.block_on(put(&s, "", entity("urn:x:new", "T", 1)).wait())
        .unwrap();
    s.crash();
    let s = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    assert_eq!(
        s.count("").unwrap(),
        41,
        "appends after a cut tail are readable"
    );
    s.close();
}

#[test]
fn value_index_answers_ranges_like_a_scan() {
    use citybrain_model::q::Query;
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let s = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    for i in 0..200 {
        rt.block_on(put(&s, "", entity(&format!("urn:x:{i:03}"), "T", i % 37)).wait())
            .unwrap();
    }
    // Updates move entities in the index; deletes remove them.
    rt.block_on(put(&s, "", entity("urn:x:005", "T", 1000)).wait())
        .unwrap();
    let m = s
        .modify(
            "",
            "urn:x:006",
            &mut |_| Ok(Some(Write::Delete)),
            &Origin::default(),
        )
        .unwrap()
        .unwrap();
    rt.block_on(m.commit.wait()).unwrap();
    for q in [
        "p>30",
        "p>=30;p<33",
        "p==1,2,3",
        "p==10..12",
        "p<2",
        "p==1000",
        "p>5000",
    ] {
        let mut q = Query::parse(q).unwrap();
        q.resolve(&JsonLdContext::core());
        let hint = q.index_hint().expect("indexable");
        let mut via_index = vec![];
        assert!(s
            .scan_values("", &hint.attr_iri, &hint.ranges, &mut |e| {
                if q.matches(e) {
                    via_index.push(e.id.clone());
                }
                ControlFlow::Continue(())
            })
            .unwrap());
        let mut via_scan = vec![];
        s.scan("", None, None, &mut |e| {
            if q.matches(e) {
                via_scan.push(e.id.clone());
            }
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(via_index, via_scan, "{}", q.text);
    }
    s.close();
}

fn history_points(s: &EmbeddedStore, entity: &str, attr: &str) -> Vec<citybrain_tsdb::Point> {
    let h = s.tsdb().entity("", entity).expect("entity has history");
    let info = h
        .series
        .iter()
        .find(|x| x.attr.ends_with(attr))
        .expect("series");
    s.tsdb().read(info.id, &citybrain_tsdb::Selection::all()).0
}

#[test]
fn history_follows_the_log_through_crashes_checkpoints_and_snapshots() {
    use citybrain_tsdb::{HistOp, Point, SeriesKey, Val};
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut opts = StoreOptions::new(dir.path());
    opts.history_checkpoint_points = 50;
    {
        let s = EmbeddedStore::open(opts.clone()).unwrap();
        for v in 0..30 {
            rt.block_on(put(&s, "", entity("urn:x:1", "T", v)).wait())
                .unwrap();
        }
        // The bulk path.
        let key = SeriesKey {
            tenant: Arc::from(""),
            entity: Arc::from("urn:x:2"),
            attr: Arc::from("https://example.org/temperature"),
            dataset: None,
        };
        for batch in 0..4i64 {
            let points = (0..25)
                .map(|i| Point {
                    t: 1_000_000 + batch * 25 + i,
                    rec: 0,
                    observed: true,
                    unit: None,
                    v: Val::F(i as f64 / 4.0),
                })
                .collect();
            let c = s
                .append_history(
                    "",
                    vec![HistOp::Insert {
                        key: key.clone(),
                        points,
                    }],
                )
                .unwrap();
            rt.block_on(c.wait()).unwrap();
        }
        assert_eq!(history_points(&s, "urn:x:1", "p").len(), 30);
        assert_eq!(history_points(&s, "urn:x:2", "temperature").len(), 100);
        // Let a background checkpoint happen, then crash.
        rt.block_on(put(&s, "", entity("urn:x:1", "T", 99)).wait())
            .unwrap();
        for _ in 0..100 {
            if s.tsdb().stats().checkpoints > 0 && !s.inner.hist_busy.load(Ordering::Acquire) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(s.tsdb().stats().checkpoints > 0);
        rt.block_on(put(&s, "", entity("urn:x:1", "T", 100)).wait())
            .unwrap();
        s.crash();
    }
    let s = EmbeddedStore::open(opts.clone()).unwrap();
    let p = history_points(&s, "urn:x:1", "p");
    assert_eq!(p.len(), 32, "no loss, no duplicates after replay");
    assert_eq!(p.last().unwrap().v, Val::I(100));
    assert_eq!(history_points(&s, "urn:x:2", "temperature").len(), 100);
    let recs: Vec<i64> = p.iter().map(|x| x.rec).collect();
    // A clean close snapshots (and checkpoints history); nothing is replayed twice.
    s.close();
    let s = EmbeddedStore::open(opts).unwrap();
    let p = history_points(&s, "urn:x:1", "p");
    assert_eq!(p.iter().map(|x| x.rec).collect::<Vec<_>>(), recs);
    assert!(wal::list_segments(dir.path()).unwrap().len() <= 1);
    s.close();
}

#[test]
fn updates_are_logged_as_deltas_and_replay_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let body = json!({"id": "urn:x:1", "type": "T", "p": 1, "q": "a", "r": {"x": 1}});
    let ctx = JsonLdContext::core();
    let first = parse_entity(body.as_object().unwrap(), &ctx, SystemClock.now_precise()).unwrap();
    let live = {
        let s = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
        rt.block_on(put(&s, "", first.clone()).wait()).unwrap();
        let mut e = first.clone();
        for i in 0..20 {
            // One attribute changes, the others stay.
            let at = SystemClock.now_precise();
            e.attrs[0].1 =
                citybrain_model::instances![citybrain_model::Attribute::property(json!(i), at)];
            e.modified_at = at;
            rt.block_on(put(&s, "", e.clone()).wait()).unwrap();
        }
        // An attribute removed, one added, a type added.
        e.attrs.remove(1);
        let s_name = Arc::from(ctx.expand("s"));
        e.attrs.push((
            s_name,
            citybrain_model::instances![citybrain_model::Attribute::property(
                json!(true),
                SystemClock.now_precise(),
            )],
        ));
        e.types.push(Arc::from(ctx.expand("U")));
        rt.block_on(put(&s, "", e.clone()).wait()).unwrap();
        let live = s.get("", "urn:x:1").unwrap().unwrap();
        assert_eq!(*live, e);
        s.crash(); // a crash: the log alone rebuilds the state
        live
    };
    let (mut puts, mut patches) = (0, 0);
    for (_, path) in wal::list_segments(dir.path()).unwrap() {
        wal::read_segment(&path, &mut |entry| match entry {
            wal::WalEntry::Record(r) => match r.op {
                WalOp::PutEntity { .. } => puts += 1,
                WalOp::PatchEntity { .. } => patches += 1,
                _ => {}
            },
            wal::WalEntry::History { .. } => {}
        })
        .unwrap();
    }
    assert_eq!((puts, patches), (1, 21));
    let s = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    assert_eq!(*s.get("", "urn:x:1").unwrap().unwrap(), *live);
    s.close();
}

#[test]
fn the_writer_and_its_request_are_logged_and_on_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let s = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    let mut feed = s.subscribe();
    let origin = Origin::new("user:ana", Some("req-42"));
    let e = entity("urn:x:o1", "T", 1);
    let m = s
        .modify(
            "",
            "urn:x:o1",
            &mut |_| Ok(Some(Write::Put(e.clone()))),
            &origin,
        )
        .unwrap()
        .unwrap();
    rt.block_on(m.commit.wait()).unwrap();
    let c = s
        .put_doc(
            "",
            "rules",
            "r1",
            json!({"x": 1}),
            &Origin::new("service:rules", None),
        )
        .unwrap();
    rt.block_on(c.wait()).unwrap();
    let change = rt.block_on(feed.recv()).unwrap();
    assert_eq!(change.origin, origin);
    let mut logged = Vec::new();
    for seg in wal::list_segments(dir.path()).unwrap() {
        wal::read_segment(&seg.1, &mut |entry| {
            if let wal::WalEntry::Record(r) = entry {
                logged.push((r.by, r.rq));
            }
        })
        .unwrap();
    }
    assert_eq!(
        logged,
        vec![
            (Some("user:ana".to_string()), Some("req-42".to_string())),
            (Some("service:rules".to_string()), None)
        ]
    );
    s.close();
}

#[test]
fn change_times_come_from_the_injected_clock() {
    use citybrain_model::time::ManualClock;
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let at: chrono::DateTime<Utc> = "2030-01-02T03:04:05.123456Z".parse().unwrap();
    let mut opts = StoreOptions::new(dir.path());
    opts.clock = Arc::new(ManualClock::new(at));
    let s = EmbeddedStore::open(opts).unwrap();
    let mut feed = s.subscribe();
    rt.block_on(put(&s, "", entity("urn:x:c1", "T", 1)).wait())
        .unwrap();
    let m = s
        .modify(
            "",
            "urn:x:c1",
            &mut |_| Ok(Some(Write::Delete)),
            &Origin::default(),
        )
        .unwrap()
        .unwrap();
    rt.block_on(m.commit.wait()).unwrap();
    let created = rt.block_on(feed.recv()).unwrap();
    let deleted = rt.block_on(feed.recv()).unwrap();
    assert_eq!(created.at, at);
    assert_eq!(deleted.at, at);
    s.close();
}

/// The storage API's conformance suite, against this engine.
#[test]
fn the_embedded_store_passes_the_conformance_suite() {
    citybrain_storage::conformance::run_all(&|| {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
        (
            Arc::new(store) as Arc<dyn EntityStore>,
            Box::new(dir) as Box<dyn std::any::Any>,
        )
    });
}

/// A subscriber that falls more than the feed's capacity behind is cut off with the
/// position it reached, and resumes from there while the store retains what followed;
/// a position older than that answers a gap.
#[test]
fn a_slow_subscriber_is_cut_off_and_resumes_from_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut opts = StoreOptions::new(dir.path());
    opts.feed_capacity = 4;
    let s = EmbeddedStore::open(opts).unwrap();
    let mut slow = s.subscribe();
    for i in 0..3 {
        rt.block_on(put(&s, "", entity(&format!("urn:f:{i}"), "T", i)).wait())
            .unwrap();
    }
    let first = rt.block_on(slow.recv()).unwrap();
    // Three more fill its channel (2 left + 3 = 5 > 4): cut off.
    for i in 3..6 {
        rt.block_on(put(&s, "", entity(&format!("urn:f:{i}"), "T", i)).wait())
            .unwrap();
    }
    let mut got = vec![first.lsn];
    while let Some(c) = rt.block_on(slow.recv()) {
        got.push(c.lsn);
    }
    let gap = slow.gap().expect("the slow feed was cut");
    assert_eq!(gap.after, *got.last().unwrap());
    assert_eq!(s.stats().feed_cut, 1);
    // What followed the gap was retained for it: resume there, nothing lost.
    let mut resumed = s.subscribe_from(Some(gap.after)).unwrap();
    let next = rt.block_on(resumed.recv()).unwrap();
    assert!(next.lsn > gap.after);
    assert_eq!(next.after.as_ref().unwrap().id, "urn:f:5");
    s.close();
}

#[test]
fn spatial_index_survives_snapshots_and_log_replay() {
    use citybrain_model::geojson::GeoQuery;
    const LOCATION: &str = "https://uri.etsi.org/ngsi-ld/location";
    let at = |id: &str, lon: f64| {
        let body = json!({"id": id, "type": "T",
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, 52.5]}}});
        parse_entity(
            body.as_object().unwrap(),
            &JsonLdContext::core(),
            SystemClock.now_precise(),
        )
        .unwrap()
    };
    // Ten entities 0.001° (68 m) apart along a parallel.
    let near = |s: &EmbeddedStore| {
        let q = GeoQuery::new(
            "near;maxDistance==150",
            "Point",
            json!([13.4, 52.5]),
            LOCATION.into(),
        )
        .unwrap();
        let mut ids = vec![];
        assert!(s
            .scan_area("", LOCATION, &q.candidate_boxes().unwrap(), &mut |e| {
                ids.push(e.id.clone());
                ControlFlow::Continue(())
            })
            .unwrap());
        ids
    };
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let s = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    for i in 0..10 {
        rt.block_on(
            put(
                &s,
                "",
                at(&format!("urn:x:{i}"), 13.4 + f64::from(i) * 0.001),
            )
            .wait(),
        )
        .unwrap();
    }
    assert_eq!(near(&s), ["urn:x:0", "urn:x:1", "urn:x:2"]);
    s.close();
    // From the snapshot (loaded in bulk), then changes replayed from the log.
    let s = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    assert_eq!(near(&s), ["urn:x:0", "urn:x:1", "urn:x:2"]);
    rt.block_on(put(&s, "", at("urn:x:1", 14.0)).wait())
        .unwrap();
    rt.block_on(put(&s, "", at("urn:x:9", 13.4)).wait())
        .unwrap();
    s.crash();
    let s = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    assert_eq!(near(&s), ["urn:x:0", "urn:x:2", "urn:x:9"]);
    s.close();
    // Without the index the store says so, and the caller scans.
    let s = EmbeddedStore::open(StoreOptions {
        spatial_index: false,
        ..StoreOptions::new(dir.path())
    })
    .unwrap();
    assert!(!s
        .scan_area(
            "",
            LOCATION,
            &[citybrain_model::geobox::BBox::WORLD],
            &mut |_| { ControlFlow::Continue(()) }
        )
        .unwrap());
    s.close();
}

#[test]
fn an_online_backup_holds_exactly_the_writes_up_to_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || StoreOptions {
        // Snapshots, segment switches and history checkpoints while the backup runs.
        snapshot_after_bytes: 40_000,
        history_checkpoint_points: 300,
        ..StoreOptions::new(dir.path())
    };
    let s = EmbeddedStore::open(opts()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let rt = rt();
            let mut log: Vec<(u64, String, i64)> = Vec::new();
            let mut i = 0i64;
            // At least 3,000 writes, and on until the backup is done.
            while i < 3000 || !stop.load(Ordering::Acquire) {
                let id = format!("urn:x:{:02}", i % 40);
                let c = put(&s, "", entity(&id, "T", i));
                let lsn = c.lsn().unwrap();
                rt.block_on(c.wait()).unwrap();
                log.push((lsn, id, i));
                i += 1;
            }
            log
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let backup = dir.path().join("backups").join("b1");
    let report = s.backup_to(&backup).unwrap();
    // The writer goes on after the copy, which proves nothing waited for it.
    std::thread::sleep(std::time::Duration::from_millis(100));
    stop.store(true, Ordering::Release);
    let log = writer.join().unwrap();
    assert!(
        log.iter().any(|(lsn, _, _)| *lsn > report.lsn),
        "writes went on"
    );
    assert!(log.iter().any(|(lsn, _, _)| *lsn <= report.lsn));
    assert!(s.stats().snapshots > 0, "a snapshot ran during the test");
    // A backup only goes into an empty directory.
    assert!(matches!(
        s.backup_to(&backup),
        Err(StoreError::Rejected(m)) if m.kind == citybrain_model::ErrorKind::AlreadyExists
    ));
    s.close();

    let restored = dir.path().join("restored");
    let manifest = restore(&backup, &restored).unwrap();
    assert_eq!(manifest.lsn, report.lsn);
    let r = EmbeddedStore::open(StoreOptions::new(&restored)).unwrap();
    let value = |e: &Entity| match e.attrs.iter().find(|(n, _)| n.ends_with("/p")) {
        Some((_, i)) => i[0].value.clone(),
        None => panic!("no p"),
    };
    for k in 0..40 {
        let id = format!("urn:x:{k:02}");
        let upto: Vec<i64> = log
            .iter()
            .filter(|(lsn, x, _)| *x == id && *lsn <= report.lsn)
            .map(|(_, _, v)| *v)
            .collect();
        let got = r.get("", &id).unwrap();
        match upto.last() {
            None => assert!(got.is_none(), "{id} did not exist yet"),
            Some(v) => {
                let got = got.expect("entity restored");
                assert_eq!(value(&got), citybrain_model::AttrValue::Int(*v), "{id}");
                // Its history: one point per write up to the backup's position.
                let points = history_points(&r, &id, "/p");
                assert_eq!(points.len(), upto.len(), "history of {id}");
            }
        }
    }
    r.close();
    // Not a backup: refused with a message that says so.
    let err = restore(dir.path(), &dir.path().join("again")).unwrap_err();
    assert!(err.to_string().contains("not a citybrain backup"), "{err}");
}

/// A fail point answering what `mode` says: 0 nothing, 1 out of space at the sync
/// (after the batch reached the file), 2 an I/O error at the sync.
fn faulty(mode: Arc<std::sync::atomic::AtomicU8>) -> crate::engine::Faults {
    Arc::new(move |at| match (mode.load(Ordering::Acquire), at) {
        (1, FaultPoint::LogSync) => Err(std::io::Error::from(std::io::ErrorKind::StorageFull)),
        (2, FaultPoint::LogSync) => Err(std::io::Error::other("injected I/O error")),
        _ => Ok(()),
    })
}

/// A store whose log fails as its fail point's mode says, holding `urn:x:a`.
fn faulty_store() -> (
    tempfile::TempDir,
    Arc<std::sync::atomic::AtomicU8>,
    EmbeddedStore,
) {
    let dir = tempfile::tempdir().unwrap();
    let mode = Arc::new(std::sync::atomic::AtomicU8::new(0));
    let opts = StoreOptions {
        faults: Some(faulty(mode.clone())),
        ..StoreOptions::new(dir.path())
    };
    let s = EmbeddedStore::open(opts).unwrap();
    rt().block_on(put(&s, "", entity("urn:x:a", "T", 1)).wait())
        .unwrap();
    (dir, mode, s)
}

#[test]
fn a_full_disk_refuses_writes_then_resumes_by_itself() {
    let (dir, mode, s) = faulty_store();
    let rt = rt();
    mode.store(1, Ordering::Release);
    // B reaches the log file, its fsync finds no space: B waits, unacknowledged.
    let waiting = {
        let s = s.clone();
        std::thread::spawn(move || rt_wait(put(&s, "", entity("urn:x:b", "T", 2))))
    };
    let t = std::time::Instant::now();
    while !s.stats().disk_full {
        assert!(t.elapsed().as_secs() < 5, "the full disk was not noticed");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // New writes are refused before anything changes.
    let refused = s.modify(
        "",
        "urn:x:c",
        &mut |_| Ok(Some(Write::Put(entity("urn:x:c", "T", 3)))),
        &Origin::default(),
    );
    assert!(matches!(refused, Err(StoreError::DiskFull)), "{refused:?}");
    assert!(s.get("", "urn:x:c").unwrap().is_none());
    // A batch is refused whole, before any of it is applied.
    let ids: Vec<String> = (0..5).map(|i| format!("urn:x:m{i}")).collect();
    let refused = s.modify_many(
        "",
        &ids,
        &mut |i, _| Ok(Some(entity(&format!("urn:x:m{i}"), "T", 1))),
        ModifyOptions::default(),
    );
    assert!(matches!(refused, Err(StoreError::DiskFull)), "{refused:?}");
    assert!(s.get("", "urn:x:m0").unwrap().is_none());
    assert!(
        !waiting.is_finished(),
        "B is not acknowledged while the disk is full"
    );
    assert_eq!(s.stats().disk_full_events, 1);
    // Space returns: B is written again, synced and acknowledged; writes resume.
    mode.store(0, Ordering::Release);
    waiting.join().unwrap().unwrap();
    assert!(!s.stats().disk_full);
    rt.block_on(put(&s, "", entity("urn:x:c", "T", 3)).wait())
        .unwrap();
    s.crash();
    // The log holds each record once (the bytes of the batch that found no space were
    // cut before it was written again), and nothing torn.
    let mut lsns = vec![];
    for (_, path) in wal::list_segments(dir.path()).unwrap() {
        let (_, torn) = wal::read_segment(&path, &mut |e| {
            if let WalEntry::Record(r) = e {
                lsns.push(r.lsn);
            }
        })
        .unwrap();
        assert!(!torn);
    }
    assert_eq!(lsns, [1, 2, 3]);
    let s = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    assert_eq!(s.count("").unwrap(), 3);
    for id in ["urn:x:a", "urn:x:b", "urn:x:c"] {
        assert!(s.get("", id).unwrap().is_some(), "{id}");
    }
    s.close();
}

fn rt_wait(c: Commit) -> Result<(), StoreError> {
    rt().block_on(c.wait())
}

#[test]
fn a_failed_sync_stops_writes_and_keeps_the_log_readable() {
    let (dir, mode, s) = faulty_store();
    let rt = rt();
    mode.store(2, Ordering::Release);
    // Not acknowledged: the sync failed (PostgreSQL's lesson: never retry an fsync).
    let r = rt.block_on(put(&s, "", entity("urn:x:b", "T", 2)).wait());
    assert!(matches!(r, Err(StoreError::Failed)), "{r:?}");
    assert!(s.stats().failed);
    let refused = s.modify(
        "",
        "urn:x:c",
        &mut |_| Ok(Some(Write::Put(entity("urn:x:c", "T", 3)))),
        &Origin::default(),
    );
    assert!(matches!(refused, Err(StoreError::Failed)), "{refused:?}");
    s.crash();
    // What was acknowledged is there; the log opens (B may or may not be: it was
    // written but never acknowledged, like a crash before the fsync).
    let s = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    assert!(s.get("", "urn:x:a").unwrap().is_some());
    assert!(s.get("", "urn:x:c").unwrap().is_none());
    s.close();
}

#[test]
fn removing_a_segment_a_backup_linked_leaves_the_backup_whole() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("wal-00000000000000000001.log");
    std::fs::write(&seg, vec![1u8; 33 << 20]).unwrap();
    let linked = dir.path().join("linked.log");
    std::fs::hard_link(&seg, &linked).unwrap();
    // Big segments are shrunk in steps before they go; a linked one only unlinked.
    wal::remove_gently(&seg).unwrap();
    assert!(!seg.exists());
    assert_eq!(std::fs::metadata(&linked).unwrap().len(), 33 << 20);
}
