//! `/platform/v1/twin/what-ifs` over a stand-in for the twin: the handlers decode,
//! hand over and encode (the simulator itself is tested in `citybrain-twin` and by
//! the binary's black-box tests).

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use citybrain_api::scenarios::{RunStatus, ScenarioError, Scenarios, WhatIfRequest, WhatIfRun};
use citybrain_api::{HttpLimits, Parts};
use citybrain_broker::{Broker, BrokerConfig};
use citybrain_model::time::SystemClock;
use citybrain_store::{EmbeddedStore, EntityStore, StoreOptions};
use serde_json::{json, Value};
use tower::ServiceExt;

/// Knows one edge, keeps runs in memory per tenant, refuses a third waiting run.
#[derive(Default)]
struct Stand {
    runs: Mutex<Vec<(String, WhatIfRun)>>,
}

impl Scenarios for Stand {
    fn submit(
        &self,
        tenant: &str,
        by: &str,
        req: WhatIfRequest,
    ) -> Result<WhatIfRun, ScenarioError> {
        for (i, e) in req.close.iter().enumerate() {
            if e != "A1B1" {
                return Err(ScenarioError::Invalid(format!(
                    "close[{i}]: the twin's network has no edge '{e}'"
                )));
            }
        }
        let mut runs = self.runs.lock().unwrap();
        if runs.len() >= 2 {
            return Err(ScenarioError::Busy("2 what-if runs are waiting".into()));
        }
        let run = WhatIfRun {
            id: format!("w{}", runs.len() + 1),
            status: RunStatus::Queued,
            request: req,
            submitted_by: by.to_string(),
            submitted_at: citybrain_model::time::Clock::now(&citybrain_model::time::SystemClock),
            started_at: None,
            finished_at: None,
            result: None,
            error: None,
        };
        runs.insert(0, (tenant.to_string(), run.clone()));
        Ok(run)
    }
    fn run(&self, tenant: &str, id: &str) -> Option<WhatIfRun> {
        let runs = self.runs.lock().unwrap();
        runs.iter()
            .find(|(t, r)| t == tenant && r.id == id)
            .map(|(_, r)| r.clone())
    }
    fn runs(&self, tenant: &str) -> Vec<WhatIfRun> {
        let runs = self.runs.lock().unwrap();
        runs.iter()
            .filter(|(t, _)| t == tenant)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

async fn app(scenarios: Option<Arc<dyn Scenarios>>) -> (citybrain_api::App, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    let store: Arc<dyn EntityStore> = Arc::new(store);
    let broker = Broker::new(store, Arc::new(SystemClock), BrokerConfig::default()).await;
    let app = citybrain_api::service(Parts {
        broker,
        ingest: None,
        hub: None,
        auth: None,
        governance: None,
        limits: HttpLimits::default(),
        rate: None,
        audit: None,
        catalog: None,
        cors_origins: Vec::new(),
        tls: false,
        scenarios,
        federation: None,
    });
    (app, dir)
}

async fn call(
    app: &citybrain_api::App,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Option<String>, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(match body {
            Some(b) => Body::from(b.to_string()),
            None => Body::empty(),
        })
        .unwrap();
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, location, v)
}

const RUNS: &str = "/platform/v1/twin/what-ifs";

#[tokio::test]
async fn a_what_if_is_queued_and_read_back() {
    let (app, _dir) = app(Some(Arc::new(Stand::default()))).await;
    let body = json!({"close": ["A1B1"], "slow": [{"edge": "A1B1", "kmh": 10}], "seed": 2});
    let (status, location, run) = call(&app, "POST", RUNS, Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    assert_eq!(run["status"], "queued");
    assert_eq!(run["request"]["slow"][0]["kmh"], 10.0);
    assert_eq!(run["submittedBy"], "anonymous");
    let location = location.unwrap();
    assert_eq!(location, format!("{RUNS}/{}", run["id"].as_str().unwrap()));
    let (status, _, again) = call(&app, "GET", &location, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again, run);
    let (status, _, list) = call(&app, "GET", RUNS, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (status, _, p) = call(&app, "GET", &format!("{RUNS}/nope"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{p}");
    // Another tenant sees none of them.
    let req = Request::builder()
        .uri(location.as_str())
        .header("NGSILD-Tenant", "other")
        .body(Body::empty())
        .unwrap();
    let r = app.clone().oneshot(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    let p: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(
        p["detail"].as_str().unwrap().contains("no what-if run"),
        "{p}"
    );
}

#[tokio::test]
async fn bad_what_ifs_are_refused_with_the_field_named() {
    let (app, _dir) = app(Some(Arc::new(Stand::default()))).await;
    // An unknown field, a wrong type, an edge the twin lacks.
    for (body, names) in [
        (json!({"closed": ["A1B1"]}), "closed"),
        (json!({"slow": [{"edge": "A1B1", "kmh": "fast"}]}), "kmh"),
        (json!({"close": ["A1B1", "Z9"]}), "close[1]"),
        (
            json!({"slow": [{"edge": "A1B1", "kmh": 10, "lanes": 1}]}),
            "slow[0]",
        ),
    ] {
        let (status, _, p) = call(&app, "POST", RUNS, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
        assert!(p["detail"].as_str().unwrap().contains(names), "{p}");
        assert!(
            p["type"].as_str().unwrap().contains("BadRequestData"),
            "{p}"
        );
    }
    // Trailing bytes after the JSON value.
    let req = Request::builder()
        .method("POST")
        .uri(RUNS)
        .header("content-type", "application/json")
        .body(Body::from(r#"{"close": ["A1B1"]} xyz"#))
        .unwrap();
    let r = app.clone().oneshot(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Too many waiting: 429 with a problem body.
    for _ in 0..2 {
        let (status, _, _) = call(&app, "POST", RUNS, Some(json!({"close": ["A1B1"]}))).await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let (status, _, p) = call(&app, "POST", RUNS, Some(json!({"close": ["A1B1"]}))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{p}");
}

#[tokio::test]
async fn without_a_twin_what_ifs_are_not_found_and_say_why() {
    let (app, _dir) = app(None).await;
    let (status, _, p) = call(&app, "POST", RUNS, Some(json!({"close": ["A1B1"]}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        p["detail"].as_str().unwrap().contains("install-sumo"),
        "{p}"
    );
}
