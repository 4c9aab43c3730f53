//! Discovery of context source registrations (`GET /csourceRegistrations`, NGSI-LD 1.8
//! 5.7.3 and 4.3.6): which registrations may hold what a query asks for.
//!
//! Entities, types and attributes are matched against each `information` entry: an
//! entry that names no entities holds any entity, one that names no attributes holds
//! any attribute. `q` and `csf` are evaluated on the registration's own properties,
//! geo-queries on its `location` (it matches where the two may share a place), `scopeQ`
//! on its `scope`, and temporal filters on its `observationInterval` (`observedAt`) or
//! `managementInterval` (`createdAt`, `modifiedAt`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use citybrain_broker::query::{geo_matches, EntityQuery, QueryParams, TypeExpr};
use citybrain_model::geojson::{GeoQuery, GeoRel};
use citybrain_model::q::Query;
use citybrain_model::time::parse_datetime;
use citybrain_model::JsonLdContext;
use regex::Regex;

use crate::error::{FederationError, Result};
use crate::registration::{Interval, RegInfo, Registration};

/// A temporal filter on a registration's intervals.
#[derive(Debug, Clone)]
pub struct TimeFilter {
    /// `observedAt` (the observation interval) or the management interval.
    pub observation: bool,
    pub rel: TimeRel,
}

#[derive(Debug, Clone, Copy)]
pub enum TimeRel {
    Before(DateTime<Utc>),
    After(DateTime<Utc>),
    Between(DateTime<Utc>, DateTime<Utc>),
}

impl TimeRel {
    /// Whether the interval has a part in the relation's period.
    fn meets(&self, i: &Interval) -> bool {
        match *self {
            TimeRel::Before(t) => i.start < t,
            TimeRel::After(t) => i.end.is_none_or(|e| e > t),
            TimeRel::Between(a, b) => i.start < b && i.end.is_none_or(|e| e > a),
        }
    }
}

impl TimeFilter {
    /// Whether the registration's interval (observation or management) has a part in
    /// the filter's period; a registration without that interval does not.
    pub fn meets(&self, r: &Registration) -> bool {
        let i = if self.observation {
            r.observation
        } else {
            r.management_interval
        };
        i.is_some_and(|i| self.rel.meets(&i))
    }
}

/// The temporal parameters of a discovery query, as given.
#[derive(Debug, Clone, Default)]
pub struct TimeParams {
    pub timeproperty: Option<String>,
    pub timerel: Option<String>,
    pub time_at: Option<String>,
    pub end_time_at: Option<String>,
}

impl TimeParams {
    pub(crate) fn parse(&self) -> Result<Option<TimeFilter>> {
        let Some(rel) = &self.timerel else {
            if self.time_at.is_some() || self.end_time_at.is_some() {
                return Err(FederationError::bad_data("'timeAt' needs 'timerel'"));
            }
            return Ok(None);
        };
        let at = |v: &Option<String>, name: &str| -> Result<DateTime<Utc>> {
            v.as_deref().and_then(parse_datetime).ok_or_else(|| {
                FederationError::bad_data(format!("'timerel' needs '{name}' as a DateTime"))
            })
        };
        let rel = match rel.as_str() {
            "before" => TimeRel::Before(at(&self.time_at, "timeAt")?),
            "after" => TimeRel::After(at(&self.time_at, "timeAt")?),
            "between" => {
                let (a, b) = (
                    at(&self.time_at, "timeAt")?,
                    at(&self.end_time_at, "endTimeAt")?,
                );
                if b <= a {
                    return Err(FederationError::bad_data(
                        "'endTimeAt' must follow 'timeAt'",
                    ));
                }
                TimeRel::Between(a, b)
            }
            other => {
                return Err(FederationError::bad_data(format!(
                    "'timerel' must be before, after or between, got '{other}'"
                )))
            }
        };
        let observation = match self.timeproperty.as_deref() {
            None | Some("observedAt") => true,
            Some("createdAt" | "modifiedAt") => false,
            Some(other) => {
                return Err(FederationError::bad_data(format!(
                    "'timeproperty' must be observedAt, createdAt or modifiedAt, got '{other}'"
                )))
            }
        };
        Ok(Some(TimeFilter { observation, rel }))
    }
}

