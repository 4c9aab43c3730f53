//! Signal programs and safe switching.
//!
//! A controller only ever picks one of the program's own green phases; [`Driver`]
//! gets there safely: every link that loses its green shows yellow for the program's
//! own yellow time of that link, then the program's all-red time where it has one,
//! and only then the new green. Links green before and after stay green throughout.
//! No state ever shows a green the two program phases it lies between do not share.

use serde::Serialize;

/// One phase of a program, as SUMO defines it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phase {
    pub duration: f64,
    pub state: String,
    pub min_dur: f64,
    pub max_dur: f64,
}

fn green(c: u8) -> bool {
    c == b'G' || c == b'g'
}
fn yellow(c: u8) -> bool {
    c == b'y' || c == b'Y'
}
/// Signals that are neither a stop nor an active indication (off, blinking).
fn passive(c: u8) -> bool {
    c == b'o' || c == b'O' || c == b's'
}

/// A program's green phases and its own transition times, per traffic light.
#[derive(Debug, Clone, Serialize)]
pub struct SignalPlan {
    pub tls: String,
    /// Distinct green states, in program order (`greens[i]` is "phase i" to controllers).
    pub greens: Vec<String>,
    /// Each green's duration in the program (for fixed and Webster plans).
    pub green_durations: Vec<f64>,
    /// The program's phase index of each green.
    pub program_index: Vec<usize>,
    /// Per link index: the longest yellow the program shows that link (s).
    pub yellow_of_link: Vec<f64>,
    /// The program's all-red clearance after a yellow (0 where it has none).
    pub all_red: f64,
    /// Per link index: (incoming lane, outgoing lane).
    pub links: Vec<Vec<(String, String)>>,
}

/// Default yellow where a program shows none for a link (SUMO's own default).
const DEFAULT_YELLOW: f64 = 3.0;

impl SignalPlan {
    pub fn new(
        tls: &str,
        phases: &[Phase],
        links: Vec<Vec<(String, String)>>,
    ) -> Result<SignalPlan, String> {
        let n = phases.first().map_or(0, |p| p.state.len());
        if n == 0 {
            return Err(format!("traffic light {tls}: its program has no phases"));
        }
        if let Some(bad) = phases.iter().find(|p| p.state.len() != n) {
            return Err(format!(
                "traffic light {tls}: phase state {:?} has {} signals, the first has {n}",
                bad.state,
                bad.state.len()
            ));
        }
        let mut greens = Vec::new();
        let mut green_durations = Vec::new();
        let mut program_index = Vec::new();
        for (i, p) in phases.iter().enumerate() {
            let s = p.state.as_bytes();
            if s.iter().any(|c| green(*c)) && !s.iter().any(|c| yellow(*c)) {
                if let Some(k) = greens.iter().position(|g: &String| g == &p.state) {
                    green_durations[k] += p.duration;
                } else {
                    greens.push(p.state.clone());
                    green_durations.push(p.duration);
                    program_index.push(i);
                }
            }
        }
        let (yellow_of_link, all_red) = clearance_times(phases, n);
        if greens.is_empty() {
            return Err(format!(
                "traffic light {tls}: its program has no green phase"
            ));
        }
        let yellow_of_link = yellow_of_link
            .into_iter()
            .map(|y| if y > 0.0 { y } else { DEFAULT_YELLOW })
            .collect();
        let mut links = links;
        links.resize(n, Vec::new());
        Ok(SignalPlan {
            tls: tls.to_string(),
            greens,
            green_durations,
            program_index,
            yellow_of_link,
            all_red,
            links,
        })
    }

