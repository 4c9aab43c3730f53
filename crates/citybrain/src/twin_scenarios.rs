//! What-if runs of the live twin's scenario for the API (`/platform/v1/twin/what-ifs`):
//! requests are checked against the twin's network at once, then run one at a time
//! on a thread of their own (a what-if is two whole simulations: seconds to minutes).
//!
//! Runs are kept in memory, the last [`KEEP`] of them; a restart forgets them (their
//! results are reproducible: same scenario, seed and changes). At most [`QUEUE`] wait.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use citybrain_api::scenarios::{RunStatus, ScenarioError, Scenarios, WhatIfRequest, WhatIfRun};
use citybrain_model::time::Clock;
use citybrain_telemetry::{Counter, MetricDef};
use citybrain_twin::control::{ControllerKind, Settings};
use citybrain_twin::episode::{self, Change, Options};
use citybrain_twin::net::Network;
use citybrain_twin::sumo::{Sumo, SumoConfig};
use citybrain_twin::TwinError;

/// Runs kept for reading back.
pub const KEEP: usize = 50;
/// Runs that may wait at once.
pub const QUEUE: usize = 4;
/// The most changes in one what-if.
const MAX_CHANGES: usize = 100;

static QUEUED: MetricDef = MetricDef::gauge(
    "twin_whatif_queued",
    "What-if runs of the twin waiting to run",
);
static RUNNING: MetricDef =
    MetricDef::gauge("twin_whatif_running", "What-if runs of the twin running");
static FINISHED_DEF: MetricDef =
    MetricDef::counter("twin_whatif_finished", "What-if runs of the twin done");
static FINISHED: Counter = Counter::new(&FINISHED_DEF);
static FAILED_DEF: MetricDef =
    MetricDef::counter("twin_whatif_failed", "What-if runs of the twin that failed");
static FAILED: Counter = Counter::new(&FAILED_DEF);

pub struct TwinScenarios {
    runs: Mutex<Runs>,
    work: std::sync::mpsc::Sender<(String, Options, Vec<Change>)>,
    edges: HashSet<String>,
    sumocfg: PathBuf,
    /// Whether the scenario ends by itself (else a request must give a duration).
    has_end: bool,
    controller: ControllerKind,
    work_dir: PathBuf,
    clock: Arc<dyn Clock>,
}

/// The runs kept, newest first, each with its tenant.
#[derive(Default)]
struct Runs {
    list: VecDeque<(String, WhatIfRun)>,
    next: u64,
}

impl Runs {
    fn update(&mut self, id: &str, f: impl FnOnce(&mut WhatIfRun)) {
        if let Some((_, r)) = self.list.iter_mut().find(|(_, r)| r.id == id) {
            f(r);
        }
    }
}

