//! Rules as written (YAML or JSON) and their validation. A rule that loads is valid:
//! every error names the offending field (`when.of[1].above: ...`), and unknown keys
//! are refused, so a typo never silently disables a condition.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::error::RuleError;

/// How serious the events of a rule are (incidents inherit it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// One rule, as submitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique within a tenant: letters, digits, `-`, `_`, `.`.
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// What kind of problem it finds (`air-quality`, `flooding`): incidents are routed
    /// to a department by category.
    pub category: String,
    #[serde(default = "default_severity")]
    pub severity: Severity,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Which entities the rule watches.
    #[serde(rename = "for")]
    pub select: Selector,
    pub when: Condition,
    /// The condition in emergency mode (other thresholds, say), when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emergency: Option<Condition>,
}

fn default_severity() -> Severity {
    Severity::Medium
}

fn default_true() -> bool {
    true
}

/// The entities a rule watches: a type, optionally narrowed to some ids or an id
/// prefix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_prefix: Option<String>,
}

/// Aggregates over a window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Agg {
    Count,
    Mean,
    Min,
    Max,
    Sum,
    /// The `percentile` of the window's values (nearest rank).
    Percentile,
}

/// Where a geofence reacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fence {
    /// A momentary event when the entity moves from outside to inside.
    Enter,
    /// A momentary event when it moves from inside to outside.
    Exit,
    /// Active while inside.
    Inside,
    /// Active while outside.
    Outside,
}

/// A circle on the ground: `[lon, lat]` and a radius in metres.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Circle {
    pub center: [f64; 2],
    pub radius_m: f64,
}

/// What a rule looks for in one entity's observations.
///
/// Limits (threshold, rate, window, forecast): `above` or `below` (exactly one), with
/// hysteresis (`clear`: the level back across which an active condition clears; by
/// default the limit itself) and a hold time (`hold`: how long the limit must stay
/// crossed before the condition raises).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// The attribute's latest value against a limit.
    Threshold {
        attr: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        above: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        below: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clear: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hold: Option<String>,
    },
    /// The change of the attribute per `per` (from one observation to the next).
    Rate {
        attr: String,
        per: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        above: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        below: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clear: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hold: Option<String>,
    },
    /// An aggregate over a time window of the attribute's values: tumbling windows of
    /// `window`, or sliding ones advancing by `slide`; evaluated when a window closes
    /// (in event time: an observation or a clock tick past its end).
    Window {
        attr: String,
        window: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slide: Option<String>,
        agg: Agg,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        percentile: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        above: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        below: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clear: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hold: Option<String>,
    },
    /// No observation (of `attr`, or of any attribute) for `after`: active until the
    /// next one. Only entities seen once are watched.
    Missing {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attr: Option<String>,
        after: String,
    },
    /// A position (GeoJSON Point in `attr`, `location` by default) against an area: a
    /// GeoJSON Polygon or MultiPolygon, or a circle.
    Geofence {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attr: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        area: Option<serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        circle: Option<Circle>,
        on: Fence,
    },
    /// The value predicted `horizon` ahead by a least-squares line through the last
    /// `window` of values, against a limit.
    Forecast {
        attr: String,
        window: String,
        horizon: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        above: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        below: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clear: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hold: Option<String>,
    },
    /// Active while every sub-condition is.
    All { of: Vec<Condition> },
    /// Active while any sub-condition is.
    Any { of: Vec<Condition> },
    /// A momentary event when the sub-conditions raise in this order, all within
    /// `within` of the first.
    Sequence { of: Vec<Condition>, within: String },
}

impl Condition {
    /// Whether the condition has a state (raised, then cleared) rather than momentary
    /// events.
    pub fn is_stateful(&self) -> bool {
        match self {
            Condition::Geofence { on, .. } => matches!(on, Fence::Inside | Fence::Outside),
            Condition::Sequence { .. } => false,
            _ => true,
        }
    }

    /// The attributes the condition reads (`None` in the set: any attribute).
    pub fn attrs(&self, out: &mut BTreeSet<Option<String>>) {
        match self {
            Condition::Threshold { attr, .. }
            | Condition::Rate { attr, .. }
            | Condition::Window { attr, .. }
            | Condition::Forecast { attr, .. } => {
                out.insert(Some(attr.clone()));
            }
            Condition::Missing { attr, .. } => {
                out.insert(attr.clone());
            }
            Condition::Geofence { attr, .. } => {
                out.insert(Some(attr.clone().unwrap_or_else(|| "location".into())));
            }
            Condition::All { of } | Condition::Any { of } | Condition::Sequence { of, .. } => {
                for c in of {
                    c.attrs(out);
                }
            }
        }
    }
}

