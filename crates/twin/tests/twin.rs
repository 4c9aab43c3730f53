#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure
//! The twin against a real SUMO (installed by scripts/install-sumo.sh). Without SUMO
//! these tests skip, unless REQUIRE_SUMO=1 (CI), where they fail.

use std::path::{Path, PathBuf};

use citybrain_twin::control::{ControllerKind, Settings};
use citybrain_twin::episode::{self, Options, Session};
use citybrain_twin::scenario::{self, Grid};
use citybrain_twin::sumo::Sumo;
use citybrain_twin::TwinError;

fn sumo() -> Option<Sumo> {
    match Sumo::locate() {
        Ok(s) => Some(s),
        Err(e) => {
            if std::env::var_os("REQUIRE_SUMO").is_some() {
                panic!("REQUIRE_SUMO is set but {e}");
            }
            eprintln!("skipping: {e}");
            None
        }
    }
}

fn small_grid(sumo: &Sumo, dir: &Path, seed: u64) -> PathBuf {
    let g = Grid {
        size: 3,
        duration: 900.0,
        peak: 800.0,
        seed,
        ..Grid::default()
    };
    scenario::write_grid(sumo, dir, &g).unwrap()
}

fn options(cfg: &Path, controller: ControllerKind, work: &Path) -> Options {
    Options {
        sumocfg: cfg.to_path_buf(),
        controller,
        settings: Settings::default(),
        duration: Some(900.0),
        seed: 1,
        work_dir: work.to_path_buf(),
        observe: None,
        changes: Vec::new(),
        reroute: false,
        emergency: None,
    }
}

#[test]
fn the_grid_is_reproducible_and_has_a_detector_on_every_approach() {
    let Some(sumo) = sumo() else { return };
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    small_grid(&sumo, a.path(), 7);
    small_grid(&sumo, b.path(), 7);
    let read = |d: &Path, f: &str| std::fs::read_to_string(d.join(f)).unwrap();
    assert_eq!(
        read(a.path(), "grid.rou.xml"),
        read(b.path(), "grid.rou.xml")
    );
    // netgenerate stamps the time and its arguments in a header comment: the network
    // itself is what must be the same.
    let body = |d: &Path| {
        let t = read(d, "grid.net.xml");
        t[t.find("<net ").unwrap()..].to_string()
    };
    assert!(body(a.path()) == body(b.path()), "the same network twice");
    let c = tempfile::tempdir().unwrap();
    small_grid(&sumo, c.path(), 8);
    assert_ne!(
        read(a.path(), "grid.rou.xml"),
        read(c.path(), "grid.rou.xml")
    );
    // Every lane entering a signal carries a detector.
    let net = citybrain_twin::net::Network::load(&a.path().join("grid.net.xml")).unwrap();
    let det = read(a.path(), "grid.det.xml");
    let approaches: std::collections::BTreeSet<&str> = net
        .connections
        .iter()
        .filter(|c| c.tl.is_some())
        .map(|c| c.from_lane.as_str())
        .collect();
    assert!(approaches.len() >= 9 * 4, "{} approaches", approaches.len());
    for lane in approaches {
        assert!(
            det.contains(&format!("lane=\"{lane}\"")),
            "no detector on {lane}"
        );
    }
}

#[test]
fn episodes_report_delays_and_adaptive_control_beats_the_fixed_plan() {
    let Some(sumo) = sumo() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_grid(&sumo, dir.path(), 3);
    let mut reports = Vec::new();
    for c in [
        ControllerKind::Fixed,
        ControllerKind::MaxPressure,
        ControllerKind::Actuated,
        ControllerKind::Webster,
    ] {
        let work = dir.path().join(c.to_string());
        let r = episode::run(&sumo, &options(&cfg, c, &work)).unwrap();
        assert_eq!(r.traffic_lights, 9);
        assert_eq!(r.controlled, if c == ControllerKind::Fixed { 0 } else { 9 });
        assert!(r.trips.trips > 500, "{r:?}");
        assert!(r.trips.throughput > 0 && r.trips.throughput <= r.trips.trips);
        assert!(r.trips.mean_delay_all_s > 0.0 && r.trips.mean_delay_s > 0.0);
        assert!((r.sim_seconds - 900.0).abs() < 1e-6);
        assert!(r.sumo.contains("SUMO"));
        reports.push(r);
    }
    let fixed = reports[0].trips.mean_delay_all_s;
    let pressure = reports[1].trips.mean_delay_all_s;
    assert!(pressure < fixed, "max-pressure {pressure} vs fixed {fixed}");
}

