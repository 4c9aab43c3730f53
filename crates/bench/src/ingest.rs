//! Ingestion scenarios, in process on a temporary store (the publisher or the file
//! shares the two cores with the server, as on a real edge box):
//! - `import`: mapped CSV, JSON and XML files (air-quality readings of 10,000
//!   stations: three measurements and a position per record) through
//!   `citybrain import`'s code path, records/s and peak memory;
//! - `mqtt`: the embedded MQTT server; QoS 0 messages/s until every message is in the
//!   durable store, and QoS 1 messages/s acknowledged (each ack after the durable
//!   write), with ack latency; raw pre-encoded MQTT 3.1.1 packets so the publisher
//!   costs little;
//! - `edge`: edge pre-aggregation on a realistic sensor stream: volume reduction and
//!   the error it introduces.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use citybrain_broker::{Broker, BrokerConfig};
use citybrain_ingest::deadletter::DeadLetters;
use citybrain_ingest::import::{import_file, ImportOptions};
use citybrain_ingest::mapping::{MappedAttr, MappedRecord, MappedValue};
use citybrain_ingest::mqtt::{MqttServer, MqttSettings};
use citybrain_ingest::{Ingest, IngestSettings};
use citybrain_model::time::SystemClock;
use citybrain_store::{EmbeddedStore, EntityStore, StoreOptions};
use hdrhistogram::Histogram;
use rumqttc::mqttbytes::v4;
use rumqttc::QoS;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::history::Walk;

const STATIONS: usize = 10_000;
const T0_MS: i64 = 1_772_323_200_000;

const CSV_MAPPING: &str = r#"
source = "aq-csv"
format = "csv"
[entity]
id = "urn:ngsi-ld:AirQualityObserved:{station}"
type = "AirQualityObserved"
[observed]
path = "ts"
format = "unix_ms"
[location]
lat = "lat"
lon = "lon"
[[attributes]]
name = "NO2"
path = "no2"
unit = "GQ"
[[attributes]]
name = "PM10"
path = "pm10"
unit = "GQ"
[[attributes]]
name = "temperature"
path = "temp"
unit = "CEL"
"#;

const JSON_MAPPING: &str = r#"
source = "aq-json"
format = "json"
records = "$.readings[*]"
[entity]
id = "urn:ngsi-ld:AirQualityObserved:{station}"
type = "AirQualityObserved"
[observed]
path = "ts"
format = "unix_ms"
[location]
lat = "pos.lat"
lon = "pos.lon"
[[attributes]]
name = "NO2"
path = "no2"
unit = "GQ"
[[attributes]]
name = "PM10"
path = "pm10"
unit = "GQ"
[[attributes]]
name = "temperature"
path = "temp"
unit = "CEL"
"#;

const XML_MAPPING: &str = r#"
source = "aq-xml"
format = "xml"
records = "/readings/r"
[entity]
id = "urn:ngsi-ld:AirQualityObserved:{@station}"
type = "AirQualityObserved"
[observed]
path = "@ts"
format = "unix_ms"
[location]
lat = "pos/@lat"
lon = "pos/@lon"
[[attributes]]
name = "NO2"
path = "no2"
unit = "GQ"
[[attributes]]
name = "PM10"
path = "pm10"
unit = "GQ"
[[attributes]]
name = "temperature"
path = "temp"
unit = "CEL"
"#;

const MQTT_MAPPING: &str = r#"
source = "aq-mqtt"
format = "json"
topics = ["city/{district}/aq/{device}"]
[entity]
id = "urn:ngsi-ld:AirQualityObserved:{district}-{device}"
type = "AirQualityObserved"
[observed]
path = "t"
format = "unix_ms"
[[attributes]]
name = "NO2"
path = "no2"
unit = "GQ"
[[attributes]]
name = "PM10"
path = "pm10"
unit = "GQ"
"#;

struct Reading {
    station: usize,
    ts: i64,
    no2: f64,
    pm10: f64,
    temp: f64,
    lat: f64,
    lon: f64,
}

