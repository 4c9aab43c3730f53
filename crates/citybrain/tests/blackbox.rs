//! Black-box tests: the real binary, started as a process.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Server {
    child: Child,
    base: String,
    /// `host:port` of the embedded MQTT server.
    mqtt: String,
}

fn start(data: &Path, extra: &[&str]) -> Server {
    start_env(data, extra, &[])
}

fn start_env(data: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start citybrain");
    let stdout = child.stdout.take().unwrap();
    let mut out = BufReader::new(stdout);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("citybrain listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let mqtt = line
        .trim()
        .strip_prefix("citybrain MQTT listening on mqtt://")
        .unwrap_or_else(|| panic!("unexpected second line {line:?}"))
        .to_string();
    Server { child, base, mqtt }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn entity(i: usize, v: u64) -> Value {
    json!({"id": format!("urn:ngsi-ld:Counter:{i}"), "type": "Counter", "v": {"type": "Property", "value": v}})
}

/// How the server is stopped under load.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Stop {
    Kill,
    Term,
}

/// Every acknowledged write survives SIGKILL: writers create entities and bump counters
/// as fast as they can; the process is killed mid-stream; after a restart every acked
/// creation exists and every counter is at least its last acked value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    acknowledged_writes_survive(Stop::Kill).await;
}

/// SIGTERM under the same load: the server stops taking requests, answers those under
/// way, drains its background tasks and writes its snapshot, exits 0 within 5 s, and
/// every acknowledged write is there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_nothing_and_exits_quickly() {
    acknowledged_writes_survive(Stop::Term).await;
}