/// Reads back what SUMO shows at every step of an adaptive run and checks the safety
/// rules on the real simulator: yellow for the program's time on exactly the links that
/// lose green, minimum greens, and no green that the program does not have.
#[test]
fn signals_are_safe_in_the_simulator() {
    let Some(sumo) = sumo() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_grid(&sumo, dir.path(), 5);
    // Begin in the middle of the programs' first yellow (33 s of green, then 3 s of
    // yellow): the controller must let the yellow run out before it takes over.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("<begin value=\"0\"/>", "<begin value=\"34\"/>");
    assert!(text.contains("<begin value=\"34\"/>"));
    std::fs::write(&cfg, text).unwrap();
    let mut opts = options(&cfg, ControllerKind::MaxPressure, &dir.path().join("w"));
    opts.duration = Some(600.0);
    let mut s = Session::start(&sumo, &opts).unwrap();
    let plans = plans_of(&s);
    let min_green = opts.settings.min_green;
    // Per light: the state history, one entry per step.
    let mut history: Vec<Vec<String>> = vec![Vec::new(); plans.len()];
    // What SUMO shows at the start, before the first step: the programs' yellow.
    for (h, state) in history.iter_mut().zip(s.signal_states().unwrap()) {
        assert!(state.contains('y'), "begins in a yellow: {state}");
        h.push(state);
    }
    while !s.done() {
        s.step().unwrap();
        for (h, state) in history.iter_mut().zip(s.signal_states().unwrap()) {
            h.push(state);
        }
    }
    s.finish().unwrap();
    // The yellow that was showing at the start ran its course (34 → 36 s).
    for (plan, h) in plans.iter().zip(&history) {
        assert_eq!(
            h[1], h[0],
            "{}: the starting yellow was cut short",
            plan.tls
        );
    }
    let switches = assert_safe(&plans, &history, min_green);
    assert!(
        switches > 20,
        "the controller switched ({switches} green ends)"
    );
}

/// Every controlled light's signal plan.
fn plans_of(s: &Session) -> Vec<citybrain_twin::signal::SignalPlan> {
    s.intersections
        .iter()
        .map(|x| x.driver.plan.clone())
        .collect()
}

