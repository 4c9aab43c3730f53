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

pub struct TwinScenarios {
    runs: Mutex<Runs>,
    work: std::sync::mpsc::Sender<(String, Options, Vec<Change>)>,
    edges: HashSet<String>,
    sumocfg: PathBuf,
    controller: ControllerKind,
    work_dir: PathBuf,
    clock: Arc<dyn Clock>,
}

#[derive(Default)]
struct Runs {
    list: VecDeque<WhatIfRun>,
    next: u64,
}

impl Runs {
    fn update(&mut self, id: &str, f: impl FnOnce(&mut WhatIfRun)) {
        if let Some(r) = self.list.iter_mut().find(|r| r.id == id) {
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
        let net = Network::load(&SumoConfig::load(&sumocfg)?.net)?;
        let edges = net.edges.iter().map(|e| e.id.clone()).collect();
        let (tx, rx) = std::sync::mpsc::channel::<(String, Options, Vec<Change>)>();
        let me = Arc::new(TwinScenarios {
            runs: Mutex::new(Runs::default()),
            work: tx,
            edges,
            sumocfg,
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
                    me.execute(&sumo, &id, &opts, changes);
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
                    r.status = RunStatus::Done;
                    r.result = Some(v);
                }
                Err(e) => {
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
        if let Some(d) = req.duration {
            if !(d.is_finite() && d > 0.0 && d <= 86_400.0) {
                return Err(bad(format!(
                    "duration: seconds above 0 and at most a day, got {d}"
                )));
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
    fn submit(&self, by: &str, req: WhatIfRequest) -> Result<WhatIfRun, ScenarioError> {
        let (changes, controller) = self.check(&req)?;
        let mut runs = self.lock();
        let waiting = runs
            .list
            .iter()
            .filter(|r| r.status == RunStatus::Queued)
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
            return Err(ScenarioError::Busy("the what-if worker has stopped".into()));
        }
        runs.list.push_front(run.clone());
        // Forget the oldest finished runs beyond the limit.
        while runs.list.len() > KEEP {
            match runs
                .list
                .iter()
                .rposition(|r| matches!(r.status, RunStatus::Done | RunStatus::Failed))
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

    fn run(&self, id: &str) -> Option<WhatIfRun> {
        self.lock().list.iter().find(|r| r.id == id).cloned()
    }

    fn runs(&self) -> Vec<WhatIfRun> {
        self.lock().list.iter().cloned().collect()
    }
}