/// A discovery query over registrations.
#[derive(Debug, Clone)]
pub struct CsrQuery {
    pub ids: Option<Vec<String>>,
    pub types: Option<TypeExpr>,
    pub id_pattern: Option<Regex>,
    pub attrs: Option<Vec<String>>,
    pub q: Option<Query>,
    pub csf: Option<Query>,
    pub geo: Option<GeoQuery>,
    pub scope: Option<Vec<String>>,
    pub time: Option<TimeFilter>,
    pub limit: usize,
    pub offset: usize,
}

impl CsrQuery {
    /// Validates the parameters of `GET /csourceRegistrations` (at least one filter).
    pub fn from_params(
        p: &QueryParams,
        csf: Option<&str>,
        time: &TimeParams,
        ld: &JsonLdContext,
        limits: (usize, usize),
    ) -> Result<CsrQuery> {
        let mut p = p.clone();
        p.allow_unfiltered = true;
        // A count of 0 is a count; the broker's rule (limit 0 only with count) holds.
        let q = EntityQuery::from_params(&p, ld, limits.0, limits.1)?;
        let csf = csf
            .map(|s| -> Result<Query> {
                let mut q = Query::parse(s)
                    .map_err(|e| FederationError::bad_data(format!("'csf': {}", e.detail)))?;
                q.resolve(ld);
                Ok(q)
            })
            .transpose()?;
        let time = time.parse()?;
        let out = CsrQuery {
            ids: q.ids,
            types: q.types,
            id_pattern: p
                .id_pattern
                .as_deref()
                .map(Regex::new)
                .transpose()
                .map_err(|e| FederationError::bad_data(format!("invalid 'idPattern': {e}")))?,
            attrs: q.attrs,
            q: q.q,
            csf,
            geo: q.geo,
            scope: q.scope,
            time,
            limit: q.limit,
            offset: q.offset,
        };
        if out.is_empty() {
            return Err(FederationError::bad_data(
                "a registration query needs at least one of id, type, idPattern, attrs, q, csf, a geo-query, scopeQ or a temporal filter",
            ));
        }
        Ok(out)
    }

    fn is_empty(&self) -> bool {
        self.ids.is_none()
            && self.types.is_none()
            && self.id_pattern.is_none()
            && self.attrs.is_none()
            && self.q.is_none()
            && self.csf.is_none()
            && self.geo.is_none()
            && self.scope.is_none()
            && self.time.is_none()
    }

    /// Whether the registration may hold what the query asks for.
    pub fn matches(&self, r: &Registration) -> bool {
        r.infos.iter().any(|i| self.matches_info(i))
            && self.q.as_ref().is_none_or(|q| q.matches(&r.doc))
            && self.csf.as_ref().is_none_or(|q| q.matches(&r.doc))
            && self.geo.as_ref().is_none_or(|g| place_matches(g, r))
            && self.scope.as_ref().is_none_or(|s| scope_matches(s, r))
            && self.time.as_ref().is_none_or(|t| t.meets(r))
    }

    /// Whether one `information` entry may hold the entities and attributes asked for.
    pub fn matches_info(&self, info: &RegInfo) -> bool {
        entities_match(
            info,
            self.types.as_ref(),
            self.ids.as_deref(),
            self.id_pattern.as_ref(),
            false,
        ) && self.attrs.as_ref().is_none_or(|a| info.has_any(a))
    }
}