/// Safety over a recorded state history per light: greens only where a program
/// green has them, every green end shows the program's yellow for the link, and a
/// program green once shown lasts `min_green`. Returns how many greens ended.
fn assert_safe(
    plans: &[citybrain_twin::signal::SignalPlan],
    history: &[Vec<String>],
    min_green: f64,
) -> usize {
    let green = |c: u8| c == b'G' || c == b'g';
    let mut switches = 0;
    for (plan, states) in plans.iter().zip(history) {
        for st in states {
            // Every green shown is green in some program green phase.
            assert!(
                plan.greens.iter().any(|g| st
                    .bytes()
                    .zip(g.bytes())
                    .all(|(c, p)| !green(c) || green(p))),
                "{}: {st} has a green no program phase has",
                plan.tls
            );
        }
        let n = states[0].len();
        for i in 0..n {
            let col: Vec<u8> = states.iter().map(|s| s.as_bytes()[i]).collect();
            let mut t = 1;
            while t < col.len() {
                if green(col[t - 1]) && !green(col[t]) {
                    // A green ends: yellow for exactly its program time, then red.
                    let start = t;
                    while t < col.len() && (col[t] == b'y' || col[t] == b'Y') {
                        t += 1;
                    }
                    if t < col.len() {
                        assert_eq!(
                            (t - start) as f64,
                            plan.yellow_of_link[i],
                            "{} link {i}: yellow of {} s at step {start}",
                            plan.tls,
                            t - start
                        );
                        assert!(col[t] == b'r' || green(col[t]), "{} link {i}", plan.tls);
                    }
                    switches += 1;
                } else {
                    t += 1;
                }
            }
        }
        // Minimum green: a program green, once shown, lasts at least min_green steps.
        let mut run = 0usize;
        for t in 1..states.len() {
            if states[t] == states[t - 1] {
                run += 1;
            } else {
                if plan.greens.contains(&states[t - 1]) && t > run + 1 {
                    assert!(
                        run + 1 >= min_green as usize,
                        "{}: green of {} s",
                        plan.tls,
                        run + 1
                    );
                }
                run = 0;
            }
        }
    }
    switches
}

#[test]
fn bad_configurations_get_clear_errors() {
    let Some(sumo) = sumo() else { return };
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("w");
    let missing = options(
        &dir.path().join("nope.sumocfg"),
        ControllerKind::Fixed,
        &work,
    );
    let e = episode::run(&sumo, &missing).unwrap_err();
    assert!(matches!(e, TwinError::Config(_)), "{e}");
    assert!(e.to_string().contains("no such SUMO configuration"), "{e}");

    let cfg = dir.path().join("bad.sumocfg");
    std::fs::write(
        &cfg,
        r#"<configuration><input><net-file value="gone.net.xml"/></input></configuration>"#,
    )
    .unwrap();
    let e = episode::run(&sumo, &options(&cfg, ControllerKind::MaxPressure, &work)).unwrap_err();
    assert!(e.to_string().contains("gone.net.xml"), "{e}");

    std::fs::write(&cfg, "<configuration><input>").unwrap();
    let e = episode::run(&sumo, &options(&cfg, ControllerKind::Fixed, &work)).unwrap_err();
    assert!(e.to_string().contains("bad.sumocfg"), "{e}");

    // A network SUMO itself refuses: the error carries SUMO's own message.
    let net = dir.path().join("broken.net.xml");
    std::fs::write(&net, "<net><edge id=\"e\" from=\"a\" to=\"b\"><lane id=\"e_0\" index=\"0\" speed=\"10\" length=\"5\" shape=\"0,0 5,0\"/></edge></net>").unwrap();
    std::fs::write(
        &cfg,
        r#"<configuration><input><net-file value="broken.net.xml"/></input></configuration>"#,
    )
    .unwrap();
    let e = episode::run(&sumo, &options(&cfg, ControllerKind::Fixed, &work)).unwrap_err();
    assert!(matches!(e, TwinError::Sumo(_)), "{e}");
}

#[test]
fn a_what_if_closure_is_compared_with_its_base_run() {
    let Some(sumo) = sumo() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_grid(&sumo, dir.path(), 9);
    let mut opts = options(&cfg, ControllerKind::MaxPressure, &dir.path().join("w"));
    opts.duration = Some(600.0);
    // The middle junction's eastbound exit, both parts of it (before and along the pocket).
    let net = citybrain_twin::net::Network::load(&dir.path().join("grid.net.xml")).unwrap();
    let closed: Vec<String> = net
        .edges
        .iter()
        .filter(|e| e.id.starts_with("B1C1"))
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(closed.len(), 2, "{closed:?}");
    let changes: Vec<episode::Change> = closed
        .iter()
        .map(|e| episode::Change::Close { edge: e.clone() })
        .collect();
    let w = episode::what_if(&sumo, &opts, changes).unwrap();
    assert_eq!(
        w.base.trips.trips, w.scenario.trips.trips,
        "the same demand"
    );
    assert!(w.scenario.trips.mean_delay_all_s != w.base.trips.mean_delay_all_s);
    let expected = (w.scenario.trips.mean_delay_all_s - w.base.trips.mean_delay_all_s)
        / w.base.trips.mean_delay_all_s
        * 100.0;
    assert!((w.change_pct.mean_delay_all_s - expected).abs() < 1e-9);
    // An edge the network lacks is named in the error.
    let e = episode::what_if(
        &sumo,
        &opts,
        vec![episode::Change::Close {
            edge: "nowhere".into(),
        }],
    )
    .unwrap_err();
    assert!(e.to_string().contains("nowhere"), "{e}");
}