fn readings(n: usize) -> impl Iterator<Item = Reading> {
    let mut walks: Vec<Walk> = (0..STATIONS).map(|i| Walk::new(i as u64 + 1)).collect();
    (0..n).map(move |i| {
        let s = i % STATIONS;
        let w = walks[s].next();
        Reading {
            station: s,
            ts: T0_MS + (i / STATIONS) as i64 * 60_000,
            no2: (w * 2.0 * 10.0).round() / 10.0,
            pm10: (w * 10.0).round() / 10.0,
            temp: w,
            lat: 39.8 + (s % 100) as f64 * 0.002,
            lon: 116.3 + (s / 100) as f64 * 0.002,
        }
    })
}

fn write_files(dir: &Path, n: usize) -> anyhow::Result<()> {
    let mut csv = std::io::BufWriter::new(std::fs::File::create(dir.join("aq.csv"))?);
    writeln!(csv, "station,ts,no2,pm10,temp,lat,lon")?;
    for r in readings(n) {
        writeln!(
            csv,
            "S{:05},{},{},{},{},{:.4},{:.4}",
            r.station, r.ts, r.no2, r.pm10, r.temp, r.lat, r.lon
        )?;
    }
    csv.flush()?;
    let mut js = std::io::BufWriter::new(std::fs::File::create(dir.join("aq.json"))?);
    write!(js, "{{\"source\": \"bench\", \"readings\": [")?;
    for (i, r) in readings(n).enumerate() {
        if i > 0 {
            write!(js, ",")?;
        }
        write!(
            js,
            "\n{{\"station\":\"S{:05}\",\"ts\":{},\"no2\":{},\"pm10\":{},\"temp\":{},\"pos\":{{\"lat\":{:.4},\"lon\":{:.4}}}}}",
            r.station, r.ts, r.no2, r.pm10, r.temp, r.lat, r.lon
        )?;
    }
    write!(js, "\n]}}")?;
    js.flush()?;
    let mut xml = std::io::BufWriter::new(std::fs::File::create(dir.join("aq.xml"))?);
    write!(xml, "<?xml version=\"1.0\"?>\n<readings>")?;
    for r in readings(n) {
        write!(
            xml,
            "\n<r station=\"S{:05}\" ts=\"{}\"><pos lat=\"{:.4}\" lon=\"{:.4}\"/><no2>{}</no2><pm10>{}</pm10><temp>{}</temp></r>",
            r.station, r.ts, r.lat, r.lon, r.no2, r.pm10, r.temp
        )?;
    }
    write!(xml, "\n</readings>\n")?;
    xml.flush()?;
    Ok(())
}

struct Env {
    ing: Arc<Ingest>,
    store: EmbeddedStore,
    _dir: tempfile::TempDir,
}

async fn env(mappings: &[&str]) -> anyhow::Result<Env> {
    let dir = tempfile::tempdir()?;
    let store = EmbeddedStore::open(StoreOptions::new(dir.path().join("data")))?;
    let dynstore: Arc<dyn EntityStore> = Arc::new(store.clone());
    let broker: Arc<Broker> =
        Broker::new(dynstore, Arc::new(SystemClock), BrokerConfig::default()).await;
    broker.start();
    let dead = Arc::new(DeadLetters::open(&dir.path().join("dead"))?);
    let ing = Ingest::new(broker, dead, IngestSettings::default())?;
    let mut list = Vec::new();
    for (i, m) in mappings.iter().enumerate() {
        list.push(citybrain_ingest::mapping::parse(
            m,
            citybrain_ingest::mapping::Syntax::Toml,
            &format!("bench-{i}.toml"),
        )?);
    }
    ing.install(list);
    Ok(Env {
        ing: Arc::new(ing),
        store,
        _dir: dir,
    })
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// `import`: CSV, JSON and XML files of `n` records each.
pub async fn import(n: usize, formats: &str, chunk: usize) -> anyhow::Result<Value> {
    let files = tempfile::tempdir()?;
    eprintln!("import: writing {n} records as CSV, JSON and XML");
    write_files(files.path(), n)?;
    let mut out = serde_json::Map::new();
    out.insert("records".into(), json!(n));
    out.insert("chunk".into(), json!(chunk));
    for (source, file, mapping) in [
        ("aq-csv", "aq.csv", CSV_MAPPING),
        ("aq-json", "aq.json", JSON_MAPPING),
        ("aq-xml", "aq.xml", XML_MAPPING),
    ] {
        if !formats.split(',').any(|f| source.ends_with(f.trim())) {
            continue;
        }
        let e = env(&[mapping]).await?;
        let path = files.path().join(file);
        let bytes = std::fs::metadata(&path)?.len();
        let t = Instant::now();
        let opts = ImportOptions {
            chunk,
            state_dir: None,
        };
        let s = import_file(&e.ing, source, &path, &opts, &mut |_| {}).await?;
        let secs = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            s.written == n as u64,
            "{source}: wrote {} of {n}: {s:?}",
            s.written
        );
        let rate = n as f64 / secs;
        eprintln!(
            "import {source}: {n} records in {secs:.2} s = {rate:.0} records/s ({:.1} MB/s), peak RSS {} MiB",
            bytes as f64 / secs / 1e6,
            peak_rss_kib() / 1024
        );
        out.insert(
            source.trim_start_matches("aq-").into(),
            json!({
                "records_per_sec": rate.round(),
                "seconds": secs,
                "file_bytes": bytes,
                "peak_rss_mib_process": peak_rss_kib() / 1024,
            }),
        );
        drop(e.ing);
        e.store.close();
    }
    Ok(Value::Object(out))
}

