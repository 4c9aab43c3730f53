//! The `history` scenario: the embedded time-series engine in process, through the
//! store's durable write path (`HistoryStore::append_history`, fsync before ack), and
//! the same workload on SQLite (feature `sqlite`) for a ratio.
//!
//! Data: sensor-like series, one point per minute per series, values a random walk
//! with 0.1 resolution (temperature-like: 15.0 ± a few degrees), observedAt given,
//! recorded at ingest time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use citybrain_store::tsdb::agg::{aggregate, AggMethod};
use citybrain_store::tsdb::{HistOp, Point, Selection, SeriesKey, Val};
use citybrain_store::{EmbeddedStore, HistoryStore, StoreOptions};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

pub const MINUTE: i64 = 60_000;
pub const DAY: i64 = 86_400_000;
pub const T0: i64 = 1_700_000_000_000 - 1_700_000_000_000 % DAY;

/// A deterministic temperature-like random walk.
pub struct Walk {
    seed: u64,
    v: i64,
}

impl Walk {
    pub fn new(seed: u64) -> Self {
        Self {
            seed: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            v: 150,
        }
    }
    pub fn next(&mut self) -> f64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.v += (self.seed % 3) as i64 - 1;
        self.v as f64 / 10.0
    }
}

pub fn key(i: usize) -> SeriesKey {
    SeriesKey {
        tenant: Arc::from("bench"),
        entity: Arc::from(format!("urn:ngsi-ld:WeatherObserved:s{i:06}").as_str()),
        attr: Arc::from("https://smartdatamodels.org/dataModel.Weather/temperature"),
        dataset: None,
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn point(t: i64, v: f64, rec: i64) -> Point {
    Point {
        t,
        rec,
        observed: true,
        unit: Some(Arc::from("CEL")),
        v: Val::F(v),
    }
}

fn open(dir: &std::path::Path) -> anyhow::Result<EmbeddedStore> {
    Ok(EmbeddedStore::open(StoreOptions::new(dir))?)
}

fn rt() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Parameters of the scenario.
#[derive(Clone, Copy)]
pub struct Params {
    pub seconds: u64,
    pub series: usize,
    pub points_per_batch: usize,
    pub writers: usize,
    pub quick: bool,
}

/// Sustained durable ingest: `writers` threads append batches and wait for each commit.
/// `rate`: observations per second to aim at (None: as fast as possible).
fn ingest(
    store: &EmbeddedStore,
    p: Params,
    rate: Option<f64>,
    stop: &AtomicBool,
    done: &AtomicU64,
) -> anyhow::Result<()> {
    let per_writer = p.series / p.writers.max(1);
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let mut handles = Vec::new();
        for w in 0..p.writers {
            let store = store.clone();
            handles.push(scope.spawn(move || -> anyhow::Result<()> {
                let rt = rt()?;
                let keys: Vec<SeriesKey> =
                    (w * per_writer..(w + 1) * per_writer).map(key).collect();
                let mut walks: Vec<Walk> = (0..keys.len())
                    .map(|i| Walk::new((w * per_writer + i) as u64))
                    .collect();
                let started = Instant::now();
                let mut minute = 0i64;
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let rec = now_us();
                    let mut ops = Vec::with_capacity(keys.len());
                    for (k, walk) in keys.iter().zip(walks.iter_mut()) {
                        let points = (0..p.points_per_batch as i64)
                            .map(|j| point(T0 + (minute + j) * MINUTE, walk.next(), rec))
                            .collect();
                        ops.push(HistOp::Insert {
                            key: k.clone(),
                            points,
                        });
                    }
                    minute += p.points_per_batch as i64;
                    let n = (keys.len() * p.points_per_batch) as u64;
                    let commit = store.append_history("bench", ops)?;
                    rt.block_on(commit.wait())?;
                    sent += n;
                    done.fetch_add(n, Ordering::Relaxed);
                    if let Some(r) = rate {
                        let due = Duration::from_secs_f64(sent as f64 / (r / p.writers as f64));
                        if let Some(wait) = due.checked_sub(started.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                }
                Ok(())
            }));
        }
        for h in handles {
            h.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
        }
        Ok(())
    })
}

fn run_ingest(p: Params) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let h = s.spawn(|| ingest(&store, p, None, &stop, &done));
        std::thread::sleep(Duration::from_secs(p.seconds));
        stop.store(true, Ordering::Relaxed);
        h.join().map_err(|_| anyhow::anyhow!("ingest panicked"))?
    })?;
    let secs = started.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let stats = store.tsdb().stats();
    store.close();
    let v = json!({
        "observations": n,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "obs_per_sec": (n as f64 / secs).round(),
        "series": p.series,
        "points_per_series_per_batch": p.points_per_batch,
        "writers": p.writers,
        "checkpoints": stats.checkpoints,
        "compactions": stats.compactions,
    });
    eprintln!("history ingest: {v}");
    Ok(v)
}

