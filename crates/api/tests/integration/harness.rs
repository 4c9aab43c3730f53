//! A broker on a temporary store behind the real router, driven with `oneshot`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use citybrain_api::{app as build_app, HttpLimits};
use citybrain_broker::{Broker, BrokerConfig};
use citybrain_model::time::{Clock, SystemClock};
use citybrain_store::{EmbeddedStore, EntityStore, StoreOptions};
use serde_json::Value;
use tower::ServiceExt;

pub struct App {
    pub router: citybrain_api::App,
    pub ingest: Option<Arc<citybrain_ingest::Ingest>>,
    pub hub: Option<Arc<citybrain_hub::Hub>>,
    _broker: Arc<Broker>,
    _store: EmbeddedStore,
    _dir: tempfile::TempDir,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    pub fn header(&self, k: &str) -> Option<&str> {
        self.headers.get(k).and_then(|v| v.to_str().ok())
    }
    /// Every value of a header, joined with ", ".
    pub fn header_all(&self, k: &str) -> String {
        self.headers
            .get_all(k)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ")
    }
    /// The ProblemDetails type without its prefix.
    pub fn error_type(&self) -> &str {
        self.body["type"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("https://uri.etsi.org/ngsi-ld/errors/")
    }
}

pub async fn app() -> App {
    app_with(HttpLimits::default()).await
}

pub async fn app_with(limits: HttpLimits) -> App {
    app_configured(limits, |_| {}).await
}

/// An app whose broker configuration `tune` adjusts.
pub async fn app_configured(limits: HttpLimits, tune: impl FnOnce(&mut BrokerConfig)) -> App {
    app_on_store(limits, tune, |_| {}).await
}

/// An app whose store options (`store`) and broker configuration (`tune`) are adjusted.
pub async fn app_on_store(
    limits: HttpLimits,
    tune: impl FnOnce(&mut BrokerConfig),
    store: impl FnOnce(&mut StoreOptions),
) -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = StoreOptions::new(dir.path());
    store(&mut opts);
    let store = EmbeddedStore::open(opts).unwrap();
    let dynstore: Arc<dyn EntityStore> = Arc::new(store.clone());
    let mut cfg = BrokerConfig::default();
    tune(&mut cfg);
    cfg.dispatch.backoff_start = std::time::Duration::from_millis(20);
    cfg.dispatch.timeout = std::time::Duration::from_millis(500);
    let broker = Broker::new(dynstore, Arc::new(SystemClock), cfg).await;
    broker.start();
    App {
        router: build_app(broker.clone(), limits),
        ingest: None,
        hub: None,
        _broker: broker,
        _store: store,
        _dir: dir,
    }
}

/// An app with the ingestion pipeline over the mappings in `mappings` (and a payload
/// limit of `max_payload` bytes).
pub async fn app_with_ingest(mappings: &std::path::Path, max_payload: usize) -> App {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(StoreOptions::new(dir.path().join("data"))).unwrap();
    let dynstore: Arc<dyn EntityStore> = Arc::new(store.clone());
    let broker = Broker::new(dynstore, Arc::new(SystemClock), BrokerConfig::default()).await;
    broker.start();
    let dead = Arc::new(
        citybrain_ingest::deadletter::DeadLetters::open(&dir.path().join("dead")).unwrap(),
    );
    let ingest = Arc::new(
        citybrain_ingest::Ingest::new(
            broker.clone(),
            dead,
            citybrain_ingest::IngestSettings {
                mappings_dir: Some(mappings.to_path_buf()),
                max_payload_bytes: max_payload,
            },
        )
        .unwrap(),
    );
    App {
        router: citybrain_api::app_with_ingest(
            broker.clone(),
            Some(ingest.clone()),
            HttpLimits::default(),
        ),
        ingest: Some(ingest),
        hub: None,
        _broker: broker,
        _store: store,
        _dir: dir,
    }
}

/// An app with the coordination hub following the change feed (no ticker: tests tick
/// the hub themselves).
pub async fn app_with_hub() -> App {
    app_with_hub_clock(Arc::new(SystemClock)).await
}

