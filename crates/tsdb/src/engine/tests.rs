use super::*;

fn key(e: &str, a: &str) -> SeriesKey {
    SeriesKey {
        tenant: Arc::from(""),
        entity: Arc::from(e),
        attr: Arc::from(a),
        dataset: None,
    }
}

fn pt(t: i64, v: f64) -> Point {
    Point {
        t,
        rec: t * 1000,
        observed: true,
        unit: Some(Arc::from("CEL")),
        v: Val::F(v),
    }
}

fn insert(db: &Tsdb, e: &str, a: &str, pts: Vec<Point>) {
    db.apply(&HistOp::Insert {
        key: key(e, a),
        points: pts,
    });
}

fn all(db: &Tsdb, id: u32) -> Vec<Point> {
    let (p, errs) = db.read(id, &Selection::all());
    assert!(errs.is_empty(), "{errs:?}");
    p
}

fn checkpoint(db: &Tsdb, lsn: u64) {
    let job = db.begin_checkpoint(lsn);
    db.finish_checkpoint(job, 0).unwrap();
}

#[test]
fn points_survive_checkpoint_and_reopen_sorted_with_late_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    insert(
        &db,
        "urn:a",
        "temp",
        (0..5000)
            .map(|i| pt(i * 60_000, 20.0 + (i % 7) as f64 / 10.0))
            .collect(),
    );
    checkpoint(&db, 10);
    // Late (out-of-order) data after the checkpoint.
    insert(&db, "urn:a", "temp", vec![pt(30_000, 99.5)]);
    let p = all(&db, 0);
    assert_eq!(p.len(), 5001);
    assert_eq!(p[1].v, Val::F(99.5));
    assert!(p.windows(2).all(|w| w[0].t <= w[1].t));
    checkpoint(&db, 11);
    drop(db);
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    assert_eq!(db.checkpoint_lsn(), 11);
    let p = all(&db, 0);
    assert_eq!(p.len(), 5001);
    assert_eq!(p[1].v, Val::F(99.5));
    assert_eq!(p[0].unit.as_deref(), Some("CEL"));
    let e = db.entity("", "urn:a").unwrap();
    assert_eq!(e.series.len(), 1);
}

#[test]
fn recs_are_unique_per_series() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    insert(&db, "urn:a", "x", vec![pt(5, 1.0), pt(5, 2.0), pt(5, 3.0)]);
    let recs: Vec<i64> = all(&db, 0).iter().map(|p| p.rec).collect();
    assert_eq!(recs, vec![5000, 5001, 5002]);
}

#[test]
fn selections_and_last_n() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    insert(
        &db,
        "urn:a",
        "x",
        (0..10_000).map(|i| pt(i, i as f64)).collect(),
    );
    checkpoint(&db, 1);
    insert(
        &db,
        "urn:a",
        "x",
        (10_000..10_010).map(|i| pt(i, i as f64)).collect(),
    );
    let sel = Selection {
        time: TimeProp::Observed,
        lower: Bound::Included(100),
        upper: Bound::Excluded(200),
        last_n: None,
    };
    let (p, _) = db.read(0, &sel);
    assert_eq!(p.len(), 100);
    assert_eq!((p[0].t, p[99].t), (100, 199));
    let sel = Selection {
        last_n: Some(3),
        ..Selection::all()
    };
    let (p, _) = db.read(0, &sel);
    assert_eq!(
        p.iter().map(|p| p.t).collect::<Vec<_>>(),
        vec![10_007, 10_008, 10_009]
    );
    let sel = Selection {
        last_n: Some(1),
        ..Selection::all()
    };
    assert_eq!(db.read(0, &sel).0[0].t, 10_009);
    // By recorded time.
    let sel = Selection {
        time: TimeProp::Recorded,
        lower: Bound::Excluded(9_998_000),
        upper: Bound::Unbounded,
        last_n: None,
    };
    assert_eq!(db.read(0, &sel).0.len(), 11);
}

