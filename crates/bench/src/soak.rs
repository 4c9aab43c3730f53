//! `soak`: a long mixed load against a real server process, with a `kill -9` and a
//! restart half way (issue #18, point 6). `scripts/soak.sh --minutes N` runs it.
//!
//! The bench starts `citybrain serve` itself (`--citybrain`, on a fresh data directory,
//! the bus mapping of `--mappings` for MQTT) and, at fixed rates (`--soak-rate` scales
//! them; the defaults are well under what the other scenarios measured here):
//! - HTTP: counters bumped one PATCH at a time (200/s; each acknowledged value is
//!   remembered), batch upserts of 200 sensors (5/s), `type` + `q` queries (50/s),
//!   temporal `lastN` reads (10/s);
//! - MQTT: bus positions, QoS 1, 50/s, through the mapping (a threshold rule on their
//!   speed raises events and incidents);
//! - subscriptions: one to an endpoint that answers after 2 s, one to a closed port;
//! - the live feed: a reader of `GET /platform/v1/live` that reconnects.
//!
//! Every 5 s it samples the server's resident memory. At half time it kills the server
//! with SIGKILL, restarts it on the same directory and times the way back to
//! `/health`; before the load reaches the new process it reads every counter: one
//! below the value the killed process acknowledged is a lost write (and again at the
//! end). A `kill -9` keeps the page cache: this proves the log and recovery, not the
//! fsync (the full-disk and fail-point tests and the store's design cover that). It prints p50/p99 per operation for each half, errors by operation
//! and status (refused connections while the server is down are counted apart), the
//! memory series and the growth over the second half after its warm-up.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::{json, Value};

const COUNTERS: usize = 200;
const SENSORS: usize = 1000;
const BUSES: usize = 50;

/// What the run needs from the command line.
pub struct SoakArgs {
    pub citybrain: PathBuf,
    pub mappings: PathBuf,
    pub seconds: u64,
    pub rate: f64,
}

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
    mqtt: String,
}

fn start(a: &SoakArgs, data: &std::path::Path) -> anyhow::Result<Server> {
    start_server(
        &a.citybrain,
        data,
        &[("CITYBRAIN_INGEST__MAPPINGS_DIR", a.mappings.as_os_str())],
    )
}