    /// The green to give an emergency vehicle on link `link`, whose approach (the
    /// links from the same incoming road) is `approach`: the current green when it
    /// already gives the link a protected green (no switch, no yellow in its face);
    /// else among the greens serving the link, the one giving green to most of the
    /// approach (the queue ahead of the vehicle, maybe in another lane, must move
    /// too), then one where the link is protected (`G`) rather than yielding (`g`),
    /// then the current one, then the first. `None` when no green serves the link.
    pub fn green_for_approach(
        &self,
        link: usize,
        approach: &[usize],
        current: usize,
    ) -> Option<usize> {
        (0..self.greens.len())
            .filter(|k| {
                self.greens[*k]
                    .as_bytes()
                    .get(link)
                    .is_some_and(|c| green(*c))
            })
            .max_by_key(|k| {
                let s = self.greens[*k].as_bytes();
                let served = approach
                    .iter()
                    .filter(|l| s.get(**l).is_some_and(|c| green(*c)))
                    .count();
                // max_by_key keeps the last of equals: rank the first green above
                // later ones with the reversed index.
                let protected = s[link] == b'G';
                (
                    *k == current && protected,
                    served,
                    protected,
                    *k == current,
                    usize::MAX - *k,
                )
            })
    }

    /// Link indices whose incoming lane is on the same road as link `link`'s
    /// (`edge_of` maps a lane to its road).
    pub fn approach_of<'a>(
        &'a self,
        link: usize,
        edge_of: impl Fn(&'a str) -> Option<&'a str>,
    ) -> Vec<usize> {
        let road = |l: usize| {
            self.links
                .get(l)
                .and_then(|v| v.first())
                .and_then(|(from, _)| edge_of(from))
        };
        let Some(mine) = road(link) else {
            return vec![link];
        };
        (0..self.links.len())
            .filter(|l| road(*l) == Some(mine))
            .collect()
    }

    /// The intermediate states from green `from` to green `to`, with durations: every
    /// link losing its green (or its protection) shows yellow for its own yellow time
    /// in the program, then red; once the last yellow ends, the program's all-red.
    pub fn transition(&self, from: usize, to: usize) -> Vec<(String, f64)> {
        if from == to {
            return Vec::new();
        }
        let a = self.greens[from].as_bytes();
        let b = self.greens[to].as_bytes();
        let n = a.len();
        // Per link: what it shows during the change, and for how long it is yellow.
        let mut base = Vec::with_capacity(n);
        let mut yellow_for = vec![0.0f64; n];
        for i in 0..n {
            let (ca, cb) = (a[i], b[i]);
            if green(ca) && green(cb) && !(ca == b'G' && cb == b'g') {
                // Green before and after: never interrupted.
                base.push(ca);
            } else if green(ca) {
                // Losing green, or losing protection (G to g): yellow first.
                base.push(b'y');
                yellow_for[i] = self.yellow_of_link[i];
            } else if passive(ca) && passive(cb) {
                base.push(ca);
            } else {
                base.push(b'r');
            }
        }
        let mut ends: Vec<f64> = yellow_for.iter().copied().filter(|y| *y > 0.0).collect();
        if ends.is_empty() {
            return Vec::new();
        }
        ends.sort_by(f64::total_cmp);
        ends.dedup();
        let mut out = Vec::new();
        let mut t = 0.0;
        for end in ends {
            let state: Vec<u8> = (0..n)
                .map(|i| {
                    if yellow_for[i] > 0.0 && yellow_for[i] <= t + 1e-9 {
                        b'r'
                    } else {
                        base[i]
                    }
                })
                .collect();
            out.push((String::from_utf8_lossy(&state).into_owned(), end - t));
            t = end;
        }
        if self.all_red > 0.0 {
            let red: Vec<u8> = base
                .iter()
                .map(|c| if *c == b'y' { b'r' } else { *c })
                .collect();
            out.push((String::from_utf8_lossy(&red).into_owned(), self.all_red));
        }
        out
    }