/// [`app_with_hub`] with the hub on `clock` (SLA and mode tests move it by hand).
pub async fn app_with_hub_clock(clock: Arc<dyn citybrain_model::time::Clock>) -> App {
    app_hub(clock, Arc::new(citybrain_access::AllowAll)).await
}

/// An app with the hub whose broker and hub ask `authz` (the governance seam).
pub async fn app_with_policy(authz: Arc<dyn citybrain_access::Authorizer>) -> App {
    app_hub(Arc::new(SystemClock), authz).await
}

async fn app_hub(
    clock: Arc<dyn citybrain_model::time::Clock>,
    authz: Arc<dyn citybrain_access::Authorizer>,
) -> App {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    let dynstore: Arc<dyn EntityStore> = Arc::new(store.clone());
    let cfg = BrokerConfig {
        authorizer: authz.clone(),
        ..BrokerConfig::default()
    };
    let broker = Broker::new(dynstore.clone(), Arc::new(SystemClock), cfg).await;
    broker.start();
    let hub = citybrain_hub::Hub::with_authorizer(dynstore.clone(), clock, authz).unwrap();
    tokio::spawn(hub.clone().run(dynstore.subscribe()));
    App {
        router: citybrain_api::app_with(
            broker.clone(),
            None,
            Some(hub.clone()),
            HttpLimits::default(),
        ),
        ingest: None,
        hub: Some(hub),
        _broker: broker,
        _store: store,
        _dir: dir,
    }
}

