use super::*;

fn arc(s: &str) -> Arc<str> {
    Arc::from(s)
}

fn point(rec: i64) -> Point {
    Point {
        t: rec / 1000,
        rec,
        observed: true,
        unit: Some(arc("CEL")),
        v: crate::point::Val::F(1.5),
    }
}

/// Writes a whole registry of `n` entities with two series each.
fn whole(w: &mut Writer, n: u32) -> u64 {
    let mut b = w.begin(true).unwrap();
    let ty = [arc("https://x/T")];
    for e in 0..n {
        let eid = b.entity(&arc(""), &format!("urn:e{e}")).unwrap();
        assert_eq!(eid, e);
        b.meta(eid, Some((&ty, (e % 2 == 0).then_some("[\"/a\"]"))))
            .unwrap();
        for a in 0..2 {
            let sid = e * 2 + a;
            let ds = arc("urn:ds");
            b.series(
                sid,
                Some(eid),
                &arc(&format!("https://x/a{a}")),
                (a == 1).then_some(&ds),
            )
            .unwrap();
            b.state(sid, i64::from(sid) * 10, 1, &BTreeMap::new())
                .unwrap();
        }
    }
    b.commit(5, 3, &[1, 2]).unwrap()
}

#[test]
fn whole_writes_and_deltas_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::new(dir.path(), None).unwrap();
    assert!(w.wants_whole());
    let base = whole(&mut w, 100);
    assert_eq!(std::fs::metadata(path(dir.path())).unwrap().len(), base);
    assert!(!w.wants_whole());
    // A delta: one new entity with a series, a deleted entity, an edit, a new state.
    let mut b = w.begin(false).unwrap();
    let eid = b.entity(&arc("t2"), "urn:new").unwrap();
    assert_eq!(eid, 100);
    b.meta(eid, Some((&[arc("https://x/U")], None))).unwrap();
    b.meta(3, None).unwrap();
    b.series(200, Some(eid), &arc("https://x/a0"), None)
        .unwrap();
    b.state(200, 7, 3, &BTreeMap::new()).unwrap();
    let mut edits = BTreeMap::new();
    edits.insert(4000, None);
    edits.insert(5000, Some(point(5000)));
    b.state(1, 99, 2, &edits).unwrap();
    let delta = b.commit(9, 4, &[2, 3]).unwrap();
    assert!(delta < base / 20, "a delta of {delta} bytes against {base}");

    let l = load(dir.path()).unwrap().unwrap();
    assert_eq!(
        (l.checkpoint_lsn, l.next_file, l.files.clone()),
        (9, 4, vec![2, 3])
    );
    assert_eq!(l.series.len(), 201);
    assert_eq!(l.entities.len(), 101);
    let s = &l.series[200];
    let sid = &s.id;
    assert_eq!(*sid, 200);
    assert_eq!(
        (&*s.key.tenant, &*s.key.entity, &*s.key.attr),
        ("t2", "urn:new", "https://x/a0")
    );
    assert_eq!((s.last_rec, s.min_file), (7, 3));
    let s1 = &l.series[1];
    assert_eq!(s1.key.dataset.as_deref(), Some("urn:ds"));
    assert_eq!((s1.last_rec, s1.min_file), (99, 2));
    assert_eq!(s1.overrides, vec![(4000, None), (5000, Some(point(5000)))]);
    assert_eq!(l.series[0].last_rec, 0);
    assert!(l.entities[3].meta.is_none());
    let (types, scope) = l.entities[4].meta.as_ref().unwrap();
    assert_eq!(
        (&*types[0], scope.as_deref()),
        ("https://x/T", Some("[\"/a\"]"))
    );
    assert_eq!(&*l.entities[100].meta.as_ref().unwrap().0[0], "https://x/U");

    // A writer continuing the log appends with the same numbering.
    drop(w);
    let mut w = Writer::new(dir.path(), Some(l.writer)).unwrap();
    assert!(!w.wants_whole());
    let mut b = w.begin(false).unwrap();
    assert_eq!(b.entity(&arc(""), "urn:later").unwrap(), 101);
    b.series(201, Some(101), &arc("https://x/a1"), None)
        .unwrap();
    b.state(201, 1, 4, &BTreeMap::new()).unwrap();
    b.commit(10, 5, &[2, 3, 4]).unwrap();
    let l = load(dir.path()).unwrap().unwrap();
    assert_eq!(l.checkpoint_lsn, 10);
    assert_eq!(&*l.series[201].key.entity, "urn:later");
    assert_eq!(&*l.series[201].key.attr, "https://x/a1");
}

