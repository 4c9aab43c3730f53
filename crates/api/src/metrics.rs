//! Prometheus metrics: HTTP requests and latencies by route, and, read at scrape time,
//! the store's log counters and notification delivery counters.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use citybrain_broker::Broker;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub source: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub source: String,
    pub reason: String,
}

type FGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Ingestion metrics, refreshed from the pipeline's counters at each scrape.
/// Labels of the per-department service figures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DepartmentLabels {
    pub tenant: String,
    pub department: String,
}

/// Service figures per department (refreshed at each scrape).
struct SlaFamilies {
    mtta: Family<DepartmentLabels, FGauge>,
    mttr: Family<DepartmentLabels, FGauge>,
    ack_compliance: Family<DepartmentLabels, FGauge>,
    resolve_compliance: Family<DepartmentLabels, FGauge>,
    open: Family<DepartmentLabels, FGauge>,
    breaches: Family<DepartmentLabels, FGauge>,
}

struct IngestFamilies {
    payloads: Family<SourceLabels, FGauge>,
    bytes: Family<SourceLabels, FGauge>,
    records: Family<OutcomeLabels, FGauge>,
    rejected: Family<ReasonLabels, FGauge>,
    letters: Family<ReasonLabels, FGauge>,
    letter_bytes: FGauge,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ])
}

/// Metrics of the HTTP layer plus gauges refreshed at each scrape.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    latency: Family<LatencyLabels, Histogram, fn() -> Histogram>,
    gauges: Vec<(&'static str, Gauge<f64, std::sync::atomic::AtomicU64>)>,
    ingest: IngestFamilies,
    sla: SlaFamilies,
}