fn connect_packet(id: &str) -> BytesMut {
    let mut b = BytesMut::new();
    let mut c = v4::Connect::new(id);
    c.keep_alive = 600;
    let _ = v4::Packet::Connect(c).write(&mut b, 1 << 20);
    b
}

fn publish_packet(b: &mut BytesMut, i: usize, qos: QoS, pkid: u16) {
    let district = i % 16;
    let device = (i / 16) % 1000;
    let topic = format!("city/d{district}/aq/s{device}");
    let payload = format!(
        "{{\"t\":{},\"no2\":{}.{},\"pm10\":{}.{}}}",
        T0_MS + i as i64,
        20 + i % 30,
        i % 10,
        10 + i % 20,
        i % 7
    );
    let mut p = v4::Publish::new(topic, qos, payload);
    p.pkid = pkid;
    let _ = v4::Packet::Publish(p).write(b, 1 << 20);
}

async fn open_conn(addr: std::net::SocketAddr, id: &str) -> anyhow::Result<tokio::net::TcpStream> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(&connect_packet(id)).await?;
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await?;
    anyhow::ensure!(ack[0] == 0x20 && ack[3] == 0, "CONNACK refused: {ack:?}");
    Ok(s)
}

/// `mqtt`: QoS 0 to durable, then QoS 1 with acks.
pub async fn mqtt(qos0_messages: usize, qos1_seconds: u64) -> anyhow::Result<Value> {
    let e = env(&[MQTT_MAPPING]).await?;
    let srv = MqttServer::start(
        MqttSettings {
            listen: "127.0.0.1:0".parse()?,
            ..Default::default()
        },
        e.ing.clone(),
    )
    .await?;
    let written = |ing: &Ingest| ing.stats.snapshot().get("aq-mqtt").map_or(0, |s| s.written);
    // QoS 0: two publishers, pre-encoded packets written in 64 KiB bursts.
    let publishers = 2;
    let per = qos0_messages / publishers;
    let mut bufs = Vec::new();
    for p in 0..publishers {
        let mut b = BytesMut::new();
        for k in 0..per {
            publish_packet(&mut b, p * per + k, QoS::AtMostOnce, 0);
        }
        bufs.push(b);
    }
    let mut conns = Vec::new();
    for p in 0..publishers {
        conns.push(open_conn(srv.addr, &format!("q0-{p}")).await?);
    }
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (mut c, b) in conns.into_iter().zip(bufs) {
        tasks.push(tokio::spawn(async move {
            for chunk in b.chunks(64 * 1024) {
                c.write_all(chunk).await?;
            }
            c.flush().await?;
            Ok::<_, std::io::Error>(c)
        }));
    }
    let mut keep = Vec::new();
    for t in tasks {
        keep.push(t.await??);
    }
    let sent_secs = t.elapsed().as_secs_f64();
    let total = (per * publishers) as u64;
    while written(&e.ing) < total {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(300),
            "QoS 0: only {} of {total} stored",
            written(&e.ing)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let q0_secs = t.elapsed().as_secs_f64();
    let q0_rate = total as f64 / q0_secs;
    eprintln!("mqtt QoS 0: {total} messages durable in {q0_secs:.2} s = {q0_rate:.0} msg/s (publishers done after {sent_secs:.2} s)");
    drop(keep);

    // QoS 1: four connections, 1,000 messages in flight each.
    let conns_n = 4;
    let window = 1000usize;
    let stop_at = Instant::now() + Duration::from_secs(qos1_seconds);
    let mut tasks = Vec::new();
    for c in 0..conns_n {
        let s = open_conn(srv.addr, &format!("q1-{c}")).await?;
        tasks.push(tokio::spawn(qos1_conn(s, c, window, stop_at)));
    }
    let t = Instant::now();
    let mut acked = 0u64;
    let mut hist = Histogram::<u64>::new(3)?;
    for task in tasks {
        let (n, h) = task.await??;
        acked += n;
        hist.add(h)?;
    }
    let q1_secs = t.elapsed().as_secs_f64();
    let q1_rate = acked as f64 / q1_secs;
    eprintln!(
        "mqtt QoS 1: {acked} acknowledged in {q1_secs:.2} s = {q1_rate:.0} msg/s; ack latency p50 {:.2} ms p99 {:.2} ms",
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0
    );
    srv.stop();
    let dead = e.ing.dead.len();
    drop(e.ing);
    e.store.close();
    Ok(json!({
        "qos0": {"messages": total, "messages_per_sec": q0_rate.round(), "seconds": q0_secs,
                 "publish_seconds": sent_secs, "publishers": publishers},
        "qos1": {"acknowledged": acked, "messages_per_sec": q1_rate.round(), "seconds": q1_secs,
                 "connections": conns_n, "in_flight_per_connection": window,
                 "ack_latency_ms_p50": hist.value_at_quantile(0.5) as f64 / 1000.0,
                 "ack_latency_ms_p99": hist.value_at_quantile(0.99) as f64 / 1000.0},
        "dead_letters": dead,
    }))
}

/// One QoS 1 publisher: keeps `window` messages unacknowledged; answers how many were
/// acknowledged and the ack latencies (µs).
async fn qos1_conn(
    s: tokio::net::TcpStream,
    c: usize,
    window: usize,
    stop_at: Instant,
) -> anyhow::Result<(u64, Histogram<u64>)> {
    let (mut rd, mut wr) = s.into_split();
    let sem = Arc::new(tokio::sync::Semaphore::new(window));
    let sent_at: Arc<parking_lot::Mutex<Vec<Option<Instant>>>> =
        Arc::new(parking_lot::Mutex::new(vec![None; 65536]));
    let (sem2, sent2) = (sem.clone(), sent_at.clone());
    let writer = tokio::spawn(async move {
        let mut i = 0usize;
        let mut pkid: u16 = 0;
        let mut buf = BytesMut::new();
        while Instant::now() < stop_at {
            let permit = sem2.acquire_many(64).await?;
            permit.forget();
            for _ in 0..64 {
                pkid = pkid.wrapping_add(1).max(1);
                sent2.lock()[pkid as usize] = Some(Instant::now());
                publish_packet(&mut buf, c * 1_000_000_000 + i, QoS::AtLeastOnce, pkid);
                i += 1;
            }
            wr.write_all(&buf).await?;
            buf.clear();
        }
        Ok::<_, anyhow::Error>(wr)
    });
    let mut hist = Histogram::<u64>::new(3)?;
    let mut acked = 0u64;
    let mut buf = BytesMut::new();
    let mut tmp = vec![0u8; 64 * 1024];
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(5), rd.read(&mut tmp)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e.into()),
        };
        buf.extend_from_slice(&tmp[..n]);
        while buf.len() >= 4 {
            anyhow::ensure!(
                buf[0] == 0x40 && buf[1] == 2,
                "unexpected packet {:x}",
                buf[0]
            );
            let pkid = u16::from_be_bytes([buf[2], buf[3]]);
            let _ = buf.split_to(4);
            if let Some(t) = sent_at.lock()[pkid as usize].take() {
                hist.record(t.elapsed().as_micros() as u64)?;
            }
            acked += 1;
            sem.add_permits(1);
        }
        if Instant::now() > stop_at && sem.available_permits() >= window {
            break;
        }
    }
    writer.abort();
    Ok((acked, hist))
}

