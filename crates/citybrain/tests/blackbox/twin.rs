//! Black-box tests of the traffic twin and the live forecasts: the real binary, with
//! SUMO where installed.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{start, start_env};

/// `serve --demo` with SUMO installed runs the traffic twin: its network becomes
/// RoadSegment and TrafficLight entities, its detectors stream TrafficFlowObserved
/// readings through the ingest path, and the indicators build a history.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_twin_streams_simulated_traffic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if !root.join(".venv-sumo/bin/sumo").is_file() && std::env::var_os("SUMO_HOME").is_none() {
        assert!(
            std::env::var_os("REQUIRE_SUMO").is_none(),
            "REQUIRE_SUMO is set but SUMO is not installed (scripts/install-sumo.sh)"
        );
        eprintln!("skipping: SUMO is not installed (scripts/install-sumo.sh)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mappings = root.join("examples/mappings");
    let server = start_env(
        dir.path(),
        &["--demo"],
        &[
            ("CITYBRAIN_INGEST__MAPPINGS_DIR", mappings.to_str().unwrap()),
            ("CITYBRAIN_TWIN__SPEED", "300"),
            ("SUMO_HOME", root.join(".venv-sumo").to_str().unwrap()),
        ],
    );
    let http = reqwest::Client::new();
    let count = |ty: &'static str| {
        let http = http.clone();
        let url = format!(
            "{}/ngsi-ld/v1/entities?type={ty}&count=true&limit=1",
            server.base
        );
        async move {
            let r = http.get(url).send().await.unwrap();
            r.headers()["ngsild-results-count"]
                .to_str()
                .unwrap()
                .parse::<usize>()
                .unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let history = format!(
        "{}/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:TrafficFlowObserved:junction-network?attrs=delay,queueLength&options=temporalValues",
        server.base
    );
    loop {
        let flows = count("TrafficFlowObserved").await;
        let r = http.get(&history).send().await.unwrap();
        let points = if r.status() == 200 {
            let v: Value = r.json().await.unwrap();
            v["queueLength"]["values"].as_array().map_or(0, Vec::len)
        } else {
            0
        };
        // 16 signals × 12–13 approach lanes of detectors, 16 junctions and the network.
        if flows > 200 && points >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "twin data did not arrive: {flows} flows, {points} points"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(count("TrafficLight").await, 16);
    assert!(count("RoadSegment").await > 100);
    // Online forecasts with their bands, learnt as the readings arrive.
    let deadline = Instant::now() + Duration::from_secs(60);
    while count("TrafficFlowForecast").await < 100 {
        assert!(Instant::now() < deadline, "no forecasts");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let r = http
        .get(format!(
            "{}/ngsi-ld/v1/entities?type=TrafficFlowForecast&q=speedIn15min>0&limit=1&options=keyValues",
            server.base
        ))
        .send()
        .await
        .unwrap();
    let list: Value = r.json().await.unwrap();
    let f = &list[0];
    let (lo, v, hi) = (
        f["speedIn15minLower"].as_f64().unwrap(),
        f["speedIn15min"].as_f64().unwrap(),
        f["speedIn15minUpper"].as_f64().unwrap(),
    );
    assert!(lo <= v && v <= hi, "{f}");
    // A detector reading, as mapped: speed in km/h, a segment it refers to, a place.
    let r = http
        .get(format!(
            "{}/ngsi-ld/v1/entities?type=TrafficFlowObserved&q=averageVehicleSpeed>0&limit=1",
            server.base
        ))
        .send()
        .await
        .unwrap();
    let list: Value = r.json().await.unwrap();
    let e = &list[0];
    assert_eq!(e["averageVehicleSpeed"]["unitCode"], "KMH");
    assert!(e["refRoadSegment"]["object"]
        .as_str()
        .unwrap()
        .starts_with("urn:ngsi-ld:RoadSegment:"));
    assert_eq!(e["location"]["value"]["type"], "Point");

    // A medical incident at a junction of the twin: the nearest ambulance is sent,
    // and the incident records the dispatch and the arrival, by the twin.
    let r = http
        .get(format!(
            "{}/ngsi-ld/v1/entities?type=TrafficLight&limit=1&options=keyValues",
            server.base
        ))
        .send()
        .await
        .unwrap();
    let lights: Value = r.json().await.unwrap();
    let place = lights[0]["location"]["coordinates"].clone();
    let r = http
        .post(format!("{}/platform/v1/incidents", server.base))
        .json(&json!({"category": "medical", "title": "collapsed cyclist", "location": place}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let incident: Value = r.json().await.unwrap();
    let url = format!(
        "{}/platform/v1/incidents/{}",
        server.base,
        incident["id"].as_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let (steps, unit) = loop {
        let i: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        let steps: Vec<Value> = i["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["by"] == "service:twin")
            .cloned()
            .collect();
        if steps.len() >= 2 {
            assert_eq!(i["status"], "dispatched", "{i}");
            assert!(i["unit"].as_str().unwrap().starts_with("ambulance-"), "{i}");
            break (steps, i["unit"].as_str().unwrap().to_string());
        }
        assert!(Instant::now() < deadline, "no ambulance: {i}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(steps[0]["to"], "dispatched", "{steps:?}");
    assert!(
        steps[0]["reason"]
            .as_str()
            .unwrap()
            .contains("live travel time"),
        "{steps:?}"
    );
    assert!(
        steps[1]["note"].as_str().unwrap().contains("at the scene"),
        "{steps:?}"
    );
    // The ambulances are on the map as Vehicle entities; the one sent stood at the
    // scene or drove with the incident as its call.
    assert_eq!(count("Vehicle").await, 4);
    let vehicle = format!(
        "{}/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Vehicle:twin-{unit}?attrs=responseStatus&options=temporalValues",
        server.base
    );
    let h: Value = http
        .get(&vehicle)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let statuses: Vec<&str> = h["responseStatus"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[0].as_str().unwrap())
        .collect();
    assert!(
        statuses.contains(&"dispatched") || statuses.contains(&"at_scene"),
        "{h}"
    );

    // A what-if from the API: closing a link, against the base run.
    let runs = format!("{}/platform/v1/twin/what-ifs", server.base);
    let r = http
        .post(&runs)
        .json(&json!({"close": ["Z9Z9"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("close[0]"), "{p}");
    let r = http
        .post(&runs)
        .json(&json!({"close": ["B1C1"], "slow": [{"edge": "C1C2", "kmh": 10}], "duration": 600, "seed": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let url = format!("{}{location}", server.base);
    let deadline = Instant::now() + Duration::from_secs(120);
    let run = loop {
        let run: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        if run["status"] == "done" || run["status"] == "failed" {
            break run;
        }
        assert!(Instant::now() < deadline, "what-if not done: {run}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(run["status"], "done", "{run}");
    let result = &run["result"];
    assert_eq!(result["base"]["seed"], 2, "{run}");
    assert!(result["base"]["trips"].as_u64().unwrap() > 100, "{run}");
    assert!(
        result["scenario"]["mean_delay_all_s"].as_f64().unwrap() > 0.0,
        "{run}"
    );
    assert!(
        result["change_pct"]["mean_delay_all_s"].is_number(),
        "{run}"
    );
    assert_eq!(result["changes"][0]["kind"], "close", "{run}");
    // The twin's metrics.
    let text = http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    assert!(value("citybrain_twin_emergency_arrivals_total ") >= 1.0);
    assert!(value("citybrain_twin_emergency_response_seconds_total ") > 0.0);
    assert_eq!(value("citybrain_twin_whatif_finished_total "), 1.0);
    assert_eq!(value("citybrain_twin_whatif_queued "), 0.0);
}

/// A city's own detector, not the twin's: its speeds on the change feed, five
/// minutes apart by observation time, become a TrafficFlowForecast once an hour of
/// intervals is known.
#[tokio::test]
async fn a_citys_detector_gets_live_forecasts() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]);
    let http = reqwest::Client::new();
    let id = "urn:ngsi-ld:TrafficFlowObserved:loop-7";
    let t0 = 1_767_225_600i64; // 2026-01-01T00:00:00Z
    let at = |k: i64| {
        chrono::DateTime::from_timestamp(t0 + 300 * k + 30, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let speed = |k: i64| 40.0 + (k % 4) as f64;
    let r = http
        .post(format!("{}/ngsi-ld/v1/entities", server.base))
        .json(&json!({
            "id": id,
            "type": "TrafficFlowObserved",
            "averageVehicleSpeed": {"type": "Property", "value": speed(0), "observedAt": at(0)},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [120.16, 30.27]}}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // The twin's own detectors are left to the twin.
    let twin = "urn:ngsi-ld:TrafficFlowObserved:cb_A0B0_0";
    let r = http
        .post(format!("{}/ngsi-ld/v1/entities", server.base))
        .json(&json!({
            "id": twin,
            "type": "TrafficFlowObserved",
            "dataProvider": {"type": "Property", "value": "citybrain-twin"},
            "averageVehicleSpeed": {"type": "Property", "value": speed(0), "observedAt": at(0)}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    for k in 1..=14 {
        for target in [twin, id] {
            let r = http
                .patch(format!("{}/ngsi-ld/v1/entities/{target}/attrs", server.base))
                .json(&json!({"averageVehicleSpeed": {"type": "Property", "value": speed(k), "observedAt": at(k)}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
        }
    }
    let url = format!(
        "{}/ngsi-ld/v1/entities/urn:ngsi-ld:TrafficFlowForecast:loop-7",
        server.base
    );
    // Made at the end of the last closed interval (the 14th reading opened a new one);
    // earlier intervals' forecasts may be seen first.
    let end = chrono::DateTime::from_timestamp(t0 + 300 * 14, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let deadline = Instant::now() + Duration::from_secs(20);
    let f: Value = loop {
        let r = http.get(&url).send().await.unwrap();
        if r.status() == 200 {
            let f: Value = r.json().await.unwrap();
            if f["speedIn5min"]["observedAt"] == json!(end) {
                break f;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no forecast for the last interval"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(f["refTrafficFlowObserved"]["object"], id);
    let (lo, v, hi) = (
        f["speedIn15minLower"]["value"].as_f64().unwrap(),
        f["speedIn15min"]["value"].as_f64().unwrap(),
        f["speedIn15minUpper"]["value"].as_f64().unwrap(),
    );
    assert!(lo <= v && v <= hi && (35.0..50.0).contains(&v), "{f}");
    assert_eq!(f["speedIn60min"]["unitCode"], "KMH");
    assert_eq!(
        f["location"]["value"]["coordinates"],
        json!([120.16, 30.27])
    );
    let r = http
        .get(format!(
            "{}/ngsi-ld/v1/entities/urn:ngsi-ld:TrafficFlowForecast:cb_A0B0_0",
            server.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // The detector deleted: its forecast goes too.
    let r = http
        .delete(format!("{}/ngsi-ld/v1/entities/{id}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let deadline = Instant::now() + Duration::from_secs(20);
    while http.get(&url).send().await.unwrap().status() != 404 {
        assert!(
            Instant::now() < deadline,
            "the forecast outlived its detector"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
