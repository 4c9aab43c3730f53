//! The SQLite baseline of the `history` scenario: the same observations stored the
//! obvious way (one row per observation, primary key (series, t, rec), WAL journal,
//! `synchronous=FULL` so a committed batch is durable like ours).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rusqlite::{params, Connection};
use serde_json::{json, Value};

use crate::history::{Params, Walk, DAY, MINUTE, T0};

fn open(path: &std::path::Path) -> anyhow::Result<Connection> {
    let c = Connection::open(path)?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS obs (series INTEGER NOT NULL, t INTEGER NOT NULL, rec INTEGER NOT NULL, v REAL, PRIMARY KEY (series, t, rec)) WITHOUT ROWID;",
    )?;
    Ok(c)
}

fn insert(
    c: &mut Connection,
    rows: impl Iterator<Item = (i64, i64, i64, f64)>,
) -> anyhow::Result<u64> {
    let tx = c.transaction()?;
    let mut n = 0;
    {
        let mut st =
            tx.prepare_cached("INSERT INTO obs (series, t, rec, v) VALUES (?1, ?2, ?3, ?4)")?;
        for (s, t, rec, v) in rows {
            st.execute(params![s, t, rec, v])?;
            n += 1;
        }
    }
    tx.commit()?;
    Ok(n)
}

fn size(path: &std::path::Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", path.display())).ok())
        .map(|m| m.len())
        .sum()
}

pub fn run(p: Params) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    // Ingest: one writer (SQLite has one), a transaction per batch.
    let path = dir.path().join("ingest.db");
    let mut c = open(&path)?;
    let mut walks: Vec<Walk> = (0..p.series).map(|i| Walk::new(i as u64)).collect();
    let started = Instant::now();
    let mut n = 0u64;
    let mut minute = 0i64;
    while started.elapsed() < Duration::from_secs(p.seconds) {
        let per = p.points_per_batch as i64;
        let rows: Vec<(i64, i64, i64, f64)> = walks
            .iter_mut()
            .enumerate()
            .flat_map(|(s, w)| {
                (0..per)
                    .map(move |j| (s, j))
                    .map(|(s, j)| (s as i64, T0 + (minute + j) * MINUTE, j, w.next()))
                    .collect::<Vec<_>>()
            })
            .collect();
        n += insert(&mut c, rows.into_iter())?;
        minute += per;
    }
    let secs = started.elapsed().as_secs_f64();
    let ingest =
        json!({"observations": n, "seconds": secs, "obs_per_sec": (n as f64 / secs).round()});
    eprintln!("sqlite ingest: {ingest}");
    drop(c);

    // Storage: the same week of data.
    let path = dir.path().join("storage.db");
    let mut c = open(&path)?;
    let series = if p.quick { 20 } else { 100 };
    let per_series = 7 * DAY / MINUTE;
    for s in 0..series {
        let mut w = Walk::new(s as u64);
        insert(
            &mut c,
            (0..per_series).map(|j| (s as i64, T0 + j * MINUTE, j, w.next())),
        )?;
    }
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    c.execute_batch("VACUUM")?;
    let total = (series as i64 * per_series) as f64;
    let bytes = size(&path);
    let storage = json!({"observations": total, "bytes": bytes, "bytes_per_obs": ((bytes as f64 / total) * 1000.0).round() / 1000.0});
    eprintln!("sqlite storage: {storage}");
    drop(c);

    // A year of one series, daily means.
    let path = dir.path().join("year.db");
    let mut c = open(&path)?;
    let mut w = Walk::new(7);
    insert(
        &mut c,
        (0..525_600i64).map(|j| (0, T0 + j * MINUTE, 0, w.next())),
    )?;
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let runs = if p.quick { 3 } else { 10 };
    let mut days = 0usize;
    for _ in 0..runs {
        let t = Instant::now();
        let mut st = c.prepare_cached(
            "SELECT (t - ?1) / ?2 AS d, avg(v) FROM obs WHERE series = 0 GROUP BY d",
        )?;
        days = st
            .query_map(params![T0, DAY], |r| r.get::<_, f64>(1))?
            .count();
        h.record(t.elapsed().as_micros().max(1) as u64)?;
    }
    let agg = json!({"points": 525_600, "days": days, "runs": runs, "p50_ms": h.value_at_quantile(0.5) as f64 / 1000.0, "max_ms": h.max() as f64 / 1000.0});
    eprintln!("sqlite aggregate: {agg}");
    drop(c);

    // lastN=1 over 10,000 series.
    let path = dir.path().join("last.db");
    let mut c = open(&path)?;
    let per = if p.quick { 20 } else { 100 };
    for chunk in (0..10_000i64).collect::<Vec<_>>().chunks(1000) {
        let rows: Vec<(i64, i64, i64, f64)> = chunk
            .iter()
            .flat_map(|&s| {
                let mut w = Walk::new(s as u64);
                (0..per)
                    .map(move |j| (s, T0 + j * MINUTE, 0, w.next()))
                    .collect::<Vec<_>>()
            })
            .collect();
        insert(&mut c, rows.into_iter())?;
    }
    let pass = || -> anyhow::Result<Duration> {
        let t = Instant::now();
        let mut st =
            c.prepare_cached("SELECT t, v FROM obs WHERE series = ?1 ORDER BY t DESC LIMIT 1")?;
        for s in 0..10_000i64 {
            let _: (i64, f64) = st.query_row(params![s], |r| Ok((r.get(0)?, r.get(1)?)))?;
        }
        Ok(t.elapsed())
    };
    let cold = pass()?;
    let warm = pass()?;
    let last = json!({"series": 10_000, "cold_ms": cold.as_secs_f64() * 1e3, "warm_ms": warm.as_secs_f64() * 1e3});
    eprintln!("sqlite lastN=1: {last}");
    Ok(
        json!({"ingest": ingest, "storage": storage, "aggregate_year_daily_avg": agg, "last_n_10k": last}),
    )
}
