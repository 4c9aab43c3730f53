//! Counters per source, read by the `/metrics` endpoint at scrape time.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use crate::reject::Reason;

/// Counters of one source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStats {
    pub payloads: u64,
    pub bytes: u64,
    pub records: u64,
    pub written: u64,
    pub filtered: u64,
    pub reduced: u64,
    pub rejected: BTreeMap<Reason, u64>,
}

/// Ingestion metrics, each defined once (see `citybrain-telemetry`).
pub mod metric {
    use citybrain_telemetry::MetricDef;
    pub static PAYLOADS: MetricDef = MetricDef::counter(
        "ingest_payloads",
        "Payloads received per ingest source (HTTP, MQTT, files)",
    );
    pub static BYTES: MetricDef =
        MetricDef::counter("ingest_bytes", "Payload bytes received per ingest source");
    pub static RECORDS: MetricDef = MetricDef::counter(
        "ingest_records",
        "Records per ingest source by outcome (read, written, filtered, reduced)",
    );
    pub static REJECTED: MetricDef = MetricDef::counter(
        "ingest_rejected",
        "Payloads or records sent to the dead letters, by source and reason",
    );
    pub static LETTERS: MetricDef = MetricDef::gauge(
        "deadletters_stored",
        "Dead letters held (not yet replayed or deleted), by source and reason",
    );
    pub static LETTER_BYTES: MetricDef =
        MetricDef::gauge("deadletters_file_bytes", "Bytes of the dead-letter log");
    pub static LETTERS_EXPIRED: MetricDef = MetricDef::counter(
        "deadletters_expired",
        "Dead letters dropped by retention (count, size or age; oldest first)",
    );
}

impl citybrain_telemetry::Metrics for Stats {
    fn visit(&self, _out: &mut dyn FnMut(&'static citybrain_telemetry::MetricDef, f64)) {}

    fn visit_labelled(
        &self,
        out: &mut dyn FnMut(
            &'static citybrain_telemetry::MetricDef,
            citybrain_telemetry::Labels<'_>,
            f64,
        ),
    ) {
        for (source, st) in self.snapshot() {
            let s = source.as_str();
            out(&metric::PAYLOADS, &[("source", s)], st.payloads as f64);
            out(&metric::BYTES, &[("source", s)], st.bytes as f64);
            for (outcome, n) in [
                ("read", st.records),
                ("written", st.written),
                ("filtered", st.filtered),
                ("reduced", st.reduced),
            ] {
                out(
                    &metric::RECORDS,
                    &[("source", s), ("outcome", outcome)],
                    n as f64,
                );
            }
            for (reason, n) in &st.rejected {
                out(
                    &metric::REJECTED,
                    &[("source", s), ("reason", reason.as_str())],
                    *n as f64,
                );
            }
        }
    }
}

/// All sources' counters (a mutex per update is cheap next to a durable write).
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<BTreeMap<String, SourceStats>>,
}

impl Stats {
    fn with(&self, source: &str, f: impl FnOnce(&mut SourceStats)) {
        let mut g = self.inner.lock();
        match g.get_mut(source) {
            Some(s) => f(s),
            None => f(g.entry(source.to_string()).or_default()),
        }
    }

    pub fn payload(&self, source: &str, bytes: usize) {
        self.with(source, |s| {
            s.payloads += 1;
            s.bytes += bytes as u64;
        });
    }

    pub fn records(&self, source: &str, read: u64, filtered: u64, reduced: u64) {
        self.with(source, |s| {
            s.records += read;
            s.filtered += filtered;
            s.reduced += reduced;
        });
    }

    pub fn written(&self, source: &str, n: u64) {
        self.with(source, |s| s.written += n);
    }

    pub fn rejected(&self, source: &str, r: Reason) {
        self.with(source, |s| *s.rejected.entry(r).or_insert(0) += 1);
    }

    pub fn snapshot(&self) -> BTreeMap<String, SourceStats> {
        self.inner.lock().clone()
    }
}

/// A payload or record kept as a dead letter: logged (a payload at `warn`, a record at
/// `debug`: a bad file can hold millions) and counted per source and reason, in one
/// place.
pub(crate) struct DeadLettered<'a> {
    pub stats: &'a Stats,
    pub source: &'a str,
    pub letter: &'a crate::deadletter::Letter,
}

impl citybrain_telemetry::InternalEvent for DeadLettered<'_> {
    fn emit(self) {
        let l = self.letter;
        match l.level {
            crate::deadletter::Level::Payload => tracing::warn!(
                source = self.source,
                reason = %l.reason,
                message = %l.message,
                letter = l.id,
                "payload dead-lettered"
            ),
            crate::deadletter::Level::Record => tracing::debug!(
                source = self.source,
                reason = %l.reason,
                message = %l.message,
                letter = l.id,
                "record dead-lettered"
            ),
        }
        self.stats.rejected(self.source, l.reason);
    }
}
