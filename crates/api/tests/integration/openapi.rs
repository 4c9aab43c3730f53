//! The OpenAPI document (`GET /openapi.json`, `crates/api/openapi.json`) against the
//! router: it is served and whole (every `$ref` resolves, ids are unique, every operation
//! lists the answers the outer layers can give), every platform route is described, and
//! every described operation is routed, with no method routed that it does not describe.
//! That the answers match their schemas is schemathesis's part (`scripts/api-check.sh`).

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::Value;

use super::harness::app_with_hub;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// What every operation can be answered by the layers in front of its handler:
/// authentication, policy, rate limit, concurrency limit.
const EVERYWHERE: [&str; 4] = ["401", "403", "429", "503"];
/// And, where the operation reads a body: its time and size limits (and 507 on every
/// write but those that store nothing).
const WITH_BODY: [&str; 2] = ["408", "413"];

fn document() -> Value {
    serde_json::from_str(citybrain_api::handlers::openapi::DOCUMENT).unwrap()
}

/// The operations of the document: (path, method, operation).
fn operations(doc: &Value) -> Vec<(String, &'static str, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                out.push((path.clone(), m, op.clone()));
            }
        }
    }
    out
}

/// The value a JSON pointer of the document (`#/components/...`) names.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(&pointer.replace("~1", "/"))
}

fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    if let Some(s) = x.as_str() {
                        out.push(s.to_string());
                    }
                } else {
                    references(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

/// The path with every `{parameter}` replaced by a sample value.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push('1');
            }
            '}' => in_param = false,
            _ if !in_param => out.push(c),
            _ => {}
        }
    }
    out
}

/// Whether `path` (concrete or templated) matches the router's `template`, where a
/// `{parameter}` matches any non-empty text without `/`.
fn matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| {
            if t.starts_with('{') && t.ends_with('}') {
                !p.is_empty()
            } else {
                t == p
            }
        })
}

/// The route templates `routes.rs` declares (`pub const NAME: &str = "/…";`).
fn declared_routes() -> Vec<String> {
    include_str!("../../src/routes.rs")
        .lines()
        .filter(|l| l.starts_with("pub const ") && l.contains(": &str = \"/"))
        .filter_map(|l| l.split('"').nth(1).map(str::to_string))
        .collect()
}

#[tokio::test]
async fn the_document_and_the_api_catalogue_are_served() {
    let app = app_with_hub().await;
    let r = app.get("/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.body["openapi"], "3.1.0");
    // The route serves the committed file.
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(r.body, committed);

    let r = app.get("/.well-known/api-catalog").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/linkset+json"));
    let links = r.body["linkset"].as_array().unwrap();
    assert!(links
        .iter()
        .any(|l| l["service-desc"][0]["href"] == "/openapi.json"));
    // Every link to this server leads somewhere.
    for l in links {
        for (rel, targets) in l.as_object().unwrap() {
            if rel == "anchor" {
                continue;
            }
            for t in targets.as_array().unwrap() {
                let href = t["href"].as_str().unwrap();
                if href.starts_with('/') {
                    assert_eq!(app.get(href).await.status, StatusCode::OK, "{rel} {href}");
                }
            }
        }
    }
}

#[test]
fn every_reference_resolves_and_every_operation_is_complete() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut refs = Vec::new();
    references(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in &refs {
        assert!(resolve(&doc, r).is_some(), "unresolved reference {r}");
    }
    let mut ids = BTreeSet::new();
    let ops = operations(&doc);
    assert!(ops.len() > 60, "only {} operations", ops.len());
    for (path, method, op) in &ops {
        let at = format!("{} {path}", method.to_uppercase());
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: no operationId"));
        assert!(ids.insert(id.to_string()), "{at}: operationId {id} twice");
        assert!(op["summary"].is_string(), "{at}: no summary");
        assert!(op["tags"].is_array(), "{at}: no tags");
        let listed = op["parameters"].as_array().cloned().unwrap_or_default();
        let params: Vec<&Value> = listed
            .iter()
            .map(|p| match p["$ref"].as_str() {
                Some(r) => resolve(&doc, r).unwrap_or(p),
                None => p,
            })
            .collect();
        assert!(
            listed
                .iter()
                .any(|p| p["$ref"] == "#/components/parameters/Tenant"),
            "{at}: no NGSILD-Tenant parameter"
        );
        // Every path parameter is declared.
        for seg in path.split('/') {
            if let Some(name) = seg.split('{').nth(1).and_then(|s| s.split('}').next()) {
                assert!(
                    params
                        .iter()
                        .any(|p| p["name"] == name && p["in"] == "path"),
                    "{at}: path parameter {name} undeclared"
                );
            }
        }
        let responses = op["responses"].as_object().unwrap();
        assert!(
            !responses.contains_key("default"),
            "{at}: a default answer admits any status"
        );
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{at}: no success answer"
        );
        let mut expected: Vec<&str> = EVERYWHERE.to_vec();
        if op.get("requestBody").is_some() {
            expected.extend(WITH_BODY);
        }
        // A write can find the disk full; these write nothing to disk.
        if *method != "get" && !matches!(id, "rulesBacktest" | "twinSubmitWhatIf") {
            expected.push("507");
        }
        for s in expected {
            assert!(responses.contains_key(s), "{at}: {s} is not listed");
        }
        for s in responses.keys() {
            assert!(
                !s.starts_with('5') || s == "503" || s == "507",
                "{at}: {s} documented (a server error is never an answer to plan for)"
            );
        }
    }
}

