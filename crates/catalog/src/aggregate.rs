//! Differentially private aggregates of a dataset
//! (`GET /platform/v1/datasets/{id}/aggregate`).
//!
//! The statistic runs over the dataset's entities (its types and filter), narrowed by
//! an area (NGSI-LD `georel`/`geometry`/`coordinates`) and, with `timerel`, over the
//! attribute's history in a time window instead of the current values. Each entity is
//! one privacy unit and contributes at most `maxContributions` values.
//!
//! The order of work keeps the guarantee and the budget honest: the request is
//! validated and the noise calibrated, the cost charged durably to the caller's budget,
//! then the data read (as the platform, not as the caller: the noise is the
//! protection) and the noisy answer computed and released. A request the budget does
//! not cover gets 403, reads nothing and releases nothing; every answer after the
//! charge, a refusal that depends on the data included, is paid for.

use std::sync::Arc;

use citybrain_access::{Principal, RequestContext, Verb};
use citybrain_broker::{EntityQuery, QueryParams, TemporalFormat, TemporalParams, TemporalQuery};
use citybrain_model::context::JsonLdContext;
use citybrain_model::AttrValue;
use citybrain_privacy::{release, Bounds, Cost, Datum, Mechanism, Ratio, Release, Statistic};
use serde::Serialize;
use serde_json::Value;

use crate::dataset::{short, Dataset};
use crate::{Catalog, CatalogError, PrivacySpec, Result};

/// The principal the data is read as.
const READER: Principal = Principal::Service("catalog");

/// Most entities one aggregate reads: their current values, or their history in a
/// window. A dataset larger than that is refused (narrow it with an area or a
/// window) rather than cut, since a cut would change which entities count.
const MAX_ENTITIES: usize = 1_000_000;
const MAX_HISTORIES: usize = 100_000;

fn too_many(n: usize) -> CatalogError {
    CatalogError::Invalid(format!(
        "the selection holds more than {n} entities; narrow it with an area (georel) or a smaller dataset"
    ))
}

/// An aggregate request, as received (query parameters).
#[derive(Debug, Clone, Default)]
pub struct AggregateRequest {
    pub statistic: Option<String>,
    pub attribute: Option<String>,
    pub bins: Option<String>,
    pub categories: Option<String>,
    pub lower: Option<String>,
    pub upper: Option<String>,
    pub resolution: Option<String>,
    pub epsilon: Option<String>,
    pub rho: Option<String>,
    pub georel: Option<String>,
    pub geometry: Option<String>,
    pub coordinates: Option<String>,
    pub geoproperty: Option<String>,
    pub timerel: Option<String>,
    pub time_at: Option<String>,
    pub end_time_at: Option<String>,
}

impl AggregateRequest {
    /// From query parameters; an unknown or repeated one is refused by name.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut r = AggregateRequest::default();
        for (k, v) in pairs {
            let slot = match k {
                "statistic" => &mut r.statistic,
                "attribute" => &mut r.attribute,
                "bins" => &mut r.bins,
                "categories" => &mut r.categories,
                "lower" => &mut r.lower,
                "upper" => &mut r.upper,
                "resolution" => &mut r.resolution,
                "epsilon" => &mut r.epsilon,
                "rho" => &mut r.rho,
                "georel" => &mut r.georel,
                "geometry" => &mut r.geometry,
                "coordinates" => &mut r.coordinates,
                "geoproperty" => &mut r.geoproperty,
                "timerel" => &mut r.timerel,
                "timeAt" => &mut r.time_at,
                "endTimeAt" => &mut r.end_time_at,
                other => {
                    return Err(CatalogError::Invalid(format!(
                        "unknown parameter '{other}' (statistic, attribute, bins, categories, lower, upper, resolution, epsilon, rho, georel, geometry, coordinates, geoproperty, timerel, timeAt, endTimeAt)"
                    )))
                }
            };
            if slot.replace(v.to_string()).is_some() {
                return Err(CatalogError::Invalid(format!(
                    "parameter '{k}' is given twice"
                )));
            }
        }
        Ok(r)
    }
}

/// The privacy side of an answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PrivacyReport {
    pub mechanism: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rho: Option<f64>,
    pub max_contributions: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bounds: Option<[f64; 2]>,
    pub budget: BudgetReport,
}

/// A consumer's budget on a dataset.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BudgetReport {
    pub epsilon: f64,
    pub delta: f64,
    /// ε spent so far (the tighter of pure and zCDP composition).
    pub spent: f64,
    pub remaining: f64,
    pub releases: u64,
    /// Who is charged: `user:<id>`, or `anonymous` (all anonymous callers together).
    pub consumer: String,
}