async fn acknowledged_writes_survive(stop: Stop) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &[]);
    let http = reqwest::Client::new();
    // acked[i] = highest acknowledged counter value of entity i (None: creation not acked).
    let acked: Arc<Mutex<Vec<Option<u64>>>> = Arc::new(Mutex::new(vec![None; 4000]));
    let mut tasks = Vec::new();
    for w in 0..8usize {
        let (http, base, acked) = (http.clone(), server.base.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < 4000 {
                let r = http
                    .post(format!("{base}/ngsi-ld/v1/entities"))
                    .json(&entity(i, 0))
                    .send()
                    .await;
                let Ok(r) = r else { return };
                if r.status() == 201 {
                    acked.lock().unwrap()[i] = Some(0);
                }
                for v in 1..=3u64 {
                    let r = http
                        .patch(format!(
                            "{base}/ngsi-ld/v1/entities/urn:ngsi-ld:Counter:{i}/attrs"
                        ))
                        .json(&json!({"v": {"type": "Property", "value": v}}))
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 204 => acked.lock().unwrap()[i] = Some(v),
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
                i += 8;
            }
        }));
    }
    // Let the writers get going, then kill the server without warning.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let n = acked.lock().unwrap().iter().filter(|a| a.is_some()).count();
        if n >= 300 || Instant::now() > deadline {
            break;
        }
    }
    match stop {
        Stop::Kill => {
            server.child.kill().unwrap(); // SIGKILL on Unix
            server.child.wait().unwrap();
        }
        Stop::Term => {
            let asked = Instant::now();
            let status = Command::new("kill")
                .args(["-TERM", &server.child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success());
            let exit = server.child.wait().unwrap();
            let took = asked.elapsed();
            assert!(exit.success(), "clean exit under load, got {exit:?}");
            assert!(
                took < Duration::from_secs(5),
                "SIGTERM under load took {took:?} to exit"
            );
            eprintln!("shutdown under load: exited in {took:?}");
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    let snapshot: Vec<Option<u64>> = acked.lock().unwrap().clone();
    let acked_count = snapshot.iter().filter(|a| a.is_some()).count();
    assert!(
        acked_count >= 100,
        "the load ran ({acked_count} acknowledged creations)"
    );

    let server = start(dir.path(), &[]);
    let mut checked = 0;
    for (i, a) in snapshot.iter().enumerate() {
        let Some(min) = a else { continue };
        let r = http
            .get(format!(
                "{}/ngsi-ld/v1/entities/urn:ngsi-ld:Counter:{i}",
                server.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged entity {i} lost");
        let e: Value = r.json().await.unwrap();
        let v = e["v"]["value"].as_u64().unwrap();
        assert!(
            v >= *min,
            "entity {i}: value {v} is older than the acknowledged {min}"
        );
        // Every acknowledged observation is in the history too.
        let r = http
            .get(format!(
                "{}/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Counter:{i}?options=temporalValues",
                server.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "history of acknowledged entity {i} lost");
        let h: Value = r.json().await.unwrap();
        let seen: Vec<u64> = h["v"]["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[0].as_u64().unwrap())
            .collect();
        for want in 0..=*min {
            assert!(
                seen.contains(&want),
                "entity {i}: acknowledged observation {want} missing from {seen:?}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, acked_count);
    eprintln!("durability: {acked_count} acknowledged entities and their history all present after {stop:?}");
}

/// `citybrain export` writes history as CSV, and refuses a data directory in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_writes_csv_of_a_time_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &[]);
    let http = reqwest::Client::new();
    let instances: Vec<Value> = (0..5)
        .map(|m| json!({"type": "Property", "value": 20.5 + m as f64, "unitCode": "CEL", "observedAt": format!("2024-03-01T10:0{m}:00Z")}))
        .collect();
    for id in [
        "urn:ngsi-ld:WeatherObserved:a",
        "urn:ngsi-ld:WeatherObserved:b",
    ] {
        let r = http
            .post(format!("{}/ngsi-ld/v1/temporal/entities", server.base))
            .json(&json!({"id": id, "type": "WeatherObserved", "temperature": instances,
                "status": {"type": "Property", "value": "ok, \"fine\"", "observedAt": "2024-03-01T10:02:30Z"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let export = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_citybrain"))
            .arg("export")
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    let busy = export(&[]);
    assert!(!busy.status.success());
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use"));
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    server.child.wait().unwrap();
    let out = dir.path().join("out.csv");
    let r = export(&[
        "--type",
        "WeatherObserved",
        "--from",
        "2024-03-01T10:01:00Z",
        "--to",
        "2024-03-01T10:04:00Z",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let csv = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "entity,type,attribute,datasetId,observedAt,recordedAt,value,unitCode"
    );
    // 2 entities x (3 temperatures in [10:01, 10:04) + 1 status).
    assert_eq!(lines.len(), 1 + 2 * 4, "{csv}");
    assert!(
        lines.iter().any(|l| l.starts_with(
            "urn:ngsi-ld:WeatherObserved:a,WeatherObserved,temperature,,2024-03-01T10:01:00Z,"
        ) && l.ends_with(",21.5,CEL")),
        "{csv}"
    );
    // A text value with a comma and quotes is one CSV field.
    let status: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains(",status,"))
        .collect();
    assert_eq!(status.len(), 2, "{csv}");
    assert!(status[0].contains("fine"), "{csv}");
    let r = export(&[
        "--attr",
        "temperature",
        "--entity",
        "urn:ngsi-ld:WeatherObserved:b",
    ]);
    assert!(r.status.success());
    assert_eq!(String::from_utf8_lossy(&r.stdout).lines().count(), 1 + 5);
}

/// SIGTERM stops the server cleanly (exit 0, a final snapshot), and `--demo` loads the
/// demo district exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_and_demo_city() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &["--demo"]);
    let http = reqwest::Client::new();
    let r = http
        .get(format!(
            "{}/ngsi-ld/v1/entities?type=Streetlight&count=true&limit=1",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["ngsild-results-count"], "150");
    let r = http
        .get(format!("{}/health", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let metrics = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("citybrain_http_requests_total"),
        "{metrics}"
    );
    // The demo hub: rules, Open311 services, an area; the readings already over a
    // limit are incidents from the start (each an NGSI-LD entity too), routed.
    let get_json = |path: &str| {
        let req = http.get(format!("{}{path}", server.base));
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let at_start = get_json("/platform/v1/incidents").await;
    let n0 = at_start.as_array().map_or(0, Vec::len);
    assert!(n0 > 0, "{at_start}");
    assert!(
        at_start
            .as_array()
            .into_iter()
            .flatten()
            .all(|i| i["department"].is_string()),
        "{at_start}"
    );
    assert!(
        metrics.contains(&format!("citybrain_store_entities {}", 390 + n0)),
        "{metrics}"
    );
    let rules = get_json("/platform/v1/rules").await;
    assert_eq!(rules.as_array().map(Vec::len), Some(5), "{rules}");
    let services = get_json("/open311/v2/services.json").await;
    assert_eq!(services[0]["service_code"], "pothole");
    let areas = get_json("/platform/v1/areas").await;
    assert_eq!(areas["west-lake"]["geometry"]["type"], "Polygon", "{areas}");
    // The demo catalogue, and a private aggregate over the demo's car parks (the
    // count of 30 car parks, with Laplace noise of scale 2 at ε = 0.5: off by more
    // than 20 with probability e^-10).
    let catalog = get_json("/platform/v1/catalog").await;
    assert_eq!(catalog["@type"], "dcat:Catalog", "{catalog}");
    assert_eq!(
        catalog["dcat:dataset"].as_array().map(Vec::len),
        Some(3),
        "{catalog}"
    );
    let agg = get_json("/platform/v1/datasets/parking/aggregate?statistic=count").await;
    let n = agg["value"].as_f64().unwrap_or(-1.0);
    assert!((n - 30.0).abs() <= 20.0, "{agg}");
    assert_eq!(agg["privacy"]["budget"]["spent"], 0.5, "{agg}");
    let r = http
        .patch(format!(
            "{}/ngsi-ld/v1/entities/urn:ngsi-ld:AirQualityObserved:hz-000/attrs",
            server.base
        ))
        .json(&json!({"pm25": {"type": "Property", "value": 180}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let mut incidents = Value::Null;
    let mine = |l: &Value| -> Option<Value> {
        l.as_array()?
            .iter()
            .find(|i| {
                i["entities"].as_array().is_some_and(|e| {
                    e.iter()
                        .any(|x| x == "urn:ngsi-ld:AirQualityObserved:hz-000")
                })
            })
            .cloned()
    };
    for _ in 0..100 {
        incidents = get_json("/platform/v1/incidents").await;
        if mine(&incidents).is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let incident = mine(&incidents).unwrap_or_default();
    assert_eq!(incident["category"], "air-quality", "{incidents}");
    assert_eq!(incident["department"], "environment-bureau");
    // Delete one demo entity; a restart with --demo must not bring it back.
    let r = http
        .delete(format!(
            "{}/ngsi-ld/v1/entities/urn:ngsi-ld:Streetlight:hz-000",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "clean exit, got {exit:?}");
    let snaps = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("snap-")
        })
        .count();
    assert_eq!(snaps, 1, "a final snapshot is written on shutdown");
    let server = start(dir.path(), &["--demo"]);
    let r = http
        .get(format!(
            "{}/ngsi-ld/v1/entities?type=Streetlight&count=true&limit=1",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["ngsild-results-count"], "149");
}

/// MQTT QoS 1: every message the server acknowledged (PUBACK) survives SIGKILL. Four
/// clients publish new entities as fast as the server acknowledges them; the process
/// is killed mid-stream; after a restart every acknowledged message is an entity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_acknowledged_messages_survive_kill_9() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
    let dir = tempfile::tempdir().unwrap();
    let maps = dir.path().join("mappings");
    std::fs::create_dir_all(&maps).unwrap();
    std::fs::write(
        maps.join("counters.toml"),
        "source = 'counters'\nformat = 'json'\ntopics = ['counters/{n}']\n\
         [entity]\nid = 'urn:ngsi-ld:Counter:{n}'\ntype = 'Counter'\n\
         [[attributes]]\nname = 'v'\npath = 'v'\n",
    )
    .unwrap();
    let maps_s = maps.to_str().unwrap().to_string();
    let env = [("CITYBRAIN_INGEST__MAPPINGS_DIR", maps_s.as_str())];
    let data = dir.path().join("data");
    let mut server = start_env(&data, &[], &env);
    let (host, port) = server.mqtt.rsplit_once(':').unwrap();
    let port: u16 = port.parse().unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for c in 0..4 {
        let acked = acked.clone();
        let mut opts = MqttOptions::new(format!("k{c}"), host.to_string(), port);
        opts.set_inflight(50);
        let (client, mut el) = AsyncClient::new(opts, 100);
        tasks.push(tokio::spawn(async move {
            let pub_task = tokio::spawn(async move {
                for k in 0..100_000u32 {
                    let topic = format!("counters/m{c}-{k}");
                    if client
                        .publish(topic, QoS::AtLeastOnce, false, format!("{{\"v\": {k}}}"))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
            // Sent ids in order; the server acknowledges in order.
            let mut sent: std::collections::VecDeque<String> = Default::default();
            let mut k = 0u32;
            loop {
                match el.poll().await {
                    Ok(Event::Outgoing(Outgoing::Publish(_))) => {
                        sent.push_back(format!("m{c}-{k}"));
                        k += 1;
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        if let Some(id) = sent.pop_front() {
                            acked.lock().unwrap().push(id);
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            pub_task.abort();
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if acked.lock().unwrap().len() >= 2000 || Instant::now() > deadline {
            break;
        }
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for t in tasks {
        let _ = t.await;
    }
    let snapshot = acked.lock().unwrap().clone();
    assert!(
        snapshot.len() >= 200,
        "the load ran ({} acknowledged)",
        snapshot.len()
    );
    let server = start_env(&data, &[], &env);
    let http = reqwest::Client::new();
    for id in &snapshot {
        let r = http
            .get(format!(
                "{}/ngsi-ld/v1/entities/urn:ngsi-ld:Counter:{id}",
                server.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged MQTT message {id} lost");
    }
}

/// Edge mode: a `citybrain edge` by the sensors thins the stream (deadband) and
/// forwards to a central `citybrain serve` over HTTP; while the central is down,
/// acknowledged messages wait in the edge's disk buffer and arrive once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_forwards_thinned_data_and_buffers_while_the_central_is_down() {
    edge_round_trip(false).await;
}

/// The same over MQTT: the edge publishes to the central's MQTT server (QoS 1, each
/// batch removed from the buffer only after the central's PUBACK).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_forwards_over_mqtt_and_buffers_while_the_central_is_down() {
    edge_round_trip(true).await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn edge_round_trip(over_mqtt: bool) {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let central_mqtt = format!("127.0.0.1:{}", free_port());
    let central_listen = format!("127.0.0.1:{port}");
    let central_data = dir.path().join("central");
    let start_central = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_citybrain"))
            .args([
                "serve",
                "--listen",
                &central_listen,
                "--mqtt-listen",
                &central_mqtt,
                "--data-dir",
            ])
            .arg(&central_data)
            .env("RUST_LOG", "warn")
            .env(
                "CITYBRAIN_MQTT__ENABLED",
                if over_mqtt { "true" } else { "false" },
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("citybrain listening on"), "{line}");
        // Keep reading, so later status lines find a reader.
        std::thread::spawn(move || {
            let mut rest = String::new();
            while out.read_line(&mut rest).unwrap_or(0) > 0 {
                rest.clear();
            }
        });
        child
    };
    let mut central = start_central();
    let maps = dir.path().join("edge-maps");
    std::fs::create_dir_all(&maps).unwrap();
    std::fs::write(
        maps.join("sensors.toml"),
        "source = 'sensors'\nformat = 'json'\ntopics = ['sensors/{n}']\n\
         [entity]\nid = 'urn:ngsi-ld:Sensor:{n}'\ntype = 'Sensor'\n\
         [observed]\npath = 't'\nformat = 'unix'\n\
         [[attributes]]\nname = 'v'\npath = 'v'\n\
         [[reduce]]\nattributes = ['v']\ndeadband = 0.5\n",
    )
    .unwrap();
    let mut edge = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["edge", "--mqtt-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("edge"))
        .env("RUST_LOG", "warn")
        .env("CITYBRAIN_INGEST__MAPPINGS_DIR", &maps)
        .env(
            "CITYBRAIN_EDGE__CENTRAL_URL",
            format!("http://{central_listen}"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(edge.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mqtt = line
        .trim()
        .strip_prefix("citybrain edge MQTT listening on mqtt://")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _edge = KillOnDrop(edge);
    let (host, mport) = mqtt.rsplit_once(':').unwrap();
    let (client, mut el) =
        AsyncClient::new(MqttOptions::new("dev", host, mport.parse().unwrap()), 100);
    // Publishes one QoS 1 reading and waits for its PUBACK.
    async fn publish(client: &AsyncClient, el: &mut rumqttc::EventLoop, t: u32, v: f64) {
        client
            .publish(
                "sensors/1",
                QoS::AtLeastOnce,
                false,
                format!("{{\"t\": {t}, \"v\": {v}}}"),
            )
            .await
            .unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), el.poll()).await {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => return,
                Ok(Ok(_)) => {}
                other => panic!("no PUBACK: {other:?}"),
            }
        }
    }
    for (t, v) in [
        (1_772_323_200, 10.0),
        (1_772_323_201, 10.1),
        (1_772_323_202, 10.3),
        (1_772_323_203, 11.0),
    ] {
        publish(&client, &mut el, t, v).await;
    }
    let http = reqwest::Client::new();
    let base = format!("http://{central_listen}");
    let history = |http: reqwest::Client, base: String| async move {
        let r = http
            .get(format!(
                "{base}/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Sensor:1?options=temporalValues"
            ))
            .send()
            .await
            .ok()?;
        if r.status() != 200 {
            return None;
        }
        let v: Value = r.json().await.ok()?;
        Some(
            v["v"]["values"]
                .as_array()?
                .iter()
                .map(|p| p[0].as_f64().unwrap_or(f64::NAN))
                .collect::<Vec<f64>>(),
        )
    };
    let t0 = Instant::now();
    loop {
        if history(http.clone(), base.clone())
            .await
            .is_some_and(|h| h.len() == 2)
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the central never got the readings"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The deadband kept 10.0 and 11.0 of the four readings.
    assert_eq!(
        history(http.clone(), base.clone()).await.unwrap(),
        vec![10.0, 11.0]
    );

    // The central goes away; the edge still acknowledges (into its buffer).
    central.kill().unwrap();
    central.wait().unwrap();
    publish(&client, &mut el, 1_772_323_204, 12.0).await;
    publish(&client, &mut el, 1_772_323_205, 13.0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let central = start_central();
    let _central = KillOnDrop(central);
    let t0 = Instant::now();
    loop {
        if history(http.clone(), base.clone())
            .await
            .is_some_and(|h| h.len() == 4)
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(40),
            "the buffered readings never arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        history(http.clone(), base.clone()).await.unwrap(),
        vec![10.0, 11.0, 12.0, 13.0]
    );
}

/// A real Open311 client library (`georeport`, installed by `scripts/install-deps.sh`)
/// against the real binary: services and definitions, requests in and out, JSON and
/// XML. Skips when Python or the library is missing, unless `REQUIRE_PYTHON_TOOLS=1`
/// (set by CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open311_client_library_talks_to_the_server() {
    let have = Command::new("python3")
        .args(["-c", "import georeport, requests, xmltodict"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !have {
        assert_ne!(
            std::env::var("REQUIRE_PYTHON_TOOLS").as_deref(),
            Ok("1"),
            "python3 with georeport is required (scripts/install-deps.sh)"
        );
        eprintln!("skipping: python3 with the georeport library is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let http = reqwest::Client::new();
    let cfg = json!({
        "services": [
            {"service_code": "pothole", "service_name": "Pothole", "category": "roads",
             "attributes": [{"code": "size", "datatype": "singlevaluelist", "required": true,
                             "description": "How big?", "values": [{"key": "s", "name": "small"}, {"key": "l", "name": "large"}]}]},
            {"service_code": "streetlight", "service_name": "Street light out"}
        ],
        "api_keys": ["citizen-app-key"]
    });
    let r = http
        .put(format!("{}/platform/v1/open311", server.base))
        .json(&cfg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/open311_client.py");
    let base = format!("{}/open311/v2", server.base);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .arg(script)
            .args([base.as_str(), "citizen-app-key"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("all Open311 client checks passed"), "{text}");
}

/// A tampered audit log is found by the server's own verification at start and opens
/// a critical security incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_audit_log_raises_a_security_incident() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["bootstrap", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let admin = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let http = reqwest::Client::new();
    let mut server = start(dir.path(), &[]);
    for i in 0..3 {
        let r = http
            .post(format!("{}/ngsi-ld/v1/entities", server.base))
            .bearer_auth(&admin)
            .json(&entity(i, 1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(server.child.wait().unwrap().success());
    // Rewrite who made the first write (same length, another user).
    let log = dir.path().join("audit/log.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("\"actor\":\"user:admin\""), "{text}");
    std::fs::write(&log, text.replacen("user:admin", "user:nobod", 1)).unwrap();
    let server = start(dir.path(), &[]);
    let mut found = Value::Null;
    for _ in 0..100 {
        let list: Value = http
            .get(format!("{}/platform/v1/incidents", server.base))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(i) = list.as_array().into_iter().flatten().find(|i| {
            i["title"]
                .as_str()
                .is_some_and(|t| t.starts_with("Audit log verification failed"))
        }) {
            found = i.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found["category"], "security", "{found}");
    assert_eq!(found["severity"], "critical", "{found}");
}

#[path = "blackbox/twin.rs"]
mod twin;

/// `citybrain backup` against a running server while writers go on, then `citybrain
/// restore` into a new directory: the restored city holds every write acknowledged
/// before the backup was asked for, and none that was never made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_backup_restores_into_a_new_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (data, backups) = (dir.path().join("data"), dir.path().join("backups"));
    let server = start_env(
        &data,
        &[],
        &[("CITYBRAIN_STORAGE__BACKUP_DIR", backups.to_str().unwrap())],
    );
    let http = reqwest::Client::new();
    let base = server.base.clone();
    for i in 0..4 {
        let r = http
            .post(format!("{base}/ngsi-ld/v1/entities"))
            .json(&entity(i, 0))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // Four writers bump their counters; each remembers its last acknowledged value.
    let acked = Arc::new(Mutex::new([0u64; 4]));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for i in 0..4 {
        let (http, base, acked, stop) = (http.clone(), base.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut v = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                v += 1;
                let r = http
                    .patch(format!(
                        "{base}/ngsi-ld/v1/entities/urn:ngsi-ld:Counter:{i}/attrs"
                    ))
                    .json(&json!({"v": {"type": "Property", "value": v}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 204);
                acked.lock().unwrap()[i] = v;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = *acked.lock().unwrap();
    let (b, d) = (base.clone(), data.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_citybrain"))
            .args(["backup", "--name", "b1", "--server", &b, "--data-dir"])
            .arg(&d)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("backup b1"), "{said}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Release);
    for w in writers {
        w.await.unwrap();
    }
    let after = *acked.lock().unwrap();
    assert!(
        after.iter().zip(before).any(|(a, b)| *a > b),
        "writes went on"
    );
    drop(server);

    let restored = dir.path().join("restored");
    let out = Command::new(env!("CARGO_BIN_EXE_citybrain"))
        .args(["restore", "--from"])
        .arg(backups.join("b1"))
        .arg("--data-dir")
        .arg(&restored)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 entities"));
    let server = start(&restored, &[]);
    for i in 0..4 {
        let e: Value = http
            .get(format!(
                "{}/ngsi-ld/v1/entities/urn:ngsi-ld:Counter:{i}?options=keyValues",
                server.base
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let v = e["v"].as_u64().unwrap();
        assert!(
            v >= before[i] && v <= after[i],
            "counter {i}: {v} not in [{}, {}]",
            before[i],
            after[i]
        );
    }
}

/// A real full disk: the data directory on an 8 MiB tmpfs of the test's own (needs
/// root to mount; skipped otherwise, and required where `REQUIRE_TMPFS=1`). Writes
/// fill it until the server answers 507; the metric shows it; freeing space (a filler
/// file deleted) lets writes resume by themselves; after `kill -9` every acknowledged
/// entity is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_and_writes_resume_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        assert!(
            std::env::var("REQUIRE_TMPFS").as_deref() != Ok("1"),
            "REQUIRE_TMPFS=1 but a tmpfs could not be mounted"
        );
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![7u8; 3 << 20]).unwrap();
    let data = mnt.join("data");
    let mut server = start(&data, &[]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    let big = "x".repeat(16 * 1024);
    let mut acked = Vec::new();
    let mut refused = None;
    for i in 0..2000 {
        let body = json!({"id": format!("urn:ngsi-ld:Blob:{i}"), "type": "Blob",
            "payload": {"type": "Property", "value": big}});
        match http
            .post(format!("{}/ngsi-ld/v1/entities", server.base))
            .json(&body)
            .send()
            .await
        {
            Ok(r) if r.status() == 201 => acked.push(i),
            Ok(r) if r.status() == 507 => {
                let problem: Value = r.json().await.unwrap();
                refused = Some(problem);
                break;
            }
            Ok(r) => panic!("unexpected {}", r.status()),
            // The write that found the disk full waits for space, unacknowledged.
            Err(e) if e.is_timeout() => continue,
            Err(e) => panic!("{e}"),
        }
    }
    let problem = refused.expect("the disk never filled");
    assert_eq!(problem["status"], 507, "{problem}");
    assert!(!acked.is_empty());
    let metrics = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric(&metrics, "citybrain_store_disk_full") == Some(1.0),
        "{metrics}"
    );
    // Space returns: writes resume by themselves.
    std::fs::remove_file(&filler).unwrap();
    let t = Instant::now();
    let resumed = loop {
        let body = json!({"id": "urn:ngsi-ld:Blob:after", "type": "Blob"});
        let r = http
            .post(format!("{}/ngsi-ld/v1/entities", server.base))
            .json(&body)
            .send()
            .await;
        if matches!(&r, Ok(r) if r.status() == 201) {
            break true;
        }
        if t.elapsed() > Duration::from_secs(10) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(resumed, "writes did not resume after space was freed");
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(server);
    let server = start(&data, &[]);
    for i in acked {
        let r = http
            .get(format!(
                "{}/ngsi-ld/v1/entities/urn:ngsi-ld:Blob:{i}",
                server.base
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged Blob:{i} lost");
    }
    let r = http
        .get(format!(
            "{}/ngsi-ld/v1/entities/urn:ngsi-ld:Blob:after",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A subscription's delivery counters survive restarts: saved every 5 s (a `kill -9`
/// loses at most that much counting) and at a clean shutdown (nothing lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_counters_survive_restarts() {
    // A receiver that answers every notification with 200.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}/notify", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 65536];
            let _ = s.read(&mut buf);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let mut server = start(dir.path(), &[]);
    let sub = json!({"id": "urn:ngsi-ld:Subscription:s1", "type": "Subscription",
        "entities": [{"type": "Counter"}],
        "notification": {"endpoint": {"uri": endpoint, "accept": "application/json"}}});
    let r = http
        .post(format!("{}/ngsi-ld/v1/subscriptions", server.base))
        .json(&sub)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let times_sent = |base: String| {
        let http = http.clone();
        async move {
            let s: Value = http
                .get(format!(
                    "{base}/ngsi-ld/v1/subscriptions/urn:ngsi-ld:Subscription:s1"
                ))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (
                s["notification"]["timesSent"].as_u64().unwrap_or(0),
                s["notification"]["lastSuccess"].clone(),
            )
        }
    };
    let notify = |base: String, i: usize| {
        let http = http.clone();
        async move {
            let r = http
                .post(format!("{base}/ngsi-ld/v1/entities"))
                .json(&entity(i, 1))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
    };
    notify(server.base.clone(), 1).await;
    notify(server.base.clone(), 2).await;
    let t = Instant::now();
    while times_sent(server.base.clone()).await.0 < 2 {
        assert!(t.elapsed() < Duration::from_secs(10), "not notified");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, last) = times_sent(server.base.clone()).await;
    // Past one save period, then kill -9.
    tokio::time::sleep(Duration::from_secs(7)).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(server);
    let mut server = start(dir.path(), &[]);
    assert_eq!(times_sent(server.base.clone()).await, (2, last));
    // One more, then a clean stop at once: saved at shutdown.
    notify(server.base.clone(), 3).await;
    let t = Instant::now();
    while times_sent(server.base.clone()).await.0 < 3 {
        assert!(t.elapsed() < Duration::from_secs(10), "not notified");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    server.child.wait().unwrap();
    drop(server);
    let server = start(dir.path(), &[]);
    assert_eq!(times_sent(server.base.clone()).await.0, 3);
}

#[tokio::test]
async fn registrations_and_the_source_alias_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let mut server = start(dir.path(), &[]);
    let reg = json!({"id": "urn:ngsi-ld:ContextSourceRegistration:dept", "type": "ContextSourceRegistration",
        "information": [{"entities": [{"type": "Vehicle"}]}], "endpoint": "http://dept.example:1026"});
    let r = http
        .post(format!("{}/ngsi-ld/v1/csourceRegistrations", server.base))
        .json(&reg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let alias = |base: String| {
        let http = http.clone();
        async move {
            let v: Value = http
                .get(format!("{base}/ngsi-ld/v1/info/sourceIdentity"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["contextSourceAlias"].as_str().unwrap().to_string()
        }
    };
    let before = alias(server.base.clone()).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(server);
    let server = start(dir.path(), &[]);
    assert_eq!(alias(server.base.clone()).await, before);
    let got: Value = http
        .get(format!(
            "{}/ngsi-ld/v1/csourceRegistrations/urn:ngsi-ld:ContextSourceRegistration:dept",
            server.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, reg);
}

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
