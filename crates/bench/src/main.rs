//! citybrain-bench: load scenarios against a running citybrain. Prints progress on stderr
//! and one JSON object with every scenario's figures as the last line of stdout.
//!
//! ```text
//! citybrain-bench --url http://127.0.0.1:1026 [--scenarios patch,get,query,batch,notify]
//!                 [--entities 10000] [--duration 10] [--connections 64] [--server-pid PID]
//! ```

// The load generator stamps its observations with the wall clock it measures against.
#![allow(clippy::disallowed_methods)]

mod backup;
mod federation;
mod geo;
mod history;
mod hub;
mod ingest;
mod restart;
mod rules;
mod series;
mod soak;
#[cfg(feature = "sqlite")]
mod sqlite;
mod temporal;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::Mutex;

/// The same allocator as the citybrain binary, so in-process scenarios measure the
/// engine as it runs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Clone)]
#[command(
    name = "citybrain-bench",
    about = "Load scenarios against a running citybrain"
)]
struct Args {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:1026")]
    url: String,
    /// Comma-separated scenarios: patch, get, query, batch, notify, memory, history,
    /// import, mqtt, edge, rules, hub, geo, backup, series (the last nine in process,
    /// no server), restart (in process, then the server started on what it wrote),
    /// temporal, soak (starts and restarts its own server), federation (starts
    /// two servers: a query and a retrieval before and after one is registered as the
    /// other's context source).
    #[arg(long, default_value = "patch,get,query,batch,notify,temporal")]
    scenarios: String,
    /// Entities created for the patch/get/query scenarios.
    #[arg(long, default_value_t = 10_000)]
    entities: usize,
    /// Seconds per timed scenario.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Attributes per entity in the batch scenario.
    #[arg(long, default_value_t = 10)]
    batch_attrs: usize,
    /// Entities per batch request.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Entities for the memory scenario.
    #[arg(long, default_value_t = 1_000_000)]
    memory_entities: usize,
    /// PID of the server, to read its resident memory (memory scenario).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Series written by the history scenario's ingest.
    #[arg(long, default_value_t = 10_000)]
    history_series: usize,
    /// Points per series per history ingest batch.
    #[arg(long, default_value_t = 10)]
    history_points: usize,
    /// Records per file in the import scenario.
    #[arg(long, default_value_t = 1_000_000)]
    import_records: usize,
    /// Records per durable write in the import scenario (`citybrain import --chunk`).
    #[arg(long, default_value_t = citybrain_ingest::import::DEFAULT_CHUNK)]
    import_chunk: usize,
    /// File formats of the import scenario.
    #[arg(long, default_value = "csv,json,xml")]
    import_formats: String,
    /// Observations per second written in the hub scenario.
    #[arg(long, default_value_t = 100_000)]
    hub_rate: usize,
    /// Observations streamed through 10,000 rules in the rules scenario.
    #[arg(long, default_value_t = 2_000_000)]
    rule_observations: usize,
    /// QoS 0 messages in the mqtt scenario.
    #[arg(long, default_value_t = 1_000_000)]
    mqtt_messages: usize,
    /// Located entities of the geo scenario.
    #[arg(long, default_value_t = 1_000_000)]
    geo_entities: usize,
    /// Queries of each kind in the geo scenario (with the spatial index).
    #[arg(long, default_value_t = 2_000)]
    geo_queries: usize,
    /// Queries of each kind in the geo scenario's baseline (scans).
    #[arg(long, default_value_t = 20)]
    geo_baseline_queries: usize,
    /// History series of the series scenario.
    #[arg(long, default_value_t = 10_000_000)]
    series: usize,
    /// Checkpoint rounds of the series scenario (each gives a point to 1 % of the series).
    #[arg(long, default_value_t = 20)]
    series_rounds: usize,
    /// Entities each server holds in the federation scenario.
    #[arg(long, default_value_t = 1_000)]
    federation_entities: usize,
    /// The citybrain binary the soak and federation scenarios start (and restart).
    #[arg(long, default_value = "target/release/citybrain")]
    citybrain: std::path::PathBuf,
    /// The mappings directory the soak scenario's server reads (the bus mapping).
    #[arg(long, default_value = "examples/mappings")]
    mappings: std::path::PathBuf,
    /// Seconds of the soak scenario (a kill -9 and restart half way).
    #[arg(long, default_value_t = 3600)]
    soak_seconds: u64,
    /// Scales the soak scenario's rates.
    #[arg(long, default_value_t = 1.0)]
    soak_rate: f64,
    /// Short history runs (CI smoke).
    #[arg(long)]
    quick: bool,
    /// Tenant used for the run (a fresh one keeps runs apart).
    #[arg(long, default_value = "bench")]
    tenant: String,
    /// An API key or token sent as `Authorization: Bearer` on every request (a server
    /// with authentication on).
    #[arg(long)]
    key: Option<String>,
    /// The entities exist already (seeded by an earlier run in the same tenant): for a
    /// key that may only read.
    #[arg(long)]
    seeded: bool,
}

