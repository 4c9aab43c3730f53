//! `@context` resolution and the `/jsonldContexts` store.
//!
//! The core context is embedded. A client context named by URL is looked up in this
//! order: contexts hosted here (`POST /jsonldContexts`), the cache of fetched contexts,
//! then an HTTP fetch with a timeout and a size limit (once; the result is cached, so a
//! broker that fetched a context keeps working offline). Built active contexts are cached
//! by their source text, so a request with a known `Link` costs one map lookup.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use citybrain_model::context::{
    is_core_context_url, remote_urls, ContextBuilder, CORE_CONTEXT_URL,
};
use citybrain_model::time::{format_datetime, Clock};
use citybrain_model::{ErrorKind, JsonLdContext};
use citybrain_storage::EntityStore;
use citybrain_storage::Origin;
use parking_lot::RwLock;
use serde_json::{json, Value};

use crate::error::{BrokerError, Result};

const COLLECTION: &str = "jsonldContexts";
/// Most remote documents one request may pull in (nested contexts included).
const MAX_DOCS_PER_REQUEST: usize = 32;
/// Most active contexts kept built.
const MAX_BUILT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextKind {
    /// Added by a client (`POST /jsonldContexts`).
    Hosted,
    /// Fetched from its URL and kept.
    Cached,
    /// Made by the broker from an inline or composite `@context` of a subscription, so
    /// that notifications can name it by one URL (`jsonldContext`).
    ImplicitlyCreated,
}