/// Traffic along one arterial of a grid (and a little across it): a green wave along
/// it, same programs and splits, beats the uncoordinated fixed plans; the arterial's
/// signals get offsets that grow by the block's travel time.
#[test]
fn a_green_wave_carries_the_arterial() {
    let Some(sumo) = sumo() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_grid(&sumo, dir.path(), 4);
    std::fs::write(
        dir.path().join("grid.rou.xml"),
        r#"<routes>
  <vType id="car" vClass="passenger"/>
  <flow id="wave" type="car" begin="0" end="900" vehsPerHour="600" from="left1A1" to="C1right1" departLane="best" departSpeed="max"/>
  <flow id="cross" type="car" begin="0" end="900" vehsPerHour="150" from="bottom1B0" to="B2top1" departLane="best" departSpeed="max"/>
</routes>"#,
    )
    .unwrap();
    let net = citybrain_twin::net::Network::load(&dir.path().join("grid.net.xml")).unwrap();
    let entry = net
        .connections
        .iter()
        .find(|c| {
            c.tl.as_deref() == Some("A1") && c.from_lane.starts_with("left1A1") && c.dir == "s"
        })
        .map(|c| net.lanes[&c.from_lane].edge.clone())
        .unwrap();
    let mut fixed = options(&cfg, ControllerKind::Fixed, &dir.path().join("f"));
    fixed.duration = Some(900.0);
    let mut wave = options(&cfg, ControllerKind::GreenWave, &dir.path().join("g"));
    wave.duration = Some(900.0);
    wave.settings.arterial = vec![entry];
    let f = episode::run(&sumo, &fixed).unwrap();
    let g = episode::run(&sumo, &wave).unwrap();
    assert_eq!(f.trips.trips, g.trips.trips);
    assert!(
        g.trips.mean_delay_all_s < 0.8 * f.trips.mean_delay_all_s,
        "green wave {} vs fixed {}",
        g.trips.mean_delay_all_s,
        f.trips.mean_delay_all_s
    );
    // The plan: A1, B1, C1 in a wave, offsets one block's travel time apart.
    let s = Session::start(&sumo, &wave).unwrap();
    let c = citybrain_twin::wave::coordinate(&s.net, &s.intersections, &wave.settings.arterial);
    let offset = |tls: &str| {
        let i = s
            .intersections
            .iter()
            .position(|x| x.driver.plan.tls == tls)
            .unwrap();
        c[i].as_ref().unwrap().offset
    };
    let block = offset("B1") - offset("A1");
    assert!(block > 10.0 && block < 20.0, "{block}");
    assert!((offset("C1") - offset("B1") - block).abs() < 1e-6);
    s.finish().unwrap();
}