    /// Incoming lanes with a green in `phase`, each with the share of its movements the
    /// phase serves (a protected green counts 1, a permissive one ½): a lane shared by
    /// the through and the left movement is only half served by a left-turn phase, and
    /// its head vehicle may well be waiting to go straight.
    pub fn green_lanes(&self, phase: usize) -> Vec<(&str, f64)> {
        let s = self.greens[phase].as_bytes();
        // Per lane: (sum of weights, number of links).
        let mut acc: Vec<(&str, f64, f64)> = Vec::new();
        for (i, c) in s.iter().enumerate() {
            let w = match c {
                b'G' => 1.0,
                b'g' => 0.5,
                _ => 0.0,
            };
            for (inc, _) in &self.links[i] {
                match acc.iter_mut().find(|(l, _, _)| *l == inc.as_str()) {
                    Some(e) => {
                        e.1 += w;
                        e.2 += 1.0;
                    }
                    None => acc.push((inc.as_str(), w, 1.0)),
                }
            }
        }
        acc.into_iter()
            .filter(|(_, w, _)| *w > 0.0)
            .map(|(l, w, n)| (l, w / n))
            .collect()
    }

    /// Outgoing lanes of `lane`'s links that are green in `phase`.
    pub fn exits(&self, phase: usize, lane: &str) -> Vec<&str> {
        let s = self.greens[phase].as_bytes();
        let mut out = Vec::new();
        for (i, c) in s.iter().enumerate() {
            if !green(*c) {
                continue;
            }
            for (inc, outg) in &self.links[i] {
                if inc == lane && !out.contains(&outg.as_str()) {
                    out.push(outg.as_str());
                }
            }
        }
        out
    }

    /// Every incoming lane of the light.
    pub fn incoming(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for l in self.links.iter().flatten() {
            if !out.contains(&l.0.as_str()) {
                out.push(l.0.as_str());
            }
        }
        out
    }
}

/// Per link, the longest time the program shows it yellow in one go (consecutive
/// phases add up, around the cycle); and the longest red clearance after a yellow
/// (consecutive phases with neither green nor yellow, added up). A phase that is all
/// off or blinking is no clearance.
fn clearance_times(phases: &[Phase], n: usize) -> (Vec<f64>, f64) {
    let m = phases.len();
    let total: f64 = phases.iter().map(|p| p.duration).sum();
    let at = |i: usize, l: usize| phases[i].state.as_bytes().get(l).copied().unwrap_or(b'r');
    let mut yellow_of_link = vec![0.0f64; n];
    for (l, best) in yellow_of_link.iter_mut().enumerate() {
        let Some(start) = (0..m).find(|i| !yellow(at(*i, l))) else {
            *best = total; // yellow throughout: a flashing program
            continue;
        };
        let mut run = 0.0f64;
        for k in 1..=m {
            let i = (start + k) % m;
            if yellow(at(i, l)) {
                run += phases[i].duration;
                *best = best.max(run);
            } else {
                run = 0.0;
            }
        }
    }
    let clearance = |i: usize| {
        let s = phases[i].state.as_bytes();
        !s.iter().any(|c| green(*c) || yellow(*c)) && !s.iter().all(|c| passive(*c))
    };
    let mut all_red = 0.0f64;
    for i in 0..m {
        let prev = (i + m - 1) % m;
        if !clearance(i) || !phases[prev].state.bytes().any(yellow) {
            continue;
        }
        let mut run = 0.0;
        let mut k = i;
        for _ in 0..m {
            if !clearance(k) {
                break;
            }
            run += phases[k].duration;
            k = (k + 1) % m;
        }
        all_red = all_red.max(run);
    }
    (yellow_of_link, all_red)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    Green,
    Between { step: usize, until: f64 },
}

/// The shortest green a priority request may cut (s): long enough that a green just
/// begun is seen, as preemption systems keep a short minimum green.
pub const PREEMPT_MIN_GREEN: f64 = 5.0;

/// Drives one traffic light to the greens its controller asks for, never faster than
/// the minimum green and always through the transition.
#[derive(Debug, Clone)]
pub struct Driver {
    pub plan: SignalPlan,
    pub current: usize,
    target: usize,
    stage: Stage,
    /// When the current green began (s).
    pub green_since: f64,
    pub min_green: f64,
    steps: Vec<(String, f64)>,
    /// The state last sent, to avoid resending it.
    shown: Option<String>,
}