impl App {
    /// A request made by `who` (as an authentication layer would mark it).
    pub async fn call_as(
        &self,
        who: &citybrain_access::Principal,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        if body.is_some() {
            b = b.header("content-type", "application/json");
        }
        let mut req = b
            .body(
                body.map(|v| Body::from(v.to_string()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        req.extensions_mut().insert(who.clone());
        self.send(req).await
    }

    async fn send(&self, req: Request<Body>) -> Resp {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn put(&self, uri: &str, body: &Value) -> Resp {
        self.call("PUT", uri, &[], Some(&body.to_string())).await
    }

    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(uri);
        let mut has_ct = false;
        for (k, v) in headers {
            has_ct |= k.eq_ignore_ascii_case("content-type");
            b = b.header(*k, *v);
        }
        if body.is_some() && !has_ct {
            b = b.header("content-type", "application/json");
        }
        let req = b
            .body(
                body.map(|s| Body::from(s.to_string()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        self.send(req).await
    }
    pub async fn get(&self, uri: &str) -> Resp {
        self.call("GET", uri, &[], None).await
    }
    /// The status of `method uri` (no body sent) and, unless the answer is an endless
    /// event stream, its body.
    pub async fn probe(&self, method: &str, uri: &str) -> (StatusCode, Option<Value>) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let stream = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if stream {
            return (status, None);
        }
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).ok())
    }
    pub async fn post(&self, uri: &str, body: &Value) -> Resp {
        self.call("POST", uri, &[], Some(&body.to_string())).await
    }
    pub async fn patch(&self, uri: &str, body: &Value) -> Resp {
        self.call("PATCH", uri, &[], Some(&body.to_string())).await
    }
    pub async fn delete(&self, uri: &str) -> Resp {
        self.call("DELETE", uri, &[], None).await
    }
}

/// A normalized entity of type `T` with a numeric `speed` and a location.
pub fn vehicle(id: &str, speed: f64, lon: f64, lat: f64) -> Value {
    serde_json::json!({
        "id": id, "type": "Vehicle",
        "speed": {"type": "Property", "value": speed, "unitCode": "KMH"},
        "brand": {"type": "Property", "value": "Mercedes"},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}
    })
}

/// An app as `serve` runs it with authentication on: API keys (an administrator's, a
/// viewer's), the default access policies over `classification`, and the hub.
pub struct Governed {
    pub app: App,
    pub keys: Arc<citybrain_identity::KeyStore>,
    pub admin: String,
    pub audit: Arc<citybrain_audit::AuditLog>,
    pub audit_dir: std::path::PathBuf,
    pub catalog: Arc<citybrain_catalog::Catalog>,
}

pub async fn app_governed(classification: Value) -> Governed {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(StoreOptions::new(dir.path().join("data"))).unwrap();
    let dynstore: Arc<dyn EntityStore> = Arc::new(store.clone());
    let clock: Arc<dyn citybrain_model::time::Clock> = Arc::new(SystemClock);
    let keys = Arc::new(citybrain_identity::KeyStore::open(dir.path()).unwrap());
    let (_, admin) = keys
        .create(
            citybrain_identity::NewKey {
                user: "root".into(),
                roles: vec!["admin".into()],
                ..Default::default()
            },
            clock.now(),
        )
        .unwrap();
    let auth = Arc::new(citybrain_identity::Authenticator::new(
        Some(keys.clone()),
        None,
        clock.clone(),
    ));
    let pseudonyms = Arc::new(citybrain_policy::PseudonymKeys::ephemeral(clock.now()).unwrap());
    let g = Arc::new(
        citybrain_policy::Governance::with_store(clock.clone(), pseudonyms, dynstore.clone(), None)
            .unwrap(),
    );
    let rc = citybrain_access::RequestContext::request(
        "",
        citybrain_access::Principal::user("root", &["admin"]),
        "setup".into(),
    );
    g.set_classification(&rc, classification).await.unwrap();
    let authz: Arc<dyn citybrain_access::Authorizer> =
        Arc::new(citybrain_access::Limited(g.clone()));
    let cfg = BrokerConfig {
        authorizer: authz.clone(),
        ..BrokerConfig::default()
    };
    let broker = Broker::new(dynstore.clone(), clock.clone(), cfg).await;
    broker.start();
    let hub = citybrain_hub::Hub::with_authorizer(dynstore.clone(), clock, authz).unwrap();
    tokio::spawn(hub.clone().run(dynstore.subscribe()));
    let audit_dir = dir.path().join("audit");
    let audit = citybrain_audit::AuditLog::open(&audit_dir, &dir.path().join("security")).unwrap();
    let catalog = Arc::new(citybrain_catalog::Catalog::new(
        broker.clone(),
        dynstore.clone(),
        Some(g.clone()),
        citybrain_catalog::CatalogInfo::default(),
    ));
    let router = citybrain_api::service(citybrain_api::Parts {
        broker: broker.clone(),
        ingest: None,
        hub: Some(hub.clone()),
        auth: Some(auth),
        governance: Some(g),
        audit: Some(audit.clone()),
        catalog: Some(catalog.clone()),
        cors_origins: Vec::new(),
        tls: false,
        scenarios: None,
        federation: None,
        limits: HttpLimits::default(),
        rate: Some(citybrain_identity::Rate {
            per_second: 5.0,
            burst: 500.0,
        }),
    });
    Governed {
        app: App {
            router,
            ingest: None,
            hub: Some(hub),
            _broker: broker,
            _store: store,
            _dir: dir,
        },
        keys,
        admin,
        audit,
        audit_dir,
        catalog,
    }
}

impl Governed {
    /// A new key for `user` with `roles` (and the key's other settings from `tune`).
    pub fn key(
        &self,
        user: &str,
        roles: &[&str],
        tune: impl FnOnce(&mut citybrain_identity::NewKey),
    ) -> String {
        let mut spec = citybrain_identity::NewKey {
            user: user.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        };
        tune(&mut spec);
        self.keys.create(spec, SystemClock.now_precise()).unwrap().1
    }

    /// A request with `key` as its bearer credential (`None`: anonymous).
    pub async fn call(
        &self,
        key: Option<&str>,
        method: &str,
        uri: &str,
        extra: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Resp {
        let auth = key.map(|k| format!("Bearer {k}"));
        let mut headers: Vec<(&str, &str)> = extra.to_vec();
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        let text = body.map(|b| b.to_string());
        self.app.call(method, uri, &headers, text.as_deref()).await
    }
}
