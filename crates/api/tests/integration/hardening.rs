//! Transport hardening over real sockets: TLS, slow clients (slowloris), the request
//! timeout, and CORS.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use citybrain_api::serve::{serve, tls_config, ServeOptions};
use citybrain_api::{HttpLimits, Parts};
use citybrain_broker::{Broker, BrokerConfig};
use citybrain_model::time::SystemClock;
use citybrain_store::{EmbeddedStore, EntityStore, StoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

struct Served {
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _store: EmbeddedStore,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn parts(
    limits: HttpLimits,
    cors: &[&str],
    tls: bool,
) -> (Parts, EmbeddedStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    let dynstore: Arc<dyn EntityStore> = Arc::new(store.clone());
    let broker = Broker::new(dynstore, Arc::new(SystemClock), BrokerConfig::default()).await;
    let p = Parts {
        broker,
        ingest: None,
        hub: None,
        auth: None,
        governance: None,
        limits,
        rate: None,
        audit: None,
        catalog: None,
        cors_origins: cors.iter().map(|s| s.to_string()).collect(),
        tls,
        scenarios: None,
        federation: None,
    };
    (p, store, dir)
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../identity/tests/fixtures")
        .join(name)
}

async fn start(opts: ServeOptions) -> Served {
    let tls = opts.tls.is_some();
    let (p, store, dir) = parts(HttpLimits::default(), &[], tls).await;
    let app = citybrain_api::service(p);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, app, opts, async move {
        let _ = rx.await;
    }));
    Served {
        addr,
        stop: Some(tx),
        _store: store,
        _dir: dir,
    }
}