#[test]
fn deletes_and_replacements_persist() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    insert(
        &db,
        "urn:a",
        "x",
        (0..10).map(|i| pt(i, i as f64)).collect(),
    );
    insert(
        &db,
        "urn:a",
        "y",
        (0..10).map(|i| pt(i, i as f64)).collect(),
    );
    checkpoint(&db, 1);
    db.apply(&HistOp::DeleteInstance {
        key: key("urn:a", "x"),
        rec: 3000,
    });
    let mut p = pt(4, 44.0);
    p.rec = 4000;
    db.apply(&HistOp::ReplaceInstance {
        key: key("urn:a", "x"),
        point: p,
    });
    db.apply(&HistOp::DeleteAttr {
        tenant: Arc::from(""),
        entity: Arc::from("urn:a"),
        attr: Arc::from("y"),
        dataset: DatasetSel::All,
    });
    let check = |db: &Tsdb| {
        let p = all(db, 0);
        assert_eq!(p.len(), 9);
        assert!(p.iter().all(|p| p.t != 3));
        assert_eq!(p[3].v, Val::F(44.0));
        assert!(all(db, 1).is_empty());
        assert_eq!(db.entity("", "urn:a").unwrap().series.len(), 1);
    };
    check(&db);
    checkpoint(&db, 2);
    drop(db);
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    check(&db);
    // The attribute comes back without its deleted past.
    insert(&db, "urn:a", "y", vec![pt(100, 1.0)]);
    assert_eq!(all(&db, 1).len(), 1);
    db.apply(&HistOp::DeleteEntity {
        tenant: Arc::from(""),
        entity: Arc::from("urn:a"),
    });
    assert!(db.entity("", "urn:a").is_none());
}

#[test]
fn compaction_merges_files_and_folds_edits() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = TsdbOptions::new(dir.path());
    opts.compact_after_files = 2;
    let db = Tsdb::open(opts.clone()).unwrap();
    for round in 0..5i64 {
        insert(
            &db,
            "urn:a",
            "x",
            (0..100).map(|i| pt(round * 100 + i, i as f64)).collect(),
        );
        if round == 2 {
            db.apply(&HistOp::DeleteInstance {
                key: key("urn:a", "x"),
                rec: 5000,
            });
        }
        checkpoint(&db, round as u64 + 1);
    }
    let st = db.stats();
    assert!(st.compactions >= 1);
    assert!(st.files <= 3, "{st:?}");
    assert_eq!(all(&db, 0).len(), 499);
    drop(db);
    let db = Tsdb::open(opts).unwrap();
    assert_eq!(all(&db, 0).len(), 499);
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert!(files <= 4, "{files} files");
}

#[test]
fn retention_downsamples_then_drops() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = TsdbOptions::new(dir.path());
    opts.retention = vec![Retention {
        entity_type: "T".into(),
        raw_ms: 1_000,
        rollup_period_ms: Some(100),
        rollup_keep_ms: Some(5_000),
    }];
    let db = Tsdb::open(opts).unwrap();
    db.apply(&HistOp::EntityMeta {
        tenant: Arc::from(""),
        entity: Arc::from("urn:a"),
        types: vec![Arc::from("T")],
        scope: None,
    });
    // 0..10_000 ms, one point per 10 ms; now = 10_000.
    insert(
        &db,
        "urn:a",
        "x",
        (0..1000).map(|i| pt(i * 10, (i % 10) as f64)).collect(),
    );
    let job = db.begin_checkpoint(1);
    db.finish_checkpoint(job, 10_000).unwrap();
    let p = all(&db, 0);
    // Kept raw: t >= 9_000 (100 points); rolled up: 5_000..9_000 in 100 ms means (40).
    assert_eq!(p.len(), 140, "{}", p.len());
    assert_eq!(p[0].t, 5_000);
    assert_eq!(p[0].v, Val::F(4.5));
    assert!(db.stats().retention_dropped > 0);
}

#[test]
fn a_corrupt_block_is_reported_and_the_rest_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    insert(&db, "urn:a", "x", (0..100).map(|i| pt(i, 1.0)).collect());
    insert(&db, "urn:b", "x", (0..100).map(|i| pt(i, 2.0)).collect());
    checkpoint(&db, 1);
    drop(db);
    let path = segment::file_path(dir.path(), 1);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 0x5a; // inside the first block (series 0)
    std::fs::write(&path, &bytes).unwrap();
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    let (p, errs) = db.read(0, &Selection::all());
    assert!(p.is_empty());
    assert_eq!(errs.len(), 1);
    assert!(errs[0].to_string().contains("checksum"), "{}", errs[0]);
    assert_eq!(all(&db, 1).len(), 100);
    assert_eq!(db.stats().corrupt_blocks, 1);
    // A damaged footer: the blocks are re-indexed.
    drop(db);
    let n = bytes.len();
    bytes[n - 20] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    assert_eq!(all(&db, 1).len(), 100);
    assert!(db.stats().corrupt_blocks >= 1);
}

