//! Prometheus metrics: HTTP requests and latencies by route (recorded as they happen),
//! and, read at scrape time, every component's metrics through
//! [`citybrain_telemetry::Metrics`]: each metric is defined once, next to what it
//! counts, as a counter or a gauge; this module only encodes what the components hand
//! it, so it holds no list of names to keep in step.

use std::sync::Arc;

use citybrain_telemetry::{Labels, MetricDef, MetricKind, Metrics as _};
use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
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

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ])
}

/// One scraped series: its definition, labels and value.
type Series = (&'static MetricDef, Vec<(&'static str, String)>, f64);

/// The values read at the last scrape, encoded by the registry as a collector.
#[derive(Debug, Default)]
struct Scraped {
    series: Mutex<Vec<Series>>,
}

#[derive(Debug)]
struct ScrapedCollector(Arc<Scraped>);

impl Collector for ScrapedCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let series = self.0.series.lock();
        // Series of one definition are encoded under one descriptor, in the order the
        // definitions first appeared.
        let mut order: Vec<&'static MetricDef> = Vec::new();
        for (def, _, _) in series.iter() {
            if !order.iter().any(|d| std::ptr::eq(*d, *def)) {
                order.push(def);
            }
        }
        for def in order {
            let ty = match def.kind {
                MetricKind::Counter => MetricType::Counter,
                MetricKind::Gauge => MetricType::Gauge,
            };
            let mut m = encoder.encode_descriptor(def.name, def.help, None, ty)?;
            let of_def: Vec<&Series> = series
                .iter()
                .filter(|(d, _, _)| std::ptr::eq(*d, def))
                .collect();
            if let [(_, labels, v)] = of_def.as_slice() {
                if labels.is_empty() {
                    encode_value(def.kind, *v, m)?;
                    continue;
                }
            }
            for (_, labels, v) in of_def {
                let labels: Vec<(&str, &str)> =
                    labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                encode_value(def.kind, *v, m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

fn encode_value(
    kind: MetricKind,
    v: f64,
    m: prometheus_client::encoding::MetricEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    match kind {
        MetricKind::Counter => ConstCounter::new(v).encode(m),
        MetricKind::Gauge => ConstGauge::new(v).encode(m),
    }
}

/// Metrics of the HTTP layer plus the components' metrics, read at each scrape.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    latency: Family<LatencyLabels, Histogram, fn() -> Histogram>,
    scraped: Arc<Scraped>,
}

/// Where the scraped series go.
#[derive(Default)]
struct Sink(Vec<Series>);

impl Sink {
    fn plain(&mut self) -> impl FnMut(&'static MetricDef, f64) + '_ {
        |d, v| self.0.push((d, Vec::new(), v))
    }
    fn labelled(&mut self) -> impl FnMut(&'static MetricDef, Labels<'_>, f64) + '_ {
        |d, l, v| {
            let labels = l.iter().map(|(k, v)| (*k, v.to_string())).collect();
            self.0.push((d, labels, v))
        }
    }
}

/// The subscriptions held (a level the broker knows, not a counter of a component).
static SUBSCRIPTIONS_ACTIVE: MetricDef =
    MetricDef::gauge("subscriptions_active", "Subscriptions held");

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
        let scraped = Arc::new(Scraped::default());
        registry.register_collector(Box::new(ScrapedCollector(scraped.clone())));
        Arc::new(Metrics {
            registry,
            requests,
            latency,
            scraped,
        })
    }

    /// Reads every component's metrics and encodes everything.
    pub fn render(
        &self,
        app: &crate::AppParts,
        sla: &[(String, Vec<citybrain_hub::sla::DepartmentReport>)],
    ) -> String {
        let broker = &*app.broker;
        let (ingest, hub, auth) = (
            app.ingest.as_deref(),
            app.hub.as_deref(),
            app.auth.as_deref(),
        );
        let (scenarios, federation) = (app.scenarios.as_deref(), &app.federation);
        let mut sink = Sink::default();
        if let Some(s) = scenarios {
            s.visit_metrics(&mut sink.plain());
        }
        citybrain_telemetry::process::Process.visit(&mut sink.plain());
        broker.storage_stats().visit(&mut sink.plain());
        if let Some(h) = broker.history_stats() {
            h.visit(&mut sink.plain());
        }
        sink.0.push((
            &SUBSCRIPTIONS_ACTIVE,
            Vec::new(),
            broker.subscriptions.active_count() as f64,
        ));
        broker
            .subscriptions
            .dispatch_stats()
            .visit(&mut sink.plain());
        broker.subscriptions.live_stats().visit(&mut sink.plain());
        federation.stats.visit(sink.plain());
        if let Some(h) = hub {
            h.stats.visit(&mut sink.plain());
        }
        if let Some(ing) = ingest {
            ing.stats.visit_labelled(&mut sink.labelled());
            ing.dead.visit(&mut sink.plain());
            ing.dead.visit_labelled(&mut sink.labelled());
            ing.mqtt.visit(&mut sink.plain());
        }
        broker.egress.visit(&mut sink.plain());
        if let Some(a) = auth {
            a.stats.visit(&mut sink.plain());
            a.stats.visit_labelled(&mut sink.labelled());
        }
        department_series(sla, &mut sink.labelled());
        *self.scraped.series.lock() = sink.0;
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "metrics could not be encoded");
            out.clear();
        }
        out
    }
}

impl Metrics {
    /// Records one answered request: its route, status and latency.
    pub(crate) fn record(&self, method: String, route: String, status: u16, secs: f64) {
        self.requests
            .get_or_create(&RouteLabels {
                method: method.clone(),
                route: route.clone(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&LatencyLabels { method, route })
            .observe(secs);
    }
}

/// Service figures per department, as labelled gauges.
fn department_series(
    sla: &[(String, Vec<citybrain_hub::sla::DepartmentReport>)],
    out: &mut dyn FnMut(&'static MetricDef, Labels<'_>, f64),
) {
    use citybrain_hub::metric as m;
    for (tenant, reports) in sla {
        for r in reports {
            let labels = [
                ("tenant", tenant.as_str()),
                ("department", r.department.as_str()),
            ];
            out(&m::OPEN, &labels, r.open as f64);
            out(&m::DEPARTMENT_BREACHES, &labels, r.breaches as f64);
            for (def, v) in [
                (&m::MTTA, r.mtta_s),
                (&m::MTTR, r.mttr_s),
                (&m::ACK_COMPLIANCE, r.ack_compliance),
                (&m::RESOLVE_COMPLIANCE, r.resolve_compliance),
            ] {
                if let Some(v) = v {
                    out(def, &labels, v);
                }
            }
        }
    }
}
