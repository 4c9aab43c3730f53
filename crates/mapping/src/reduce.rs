//! Edge pre-aggregation: per-source rules that thin a sensor stream before it is stored
//! or forwarded. Deadband (report by exception, with a heartbeat), tumbling windows
//! (mean/min/max/last) and downsampling. Rules run on event time (`observedAt`), so a
//! replay of the same stream gives the same output.

use std::collections::HashMap;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Number, Value};

use crate::mapping::spec::ReduceSpec;
use crate::mapping::{MappedAttr, MappedRecord, MappedValue};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    Mean,
    Min,
    Max,
    Last,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Deadband {
        abs: Option<f64>,
        pct: Option<f64>,
        heartbeat_ms: Option<i64>,
    },
    Window {
        ms: i64,
        agg: Agg,
    },
    Downsample {
        ms: i64,
    },
}

/// A compiled rule.
#[derive(Debug, Clone, PartialEq)]
pub struct ReduceRule {
    /// Attribute names; empty means every numeric attribute.
    pub attrs: Vec<String>,
    pub mode: Mode,
}

fn duration_ms(field: &str, s: &str) -> Result<i64, (String, String)> {
    let d = citybrain_model::duration::IsoDuration::parse(field, s)
        .map_err(|e| (field.to_string(), e.to_string()))?;
    let ms = d.approx_millis();
    if ms <= 0 {
        return Err((field.to_string(), format!("'{s}' must be longer than zero")));
    }
    Ok(ms)
}

impl ReduceRule {
    /// Validates a rule; errors are (field, message).
    pub fn compile(r: &ReduceSpec) -> Result<ReduceRule, (String, String)> {
        if r.attributes.is_empty() {
            return Err((
                "attributes".into(),
                "name at least one attribute or '*'".into(),
            ));
        }
        let attrs = if r.attributes.iter().any(|a| a == "*") {
            Vec::new()
        } else {
            r.attributes.clone()
        };
        let deadband = r.deadband.is_some() || r.deadband_percent.is_some();
        let modes = [deadband, r.window.is_some(), r.downsample.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if modes != 1 {
            return Err((
                "deadband".into(),
                "a rule is one of: deadband (and/or deadband_percent), window, downsample".into(),
            ));
        }
        for (k, v) in [
            ("deadband", r.deadband),
            ("deadband_percent", r.deadband_percent),
        ] {
            if v.is_some_and(|x| !x.is_finite() || x < 0.0) {
                return Err((k.into(), "must be a non-negative number".into()));
            }
        }
        if r.heartbeat.is_some() && !deadband {
            return Err((
                "heartbeat".into(),
                "a heartbeat goes with a deadband".into(),
            ));
        }
        if r.aggregate.is_some() && r.window.is_none() {
            return Err(("aggregate".into(), "an aggregate goes with a window".into()));
        }
        let mode = if deadband {
            Mode::Deadband {
                abs: r.deadband,
                pct: r.deadband_percent,
                heartbeat_ms: r
                    .heartbeat
                    .as_deref()
                    .map(|h| duration_ms("heartbeat", h))
                    .transpose()?,
            }
        } else if let Some(w) = &r.window {
            Mode::Window {
                ms: duration_ms("window", w)?,
                agg: match r.aggregate.as_deref().unwrap_or("mean") {
                    "mean" | "avg" => Agg::Mean,
                    "min" => Agg::Min,
                    "max" => Agg::Max,
                    "last" => Agg::Last,
                    x => {
                        return Err((
                            "aggregate".into(),
                            format!("'{x}' is not mean, min, max or last"),
                        ))
                    }
                },
            }
        } else {
            Mode::Downsample {
                ms: duration_ms("downsample", r.downsample.as_deref().unwrap_or_default())?,
            }
        };
        Ok(ReduceRule { attrs, mode })
    }

    fn applies(&self, name: &str) -> bool {
        self.attrs.is_empty() || self.attrs.iter().any(|a| a == name)
    }
}

#[derive(Debug, Clone, Default)]
struct State {
    last_value: f64,
    last_ms: i64,
    has_last: bool,
    // window accumulation
    bucket: i64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    last_in: f64,
    /// The attribute as last seen (unit code, datasetId) to emit a window with, and
    /// its entity's type.
    template: Option<(MappedAttr, String)>,
}

impl State {
    fn window_value(&self, agg: Agg) -> f64 {
        match agg {
            Agg::Mean => self.sum / self.count.max(1) as f64,
            Agg::Min => self.min,
            Agg::Max => self.max,
            Agg::Last => self.last_in,
        }
    }
}

/// Counts of what reduction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReduceStats {
    pub values_in: u64,
    pub values_out: u64,
}