const SCRAPED: [(&str, &str); 40] = [
    (
        "store_log_records",
        "Records written to the write-ahead log",
    ),
    ("store_log_batches", "Group-commit batches (one fsync each)"),
    ("store_log_bytes", "Bytes written to the write-ahead log"),
    ("store_fsync_seconds", "Time spent in fsync"),
    ("store_snapshots", "Snapshots written"),
    ("store_durable_lsn", "Highest durable log sequence number"),
    ("store_entities", "Entities held, all tenants"),
    (
        "history_series",
        "History series (attribute instances over time)",
    ),
    (
        "history_head_points",
        "History points not yet in a segment file",
    ),
    ("history_files", "History segment files"),
    ("history_disk_bytes", "Bytes of history segment files"),
    (
        "history_points_written",
        "History points written since start",
    ),
    ("history_checkpoints", "History checkpoints written"),
    ("history_compactions", "History compactions"),
    (
        "history_corrupt_blocks",
        "History blocks found damaged (skipped, reported)",
    ),
    (
        "history_retention_dropped",
        "History points removed or rolled up by retention",
    ),
    ("changefeed_subscribers", "Consumers of the change feed"),
    (
        "rules_observations",
        "Observations evaluated by the rule engine",
    ),
    ("rules_events_raised", "Rule events: conditions raised"),
    (
        "incidents_sla_breaches_total",
        "SLA breaches found since start, all tenants",
    ),
    ("rules_events_cleared", "Rule events: conditions cleared"),
    (
        "rules_events_momentary",
        "Rule events: momentary (geofence crossings, sequences)",
    ),
    ("subscriptions_active", "Subscriptions held"),
    ("notifications_sent", "Notifications delivered"),
    (
        "notifications_failed",
        "Notifications that failed after retries",
    ),
    (
        "notifications_dropped",
        "Notifications dropped because an endpoint queue was full",
    ),
    ("notifications_retries", "Notification retries"),
    (
        "notifications_queued",
        "Notifications waiting in endpoint queues",
    ),
    (
        "notification_latency_seconds_sum",
        "Sum of enqueue-to-delivery latency",
    ),
    (
        "notification_latency_seconds_count",
        "Deliveries measured for latency",
    ),
    ("mqtt_connections", "MQTT clients connected now"),
    (
        "mqtt_connections_total",
        "MQTT connections accepted since start",
    ),
    (
        "mqtt_refused",
        "MQTT connections refused (credentials, limits)",
    ),
    ("mqtt_messages_in", "MQTT PUBLISH packets received"),
    ("mqtt_bytes_in", "MQTT payload bytes received"),
    (
        "mqtt_acks",
        "MQTT PUBACK/PUBREC sent after the durable write",
    ),
    (
        "mqtt_denied",
        "MQTT publishes or subscriptions refused by ACL",
    ),
    ("mqtt_delivered", "MQTT messages queued to subscribers"),
    (
        "mqtt_delivery_dropped",
        "MQTT messages dropped because a subscriber queue was full",
    ),
    (
        "mqtt_protocol_errors",
        "MQTT connections closed for protocol errors",
    ),
];

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("citybrain");
        let requests = Family::<RouteLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        let latency = Family::<LatencyLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            latency.clone(),
        );
        let mut gauges = Vec::new();
        for (name, help) in SCRAPED {
            let g: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
            registry.register(name, help, g.clone());
            gauges.push((name, g));
        }
        let ingest = IngestFamilies {
            payloads: Family::default(),
            bytes: Family::default(),
            records: Family::default(),
            rejected: Family::default(),
            letters: Family::default(),
            letter_bytes: FGauge::default(),
        };
        registry.register(
            "ingest_payloads",
            "Payloads received per ingest source (HTTP, MQTT, files)",
            ingest.payloads.clone(),
        );
        registry.register(
            "ingest_bytes",
            "Payload bytes received per ingest source",
            ingest.bytes.clone(),
        );
        registry.register(
            "ingest_records",
            "Records per ingest source by outcome (read, written, filtered, reduced)",
            ingest.records.clone(),
        );
        registry.register(
            "ingest_rejected",
            "Payloads or records sent to the dead letters, by source and reason",
            ingest.rejected.clone(),
        );
        registry.register(
            "deadletters_stored",
            "Dead letters held (not yet replayed or deleted), by source and reason",
            ingest.letters.clone(),
        );
        registry.register(
            "deadletters_file_bytes",
            "Bytes of the dead-letter log",
            ingest.letter_bytes.clone(),
        );
        let sla = SlaFamilies {
            mtta: Family::default(),
            mttr: Family::default(),
            ack_compliance: Family::default(),
            resolve_compliance: Family::default(),
            open: Family::default(),
            breaches: Family::default(),
        };
        for (name, help, f) in [
            (
                "incidents_mtta_seconds",
                "Mean time to acknowledge incidents, by department",
                &sla.mtta,
            ),
            (
                "incidents_mttr_seconds",
                "Mean time to resolve incidents, by department",
                &sla.mttr,
            ),
            (
                "incidents_ack_sla_compliance_ratio",
                "Share of incidents acknowledged within their SLA target, by department",
                &sla.ack_compliance,
            ),
            (
                "incidents_resolve_sla_compliance_ratio",
                "Share of incidents resolved within their SLA target, by department",
                &sla.resolve_compliance,
            ),
            (
                "incidents_open",
                "Incidents being handled, by department",
                &sla.open,
            ),
            (
                "incidents_sla_breaches",
                "SLA breaches, by department",
                &sla.breaches,
            ),
        ] {
            registry.register(name, help, f.clone());
        }
        Arc::new(Metrics {
            sla,
            registry,
            requests,
            latency,
            gauges,
            ingest,
        })
    }

    fn set(&self, name: &str, v: f64) {
        if let Some((_, g)) = self.gauges.iter().find(|(n, _)| *n == name) {
            g.set(v);
        }
    }

    fn refresh_ingest(&self, ing: &citybrain_ingest::Ingest) {
        let f = &self.ingest;
        for (source, st) in ing.stats.snapshot() {
            let sl = SourceLabels {
                source: source.clone(),
            };
            f.payloads.get_or_create(&sl).set(st.payloads as f64);
            f.bytes.get_or_create(&sl).set(st.bytes as f64);
            for (outcome, n) in [
                ("read", st.records),
                ("written", st.written),
                ("filtered", st.filtered),
                ("reduced", st.reduced),
            ] {
                f.records
                    .get_or_create(&OutcomeLabels {
                        source: source.clone(),
                        outcome: outcome.into(),
                    })
                    .set(n as f64);
            }
            for (reason, n) in st.rejected {
                f.rejected
                    .get_or_create(&ReasonLabels {
                        source: source.clone(),
                        reason: reason.as_str().into(),
                    })
                    .set(n as f64);
            }
        }
        // Stored letters: reset every known series first, so replayed ones drop to 0.
        f.letters.clear();
        for ((source, reason), n) in ing.dead.counts() {
            f.letters
                .get_or_create(&ReasonLabels {
                    source,
                    reason: reason.as_str().into(),
                })
                .set(n as f64);
        }
        f.letter_bytes.set(ing.dead.file_bytes() as f64);
        use citybrain_ingest::mqtt::MqttStats as M;
        let m = &ing.mqtt;
        for (name, c) in [
            ("mqtt_connections", &m.connections),
            ("mqtt_connections_total", &m.connections_total),
            ("mqtt_refused", &m.refused),
            ("mqtt_messages_in", &m.messages_in),
            ("mqtt_bytes_in", &m.bytes_in),
            ("mqtt_acks", &m.acks),
            ("mqtt_denied", &m.denied),
            ("mqtt_delivered", &m.delivered),
            ("mqtt_delivery_dropped", &m.delivery_dropped),
            ("mqtt_protocol_errors", &m.protocol_errors),
        ] {
            self.set(name, M::get(c) as f64);
        }
    }

    /// Refreshes the scraped gauges and encodes everything.
    pub fn render(
        &self,
        broker: &Broker,
        ingest: Option<&citybrain_ingest::Ingest>,
        hub: Option<&citybrain_hub::Hub>,
        sla: &[(String, Vec<citybrain_hub::sla::DepartmentReport>)],
    ) -> String {
        if let Some(ing) = ingest {
            self.refresh_ingest(ing);
        }
        for (tenant, reports) in sla {
            for r in reports {
                let l = DepartmentLabels {
                    tenant: tenant.clone(),
                    department: r.department.clone(),
                };
                let f = &self.sla;
                f.open.get_or_create(&l).set(r.open as f64);
                f.breaches.get_or_create(&l).set(r.breaches as f64);
                if let Some(v) = r.mtta_s {
                    f.mtta.get_or_create(&l).set(v);
                }
                if let Some(v) = r.mttr_s {
                    f.mttr.get_or_create(&l).set(v);
                }
                if let Some(v) = r.ack_compliance {
                    f.ack_compliance.get_or_create(&l).set(v);
                }
                if let Some(v) = r.resolve_compliance {
                    f.resolve_compliance.get_or_create(&l).set(v);
                }
            }
        }
        if let Some(h) = hub {
            let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
            self.set("incidents_sla_breaches_total", get(&h.stats.sla_breaches));
            self.set("rules_observations", get(&h.stats.observations));
            self.set("rules_events_raised", get(&h.stats.events_raised));
            self.set("rules_events_cleared", get(&h.stats.events_cleared));
            self.set("rules_events_momentary", get(&h.stats.events_momentary));
        }
        let s = broker.storage_stats();
        self.set("store_log_records", s.records as f64);
        self.set("store_log_batches", s.batches as f64);
        self.set("store_log_bytes", s.bytes as f64);
        self.set("store_fsync_seconds", s.fsync_micros_total as f64 / 1e6);
        self.set("store_snapshots", s.snapshots as f64);
        self.set("store_durable_lsn", s.durable_lsn as f64);
        self.set("store_entities", s.entities as f64);
        if let Some(t) = broker.history_stats() {
            self.set("history_series", t.series as f64);
            self.set("history_head_points", t.head_points as f64);
            self.set("history_files", t.files as f64);
            self.set("history_disk_bytes", t.disk_bytes as f64);
            self.set("history_points_written", t.points_written as f64);
            self.set("history_checkpoints", t.checkpoints as f64);
            self.set("history_compactions", t.compactions as f64);
            self.set("history_corrupt_blocks", t.corrupt_blocks as f64);
            self.set("history_retention_dropped", t.retention_dropped as f64);
        }
        self.set("changefeed_subscribers", s.feed_subscribers as f64);
        self.set(
            "subscriptions_active",
            broker.subscriptions.active_count() as f64,
        );
        let d = broker.subscriptions.dispatch_stats();
        self.set("notifications_sent", d.sent.load(Ordering::Relaxed) as f64);
        self.set(
            "notifications_failed",
            d.failed.load(Ordering::Relaxed) as f64,
        );
        self.set(
            "notifications_dropped",
            d.dropped.load(Ordering::Relaxed) as f64,
        );
        self.set(
            "notifications_retries",
            d.retries.load(Ordering::Relaxed) as f64,
        );
        self.set(
            "notifications_queued",
            d.queued.load(Ordering::Relaxed) as f64,
        );
        self.set(
            "notification_latency_seconds_sum",
            d.latency_micros_sum.load(Ordering::Relaxed) as f64 / 1e6,
        );
        self.set(
            "notification_latency_seconds_count",
            d.latency_count.load(Ordering::Relaxed) as f64,
        );
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Middleware recording each request.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let secs = start.elapsed().as_secs_f64();
    metrics
        .requests
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
            status: resp.status().as_u16(),
        })
        .inc();
    metrics
        .latency
        .get_or_create(&LatencyLabels { method, route })
        .observe(secs);
    resp
}