/// Bytes on disk per observation for regular one-minute float series, after the final
/// checkpoint (the log is gone then; only segment files and the registry remain).
fn run_storage(p: Params) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let rt = rt()?;
    let series = if p.quick { 20 } else { 100 };
    let days = 7;
    let per_series = (days * DAY / MINUTE) as usize;
    let rec = now_us();
    for i in 0..series {
        let mut walk = Walk::new(i as u64);
        let points = (0..per_series as i64)
            .map(|j| point(T0 + j * MINUTE, walk.next(), rec + j * 1000))
            .collect();
        let c = store.append_history(
            "bench",
            vec![HistOp::Insert {
                key: key(i),
                points,
            }],
        )?;
        rt.block_on(c.wait())?;
    }
    store.close();
    let n = (series * per_series) as f64;
    let bytes = dir_bytes(&dir.path().join("history"));
    let v = json!({
        "data": format!("{series} series x {days} days of 1-minute floats (random walk, 0.1 resolution), observedAt + recorded time + unit per point"),
        "observations": n,
        "bytes": bytes,
        "bytes_per_obs": ((bytes as f64 / n) * 1000.0).round() / 1000.0,
    });
    eprintln!("history storage: {v}");
    Ok(v)
}

/// Daily means and counts of a whole series, the way the temporal API computes them:
/// from the compressed columns when the engine can, else from points.
fn daily_means(
    db: &citybrain_store::tsdb::Tsdb,
    id: u32,
    next: &dyn Fn(i64) -> i64,
) -> anyhow::Result<Vec<citybrain_store::tsdb::Bucket>> {
    let methods = [AggMethod::Avg, AggMethod::TotalCount];
    if let Some(b) = db.aggregate(id, &Selection::all(), Some(T0), None, Some(next), &methods) {
        return Ok(b?);
    }
    let (pts, _) = db.read(id, &Selection::all());
    Ok(aggregate(
        &pts,
        &|p: &Point| p.t,
        Some(T0),
        None,
        Some(next),
        &methods,
    ))
}

fn count(b: &citybrain_store::tsdb::Bucket) -> u64 {
    match b.values.get(1) {
        Some(citybrain_store::tsdb::AggValue::Count(n)) => *n,
        _ => 0,
    }
}

/// One year of one-minute data for one attribute, aggregated to daily means.
fn run_aggregate(p: Params) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let n = 525_600usize;
    {
        let store = open(dir.path())?;
        let mut walk = Walk::new(7);
        let rec = now_us();
        let points = (0..n as i64)
            .map(|j| point(T0 + j * MINUTE, walk.next(), rec))
            .collect();
        let c = store.append_history(
            "bench",
            vec![HistOp::Insert {
                key: key(0),
                points,
            }],
        )?;
        rt()?.block_on(c.wait())?;
        store.close();
    }
    let store = open(dir.path())?;
    let db = store.tsdb().clone();
    let id = db
        .entity("bench", &key(0).entity)
        .and_then(|e| e.series.first().map(|s| s.id))
        .ok_or_else(|| anyhow::anyhow!("series missing"))?;
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut days = 0;
    let runs = if p.quick { 5 } else { 30 };
    for _ in 0..runs {
        let t = Instant::now();
        let next = |s: i64| s + DAY;
        let b = daily_means(&db, id, &next)?;
        anyhow::ensure!(
            b.iter().map(count).sum::<u64>() == n as u64,
            "aggregated too few points"
        );
        days = b.len();
        h.record(t.elapsed().as_micros().max(1) as u64)?;
    }
    store.close();
    let v = json!({
        "points": n,
        "days": days,
        "runs": runs,
        "p50_ms": h.value_at_quantile(0.5) as f64 / 1000.0,
        "max_ms": h.max() as f64 / 1000.0,
    });
    eprintln!("history aggregate: {v}");
    Ok(v)
}