impl BudgetReport {
    /// What `rc` has spent (`spent`) of the dataset's budget.
    fn of(p: &PrivacySpec, spent: &citybrain_privacy::Spent, rc: &RequestContext) -> Self {
        let e = spent.epsilon_at(p.budget.delta);
        BudgetReport {
            epsilon: p.budget.epsilon,
            delta: p.budget.delta,
            spent: e,
            remaining: (p.budget.epsilon - e).max(0.0),
            releases: spent.releases,
            consumer: Catalog::consumer(rc),
        }
    }
}

/// An aggregate answer.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Aggregate {
    pub dataset: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    #[serde(flatten)]
    pub release: Release,
    pub privacy: PrivacyReport,
}

fn number(field: &str, s: &Option<String>) -> Result<Option<f64>> {
    s.as_deref()
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| {
                    CatalogError::Invalid(format!("'{field}' must be a number, got '{v}'"))
                })
        })
        .transpose()
}

fn list<T>(field: &str, s: &str, f: impl Fn(&str) -> Option<T>) -> Result<Vec<T>> {
    s.split(',')
        .map(|x| {
            f(x.trim()).ok_or_else(|| {
                CatalogError::Invalid(format!("'{field}' has an invalid item '{x}'"))
            })
        })
        .collect()
}

/// The cost of this request: the one it names, else the dataset's most per query.
fn cost_of(p: &PrivacySpec, req: &AggregateRequest) -> Result<Cost> {
    let most = p.max_query_cost;
    let (field, given) = match p.mechanism {
        Mechanism::Laplace => {
            if req.rho.is_some() {
                return Err(CatalogError::Invalid(
                    "'rho' applies to the gaussian mechanism; this dataset uses laplace: give 'epsilon'".into(),
                ));
            }
            ("epsilon", &req.epsilon)
        }
        Mechanism::Gaussian => {
            if req.epsilon.is_some() {
                return Err(CatalogError::Invalid(
                    "'epsilon' applies to the laplace mechanism; this dataset uses gaussian (zCDP): give 'rho'".into(),
                ));
            }
            ("rho", &req.rho)
        }
    };
    let r = match given {
        Some(s) => Ratio::parse(field, s).map_err(|e| CatalogError::Invalid(e.to_string()))?,
        None => Ratio::from_f64(field, most).map_err(|e| CatalogError::Invalid(e.to_string()))?,
    };
    if r.is_zero() {
        return Err(CatalogError::Invalid(format!("'{field}' must be positive")));
    }
    if r.to_f64() > most * (1.0 + 1e-12) {
        return Err(CatalogError::Invalid(format!(
            "'{field}' {} is above this dataset's most per query, {most}",
            r.to_f64()
        )));
    }
    Ok(match p.mechanism {
        Mechanism::Laplace => Cost::Epsilon(r),
        Mechanism::Gaussian => Cost::Rho(r),
    })
}

fn datum(v: &AttrValue) -> Option<Datum> {
    match v {
        AttrValue::Int(i) => Some(Datum::Number(*i as f64)),
        AttrValue::Float(f) => Some(Datum::Number(*f)),
        AttrValue::Str(s) => Some(Datum::Text(s.to_string())),
        AttrValue::Bool(b) => Some(Datum::Text(b.to_string())),
        AttrValue::Null | AttrValue::Json(_) => None,
    }
}

