//! Notification delivery over HTTP: one queue and one worker per endpoint, so that a dead
//! or slow endpoint only delays its own notifications; retries with exponential backoff.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use citybrain_model::time::Clock;
use citybrain_telemetry::InternalEvent;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc;

use super::manager::SubEntry;

/// Delivery settings.
#[derive(Debug, Clone)]
pub struct DispatchSettings {
    pub timeout: Duration,
    /// Attempts per notification (first try included).
    pub attempts: u32,
    pub backoff_start: Duration,
    /// Notifications waiting per endpoint before new ones are dropped (and counted).
    pub queue_capacity: usize,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            attempts: 3,
            backoff_start: Duration::from_millis(200),
            queue_capacity: 10_000,
        }
    }
}

/// Sends notifications to `mqtt://host[:port]/topic` endpoints (implemented by the
/// ingestion crate, which owns MQTT). The payload follows the NGSI-LD MQTT binding:
/// `{"metadata": {headers}, "body": notification}`.
pub trait MqttTransport: Send + Sync {
    fn publish(
        &self,
        uri: &str,
        payload: Vec<u8>,
        qos: u8,
    ) -> futures::future::BoxFuture<'_, Result<(), String>>;
}

/// One notification to deliver.
pub(crate) struct Job {
    pub entry: Arc<SubEntry>,
    pub body: Value,
    pub enqueued: std::time::Instant,
}

/// Notification metrics, each defined once (see `citybrain-telemetry`).
pub mod metric {
    use citybrain_telemetry::MetricDef;
    pub static SENT: MetricDef =
        MetricDef::counter("notifications_sent", "Notifications delivered");
    pub static FAILED: MetricDef = MetricDef::counter(
        "notifications_failed",
        "Notifications that failed after retries",
    );
    pub static DROPPED: MetricDef = MetricDef::counter(
        "notifications_dropped",
        "Notifications dropped because an endpoint queue was full",
    );
    pub static RETRIES: MetricDef =
        MetricDef::counter("notifications_retries", "Notification retries");
    pub static QUEUED: MetricDef = MetricDef::gauge(
        "notifications_queued",
        "Notifications waiting in endpoint queues",
    );
    pub static LATENCY_SUM: MetricDef = MetricDef::counter(
        "notification_delivery_seconds",
        "Enqueue-to-delivery latency of delivered notifications, summed (mean: divide by notifications_measured)",
    );
    pub static LATENCY_COUNT: MetricDef =
        MetricDef::counter("notifications_measured", "Deliveries measured for latency");
}

