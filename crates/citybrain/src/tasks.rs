//! The server's background tasks, supervised: each runs under a name; a task that
//! panics or ends on its own is logged; at shutdown every task is asked to stop and
//! waited for, within a deadline, before the store closes.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The supervisor of the server's background tasks.
#[derive(Clone, Default)]
pub struct Supervisor {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Supervisor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `task` until it ends or the supervisor stops it.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        let inner = self.tracker.spawn(async move {
            tokio::select! {
                () = task => tracing::warn!(task = name, "a background task ended on its own"),
                () = cancel.cancelled() => tracing::debug!(task = name, "background task stopped"),
            }
        });
        // Watches the task: a panic is logged with its name (the server goes on).
        self.tracker.spawn(async move {
            if let Err(e) = inner.await {
                if e.is_panic() {
                    tracing::error!(task = name, error = %e, "a background task panicked");
                }
            }
        });
    }

    /// Runs `task` with a stop signal of its own (for tasks that drain before they
    /// end, such as the rule evaluation): `task` gets a receiver that turns true at
    /// shutdown and must end soon after.
    pub fn spawn_draining<F>(
        &self,
        name: &'static str,
        task: impl FnOnce(tokio::sync::watch::Receiver<bool>) -> F,
    ) where
        F: Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let cancel = self.cancel.clone();
        let fut = task(rx);
        let inner = self.tracker.spawn(async move {
            let mut fut = std::pin::pin!(fut);
            tokio::select! {
                () = &mut fut => {
                    tracing::warn!(task = name, "a background task ended on its own");
                    return;
                }
                () = cancel.cancelled() => {}
            }
            let _ = tx.send(true);
            fut.await;
            tracing::debug!(task = name, "background task drained and stopped");
        });
        self.tracker.spawn(async move {
            if let Err(e) = inner.await {
                if e.is_panic() {
                    tracing::error!(task = name, error = %e, "a background task panicked");
                }
            }
        });
    }

    /// Stops every task and waits for them, at most `within`; false when some did
    /// not stop in time (they are then abandoned with the runtime).
    pub async fn shutdown(&self, within: Duration) -> bool {
        self.cancel.cancel();
        self.tracker.close();
        let done = tokio::time::timeout(within, self.tracker.wait())
            .await
            .is_ok();
        if !done {
            tracing::warn!(
                tasks = self.tracker.len(),
                "background tasks still running at the shutdown deadline"
            );
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn shutdown_stops_tasks_and_lets_draining_ones_finish() {
        let s = Supervisor::new();
        s.spawn("forever", std::future::pending());
        let drained = Arc::new(AtomicBool::new(false));
        let d = drained.clone();
        s.spawn_draining("drains", move |mut stop| async move {
            let _ = stop.wait_for(|v| *v).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            d.store(true, Ordering::SeqCst);
        });
        s.spawn("panics", async { panic!("boom") });
        assert!(s.shutdown(Duration::from_secs(5)).await);
        assert!(
            drained.load(Ordering::SeqCst),
            "the draining task finished its work"
        );
    }

    #[tokio::test]
    async fn a_task_that_does_not_stop_misses_the_deadline() {
        let s = Supervisor::new();
        s.spawn_draining("stuck", |_stop| std::future::pending());
        assert!(!s.shutdown(Duration::from_millis(100)).await);
    }
}