#[test]
fn unregistered_files_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    insert(&db, "urn:a", "x", vec![pt(1, 1.0)]);
    let pts = [pt(1, 1.0)];
    segment::write_file(dir.path(), 77, &[(0, &pts[..])]).unwrap();
    drop(db);
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    assert!(!segment::file_path(dir.path(), 77).exists());
    assert_eq!(db.stats().files, 0);
}

#[test]
fn regular_minute_series_take_under_three_bytes_per_point() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    // One year of a temperature-like random walk with 0.1 °C resolution.
    let mut v = 150i64;
    let mut seed = 42u64;
    let pts: Vec<Point> = (0..525_600i64)
        .map(|i| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            v += ((seed >> 33) % 3) as i64 - 1;
            let t = 1_700_000_000_000 + i * 60_000;
            Point {
                t,
                rec: t * 1000 + 1500,
                observed: true,
                unit: Some(Arc::from("CEL")),
                v: Val::F(v as f64 / 10.0),
            }
        })
        .collect();
    insert(&db, "urn:a", "temperature", pts);
    checkpoint(&db, 1);
    let bytes = db.stats().disk_bytes as f64;
    let per = bytes / 525_600.0;
    assert!(per < 3.0, "{per} bytes per point");
}

#[test]
fn the_column_aggregation_matches_the_point_aggregation() {
    use crate::agg::{aggregate, AggMethod};
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    insert(
        &db,
        "urn:a",
        "x",
        (0..20_000)
            .map(|i| pt(i * 1000, (i % 97) as f64 * 0.5))
            .collect(),
    );
    checkpoint(&db, 1);
    insert(
        &db,
        "urn:a",
        "x",
        (20_000..20_500).map(|i| pt(i * 1000, 1.0)).collect(),
    );
    let methods = [
        AggMethod::Avg,
        AggMethod::Max,
        AggMethod::TotalCount,
        AggMethod::Stddev,
    ];
    let next = |s: i64| s + 3_600_000;
    let sel = Selection {
        time: TimeProp::Observed,
        lower: Bound::Included(5_000),
        upper: Bound::Excluded(20_300_000),
        last_n: None,
    };
    let fast = db
        .aggregate(
            0,
            &sel,
            Some(5_000),
            Some(20_300_000),
            Some(&next),
            &methods,
        )
        .expect("fast path applies")
        .unwrap();
    let (pts, _) = db.read(0, &sel);
    let slow = aggregate(
        &pts,
        &|p: &Point| p.t,
        Some(5_000),
        Some(20_300_000),
        Some(&next),
        &methods,
    );
    assert_eq!(fast, slow);
    assert_eq!(fast.len(), 6);
    // Pending edits send the caller to the point path.
    db.apply(&HistOp::DeleteInstance {
        key: key("urn:a", "x"),
        rec: 5_000_000,
    });
    assert!(db
        .aggregate(
            0,
            &sel,
            Some(5_000),
            Some(20_300_000),
            Some(&next),
            &methods
        )
        .is_none());
}

#[test]
fn extreme_integers_survive_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    let vals = [i64::MIN, i64::MAX, (1 << 53) + 1, -(1 << 53), 0, -1];
    let pts: Vec<Point> = vals
        .iter()
        .enumerate()
        .map(|(i, v)| Point {
            t: i as i64,
            rec: i as i64,
            observed: true,
            unit: None,
            v: Val::I(*v),
        })
        .collect();
    insert(&db, "urn:a", "x", pts);
    checkpoint(&db, 1);
    let back: Vec<Val> = all(&db, 0).into_iter().map(|p| p.v).collect();
    assert_eq!(back, vals.iter().map(|v| Val::I(*v)).collect::<Vec<_>>());
}