impl Catalog {
    /// Answers an aggregate request of `rc` on dataset `id`.
    pub async fn aggregate(
        &self,
        rc: &RequestContext,
        id: &str,
        req: &AggregateRequest,
    ) -> Result<Aggregate> {
        let d = self.dataset(rc, id)?;
        let Some(p) = d.spec.privacy.clone() else {
            return Err(CatalogError::NotFound(format!(
                "dataset '{id}' offers no aggregates (its publisher set no privacy parameters)"
            )));
        };
        if !self.may(rc, Verb::Aggregate, &d) {
            // Seen in the catalogue, but its aggregates are not for this caller.
            self.check(rc, Verb::Aggregate, &d)?;
        }
        let cost = cost_of(&p, req)?;
        let attribute = req.attribute.as_deref().map(short).map(str::to_string);
        if let Some(a) = &attribute {
            citybrain_model::entity::validate_name("attribute", a)
                .map_err(|e| CatalogError::Invalid(format!("attribute: {}", e.detail)))?;
            if !d.spec.attrs.is_empty() && !d.spec.attrs.iter().any(|x| short(x) == a) {
                return Err(CatalogError::Invalid(format!(
                    "attribute '{a}' is not part of dataset '{id}'"
                )));
            }
        }
        let bounds = |a: &str| -> Result<Bounds> {
            let published = p.bounds.get(a);
            let b = Bounds {
                lower: number("lower", &req.lower)?
                    .or(published.map(|b| b.lower))
                    .ok_or_else(|| {
                        CatalogError::Invalid(format!(
                            "'lower' and 'upper' are needed: the dataset publishes no bounds for '{a}'"
                        ))
                    })?,
                upper: number("upper", &req.upper)?
                    .or(published.map(|b| b.upper))
                    .ok_or_else(|| {
                        CatalogError::Invalid(format!(
                            "'upper' is needed: the dataset publishes no bounds for '{a}'"
                        ))
                    })?,
                resolution: number("resolution", &req.resolution)?
                    .or(published.and_then(|b| b.resolution)),
            };
            b.validate()
                .map_err(|e| CatalogError::Invalid(e.to_string()))?;
            Ok(b)
        };
        let need_attr = |what: &str| {
            attribute.clone().ok_or_else(|| {
                CatalogError::Invalid(format!("statistic '{what}' needs 'attribute'"))
            })
        };
        let stat = match req.statistic.as_deref().unwrap_or("count") {
            "count" => Statistic::Count,
            "sum" => Statistic::Sum(bounds(&need_attr("sum")?)?),
            "mean" => Statistic::Mean(bounds(&need_attr("mean")?)?),
            "histogram" => {
                need_attr("histogram")?;
                match (&req.bins, &req.categories) {
                    (Some(b), None) => {
                        Statistic::Histogram(list("bins", b, |x| x.parse::<f64>().ok())?)
                    }
                    (None, Some(c)) => Statistic::Categories(list("categories", c, |x| {
                        (!x.is_empty()).then(|| x.to_string())
                    })?),
                    _ => {
                        return Err(CatalogError::Invalid(
                            "a histogram needs either 'bins' (numeric edges) or 'categories'"
                                .into(),
                        ))
                    }
                }
            }
            other => {
                return Err(CatalogError::Invalid(format!(
                    "'statistic' must be count, sum, mean or histogram, got '{other}'"
                )))
            }
        };
        stat.validate()
            .map_err(|e| CatalogError::Invalid(e.to_string()))?;
        // The noise is calibrated (on no data) before anything is charged, so that a
        // request the mechanism refuses costs nothing; then the cost is charged, and
        // only then is the data read: whatever happens after (a selection too large,
        // a failed read) happens to a paid request, so no answer, not even a refusal
        // that depends on the data, is free; and a consumer out of budget costs no scan.
        release(
            &stat,
            &[],
            p.max_contributions,
            cost,
            &mut citybrain_privacy::sample::SplitMix64(0),
        )
        .map_err(|e| CatalogError::Invalid(e.to_string()))?;
        let selection = self.selection(&d, attribute.as_deref(), req)?;
        let spent = self.charge(rc, &d, &p, cost).await?;
        let units = self.units(rc, &selection)?;
        let rel = {
            let mut rng = self.rng.lock();
            release(&stat, &units, p.max_contributions, cost, &mut *rng)
                .map_err(|e| CatalogError::Invalid(e.to_string()))?
        };
        let bounds = match &stat {
            Statistic::Sum(b) | Statistic::Mean(b) => Some([b.lower, b.upper]),
            _ => None,
        };
        Ok(Aggregate {
            dataset: d.id.clone(),
            attribute,
            release: rel,
            privacy: PrivacyReport {
                mechanism: p.mechanism.as_str(),
                epsilon: matches!(cost, Cost::Epsilon(_)).then(|| cost_value(cost)),
                rho: matches!(cost, Cost::Rho(_)).then(|| cost_value(cost)),
                max_contributions: p.max_contributions,
                bounds,
                budget: BudgetReport::of(&p, &spent, rc),
            },
        })
    }

    /// What `rc` has spent on dataset `id`, and what is left.
    pub fn budget(&self, rc: &RequestContext, id: &str) -> Result<BudgetReport> {
        let d = self.dataset(rc, id)?;
        let Some(p) = &d.spec.privacy else {
            return Err(CatalogError::NotFound(format!(
                "dataset '{id}' offers no aggregates"
            )));
        };
        Ok(BudgetReport::of(p, &self.spent(rc, id)?, rc))
    }

