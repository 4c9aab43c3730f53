//! `rules`: the rule engine in process (issue #5, point 9). 10,000 active rules over a
//! stream of observations of 10,000 entities (10 types × 1,000, 10 numeric attributes,
//! values random walks between 0 and 100), event time advancing 10 µs per observation
//! (100,000 observations per second of event time) with a clock tick every second:
//!
//! - 9,000 rules on single entities: 6,000 thresholds with hysteresis, 1,500 rates,
//!   1,000 tumbling-window means, 500 missing-data heartbeats;
//! - 1,000 rules on whole types: 600 thresholds narrowed by an id prefix (a tenth of
//!   the type), 200 sliding-window 95th percentiles, 200 `all` composites of two
//!   thresholds.
//!
//! It measures observations per second through one engine (one core), the time of one
//! `observe` call (p50/p99/max), and the events raised.

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use citybrain_rules::{parse_rules, Engine, ObsValue, Observation};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

pub(crate) const TYPES: usize = 10;
pub(crate) const PER_TYPE: usize = 1_000;
pub(crate) const ATTRS: usize = 10;

pub(crate) fn entity(i: usize) -> String {
    format!("urn:ngsi-ld:T{}:e{:04}", i % TYPES, i / TYPES)
}

pub(crate) fn rules_yaml() -> String {
    let mut out = String::new();
    let mut push = |id: String, sel: String, when: String| {
        out.push_str(&format!(
            "- {{id: {id}, category: bench, for: {sel}, when: {when}}}\n"
        ));
    };
    let n_entities = TYPES * PER_TYPE;
    for i in 0..9_000 {
        let e = entity((i * 7) % n_entities);
        let ty = format!("T{}", (i * 7) % n_entities % TYPES);
        let a = format!("a{}", i % ATTRS);
        let sel = format!("{{type: {ty}, ids: [\"{e}\"]}}");
        let when = match i % 18 {
            0..=11 => format!("{{kind: threshold, attr: {a}, above: 90, clear: 80}}"),
            12..=14 => format!("{{kind: rate, attr: {a}, per: 1s, above: 5}}"),
            15 | 16 => format!("{{kind: window, attr: {a}, window: 10s, agg: mean, above: 70}}"),
            _ => "{kind: missing, after: 30s}".to_string(),
        };
        push(format!("e{i}"), sel, when);
    }
    for i in 0..1_000 {
        let ty = format!("T{}", i % TYPES);
        let a = format!("a{}", (i / TYPES) % ATTRS);
        let b = format!("a{}", (i / TYPES + 1) % ATTRS);
        let (sel, when) = match i % 5 {
            0..=2 => (
                format!("{{type: {ty}, id_prefix: \"urn:ngsi-ld:{ty}:e0{}\"}}", i % 10),
                format!("{{kind: threshold, attr: {a}, above: 95}}"),
            ),
            3 => (
                format!("{{type: {ty}}}"),
                format!(
                    "{{kind: window, attr: {a}, window: 10s, slide: 5s, agg: percentile, percentile: 95, above: 99}}"
                ),
            ),
            _ => (
                format!("{{type: {ty}}}"),
                format!(
                    "{{kind: all, of: [{{kind: threshold, attr: {a}, above: 90}}, {{kind: threshold, attr: {b}, above: 90}}]}}"
                ),
            ),
        };
        push(format!("t{i}"), sel, when);
    }
    out
}

/// A small deterministic generator (xorshift), so runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

pub fn run(observations: usize) -> anyhow::Result<Value> {
    let mut engine = Engine::new();
    let specs = parse_rules(&rules_yaml(), "bench")?;
    let n_rules = specs.len();
    for s in specs {
        engine.put(s)?;
    }
    let n_entities = TYPES * PER_TYPE;
    let ids: Vec<String> = (0..n_entities).map(entity).collect();
    let types: Vec<String> = (0..TYPES).map(|t| format!("T{t}")).collect();
    let attrs: Vec<String> = (0..ATTRS).map(|a| format!("a{a}")).collect();
    let mut values = vec![50.0f64; n_entities * ATTRS];
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let t0: DateTime<Utc> = DateTime::from_timestamp(1_772_323_200, 0).unwrap_or_default();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    let (mut raised, mut cleared, mut momentary) = (0u64, 0u64, 0u64);
    let mut count = |evs: &[citybrain_rules::Event]| {
        for e in evs {
            match e.kind {
                citybrain_rules::EventKind::Raised => raised += 1,
                citybrain_rules::EventKind::Cleared => cleared += 1,
                citybrain_rules::EventKind::Momentary => momentary += 1,
            }
        }
    };
    let mut next_tick = 1_000_000i64; // µs
    let start = Instant::now();
    for i in 0..observations {
        let at_us = i as i64 * 10;
        if at_us >= next_tick {
            let evs = engine.tick(t0 + Duration::microseconds(next_tick));
            count(&evs);
            next_tick += 1_000_000;
        }
        let r = rng.next();
        let e = (r % n_entities as u64) as usize;
        let a = ((r >> 20) % ATTRS as u64) as usize;
        let step = ((r >> 40) % 1000) as f64 / 1000.0 * 6.0 - 3.0;
        let v = &mut values[e * ATTRS + a];
        *v = (*v + step).clamp(0.0, 100.0);
        let obs = Observation {
            entity: &ids[e],
            entity_type: &types[e % TYPES],
            attr: &attrs[a],
            at: t0 + Duration::microseconds(at_us),
            value: ObsValue::Number(*v),
        };
        let t = Instant::now();
        let evs = engine.observe(&obs);
        let _ = hist.record(t.elapsed().as_nanos().max(1) as u64);
        count(&evs);
    }
    let secs = start.elapsed().as_secs_f64();
    let rate = observations as f64 / secs;
    let status = engine.status();
    let disabled = status.iter().filter(|s| !s.enabled).count();
    let states: usize = status.iter().map(|s| s.entities).sum();
    eprintln!(
        "rules: {n_rules} rules, {observations} observations in {secs:.2} s = {rate:.0}/s on one core; observe p50 {:.1} µs p99 {:.1} µs max {:.1} µs; events raised {raised}, cleared {cleared}, momentary {momentary}; {states} rule states; {disabled} disabled",
        hist.value_at_quantile(0.5) as f64 / 1e3,
        hist.value_at_quantile(0.99) as f64 / 1e3,
        hist.max() as f64 / 1e3,
    );
    Ok(json!({
        "rules": n_rules,
        "observations": observations,
        "seconds": secs,
        "observations_per_sec": rate.round(),
        "observe_p50_us": hist.value_at_quantile(0.5) as f64 / 1e3,
        "observe_p99_us": hist.value_at_quantile(0.99) as f64 / 1e3,
        "observe_max_us": hist.max() as f64 / 1e3,
        "events": {"raised": raised, "cleared": cleared, "momentary": momentary},
        "rule_states": states,
        "disabled": disabled,
    }))
}