#[test]
fn an_ambulance_is_dispatched_by_travel_time_and_given_safe_greens() {
    use citybrain_twin::emergency::{random_calls, spread_stations, EmergencyOptions};
    use citybrain_twin::net::Network;
    use citybrain_twin::signal::PREEMPT_MIN_GREEN;
    use citybrain_twin::sumo::SumoConfig;

    let Some(sumo) = sumo() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_grid(&sumo, dir.path(), 9);
    let net = Network::load(&SumoConfig::load(&cfg).unwrap().net).unwrap();
    let stations = spread_stations(&net, 3);
    assert_eq!(stations.len(), 3);
    // Under the network's own plans: lights are taken over for the ambulance and
    // handed back to their programs after it has passed.
    for controller in [ControllerKind::Fixed, ControllerKind::MaxPressure] {
        let mut opts = options(
            &cfg,
            controller,
            &dir.path().join(format!("{controller:?}")),
        );
        opts.duration = Some(600.0);
        opts.emergency = Some(EmergencyOptions::new(stations.clone(), true));
        let mut s = Session::start(&sumo, &opts).unwrap();
        let plans = plans_of(&s);
        let mut history: Vec<Vec<String>> = vec![Vec::new(); plans.len()];
        let calls = random_calls(&net, 2, 120.0, 240.0, 4);
        let mut next = 0;
        let (mut dispatches, mut arrivals) = (Vec::new(), Vec::new());
        // Per light: the steps at which it was preempted, and the green asked.
        let mut asked: Vec<(usize, String, usize)> = Vec::new();
        while !s.done() {
            s.step().unwrap();
            while next < calls.len() && calls[next].0 <= s.now {
                s.call(calls[next].1.clone()).unwrap();
                // The same call twice, while it is handled, is refused.
                assert!(s.call(calls[next].1.clone()).is_err());
                next += 1;
            }
            dispatches.extend(s.take_dispatches());
            arrivals.extend(s.take_arrivals());
            for (h, state) in history.iter_mut().zip(s.signal_states().unwrap()) {
                h.push(state);
            }
            let step = history[0].len() - 1;
            asked.extend(s.preemptions().into_iter().map(|(tls, g)| (step, tls, g)));
        }
        s.finish().unwrap();
        assert_eq!(dispatches.len(), 2, "{controller:?}: {dispatches:?}");
        // Every light preempted for a while showed the green asked for, within the
        // longest clearance (yellow and all-red) after the request began.
        assert!(!asked.is_empty(), "{controller:?}: no light was preempted");
        let mut lights: Vec<&str> = asked.iter().map(|(_, t, _)| t.as_str()).collect();
        lights.sort_unstable();
        lights.dedup();
        for tls in lights {
            let k = plans.iter().position(|p| p.tls == tls).unwrap();
            let steps: Vec<&(usize, String, usize)> =
                asked.iter().filter(|(_, t, _)| t == tls).collect();
            let (first, _, g) = steps[0];
            if steps.len() < 15 {
                continue; // passed before a switch could complete
            }
            let want = &plans[k].greens[*g];
            assert!(
                history[k][*first..].iter().take(15).any(|st| st == want),
                "{controller:?}: {tls} asked for {want} at step {first}, showed {:?}",
                &history[k][*first..(*first + 15).min(history[k].len())]
            );
        }
        for d in &dispatches {
            // The nearest by live travel time was sent.
            assert!(d.alternatives.iter().all(|(_, t)| *t >= d.eta_s), "{d:?}");
        }
        assert_eq!(arrivals.len(), 2, "{controller:?}: both calls reached");
        for a in &arrivals {
            assert!(a.preempted_lights >= 1, "{a:?}");
            assert!(a.response_s > 0.0 && a.response_s < 400.0, "{a:?}");
        }
        let min_green = match controller {
            ControllerKind::Fixed => PREEMPT_MIN_GREEN,
            _ => PREEMPT_MIN_GREEN.min(opts.settings.min_green),
        };
        assert_safe(&plans, &history, min_green);
        if controller == ControllerKind::Fixed {
            // Handed back: over the last 200 s every light runs through every
            // green of its program again.
            for (plan, h) in plans.iter().zip(&history) {
                assert!(h.len() > 300, "{} steps recorded", h.len());
                let tail = &h[h.len() - 200..];
                for g in &plan.greens {
                    assert!(tail.contains(g), "{}: {g} not shown again", plan.tls);
                }
            }
        }
    }
}