#[test]
fn a_torn_append_is_left_out_and_the_next_write_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::new(dir.path(), None).unwrap();
    whole(&mut w, 3);
    let mut b = w.begin(false).unwrap();
    b.state(0, 1234, 9, &BTreeMap::new()).unwrap();
    b.commit(6, 4, &[1, 2, 3]).unwrap();
    let full = std::fs::read(path(dir.path())).unwrap();
    assert_eq!(full.len() as u64, w.committed_len());
    assert_eq!(load(dir.path()).unwrap().unwrap().series[0].last_rec, 1234);
    // Where the last batch (the delta) starts: walk the batch headers.
    let mut pos = HEADER_LEN as usize;
    let mut whole_len = pos;
    while pos < full.len() {
        whole_len = pos;
        let len = u32::from_le_bytes(full[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 8 + len;
    }
    drop(w);
    for cut in whole_len + 1..full.len() {
        std::fs::write(path(dir.path()), &full[..cut]).unwrap();
        let l = load(dir.path()).unwrap().unwrap();
        assert_eq!(l.checkpoint_lsn, 5, "cut at {cut}");
        assert_eq!(l.series[0].last_rec, 0);
        assert!(!l.writer.appendable);
        let mut w = Writer::new(dir.path(), Some(l.writer)).unwrap();
        assert!(w.wants_whole());
        drop(w.begin(false).unwrap());
    }
    // A tail the file system filled with zeros after a crash is torn too.
    let mut zeros = full.clone();
    zeros.extend(std::iter::repeat_n(0u8, 5000));
    std::fs::write(path(dir.path()), &zeros).unwrap();
    let l = load(dir.path()).unwrap().unwrap();
    assert_eq!((l.checkpoint_lsn, l.writer.appendable), (6, false));
    // A flipped byte in the last batch is a torn tail too; earlier, it is damage.
    let mut bad = full.clone();
    *bad.last_mut().unwrap() ^= 1;
    std::fs::write(path(dir.path()), &bad).unwrap();
    assert_eq!(load(dir.path()).unwrap().unwrap().checkpoint_lsn, 5);
    let mut bad = full.clone();
    bad[HEADER_LEN as usize + 12] ^= 1;
    std::fs::write(path(dir.path()), &bad).unwrap();
    assert!(matches!(load(dir.path()), Err(TsdbError::Corrupt { .. })));
    // A log with no whole checkpoint, or another format, is refused.
    std::fs::write(path(dir.path()), &full[..whole_len - 1]).unwrap();
    assert!(matches!(load(dir.path()), Err(TsdbError::Corrupt { .. })));
    let mut v9 = full.clone();
    v9[8] = 9;
    std::fs::write(path(dir.path()), &v9).unwrap();
    assert!(matches!(load(dir.path()), Err(TsdbError::Version { .. })));
}

#[test]
fn a_batch_dropped_before_its_commit_makes_the_next_write_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::new(dir.path(), None).unwrap();
    whole(&mut w, 2);
    let before = std::fs::read(path(dir.path())).unwrap();
    {
        let mut b = w.begin(false).unwrap();
        b.entity(&arc(""), "urn:x").unwrap();
    }
    assert!(w.wants_whole());
    // Nothing of it reached the file.
    assert_eq!(std::fs::read(path(dir.path())).unwrap(), before);
    whole(&mut w, 2);
    assert!(!w.wants_whole());
}

#[test]
fn deltas_past_the_last_whole_write_ask_for_a_whole_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::new(dir.path(), None).unwrap();
    w.min_delta = 0;
    let base = whole(&mut w, 10);
    let mut appended = 0;
    while !w.wants_whole() {
        let mut b = w.begin(false).unwrap();
        for sid in 0..20 {
            b.state(sid, 1, 1, &BTreeMap::new()).unwrap();
        }
        appended += b.commit(6, 3, &[1]).unwrap();
    }
    assert!(
        appended > base && appended < 2 * base + 200,
        "{appended} after {base}"
    );
    whole(&mut w, 10);
    assert!(!w.wants_whole());
    assert_eq!(std::fs::metadata(path(dir.path())).unwrap().len(), base);
}

#[test]
fn big_checkpoints_are_cut_into_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::new(dir.path(), None).unwrap();
    let mut b = w.begin(true).unwrap();
    let n = 60_000u32;
    for e in 0..n {
        let eid = b
            .entity(&arc(""), &format!("urn:ngsi-ld:Sensor:{e:08}"))
            .unwrap();
        b.series(e, Some(eid), &arc("https://x/speed"), None)
            .unwrap();
        b.state(e, i64::from(e), 1, &BTreeMap::new()).unwrap();
    }
    let bytes = b.commit(1, 2, &[1]).unwrap();
    assert!(bytes > 2 * BATCH_BYTES as u64);
    let l = load(dir.path()).unwrap().unwrap();
    assert_eq!(l.series.len(), n as usize);
    assert_eq!(&*l.series[59_999].key.entity, "urn:ngsi-ld:Sensor:00059999");
    assert_eq!(l.series[59_999].last_rec, 59_999);
}

#[test]
fn malformed_records_are_refused_not_trusted() {
    let mut d = Decoder::default();
    // A series of an entity that does not exist, a name out of range, numbers out of
    // order, an unknown tag: each refused.
    for bad in [
        vec![R_SERIES, 0, 5, 0, 0],
        vec![R_ENTITY, 0, 3, 1, b'x'],
        vec![R_ENTITY, 7, 0, 1, b'x'],
        vec![99],
        vec![R_STATE, 0, 0, 0, 0],
    ] {
        assert!(d.batch(&bad).is_none(), "{bad:?}");
    }
    assert!(d
        .batch(&[R_NAME, 1, b'a', R_ENTITY, 0, 0, 1, b'x'])
        .is_some());
    assert_eq!(&*d.entities[0].tenant, "a");
}