impl Driver {
    pub fn new(plan: SignalPlan, first: usize, now: f64, min_green: f64) -> Driver {
        Driver {
            plan,
            current: first,
            target: first,
            stage: Stage::Green,
            green_since: now,
            min_green,
            steps: Vec::new(),
            shown: None,
        }
    }

    /// Whether the controller may choose now (in a green, past the minimum).
    pub fn may_switch(&self, now: f64) -> bool {
        self.stage == Stage::Green && now - self.green_since >= self.min_green - 1e-9
    }

    pub fn in_green(&self) -> bool {
        self.stage == Stage::Green
    }

    /// How long the current green has lasted.
    pub fn green_time(&self, now: f64) -> f64 {
        if self.stage == Stage::Green {
            now - self.green_since
        } else {
            0.0
        }
    }

    /// Advances to `now` with the controller's wish (ignored unless it may switch);
    /// returns the state to show if it changed.
    pub fn tick(&mut self, now: f64, wish: Option<usize>) -> Option<String> {
        self.advance(now, wish, self.min_green)
    }

    /// Like [`tick`](Self::tick) for a priority request (an emergency vehicle): the
    /// current green is cut short after [`PREEMPT_MIN_GREEN`] at most, never its
    /// yellow and all-red.
    pub fn tick_urgent(&mut self, now: f64, wish: usize) -> Option<String> {
        self.advance(now, Some(wish), self.min_green.min(PREEMPT_MIN_GREEN))
    }

    fn advance(&mut self, now: f64, wish: Option<usize>, min_green: f64) -> Option<String> {
        if let Some(w) = wish {
            let may = self.stage == Stage::Green && now - self.green_since >= min_green - 1e-9;
            if w < self.plan.greens.len() && w != self.current && may {
                self.target = w;
                self.steps = self.plan.transition(self.current, w);
                self.stage = Stage::Between {
                    step: 0,
                    until: now,
                };
            }
        }
        loop {
            match self.stage {
                Stage::Green => break,
                Stage::Between { step, until } => {
                    if now + 1e-9 < until {
                        return None;
                    }
                    if step < self.steps.len() {
                        let (state, dur) = self.steps[step].clone();
                        self.stage = Stage::Between {
                            step: step + 1,
                            until: until.max(now) + dur,
                        };
                        return self.show(state);
                    }
                    self.current = self.target;
                    self.stage = Stage::Green;
                    self.green_since = now;
                }
            }
        }
        let state = self.plan.greens[self.current].clone();
        self.show(state)
    }