#[test]
fn overlapping_checkpoints_record_only_what_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    insert(&db, "urn:a", "x", vec![pt(1, 1.0)]);
    let first = db.begin_checkpoint(1);
    insert(&db, "urn:a", "x", vec![pt(2, 2.0)]);
    let second = db.begin_checkpoint(2);
    db.finish_checkpoint(first, 0).unwrap();
    assert_eq!(
        db.checkpoint_lsn(),
        1,
        "the second checkpoint is not written yet"
    );
    // Both points stay readable while the second is pending.
    assert_eq!(all(&db, 0).len(), 2);
    drop(second);
    drop(db);
    // A crash now: the registry says LSN 1, so the log replays the second point.
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    assert_eq!(db.checkpoint_lsn(), 1);
    assert_eq!(all(&db, 0).iter().map(|p| p.t).collect::<Vec<_>>(), vec![1]);
}

#[test]
fn scanning_visitors_may_read_while_a_checkpoint_waits() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Tsdb::open(TsdbOptions::new(dir.path())).unwrap());
    for i in 0..600 {
        insert(&db, &format!("urn:e:{i:04}"), "x", vec![pt(i, 1.0)]);
    }
    let mut seen = Vec::new();
    db.scan("", None, &mut |h| {
        // Reading inside the visitor, with a writer queued on the state lock.
        let writer = {
            let db = db.clone();
            std::thread::spawn(move || {
                let job = db.begin_checkpoint(1);
                db.finish_checkpoint(job, 0).unwrap();
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(if seen.is_empty() {
            20
        } else {
            0
        }));
        let (p, _) = db.read(h.series[0].id, &Selection::all());
        assert_eq!(p.len(), 1);
        writer.join().unwrap();
        seen.push(h.id.clone());
        std::ops::ControlFlow::Continue(())
    });
    assert_eq!(seen.len(), 600);
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "in id order, each once"
    );
}

/// One step of the registry property test.
#[derive(Debug, Clone)]
enum Step {
    Insert(u8, u8, i64),
    Meta(u8, u8),
    DeleteEntity(u8),
    DeleteAttr(u8, u8),
    DeleteInstance(u8, u8, usize),
    ReplaceInstance(u8, u8, usize, i64),
    Checkpoint,
    /// Begins a checkpoint and holds it (overlapping checkpoints, as a snapshot's).
    Begin,
    /// Finishes the oldest held checkpoint.
    Finish,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    prop_oneof![
        6 => (0u8..6, 0u8..3, 0i64..1000).prop_map(|(e, a, t)| Step::Insert(e, a, t)),
        1 => (0u8..6, 0u8..3).prop_map(|(e, t)| Step::Meta(e, t)),
        1 => (0u8..6).prop_map(Step::DeleteEntity),
        1 => (0u8..6, 0u8..3).prop_map(|(e, a)| Step::DeleteAttr(e, a)),
        1 => (0u8..6, 0u8..3, 0usize..50).prop_map(|(e, a, i)| Step::DeleteInstance(e, a, i)),
        1 => (0u8..6, 0u8..3, 0usize..50, 0i64..100)
            .prop_map(|(e, a, i, v)| Step::ReplaceInstance(e, a, i, v)),
        2 => Just(Step::Checkpoint),
        1 => Just(Step::Begin),
        1 => Just(Step::Finish),
    ]
}

/// Finishes the held checkpoints, in the order they began (as they must).
fn finish_held(db: &Tsdb, held: &mut std::collections::VecDeque<FlushJob>) {
    while let Some(job) = held.pop_front() {
        db.finish_checkpoint(job, 0).unwrap();
    }
}

