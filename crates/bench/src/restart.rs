//! `restart`: how long a city of `--geo-entities` entities with history takes to come
//! back (issue #18, point 2), and what it costs in memory.
//!
//! Writes the entities (three attributes each: two readings and a location, so three
//! history series per entity) through the store's bulk path into a fresh data
//! directory, then gives one reading of a tenth of them a new value in each of ten
//! rounds (so the log holds updates as well as creations), and closes the store. It
//! then opens the directory in process twice (`EmbeddedStore::open`: snapshot, history,
//! replay of the log), and, when `--citybrain` names a built server, starts
//! `citybrain serve` on it twice and times the start to the first `200` of `/health`,
//! with the server's resident memory once healthy.

use std::time::{Duration, Instant};

use citybrain_store::{EmbeddedStore, EntityStore, StoreOptions};
use serde_json::{json, Value};

use crate::backup::{runtime, write_grid, write_located};

fn load(dir: &std::path::Path, entities: usize) -> anyhow::Result<f64> {
    let store = EmbeddedStore::open(StoreOptions::new(dir))?;
    let rt = runtime()?;
    let t = Instant::now();
    write_grid(&rt, &store, 0..entities)?;
    for round in 0..10 {
        // A tenth of them, one reading each.
        let ids: Vec<usize> = (round..entities).step_by(10).collect();
        write_located(&rt, &store, &ids, |e| {
            e.attrs.retain(|(n, _)| n.ends_with("intensity"))
        })?;
    }
    let took = t.elapsed().as_secs_f64();
    store.close();
    Ok(took)
}

fn rss_mb(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
}

/// Starts the server on `data` and times the start to its first healthy answer.
async fn serve_once(
    citybrain: &std::path::Path,
    data: &std::path::Path,
) -> anyhow::Result<(f64, f64)> {
    let t = Instant::now();
    let mut server = crate::soak::start_server(citybrain, data, &[])?;
    let client = reqwest::Client::new();
    let url = format!("{}/health", server.base);
    let healthy = loop {
        if let Ok(r) = client.get(&url).send().await {
            if r.status().is_success() {
                break t.elapsed().as_secs_f64();
            }
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(300),
            "no healthy answer in 300 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let rss = rss_mb(server.child.id()).unwrap_or(0.0);
    // A graceful stop (SIGTERM), as an operator's restart does.
    let _ = std::process::Command::new("kill")
        .arg(server.child.id().to_string())
        .status();
    let _ = server.child.wait();
    Ok((healthy, rss))
}

pub async fn run(entities: usize, citybrain: &std::path::Path) -> anyhow::Result<Value> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let load_s = {
        let data = data.clone();
        tokio::task::spawn_blocking(move || load(&data, entities)).await??
    };
    eprintln!("restart: {entities} entities and ten update rounds written in {load_s:.1} s");
    let mut opens = Vec::new();
    for _ in 0..2 {
        let data = data.clone();
        let (s, n) = tokio::task::spawn_blocking(move || -> anyhow::Result<(f64, usize)> {
            let t = Instant::now();
            let store = EmbeddedStore::open(StoreOptions::new(&data))?;
            let s = t.elapsed().as_secs_f64();
            let n = store.count("")?;
            store.close();
            Ok((s, n))
        })
        .await??;
        anyhow::ensure!(
            n == entities,
            "{n} entities after reopening, not {entities}"
        );
        eprintln!("restart: opened in process in {s:.2} s");
        opens.push(s);
    }
    let mut serves = Vec::new();
    if citybrain.exists() {
        for _ in 0..2 {
            let (s, rss) = serve_once(citybrain, &data).await?;
            eprintln!("restart: server healthy after {s:.2} s, RSS {rss:.0} MB");
            serves.push(json!({"healthy_s": s, "rss_mb": rss}));
        }
    } else {
        eprintln!(
            "restart: {} not built; the server is not timed",
            citybrain.display()
        );
    }
    let disk: u64 = walk_size(&data);
    Ok(json!({
        "entities": entities,
        "load_s": load_s,
        "data_bytes": disk,
        "open_in_process_s": opens,
        "server": serves,
    }))
}

fn walk_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk_size(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        })
        .unwrap_or(0)
}