/// Whether an `information` entry may hold entities of `types`, with one of `ids` or
/// an id matching `pattern`. Two id patterns match when they are the same (discovery:
/// what a registration says it holds), or, with `overlap`, always (forwarding: two
/// patterns may share ids, and a source left out is data silently missing).
pub fn entities_match(
    info: &RegInfo,
    types: Option<&TypeExpr>,
    ids: Option<&[String]>,
    pattern: Option<&Regex>,
    overlap: bool,
) -> bool {
    let Some(entities) = &info.entities else {
        return true;
    };
    entities.iter().any(|ei| {
        let type_ok = types.is_none_or(|t| {
            let mine: Vec<Arc<str>> = ei.types.iter().map(|s| Arc::from(s.as_str())).collect();
            t.matches_types(&mine)
        });
        let unnamed = ei.id.is_none() && ei.id_pattern.is_none();
        let ids_ok = ids.is_none_or(|ids| {
            unnamed
                || ids.iter().any(|id| {
                    ei.id.as_deref() == Some(id.as_str())
                        || ei.id_pattern.as_ref().is_some_and(|p| p.is_match(id))
                })
        });
        let pattern_ok = pattern.is_none_or(|p| {
            unnamed
                || ei.id.as_deref().is_some_and(|id| p.is_match(id))
                || ei
                    .id_pattern
                    .as_ref()
                    .is_some_and(|mine| overlap || mine.as_str() == p.as_str())
        });
        type_ok && ids_ok && pattern_ok
    })
}

/// A geo-query against the place a registration covers: `near` within the distance,
/// the other relations where the two geometries meet; `disjoint` and a `near` with
/// only a minimum distance exclude nothing. A registration without a `location` does
/// not match a geo-query.
pub(crate) fn place_matches(g: &GeoQuery, r: &Registration) -> bool {
    let relaxed = match g.rel {
        GeoRel::Near {
            max_distance: None, ..
        }
        | GeoRel::Disjoint => return r.doc.attr(&g.geoproperty).is_some(),
        GeoRel::Near { .. } => g.clone(),
        _ => GeoQuery {
            rel: GeoRel::Intersects,
            ..g.clone()
        },
    };
    geo_matches(&relaxed, &r.doc)
}

