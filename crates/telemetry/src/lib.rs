//! Typed internal events and metric definitions, after Vector's `internal_events`.
//!
//! - A metric is a [`MetricDef`] (name, help, [`MetricKind`]) defined once, as a
//!   `static`, next to the value it describes. Sources of values implement
//!   [`Metrics::visit`], handing the exporter each definition with its current value:
//!   the exporter never looks a metric up by name, so a misspelt metric cannot exist
//!   (there is no name to misspell at the use site, only a path the compiler checks),
//!   and a counter is exported as a counter, a gauge as a gauge.
//! - An [`InternalEvent`] is something that happened and is both logged and counted:
//!   its `emit` writes the log line and moves the counter, so the two cannot drift
//!   apart.
//!
//! The crate has no dependency beyond `tracing`: every crate may define its metrics and
//! events here without pulling in the exporter (`citybrain-api` encodes them for
//! Prometheus).

use std::sync::atomic::{AtomicU64, Ordering};

/// Whether a metric only goes up (a counter, exported with `_total`) or is a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

/// One metric: its name (without the `citybrain_` prefix), help text and kind.
#[derive(Debug, PartialEq, Eq)]
pub struct MetricDef {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: MetricKind,
}

impl MetricDef {
    pub const fn counter(name: &'static str, help: &'static str) -> MetricDef {
        MetricDef {
            name,
            help,
            kind: MetricKind::Counter,
        }
    }

    pub const fn gauge(name: &'static str, help: &'static str) -> MetricDef {
        MetricDef {
            name,
            help,
            kind: MetricKind::Gauge,
        }
    }
}

/// A count that only goes up, with its definition.
#[derive(Debug)]
pub struct Counter {
    def: &'static MetricDef,
    value: AtomicU64,
}

impl Counter {
    /// A counter at 0 for `def` (which must be a counter's definition).
    pub const fn new(def: &'static MetricDef) -> Counter {
        Counter {
            def,
            value: AtomicU64::new(0),
        }
    }

    pub fn add(&self, n: u64) {
        self.value.fetch_add(n, Ordering::Relaxed);
    }

    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }

    pub fn def(&self) -> &'static MetricDef {
        self.def
    }

    /// Hands this counter to a visitor.
    pub fn visit(&self, out: &mut dyn FnMut(&'static MetricDef, f64)) {
        out(self.def, self.get() as f64);
    }
}

/// A metric's labels: (name, value) pairs.
pub type Labels<'a> = &'a [(&'static str, &'a str)];

/// A source of metric values, read at scrape time.
pub trait Metrics {
    /// Calls `out` once for every unlabelled metric of this source with its value.
    fn visit(&self, out: &mut dyn FnMut(&'static MetricDef, f64));

    /// Calls `out` once for every labelled series of this source (per source, per
    /// reason, ...). The same definition may come with many label sets.
    fn visit_labelled(&self, out: &mut dyn FnMut(&'static MetricDef, Labels<'_>, f64)) {
        let _ = out;
    }
}

/// Something that happened, logged and counted in one place.
pub trait InternalEvent {
    fn emit(self);
}

/// Metrics of the process as a whole (events that belong to no one component).
pub mod process {
    use super::{Counter, MetricDef, Metrics};

    pub static ENCODE_FAILURES_DEF: MetricDef = MetricDef::counter(
        "encode_failures",
        "Values that could not be encoded as JSON (logged; never written as null)",
    );
    pub static ENCODE_FAILURES: Counter = Counter::new(&ENCODE_FAILURES_DEF);

    /// The process-wide counters.
    pub struct Process;

    impl Metrics for Process {
        fn visit(&self, out: &mut dyn FnMut(&'static MetricDef, f64)) {
            ENCODE_FAILURES.visit(out);
        }
    }
}

/// A value that could not be encoded: logged with what it was, and counted.
pub struct EncodeFailed<'a> {
    /// What was being encoded (`"dead letter raw bytes"`, `"incident document"`).
    pub what: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for EncodeFailed<'_> {
    fn emit(self) {
        tracing::error!(what = self.what, error = %self.error, "a value could not be encoded");
        process::ENCODE_FAILURES.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static HITS_DEF: MetricDef = MetricDef::counter("test_hits", "Hits");

    struct Source {
        hits: Counter,
    }

    impl Metrics for Source {
        fn visit(&self, out: &mut dyn FnMut(&'static MetricDef, f64)) {
            self.hits.visit(out);
        }
    }

    #[test]
    fn a_source_hands_over_its_definitions_with_their_values() {
        let s = Source {
            hits: Counter::new(&HITS_DEF),
        };
        s.hits.add(3);
        let mut seen = Vec::new();
        s.visit(&mut |d, v| seen.push((d.name, d.kind, v)));
        assert_eq!(seen, vec![("test_hits", MetricKind::Counter, 3.0)]);
    }

    #[test]
    fn an_encode_failure_is_counted() {
        let before = process::ENCODE_FAILURES.get();
        EncodeFailed {
            what: "test",
            error: &"boom",
        }
        .emit();
        assert_eq!(process::ENCODE_FAILURES.get(), before + 1);
    }
}
