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