    fn show(&mut self, state: String) -> Option<String> {
        if self.shown.as_deref() == Some(state.as_str()) {
            return None;
        }
        self.shown = Some(state.clone());
        Some(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(d: f64, s: &str) -> Phase {
        Phase {
            duration: d,
            state: s.into(),
            min_dur: d,
            max_dur: d,
        }
    }

    /// netgenerate's four-phase program with protected lefts (and an all-red).
    fn grid_program() -> Vec<Phase> {
        vec![
            phase(33.0, "GGGgrrrrGGGgrrrr"),
            phase(3.0, "yyygrrrryyygrrrr"),
            phase(6.0, "rrrGrrrrrrrGrrrr"),
            phase(4.0, "rrryrrrrrrryrrrr"),
            phase(2.0, "rrrrrrrrrrrrrrrr"),
            phase(33.0, "rrrrGGGgrrrrGGGg"),
            phase(3.0, "rrrryyygrrrryyyg"),
            phase(6.0, "rrrrrrrGrrrrrrrG"),
            phase(3.0, "rrrrrrryrrrrrrry"),
        ]
    }

    #[test]
    fn an_emergency_vehicle_gets_the_green_of_its_whole_approach() {
        let p = SignalPlan::new("A", &grid_program(), Vec::new()).unwrap();
        // Links 0–3 come from one road: 0–2 through and right, 3 the left.
        let approach = [0, 1, 2, 3];
        // The left alone is protected in green 1, but green 0 moves the whole
        // approach (the queue ahead may be in the through lanes) with the left
        // yielding: from elsewhere, green 0 is chosen.
        assert_eq!(p.green_for_approach(3, &approach, 2), Some(0));
        // Already showing the left its protected green: kept.
        assert_eq!(p.green_for_approach(3, &approach, 1), Some(1));
        // With only the left in its approach, its protected green wins.
        assert_eq!(p.green_for_approach(3, &[3], 0), Some(1));
        // A through link: its green, current or not.
        assert_eq!(p.green_for_approach(0, &approach, 2), Some(0));
        assert_eq!(p.green_for_approach(99, &approach, 0), None);
        // Links are grouped by their incoming lane's road.
        let links: Vec<Vec<(String, String)>> = ["n_0", "n_1", "e_0", "n_2"]
            .iter()
            .map(|l| vec![(l.to_string(), "x_0".to_string())])
            .collect();
        let p = SignalPlan::new("B", &[phase(30.0, "GGGG")], links).unwrap();
        fn road(lane: &str) -> Option<&str> {
            lane.split('_').next()
        }
        assert_eq!(p.approach_of(1, road), vec![0, 1, 3]);
        assert_eq!(p.approach_of(2, road), vec![2]);
    }

    #[test]
    fn a_priority_request_cuts_the_minimum_green_but_not_the_clearance() {
        let p = SignalPlan::new("A", &grid_program(), Vec::new()).unwrap();
        let mut d = Driver::new(p, 0, 0.0, 10.0);
        // Too early even for a priority request: the green stays.
        assert_eq!(d.tick_urgent(2.0, 2).as_deref(), Some("GGGgrrrrGGGgrrrr"));
        assert_eq!(d.tick_urgent(4.9, 2), None);
        // After the short minimum, the yellow starts although min_green is 10 s.
        assert_eq!(d.tick_urgent(5.0, 2).as_deref(), Some("yyyyrrrryyyyrrrr"));
        // The yellow and all-red run their full length.
        assert_eq!(d.tick_urgent(7.9, 2), None);
        assert_eq!(d.tick_urgent(8.0, 2).as_deref(), Some("rrryrrrrrrryrrrr"));
        assert_eq!(d.tick_urgent(9.0, 2).as_deref(), Some("rrrrrrrrrrrrrrrr"));
        assert_eq!(d.tick_urgent(10.9, 2), None);
        assert_eq!(d.tick_urgent(11.0, 2).as_deref(), Some("rrrrGGGgrrrrGGGg"));
    }

    #[test]
    fn greens_yellows_and_all_red_come_from_the_program() {
        let p = SignalPlan::new("A", &grid_program(), Vec::new()).unwrap();
        assert_eq!(p.greens.len(), 4);
        assert_eq!(p.program_index, vec![0, 2, 5, 7]);
        assert_eq!(p.yellow_of_link[0], 3.0);
        assert_eq!(p.yellow_of_link[3], 4.0);
        assert_eq!(p.all_red, 2.0);
        // Through to cross through: the through links' 3 s of yellow, the permissive
        // left's own 4 s, then the all-red.
        let t = p.transition(0, 2);
        assert_eq!(t.len(), 3);
        assert_eq!(t[0], ("yyyyrrrryyyyrrrr".to_string(), 3.0));
        assert_eq!(t[1], ("rrryrrrrrrryrrrr".to_string(), 1.0));
        assert_eq!(t[2], ("rrrrrrrrrrrrrrrr".to_string(), 2.0));
        // From the through phase to its own protected left: the left keeps going.
        let t = p.transition(0, 1);
        assert_eq!(t[0].0, "yyygrrrryyygrrrr");
        // Protected left to through: the protection ends with a yellow (its own 4 s).
        let t = p.transition(1, 0);
        assert_eq!(t[0], ("rrryrrrrrrryrrrr".to_string(), 4.0));
    }

    /// A yellow or an all-red the program splits over consecutive phases counts whole.
    #[test]
    fn split_yellows_and_clearances_add_up() {
        let program = vec![
            phase(30.0, "GGrr"),
            phase(2.0, "yyrr"),
            phase(1.5, "yrrr"),
            phase(1.0, "rrrr"),
            phase(1.0, "rrrr"),
            phase(30.0, "rrGG"),
            phase(3.0, "rryy"),
        ];
        let p = SignalPlan::new("A", &program, Vec::new()).unwrap();
        assert_eq!(p.yellow_of_link, vec![3.5, 2.0, 3.0, 3.0]);
        assert_eq!(p.all_red, 2.0);
        let t = p.transition(0, 1);
        assert_eq!(t[0], ("yyrr".to_string(), 2.0));
        assert_eq!(t[1], ("yrrr".to_string(), 1.5));
        assert_eq!(t[2], ("rrrr".to_string(), 2.0));
    }

    /// Every switch the driver makes, between any two greens at any time, is safe.
    #[test]
    fn every_switch_is_yellow_then_all_red_then_green() {
        let p = SignalPlan::new("A", &grid_program(), Vec::new()).unwrap();
        let greens = p.greens.clone();
        for from in 0..greens.len() {
            for to in 0..greens.len() {
                let mut d = Driver::new(p.clone(), from, 0.0, 10.0);
                let mut shown = vec![(0.0, d.tick(0.0, None).unwrap())];
                // Too early: refused.
                assert_eq!(d.tick(5.0, Some(to)), None);
                let mut t = 10.0;
                let mut wish = Some(to);
                while t < 40.0 {
                    if let Some(s) = d.tick(t, wish.take()) {
                        shown.push((t, s));
                    }
                    t += 0.5;
                }
                check_sequence(&p, &shown, from, to);
            }
        }
    }

    fn loses(a: u8, b: u8) -> bool {
        (green(a) && !green(b)) || (a == b'G' && b == b'g')
    }

    fn check_sequence(p: &SignalPlan, shown: &[(f64, String)], from: usize, to: usize) {
        let a = p.greens[from].as_bytes();
        let b = p.greens[to].as_bytes();
        if from == to {
            assert_eq!(shown.len(), 1);
            return;
        }
        let (t_end, last) = shown.last().unwrap();
        assert_eq!(last, &p.greens[to], "ends in the asked green");
        let losing: Vec<usize> = (0..a.len()).filter(|i| loses(a[*i], b[*i])).collect();
        let yellow_time = losing
            .iter()
            .map(|i| p.yellow_of_link[*i])
            .fold(0.0, f64::max);
        let expected_end = if losing.is_empty() {
            10.0
        } else {
            10.0 + yellow_time + p.all_red
        };
        assert_eq!(
            *t_end, expected_end,
            "the new green comes after yellow and all-red"
        );
        // What link i showed at time t.
        let at = |t: f64, i: usize| -> u8 {
            let (_, s) = shown.iter().rev().find(|(ts, _)| *ts <= t + 1e-9).unwrap();
            s.as_bytes()[i]
        };
        let mut t = 10.0;
        while t < *t_end {
            for i in 0..a.len() {
                let c = at(t, i);
                if losing.contains(&i) {
                    // Yellow for exactly the program's yellow of that link, then red.
                    let want_yellow = t < 10.0 + p.yellow_of_link[i] - 1e-9;
                    assert_eq!(yellow(c), want_yellow, "link {i} at {t}: {}", c as char);
                    if !want_yellow {
                        assert_eq!(c, b'r', "link {i} at {t}");
                    }
                } else if green(c) {
                    // No green the two program phases do not share.
                    assert!(green(a[i]) && green(b[i]), "link {i} green at {t}");
                } else {
                    assert!(!yellow(c), "link {i} yellow at {t} without losing green");
                }
            }
            t += 0.5;
        }
    }
}