struct Ctx {
    args: Args,
    http: reqwest::Client,
}

fn entity(i: usize, attrs: usize) -> Value {
    let mut e = json!({
        "id": format!("urn:ngsi-ld:TrafficFlowObserved:b{i:07}"),
        "type": "TrafficFlowObserved",
        "intensity": {"type": "Property", "value": (i % 1500) as i64, "unitCode": "E50"},
        "averageVehicleSpeed": {"type": "Property", "value": (i % 90) as f64, "unitCode": "KMH"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.1 + (i % 1000) as f64 * 1e-4, 30.2 + (i / 1000 % 1000) as f64 * 1e-4]}}
    });
    for a in 0..attrs.saturating_sub(3) {
        e[format!("extra{a}")] = json!({"type": "Property", "value": (i + a) as f64 * 0.5});
    }
    e
}

fn summary(h: &Histogram<u64>, ops: u64, secs: f64) -> Value {
    json!({
        "ops": ops,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "ops_per_sec": (ops as f64 / secs).round(),
        "p50_ms": h.value_at_quantile(0.50) as f64 / 1000.0,
        "p99_ms": h.value_at_quantile(0.99) as f64 / 1000.0,
        "max_ms": h.max() as f64 / 1000.0,
    })
}

impl Ctx {
    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self
            .http
            .request(method, format!("{}{}", self.args.url, path))
            .header("NGSILD-Tenant", &self.args.tenant);
        match &self.args.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    async fn seed(&self, n: usize, attrs: usize) -> anyhow::Result<()> {
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let body: Vec<Value> = chunk.iter().map(|i| entity(*i, attrs)).collect();
            let r = self
                .req(reqwest::Method::POST, "/ngsi-ld/v1/entityOperations/upsert")
                .json(&body)
                .send()
                .await?;
            if !r.status().is_success() {
                bail!(
                    "seeding failed: {} {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                );
            }
        }
        Ok(())
    }