/// Starts `citybrain serve` on free HTTP and MQTT ports over `data` (its log beside
/// it), with `env` added; the addresses it says it listens on.
pub(crate) fn start_server(
    citybrain: &std::path::Path,
    data: &std::path::Path,
    env: &[(&str, &std::ffi::OsStr)],
) -> anyhow::Result<Server> {
    // The server's log goes to a file beside its data (its size is reported).
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path(data))?;
    let mut child = Command::new(citybrain)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("starting {}", citybrain.display()))?;
    let mut out = BufReader::new(child.stdout.take().context("server stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    let base = line
        .trim()
        .strip_prefix("citybrain listening on ")
        .with_context(|| format!("unexpected first line {line:?}"))?
        .to_string();
    line.clear();
    out.read_line(&mut line)?;
    let mqtt = line
        .trim()
        .strip_prefix("citybrain MQTT listening on mqtt://")
        .with_context(|| format!("unexpected second line {line:?}"))?
        .to_string();
    Ok(Server { child, base, mqtt })
}

fn log_path(data: &std::path::Path) -> PathBuf {
    data.with_extension("log")
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Latencies and outcomes, per operation and half.
#[derive(Default)]
struct Record {
    lat: BTreeMap<(&'static str, usize), Histogram<u64>>,
    errors: BTreeMap<(&'static str, String), u64>,
    ok: BTreeMap<&'static str, u64>,
}

struct Shared {
    base: Mutex<String>,
    half: AtomicU64,
    stop: AtomicBool,
    /// The server is being restarted: failures are the restart's.
    down: AtomicBool,
    rec: Mutex<Record>,
    acked: Mutex<Vec<u64>>,
}

impl Shared {
    fn base(&self) -> String {
        self.base.lock().clone()
    }

    fn outcome(
        &self,
        op: &'static str,
        started: Instant,
        res: Result<reqwest::StatusCode, reqwest::Error>,
    ) -> bool {
        let mut r = self.rec.lock();
        match res {
            Ok(s) if s.is_success() => {
                let half = self.half.load(Ordering::Relaxed) as usize;
                let h = r.lat.entry((op, half)).or_insert_with(|| {
                    Histogram::new_with_bounds(1, 60_000_000, 3)
                        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
                });
                let _ = h.record(started.elapsed().as_micros().max(1) as u64);
                *r.ok.entry(op).or_insert(0) += 1;
                true
            }
            Ok(s) => {
                *r.errors.entry((op, s.as_u16().to_string())).or_insert(0) += 1;
                false
            }
            Err(_) if self.down.load(Ordering::Relaxed) => {
                *r.errors.entry((op, "during restart".into())).or_insert(0) += 1;
                false
            }
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timeout"
                } else {
                    "connection"
                };
                *r.errors.entry((op, kind.into())).or_insert(0) += 1;
                false
            }
        }
    }
}

/// Runs `f` every `1/per_second` seconds until the run stops.
async fn paced<F, Fut>(sh: Arc<Shared>, per_second: f64, mut f: F)
where
    F: FnMut(Arc<Shared>, u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second.max(0.01)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    while !sh.stop.load(Ordering::Relaxed) {
        tick.tick().await;
        f(sh.clone(), n).await;
        n += 1;
    }
}

/// A receiver that answers notifications after `delay`; its address.
async fn slow_receiver(delay: Duration) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 1 << 16];
                let _ = s.read(&mut buf).await;
                tokio::time::sleep(delay).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    Ok(format!("http://{addr}/notify"))
}

async fn setup(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let mut batch = Vec::new();
    for i in 0..COUNTERS {
        batch.push(json!({"id": format!("urn:ngsi-ld:Counter:{i}"), "type": "Counter", "v": {"type": "Property", "value": 0}}));
    }
    for chunk in batch.chunks(100) {
        let r = http
            .post(format!("{base}/ngsi-ld/v1/entityOperations/upsert"))
            .json(&chunk)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("seeding counters: {}", r.status());
        }
    }
    let slow = slow_receiver(Duration::from_secs(2)).await?;
    for (id, uri) in [
        ("slow", slow.as_str()),
        ("dead", "http://127.0.0.1:1/notify"),
    ] {
        let sub = json!({"id": format!("urn:ngsi-ld:Subscription:{id}"), "type": "Subscription",
            "entities": [{"type": "Sensor"}], "watchedAttributes": ["speed"],
            "notification": {"endpoint": {"uri": uri, "accept": "application/json"}}});
        let r = http
            .post(format!("{base}/ngsi-ld/v1/subscriptions"))
            .json(&sub)
            .send()
            .await?;
        if !r.status().is_success() {
            bail!("subscription {id}: {} {}", r.status(), r.text().await?);
        }
    }
    let rule = "id: bus-fast\ncategory: traffic\nseverity: medium\nfor:\n  type: Vehicle\nwhen:\n  kind: threshold\n  attr: speed\n  above: 60\n  clear: 50\n";
    let r = http
        .post(format!("{base}/platform/v1/rules"))
        .header("content-type", "application/yaml")
        .body(rule)
        .send()
        .await?;
    if !r.status().is_success() {
        bail!("rule: {} {}", r.status(), r.text().await?);
    }
    Ok(())
}

