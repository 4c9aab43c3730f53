//! `backup`: an online backup of a city-sized data directory while writes go on
//! (issue #18, point 8), in process.
//!
//! Loads `--geo-entities` located entities (three attributes each, history on) through
//! the store's bulk path, then starts a writer that updates one attribute of 1,000
//! entities per durable batch, as fast as commits allow. After two seconds it takes a
//! backup into a fresh directory and reports its time, files and bytes, the writer's
//! updates per second before and during the backup, then restores the backup into
//! another directory and times opening it (the replay of the copied log).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use citybrain_model::Entity;
use citybrain_store::{EmbeddedStore, EntityStore, ModifyOptions, StoreOptions};
use serde_json::{json, Value};

use crate::geo::{located, write_bulk};

/// Writes `list` durably (with history), waiting on `rt` (one runtime per thread,
/// not one per batch).
pub(crate) fn write_batch(
    rt: &tokio::runtime::Runtime,
    store: &EmbeddedStore,
    list: &[Entity],
) -> anyhow::Result<()> {
    for c in write_bulk(store, list, ModifyOptions::default())? {
        rt.block_on(c.wait())?;
    }
    Ok(())
}

/// Writes the located entities numbered `range` (a grid of 1,000 × 1,000 positions,
/// about 40 m apart, around Berlin), 10,000 per durable batch.
pub(crate) fn write_grid(
    rt: &tokio::runtime::Runtime,
    store: &EmbeddedStore,
    range: std::ops::Range<usize>,
) -> anyhow::Result<()> {
    let ids: Vec<usize> = range.collect();
    write_located(rt, store, &ids, |_| {})
}

/// Writes the located entities numbered `ids` (at their grid positions), 10,000 per
/// durable batch, each changed by `edit` first.
pub(crate) fn write_located(
    rt: &tokio::runtime::Runtime,
    store: &EmbeddedStore,
    ids: &[usize],
    edit: impl Fn(&mut Entity),
) -> anyhow::Result<()> {
    for chunk in ids.chunks(10_000) {
        let list: Vec<Entity> = chunk
            .iter()
            .map(|&i| {
                let mut e = located(
                    i,
                    13.1 + (i % 1000) as f64 * 0.0004,
                    52.35 + (i / 1000 % 1000) as f64 * 0.0003,
                )?;
                edit(&mut e);
                Ok(e)
            })
            .collect::<anyhow::Result<_>>()?;
        write_batch(rt, store, &list)?;
    }
    Ok(())
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub fn run(entities: usize) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let store = EmbeddedStore::open(StoreOptions::new(&data))?;
    let rt = runtime()?;
    let t = Instant::now();
    write_grid(&rt, &store, 0..entities)?;
    eprintln!(
        "backup: {entities} entities written in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let updates = Arc::new(AtomicU64::new(0));
    let writer = {
        let (store, stop, updates) = (store.clone(), stop.clone(), updates.clone());
        std::thread::spawn(move || -> anyhow::Result<()> {
            let rt = runtime()?;
            let mut round = 0usize;
            while !stop.load(Ordering::Acquire) {
                let list: Vec<Entity> = (0..1000)
                    .map(|k| {
                        let i = (round * 1000 + k) % entities.max(1);
                        let mut e = located(i, 13.2, 52.4)?;
                        e.attrs.retain(|(n, _)| !n.ends_with("averageVehicleSpeed"));
                        Ok(e)
                    })
                    .collect::<anyhow::Result<_>>()?;
                write_batch(&rt, &store, &list)?;
                updates.fetch_add(1000, Ordering::Relaxed);
                round += 1;
            }
            Ok(())
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let before = updates.load(Ordering::Relaxed) as f64 / 2.0;
    let start_count = updates.load(Ordering::Relaxed);
    let t = Instant::now();
    let report = store.backup_to(&dir.path().join("backup"))?;
    let took = t.elapsed().as_secs_f64();
    let during = (updates.load(Ordering::Relaxed) - start_count) as f64 / took.max(1e-9);
    stop.store(true, Ordering::Release);
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    store.close();
    eprintln!(
        "backup: {:.2} s, {} files, {:.1} MB, log position {}; writer {:.0} updates/s before, {:.0} during",
        took,
        report.files,
        report.bytes as f64 / 1e6,
        report.lsn,
        before,
        during
    );
    let restored = dir.path().join("restored");
    let t = Instant::now();
    citybrain_store::restore(&dir.path().join("backup"), &restored)?;
    let copy_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let r = EmbeddedStore::open(StoreOptions::new(&restored))?;
    let open_s = t.elapsed().as_secs_f64();
    let n = r.count("")?;
    r.close();
    eprintln!("backup: restored ({copy_s:.1} s copy) and opened in {open_s:.1} s: {n} entities");
    Ok(json!({
        "entities": entities,
        "backup_s": took,
        "files": report.files,
        "bytes": report.bytes,
        "updates_per_s_before": before,
        "updates_per_s_during": during,
        "restore_copy_s": copy_s,
        "restore_open_s": open_s,
    }))
}
