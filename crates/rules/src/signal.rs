//! The state of one condition for one entity, and how an observation or a clock tick
//! moves it. Everything here is event time in milliseconds; nothing reads a clock.

use std::collections::VecDeque;

use geo::{Contains, Point};

use crate::compile::{Area, Cond, Limit, Signal};
use crate::spec::{Agg, Fence};

/// An observed value: numbers for level conditions, points for geofences.
#[derive(Debug, Clone, PartialEq)]
pub enum ObsValue {
    Number(f64),
    /// `[longitude, latitude]`.
    Point([f64; 2]),
    /// Anything else (text, objects): only `missing` conditions see it.
    Other,
}

impl ObsValue {
    pub(crate) fn number(&self) -> Option<f64> {
        match self {
            ObsValue::Number(v) if v.is_finite() => Some(*v),
            _ => None,
        }
    }

    pub(crate) fn point(&self) -> Option<[f64; 2]> {
        match self {
            ObsValue::Point(p) => Some(*p),
            _ => None,
        }
    }

    /// The value of a stored attribute: numbers directly, documents through JSON.
    pub fn from_attr(v: &citybrain_model::AttrValue) -> ObsValue {
        use citybrain_model::AttrValue;
        match v {
            AttrValue::Int(i) => ObsValue::Number(*i as f64),
            AttrValue::Float(f) => ObsValue::Number(*f),
            AttrValue::Json(_) => ObsValue::from_json(&v.to_value()),
            _ => ObsValue::Other,
        }
    }

    /// The value of an NGSI-LD attribute's content: a number, a GeoJSON Point, or other.
    pub fn from_json(v: &serde_json::Value) -> ObsValue {
        match v {
            serde_json::Value::Number(n) => n.as_f64().map_or(ObsValue::Other, ObsValue::Number),
            serde_json::Value::Object(o)
                if o.get("type").and_then(|t| t.as_str()) == Some("Point") =>
            {
                match o
                    .get("coordinates")
                    .and_then(|c| c.as_array())
                    .map(Vec::as_slice)
                {
                    Some([lon, lat, ..]) => match (lon.as_f64(), lat.as_f64()) {
                        (Some(lon), Some(lat)) => ObsValue::Point([lon, lat]),
                        _ => ObsValue::Other,
                    },
                    _ => ObsValue::Other,
                }
            }
            _ => ObsValue::Other,
        }
    }
}

/// Most values one window or trend keeps for one entity. A rule that needs more (a
/// flood of observations into a long window) is disabled with this reason rather than
/// taking the process's memory.
pub(crate) const MAX_POINTS: usize = 100_000;

/// What moves a condition.
pub(crate) enum Input<'a> {
    Obs {
        attr: &'a str,
        t: i64,
        value: &'a ObsValue,
    },
    Tick(i64),
}

/// A change of a condition, at a time, with the value that caused it when there is one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Change {
    Raised(Option<f64>),
    Cleared(Option<f64>),
    Momentary(Option<f64>),
}

/// A failure that disables the rule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EvalError(pub String);