/// Reduction state of one source: per (entity, attribute) stream.
#[derive(Debug, Default)]
pub struct Reducer {
    rules: Vec<ReduceRule>,
    state: HashMap<(String, Arc<str>), State>,
    pub stats: ReduceStats,
}

fn numeric(a: &MappedAttr) -> Option<f64> {
    match &a.value {
        MappedValue::Property(v) => v.as_f64(),
        _ => None,
    }
}

impl Reducer {
    pub fn new(rules: Vec<ReduceRule>) -> Self {
        Self {
            rules,
            ..Default::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule keeps windows open (and so needs a timer).
    pub fn has_windows(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r.mode, Mode::Window { .. }))
    }

    /// Thins one mapped record in place; answers whether any attribute is left to
    /// write.
    pub fn apply(&mut self, rec: &mut MappedRecord, now: DateTime<Utc>) -> bool {
        if self.rules.is_empty() {
            return true;
        }
        let mut out: Vec<MappedAttr> = Vec::with_capacity(rec.attrs.len());
        for attr in std::mem::take(&mut rec.attrs) {
            let (Some(rule), Some(v)) = (
                self.rules.iter().find(|r| r.applies(&attr.name)),
                numeric(&attr),
            ) else {
                out.push(attr);
                continue;
            };
            self.stats.values_in += 1;
            let t = attr.observed.unwrap_or(now).timestamp_millis();
            let st = self
                .state
                .entry((rec.id.clone(), attr.name.clone()))
                .or_default();
            let keep: Option<MappedAttr> = match &rule.mode {
                Mode::Deadband {
                    abs,
                    pct,
                    heartbeat_ms,
                } => {
                    let delta = (v - st.last_value).abs();
                    let moved = !st.has_last
                        || abs.is_some_and(|a| delta > a)
                        || pct.is_some_and(|p| delta > p * st.last_value.abs())
                        || heartbeat_ms.is_some_and(|h| t - st.last_ms >= h);
                    if moved {
                        st.last_value = v;
                        st.last_ms = t;
                        st.has_last = true;
                        Some(attr)
                    } else {
                        None
                    }
                }
                Mode::Downsample { ms } => {
                    let bucket = t.div_euclid(*ms);
                    if !st.has_last || bucket != st.bucket {
                        st.bucket = bucket;
                        st.has_last = true;
                        Some(attr)
                    } else {
                        None
                    }
                }
                Mode::Window { ms, agg } => {
                    let bucket = t.div_euclid(*ms);
                    let closed = if st.count > 0 && bucket != st.bucket {
                        window_attr(st, *ms, *agg)
                    } else {
                        None
                    };
                    if st.count == 0 || bucket != st.bucket {
                        st.bucket = bucket;
                        st.count = 0;
                        st.sum = 0.0;
                        st.min = f64::INFINITY;
                        st.max = f64::NEG_INFINITY;
                    }
                    st.count += 1;
                    st.sum += v;
                    st.min = st.min.min(v);
                    st.max = st.max.max(v);
                    st.last_in = v;
                    st.template = Some((attr, rec.ty.clone()));
                    closed
                }
            };
            if let Some(a) = keep {
                self.stats.values_out += 1;
                out.push(a);
            }
        }
        rec.attrs = out;
        !rec.attrs.is_empty()
    }

    /// Emits every open window (end of an import) as records, and forgets them.
    pub fn flush(&mut self) -> Vec<MappedRecord> {
        self.flush_before(i64::MAX)
    }