impl RuleSpec {
    /// The rule as it runs in emergency mode: `emergency` in place of `when`.
    pub fn for_emergency(&self) -> RuleSpec {
        let mut out = self.clone();
        if let Some(e) = out.emergency.take() {
            out.when = e;
        }
        out
    }

    /// The rule with its entity type and attribute names passed through `f` (the hub
    /// expands short names with an `@context`).
    pub fn map_names(&self, f: &dyn Fn(&str) -> String) -> RuleSpec {
        let mut out = self.clone();
        out.select.ty = f(&out.select.ty);
        out.when.map_names(f);
        if let Some(e) = out.emergency.as_mut() {
            e.map_names(f);
        }
        out
    }
}

impl Condition {
    fn map_names(&mut self, f: &dyn Fn(&str) -> String) {
        match self {
            Condition::Threshold { attr, .. }
            | Condition::Rate { attr, .. }
            | Condition::Window { attr, .. }
            | Condition::Forecast { attr, .. } => *attr = f(attr),
            Condition::Missing { attr, .. } => {
                if let Some(a) = attr {
                    *a = f(a);
                }
            }
            Condition::Geofence { attr, .. } => {
                *attr = Some(f(attr.as_deref().unwrap_or("location")));
            }
            Condition::All { of } | Condition::Any { of } | Condition::Sequence { of, .. } => {
                for c in of {
                    c.map_names(f);
                }
            }
        }
    }
}

/// Parses one rule or a list of rules from YAML (JSON is YAML too). `source` names the
/// text in errors.
pub fn parse_rules(text: &str, source: &str) -> Result<Vec<RuleSpec>, RuleError> {
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)
        .map_err(|e| RuleError::new(source, format!("not YAML/JSON: {e}")))?;
    let list = match v {
        serde_yaml_ng::Value::Sequence(items) => items,
        other => vec![other],
    };
    list.into_iter()
        .enumerate()
        .map(|(i, item)| {
            serde_yaml_ng::from_value::<RuleSpec>(item)
                .map_err(|e| RuleError::new(&format!("{source}[{i}]"), e.to_string()))
        })
        .collect()
}

/// The longest duration a rule may name (about a century, in milliseconds): window and
/// horizon arithmetic on timestamps stays far from overflow.
pub const MAX_DURATION_MS: i64 = 3_200_000_000_000;

/// Parses a duration: `500ms`, `30s`, `5m`, `2h`, `1d` or ISO 8601 (`PT5M`); answers
/// milliseconds (> 0, at most [`MAX_DURATION_MS`]).
pub fn parse_duration(field: &str, s: &str) -> Result<i64, RuleError> {
    let bad = |why: &str| {
        RuleError::new(
            field,
            format!("'{s}' is not a duration ({why}); examples: 30s, 5m, 2h, 1d, PT15M"),
        )
    };
    let ms = if s.starts_with('P') {
        let d = citybrain_model::duration::IsoDuration::parse(field, s)
            .map_err(|e| RuleError::new(field, e.to_string()))?;
        if d.months != 0 {
            return Err(bad("months and years have no fixed length"));
        }
        if d.millis > MAX_DURATION_MS {
            return Err(bad("too long"));
        }
        d.millis
    } else {
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad("no unit"))?;
        let (num, unit) = s.split_at(split);
        let n: f64 = num.parse().map_err(|_| bad("no number"))?;
        let per = match unit {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" | "min" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            _ => return Err(bad("unknown unit")),
        };
        let ms = n * per;
        if !ms.is_finite() || ms > MAX_DURATION_MS as f64 {
            return Err(bad("too long"));
        }
        ms.round() as i64
    };
    if ms <= 0 {
        return Err(bad("it must be positive"));
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_both_notations() {
        assert_eq!(parse_duration("f", "30s").unwrap(), 30_000);
        assert_eq!(parse_duration("f", "1.5m").unwrap(), 90_000);
        assert_eq!(parse_duration("f", "PT15M").unwrap(), 900_000);
        assert_eq!(parse_duration("f", "250ms").unwrap(), 250);
        for bad in [
            "",
            "5",
            "m",
            "5y",
            "0s",
            "-1s",
            "P1M",
            "1e400s",
            "P999999999999W",
            "P40000D",
        ] {
            assert!(parse_duration("f", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_keys_are_refused_with_their_place() {
        let e = parse_rules(
            "id: r\ncategory: c\nfor: {type: T}\nwhen: {kind: threshold, attr: a, abov: 3}",
            "r.yaml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("r.yaml[0]"), "{e}");
        assert!(e.to_string().contains("abov"), "{e}");
    }
}