impl TwinScenarios {
    /// What-ifs of `sumocfg` (the live twin's scenario), by default under the live
    /// twin's controller; working files under `work_dir`.
    pub fn start(
        sumo: Sumo,
        sumocfg: PathBuf,
        controller: ControllerKind,
        work_dir: PathBuf,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<TwinScenarios>, TwinError> {
        let cfg = SumoConfig::load(&sumocfg)?;
        let has_end = cfg.end.is_some();
        let net = Network::load(&cfg.net)?;
        let edges = net.edges.iter().map(|e| e.id.clone()).collect();
        let (tx, rx) = std::sync::mpsc::channel::<(String, Options, Vec<Change>)>();
        let me = Arc::new(TwinScenarios {
            runs: Mutex::new(Runs::default()),
            work: tx,
            edges,
            sumocfg,
            has_end,
            controller,
            work_dir,
            clock,
        });
        // The worker holds a weak reference: it ends when the server drops the
        // service (the channel closes).
        let weak = Arc::downgrade(&me);
        std::thread::Builder::new()
            .name("twin-what-if".into())
            .spawn(move || {
                while let Ok((id, opts, changes)) = rx.recv() {
                    let Some(me) = weak.upgrade() else { return };
                    // A panic in a run fails that run, not the worker.
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        me.execute(&sumo, &id, &opts, changes)
                    }));
                    if ran.is_err() {
                        FAILED.inc();
                        let now = me.clock.now();
                        me.lock().update(&id, |r| {
                            r.status = RunStatus::Failed;
                            r.finished_at = Some(now);
                            r.error = Some("the run failed inside the server".into());
                        });
                    }
                }
            })?;
        Ok(me)
    }

    fn execute(&self, sumo: &Sumo, id: &str, opts: &Options, changes: Vec<Change>) {
        let now = self.clock.now();
        self.lock().update(id, |r| {
            r.status = RunStatus::Running;
            r.started_at = Some(now);
        });
        tracing::info!(run = id, "what-if started");
        let outcome = episode::what_if(sumo, opts, changes)
            .map_err(|e| e.to_string())
            .and_then(|w| serde_json::to_value(w).map_err(|e| e.to_string()));
        if let Err(e) = std::fs::remove_dir_all(&opts.work_dir) {
            tracing::debug!(error = %e, "what-if working files not removed");
        }
        let now = self.clock.now();
        self.lock().update(id, |r| {
            r.finished_at = Some(now);
            match outcome {
                Ok(v) => {
                    FINISHED.inc();
                    r.status = RunStatus::Done;
                    r.result = Some(v);
                }
                Err(e) => {
                    FAILED.inc();
                    tracing::warn!(run = %r.id, error = %e, "what-if failed");
                    r.status = RunStatus::Failed;
                    r.error = Some(e);
                }
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Runs> {
        // A panic while holding the lock leaves plain data behind: keep serving it.
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The request as the twin's changes and options, or the field at fault.
    fn check(&self, req: &WhatIfRequest) -> Result<(Vec<Change>, ControllerKind), ScenarioError> {
        let bad = |m: String| ScenarioError::Invalid(m);
        if req.close.is_empty() && req.slow.is_empty() {
            return Err(bad("close, slow: name at least one edge to change".into()));
        }
        if req.close.len() + req.slow.len() > MAX_CHANGES {
            return Err(bad(format!("close, slow: at most {MAX_CHANGES} changes")));
        }
        let known = |field: String, edge: &str| {
            if self.edges.contains(edge) {
                Ok(())
            } else {
                Err(bad(format!(
                    "{field}: the twin's network has no edge '{edge}'"
                )))
            }
        };
        let mut changes = Vec::new();
        for (i, edge) in req.close.iter().enumerate() {
            known(format!("close[{i}]"), edge)?;
            changes.push(Change::Close { edge: edge.clone() });
        }
        for (i, s) in req.slow.iter().enumerate() {
            known(format!("slow[{i}].edge"), &s.edge)?;
            if !(s.kmh.is_finite() && s.kmh > 0.0 && s.kmh <= 200.0) {
                return Err(bad(format!(
                    "slow[{i}].kmh: a speed above 0 and at most 200 km/h, got {}",
                    s.kmh
                )));
            }
            changes.push(Change::Slow {
                edge: s.edge.clone(),
                speed: s.kmh / 3.6,
            });
        }
        match req.duration {
            Some(d) if !(d.is_finite() && d > 0.0 && d <= 86_400.0) => {
                return Err(bad(format!(
                    "duration: seconds above 0 and at most a day, got {d}"
                )));
            }
            None if !self.has_end => {
                return Err(bad(
                    "duration: the twin's scenario has no end; give the seconds to simulate".into(),
                ));
            }
            _ => {}
        }
        if let Some(seed) = req.seed {
            if seed > i32::MAX as u64 {
                return Err(bad(format!("seed: at most {}, got {seed}", i32::MAX)));
            }
        }
        let controller = match &req.controller {
            Some(c) => c
                .parse()
                .map_err(|e: String| bad(format!("controller: {e}")))?,
            None => self.controller,
        };
        Ok((changes, controller))
    }
}

impl Scenarios for TwinScenarios {
    fn submit(
        &self,
        tenant: &str,
        by: &str,
        req: WhatIfRequest,
    ) -> Result<WhatIfRun, ScenarioError> {
        let (changes, controller) = self.check(&req)?;
        let mut runs = self.lock();
        let waiting = runs
            .list
            .iter()
            .filter(|(_, r)| r.status == RunStatus::Queued)
            .count();
        if waiting >= QUEUE {
            return Err(ScenarioError::Busy(format!(
                "{waiting} what-if runs are waiting; try again when one has finished"
            )));
        }
        runs.next += 1;
        let id = runs.next.to_string();
        let run = WhatIfRun {
            id: id.clone(),
            status: RunStatus::Queued,
            request: req.clone(),
            submitted_by: by.to_string(),
            submitted_at: self.clock.now(),
            started_at: None,
            finished_at: None,
            result: None,
            error: None,
        };
        let opts = Options {
            sumocfg: self.sumocfg.clone(),
            controller,
            settings: Settings::default(),
            duration: req.duration,
            seed: req.seed.unwrap_or(1),
            work_dir: self.work_dir.join(&id),
            observe: None,
            changes: Vec::new(),
            reroute: false,
            emergency: None,
        };
        if self.work.send((id, opts, changes)).is_err() {
            return Err(ScenarioError::Unavailable(
                "the what-if worker has stopped".into(),
            ));
        }
        runs.list.push_front((tenant.to_string(), run.clone()));
        // Forget the oldest finished runs beyond the limit.
        while runs.list.len() > KEEP {
            match runs
                .list
                .iter()
                .rposition(|(_, r)| matches!(r.status, RunStatus::Done | RunStatus::Failed))
            {
                Some(k) => {
                    runs.list.remove(k);
                }
                None => break,
            }
        }
        tracing::info!(run = %run.id, by, "what-if queued");
        Ok(run)
    }

    fn run(&self, tenant: &str, id: &str) -> Option<WhatIfRun> {
        self.lock()
            .list
            .iter()
            .find(|(t, r)| t == tenant && r.id == id)
            .map(|(_, r)| r.clone())
    }

    fn visit_metrics(&self, out: &mut dyn FnMut(&'static MetricDef, f64)) {
        let runs = self.lock();
        let count = |s: RunStatus| runs.list.iter().filter(|(_, r)| r.status == s).count() as f64;
        out(&QUEUED, count(RunStatus::Queued));
        out(&RUNNING, count(RunStatus::Running));
        drop(runs);
        FINISHED.visit(out);
        FAILED.visit(out);
        crate::twin_live::stats::visit(out);
    }

    fn runs(&self, tenant: &str) -> Vec<WhatIfRun> {
        self.lock()
            .list
            .iter()
            .filter(|(t, _)| t == tenant)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use citybrain_api::scenarios::Slowdown;

    fn twin(
        has_end: bool,
    ) -> (
        TwinScenarios,
        std::sync::mpsc::Receiver<(String, Options, Vec<Change>)>,
    ) {
        let (tx, rx) = std::sync::mpsc::channel();
        let t = TwinScenarios {
            runs: Mutex::new(Runs::default()),
            work: tx,
            edges: ["A1B1".to_string(), "B1C1".to_string()]
                .into_iter()
                .collect(),
            sumocfg: PathBuf::from("grid.sumocfg"),
            has_end,
            controller: ControllerKind::MaxPressure,
            work_dir: PathBuf::from("w"),
            clock: Arc::new(citybrain_model::time::SystemClock),
        };
        (t, rx)
    }

    fn invalid(t: &TwinScenarios, req: WhatIfRequest) -> String {
        match t.submit("", "u", req) {
            Err(ScenarioError::Invalid(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn requests_are_checked_against_the_network_with_the_field_named() {
        let (t, _rx) = twin(true);
        let slow = |edge: &str, kmh: f64| Slowdown {
            edge: edge.into(),
            kmh,
        };
        assert!(invalid(&t, WhatIfRequest::default()).starts_with("close, slow"));
        let m = invalid(
            &t,
            WhatIfRequest {
                close: vec!["A1B1".into(), "Z".into()],
                ..Default::default()
            },
        );
        assert!(m.starts_with("close[1]:"), "{m}");
        let m = invalid(
            &t,
            WhatIfRequest {
                slow: vec![slow("Z", 10.0)],
                ..Default::default()
            },
        );
        assert!(m.starts_with("slow[0].edge:"), "{m}");
        for kmh in [0.0, -5.0, f64::NAN, 300.0] {
            let m = invalid(
                &t,
                WhatIfRequest {
                    slow: vec![slow("A1B1", kmh)],
                    ..Default::default()
                },
            );
            assert!(m.starts_with("slow[0].kmh:"), "{m}");
        }
        let close = vec!["A1B1".to_string()];
        let m = invalid(
            &t,
            WhatIfRequest {
                close: close.clone(),
                duration: Some(0.0),
                ..Default::default()
            },
        );
        assert!(m.starts_with("duration:"), "{m}");
        let m = invalid(
            &t,
            WhatIfRequest {
                close: close.clone(),
                seed: Some(1 << 40),
                ..Default::default()
            },
        );
        assert!(m.starts_with("seed:"), "{m}");
        let m = invalid(
            &t,
            WhatIfRequest {
                close: close.clone(),
                controller: Some("magic".into()),
                ..Default::default()
            },
        );
        assert!(m.starts_with("controller:"), "{m}");
        let m = invalid(
            &t,
            WhatIfRequest {
                close: vec!["A1B1".into(); 101],
                ..Default::default()
            },
        );
        assert!(m.contains("at most 100"), "{m}");
        // A scenario without an end needs a duration.
        let (open, _rx2) = twin(false);
        let m = invalid(
            &open,
            WhatIfRequest {
                close: close.clone(),
                ..Default::default()
            },
        );
        assert!(m.starts_with("duration:"), "{m}");
    }

    #[test]
    fn runs_queue_per_tenant_and_a_fifth_waiting_is_refused() {
        let (t, rx) = twin(true);
        let req = WhatIfRequest {
            close: vec!["B1C1".into()],
            slow: vec![Slowdown {
                edge: "A1B1".into(),
                kmh: 10.0,
            }],
            seed: Some(3),
            ..Default::default()
        };
        for _ in 0..QUEUE {
            let run = t.submit("a", "u", req.clone()).unwrap();
            assert_eq!(run.status, RunStatus::Queued);
        }
        // What the worker gets: both changes, speed in m/s, the seed.
        let (id, opts, changes) = rx.recv().unwrap();
        assert_eq!(id, "1");
        assert_eq!(opts.seed, 3);
        assert_eq!(changes.len(), 2);
        assert!(
            matches!(&changes[1], Change::Slow { speed, .. } if (speed - 10.0 / 3.6).abs() < 1e-9)
        );
        assert!(matches!(
            t.submit("a", "u", req.clone()),
            Err(ScenarioError::Busy(_))
        ));
        assert_eq!(t.runs("a").len(), QUEUE);
        assert!(t.runs("b").is_empty());
        assert!(t.run("b", "1").is_none());
        assert_eq!(t.run("a", "1").unwrap().submitted_by, "u");
    }
}