    /// Emits the open windows that ended at or before `cutoff_ms` (a timer in the
    /// server: a sensor that goes quiet still gets its last window written).
    pub fn flush_before(&mut self, cutoff_ms: i64) -> Vec<MappedRecord> {
        let mut by_entity: HashMap<String, MappedRecord> = HashMap::new();
        for ((id, name), st) in self.state.iter_mut() {
            let Some(rule) = self.rules.iter().find(|r| r.applies(name)) else {
                continue;
            };
            if let Mode::Window { ms, agg } = rule.mode {
                let end = (st.bucket + 1).saturating_mul(ms);
                if st.count == 0 || end > cutoff_ms {
                    continue;
                }
                if let (Some(a), Some((_, ty))) = (window_attr(st, ms, agg), &st.template) {
                    self.stats.values_out += 1;
                    by_entity
                        .entry(id.clone())
                        .or_insert_with(|| MappedRecord {
                            id: id.clone(),
                            ty: ty.clone(),
                            attrs: Vec::new(),
                        })
                        .attrs
                        .push(a);
                }
                st.count = 0;
            }
        }
        let mut out: Vec<MappedRecord> = by_entity.into_values().collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

/// The aggregate of a closed window as an attribute, observed at the window's start.
fn window_attr(st: &State, ms: i64, agg: Agg) -> Option<MappedAttr> {
    let (template, _) = st.template.as_ref()?;
    let mut a = template.clone();
    a.value = MappedValue::Property(Number::from_f64(st.window_value(agg)).map(Value::Number)?);
    a.observed = DateTime::from_timestamp_millis(st.bucket * ms);
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use citybrain_model::time::{Clock as _, SystemClock};
    use serde_json::json;

    fn rule(toml_src: &str) -> ReduceRule {
        let spec: ReduceSpec = toml::from_str(toml_src).unwrap();
        ReduceRule::compile(&spec).unwrap()
    }

    fn obs(v: f64, sec: i64) -> MappedRecord {
        MappedRecord {
            id: "urn:x:1".into(),
            ty: "T".into(),
            attrs: vec![MappedAttr {
                name: Arc::from("temperature"),
                value: MappedValue::Property(json!(v)),
                observed: DateTime::from_timestamp(1_700_000_000 + sec, 0),
                unit: None,
                dataset_id: None,
            }],
        }
    }

    #[test]
    fn deadband_with_heartbeat() {
        let mut r = Reducer::new(vec![rule(
            "attributes = ['temperature']\ndeadband = 0.5\nheartbeat = 'PT60S'",
        )]);
        let now = SystemClock.now_precise();
        let kept: Vec<bool> = [(20.0, 0), (20.2, 10), (20.6, 20), (20.7, 30), (20.7, 80)]
            .iter()
            .map(|(v, s)| r.apply(&mut obs(*v, *s), now))
            .collect();
        assert_eq!(kept, vec![true, false, true, false, true]);
        assert_eq!(
            r.stats,
            ReduceStats {
                values_in: 5,
                values_out: 3
            }
        );
    }

    #[test]
    fn tumbling_window_mean_and_flush() {
        let mut r = Reducer::new(vec![rule("attributes = ['*']\nwindow = 'PT1M'")]);
        let now = SystemClock.now_precise();
        // 1_700_000_000 is 20s into a minute: seconds 0..39 fall in one window.
        let mut outs = Vec::new();
        for (v, s) in [(1.0, 0), (3.0, 30), (10.0, 45), (20.0, 50)] {
            let mut b = obs(v, s);
            if r.apply(&mut b, now) {
                outs.push(b);
            }
        }
        assert_eq!(outs.len(), 1);
        let j = outs[0].to_json();
        assert_eq!(j["temperature"]["value"], json!(2.0));
        assert_eq!(j["temperature"]["observedAt"], "2023-11-14T22:13:00Z");
        // The window of seconds 40..99 ends at 1_700_000_040 + 60 s.
        assert!(r.flush_before(1_700_000_099_999).is_empty());
        let rest = r.flush_before(1_700_000_100_000);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].to_json()["temperature"]["value"], json!(15.0));
        assert_eq!(rest[0].ty, "T");
        assert!(r.flush().is_empty());
    }

    #[test]
    fn downsample() {
        let mut r = Reducer::new(vec![rule(
            "attributes = ['temperature']\ndownsample = 'PT30S'",
        )]);
        let now = SystemClock.now_precise();
        let kept: Vec<bool> = [0, 5, 9, 10, 39, 40]
            .iter()
            .map(|s| r.apply(&mut obs(1.0, *s), now))
            .collect();
        // buckets of 30 s aligned to the epoch: 1_700_000_000 is 20 s into one.
        assert_eq!(kept, vec![true, false, false, true, false, true]);
    }

    #[test]
    fn invalid_rules() {
        for bad in [
            "attributes = []\ndeadband = 1.0",
            "attributes = ['a']",
            "attributes = ['a']\ndeadband = 1.0\nwindow = 'PT1M'",
            "attributes = ['a']\ndeadband = -1.0",
            "attributes = ['a']\nwindow = 'PT1M'\naggregate = 'median'",
            "attributes = ['a']\ndownsample = 'PT0S'",
            "attributes = ['a']\nwindow = 'one minute'",
            "attributes = ['a']\ndownsample = 'PT1M'\nheartbeat = 'PT1M'",
        ] {
            let spec: ReduceSpec = toml::from_str(bad).unwrap();
            assert!(ReduceRule::compile(&spec).is_err(), "{bad}");
        }
    }
}