fn run_step(db: &Tsdb, s: &Step, lsn: &mut u64, held: &mut std::collections::VecDeque<FlushJob>) {
    *lsn += 1;
    let ent = |e: u8| Arc::from(format!("urn:e{e}"));
    let attr = |a: u8| format!("a{a}");
    let existing = |e: u8, a: u8, i: usize| {
        let id = db.find(&key(&format!("urn:e{e}"), &attr(a)))?.id;
        let p = all(db, id);
        (!p.is_empty()).then(|| p[i % p.len()].clone())
    };
    match s.clone() {
        Step::Insert(e, a, t) => insert(db, &format!("urn:e{e}"), &attr(a), vec![pt(t, t as f64)]),
        Step::Meta(e, t) => db.apply(&HistOp::EntityMeta {
            tenant: Arc::from(""),
            entity: ent(e),
            types: vec![Arc::from(format!("T{t}"))],
            scope: (t == 1).then(|| Arc::from("\"/a\"")),
        }),
        Step::DeleteEntity(e) => db.apply(&HistOp::DeleteEntity {
            tenant: Arc::from(""),
            entity: ent(e),
        }),
        Step::DeleteAttr(e, a) => db.apply(&HistOp::DeleteAttr {
            tenant: Arc::from(""),
            entity: ent(e),
            attr: Arc::from(attr(a)),
            dataset: DatasetSel::All,
        }),
        Step::DeleteInstance(e, a, i) => {
            if let Some(p) = existing(e, a, i) {
                db.apply(&HistOp::DeleteInstance {
                    key: key(&format!("urn:e{e}"), &attr(a)),
                    rec: p.rec,
                });
            }
        }
        Step::ReplaceInstance(e, a, i, v) => {
            if let Some(mut p) = existing(e, a, i) {
                p.v = Val::I(v);
                db.apply(&HistOp::ReplaceInstance {
                    key: key(&format!("urn:e{e}"), &attr(a)),
                    point: p,
                });
            }
        }
        Step::Checkpoint => {
            finish_held(db, held);
            checkpoint(db, *lsn)
        }
        Step::Begin => held.push_back(db.begin_checkpoint(*lsn)),
        Step::Finish => {
            if let Some(job) = held.pop_front() {
                db.finish_checkpoint(job, 0).unwrap();
            }
        }
    }
}

/// Everything a reader can see of the engine, and what the next insert gets as `rec`.
fn observable(db: &Tsdb) -> Vec<String> {
    let mut out = Vec::new();
    for id in 0..db.stats().series as u32 {
        out.push(format!("{:?} {:?}", db.key(id), all(db, id)));
    }
    for e in 0..6 {
        let h = db.entity("", &format!("urn:e{e}"));
        out.push(format!(
            "{:?}",
            h.map(|h| (
                h.types,
                h.scope,
                h.series.iter().map(|s| s.id).collect::<Vec<_>>()
            ))
        ));
    }
    for id in 0..db.stats().series as u32 {
        if let Some(k) = db.key(id) {
            db.apply(&HistOp::Insert {
                key: k,
                points: vec![pt(0, 0.0)],
            });
            out.push(format!(
                "{:?}",
                db.state.read().series[id as usize].lock().last_rec
            ));
        }
    }
    out
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(160))]

    /// Whatever mix of writes, edits, deletes, checkpoints and compactions (every
    /// checkpoint a delta, some whole), the engine opened from its registry log sees
    /// exactly what the live engine saw at its last checkpoint.
    #[test]
    fn the_registry_log_reopens_to_the_live_state(
        steps in proptest::collection::vec(step(), 1..120),
        min_delta in proptest::prop_oneof![proptest::strategy::Just(0u64), proptest::strategy::Just(1u64 << 30)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = TsdbOptions::new(dir.path());
        opts.compact_after_files = 2;
        let db = Tsdb::open(opts.clone()).unwrap();
        db.registry.lock().set_min_delta(min_delta);
        let mut lsn = 0;
        let mut held = std::collections::VecDeque::new();
        for s in &steps {
            run_step(&db, s, &mut lsn, &mut held);
        }
        finish_held(&db, &mut held);
        checkpoint(&db, lsn + 1);
        let live = observable(&db);
        drop(db);
        let db = Tsdb::open(opts).unwrap();
        proptest::prop_assert_eq!(db.checkpoint_lsn(), lsn + 1);
        proptest::prop_assert_eq!(observable(&db), live);
    }
}

#[test]
fn a_checkpoint_records_what_changed_not_every_series() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    for e in 0..2000 {
        insert(
            &db,
            &format!("urn:ngsi-ld:Sensor:{e:06}"),
            "https://x/speed",
            vec![pt(1, 1.0)],
        );
    }
    checkpoint(&db, 1);
    let size = || std::fs::metadata(registry::path(dir.path())).unwrap().len();
    let whole = size();
    for e in 0..10 {
        insert(
            &db,
            &format!("urn:ngsi-ld:Sensor:{e:06}"),
            "https://x/speed",
            vec![pt(2, 2.0)],
        );
    }
    checkpoint(&db, 2);
    let delta = size() - whole;
    // Ten series' states, the checkpoint record and the batch header.
    assert!(
        delta < 200,
        "{delta} bytes appended for 10 changed series of 2,000 ({whole} whole)"
    );
    checkpoint(&db, 3);
    assert!(
        size() - whole - delta < 40,
        "an empty checkpoint appends its position only"
    );
    drop(db);
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    assert_eq!(db.checkpoint_lsn(), 3);
    assert_eq!(all(&db, 9).len(), 2);
    assert_eq!(all(&db, 10).len(), 1);
}