    /// What a request reads, checked before anything is charged: the entity query
    /// (types, filter, area) and, with a window, the temporal query of the attribute.
    fn selection(
        &self,
        d: &Dataset,
        attribute: Option<&str>,
        req: &AggregateRequest,
    ) -> Result<Selection> {
        let ld = JsonLdContext::core();
        let coordinates = req
            .coordinates
            .as_deref()
            .map(|c| {
                serde_json::from_str::<Value>(c).map_err(|_| {
                    CatalogError::Invalid(format!("'coordinates' must be a JSON array, got '{c}'"))
                })
            })
            .transpose()?;
        let window = req.timerel.is_some() || req.time_at.is_some() || req.end_time_at.is_some();
        let most = if window { MAX_HISTORIES } else { MAX_ENTITIES };
        let params = QueryParams {
            type_: Some(d.spec.expanded_types().join(",")),
            q: d.spec.q.clone(),
            georel: req.georel.clone(),
            geometry: req.geometry.clone(),
            coordinates,
            geoproperty: req.geoproperty.clone(),
            limit: Some(most.to_string()),
            ..QueryParams::default()
        };
        // One query (an offset page would rescan from the start each time).
        let query = EntityQuery::from_params(&params, &ld, most, most)?;
        let attr: Option<Arc<str>> = attribute.map(|a| {
            d.spec
                .attrs
                .iter()
                .find(|x| short(x) == a)
                .map_or_else(|| ld.expand(a), |x| ld.expand(x))
                .into()
        });
        let temporal = if window {
            let Some(a) = &attr else {
                return Err(CatalogError::Invalid(
                    "a time window ('timerel') needs 'attribute': the values counted are its history"
                        .into(),
                ));
            };
            let tp = TemporalParams {
                timerel: req.timerel.clone(),
                time_at: req.time_at.clone(),
                end_time_at: req.end_time_at.clone(),
                ..TemporalParams::default()
            };
            Some(TemporalQuery::from_params(
                &tp,
                TemporalFormat::Normalized,
                Some(vec![a.to_string()]),
                None,
            )?)
        } else {
            None
        };
        Ok(Selection {
            query,
            attr,
            temporal,
            most,
        })
    }

    /// The values each entity contributes (current values, or history in a window).
    fn units(&self, rc: &RequestContext, sel: &Selection) -> Result<Vec<Vec<Datum>>> {
        let reader = RequestContext::service(rc.tenant.clone(), READER);
        let page = self.broker.query_entities(&reader, &sel.query)?;
        if page.has_more {
            return Err(too_many(sel.most));
        }
        let mut units = Vec::with_capacity(page.entities.len());
        let (Some(tq), Some(a)) = (&sel.temporal, &sel.attr) else {
            for e in &page.entities {
                units.push(match &sel.attr {
                    None => vec![Datum::Number(1.0)],
                    Some(a) => e
                        .attr(a)
                        .map(|inst| inst.iter().filter_map(|x| datum(&x.value)).collect())
                        .unwrap_or_default(),
                });
            }
            return Ok(units);
        };
        // Entity by entity: the temporal API's instance cap then bounds each entity's
        // own values only (a query's cap is shared by all its entities, and one busy
        // entity would cut the others: a unit would move the statistic by more than
        // the noise is calibrated for). Each keeps its first values in the window.
        for e in &page.entities {
            let values = match self.broker.retrieve_temporal(&reader, &e.id, tq) {
                Ok(t) => t
                    .entities
                    .iter()
                    .flat_map(|te| te.series.iter())
                    .filter(|s| *s.attr == **a)
                    .flat_map(|s| s.points.iter())
                    .filter_map(|p| datum(&citybrain_storage::history::attribute_of(p, None).value))
                    .collect(),
                // No history of the attribute (in the window): nothing contributed.
                Err(err)
                    if citybrain_model::ErrorCode::kind(&err)
                        == citybrain_model::ErrorKind::ResourceNotFound =>
                {
                    Vec::new()
                }
                Err(err) => return Err(err.into()),
            };
            units.push(values);
        }
        Ok(units)
    }
}

/// What an aggregate reads.
struct Selection {
    query: EntityQuery,
    attr: Option<Arc<str>>,
    temporal: Option<TemporalQuery>,
    most: usize,
}

fn cost_value(c: Cost) -> f64 {
    match c {
        Cost::Epsilon(r) | Cost::Rho(r) => r.to_f64(),
    }
}

/// The parameters a dataset's aggregates take, for its description.
pub fn describe(p: &PrivacySpec) -> Value {
    serde_json::json!({
        "budget": {"epsilon": p.budget.epsilon, "delta": p.budget.delta},
        "maxContributions": p.max_contributions,
        "maxQueryCost": p.max_query_cost,
        "mechanism": p.mechanism.as_str(),
    })
}