    /// Runs `op(i)` from `connections` workers for `duration`; returns figures.
    async fn timed<F, Fut>(&self, name: &str, op: F) -> anyhow::Result<Value>
    where
        F: Fn(u64) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
    {
        let op = Arc::new(op);
        let stop = Arc::new(AtomicBool::new(false));
        let counter = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
            1, 60_000_000, 3,
        )?));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..self.args.connections {
            let (op, stop, counter, errors, hist) = (
                op.clone(),
                stop.clone(),
                counter.clone(),
                errors.clone(),
                hist.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut local = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).ok();
                while !stop.load(Ordering::Relaxed) {
                    let i = counter.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    if op(i).await.is_err() {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(h) = local.as_mut() {
                        let _ = h.record(t.elapsed().as_micros().max(1) as u64);
                    }
                }
                if let Some(h) = local {
                    let _ = hist.lock().await.add(&h);
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(self.args.duration)).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            t.await?;
        }
        let secs = start.elapsed().as_secs_f64();
        let h = hist.lock().await;
        let ops = h.len();
        let mut s = summary(&h, ops, secs);
        s["errors"] = json!(errors.load(Ordering::Relaxed));
        eprintln!("{name}: {s}");
        Ok(s)
    }

    async fn patch(self: &Arc<Self>) -> anyhow::Result<Value> {
        let me = self.clone();
        let n = self.args.entities as u64;
        self.timed("patch", move |i| {
            let me = me.clone();
            async move {
                let id = format!("urn:ngsi-ld:TrafficFlowObserved:b{:07}", i % n);
                let body = json!({"intensity": {"type": "Property", "value": i % 1500, "unitCode": "E50"}});
                let r = me.req(reqwest::Method::PATCH, &format!("/ngsi-ld/v1/entities/{id}/attrs")).json(&body).send().await?;
                if r.status() != 204 {
                    bail!("status {}", r.status());
                }
                Ok(())
            }
        })
        .await
    }

    async fn get(self: &Arc<Self>) -> anyhow::Result<Value> {
        let me = self.clone();
        let n = self.args.entities as u64;
        self.timed("get", move |i| {
            let me = me.clone();
            async move {
                let id = format!("urn:ngsi-ld:TrafficFlowObserved:b{:07}", (i * 7919) % n);
                let r = me
                    .req(reqwest::Method::GET, &format!("/ngsi-ld/v1/entities/{id}"))
                    .send()
                    .await?;
                if r.status() != 200 {
                    bail!("status {}", r.status());
                }
                r.bytes().await?;
                Ok(())
            }
        })
        .await
    }

    async fn query(self: &Arc<Self>) -> anyhow::Result<Value> {
        let me = self.clone();
        self.timed("query", move |i| {
            let me = me.clone();
            async move {
                // type + q, a selective range on an indexed type: about 10 hits per query.
                let lo = (i % 1400) as i64;
                let q = format!("intensity%3E%3D{lo};intensity%3C{}", lo + 2);
                let r = me
                    .req(
                        reqwest::Method::GET,
                        &format!("/ngsi-ld/v1/entities?type=TrafficFlowObserved&q={q}&limit=20"),
                    )
                    .send()
                    .await?;
                if r.status() != 200 {
                    bail!("status {}", r.status());
                }
                r.bytes().await?;
                Ok(())
            }
        })
        .await
    }

    async fn batch(self: &Arc<Self>) -> anyhow::Result<Value> {
        let me = self.clone();
        let (size, attrs) = (self.args.batch_size, self.args.batch_attrs);
        // Pre-encode bodies so the load generator measures the server, not serde.
        let bodies: Arc<Vec<String>> = Arc::new(
            (0..16)
                .map(|k| {
                    serde_json::to_string(
                        &(0..size)
                            .map(|j| entity(k * size + j, attrs))
                            .collect::<Vec<_>>(),
                    )
                    .unwrap_or_default()
                })
                .collect(),
        );
        let conns = self.args.connections.min(8);
        let inner = Arc::new(Ctx {
            args: Args {
                connections: conns,
                ..self.args.clone()
            },
            http: self.http.clone(),
        });
        let mut s = inner
            .timed("batch", move |i| {
                let (me, bodies) = (me.clone(), bodies.clone());
                async move {
                    let body = bodies[(i % bodies.len() as u64) as usize].clone();
                    let r = me
                        .req(reqwest::Method::POST, "/ngsi-ld/v1/entityOperations/upsert")
                        .header("Content-Type", "application/json")
                        .body(body)
                        .send()
                        .await?;
                    if !r.status().is_success() {
                        bail!("status {}", r.status());
                    }
                    Ok(())
                }
            })
            .await?;
        let reqs = s["ops"].as_f64().unwrap_or(0.0);
        let secs = s["seconds"].as_f64().unwrap_or(1.0);
        s["entities_per_request"] = json!(size);
        s["attributes_per_entity"] = json!(attrs);
        s["attribute_updates_per_sec"] = json!((reqs * (size * attrs) as f64 / secs).round());
        Ok(s)
    }

    async fn notify(self: &Arc<Self>) -> anyhow::Result<Value> {
        // A local receiver; latency = notification arrival - PATCH send.
        let sent: Arc<std::sync::Mutex<std::collections::HashMap<u64, Instant>>> = Arc::default();
        let hist = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new_with_bounds(
            1, 60_000_000, 3,
        )?));
        let (s2, h2) = (sent.clone(), hist.clone());
        let app = axum::Router::new().route(
            "/n",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let (sent, hist) = (s2.clone(), h2.clone());
                async move {
                    let now = Instant::now();
                    if let Some(items) = v["data"].as_array() {
                        for e in items {
                            if let Some(seq) = e["seq"].as_u64() {
                                if let Some(t) = sent.lock().ok().and_then(|mut m| m.remove(&seq)) {
                                    if let Ok(mut h) = hist.lock() {
                                        let _ =
                                            h.record(
                                                now.duration_since(t).as_micros().max(1) as u64
                                            );
                                    }
                                }
                            }
                        }
                    }
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        let sub = json!({"type": "Subscription", "entities": [{"type": "NotifyProbe"}], "watchedAttributes": ["seq"],
                         "notification": {"format": "keyValues", "attributes": ["seq"], "endpoint": {"uri": format!("http://{addr}/n")}}});
        let r = self
            .req(reqwest::Method::POST, "/ngsi-ld/v1/subscriptions")
            .json(&sub)
            .send()
            .await?;
        if r.status() != 201 {
            bail!("subscription: {}", r.status());
        }
        let sub_url = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let probes = 50usize;
        let body: Vec<Value> = (0..probes).map(|i| json!({"id": format!("urn:ngsi-ld:NotifyProbe:{i}"), "type": "NotifyProbe", "seq": 0})).collect();
        self.req(reqwest::Method::POST, "/ngsi-ld/v1/entityOperations/upsert")
            .json(&body)
            .send()
            .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let start = Instant::now();
        let mut seq = 1_000_000u64;
        let mut count = 0u64;
        // A steady 1,000 updates/s for the duration, each watched by the subscription.
        while start.elapsed() < Duration::from_secs(self.args.duration) {
            let tick = Instant::now();
            let mut handles = Vec::new();
            for k in 0..10 {
                seq += 1;
                if let Ok(mut m) = sent.lock() {
                    m.insert(seq, Instant::now());
                }
                let (me, s) = (self.clone(), seq);
                handles.push(tokio::spawn(async move {
                    let id = format!("urn:ngsi-ld:NotifyProbe:{}", k % probes);
                    me.req(
                        reqwest::Method::PATCH,
                        &format!("/ngsi-ld/v1/entities/{id}/attrs"),
                    )
                    .json(&json!({"seq": s}))
                    .send()
                    .await
                }));
            }
            for h in handles {
                let _ = h.await;
                count += 1;
            }
            if let Some(rest) = Duration::from_millis(10).checked_sub(tick.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let h = hist
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .clone();
        let secs = start.elapsed().as_secs_f64();
        let mut s = summary(&h, h.len(), secs);
        s["updates_sent"] = json!(count);
        s["notifications_received"] = json!(h.len());
        let _ = self.req(reqwest::Method::DELETE, &sub_url).send().await;
        eprintln!("notify: {s}");
        Ok(s)
    }

    async fn memory(self: &Arc<Self>) -> anyhow::Result<Value> {
        let pid = self
            .args
            .server_pid
            .context("the memory scenario needs --server-pid")?;
        let rss = || -> anyhow::Result<u64> {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
            let kb = status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .context("VmRSS")?;
            Ok(kb * 1024)
        };
        let before = rss()?;
        let n = self.args.memory_entities;
        let start = Instant::now();
        let tenant = format!("{}-mem", self.args.tenant);
        let me = Arc::new(Ctx {
            args: Args {
                tenant,
                ..self.args.clone()
            },
            http: self.http.clone(),
        });
        me.seed(n, 3).await?;
        let load_secs = start.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss()?;
        let per = (after.saturating_sub(before)) as f64 / n as f64;
        let s = json!({"entities": n, "rss_before_bytes": before, "rss_after_bytes": after, "bytes_per_entity": per.round(), "load_seconds": load_secs,
                       "entity_shape": "TrafficFlowObserved with 2 Properties (value, unitCode) and a Point location"});
        eprintln!("memory: {s}");
        Ok(s)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections * 2)
        .tcp_nodelay(true)
        .build()?;
    let ctx = Arc::new(Ctx {
        args: args.clone(),
        http,
    });
    let scenarios: Vec<&str> = args.scenarios.split(',').map(str::trim).collect();
    let mut out = serde_json::Map::new();
    out.insert("url".into(), json!(args.url));
    out.insert("connections".into(), json!(args.connections));
    out.insert("duration_s".into(), json!(args.duration));
    if !args.seeded
        && scenarios
            .iter()
            .any(|s| matches!(*s, "patch" | "get" | "query"))
    {
        eprintln!("seeding {} entities", args.entities);
        ctx.seed(args.entities, 3).await?;
    }
    let mut batch_rate = None;
    for s in scenarios {
        let v = match s {
            "patch" => ctx.patch().await?,
            "get" => ctx.get().await?,
            "query" => ctx.query().await?,
            "batch" => {
                let v = ctx.batch().await?;
                batch_rate = v["attribute_updates_per_sec"].as_f64();
                v
            }
            "temporal" => ctx.temporal(batch_rate).await?,
            "notify" => ctx.notify().await?,
            "memory" => ctx.memory().await?,
            "history" => {
                let p = history::Params {
                    seconds: args.duration,
                    series: args.history_series,
                    points_per_batch: args.history_points,
                    writers: 2,
                    quick: args.quick,
                };
                tokio::task::spawn_blocking(move || history::run(p)).await??
            }
            "import" => {
                let n = if args.quick {
                    100_000
                } else {
                    args.import_records
                };
                ingest::import(n, &args.import_formats, args.import_chunk).await?
            }
            "mqtt" => {
                ingest::mqtt(
                    if args.quick {
                        100_000
                    } else {
                        args.mqtt_messages
                    },
                    if args.quick { 2 } else { args.duration },
                )
                .await?
            }
            "edge" => ingest::edge()?,
            "soak" => {
                soak::run(soak::SoakArgs {
                    citybrain: args.citybrain.clone(),
                    mappings: args.mappings.clone(),
                    seconds: if args.quick { 60 } else { args.soak_seconds },
                    rate: args.soak_rate,
                })
                .await?
            }
            "backup" => {
                let n = if args.quick {
                    50_000
                } else {
                    args.geo_entities
                };
                tokio::task::spawn_blocking(move || backup::run(n)).await??
            }
            "restart" => {
                let n = if args.quick {
                    50_000
                } else {
                    args.geo_entities
                };
                restart::run(n, &args.citybrain).await?
            }
            "series" => {
                let (n, r) = if args.quick {
                    (300_000, 10)
                } else {
                    (args.series, args.series_rounds)
                };
                tokio::task::spawn_blocking(move || series::run(n, r)).await??
            }
            "geo" => {
                let (n, q, b) = if args.quick {
                    (50_000, 200, 5)
                } else {
                    (
                        args.geo_entities,
                        args.geo_queries,
                        args.geo_baseline_queries,
                    )
                };
                geo::run(n, q, b).await?
            }
            "federation" => {
                let (n, requests) = if args.quick {
                    (200, 200)
                } else {
                    (args.federation_entities, 2_000)
                };
                federation::run(&args.citybrain, n, requests).await?
            }
            "hub" => hub::run(if args.quick { 2 } else { args.duration }, args.hub_rate).await?,
            "rules" => {
                let n = if args.quick {
                    100_000
                } else {
                    args.rule_observations
                };
                tokio::task::spawn_blocking(move || rules::run(n)).await??
            }
            other => bail!("unknown scenario '{other}'"),
        };
        out.insert(s.into(), v);
    }
    println!("{}", Value::Object(out));
    Ok(())
}
