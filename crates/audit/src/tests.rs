use super::*;
use serde_json::json;

async fn log_of(n: usize) -> (tempfile::TempDir, Arc<AuditLog>) {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&dir.path().join("audit"), dir.path()).unwrap();
    let mut joins = Vec::new();
    for i in 0..n {
        let l = log.clone();
        joins.push(tokio::spawn(async move {
            l.append(json!({"actor": format!("user:u{i}"), "action": "PATCH"}))
                .await
        }));
    }
    for j in joins {
        j.await.unwrap().unwrap();
    }
    (dir, log)
}

fn check(dir: &tempfile::TempDir) -> Report {
    verify(&dir.path().join("audit"), dir.path(), None).unwrap()
}

fn rewrite(dir: &tempfile::TempDir, f: impl FnOnce(&mut Vec<String>)) {
    let p = dir.path().join("audit/log.jsonl");
    let mut lines: Vec<String> = std::fs::read_to_string(&p)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    f(&mut lines);
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
}

#[tokio::test]
async fn an_untouched_log_verifies_and_its_proofs_check() {
    let (dir, log) = log_of(25).await;
    assert_eq!(log.size(), 25);
    let note = log.checkpoint().unwrap().unwrap();
    log.append(json!({"actor": "user:late"})).await.unwrap();
    let r = check(&dir);
    assert!(r.problems.is_empty(), "{r:?}");
    assert_eq!((r.entries, r.checkpoints, r.unsigned_tail), (26, 1, 1));
    // Proofs against the signed root.
    let (name, pk) = note::parse_verifier_key(&log.verifier_key()).unwrap();
    let c = Checkpoint::open(&note, &name, &pk).unwrap();
    let entries = log.entries(0, 25).unwrap();
    let leaf = merkle::leaf_hash(&serde_json::to_vec(&entries[7]).unwrap());
    let proof = proof_hashes(&log.inclusion_proof(7, 25).unwrap()).unwrap();
    assert!(merkle::verify_inclusion(7, 25, &leaf, &proof, &c.root));
    let later = log.checkpoint().unwrap().unwrap();
    let c2 = Checkpoint::open(&later, &name, &pk).unwrap();
    let cons = proof_hashes(&log.consistency_proof(25, 26).unwrap()).unwrap();
    assert!(merkle::verify_consistency(25, 26, &c.root, &c2.root, &cons));
    // Reopened: the same size, and appends go on from there.
    log.close().unwrap();
    let again = AuditLog::open(&dir.path().join("audit"), dir.path()).unwrap();
    assert_eq!(again.size(), 26);
    assert_eq!(again.append(json!({"x": 1})).await.unwrap(), 26);
}

#[tokio::test]
async fn modified_deleted_inserted_and_reordered_entries_are_found() {
    type Tamper = fn(&mut Vec<String>);
    let cases: [(&str, Tamper); 4] = [
        ("modified", |l| l[3] = l[3].replace("user:", "user:x")),
        ("deleted", |l| {
            l.remove(4);
        }),
        ("inserted", |l| {
            let copy = l[2].clone();
            l.insert(5, copy);
        }),
        ("reordered", |l| l.swap(1, 2)),
    ];
    for (what, tamper) in cases {
        let (dir, log) = log_of(10).await;
        log.checkpoint().unwrap();
        rewrite(&dir, tamper);
        let r = check(&dir);
        assert!(!r.problems.is_empty(), "{what} was not detected: {r:?}");
    }
    // A modification that keeps seq numbering intact is caught by the root alone.
    let (dir, log) = log_of(10).await;
    log.checkpoint().unwrap();
    rewrite(&dir, |l| l[9] = l[9].replace("PATCH", "GET"));
    let r = check(&dir);
    assert_eq!(r.problems.len(), 1, "{r:?}");
    assert!(r.problems[0].contains("modified"), "{r:?}");
    // Entries cut from the end, below a checkpoint.
    let (dir, log) = log_of(10).await;
    log.checkpoint().unwrap();
    rewrite(&dir, |l| l.truncate(8));
    assert!(check(&dir).problems.iter().any(|p| p.contains("deleted")));
}

#[tokio::test]
async fn a_forked_checkpoint_is_found() {
    let (dir, log) = log_of(6).await;
    log.checkpoint().unwrap();
    // The same key signs a root of another history of the same size.
    let (name, key) = load_key(dir.path()).unwrap();
    let forged = Checkpoint {
        origin: name.clone(),
        size: 6,
        root: merkle::leaf_hash(b"another history"),
    }
    .sign(&name, &key);
    let line = serde_json::to_string(&StoredCheckpoint {
        size: 6,
        note: forged,
    })
    .unwrap();
    let p = dir.path().join("audit/checkpoints.jsonl");
    let mut all = std::fs::read_to_string(&p).unwrap();
    all.push_str(&line);
    all.push('\n');
    std::fs::write(&p, all).unwrap();
    let r = check(&dir);
    assert!(r.problems.iter().any(|p| p.contains("forked")), "{r:?}");
    // A checkpoint signed by another key is refused against the pinned key.
    let pinned = log.verifier_key();
    let other = SigningKey::from_bytes(&[3u8; 32]);
    let alien = Checkpoint {
        origin: name.clone(),
        size: 6,
        root: [0u8; 32],
    }
    .sign(&name, &other);
    std::fs::write(
        &p,
        serde_json::to_string(&StoredCheckpoint {
            size: 6,
            note: alien,
        })
        .unwrap()
            + "\n",
    )
    .unwrap();
    let r = verify(&dir.path().join("audit"), dir.path(), Some(&pinned)).unwrap();
    assert!(r.problems.iter().any(|p| p.contains("signature")), "{r:?}");
}

#[tokio::test]
async fn a_torn_last_line_is_cut_on_open() {
    let (dir, log) = log_of(3).await;
    log.close().unwrap();
    let p = dir.path().join("audit/log.jsonl");
    let mut f = OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(b"{\"actor\":\"torn").unwrap();
    drop(f);
    let again = AuditLog::open(&dir.path().join("audit"), dir.path()).unwrap();
    assert_eq!(again.size(), 3);
    again.append(json!({"ok": true})).await.unwrap();
    again.close().unwrap();
    assert!(check(&dir).problems.is_empty());
}

#[tokio::test]
async fn entries_nobody_waits_for_are_kept_and_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&dir.path().join("audit"), dir.path()).unwrap();
    for i in 0..100 {
        log.record(json!({"read": i}));
    }
    // A waited entry behind them: durable, with everything before it.
    let seq = log.append(json!({"write": true})).await.unwrap_or(u64::MAX);
    assert!(seq <= 100);
    log.close().unwrap();
    let again = AuditLog::open(&dir.path().join("audit"), dir.path()).unwrap();
    assert_eq!(again.size(), 101);
    let r = check(&dir);
    assert!(r.problems.is_empty() && r.unsigned_tail == 0, "{r:?}");
}