impl ContextKind {
    fn as_str(self) -> &'static str {
        match self {
            ContextKind::Hosted => "Hosted",
            ContextKind::Cached => "Cached",
            ContextKind::ImplicitlyCreated => "ImplicitlyCreated",
        }
    }

    fn parse(s: Option<&str>) -> Option<ContextKind> {
        match s {
            Some("Hosted") => Some(ContextKind::Hosted),
            Some("Cached") => Some(ContextKind::Cached),
            Some("ImplicitlyCreated") => Some(ContextKind::ImplicitlyCreated),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct StoredContext {
    id: String,
    url: String,
    kind: ContextKind,
    doc: Arc<Value>,
    created: DateTime<Utc>,
    /// Usage, shared by clones: milliseconds since the epoch, and a hit counter.
    usage: Arc<Usage>,
}

#[derive(Debug)]
struct Usage {
    last_used_ms: std::sync::atomic::AtomicI64,
    hits: std::sync::atomic::AtomicU64,
}

impl Usage {
    fn new(now: DateTime<Utc>, hits: u64) -> Self {
        Self {
            last_used_ms: now.timestamp_millis().into(),
            hits: hits.into(),
        }
    }
    fn touch(&self, now: DateTime<Utc>) {
        use std::sync::atomic::Ordering::Relaxed;
        self.hits.fetch_add(1, Relaxed);
        self.last_used_ms.store(now.timestamp_millis(), Relaxed);
    }
    fn hits(&self) -> u64 {
        self.hits.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn last_used(&self) -> String {
        let ms = self.last_used_ms.load(std::sync::atomic::Ordering::Relaxed);
        DateTime::<Utc>::from_timestamp_millis(ms)
            .map(|t| format_datetime(&t))
            .unwrap_or_default()
    }
}

/// Settings for fetching remote contexts.
#[derive(Debug, Clone)]
pub struct ContextSettings {
    /// The base URL under which this server is reached (for hosted context URLs).
    pub public_base: String,
    pub fetch_timeout: Duration,
    pub max_bytes: usize,
}

pub struct ContextResolver {
    /// `None` when the guarded client could not be built: then nothing is fetched.
    http: Option<reqwest::Client>,
    egress: Arc<citybrain_egress::EgressPolicy>,
    settings: ContextSettings,
    by_url: RwLock<HashMap<String, StoredContext>>,
    built: RwLock<HashMap<String, Arc<JsonLdContext>>>,
    /// URLs whose fetch failed lately, with when and why: not fetched again before
    /// [`RETRY_AFTER`] (a dead context server must not cost every request a timeout).
    failed: RwLock<HashMap<String, (DateTime<Utc>, String)>>,
    store: Arc<dyn EntityStore>,
    clock: Arc<dyn Clock>,
}

/// How long a failed `@context` fetch is remembered before the URL is tried again.
pub const RETRY_AFTER: chrono::TimeDelta = chrono::TimeDelta::seconds(30);
/// The most failed URLs remembered (more: the oldest memory is dropped).
const MAX_FAILED: usize = 1024;

impl ContextResolver {
    pub fn new(
        settings: ContextSettings,
        store: Arc<dyn EntityStore>,
        clock: Arc<dyn Clock>,
        egress: Arc<citybrain_egress::EgressPolicy>,
    ) -> Self {
        let http = egress
            .client(
                reqwest::Client::builder()
                    .timeout(settings.fetch_timeout)
                    .connect_timeout(settings.fetch_timeout),
            )
            .inspect_err(|e| tracing::error!(error = %e, "@context URLs cannot be fetched"))
            .ok();
        let r = Self {
            http,
            egress,
            settings,
            by_url: RwLock::new(HashMap::new()),
            built: RwLock::new(HashMap::new()),
            failed: RwLock::new(HashMap::new()),
            store,
            clock,
        };
        r.load_persisted();
        r
    }

    fn load_persisted(&self) {
        let now = self.clock.now();
        let mut map = self.by_url.write();
        let stored = match self.store.docs("", COLLECTION) {
            Ok(d) => d,
            Err(error) => {
                tracing::error!(%error, "stored @contexts could not be read");
                return;
            }
        };
        for (id, v) in stored {
            let (Some(url), Some(doc)) = (v.get("url").and_then(Value::as_str), v.get("doc"))
            else {
                continue;
            };
            let kind = ContextKind::parse(v.get("kind").and_then(Value::as_str))
                .unwrap_or(ContextKind::Hosted);
            map.insert(
                url.to_string(),
                StoredContext {
                    id,
                    url: url.to_string(),
                    kind,
                    doc: Arc::new(doc.clone()),
                    created: now,
                    usage: Arc::new(Usage::new(now, 0)),
                },
            );
        }
    }

    fn hosted_url(&self, id: &str) -> String {
        format!(
            "{}/ngsi-ld/v1/jsonldContexts/{}",
            self.settings.public_base.trim_end_matches('/'),
            id
        )
    }

    /// The active context for a request: `None` means the core context alone.
    pub async fn resolve(&self, source: Option<&Value>) -> Result<Arc<JsonLdContext>> {
        let Some(source) = source else {
            return Ok(JsonLdContext::core());
        };
        self.touch(source);
        let key = source.to_string();
        if let Some(c) = self.built.read().get(&key) {
            return Ok(c.clone());
        }
        let mut pending = Vec::new();
        remote_urls(source, &mut pending);
        let mut fetched: HashMap<String, Arc<Value>> = HashMap::new();
        while let Some(url) = pending.pop() {
            if fetched.contains_key(&url) {
                continue;
            }
            if fetched.len() >= MAX_DOCS_PER_REQUEST {
                return Err(BrokerError::bad_data(
                    "@context pulls in too many remote documents",
                ));
            }
            let doc = self.load(&url).await?;
            if let Some(inner) = doc.get("@context") {
                remote_urls(inner, &mut pending);
            }
            fetched.insert(url, doc);
        }
        let mut b = ContextBuilder::with_core();
        b.apply(source, &|u| fetched.get(u).cloned(), 0)?;
        let built = Arc::new(b.build(source.clone()));
        let mut cache = self.built.write();
        if cache.len() >= MAX_BUILT {
            cache.clear();
        }
        cache.insert(key, built.clone());
        Ok(built)
    }

    /// A context URL as stored: a path on this server (`/ngsi-ld/v1/jsonldContexts/..`,
    /// as our `Location` headers give) becomes absolute.
    fn canonical(&self, url: &str) -> String {
        if url.starts_with('/') {
            format!("{}{}", self.settings.public_base.trim_end_matches('/'), url)
        } else {
            url.to_string()
        }
    }

    /// Counts a use of every context URL a request names (for `numberOfHits`).
    fn touch(&self, source: &Value) {
        let mut urls = Vec::new();
        remote_urls(source, &mut urls);
        if urls.is_empty() {
            return;
        }
        let now = self.clock.now();
        let map = self.by_url.read();
        for u in urls {
            if let Some(c) = map.get(&self.canonical(&u)) {
                c.usage.touch(now);
            }
        }
    }

    async fn load(&self, url: &str) -> Result<Arc<Value>> {
        let now = self.clock.now();
        let canonical = self.canonical(url);
        if let Some(c) = self.by_url.read().get(&canonical) {
            return Ok(c.doc.clone());
        }
        if url.starts_with('/') {
            return Err(BrokerError::new(
                ErrorKind::LdContextNotAvailable,
                format!("@context '{url}' is not hosted here"),
            ));
        }
        if let Some((at, why)) = self.failed.read().get(&canonical) {
            let left = RETRY_AFTER - (now - *at);
            if left > chrono::TimeDelta::zero() {
                return Err(BrokerError::new(
                    ErrorKind::LdContextNotAvailable,
                    format!(
                        "{why} (not tried again for {} s)",
                        left.num_seconds().max(1)
                    ),
                ));
            }
        }
        let doc = match self.fetch(url).await {
            Ok(d) => d,
            Err(e) => {
                let mut failed = self.failed.write();
                if failed.len() >= MAX_FAILED {
                    failed.clear();
                }
                failed.insert(
                    canonical,
                    (now, citybrain_model::ErrorCode::public_detail(&e)),
                );
                return Err(e);
            }
        };
        self.failed.write().remove(&canonical);
        let id = uuid::Uuid::new_v4().to_string();
        let stored = StoredContext {
            id: id.clone(),
            url: url.to_string(),
            kind: ContextKind::Cached,
            doc: doc.clone(),
            created: now,
            usage: Arc::new(Usage::new(now, 1)),
        };
        // Cached on first use by whoever's request named it: the platform's own write.
        let origin = Origin::new("service:contexts", None);
        self.persist(&stored, &origin).await?;
        self.by_url.write().insert(url.to_string(), stored);
        Ok(doc)
    }

    async fn fetch(&self, url: &str) -> Result<Arc<Value>> {
        let unavailable = |why: String| {
            BrokerError::new(
                ErrorKind::LdContextNotAvailable,
                format!("@context '{url}' could not be loaded: {why}"),
            )
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(unavailable("only http(s) URLs can be fetched".into()));
        }
        // Literal addresses here; names after resolution and redirects in the client.
        self.egress
            .check_url(url)
            .map_err(|e| unavailable(e.to_string()))?;
        let http = self.http.as_ref().ok_or_else(|| {
            unavailable("outbound requests are off: the HTTP client could not be built".into())
        })?;
        let timeout = self.settings.fetch_timeout;
        let why = |e: reqwest::Error| {
            if e.is_timeout() {
                format!("no answer within {} ms (timed out)", timeout.as_millis())
            } else if e.is_connect() {
                format!("could not connect: {e}")
            } else {
                e.to_string()
            }
        };
        let resp = http
            .get(url)
            .header("Accept", "application/ld+json, application/json")
            .send()
            .await
            .map_err(|e| unavailable(why(e)))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("HTTP {}", resp.status())));
        }
        // Only JSON-LD (or JSON) documents: a service answering HTML or anything else
        // is not taken for a context. `text/plain` is accepted too, because that is
        // what raw.githubusercontent.com serves the Smart Data Models' contexts as
        // (the body must still be JSON with an `@context`).
        let media = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        if !(media == "application/ld+json"
            || media == "application/json"
            || media.ends_with("+json"))
        {
            return Err(unavailable(format!(
                "the answer is '{media}', not application/ld+json or application/json"
            )));
        }
        if resp
            .content_length()
            .is_some_and(|l| l as usize > self.settings.max_bytes)
        {
            return Err(unavailable("document too large".into()));
        }
        let bytes = resp.bytes().await.map_err(|e| unavailable(why(e)))?;
        if bytes.len() > self.settings.max_bytes {
            return Err(unavailable("document too large".into()));
        }
        let doc: Value =
            serde_json::from_slice(&bytes).map_err(|e| unavailable(format!("not JSON: {e}")))?;
        if doc.get("@context").is_none() {
            return Err(unavailable("the document has no @context member".into()));
        }
        tracing::info!(url, bytes = bytes.len(), "fetched @context");
        Ok(Arc::new(doc))
    }

    async fn persist(&self, c: &StoredContext, origin: &Origin) -> Result<()> {
        let v = json!({"url": c.url, "kind": c.kind.as_str(), "doc": *c.doc});
        self.store
            .put_doc("", COLLECTION, &c.id, v, origin)?
            .wait()
            .await?;
        Ok(())
    }

    /// `POST /jsonldContexts`: hosts a context; returns its local id.
    pub async fn add_hosted(&self, body: Value, origin: &Origin) -> Result<String> {
        let Some(inner) = body.get("@context") else {
            return Err(BrokerError::invalid(
                "the body must be a JSON object with an '@context' member",
            ));
        };
        if !(inner.is_object() || inner.is_array() || inner.is_string()) {
            return Err(BrokerError::bad_data(
                "'@context' must be an object, an array or a URL",
            ));
        }
        // Check its structure; URLs inside are fetched when the context is first used, so
        // hosting works without access to them.
        ContextBuilder::with_core().apply(
            inner,
            &|_| Some(Arc::new(json!({"@context": {}}))),
            0,
        )?;
        let (id, _) = self.store_local(inner, ContextKind::Hosted, origin).await?;
        Ok(id)
    }

    /// Keeps a context served here under a new URL; returns (local id, URL).
    async fn store_local(
        &self,
        inner: &Value,
        kind: ContextKind,
        origin: &Origin,
    ) -> Result<(String, String)> {
        let id = uuid::Uuid::new_v4().to_string();
        let url = self.hosted_url(&id);
        let now = self.clock.now();
        let stored = StoredContext {
            id: id.clone(),
            url: url.clone(),
            kind,
            doc: Arc::new(json!({"@context": inner})),
            created: now,
            usage: Arc::new(Usage::new(now, 0)),
        };
        self.persist(&stored, origin).await?;
        self.by_url.write().insert(url.clone(), stored);
        Ok((id, url))
    }

    /// The URL of an ImplicitlyCreated context for an inline or composite `@context`
    /// (the same source gives the same context).
    pub async fn implicit_url(&self, source: &Value) -> Result<String> {
        let doc = json!({"@context": source});
        let existing = self
            .by_url
            .read()
            .values()
            .find(|c| c.kind == ContextKind::ImplicitlyCreated && *c.doc == doc)
            .map(|c| c.url.clone());
        match existing {
            Some(url) => Ok(url),
            None => Ok(self
                .store_local(
                    source,
                    ContextKind::ImplicitlyCreated,
                    &Origin::new("service:contexts", None),
                )
                .await?
                .1),
        }
    }

    /// `GET /jsonldContexts`: URLs, or details.
    pub fn list(&self, details: bool, kind: Option<&str>) -> Result<Vec<Value>> {
        let kind = match kind {
            None => None,
            Some(k @ ("Hosted" | "Cached" | "ImplicitlyCreated")) => ContextKind::parse(Some(k)),
            Some(other) => {
                return Err(BrokerError::bad_data(format!(
                    "unknown context kind '{other}'"
                )))
            }
        };
        let map = self.by_url.read();
        let mut items: Vec<&StoredContext> = map
            .values()
            .filter(|c| kind.is_none_or(|k| c.kind == k))
            .collect();
        items.sort_by(|a, b| a.created.cmp(&b.created).then(a.url.cmp(&b.url)));
        let mut out: Vec<Value> = Vec::new();
        if kind.is_none() {
            out.push(if details {
                json!({"URL": CORE_CONTEXT_URL, "localId": "core", "kind": "Cached"})
            } else {
                json!(CORE_CONTEXT_URL)
            });
        }
        out.extend(items.into_iter().map(|c| {
            if details {
                json!({"URL": c.url, "localId": c.id, "kind": c.kind.as_str(), "createdAt": format_datetime(&c.created),
                       "lastUsage": c.usage.last_used(), "numberOfHits": c.usage.hits()})
            } else {
                json!(c.url)
            }
        }));
        Ok(out)
    }

    /// `GET /jsonldContexts/{id}?details=true`: what is known of a context.
    pub fn details(&self, id: &str) -> Result<Value> {
        if id == "core" || is_core_context_url(id) {
            return Ok(json!({"URL": CORE_CONTEXT_URL, "localId": "core", "kind": "Cached"}));
        }
        let c = self
            .find(id)
            .ok_or_else(|| BrokerError::not_found(format!("@context '{id}' not found")))?;
        Ok(
            json!({"URL": c.url, "localId": c.id, "kind": c.kind.as_str(), "createdAt": format_datetime(&c.created),
                  "lastUsage": c.usage.last_used(), "numberOfHits": c.usage.hits()}),
        )
    }

    /// `GET /jsonldContexts/{id}`: the document (by local id or URL).
    pub fn get(&self, id: &str) -> Result<Value> {
        if id == "core" || is_core_context_url(id) {
            return Ok(citybrain_model::context::core_context_document().clone());
        }
        self.find(id)
            .map(|c| (*c.doc).clone())
            .ok_or_else(|| BrokerError::not_found(format!("@context '{id}' not found")))
    }

    fn find(&self, id: &str) -> Option<StoredContext> {
        let map = self.by_url.read();
        map.get(id)
            .or_else(|| map.values().find(|c| c.id == id))
            .cloned()
    }

    /// `DELETE /jsonldContexts/{id}` (with `reload=true`, a cached context is fetched anew).
    pub async fn delete(&self, id: &str, reload: bool, origin: &Origin) -> Result<()> {
        if id == "core" || is_core_context_url(id) {
            // The core context is embedded: it cannot be deleted, and "reloading" it is
            // always current (nothing to fetch).
            return if reload {
                Ok(())
            } else {
                Err(BrokerError::bad_data("the core @context cannot be deleted"))
            };
        }
        let c = match self.find(id) {
            Some(c) => c,
            // Reloading something unknown is a malformed request, not a missing resource.
            None if reload => {
                return Err(BrokerError::bad_data(format!(
                    "@context '{id}' is not a cached context"
                )))
            }
            None => return Err(BrokerError::not_found(format!("@context '{id}' not found"))),
        };
        if reload {
            if c.kind != ContextKind::Cached {
                return Err(BrokerError::bad_data(
                    "reload applies to cached contexts only",
                ));
            }
            let doc = self.fetch(&c.url).await?;
            let mut updated = c.clone();
            updated.doc = doc;
            self.persist(&updated, origin).await?;
            self.by_url.write().insert(c.url.clone(), updated);
        } else {
            if let Some(commit) = self.store.delete_doc("", COLLECTION, &c.id, origin)? {
                commit.wait().await?;
            }
            self.by_url.write().remove(&c.url);
        }
        self.built.write().clear();
        Ok(())
    }
}