/// The newest point of each of 10,000 series, cold (just opened) and warm.
fn run_last_n(p: Params) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let series = 10_000usize;
    let per = if p.quick { 20 } else { 100 };
    {
        let store = open(dir.path())?;
        let rt = rt()?;
        for chunk in (0..series).collect::<Vec<_>>().chunks(1000) {
            let rec = now_us();
            let ops = chunk
                .iter()
                .map(|&i| {
                    let mut walk = Walk::new(i as u64);
                    HistOp::Insert {
                        key: key(i),
                        points: (0..per as i64)
                            .map(|j| point(T0 + j * MINUTE, walk.next(), rec))
                            .collect(),
                    }
                })
                .collect();
            rt.block_on(store.append_history("bench", ops)?.wait())?;
        }
        store.close();
    }
    let store = open(dir.path())?;
    let db = store.tsdb().clone();
    let ids: Vec<u32> = (0..series)
        .filter_map(|i| {
            db.entity("bench", &key(i).entity)
                .and_then(|e| e.series.first().map(|s| s.id))
        })
        .collect();
    let sel = Selection {
        last_n: Some(1),
        ..Selection::all()
    };
    let pass = || -> anyhow::Result<Duration> {
        let t = Instant::now();
        for &id in &ids {
            let (pts, _) = db.read(id, &sel);
            anyhow::ensure!(pts.len() == 1, "lastN=1 gave {}", pts.len());
        }
        Ok(t.elapsed())
    };
    let cold = pass()?;
    let warm = pass()?;
    store.close();
    let v = json!({"series": ids.len(), "cold_ms": ms(cold), "warm_ms": ms(warm)});
    eprintln!("history lastN=1: {v}");
    Ok(v)
}

/// Queries while ingesting at `rate` observations per second.
fn run_mixed(p: Params, rate: f64) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let db = store.tsdb().clone();
    let started = Instant::now();
    let hist = std::thread::scope(|s| -> anyhow::Result<Histogram<u64>> {
        let ing = s.spawn(|| ingest(&store, p, Some(rate), &stop, &done));
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let mut i = 0usize;
        std::thread::sleep(Duration::from_millis(200));
        while started.elapsed() < Duration::from_secs(p.seconds) {
            // The last hour of one series, and the daily mean of another.
            let k = key((i * 7919) % p.series);
            i += 1;
            let t = Instant::now();
            if let Some(e) = db.entity("bench", &k.entity) {
                if let Some(s) = e.series.first() {
                    let last = db
                        .read(
                            s.id,
                            &Selection {
                                last_n: Some(60),
                                ..Selection::all()
                            },
                        )
                        .0;
                    let next = |s: i64| s + DAY;
                    std::hint::black_box(daily_means(&db, s.id, &next)?);
                    std::hint::black_box(last);
                }
            }
            h.record(t.elapsed().as_micros().max(1) as u64)?;
            std::thread::sleep(Duration::from_millis(2));
        }
        stop.store(true, Ordering::Relaxed);
        ing.join()
            .map_err(|_| anyhow::anyhow!("ingest panicked"))??;
        Ok(h)
    })?;
    let secs = started.elapsed().as_secs_f64();
    store.close();
    let v = json!({
        "target_obs_per_sec": rate.round(),
        "obs_per_sec": (done.load(Ordering::Relaxed) as f64 / secs).round(),
        "queries": hist.len(),
        "query": "lastN=60 of one series + daily means of its whole history",
        "p50_ms": hist.value_at_quantile(0.5) as f64 / 1000.0,
        "p99_ms": hist.value_at_quantile(0.99) as f64 / 1000.0,
        "max_ms": hist.max() as f64 / 1000.0,
    });
    eprintln!("history mixed: {v}");
    Ok(v)
}

/// Runs every part; with the `sqlite` feature, the SQLite baseline too.
pub fn run(p: Params) -> anyhow::Result<Value> {
    let ingest = run_ingest(p)?;
    let storage = run_storage(p)?;
    let agg = run_aggregate(p)?;
    let last = run_last_n(p)?;
    let max_rate = ingest["obs_per_sec"].as_f64().unwrap_or(100_000.0);
    let mixed = run_mixed(p, max_rate * 0.5)?;
    let out = json!({
        "ingest": ingest,
        "storage": storage,
        "aggregate_year_daily_avg": agg,
        "last_n_10k": last,
        "mixed_50pct": mixed,
    });
    #[cfg(feature = "sqlite")]
    let out = {
        let mut out = out;
        let base = crate::sqlite::run(p)?;
        let ratio = |a: &Value, b: &Value| match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) if y > 0.0 => json!(((x / y) * 100.0).round() / 100.0),
            _ => Value::Null,
        };
        out["vs_sqlite"] = json!({
            "ingest_speedup": ratio(&out["ingest"]["obs_per_sec"], &base["ingest"]["obs_per_sec"]),
            "storage_ratio": ratio(&base["storage"]["bytes_per_obs"], &out["storage"]["bytes_per_obs"]),
            "aggregate_speedup": ratio(&base["aggregate_year_daily_avg"]["p50_ms"], &out["aggregate_year_daily_avg"]["p50_ms"]),
            "last_n_speedup": ratio(&base["last_n_10k"]["warm_ms"], &out["last_n_10k"]["warm_ms"]),
        });
        out["sqlite"] = base;
        out
    };
    Ok(out)
}