#[tokio::test]
async fn https_is_served_with_the_configured_certificate() {
    let tls = tls_config(&fixture("localhost.crt"), &fixture("localhost.key")).unwrap();
    let s = start(ServeOptions {
        tls: Some(tls),
        ..ServeOptions::default()
    })
    .await;
    let ca = reqwest::Certificate::from_pem(&std::fs::read(fixture("ca.crt")).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/health", s.addr.port());
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    // A client that does not trust the certificate is refused by its own TLS check; a
    // plain-HTTP client gets no answer.
    let untrusting = reqwest::Client::new();
    assert!(untrusting.get(&url).send().await.is_err());
    let plain = format!("http://127.0.0.1:{}/health", s.addr.port());
    assert!(reqwest::Client::new().get(&plain).send().await.is_err());
    // Bad files are refused with the file named.
    let e = tls_config(&fixture("localhost.key"), &fixture("localhost.key"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("certificate") && e.contains("localhost.key"),
        "{e}"
    );
    let e = tls_config(&fixture("localhost.crt"), &fixture("README.md"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("key") && e.contains("README.md"), "{e}");
}

/// Reads until the server closes the connection or `limit` passes; what it sent.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let end = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&got).into()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn slow_clients_are_disconnected() {
    let s = start(ServeOptions {
        header_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    })
    .await;
    // Slowloris: headers that never end.
    let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let closed = read_until_closed(&mut c, Duration::from_secs(5)).await;
    assert!(closed.is_some(), "the connection stayed open");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // A connection that sends nothing at all is closed too.
    let mut idle = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    assert!(read_until_closed(&mut idle, Duration::from_secs(5))
        .await
        .is_some());
    // A normal client meanwhile is served.
    let mut ok = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    ok.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut ok, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A TLS client that never finishes its handshake is dropped as well.
    let tls = tls_config(&fixture("localhost.crt"), &fixture("localhost.key")).unwrap();
    let t = start(ServeOptions {
        tls: Some(tls),
        header_timeout: Duration::from_millis(300),
        ..ServeOptions::default()
    })
    .await;
    let mut h = tokio::net::TcpStream::connect(t.addr).await.unwrap();
    h.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    assert!(read_until_closed(&mut h, Duration::from_secs(5))
        .await
        .is_some());
}

#[tokio::test]
async fn a_request_past_the_timeout_gets_408() {
    let limits = HttpLimits {
        request_timeout: Duration::from_millis(200),
        ..HttpLimits::default()
    };
    let (p, _store, _dir) = parts(limits, &[], false).await;
    let app = citybrain_api::service(p);
    // A body that never finishes arriving.
    let stalled = futures::stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
    let req = Request::builder()
        .method("POST")
        .uri("/ngsi-ld/v1/entities")
        .header("content-type", "application/json")
        .body(Body::from_stream(stalled))
        .unwrap();
    let started = std::time::Instant::now();
    let r = app.oneshot(req).await.unwrap();
    assert_eq!(r.status(), 408);
    assert!(started.elapsed() < Duration::from_secs(2));
    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("request_timeout_secs"), "{text}");
}

#[tokio::test]
async fn cors_answers_only_the_configured_origins() {
    let (p, _store, _dir) = parts(
        HttpLimits::default(),
        &["https://console.city.example"],
        false,
    )
    .await;
    let app = citybrain_api::service(p);
    let preflight = |origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri("/ngsi-ld/v1/entities")
            .header("origin", origin)
            .header("access-control-request-method", "PATCH")
            .header(
                "access-control-request-headers",
                "authorization,ngsild-tenant",
            )
            .body(Body::empty())
            .unwrap()
    };
    let r = app
        .clone()
        .oneshot(preflight("https://console.city.example"))
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(
        h["access-control-allow-origin"],
        "https://console.city.example"
    );
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(methods.contains("PATCH"), "{methods}");
    let allowed = h["access-control-allow-headers"].to_str().unwrap();
    assert!(
        allowed.contains("authorization") && allowed.contains("ngsild-tenant"),
        "{allowed}"
    );
    // Another origin gets no permission.
    let r = app
        .clone()
        .oneshot(preflight("https://evil.example"))
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // A simple request from the allowed origin exposes the paging headers.
    let r = app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/ngsi-ld/v1/types")
                .header("origin", "https://console.city.example")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap();
    assert!(
        exposed.contains("ngsild-results-count") && exposed.contains("link"),
        "{exposed}"
    );
    // Without configured origins, no CORS headers at all.
    let (p, _s, _d) = parts(HttpLimits::default(), &[], false).await;
    let r = citybrain_api::service(p)
        .oneshot(preflight("https://console.city.example"))
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

/// What `curl -G -d 'q=speed>5'` sends: raw `>` and `"` in the request target, on
/// a kept-alive connection after a request with a body. Parsed as their
/// percent-encoded forms (the HTTP parser alone answers a bare 400).
#[tokio::test]
async fn raw_query_characters_from_curl_are_accepted() {
    let s = start(ServeOptions::default()).await;
    let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let body = r#"{"id":"urn:ngsi-ld:V:1","type":"V","speed":{"type":"Property","value":9},"name":{"type":"Property","value":"a b"}}"#;
    let create = format!(
        "POST /ngsi-ld/v1/entities HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let query = "GET /ngsi-ld/v1/entities?type=V&q=speed>5;name==\"a%20b\"&options=keyValues HTTP/1.1\r\nHost: x\r\n\r\n";
    let miss = "GET /ngsi-ld/v1/entities?type=V&q=speed<5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    // In pieces: the body arrives after a pause (read straight into the parser's
    // buffer), then the next requests.
    let (head, body_part) = create.split_at(create.len() - body.len());
    c.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.write_all(&body_part.as_bytes()[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.write_all(format!("{}{query}{miss}", &body_part[10..]).as_bytes())
        .await
        .unwrap();
    let mut all = String::new();
    let mut buf = vec![0u8; 65536];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        all.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    // Status lines follow the previous body directly.
    let statuses: Vec<&str> = all
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &all[i..i + 12])
        .collect();
    assert_eq!(
        statuses,
        ["HTTP/1.1 201", "HTTP/1.1 200", "HTTP/1.1 200"],
        "{all}"
    );
    // The first query finds the entity, the second (speed < 5) nothing.
    assert!(all.contains(r#""speed":9"#), "{all}");
    assert!(all.trim_end().ends_with("[]"), "{all}");
}

/// A request the HTTP parser itself refuses still gets a ProblemDetails body.
#[tokio::test]
async fn requests_the_parser_refuses_get_problem_details() {
    let s = start(ServeOptions::default()).await;
    for garbage in [
        "GARBAGE\r\n\r\n",
        "GET /ngsi-ld/v1/entities HTTP/1.1\r\nBad Header Without Colon\r\n\r\n",
    ] {
        let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        c.write_all(garbage.as_bytes()).await.unwrap();
        let mut all = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut all)).await;
        let text = String::from_utf8_lossy(&all).to_string();
        assert!(text.starts_with("HTTP/1.1 400"), "{garbage:?}: {text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("content-type: application/json"), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["status"], 400, "{body}");
        assert!(v["detail"].as_str().unwrap().contains("HTTP/1.1"), "{body}");
    }
}
