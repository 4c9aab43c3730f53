//! Validation of a [`RuleSpec`] into the form the engine runs. Times are milliseconds.

use geo::{Geometry, MultiPolygon};

use crate::error::RuleError;
use crate::spec::{parse_duration, Agg, Condition, Fence, RuleSpec};

/// A limit on a signal with hysteresis and a hold time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Limit {
    /// `true`: raise above `level`; `false`: below.
    pub above: bool,
    pub level: f64,
    /// Back across this, an active condition clears.
    pub clear: f64,
    /// How long the limit must stay crossed before raising (0: at once).
    pub hold: i64,
}

impl Limit {
    pub fn crossed(&self, v: f64) -> bool {
        if self.above {
            v > self.level
        } else {
            v < self.level
        }
    }

    pub fn cleared(&self, v: f64) -> bool {
        if self.above {
            v < self.clear
        } else {
            v > self.clear
        }
    }
}

/// What a level condition compares with its limit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Signal {
    Value,
    Rate {
        per: i64,
    },
    Window {
        window: i64,
        slide: i64,
        agg: Agg,
        percentile: f64,
    },
    Forecast {
        window: i64,
        horizon: i64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Area {
    Polygons(MultiPolygon<f64>),
    Circle { lon: f64, lat: f64, radius_m: f64 },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cond {
    Level {
        attr: String,
        signal: Signal,
        limit: Limit,
    },
    Missing {
        attr: Option<String>,
        after: i64,
    },
    Geofence {
        attr: String,
        area: Area,
        on: Fence,
    },
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Sequence {
        of: Vec<Cond>,
        within: i64,
    },
}

/// A validated rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub spec: RuleSpec,
    pub cond: Cond,
    /// The condition in emergency mode, when the rule has one.
    pub emergency: Option<Cond>,
}

/// A named part of the city (a district, a flood plain) that can be switched to
/// emergency mode on its own: a GeoJSON Polygon or MultiPolygon.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone(Area);

impl Zone {
    /// The zone of a GeoJSON geometry; the error names `field`.
    pub fn from_geojson(field: &str, g: &serde_json::Value) -> Result<Zone, RuleError> {
        Ok(Zone(Area::Polygons(polygons(field, g)?)))
    }

    /// Whether `[longitude, latitude]` lies in the zone.
    pub fn contains(&self, p: [f64; 2]) -> bool {
        crate::signal::area_contains(&self.0, p[0], p[1])
    }
}

/// Most sub-conditions of one composite, and most nesting: bounds the work and the
/// state of one (rule, entity).
const MAX_CHILDREN: usize = 32;
const MAX_DEPTH: usize = 4;

pub(crate) fn compile(spec: RuleSpec) -> Result<Rule, RuleError> {
    let id_ok = !spec.id.is_empty()
        && spec.id.len() <= 128
        && spec
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !id_ok {
        return Err(RuleError::new(
            "id",
            format!(
                "'{}' is not a rule id (1-128 letters, digits, '-', '_', '.')",
                spec.id
            ),
        ));
    }
    if spec.category.trim().is_empty() {
        return Err(RuleError::new("category", "must not be empty"));
    }
    if spec.select.ty.trim().is_empty() {
        return Err(RuleError::new("for.type", "must not be empty"));
    }
    let cond = condition(&spec.when, "when", 0)?;
    let emergency = match &spec.emergency {
        Some(e) => Some(condition(e, "emergency", 0)?),
        None => None,
    };
    Ok(Rule {
        spec,
        cond,
        emergency,
    })
}

fn limit(
    field: &str,
    above: Option<f64>,
    below: Option<f64>,
    clear: Option<f64>,
    hold: &Option<String>,
) -> Result<Limit, RuleError> {
    let finite = |name: &str, v: f64| {
        if v.is_finite() {
            Ok(v)
        } else {
            Err(RuleError::new(
                &format!("{field}.{name}"),
                "must be a finite number",
            ))
        }
    };
    let (is_above, level) = match (above, below) {
        (Some(a), None) => (true, finite("above", a)?),
        (None, Some(b)) => (false, finite("below", b)?),
        (Some(_), Some(_)) => {
            return Err(RuleError::new(
                field,
                "give either 'above' or 'below', not both (use 'any' for a band)",
            ))
        }
        (None, None) => return Err(RuleError::new(field, "needs 'above' or 'below'")),
    };
    let clear = match clear {
        None => level,
        Some(c) => {
            let c = finite("clear", c)?;
            if is_above && c > level {
                return Err(RuleError::new(
                    &format!("{field}.clear"),
                    format!("{c} must not be above the limit {level} (hysteresis clears below it)"),
                ));
            }
            if !is_above && c < level {
                return Err(RuleError::new(
                    &format!("{field}.clear"),
                    format!("{c} must not be below the limit {level} (hysteresis clears above it)"),
                ));
            }
            c
        }
    };
    let hold = match hold {
        None => 0,
        Some(h) => parse_duration(&format!("{field}.hold"), h)?,
    };
    Ok(Limit {
        above: is_above,
        level,
        clear,
        hold,
    })
}

fn attr_name(field: &str, a: &str) -> Result<String, RuleError> {
    if a.trim().is_empty() {
        return Err(RuleError::new(field, "must not be empty"));
    }
    Ok(a.to_string())
}

fn condition(c: &Condition, field: &str, depth: usize) -> Result<Cond, RuleError> {
    let sub = |name: &str| format!("{field}.{name}");
    Ok(match c {
        Condition::Threshold {
            attr,
            above,
            below,
            clear,
            hold,
        } => Cond::Level {
            attr: attr_name(&sub("attr"), attr)?,
            signal: Signal::Value,
            limit: limit(field, *above, *below, *clear, hold)?,
        },
        Condition::Rate {
            attr,
            per,
            above,
            below,
            clear,
            hold,
        } => Cond::Level {
            attr: attr_name(&sub("attr"), attr)?,
            signal: Signal::Rate {
                per: parse_duration(&sub("per"), per)?,
            },
            limit: limit(field, *above, *below, *clear, hold)?,
        },
        Condition::Window {
            attr,
            window,
            slide,
            agg,
            percentile,
            above,
            below,
            clear,
            hold,
        } => {
            let w = parse_duration(&sub("window"), window)?;
            let s = match slide {
                None => w,
                Some(s) => parse_duration(&sub("slide"), s)?,
            };
            if s > w {
                return Err(RuleError::new(
                    &sub("slide"),
                    "must not be longer than the window (windows would leave gaps)",
                ));
            }
            if w / s > 1_000 {
                return Err(RuleError::new(
                    &sub("slide"),
                    "at most 1,000 slides per window",
                ));
            }
            let p = match (agg, percentile) {
                (Agg::Percentile, Some(p)) if (0.0..=100.0).contains(p) => *p,
                (Agg::Percentile, Some(_)) => {
                    return Err(RuleError::new(&sub("percentile"), "must be within 0-100"))
                }
                (Agg::Percentile, None) => {
                    return Err(RuleError::new(
                        &sub("percentile"),
                        "agg 'percentile' needs 'percentile' (0-100)",
                    ))
                }
                (_, Some(_)) => {
                    return Err(RuleError::new(
                        &sub("percentile"),
                        "only for agg 'percentile'",
                    ))
                }
                (_, None) => 0.0,
            };
            Cond::Level {
                attr: attr_name(&sub("attr"), attr)?,
                signal: Signal::Window {
                    window: w,
                    slide: s,
                    agg: *agg,
                    percentile: p,
                },
                limit: limit(field, *above, *below, *clear, hold)?,
            }
        }
        Condition::Forecast {
            attr,
            window,
            horizon,
            above,
            below,
            clear,
            hold,
        } => Cond::Level {
            attr: attr_name(&sub("attr"), attr)?,
            signal: Signal::Forecast {
                window: parse_duration(&sub("window"), window)?,
                horizon: parse_duration(&sub("horizon"), horizon)?,
            },
            limit: limit(field, *above, *below, *clear, hold)?,
        },
        Condition::Missing { attr, after } => Cond::Missing {
            attr: match attr {
                Some(a) => Some(attr_name(&sub("attr"), a)?),
                None => None,
            },
            after: parse_duration(&sub("after"), after)?,
        },
        Condition::Geofence {
            attr,
            area,
            circle,
            on,
        } => {
            let area = match (area, circle) {
                (Some(g), None) => Area::Polygons(polygons(&sub("area"), g)?),
                (None, Some(c)) => {
                    let [lon, lat] = c.center;
                    if !(-180.0..=180.0).contains(&lon) || !(-90.0..=90.0).contains(&lat) {
                        return Err(RuleError::new(
                            &sub("circle.center"),
                            "must be [longitude, latitude] in range",
                        ));
                    }
                    if !(c.radius_m.is_finite() && c.radius_m > 0.0) {
                        return Err(RuleError::new(
                            &sub("circle.radius_m"),
                            "must be a positive number of metres",
                        ));
                    }
                    Area::Circle {
                        lon,
                        lat,
                        radius_m: c.radius_m,
                    }
                }
                _ => {
                    return Err(RuleError::new(
                        field,
                        "a geofence needs exactly one of 'area' (GeoJSON polygon) and 'circle'",
                    ))
                }
            };
            Cond::Geofence {
                attr: match attr {
                    Some(a) => attr_name(&sub("attr"), a)?,
                    None => "location".into(),
                },
                area,
                on: *on,
            }
        }
        Condition::All { of } => Cond::All(children(of, field, depth, true)?),
        Condition::Any { of } => Cond::Any(children(of, field, depth, true)?),
        Condition::Sequence { of, within } => Cond::Sequence {
            of: children(of, field, depth, false)?,
            within: parse_duration(&sub("within"), within)?,
        },
    })
}

/// The sub-conditions of a composite; `stateful_only` for `all` and `any`.
fn children(
    of: &[Condition],
    field: &str,
    depth: usize,
    stateful_only: bool,
) -> Result<Vec<Cond>, RuleError> {
    if depth >= MAX_DEPTH {
        return Err(RuleError::new(
            field,
            format!("composites nest at most {MAX_DEPTH} deep"),
        ));
    }
    if of.is_empty() || of.len() > MAX_CHILDREN {
        return Err(RuleError::new(
            &format!("{field}.of"),
            format!("needs 1 to {MAX_CHILDREN} conditions"),
        ));
    }
    let mut out = Vec::with_capacity(of.len());
    for (i, child) in of.iter().enumerate() {
        let f = format!("{field}.of[{i}]");
        if stateful_only && !child.is_stateful() {
            return Err(RuleError::new(
                &f,
                "'all' and 'any' combine conditions with a state; momentary ones (geofence enter/exit, sequence) belong in a 'sequence'",
            ));
        }
        out.push(condition(child, &f, depth + 1)?);
    }
    Ok(out)
}

fn polygons(field: &str, g: &serde_json::Value) -> Result<MultiPolygon<f64>, RuleError> {
    let geom = citybrain_model::geojson::to_geometry(g)
        .map_err(|e| RuleError::new(field, e.to_string()))?;
    match geom {
        Geometry::Polygon(p) => Ok(MultiPolygon(vec![p])),
        Geometry::MultiPolygon(m) => Ok(m),
        _ => Err(RuleError::new(
            field,
            "must be a GeoJSON Polygon or MultiPolygon",
        )),
    }
}
