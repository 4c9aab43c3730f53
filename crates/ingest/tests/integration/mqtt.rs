//! MQTT with real clients: Debian's `mosquitto_pub`/`mosquitto_sub` against the embedded
//! server (3.1.1 and 5, QoS 0/1, auth, ACLs, fan-out, NGSI-LD notifications to
//! `mqtt://`), and citybrain's client mode against a real `mosquitto` broker.
//! `scripts/install-deps.sh` installs the tools; without them these tests say so and
//! pass, unless `REQUIRE_MQTT_TOOLS=1` (set by CI) makes that a failure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use citybrain_broker::RequestContext;
use citybrain_ingest::mqtt::client::ClientSettings;
use citybrain_ingest::mqtt::notify::MqttNotifier;
use citybrain_ingest::mqtt::{MqttServer, MqttSettings, MqttStats, MqttUser};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::harness::{entity, env_with, examples, Env};

fn tool(name: &str) -> Option<PathBuf> {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = PathBuf::from(dir).join(name);
        if p.exists() {
            return Some(p);
        }
    }
    if std::env::var("REQUIRE_MQTT_TOOLS").as_deref() == Ok("1") {
        panic!("{name} is required (run scripts/install-deps.sh)");
    }
    eprintln!("skipping: {name} is not installed (scripts/install-deps.sh installs it)");
    None
}

fn bus(id: &str) -> String {
    json!({"vehicles": [{"busId": id, "route": "52", "pos": {"lat": 39.91, "lng": 116.40},
        "spd_ms": 5.0, "ts": 1772323205, "status": "IN_SERVICE", "occupancy": 0.5}]})
    .to_string()
}

