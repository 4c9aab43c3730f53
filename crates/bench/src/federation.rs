//! The cost of federation: two citybrain servers (the city's and a department's), each
//! holding `n` entities of one type; the same query and retrieval timed on the city's
//! server before and after the department's server is registered as its context
//! source. Sequential requests on one connection: latency, not throughput.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::soak::start_server;

async fn seed(http: &reqwest::Client, base: &str, prefix: &str, n: usize) -> anyhow::Result<()> {
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<Value> = chunk
            .iter()
            .map(|i| {
                json!({"id": format!("urn:ngsi-ld:Car:{prefix}{i}"), "type": "Car",
                       "speed": {"type": "Property", "value": (*i % 120) as f64, "observedAt": "2026-01-01T00:00:00Z"},
                       "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [13.4, 52.5]}}})
            })
            .collect();
        let r = http
            .post(format!("{base}/ngsi-ld/v1/entityOperations/upsert"))
            .json(&batch)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "seeding answered {}", r.status());
    }
    Ok(())
}

/// Times `requests` GETs of `path`; checks each answer with `ok`.
async fn time(
    http: &reqwest::Client,
    url: &str,
    requests: usize,
    ok: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let mut h = Histogram::<u64>::new(3)?;
    for _ in 0..requests {
        let t = Instant::now();
        let r = http.get(url).send().await?;
        let status = r.status();
        let body: Value = r.json().await?;
        h.record(t.elapsed().as_micros() as u64)?;
        anyhow::ensure!(
            status.is_success() && ok(&body),
            "{url} answered {status}: {body}"
        );
    }
    Ok(json!({
        "requests": requests,
        "p50_ms": h.value_at_quantile(0.5) as f64 / 1000.0,
        "p99_ms": h.value_at_quantile(0.99) as f64 / 1000.0,
        "mean_ms": (h.mean() / 1000.0 * 1000.0).round() / 1000.0,
    }))
}

pub async fn run(citybrain: &std::path::Path, n: usize, requests: usize) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let mut city = start_server(citybrain, &dir.path().join("city"), &[])?;
    let mut dept = start_server(citybrain, &dir.path().join("dept"), &[])?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .build()?;
    let outcome = async {
        seed(&http, &city.base, "city", n).await?;
        seed(&http, &dept.base, "dept", n).await?;
        let query = format!("{}/ngsi-ld/v1/entities?type=Car&limit=100", city.base);
        let local_one = format!("{}/ngsi-ld/v1/entities/urn:ngsi-ld:Car:city1", city.base);
        let remote_one = format!("{}/ngsi-ld/v1/entities/urn:ngsi-ld:Car:dept1", city.base);
        let hundred = |b: &Value| b.as_array().is_some_and(|a| a.len() == 100);
        let entity = |b: &Value| b.get("id").is_some();
        // Warm both servers' caches, then measure.
        time(&http, &query, 50, hundred).await?;
        let query_local = time(&http, &query, requests, hundred).await?;
        let retrieve_local = time(&http, &local_one, requests, entity).await?;
        let r = http
            .post(format!("{}/ngsi-ld/v1/csourceRegistrations", city.base))
            .json(&json!({"type": "ContextSourceRegistration",
                "information": [{"entities": [{"type": "Car"}]}], "endpoint": dept.base}))
            .send()
            .await?;
        anyhow::ensure!(
            r.status().is_success(),
            "registration answered {}",
            r.status()
        );
        time(&http, &query, 50, hundred).await?;
        let query_federated = time(&http, &query, requests, hundred).await?;
        let retrieve_federated_local = time(&http, &local_one, requests, entity).await?;
        let retrieve_federated_remote = time(&http, &remote_one, requests, entity).await?;
        let ratio = |a: &Value, b: &Value, k: &str| {
            ((b[k].as_f64().unwrap_or(0.0) / a[k].as_f64().unwrap_or(1.0).max(1e-9)) * 100.0)
                .round()
                / 100.0
        };
        Ok::<Value, anyhow::Error>(json!({
            "entities_per_broker": n,
            "query_100_local": query_local,
            "query_100_federated": query_federated,
            "query_p50_ratio": ratio(&query_local, &query_federated, "p50_ms"),
            "retrieve_local": retrieve_local,
            "retrieve_federated_held_locally": retrieve_federated_local,
            "retrieve_federated_held_remotely": retrieve_federated_remote,
            "retrieve_p50_ratio": ratio(&retrieve_local, &retrieve_federated_remote, "p50_ms"),
        }))
    }
    .await;
    for s in [&mut city, &mut dept] {
        let _ = s.child.kill();
        let _ = s.child.wait();
    }
    outcome
}