fn spawn_http_load(sh: &Arc<Shared>, http: &reqwest::Client, rate: f64) {
    let h = http.clone();
    tokio::spawn(paced(sh.clone(), 200.0 * rate, move |sh, n| {
        let h = h.clone();
        async move {
            let k = (n as usize) % COUNTERS;
            let v = n / COUNTERS as u64 + 1;
            let t = Instant::now();
            let res = h
                .patch(format!(
                    "{}/ngsi-ld/v1/entities/urn:ngsi-ld:Counter:{k}/attrs",
                    sh.base()
                ))
                .json(&json!({"v": {"type": "Property", "value": v}}))
                .send()
                .await
                .map(|r| r.status());
            if sh.outcome("patch", t, res) {
                let mut a = sh.acked.lock();
                a[k] = a[k].max(v);
            }
        }
    }));
    let h = http.clone();
    tokio::spawn(paced(sh.clone(), 5.0 * rate, move |sh, n| {
        let h = h.clone();
        async move {
            let start = (n as usize * 200) % SENSORS;
            let batch: Vec<Value> = (start..start + 200)
                .map(|i| {
                    json!({"id": format!("urn:ngsi-ld:Sensor:{i}"), "type": "Sensor",
                    "speed": {"type": "Property", "value": ((n as usize + i) % 90) as f64}})
                })
                .collect();
            let t = Instant::now();
            let res = h
                .post(format!("{}/ngsi-ld/v1/entityOperations/upsert", sh.base()))
                .json(&batch)
                .send()
                .await
                .map(|r| r.status());
            sh.outcome("batch", t, res);
        }
    }));
    let h = http.clone();
    tokio::spawn(paced(sh.clone(), 50.0 * rate, move |sh, n| {
        let h = h.clone();
        async move {
            let lo = n % 80;
            let t = Instant::now();
            let res = h
                .get(format!(
                    "{}/ngsi-ld/v1/entities?type=Sensor&q=speed>={lo};speed<{}&limit=20",
                    sh.base(),
                    lo + 5
                ))
                .send()
                .await
                .map(|r| r.status());
            sh.outcome("query", t, res);
        }
    }));
    let h = http.clone();
    tokio::spawn(paced(sh.clone(), 10.0 * rate, move |sh, n| {
        let h = h.clone();
        async move {
            let i = n as usize % SENSORS;
            let t = Instant::now();
            let res = h
                .get(format!(
                    "{}/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Sensor:{i}?lastN=10",
                    sh.base()
                ))
                .send()
                .await
                .map(|r| r.status());
            // A sensor not written yet has no history: 404 is an answer too.
            let res = res.map(|s| {
                if s == reqwest::StatusCode::NOT_FOUND {
                    reqwest::StatusCode::OK
                } else {
                    s
                }
            });
            sh.outcome("temporal", t, res);
        }
    }));
}