#[derive(Debug, Clone)]
pub(crate) enum Sig {
    Value,
    Rate {
        prev: Option<(i64, f64)>,
    },
    Window {
        buf: VecDeque<(i64, f64)>,
        next_close: Option<i64>,
        /// The first empty window after data was evaluated (later ones would say the
        /// same).
        empty_done: bool,
    },
    Forecast {
        buf: VecDeque<(i64, f64)>,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum State {
    Level {
        sig: Sig,
        active: bool,
        /// Since when the limit has been crossed, waiting for the hold time.
        pending: Option<i64>,
        last: Option<f64>,
    },
    Missing {
        last_seen: Option<i64>,
        active: bool,
    },
    Geo {
        inside: Option<bool>,
    },
    All {
        kids: Vec<State>,
        active: bool,
    },
    Any {
        kids: Vec<State>,
        active: bool,
    },
    Seq {
        kids: Vec<State>,
        progress: usize,
        started: i64,
    },
}

impl State {
    pub fn new(c: &Cond) -> State {
        match c {
            Cond::Level { signal, .. } => State::Level {
                sig: match signal {
                    Signal::Value => Sig::Value,
                    Signal::Rate { .. } => Sig::Rate { prev: None },
                    Signal::Window { .. } => Sig::Window {
                        buf: VecDeque::new(),
                        next_close: None,
                        empty_done: false,
                    },
                    Signal::Forecast { .. } => Sig::Forecast {
                        buf: VecDeque::new(),
                    },
                },
                active: false,
                pending: None,
                last: None,
            },
            Cond::Missing { .. } => State::Missing {
                last_seen: None,
                active: false,
            },
            Cond::Geofence { .. } => State::Geo { inside: None },
            Cond::All(of) => State::All {
                kids: of.iter().map(State::new).collect(),
                active: false,
            },
            Cond::Any(of) => State::Any {
                kids: of.iter().map(State::new).collect(),
                active: false,
            },
            Cond::Sequence { of, .. } => State::Seq {
                kids: of.iter().map(State::new).collect(),
                progress: 0,
                started: 0,
            },
        }
    }

    pub fn active(&self) -> bool {
        match self {
            State::Level { active, .. }
            | State::Missing { active, .. }
            | State::All { active, .. }
            | State::Any { active, .. } => *active,
            State::Geo { inside } => inside.unwrap_or(false),
            State::Seq { .. } => false,
        }
    }

    /// Applies `input`; changes are appended to `out` in time order.
    pub fn step(
        &mut self,
        c: &Cond,
        input: &Input,
        out: &mut Vec<(i64, Change)>,
    ) -> Result<(), EvalError> {
        match (self, c) {
            (
                State::Level {
                    sig,
                    active,
                    pending,
                    last,
                },
                Cond::Level {
                    attr,
                    signal,
                    limit,
                },
            ) => {
                let mut lv = LevelRef {
                    active,
                    pending,
                    last,
                    limit,
                    out,
                };
                match input {
                    Input::Obs { attr: a, t, value } if *a == attr.as_str() => {
                        let Some(v) = value.number() else {
                            return Ok(());
                        };
                        signal_obs(sig, signal, *t, v, &mut lv)?;
                        lv.check_hold(*t);
                    }
                    Input::Obs { .. } => {}
                    Input::Tick(now) => {
                        if let (Sig::Window { .. }, Signal::Window { .. }) = (&*sig, signal) {
                            close_windows(sig, signal, *now, &mut lv);
                        }
                        lv.check_hold(*now);
                    }
                }
                Ok(())
            }
            (State::Missing { last_seen, active }, Cond::Missing { attr, after }) => {
                match input {
                    Input::Obs { attr: a, t, .. } => {
                        if attr.as_deref().is_none_or(|want| want == *a) {
                            *last_seen = Some(last_seen.map_or(*t, |s| s.max(*t)));
                            if *active {
                                *active = false;
                                out.push((*t, Change::Cleared(None)));
                            }
                        }
                    }
                    Input::Tick(now) => {
                        if let Some(seen) = last_seen {
                            let due = seen.saturating_add(*after);
                            if !*active && due <= *now {
                                *active = true;
                                out.push((due, Change::Raised(None)));
                            }
                        }
                    }
                }
                Ok(())
            }
            (State::Geo { inside }, Cond::Geofence { attr, area, on }) => {
                if let Input::Obs { attr: a, t, value } = input {
                    if *a == attr.as_str() {
                        if let Some([lon, lat]) = value.point() {
                            let now_in = area_contains(area, lon, lat);
                            let before = *inside;
                            *inside = Some(now_in);
                            fence_change(*on, before, now_in, *t, out);
                        }
                    }
                }
                Ok(())
            }
            (State::All { kids, active }, Cond::All(of)) => {
                let at = step_kids(kids, of, input)?;
                let now_active = kids.iter().all(State::active);
                flip(active, now_active, at, out);
                Ok(())
            }
            (State::Any { kids, active }, Cond::Any(of)) => {
                let at = step_kids(kids, of, input)?;
                let now_active = kids.iter().any(State::active);
                flip(active, now_active, at, out);
                Ok(())
            }
            (
                State::Seq {
                    kids,
                    progress,
                    started,
                },
                Cond::Sequence { of, within },
            ) => {
                let mut changes: Vec<(i64, usize, Change)> = Vec::new();
                for (i, (k, kc)) in kids.iter_mut().zip(of).enumerate() {
                    let mut o = Vec::new();
                    k.step(kc, input, &mut o)?;
                    changes.extend(o.into_iter().map(|(t, ch)| (t, i, ch)));
                }
                changes.sort_by_key(|(t, i, _)| (*t, *i));
                for (t, i, ch) in changes {
                    let (Change::Raised(v) | Change::Momentary(v)) = ch else {
                        continue;
                    };
                    if *progress > 0 && t - *started > *within {
                        *progress = 0;
                    }
                    if i == 0 {
                        // A new first step starts the sequence afresh.
                        *progress = 1;
                        *started = t;
                    } else if i == *progress {
                        *progress += 1;
                    }
                    if *progress == of.len() {
                        *progress = 0;
                        out.push((t, Change::Momentary(v)));
                    }
                }
                Ok(())
            }
            _ => Err(EvalError(
                "internal: a state does not match its condition".into(),
            )),
        }
    }

    /// The next time a tick could change this state.
    pub fn deadline(&self, c: &Cond) -> Option<i64> {
        match (self, c) {
            (
                State::Level {
                    sig,
                    active,
                    pending,
                    last,
                },
                Cond::Level { limit, .. },
            ) => {
                let hold = match (pending, last) {
                    (Some(p), Some(v)) if !*active && limit.crossed(*v) => {
                        Some(p.saturating_add(limit.hold))
                    }
                    _ => None,
                };
                let window = match sig {
                    Sig::Window {
                        buf,
                        next_close,
                        empty_done,
                    } if !buf.is_empty() || !*empty_done => *next_close,
                    _ => None,
                };
                min_opt(hold, window)
            }
            (State::Missing { last_seen, active }, Cond::Missing { after, .. }) => {
                match (last_seen, active) {
                    (Some(s), false) => Some(s.saturating_add(*after)),
                    _ => None,
                }
            }
            (State::All { kids, .. } | State::Any { kids, .. }, Cond::All(of) | Cond::Any(of)) => {
                kids_deadline(kids, of)
            }
            (State::Seq { kids, .. }, Cond::Sequence { of, .. }) => kids_deadline(kids, of),
            _ => None,
        }
    }
}

fn kids_deadline(kids: &[State], of: &[Cond]) -> Option<i64> {
    kids.iter()
        .zip(of)
        .fold(None, |acc, (k, c)| min_opt(acc, k.deadline(c)))
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Steps every child; answers the time of the latest child change (or the input's).
fn step_kids(kids: &mut [State], of: &[Cond], input: &Input) -> Result<i64, EvalError> {
    let mut at = match input {
        Input::Obs { t, .. } => *t,
        Input::Tick(now) => *now,
    };
    let mut latest: Option<i64> = None;
    for (k, c) in kids.iter_mut().zip(of) {
        let mut o = Vec::new();
        k.step(c, input, &mut o)?;
        if let Some((t, _)) = o.last() {
            latest = Some(latest.map_or(*t, |l: i64| l.max(*t)));
        }
    }
    if let Some(l) = latest {
        at = l;
    }
    Ok(at)
}

fn flip(active: &mut bool, now_active: bool, at: i64, out: &mut Vec<(i64, Change)>) {
    if now_active != *active {
        *active = now_active;
        out.push((
            at,
            if now_active {
                Change::Raised(None)
            } else {
                Change::Cleared(None)
            },
        ));
    }
}

fn fence_change(
    on: Fence,
    before: Option<bool>,
    now_in: bool,
    t: i64,
    out: &mut Vec<(i64, Change)>,
) {
    match on {
        Fence::Enter if before == Some(false) && now_in => out.push((t, Change::Momentary(None))),
        Fence::Exit if before == Some(true) && !now_in => out.push((t, Change::Momentary(None))),
        Fence::Inside | Fence::Outside => {
            let want = on == Fence::Inside;
            let was = before.map(|b| b == want).unwrap_or(false);
            let is = now_in == want;
            if is && !was {
                out.push((t, Change::Raised(None)));
            } else if !is && was {
                out.push((t, Change::Cleared(None)));
            }
        }
        _ => {}
    }
}

/// Mean Earth radius (IUGG), metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

pub(crate) fn area_contains(area: &Area, lon: f64, lat: f64) -> bool {
    match area {
        Area::Polygons(m) => m.contains(&Point::new(lon, lat)),
        Area::Circle {
            lon: clon,
            lat: clat,
            radius_m,
        } => {
            let (p1, p2) = (clat.to_radians(), lat.to_radians());
            let dp = p2 - p1;
            let dl = (lon - clon).to_radians();
            let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
            let d = 2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin();
            d <= *radius_m
        }
    }
}

/// The level bookkeeping of one condition (shared by every signal).
struct LevelRef<'a> {
    active: &'a mut bool,
    pending: &'a mut Option<i64>,
    last: &'a mut Option<f64>,
    limit: &'a Limit,
    out: &'a mut Vec<(i64, Change)>,
}

impl LevelRef<'_> {
    /// One sample of the signal at `t`.
    fn sample(&mut self, t: i64, v: f64) {
        *self.last = Some(v);
        if *self.active {
            if self.limit.cleared(v) {
                *self.active = false;
                self.out.push((t, Change::Cleared(Some(v))));
            }
            return;
        }
        if !self.limit.crossed(v) {
            *self.pending = None;
            return;
        }
        if self.limit.hold == 0 {
            *self.active = true;
            self.out.push((t, Change::Raised(Some(v))));
        } else if self.pending.is_none() {
            *self.pending = Some(t);
        }
    }

    /// Raises when the limit has stayed crossed for the hold time by `now`.
    fn check_hold(&mut self, now: i64) {
        if *self.active {
            return;
        }
        if let (Some(p), Some(v)) = (*self.pending, *self.last) {
            let due = p.saturating_add(self.limit.hold);
            if self.limit.crossed(v) && due <= now {
                *self.active = true;
                *self.pending = None;
                self.out.push((due, Change::Raised(Some(v))));
            }
        }
    }
}

fn signal_obs(
    sig: &mut Sig,
    signal: &Signal,
    t: i64,
    v: f64,
    lv: &mut LevelRef,
) -> Result<(), EvalError> {
    match (&mut *sig, signal) {
        (Sig::Value, _) => lv.sample(t, v),
        (Sig::Rate { prev }, Signal::Rate { per }) => {
            match *prev {
                Some((tp, vp)) if t > tp => {
                    let rate = (v - vp) * (*per as f64) / ((t - tp) as f64);
                    *prev = Some((t, v));
                    lv.sample(t, rate);
                }
                Some((tp, _)) if t <= tp => {} // late or repeated: ignored
                _ => *prev = Some((t, v)),
            }
        }
        (Sig::Window { .. }, Signal::Window { slide, .. }) => {
            // Windows that end before this value close first.
            close_windows(sig, signal, t, lv);
            if let Sig::Window {
                buf,
                next_close,
                empty_done,
            } = sig
            {
                match *next_close {
                    None => {
                        *next_close = Some(t.div_euclid(*slide).saturating_add(1) * slide);
                        *empty_done = false;
                    }
                    // Late: its window has closed.
                    Some(nc) if t < nc - slide => return Ok(()),
                    Some(_) => {}
                }
                if buf.len() >= MAX_POINTS {
                    return Err(EvalError(format!(
                        "a window holds more than {MAX_POINTS} values for one entity"
                    )));
                }
                buf.push_back((t, v));
            }
        }
        (Sig::Forecast { buf }, Signal::Forecast { window, horizon }) => {
            while buf
                .front()
                .is_some_and(|(ft, _)| *ft < t.saturating_sub(*window))
            {
                buf.pop_front();
            }
            if buf.back().is_some_and(|(bt, _)| *bt > t) {
                return Ok(()); // out of order
            }
            if buf.len() >= MAX_POINTS {
                return Err(EvalError(format!(
                    "a trend window holds more than {MAX_POINTS} values for one entity"
                )));
            }
            buf.push_back((t, v));
            if let Some(p) = predict(buf, t.saturating_add(*horizon)) {
                lv.sample(t, p);
            }
        }
        _ => {
            return Err(EvalError(
                "internal: a signal state does not match its signal".into(),
            ))
        }
    }
    Ok(())
}

/// Closes every window that ends at or before `upto`, sampling its aggregate.
fn close_windows(sig: &mut Sig, signal: &Signal, upto: i64, lv: &mut LevelRef) {
    let (
        Sig::Window {
            buf,
            next_close,
            empty_done,
        },
        Signal::Window {
            window,
            slide,
            agg,
            percentile,
        },
    ) = (sig, signal)
    else {
        return;
    };
    while let Some(b) = *next_close {
        if b > upto {
            break;
        }
        let start = b.saturating_sub(*window);
        let vals: Vec<f64> = buf
            .iter()
            .filter(|(t, _)| *t >= start && *t < b)
            .map(|(_, v)| *v)
            .collect();
        if vals.is_empty() {
            if !*empty_done {
                *empty_done = true;
                if let Some(a) = aggregate(*agg, *percentile, &vals) {
                    lv.sample(b, a);
                }
            }
            match buf.front() {
                // Jump to the first window that holds the next value.
                Some((ft, _)) => {
                    let first = ft.div_euclid(*slide).saturating_add(1) * slide;
                    *next_close = Some(first.max(b + slide));
                }
                None => {
                    *next_close = None;
                }
            }
            continue;
        }
        *empty_done = false;
        if let Some(a) = aggregate(*agg, *percentile, &vals) {
            lv.sample(b, a);
        }
        let next = b + slide;
        while buf
            .front()
            .is_some_and(|(t, _)| *t < next.saturating_sub(*window))
        {
            buf.pop_front();
        }
        *next_close = Some(next);
    }
}

fn aggregate(agg: Agg, p: f64, vals: &[f64]) -> Option<f64> {
    let n = vals.len();
    match agg {
        Agg::Count => Some(n as f64),
        Agg::Sum => Some(vals.iter().sum()),
        _ if n == 0 => None,
        Agg::Mean => Some(vals.iter().sum::<f64>() / n as f64),
        Agg::Min => vals.iter().copied().reduce(f64::min),
        Agg::Max => vals.iter().copied().reduce(f64::max),
        Agg::Percentile => {
            let mut s = vals.to_vec();
            s.sort_by(f64::total_cmp);
            // Nearest rank.
            let rank = ((p / 100.0) * n as f64).ceil().clamp(1.0, n as f64) as usize;
            Some(s[rank - 1])
        }
    }
}

/// The least-squares line through `buf`, evaluated at `at`.
fn predict(buf: &VecDeque<(i64, f64)>, at: i64) -> Option<f64> {
    let n = buf.len();
    if n < 2 {
        return None;
    }
    let t0 = buf.front()?.0;
    let xs = buf.iter().map(|(t, _)| (t - t0) as f64);
    let mx = xs.clone().sum::<f64>() / n as f64;
    let my = buf.iter().map(|(_, v)| *v).sum::<f64>() / n as f64;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, (_, y)) in xs.zip(buf) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    if sxx == 0.0 {
        return None;
    }
    let slope = sxy / sxx;
    let p = my + slope * ((at - t0) as f64 - mx);
    p.is_finite().then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_and_nearest_rank_percentile() {
        let v = [3.0, 1.0, 2.0, 10.0];
        assert_eq!(aggregate(Agg::Count, 0.0, &v), Some(4.0));
        assert_eq!(aggregate(Agg::Mean, 0.0, &v), Some(4.0));
        assert_eq!(aggregate(Agg::Max, 0.0, &v), Some(10.0));
        assert_eq!(aggregate(Agg::Min, 0.0, &v), Some(1.0));
        assert_eq!(aggregate(Agg::Percentile, 50.0, &v), Some(2.0));
        assert_eq!(aggregate(Agg::Percentile, 95.0, &v), Some(10.0));
        assert_eq!(aggregate(Agg::Mean, 0.0, &[]), None);
        assert_eq!(aggregate(Agg::Count, 0.0, &[]), Some(0.0));
    }

    #[test]
    fn a_line_is_predicted_exactly() {
        let buf: VecDeque<(i64, f64)> = (0..5).map(|i| (i * 1000, 2.0 * i as f64)).collect();
        assert_eq!(predict(&buf, 10_000), Some(20.0));
        let flat: VecDeque<(i64, f64)> = [(5, 1.0), (5, 2.0)].into_iter().collect();
        assert_eq!(predict(&flat, 10), None);
    }

    #[test]
    fn circles_measure_metres() {
        let c = Area::Circle {
            lon: 116.39,
            lat: 39.91,
            radius_m: 500.0,
        };
        // ~0.004 degrees of latitude is ~445 m.
        assert!(area_contains(&c, 116.39, 39.914));
        assert!(!area_contains(&c, 116.39, 39.916));
    }
}