#[test]
fn every_link_leads_to_an_operation_and_names_its_parameters() {
    let doc = document();
    let ops = operations(&doc);
    let mut links = 0;
    for (path, method, op) in &ops {
        for (status, answer) in op["responses"].as_object().unwrap() {
            for (name, link) in answer["links"].as_object().into_iter().flatten() {
                links += 1;
                let at = format!("{} {path} {status} {name}", method.to_uppercase());
                let target = link["operationId"].as_str().unwrap();
                let (to, _, _) = ops
                    .iter()
                    .find(|(_, _, o)| o["operationId"] == target)
                    .unwrap_or_else(|| panic!("{at}: no operation {target}"));
                for param in link["parameters"].as_object().unwrap().keys() {
                    assert!(
                        to.contains(&format!("{{{param}}}")),
                        "{at}: {to} has no {param}"
                    );
                }
            }
        }
    }
    assert!(links > 0);
}

#[test]
fn every_platform_route_is_described() {
    let doc = document();
    let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    let routes = declared_routes();
    assert!(routes.len() > 60, "only {} routes read", routes.len());
    for route in routes {
        if route.starts_with("/ngsi-ld/") || route == "/" || route.starts_with("/assets/") {
            continue; // ETSI's document; the console's files
        }
        if route.contains("{file}") {
            // Open311's file names are described one by one (services.json, …).
            assert!(
                paths.iter().any(|p| matches(&route, p)),
                "no described path under {route}"
            );
        } else {
            assert!(paths.contains(&&route), "{route} is not described");
        }
    }
}

#[tokio::test]
async fn every_described_operation_is_routed_and_nothing_else() {
    let app = app_with_hub().await;
    let doc = document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let uri = concrete(path);
        for m in METHODS {
            let (status, body) = app.probe(&m.to_uppercase(), &uri).await;
            let at = format!("{} {uri}", m.to_uppercase());
            let unrouted = status == StatusCode::NOT_FOUND
                && body
                    .as_ref()
                    .is_some_and(|b| b["detail"] == "no such path in the API");
            if item.get(m).is_some() {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{at} is described");
                assert!(!unrouted, "{at} is described but not routed");
                assert!(
                    !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
                    "{at}: {status}"
                );
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{at} answers {status} but is not described"
                );
            }
        }
    }
}