/// The live feed: one reader that reconnects; counts the events it got.
fn spawn_live(sh: &Arc<Shared>, http: &reqwest::Client, events: Arc<AtomicU64>) {
    let (sh, h) = (sh.clone(), http.clone());
    tokio::spawn(async move {
        while !sh.stop.load(Ordering::Relaxed) {
            let resp = h
                .get(format!("{}/platform/v1/live?type=Vehicle", sh.base()))
                .header("accept", "text/event-stream")
                .send()
                .await;
            if let Ok(mut r) = resp {
                while let Ok(Some(chunk)) = r.chunk().await {
                    let n = chunk.windows(6).filter(|w| w == b"event:").count();
                    events.fetch_add(n as u64, Ordering::Relaxed);
                    if sh.stop.load(Ordering::Relaxed) {
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// Bus positions over MQTT, QoS 1; counts acknowledgements. Reconnects after the
/// restart to the new address.
fn spawn_mqtt(sh: &Arc<Shared>, addr: Arc<Mutex<String>>, rate: f64, acks: Arc<AtomicU64>) {
    let sh = sh.clone();
    tokio::spawn(async move {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let mut n = 0u64;
        while !sh.stop.load(Ordering::Relaxed) {
            let target = addr.lock().clone();
            let Some((host, port)) = target.rsplit_once(':') else {
                return;
            };
            let Ok(port) = port.parse::<u16>() else {
                return;
            };
            let mut opts = MqttOptions::new(format!("soak-{n}"), host, port);
            opts.set_keep_alive(Duration::from_secs(5));
            let (client, mut ev) = AsyncClient::new(opts, 1024);
            let acks2 = acks.clone();
            let poller = tokio::spawn(async move {
                loop {
                    match ev.poll().await {
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            acks2.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            });
            let mut tick =
                tokio::time::interval(Duration::from_secs_f64(1.0 / (50.0 * rate).max(0.01)));
            while !sh.stop.load(Ordering::Relaxed)
                && !poller.is_finished()
                && *addr.lock() == target
            {
                tick.tick().await;
                let bus = n as usize % BUSES;
                #[allow(clippy::disallowed_methods)] // the bus's own clock
                let ts = chrono::Utc::now().timestamp();
                let payload = json!({"vehicles": [{"ts": ts, "pos": {"lat": 52.5 + bus as f64 * 0.001, "lng": 13.4},
                    "spd_ms": (n % 25) as f64, "status": "IN_SERVICE"}]});
                if client
                    .publish(
                        format!("city/transport/bus/{bus}/gps"),
                        QoS::AtLeastOnce,
                        false,
                        payload.to_string(),
                    )
                    .await
                    .is_err()
                {
                    break;
                }
                n += 1;
            }
            poller.abort();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// Counters below their acknowledged values.
async fn lost(http: &reqwest::Client, base: &str, acked: &[u64]) -> anyhow::Result<u64> {
    let mut n = 0;
    for (k, want) in acked.iter().enumerate() {
        let e: Value = http
            .get(format!(
                "{base}/ngsi-ld/v1/entities/urn:ngsi-ld:Counter:{k}?options=keyValues"
            ))
            .send()
            .await?
            .json()
            .await?;
        if e["v"].as_u64().unwrap_or(0) < *want {
            n += 1;
        }
    }
    Ok(n)
}

pub async fn run(a: SoakArgs) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let mut server = start(&a, &data)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    setup(&http, &server.base).await?;
    let sh = Arc::new(Shared {
        base: Mutex::new(server.base.clone()),
        half: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        down: AtomicBool::new(false),
        rec: Mutex::new(Record::default()),
        acked: Mutex::new(vec![0; COUNTERS]),
    });
    let live_events = Arc::new(AtomicU64::new(0));
    let mqtt_acks = Arc::new(AtomicU64::new(0));
    let mqtt_addr = Arc::new(Mutex::new(server.mqtt.clone()));
    spawn_http_load(&sh, &http, a.rate);
    spawn_live(&sh, &http, live_events.clone());
    spawn_mqtt(&sh, mqtt_addr.clone(), a.rate, mqtt_acks.clone());

    let started = Instant::now();
    let total = Duration::from_secs(a.seconds);
    let mut rss: Vec<(f64, u64)> = Vec::new();
    let mut restarted_in = None;
    let mut lost_in_kill = None;
    let mut killed = false;
    while started.elapsed() < total {
        tokio::time::sleep(Duration::from_secs(5).min(total.saturating_sub(started.elapsed())))
            .await;
        if let Some(k) = rss_kib(server.child.id()) {
            rss.push((started.elapsed().as_secs_f64(), k));
        }
        if !killed && started.elapsed() >= total / 2 {
            killed = true;
            sh.down.store(true, Ordering::Relaxed);
            server.child.kill()?;
            server.child.wait()?;
            let t = Instant::now();
            // Responses already received are recorded by now: the values acknowledged
            // by the process that was killed.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let before_kill = sh.acked.lock().clone();
            server = start(&a, &data)?;
            loop {
                let ok = http
                    .get(format!("{}/health", server.base))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    break;
                }
                if t.elapsed() > Duration::from_secs(120) {
                    bail!("the restarted server did not answer /health within 120 s");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            restarted_in = Some(t.elapsed().as_secs_f64());
            // Before the load reaches the new process: every value the killed one
            // acknowledged is there.
            lost_in_kill = Some(lost(&http, &server.base, &before_kill).await?);
            *sh.base.lock() = server.base.clone();
            *mqtt_addr.lock() = server.mqtt.clone();
            sh.half.store(1, Ordering::Relaxed);
            sh.down.store(false, Ordering::Relaxed);
            eprintln!(
                "soak: killed and restarted in {:.2} s",
                t.elapsed().as_secs_f64()
            );
        }
    }
    sh.stop.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Every acknowledged counter value is there at the end too.
    let acked = sh.acked.lock().clone();
    let lost_at_end = lost(&http, &server.base, &acked).await?;
    // The incidents the rule filed (the list holds every incident of the tenant).
    let incidents = http
        .get(format!("{}/platform/v1/incidents", server.base))
        .send()
        .await?
        .json::<Value>()
        .await?
        .as_array()
        .map_or(0, Vec::len);
    let _ = server.child.kill();
    let _ = server.child.wait();
    let log_lines = std::fs::read_to_string(log_path(&data))
        .map(|t| t.lines().count())
        .unwrap_or(0);

    let rec = sh.rec.lock();
    let mut ops = serde_json::Map::new();
    for ((op, half), h) in &rec.lat {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        eprintln!(
            "soak: {op} ({}): {} ok, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
            if *half == 0 {
                "before the kill"
            } else {
                "after the restart"
            },
            h.len(),
            ms(0.5),
            ms(0.99),
            h.max() as f64 / 1000.0
        );
        ops.insert(
            format!("{op}_{}", if *half == 0 { "first_half" } else { "second_half" }),
            json!({"ok": h.len(), "p50_ms": ms(0.5), "p99_ms": ms(0.99), "max_ms": h.max() as f64 / 1000.0}),
        );
    }
    let errors: BTreeMap<String, u64> = rec
        .errors
        .iter()
        .map(|((op, kind), n)| (format!("{op} {kind}"), *n))
        .collect();
    // Growth over the second half after its warm-up: from 75% of the run to the end.
    let at = |frac: f64| {
        rss.iter()
            .find(|(t, _)| *t >= a.seconds as f64 * frac)
            .map(|(_, k)| *k)
    };
    let (mid, end) = (at(0.75), rss.last().map(|(_, k)| *k));
    let growth = match (mid, end) {
        (Some(m), Some(e)) if m > 0 => Some((e as f64 - m as f64) / m as f64 * 100.0),
        _ => None,
    };
    eprintln!(
        "soak: {} s; acknowledged writes lost in the kill: {lost_in_kill:?}, at the end: {lost_at_end}; restart to /health {:.2?} s; RSS {:?} MiB at 25/50/75/100%, second-half growth {:.1?}%; errors {errors:?}; live events {}; MQTT acks {}; server log lines {log_lines}",
        a.seconds,
        restarted_in,
        [at(0.25), at(0.49), mid, end].map(|k| k.map(|k| k / 1024)),
        growth,
        live_events.load(Ordering::Relaxed),
        mqtt_acks.load(Ordering::Relaxed),
    );
    Ok(json!({
        "seconds": a.seconds,
        "lost_acknowledged_writes": lost_in_kill.unwrap_or(0) + lost_at_end,
        "lost_in_kill": lost_in_kill,
        "lost_at_end": lost_at_end,
        "restart_to_health_s": restarted_in,
        "rss_kib": rss.iter().map(|(t, k)| json!([t, k])).collect::<Vec<_>>(),
        "rss_growth_second_half_pct": growth,
        "errors": errors,
        "operations": ops,
        "live_events": live_events.load(Ordering::Relaxed),
        "mqtt_acks": mqtt_acks.load(Ordering::Relaxed),
        "incidents": incidents,
        "server_log_lines": log_lines,
    }))
}
