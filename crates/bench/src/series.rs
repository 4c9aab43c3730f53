//! `series`: the history engine at ten million series (issue #18, point 3), in process.
//!
//! Creates `--series` series (three attributes of each `TrafficFlowObserved` entity,
//! one point each, the entity's type recorded) in a fresh engine and checkpoints them
//! (the registry is written whole). Then `--series-rounds` rounds each give one point
//! to 1 % of the series (a different 1 % each round) and checkpoint. It prints, per
//! checkpoint, the time to freeze the heads (`begin`, writers held out) and to write
//! the segment and the registry (`finish`), the registry bytes written, how many
//! rounds wrote the registry whole, the blocks per series that compaction leaves, and
//! the time and memory to open the engine again.
//!
//! The baseline in the same run is the first checkpoint: the whole registry, which
//! format version 1 rewrote at every checkpoint.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use citybrain_tsdb::{HistOp, Point, SeriesKey, Tsdb, TsdbOptions, Val};
use serde_json::{json, Value};

const ATTRS: [&str; 3] = [
    "https://smartdatamodels.org/dataModel.Transportation/intensity",
    "https://smartdatamodels.org/dataModel.Transportation/averageVehicleSpeed",
    "https://smartdatamodels.org/dataModel.Transportation/occupancy",
];
const TYPE: &str = "https://smartdatamodels.org/dataModel.Transportation/TrafficFlowObserved";
const NOW_MS: i64 = 1_800_000_000_000;

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

fn registry_bytes(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("registry.log")).map_or(0, |m| m.len())
}

fn point(t: i64, v: f64) -> Point {
    Point {
        t,
        rec: t * 1000,
        observed: true,
        unit: None,
        v: Val::F(v),
    }
}

/// Times one checkpoint: (begin ms, finish ms, registry bytes written, whole).
fn checkpoint(db: &Tsdb, dir: &Path, lsn: u64) -> anyhow::Result<(f64, f64, u64, bool)> {
    let before = registry_bytes(dir);
    let t = Instant::now();
    let job = db.begin_checkpoint(lsn);
    let begin = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    db.finish_checkpoint(job, NOW_MS)?;
    let finish = t.elapsed().as_secs_f64() * 1e3;
    let after = registry_bytes(dir);
    // A whole write replaces the file: it is then no longer than what was written.
    let whole = after <= before || before == 0;
    let written = if whole { after } else { after - before };
    Ok((begin, finish, written, whole))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn run(series: usize, rounds: usize) -> anyhow::Result<Value> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("history");
    let rss0 = rss_mb();
    let db = Tsdb::open(TsdbOptions::new(&dir))?;
    let tenant: Arc<str> = Arc::from("");
    let attrs: Vec<Arc<str>> = ATTRS.iter().map(|a| Arc::from(*a)).collect();
    let ty: Arc<str> = Arc::from(TYPE);
    let t = Instant::now();
    let entities = series.div_ceil(ATTRS.len());
    let mut made = 0;
    for e in 0..entities {
        let entity: Arc<str> = Arc::from(format!("urn:ngsi-ld:TrafficFlowObserved:{e:08}"));
        db.apply(&HistOp::EntityMeta {
            tenant: tenant.clone(),
            entity: entity.clone(),
            types: vec![ty.clone()],
            scope: None,
        });
        for attr in &attrs {
            if made == series {
                break;
            }
            db.apply(&HistOp::Insert {
                key: SeriesKey {
                    tenant: tenant.clone(),
                    entity: entity.clone(),
                    attr: attr.clone(),
                    dataset: None,
                },
                points: vec![point(NOW_MS, (made % 100) as f64)],
            });
            made += 1;
        }
    }
    let fill_s = t.elapsed().as_secs_f64();
    let rss_filled = rss_mb() - rss0;
    eprintln!("series: {made} series in {fill_s:.1} s");
    let (b0, f0, whole_bytes, _) = checkpoint(&db, &dir, 1)?;
    eprintln!(
        "series: first checkpoint {:.0} ms, registry {whole_bytes} bytes",
        b0 + f0
    );
    let step = 100;
    let (mut begins, mut finishes, mut deltas) = (Vec::new(), Vec::new(), Vec::new());
    let (mut wholes, mut whole_ms) = (0, Vec::new());
    for r in 0..rounds {
        let mut id = r % step;
        let mut n = 0;
        while id < made {
            if let Some(key) = db.key(id as u32) {
                db.apply(&HistOp::Insert {
                    key,
                    points: vec![point(NOW_MS + 60_000 * (r as i64 + 1), r as f64)],
                });
                n += 1;
            }
            id += step;
        }
        let (b, f, bytes, whole) = checkpoint(&db, &dir, r as u64 + 2)?;
        eprintln!(
            "series: round {r}: {n} points, begin {b:.0} ms, finish {f:.0} ms, {bytes} registry bytes{}",
            if whole { " (whole)" } else { "" }
        );
        begins.push(b);
        finishes.push(f);
        if whole {
            wholes += 1;
            whole_ms.push(b + f);
        } else {
            deltas.push(bytes as f64);
        }
    }
    let (blocks, max_blocks) = db.block_counts();
    let stats = db.stats();
    let log_bytes = registry_bytes(&dir);
    drop(db);
    let rss_dropped = rss_mb() - rss0;
    let t = Instant::now();
    let db = Tsdb::open(TsdbOptions::new(&dir))?;
    let open_s = t.elapsed().as_secs_f64();
    let rss_open = rss_mb() - rss0;
    anyhow::ensure!(db.stats().series == made as u64, "series lost on reopen");
    for v in [&mut begins, &mut finishes, &mut deltas] {
        v.sort_by(f64::total_cmp);
    }
    Ok(json!({
        "series": made,
        "entities": entities,
        "fill_s": fill_s,
        "rss_mb_after_fill": rss_filled,
        "bytes_per_series_after_fill": rss_filled * 1048576.0 / made as f64,
        "first_checkpoint_ms": b0 + f0,
        "whole_registry_bytes": whole_bytes,
        "rounds": rounds,
        "points_per_round": made / step,
        "begin_ms_p50": pct(&begins, 0.5),
        "begin_ms_max": pct(&begins, 1.0),
        "finish_ms_p50": pct(&finishes, 0.5),
        "finish_ms_max": pct(&finishes, 1.0),
        "delta_registry_bytes_p50": pct(&deltas, 0.5),
        "delta_registry_bytes_max": pct(&deltas, 1.0),
        "whole_rewrites": wholes,
        "whole_rewrite_ms": whole_ms,
        "registry_log_bytes_at_end": log_bytes,
        "files": stats.files,
        "blocks": blocks,
        "blocks_per_series_max": max_blocks,
        "reopen_s": open_s,
        "rss_mb_after_drop": rss_dropped,
        "rss_mb_after_reopen": rss_open,
    }))
}
