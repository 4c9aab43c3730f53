//! The history side of the engine: direct history writes, the history thread and
//! background checkpoints.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use citybrain_tsdb::{HistOp, Tsdb};

use super::{flush, HistJob, Inner, Tenant};
use crate::error::StoreError;
use crate::traits::{Commit, HistoryStore};
use crate::EmbeddedStore;

impl HistoryStore for EmbeddedStore {
    fn append_history(&self, tenant: &str, ops: Vec<HistOp>) -> Result<Commit, StoreError> {
        if ops.is_empty() {
            return Ok(Commit::done());
        }
        let t = self.tenant_or_create(tenant);
        let guard = t.hist.lock();
        let lsn = self.append_hist(&ops)?;
        for op in &ops {
            self.inner.history.apply(op);
        }
        drop(guard);
        t.written.store(true, Ordering::Release);
        Ok(self.commit(lsn))
    }

    fn reader(&self) -> &dyn citybrain_storage::HistoryReader {
        &*self.inner.history
    }
}

/// The history thread: finishes checkpoints in the order they were begun.
pub(super) fn history_writer(
    history: Arc<Tsdb>,
    jobs: std::sync::mpsc::Receiver<HistJob>,
    busy: Arc<AtomicBool>,
    clock: Arc<dyn citybrain_model::time::Clock>,
) {
    background_priority();
    loop {
        let (job, reply) = match jobs.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(j) => j,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                // No checkpoint for a minute: still apply retention and compaction.
                if let Err(error) = history.maintain(clock.now().timestamp_millis()) {
                    tracing::error!(%error, "history maintenance failed");
                }
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let lsn = job.lsn();
        let points = job.points();
        let started = Instant::now();
        let res = history
            .finish_checkpoint(job, clock.now().timestamp_millis())
            .map_err(|e| e.to_string());
        match &res {
            Ok(()) => tracing::debug!(
                lsn,
                points,
                ms = started.elapsed().as_millis() as u64,
                "history checkpoint written"
            ),
            Err(error) => {
                tracing::error!(%error, lsn, "history checkpoint failed; the log is kept")
            }
        }
        busy.store(false, Ordering::Release);
        if let Some(r) = reply {
            let _ = r.send(res);
        }
    }
}

pub(super) fn history_error(e: citybrain_tsdb::TsdbError) -> StoreError {
    match e {
        citybrain_tsdb::TsdbError::Io(e) => StoreError::Io(e),
        other => StoreError::Corrupt {
            file: "history".into(),
            detail: other.to_string(),
        },
    }
}

/// Starts a background history checkpoint at the current log position.
pub(super) fn history_checkpoint(inner: &Inner, file: &mut File) -> Result<(), StoreError> {
    let tenants: Vec<Arc<Tenant>> = inner.tenants.read().values().cloned().collect();
    let guards: Vec<_> = tenants.iter().map(|t| t.hist.lock()).collect();
    let mut p = inner.pending.lock();
    let lsn = p.last_lsn;
    let buf = std::mem::take(&mut p.buf);
    let changes = std::mem::take(&mut p.changes);
    drop(p);
    let job = inner.history.begin_checkpoint(lsn);
    drop(guards);
    // History files must never hold points the log has not made durable.
    if !flush(inner, file, &buf, lsn, changes) {
        return Err(StoreError::Failed);
    }
    inner.hist_busy.store(true, Ordering::Release);
    if let Some(tx) = inner.hist_tx.lock().as_ref() {
        if tx.send((job, None)).is_err() {
            inner.hist_busy.store(false, Ordering::Release);
        }
    }
    Ok(())
}

/// Lowers the calling thread's scheduling priority (nice 10) for background work that
/// must not take CPU from ingestion and rule evaluation when cores are busy; it still
/// gets the CPU that is idle. Linux applies a nice value per thread. Best effort: a
/// failure only leaves the thread at normal priority.
pub(super) fn background_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        if let Err(error) = rustix::process::setpriority_process(Some(tid), 10) {
            tracing::debug!(%error, "could not lower a background thread's priority");
        }
    }
}