impl citybrain_telemetry::Metrics for DispatchStats {
    fn visit(&self, out: &mut dyn FnMut(&'static citybrain_telemetry::MetricDef, f64)) {
        use std::sync::atomic::Ordering::Relaxed;
        out(&metric::SENT, self.sent.load(Relaxed) as f64);
        out(&metric::FAILED, self.failed.load(Relaxed) as f64);
        out(&metric::DROPPED, self.dropped.load(Relaxed) as f64);
        out(&metric::RETRIES, self.retries.load(Relaxed) as f64);
        out(&metric::QUEUED, self.queued.load(Relaxed) as f64);
        out(
            &metric::LATENCY_SUM,
            self.latency_micros_sum.load(Relaxed) as f64 / 1e6,
        );
        out(
            &metric::LATENCY_COUNT,
            self.latency_count.load(Relaxed) as f64,
        );
    }
}

/// Counters exported on `/metrics`.
#[derive(Debug, Default)]
pub struct DispatchStats {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    pub retries: AtomicU64,
    pub queued: AtomicI64,
    /// Sum and count of enqueue-to-delivered latency, in microseconds.
    pub latency_micros_sum: AtomicU64,
    pub latency_count: AtomicU64,
    /// Drops and give-ups are logged at most once a second (a dead endpoint under
    /// load would otherwise write a log line per notification): the second of the
    /// last line, and how many went unlogged since.
    quiet_until: AtomicU64,
    unlogged: AtomicU64,
}

impl DispatchStats {
    /// Whether to log an event now; answers the events folded into this line.
    fn log_now(&self) -> Option<u64> {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let now = EPOCH
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_secs()
            + 1;
        let last = self.quiet_until.load(Ordering::Relaxed);
        if now > last
            && self
                .quiet_until
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.unlogged.swap(0, Ordering::AcqRel) + 1)
        } else {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

pub(crate) struct Dispatcher {
    /// `None` when the guarded client could not be built: then no HTTP notification
    /// goes out.
    http: Option<reqwest::Client>,
    egress: Arc<citybrain_egress::EgressPolicy>,
    settings: DispatchSettings,
    queues: Mutex<HashMap<String, mpsc::Sender<Job>>>,
    pub stats: Arc<DispatchStats>,
    clock: Arc<dyn Clock>,
    mqtt: parking_lot::RwLock<Option<Arc<dyn MqttTransport>>>,
}

impl Dispatcher {
    pub fn new(
        settings: DispatchSettings,
        clock: Arc<dyn Clock>,
        egress: Arc<citybrain_egress::EgressPolicy>,
    ) -> Arc<Self> {
        let http = egress
            .client(
                reqwest::Client::builder()
                    .timeout(settings.timeout)
                    .connect_timeout(settings.timeout)
                    .pool_max_idle_per_host(8)
                    // Receivers (and the ETSI suite's) read header names case-sensitively.
                    .http1_title_case_headers(),
            )
            .inspect_err(|e| tracing::error!(error = %e, "HTTP notifications cannot be sent"))
            .ok();
        Arc::new(Self {
            http,
            egress,
            settings,
            queues: Mutex::new(HashMap::new()),
            stats: Arc::new(DispatchStats::default()),
            clock,
            mqtt: parking_lot::RwLock::new(None),
        })
    }

    pub fn set_mqtt(&self, t: Arc<dyn MqttTransport>) {
        *self.mqtt.write() = Some(t);
    }

    /// One attempt over MQTT: the body wrapped with its metadata.
    async fn send_mqtt(
        &self,
        uri: &str,
        qos: u8,
        metadata: serde_json::Map<String, Value>,
        body: &Value,
    ) -> Result<(), String> {
        let transport = self
            .mqtt
            .read()
            .clone()
            .ok_or_else(|| "MQTT notifications are not enabled on this server".to_string())?;
        let payload = serde_json::to_vec(&serde_json::json!({"metadata": metadata, "body": body}))
            .map_err(|e| e.to_string())?;
        transport.publish(uri, payload, qos).await
    }

    fn delivered(&self, job: &Job) {
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        let micros = job.enqueued.elapsed().as_micros() as u64;
        self.stats
            .latency_micros_sum
            .fetch_add(micros, Ordering::Relaxed);
        self.stats.latency_count.fetch_add(1, Ordering::Relaxed);
        job.entry.record_success(self.clock.now());
    }

    /// Queues a notification for its endpoint; never blocks.
    pub fn enqueue(self: &Arc<Self>, job: Job) {
        let uri = job.entry.sub.read().endpoint.uri.clone();
        let mut queues = self.queues.lock();
        let tx = queues.entry(uri.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(self.settings.queue_capacity);
            let me = self.clone();
            tokio::spawn(async move { me.worker(uri, rx).await });
            tx
        });
        match tx.try_send(job) {
            Ok(()) => {
                self.stats.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(job)) => {
                job.entry.record_failure(self.clock.now());
                NotificationDropped {
                    stats: &self.stats,
                    endpoint: &job.entry.sub.read().endpoint.uri,
                    why: "its endpoint's queue is full",
                }
                .emit();
            }
            Err(mpsc::error::TrySendError::Closed(job)) => {
                NotificationDropped {
                    stats: &self.stats,
                    endpoint: &job.entry.sub.read().endpoint.uri,
                    why: "its endpoint's worker has stopped",
                }
                .emit();
            }
        }
    }

    async fn worker(self: Arc<Self>, uri: String, mut rx: mpsc::Receiver<Job>) {
        const IDLE: Duration = Duration::from_secs(300);
        loop {
            let job = match tokio::time::timeout(IDLE, rx.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(_) => {
                    // Idle: retire this worker unless something arrived meanwhile.
                    let mut queues = self.queues.lock();
                    if rx.is_empty() {
                        queues.remove(&uri);
                        return;
                    }
                    continue;
                }
            };
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            self.deliver(job).await;
        }
    }

    /// A notification that cannot be sent at all (no attempt is made): counted, logged
    /// and recorded as the subscription's failure.
    fn undeliverable(&self, job: &Job, uri: &str) {
        NotificationFailed {
            stats: &self.stats,
            endpoint: uri,
        }
        .emit();
        job.entry.record_failure(self.clock.now());
    }

    async fn deliver(&self, job: Job) {
        let (mqtt_qos, is_mqtt) = {
            let s = job.entry.sub.read();
            (s.endpoint.mqtt_qos(), s.endpoint.is_mqtt())
        };
        let (uri, accept, headers, tenant, link) = {
            let s = job.entry.sub.read();
            let link = if s.endpoint.accept == "application/ld+json" {
                None
            } else {
                Some(super::manager::link_header(&s.notify_ld))
            };
            (
                s.endpoint.uri.clone(),
                s.endpoint.accept.clone(),
                s.endpoint.receiver_info.clone(),
                s.tenant.clone(),
                link,
            )
        };
        let body = match serde_json::to_vec(&job.body) {
            Ok(b) => b,
            Err(error) => {
                citybrain_telemetry::EncodeFailed {
                    what: "notification",
                    error: &error,
                }
                .emit();
                self.undeliverable(&job, &uri);
                return;
            }
        };
        let content_type = if accept == "application/ld+json" {
            "application/ld+json"
        } else {
            "application/json"
        };
        // A literal address is checked here (the client's resolver sees only names).
        if self.egress.check_url(&uri).is_err() {
            self.undeliverable(&job, &uri);
            return;
        }
        job.entry.record_attempt();
        let mut delay = self.settings.backoff_start;
        for attempt in 1..=self.settings.attempts {
            if is_mqtt {
                let mut meta = serde_json::Map::new();
                meta.insert("Content-Type".into(), Value::String(content_type.into()));
                if let Some(l) = &link {
                    meta.insert("Link".into(), Value::String(l.clone()));
                }
                if !tenant.is_empty() {
                    meta.insert("NGSILD-Tenant".into(), Value::String(tenant.clone()));
                }
                for (k, v) in &headers {
                    meta.insert(k.clone(), Value::String(v.clone()));
                }
                match self.send_mqtt(&uri, mqtt_qos, meta, &job.body).await {
                    Ok(()) => {
                        self.delivered(&job);
                        return;
                    }
                    Err(error) => {
                        tracing::debug!(endpoint = %uri, %error, attempt, "MQTT notification failed");
                    }
                }
                if attempt < self.settings.attempts {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                }
                continue;
            }
            let Some(http) = &self.http else {
                self.undeliverable(&job, &uri);
                return;
            };
            let mut req = http
                .post(&uri)
                .header("Content-Type", content_type)
                .body(body.clone());
            if let Some(l) = &link {
                req = req.header("Link", l.as_str());
            }
            if !tenant.is_empty() {
                req = req.header("NGSILD-Tenant", tenant.as_str());
            }
            for (k, v) in &headers {
                req = req.header(k.as_str(), v.as_str());
            }
            let result = req.send().await;
            let now = self.clock.now();
            match result {
                Ok(resp) if resp.status().is_success() => {
                    let _ = now;
                    self.delivered(&job);
                    return;
                }
                Ok(resp) => {
                    tracing::debug!(endpoint = %uri, status = %resp.status(), attempt, "notification refused");
                }
                Err(error) => {
                    tracing::debug!(endpoint = %uri, %error, attempt, "notification failed");
                }
            }
            if attempt < self.settings.attempts {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
        }
        NotificationFailed {
            stats: &self.stats,
            endpoint: &uri,
        }
        .emit();
        job.entry.record_failure(self.clock.now());
    }
}

/// A notification not queued for its endpoint: logged and counted in one place.
struct NotificationDropped<'a> {
    stats: &'a DispatchStats,
    endpoint: &'a str,
    why: &'static str,
}

impl InternalEvent for NotificationDropped<'_> {
    fn emit(self) {
        if let Some(events) = self.stats.log_now() {
            tracing::warn!(
                endpoint = self.endpoint,
                why = self.why,
                events,
                "notification dropped (events: dropped or given up since the last such line)"
            );
        }
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// A notification given up on (after its retries, or not encodable).
struct NotificationFailed<'a> {
    stats: &'a DispatchStats,
    endpoint: &'a str,
}

impl InternalEvent for NotificationFailed<'_> {
    fn emit(self) {
        if let Some(events) = self.stats.log_now() {
            tracing::warn!(
                endpoint = self.endpoint,
                events,
                "notification given up (retries spent, or not encodable; events: dropped or given up since the last such line)"
            );
        }
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
    }
}