#[test]
fn a_version_1_registry_opens_and_becomes_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let pts: Vec<Point> = (0..5).map(|i| pt(i, i as f64)).collect();
    segment::write_file(dir.path(), 1, &[(0, &pts[..])]).unwrap();
    std::fs::write(
        dir.path().join("registry.json"),
        r#"{"version":1,"checkpoint_lsn":7,"next_file":2,"files":[1],
            "series":[{"id":0,"tenant":"","entity":"urn:a","attr":"x","last_rec":4000,"min_file":1,
                       "overrides":[[2000,null]]}],
            "entities":[{"tenant":"","id":"urn:a","types":["T"]}]}"#,
    )
    .unwrap();
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    assert_eq!(db.checkpoint_lsn(), 7);
    assert_eq!(all(&db, 0).len(), 4);
    assert_eq!(&*db.entity("", "urn:a").unwrap().types[0], "T");
    // A backup before the first checkpoint carries the old registry.
    let b1 = tempfile::tempdir().unwrap();
    db.backup_to(b1.path()).unwrap();
    assert!(b1.path().join("registry.json").exists());
    insert(&db, "urn:a", "x", vec![pt(10, 1.0)]);
    checkpoint(&db, 8);
    assert!(!dir.path().join("registry.json").exists());
    assert!(registry::path(dir.path()).exists());
    drop(db);
    for d in [dir.path(), b1.path()] {
        let db = Tsdb::open(TsdbOptions::new(d)).unwrap();
        let p = all(&db, 0);
        assert!(p.iter().all(|p| p.rec != 2000));
        assert_eq!(&*db.entity("", "urn:a").unwrap().types[0], "T");
    }
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    assert_eq!((db.checkpoint_lsn(), all(&db, 0).len()), (8, 5));
    // The next insert's rec continues after the recorded last_rec.
    insert(&db, "urn:a", "x", vec![pt(0, 0.0)]);
    assert!(all(&db, 0).iter().any(|p| p.rec > 10_000));
}

#[test]
fn a_backup_copies_the_registry_log_as_of_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    insert(&db, "urn:a", "x", vec![pt(1, 1.0)]);
    checkpoint(&db, 1);
    insert(&db, "urn:b", "x", vec![pt(2, 2.0)]);
    checkpoint(&db, 2);
    let b = tempfile::tempdir().unwrap();
    let out = db.backup_to(b.path()).unwrap();
    assert_eq!(out.checkpoint_lsn, 2);
    // Later checkpoints append to the live log, not to the backup's copy.
    insert(&db, "urn:c", "x", vec![pt(3, 3.0)]);
    checkpoint(&db, 3);
    let copy = Tsdb::open(TsdbOptions::new(b.path())).unwrap();
    assert_eq!((copy.checkpoint_lsn(), copy.stats().series), (2, 2));
    assert_eq!(all(&copy, 1).len(), 1);
}

#[test]
fn a_checkpoint_begun_before_another_failed_is_not_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    insert(&db, "urn:a", "x", vec![pt(1, 1.0)]);
    let first = db.begin_checkpoint(1);
    insert(&db, "urn:b", "x", vec![pt(2, 2.0)]);
    let second = db.begin_checkpoint(2);
    // The first one's segment cannot be written (its name is taken by a directory).
    let blocker = segment::file_path(dir.path(), first.file);
    std::fs::create_dir(&blocker).unwrap();
    assert!(db.finish_checkpoint(first, 0).is_err());
    std::fs::remove_dir(&blocker).unwrap();
    // The second began before that failure: its points are on disk only with the
    // first one's, which are back in memory, so it must not move the checkpoint on.
    assert!(matches!(
        db.finish_checkpoint(second, 0),
        Err(TsdbError::EarlierCheckpointFailed)
    ));
    assert_eq!(db.checkpoint_lsn(), 0);
    assert_eq!(db.head_points(), 2);
    // The next one takes everything.
    checkpoint(&db, 3);
    drop(db);
    let db = Tsdb::open(TsdbOptions::new(dir.path())).unwrap();
    assert_eq!(db.checkpoint_lsn(), 3);
    assert_eq!((all(&db, 0).len(), all(&db, 1).len()), (1, 1));
}