fn scope_matches(patterns: &[String], r: &Registration) -> bool {
    let Some(scopes) = &r.doc.scope else {
        return false;
    };
    patterns
        .iter()
        .any(|p| citybrain_broker::query::scope_matches(p, scopes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::{json, Value};

    fn reg(body: Value) -> Registration {
        let Value::Object(m) = body else { panic!() };
        Registration::compile("", "urn:r:1", m, None, JsonLdContext::core(), None).unwrap()
    }

    fn query(pairs: &[(&str, &str)]) -> Result<CsrQuery> {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let p = QueryParams {
            id: get("id"),
            type_: get("type"),
            id_pattern: get("idPattern"),
            attrs: get("attrs"),
            q: get("q"),
            georel: get("georel"),
            geometry: get("geometry"),
            coordinates: get("coordinates").map(Value::String),
            geoproperty: get("geoproperty"),
            scope_q: get("scopeQ"),
            ..Default::default()
        };
        let t = TimeParams {
            timeproperty: get("timeproperty"),
            timerel: get("timerel"),
            time_at: get("timeAt"),
            end_time_at: get("endTimeAt"),
        };
        CsrQuery::from_params(
            &p,
            get("csf").as_deref(),
            &t,
            &JsonLdContext::core(),
            (20, 1000),
        )
    }

    fn sample() -> Vec<Registration> {
        vec![
            reg(
                json!({"information": [{"entities": [{"type": "Building"}]}], "endpoint": "http://a:1"}),
            ),
            reg(
                json!({"information": [{"entities": [{"id": "urn:V:1", "type": "Vehicle"}, {"idPattern": ".*downtown$", "type": "OffStreetParking"}], "propertyNames": ["speed"]}], "endpoint": "http://b:1"}),
            ),
            reg(
                json!({"information": [{"propertyNames": ["name", "subCategory"]}], "endpoint": "http://c:1",
                "csourceProperty1": "aValue", "scope": "/Madrid/Centro",
                "location": {"type": "Point", "coordinates": [-8.521, 41.2]},
                "observationInterval": {"startAt": "2020-08-01T22:07:00Z", "endAt": "2021-08-01T21:07:00Z"}}),
            ),
        ]
    }

    fn hits(pairs: &[(&str, &str)]) -> Vec<usize> {
        let q = query(pairs).unwrap();
        sample()
            .iter()
            .enumerate()
            .filter(|(_, r)| q.matches(r))
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn discovery_matches_information_and_own_properties() {
        assert_eq!(hits(&[("type", "Building")]), vec![0, 2]);
        assert_eq!(hits(&[("type", "Vehicle")]), vec![1, 2]);
        assert_eq!(hits(&[("id", "urn:V:1")]), vec![0, 1, 2]);
        assert_eq!(hits(&[("id", "urn:V:2"), ("type", "Vehicle")]), vec![2]);
        assert_eq!(
            hits(&[("type", "OffStreetParking"), ("idPattern", ".*downtown$")]),
            vec![1, 2]
        );
        assert_eq!(hits(&[("attrs", "name")]), vec![0, 2]);
        assert_eq!(hits(&[("attrs", "speed"), ("type", "Vehicle")]), vec![1]);
        assert_eq!(hits(&[("q", "csourceProperty1==\"aValue\"")]), vec![2]);
        assert_eq!(hits(&[("csf", "endpoint==\"http://b:1\"")]), vec![1]);
        assert_eq!(hits(&[("scopeQ", "/Madrid/#")]), vec![2]);
        assert_eq!(hits(&[("scopeQ", "/Berlin")]), Vec::<usize>::new());
        assert_eq!(
            hits(&[
                ("georel", "near;maxDistance==2000"),
                ("geometry", "Point"),
                ("coordinates", "[-8.503,41.202]")
            ]),
            vec![2]
        );
        assert_eq!(
            hits(&[
                ("georel", "near;maxDistance==500"),
                ("geometry", "Point"),
                ("coordinates", "[-8.503,41.202]")
            ]),
            Vec::<usize>::new()
        );
        assert_eq!(
            hits(&[("georel", "within"), ("geometry", "Polygon"), ("coordinates", "[[[-13.503,47.202],[6.541,52.961],[20.37,44.653],[9.46,32.57],[-15.23,21.37],[-13.503,47.202]]]")]),
            vec![2]
        );
        assert_eq!(
            hits(&[("timerel", "before"), ("timeAt", "2021-08-01T22:00:00Z")]),
            vec![2]
        );
        assert_eq!(
            hits(&[("timerel", "before"), ("timeAt", "2019-08-01T22:00:00Z")]),
            Vec::<usize>::new()
        );
        assert_eq!(
            hits(&[("timerel", "after"), ("timeAt", "2021-09-01T00:00:00Z")]),
            Vec::<usize>::new()
        );
        assert_eq!(
            hits(&[
                ("timerel", "before"),
                ("timeAt", "2021-08-01T22:00:00Z"),
                ("timeproperty", "createdAt")
            ]),
            Vec::<usize>::new(),
            "createdAt reads the management interval, which none has"
        );
    }

    #[test]
    fn discovery_needs_a_filter_and_valid_parameters() {
        for bad in [
            vec![],
            vec![("id", "invalidUri")],
            vec![("q", "(invalidQuery")],
            vec![("georel", "within")],
            vec![("timerel", "before")],
            vec![("timerel", "during"), ("timeAt", "2021-08-01T22:00:00Z")],
            vec![("type", "Building"), ("csf", "(")],
        ] {
            assert!(query(&bad).is_err(), "{bad:?} should be refused");
        }
    }
}