/// `edge`: deadband and window rules on a realistic stream (1 Hz temperature-like
/// readings with sensor noise from 200 sensors over an hour); reports the volume kept
/// and the error against the raw signal when the receiver holds the last value.
pub fn edge() -> anyhow::Result<Value> {
    use citybrain_ingest::reduce::{ReduceRule, Reducer};
    let rules: Vec<(&str, &str)> = vec![
        (
            "deadband 0.1 + heartbeat 5 min",
            "attributes = ['temperature']\ndeadband = 0.1\nheartbeat = 'PT5M'",
        ),
        (
            "deadband 0.2 + heartbeat 5 min",
            "attributes = ['temperature']\ndeadband = 0.2\nheartbeat = 'PT5M'",
        ),
        (
            "deadband 0.5 + heartbeat 5 min",
            "attributes = ['temperature']\ndeadband = 0.5\nheartbeat = 'PT5M'",
        ),
        (
            "window 10 s mean",
            "attributes = ['temperature']\nwindow = 'PT10S'",
        ),
        (
            "downsample 5 s",
            "attributes = ['temperature']\ndownsample = 'PT5S'",
        ),
    ];
    let sensors = 200usize;
    let seconds = 3600usize;
    // A drift over the hour, a slow random walk, and sensor noise uniform in ±0.15
    // (a common low-cost temperature sensor: ±0.1-0.2 °C), at 0.01 resolution.
    let signal = |s: usize, k: usize, w: &mut Walk, noise: &mut u64| -> f64 {
        let drift = 2.0 * ((k as f64 / 3600.0) * std::f64::consts::PI + s as f64).sin();
        let walk = (w.next() - 15.0) * 0.2;
        *noise ^= *noise << 13;
        *noise ^= *noise >> 7;
        *noise ^= *noise << 17;
        let n = (*noise % 31) as f64 * 0.01 - 0.15;
        ((15.0 + drift + walk + n) * 100.0).round() / 100.0
    };
    let name_t: Arc<str> = Arc::from("temperature");
    let mut out = Vec::new();
    for (name, src) in rules {
        let spec: citybrain_ingest::mapping::spec::ReduceSpec = toml::from_str(src)?;
        let rule = ReduceRule::compile(&spec).map_err(|(f, m)| anyhow::anyhow!("{f}: {m}"))?;
        let mut r = Reducer::new(vec![rule]);
        let mut sum_abs = 0.0;
        let mut max_abs: f64 = 0.0;
        let mut n = 0u64;
        for s in 0..sensors {
            let mut w = Walk::new(s as u64 + 7);
            let mut noise: u64 = (s as u64 + 1000).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut held: Option<f64> = None;
            for k in 0..seconds {
                let v = signal(s, k, &mut w, &mut noise);
                let t = chrono::DateTime::from_timestamp(1_772_323_200 + k as i64, 0)
                    .unwrap_or_default();
                let mut rec = MappedRecord {
                    id: format!("urn:x:{s}"),
                    ty: "T".into(),
                    attrs: vec![MappedAttr {
                        name: name_t.clone(),
                        value: MappedValue::Property(json!(v)),
                        observed: Some(t),
                        unit: None,
                        dataset_id: None,
                    }],
                };
                if r.apply(&mut rec, t) {
                    held = rec.attrs.first().and_then(|a| match &a.value {
                        MappedValue::Property(v) => v.as_f64(),
                        _ => None,
                    });
                }
                // The receiver's view: the last value it got (sample and hold).
                if let Some(h) = held {
                    let err = (h - v).abs();
                    sum_abs += err;
                    max_abs = max_abs.max(err);
                    n += 1;
                }
            }
        }
        let st = r.stats;
        let reduction = 1.0 - st.values_out as f64 / st.values_in as f64;
        eprintln!(
            "edge {name}: kept {} of {} values ({:.1} % less), mean abs error {:.3}, max {:.3}",
            st.values_out,
            st.values_in,
            reduction * 100.0,
            sum_abs / n as f64,
            max_abs
        );
        out.push(
            json!({"rule": name, "values_in": st.values_in, "values_out": st.values_out,
            "reduction_pct": (reduction * 1000.0).round() / 10.0,
            "mean_abs_error": sum_abs / n as f64, "max_abs_error": max_abs}),
        );
    }
    Ok(json!({"sensors": sensors, "seconds": seconds, "rules": out}))
}