async fn run(cmd: PathBuf, args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(cmd)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn pub_args(addr: SocketAddr, version: &str, qos: u8, topic: &str, msg: &str) -> Vec<String> {
    [
        "-h",
        "127.0.0.1",
        "-p",
        &addr.port().to_string(),
        "-V",
        version,
        "-q",
        &qos.to_string(),
        "-t",
        topic,
        "-m",
        msg,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

async fn server(env: &Env, settings: MqttSettings) -> MqttServer {
    MqttServer::start(
        MqttSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..settings
        },
        env.ing.clone(),
    )
    .await
    .unwrap()
}

/// The test certificates (a throw-away CA and a `localhost` certificate it signed).
fn tls_fixture(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../identity/tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// MQTT over TLS with a real client: mosquitto_pub trusting the test CA publishes at
/// QoS 1 and gets its PUBACK after the durable write; a plain client gets nowhere.
#[tokio::test]
async fn mqtts_serves_a_real_client() {
    let Some(mpub) = tool("mosquitto_pub") else {
        return;
    };
    let env = env_with(&examples().join("mappings")).await;
    let tls = citybrain_identity::tls::server_config(
        std::path::Path::new(&tls_fixture("localhost.crt")),
        std::path::Path::new(&tls_fixture("localhost.key")),
    )
    .unwrap();
    let srv = server(
        &env,
        MqttSettings {
            tls: Some(tls),
            ..MqttSettings::default()
        },
    )
    .await;
    let mut args = pub_args(
        srv.addr,
        "mqttv311",
        1,
        "city/transport/bus/801/gps",
        &bus("801"),
    );
    // The certificate names localhost.
    args[1] = "localhost".into();
    args.extend(["--cafile".to_string(), tls_fixture("ca.crt")]);
    let out = run(mpub.clone(), args).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e =
        entity(&env.broker, "urn:ngsi-ld:Vehicle:bus-801").expect("acknowledged but not stored");
    assert_eq!(e["speed"]["value"], json!(18.0));
    // Without TLS the same publish fails, and stores nothing.
    let out = run(
        mpub.clone(),
        pub_args(
            srv.addr,
            "mqttv311",
            1,
            "city/transport/bus/802/gps",
            &bus("802"),
        ),
    )
    .await;
    assert!(!out.status.success());
    assert!(entity(&env.broker, "urn:ngsi-ld:Vehicle:bus-802").is_none());
}

/// A client over its publish rate is slowed, not dropped: 25 QoS 1 messages at 10/s
/// with a burst of 5 take at least 2 s, and every one is acknowledged after its
/// durable write.
#[tokio::test]
async fn publishes_over_the_rate_are_slowed_not_lost() {
    let Some(mpub) = tool("mosquitto_pub") else {
        return;
    };
    let env = env_with(&examples().join("mappings")).await;
    let limiter = citybrain_identity::RateLimiter::new(citybrain_identity::Rate {
        per_second: 10.0,
        burst: 5.0,
    });
    let srv = server(
        &env,
        MqttSettings {
            rate: Some(Arc::new(limiter)),
            ..MqttSettings::default()
        },
    )
    .await;
    let lines: String = (0..25).map(|i| bus(&format!("9{i:02}")) + "\n").collect();
    let mut args = pub_args(srv.addr, "mqttv311", 1, "city/transport/bus/900/gps", "");
    // -l: one message per stdin line, on one connection.
    let m = args.iter().position(|a| a == "-m").unwrap();
    args.drain(m..m + 2);
    args.push("-l".into());
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new(mpub)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(lines.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // mosquitto_pub returned, so every QoS 1 message had its PUBACK, which is sent
    // only after the durable write; the vehicle (named by the topic) holds the last.
    assert_eq!(MqttStats::get(&srv.hub.stats.acks), 25);
    let e = entity(&env.broker, "urn:ngsi-ld:Vehicle:bus-900").unwrap();
    assert!(e["speed"].is_object(), "{e}");
    // 20 messages beyond the burst at 10/s: 2 s at least (a lower bound, not a timing).
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    assert!(MqttStats::get(&srv.hub.stats.throttled) > 0);
}

#[tokio::test]
async fn qos1_is_acknowledged_after_the_durable_write_v311_and_v5() {
    let Some(mpub) = tool("mosquitto_pub") else {
        return;
    };
    let env = env_with(&examples().join("mappings")).await;
    let srv = server(&env, MqttSettings::default()).await;
    for (version, bus_id) in [("mqttv311", "501"), ("mqttv5", "502")] {
        let out = run(
            mpub.clone(),
            pub_args(
                srv.addr,
                version,
                1,
                &format!("city/transport/bus/{bus_id}/gps"),
                &bus(bus_id),
            ),
        )
        .await;
        assert!(
            out.status.success(),
            "{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // mosquitto_pub returns once it has the PUBACK: the entity must already be there.
        let e = entity(&env.broker, &format!("urn:ngsi-ld:Vehicle:bus-{bus_id}"))
            .unwrap_or_else(|| panic!("{version}: acknowledged but not stored"));
        assert_eq!(e["speed"]["value"], json!(18.0));
    }
    // QoS 0: stored too (no acknowledgement to wait for, so poll).
    let out = run(
        mpub.clone(),
        pub_args(
            srv.addr,
            "mqttv311",
            0,
            "city/transport/bus/503/gps",
            &bus("503"),
        ),
    )
    .await;
    assert!(out.status.success());
    let t = Instant::now();
    while entity(&env.broker, "urn:ngsi-ld:Vehicle:bus-503").is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "QoS 0 message never stored"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A topic no mapping handles and a broken payload: acknowledged, kept as dead letters.
    let out = run(
        mpub.clone(),
        pub_args(srv.addr, "mqttv311", 1, "nobody/listens", "{}"),
    )
    .await;
    assert!(out.status.success());
    let out = run(
        mpub,
        pub_args(
            srv.addr,
            "mqttv5",
            1,
            "city/transport/bus/504/gps",
            "{\"vehicles\": [",
        ),
    )
    .await;
    assert!(out.status.success());
    let reasons: Vec<String> = env
        .ing
        .dead
        .list(&Default::default())
        .0
        .iter()
        .map(|l| format!("{}:{}", l.source, l.reason))
        .collect();
    assert_eq!(env.ing.dead.len(), 2, "{reasons:?}");
    let stats = &env.ing.mqtt;
    assert_eq!(MqttStats::get(&stats.acks), 4);
    assert_eq!(MqttStats::get(&stats.messages_in), 5);
}

#[tokio::test]
async fn passwords_tokens_and_per_topic_acls() {
    let Some(mpub) = tool("mosquitto_pub") else {
        return;
    };
    let env = env_with(&examples().join("mappings")).await;
    let settings = MqttSettings {
        allow_anonymous: false,
        users: vec![
            MqttUser {
                username: "bus-gateway".into(),
                password: Some("s3cret".into()),
                token: None,
                publish: vec!["city/transport/bus/+/gps".into()],
                subscribe: vec![],
            },
            MqttUser {
                username: "ops".into(),
                password: None,
                token: Some("tok-9f2".into()),
                publish: vec!["city/#".into()],
                subscribe: vec!["#".into()],
            },
        ],
        ..Default::default()
    };
    let srv = server(&env, settings).await;
    let with = |user: &str, pw: &str, version: &str, topic: &str, id: &str| {
        let mut a = pub_args(srv.addr, version, 1, topic, &bus(id));
        a.extend([
            "-u".to_string(),
            user.to_string(),
            "-P".to_string(),
            pw.to_string(),
        ]);
        a
    };
    // Anonymous and wrong passwords are refused at CONNECT.
    let out = run(
        mpub.clone(),
        pub_args(
            srv.addr,
            "mqttv311",
            1,
            "city/transport/bus/1/gps",
            &bus("1"),
        ),
    )
    .await;
    assert!(!out.status.success());
    let out = run(
        mpub.clone(),
        with(
            "bus-gateway",
            "wrong",
            "mqttv5",
            "city/transport/bus/1/gps",
            "1",
        ),
    )
    .await;
    assert!(!out.status.success());
    // The right password on an allowed topic.
    let out = run(
        mpub.clone(),
        with(
            "bus-gateway",
            "s3cret",
            "mqttv5",
            "city/transport/bus/601/gps",
            "601",
        ),
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(entity(&env.broker, "urn:ngsi-ld:Vehicle:bus-601").is_some());
    // A topic outside the user's ACL: v5 gets a refusing PUBACK, v3.1.1 a closed
    // connection; nothing is written either way.
    for version in ["mqttv5", "mqttv311"] {
        let _ = run(
            mpub.clone(),
            with(
                "bus-gateway",
                "s3cret",
                version,
                "city/transport/tram/9/gps",
                "602",
            ),
        )
        .await;
    }
    assert!(entity(&env.broker, "urn:ngsi-ld:Vehicle:bus-602").is_none());
    assert!(MqttStats::get(&env.ing.mqtt.denied) >= 2);
    assert!(env.ing.dead.is_empty(), "denied messages are not ingested");
    // A token works with any username.
    let out = run(
        mpub,
        with(
            "whoever",
            "tok-9f2",
            "mqttv311",
            "city/transport/bus/603/gps",
            "603",
        ),
    )
    .await;
    assert!(out.status.success());
    assert!(entity(&env.broker, "urn:ngsi-ld:Vehicle:bus-603").is_some());
    assert!(MqttStats::get(&env.ing.mqtt.refused) >= 2);
}

#[tokio::test]
async fn subscribers_and_ngsi_ld_notifications_over_mqtt() {
    let (Some(mpub), Some(msub)) = (tool("mosquitto_pub"), tool("mosquitto_sub")) else {
        return;
    };
    let env = env_with(&examples().join("mappings")).await;
    let srv = server(&env, MqttSettings::default()).await;
    env.broker
        .subscriptions
        .set_mqtt_transport(Arc::new(MqttNotifier::new(Some((
            srv.addr,
            srv.hub.clone(),
        )))));
    let port = srv.addr.port().to_string();
    // A responder listens for alerts (and raw bus traffic) on the embedded server.
    let sub = {
        let args: Vec<String> = [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-t",
            "citybrain/alerts/#",
            "-t",
            "city/transport/bus/+/gps",
            "-C",
            "2",
            "-W",
            "20",
            "-v",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        tokio::spawn(run(msub, args))
    };
    let t = Instant::now();
    while srv.hub.subscription_count() < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "mosquitto_sub never subscribed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = env
        .broker
        .subscriptions
        .create(
            &RequestContext::default(),
            json!({
                "type": "Subscription",
                "entities": [{"type": "Vehicle"}],
                "q": "speed>50",
                "notification": {
                    "attributes": ["speed"],
                    "endpoint": {
                        "uri": format!("mqtt://127.0.0.1:{port}/citybrain/alerts/speeding"),
                        "accept": "application/json",
                        "notifierInfo": [{"key": "MQTT-QoS", "value": "1"}]
                    }
                }
            })
            .as_object()
            .unwrap()
            .clone(),
            None,
        )
        .await
        .unwrap();
    // 20 m/s = 72 km/h: the subscription fires.
    let fast = bus("701").replace("\"spd_ms\":5.0", "\"spd_ms\":20.0");
    let out = run(
        mpub,
        pub_args(srv.addr, "mqttv311", 1, "city/transport/bus/701/gps", &fast),
    )
    .await;
    assert!(out.status.success());
    let out = sub.await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // The raw message and the notification, in either order.
    assert!(
        text.lines()
            .any(|l| l.starts_with("city/transport/bus/701/gps {")),
        "{text}"
    );
    let note = text
        .lines()
        .find(|l| l.starts_with("citybrain/alerts/speeding "))
        .unwrap_or_else(|| panic!("no notification: {text}"));
    let (_, json_text) = note.split_once(' ').unwrap_or_default();
    let v: Value = serde_json::from_str(json_text).unwrap();
    assert_eq!(v["metadata"]["Content-Type"], "application/json");
    assert_eq!(v["body"]["subscriptionId"], id);
    assert_eq!(v["body"]["data"][0]["id"], "urn:ngsi-ld:Vehicle:bus-701");
    assert_eq!(v["body"]["data"][0]["speed"]["value"], json!(72.0));
}

#[tokio::test]
async fn client_mode_acknowledges_after_the_write_on_a_real_mosquitto() {
    let (Some(broker_bin), Some(mpub)) = (tool("mosquitto"), tool("mosquitto_pub")) else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("m.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\n"),
    )
    .unwrap();
    let mut mosq = Command::new(broker_bin)
        .args(["-c", conf.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "mosquitto did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _guard = Kill(std::mem::replace(
        &mut mosq,
        Command::new("true").spawn().unwrap(),
    ));
    let env = env_with(&examples().join("mappings")).await;
    tokio::spawn(citybrain_ingest::mqtt::client::run(
        ClientSettings {
            host: "127.0.0.1".into(),
            port,
            client_id: "citybrain-test".into(),
            username: None,
            password: None,
            topics: vec![],
            qos: 1,
            max_packet_bytes: 1 << 20,
        },
        env.ing.clone(),
    ));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // Publish until the subscription is in place and a message comes through.
    let t = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let id = format!("8{n:02}");
        let out = run(
            mpub.clone(),
            pub_args(
                addr,
                "mqttv311",
                1,
                &format!("city/transport/bus/{id}/gps"),
                &bus(&id),
            ),
        )
        .await;
        assert!(out.status.success());
        tokio::time::sleep(Duration::from_millis(200)).await;
        if entity(&env.broker, &format!("urn:ngsi-ld:Vehicle:bus-{id}")).is_some() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the client never received a message"
        );
    }
}

#[tokio::test]
async fn garbage_on_the_wire_closes_only_that_connection() {
    let env = env_with(&examples().join("mappings")).await;
    let srv = server(&env, MqttSettings::default()).await;
    for junk in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0x10, 0xff, 0xff, 0xff, 0xff, 0x7f][..],
        &[0x10, 0x0c, 0, 4, b'M', b'Q', b'T', b'T', 3, 2, 0, 60][..],
        &[0x10, 0x0a, 0, 4, b'M', b'Q', b'T', b'T', 4][..],
    ] {
        let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
        s.write_all(junk).await.unwrap();
        let mut buf = [0u8; 64];
        // The server closes (or, for the truncated CONNECT, times out; do not wait).
        let _ = tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await;
    }
    // A PUBLISH before CONNECT, then a proper client still works.
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(&[0x30, 0x03, 0, 1, b't']).await.unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        n, 0,
        "the server closes a connection that does not start with CONNECT"
    );
    // An in-process rumqttc client publishes QoS 1 and gets its PUBACK.
    let mut opts = rumqttc::MqttOptions::new("ok", "127.0.0.1", srv.addr.port());
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut el) = rumqttc::AsyncClient::new(opts, 10);
    client
        .publish(
            "city/transport/bus/901/gps",
            rumqttc::QoS::AtLeastOnce,
            false,
            bus("901"),
        )
        .await
        .unwrap();
    let t = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), el.poll()).await {
            Ok(Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)))) => break,
            Ok(Ok(_)) => {}
            other => panic!("no PUBACK: {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(10));
    }
    assert!(entity(&env.broker, "urn:ngsi-ld:Vehicle:bus-901").is_some());
    assert!(MqttStats::get(&env.ing.mqtt.protocol_errors) >= 2);
}
