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
