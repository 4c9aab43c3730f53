//! Server-side request forgery, refused: with a strict egress policy (what `serve`
//! runs as soon as it listens beyond loopback), `@context` URLs and notification
//! endpoints that point at internal services are refused, by literal address, by
//! name, and through redirects; non-JSON answers are not taken for contexts. Local
//! servers stand in for the internal services, and each counts its hits: nothing may
//! reach them.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use super::harness::app_configured;

/// A stand-in service on `ip`: `/creds.json` (JSON-LD with secrets), `/page` (HTML
/// with an @context-looking body), `/to?url=` (a redirect). Returns its base URL and
/// hit counter.
async fn service(ip: &str) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new()
        .route(
            "/creds.json",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/ld+json")],
                    json!({"@context": {"secret": "urn:AKIA-ROOT-CREDENTIALS"}}).to_string(),
                )
            }),
        )
        .route(
            "/page",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html")],
                    json!({"@context": {"x": "urn:x"}}).to_string(),
                )
            }),
        )
        .route(
            "/to",
            get(
                |q: axum::extract::Query<std::collections::HashMap<String, String>>| async move {
                    axum::response::Redirect::temporary(&q["url"]).into_response()
                },
            ),
        )
        .layer(axum::middleware::from_fn(
            move |req, next: axum::middleware::Next| {
                let h = h.clone();
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    next.run(req).await
                }
            },
        ));
    let l = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let base = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (base, hits)
}

#[tokio::test]
async fn contexts_and_endpoints_cannot_reach_internal_services() {
    let (internal, internal_hits) = service("127.0.0.1").await;
    // 127.0.0.2 stands for an allow-listed partner (Linux routes 127/8 to loopback).
    let (partner, partner_hits) = service("127.0.0.2").await;
    let app = app_configured(Default::default(), |c| {
        c.egress = Arc::new(citybrain_egress::EgressPolicy::strict(&["127.0.0.2/32"]).unwrap());
    })
    .await;
    let car = json!({"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle"}).to_string();
    let with_link = |url: String| {
        format!(
            "<{url}>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\""
        )
    };

    // A literal internal address, and `localhost`.
    for url in [
        format!("{internal}/creds.json"),
        internal.replace("127.0.0.1", "localhost") + "/creds.json",
        "http://169.254.169.254/latest/meta-data/iam".to_string(),
        "http://[::ffff:127.0.0.1]:1/creds.json".to_string(),
    ] {
        let link = with_link(url.clone());
        let r = app
            .call(
                "POST",
                "/ngsi-ld/v1/entities",
                &[("link", link.as_str())],
                Some(&car),
            )
            .await;
        assert_eq!(r.status, 503, "{url}: {}", r.text);
        assert!(r.text.contains("refused"), "{url}: {}", r.text);
    }
    // Through an allowed host's redirect to the internal one.
    let hop = format!("{partner}/to?url={internal}/creds.json");
    let r = app
        .call(
            "POST",
            "/ngsi-ld/v1/entities",
            &[("link", with_link(hop).as_str())],
            Some(&car),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(
        partner_hits.load(Ordering::SeqCst),
        1,
        "the allowed hop was called"
    );
    // An answer that is not JSON-LD is not a context.
    let r = app
        .call(
            "POST",
            "/ngsi-ld/v1/entities",
            &[("link", with_link(format!("{partner}/page")).as_str())],
            Some(&car),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert!(r.text.contains("text/html"), "{}", r.text);

    // Nothing was cached or can be read back.
    let r = app.get("/ngsi-ld/v1/jsonldContexts?details=true").await;
    assert!(
        !r.text.contains("AKIA") && !r.text.contains("creds"),
        "{}",
        r.text
    );

    // Notification endpoints: refused at creation, naming the member.
    for uri in [
        format!("{internal}/notify"),
        "http://localhost:9/notify".to_string(),
        "http://10.0.0.5/notify".to_string(),
        "mqtt://127.0.0.1:1883/city/x".to_string(),
    ] {
        let sub = json!({"type": "Subscription", "entities": [{"type": "Vehicle"}],
                         "notification": {"endpoint": {"uri": uri, "accept": "application/json"}}});
        let r = app.post("/ngsi-ld/v1/subscriptions", &sub).await;
        assert_eq!(r.status, 400, "{uri}: {}", r.text);
        assert!(r.text.contains("notification.endpoint.uri"), "{}", r.text);
    }
    assert_eq!(
        internal_hits.load(Ordering::SeqCst),
        0,
        "an internal service was reached"
    );
}

#[tokio::test]
async fn an_open_policy_still_reaches_local_services() {
    // The loopback demo (and the ETSI suite's local context server) keep working.
    let (local, hits) = service("127.0.0.1").await;
    let app = app_configured(Default::default(), |_| {}).await;
    let car = json!({"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle"}).to_string();
    let link = format!("<{local}/creds.json>; rel=\"http://www.w3.org/ns/json-ld#context\"; type=\"application/ld+json\"");
    let r = app
        .call(
            "POST",
            "/ngsi-ld/v1/entities",
            &[("link", link.as_str())],
            Some(&car),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}
