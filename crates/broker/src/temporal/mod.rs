//! The NGSI-LD temporal API (clauses 5.6.11–5.6.19, 5.7.3, 5.7.4): retrieving and
//! querying the evolution of entities over time, aggregated or not, and provisioning
//! history directly.
//!
//! Size (about 850 lines, over the ~800 guideline): the query parameters, their
//! selection of series and the paging of instances are one contract (206 and
//! `Content-Range` depend on all three); provisioning (`provision.rs`) and rendering
//! (`render.rs`) are already apart.
//!
//! Decisions (NGSI-LD leaves them open or the suite pins them):
//! - `timerel=before` is strict (`t < timeAt`); `after` and `between` include `timeAt`;
//!   `between` excludes `endTimeAt`.
//! - `lastN` applies per attribute instance series (attribute + datasetId).
//! - `q` and geo-queries match an entity when any of its instances inside the time
//!   window satisfies them; all instances in the window are returned.
//! - Deletion instances (`urn:ngsi-ld:null`) are only shown with
//!   `timeproperty=deletedAt`.
//! - At most `Limits::max_instances` instances per series are returned; more give
//!   206 with `Content-Range: date-time start-end/size` (NGSI-LD 6.3.10), the range
//!   cut where every series is complete, so the next request can continue there.

mod provision;
pub mod render;

use std::ops::{Bound, ControlFlow};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use citybrain_model::duration::IsoDuration;
use citybrain_model::time::{from_millis, parse_datetime};
use citybrain_model::{AttrKind, Entity, ErrorKind};
use citybrain_storage::history::{attribute_of, is_deletion, micros, millis, point_of};
use citybrain_storage::tsdb::agg::aggregate;
use citybrain_storage::tsdb::{AggMethod, Bucket, EntityHistory, Point, Selection, TimeProp};
use citybrain_storage::HistoryReader;

use crate::access::Seen;
use crate::error::{BrokerError, Result};
use crate::query::EntityQuery;
use crate::request::RequestContext;
use crate::Broker;
use citybrain_access::{Action, Verb};

/// Temporal parameters as received (strings).
#[derive(Debug, Clone, Default)]
pub struct TemporalParams {
    pub timerel: Option<String>,
    pub time_at: Option<String>,
    pub end_time_at: Option<String>,
    pub timeproperty: Option<String>,
    pub last_n: Option<String>,
    pub aggr_methods: Option<String>,
    pub aggr_period_duration: Option<String>,
}

/// Which time the filters and the output use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeProperty {
    ObservedAt,
    CreatedAt,
    ModifiedAt,
    DeletedAt,
}

impl TimeProperty {
    pub fn name(self) -> &'static str {
        match self {
            TimeProperty::ObservedAt => "observedAt",
            TimeProperty::CreatedAt => "createdAt",
            TimeProperty::ModifiedAt => "modifiedAt",
            TimeProperty::DeletedAt => "deletedAt",
        }
    }

    fn prop(self) -> TimeProp {
        match self {
            TimeProperty::ObservedAt => TimeProp::Observed,
            _ => TimeProp::Recorded,
        }
    }

    /// The point's time in milliseconds.
    pub fn millis_of(self, p: &Point) -> i64 {
        match self {
            TimeProperty::ObservedAt => p.t,
            _ => p.rec.div_euclid(1000),
        }
    }

    fn to_unit(self, t: &DateTime<Utc>) -> i64 {
        match self {
            TimeProperty::ObservedAt => millis(t),
            _ => micros(t),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRel {
    Before,
    After,
    Between,
}

/// The representation asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TemporalFormat {
    #[default]
    Normalized,
    /// `options=temporalValues`: `[value, time]` pairs.
    TemporalValues,
    /// `options=aggregatedValues`.
    Aggregated,
}

/// `aggrMethods` and `aggrPeriodDuration`.
#[derive(Debug, Clone)]
pub struct Aggregation {
    pub methods: Vec<AggMethod>,
    pub period: Option<IsoDuration>,
}

/// A validated temporal request.
#[derive(Debug, Clone)]
pub struct TemporalQuery {
    pub property: TimeProperty,
    pub timerel: Option<TimeRel>,
    pub time_at: Option<DateTime<Utc>>,
    pub end_time_at: Option<DateTime<Utc>>,
    pub last_n: Option<usize>,
    pub format: TemporalFormat,
    pub aggregation: Option<Aggregation>,
    /// Attributes to return (expanded); `None` is all.
    pub attrs: Option<Vec<String>>,
    /// Instances to return by datasetId (`None` = the default instance).
    pub dataset_ids: Option<Vec<Option<String>>>,
}

fn parse_time(field: &str, s: &str) -> Result<DateTime<Utc>> {
    parse_datetime(s).ok_or_else(|| {
        BrokerError::bad_data(format!(
            "'{field}' must be an ISO 8601 date-time such as 2024-01-31T12:00:00Z, got '{s}'"
        ))
    })
}

impl TemporalQuery {
    /// Validates the temporal parameters. `require_timerel`: queries need a time window
    /// (NGSI-LD 1.8 makes it optional; we accept its absence too, meaning "all time").
    pub fn from_params(
        p: &TemporalParams,
        format: TemporalFormat,
        attrs: Option<Vec<String>>,
        dataset_ids: Option<Vec<Option<String>>>,
    ) -> Result<TemporalQuery> {
        let property = match p.timeproperty.as_deref() {
            None | Some("observedAt") => TimeProperty::ObservedAt,
            Some("createdAt") => TimeProperty::CreatedAt,
            Some("modifiedAt") => TimeProperty::ModifiedAt,
            Some("deletedAt") => TimeProperty::DeletedAt,
            Some(other) => {
                return Err(BrokerError::bad_data(format!(
                    "'timeproperty' must be observedAt, createdAt, modifiedAt or deletedAt, got '{other}'"
                )))
            }
        };
        let timerel = match p.timerel.as_deref() {
            None => None,
            Some("before") => Some(TimeRel::Before),
            Some("after") => Some(TimeRel::After),
            Some("between") => Some(TimeRel::Between),
            Some(other) => {
                return Err(BrokerError::bad_data(format!(
                    "'timerel' must be before, after or between, got '{other}'"
                )))
            }
        };
        let time_at = p
            .time_at
            .as_deref()
            .map(|s| parse_time("timeAt", s))
            .transpose()?;
        let end_time_at = p
            .end_time_at
            .as_deref()
            .map(|s| parse_time("endTimeAt", s))
            .transpose()?;
        match (timerel, time_at, end_time_at) {
            (None, None, None) => {}
            (None, _, _) => {
                return Err(BrokerError::bad_data(
                    "'timeAt' and 'endTimeAt' need 'timerel'",
                ))
            }
            (Some(_), None, _) => {
                return Err(BrokerError::bad_data("'timerel' needs 'timeAt'"));
            }
            (Some(TimeRel::Between), Some(a), Some(b)) if b <= a => {
                return Err(BrokerError::bad_data(
                    "'endTimeAt' must be later than 'timeAt'",
                ));
            }
            (Some(TimeRel::Between), _, None) => {
                return Err(BrokerError::bad_data("'timerel=between' needs 'endTimeAt'"));
            }
            _ => {}
        }
        let last_n = match p.last_n.as_deref() {
            None => None,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(BrokerError::bad_data(format!(
                        "'lastN' must be a positive integer, got '{s}'"
                    )))
                }
            },
        };
        let aggregation = if format == TemporalFormat::Aggregated {
            let raw = p.aggr_methods.as_deref().ok_or_else(|| {
                BrokerError::bad_data("the aggregated representation needs 'aggrMethods'")
            })?;
            let mut methods = Vec::new();
            for m in crate::query::split_list("aggrMethods", raw)? {
                let method = AggMethod::parse(&m).ok_or_else(|| {
                    BrokerError::bad_data(format!(
                        "unknown aggregation method '{m}' in 'aggrMethods' (totalCount, distinctCount, sum, avg, min, max, stddev, sumsq)"
                    ))
                })?;
                if !methods.contains(&method) {
                    methods.push(method);
                }
            }
            let period = p
                .aggr_period_duration
                .as_deref()
                .filter(|s| !matches!(*s, "PT0S" | "P0D" | "PT0M" | "PT0H"))
                .map(|s| IsoDuration::parse("aggrPeriodDuration", s))
                .transpose()?;
            Some(Aggregation { methods, period })
        } else {
            if let Some(s) = p.aggr_methods.as_deref() {
                for m in crate::query::split_list("aggrMethods", s)? {
                    if AggMethod::parse(&m).is_none() {
                        return Err(BrokerError::bad_data(format!(
                            "unknown aggregation method '{m}' in 'aggrMethods'"
                        )));
                    }
                }
            }
            if let Some(s) = p.aggr_period_duration.as_deref() {
                IsoDuration::parse("aggrPeriodDuration", s)?;
            }
            None
        };
        Ok(TemporalQuery {
            property,
            timerel,
            time_at,
            end_time_at,
            last_n,
            format,
            aggregation,
            attrs,
            dataset_ids,
        })
    }

    /// The engine selection for this window.
    fn selection(&self, last_n: Option<usize>) -> Selection {
        let p = self.property;
        let (lower, upper) = match (self.timerel, &self.time_at, &self.end_time_at) {
            (Some(TimeRel::Before), Some(t), _) => {
                (Bound::Unbounded, Bound::Excluded(p.to_unit(t)))
            }
            (Some(TimeRel::After), Some(t), _) => (Bound::Included(p.to_unit(t)), Bound::Unbounded),
            (Some(TimeRel::Between), Some(a), Some(b)) => {
                (Bound::Included(p.to_unit(a)), Bound::Excluded(p.to_unit(b)))
            }
            _ => (Bound::Unbounded, Bound::Unbounded),
        };
        Selection {
            time: p.prop(),
            lower,
            upper,
            last_n,
        }
    }

    fn wants(&self, attr: &str, dataset: Option<&str>) -> bool {
        self.attrs
            .as_ref()
            .is_none_or(|a| a.iter().any(|x| x == attr))
            && self
                .dataset_ids
                .as_ref()
                .is_none_or(|ids| ids.iter().any(|d| d.as_deref() == dataset))
    }
}

/// The points of one attribute instance series (or, aggregated, its periods).
#[derive(Debug, Clone)]
pub struct SeriesPoints {
    pub attr: Arc<str>,
    pub dataset: Option<Arc<str>>,
    pub kind: AttrKind,
    pub points: Vec<Point>,
    /// The aggregated representation's periods (aggregatedValues only).
    pub buckets: Option<Vec<Bucket>>,
}

/// The temporal evolution of one entity.
#[derive(Debug, Clone)]
pub struct TemporalEntity {
    pub id: String,
    pub types: Vec<Arc<str>>,
    pub scope: Option<Vec<String>>,
    pub series: Vec<SeriesPoints>,
}

/// `Content-Range` of a partial temporal answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ContentRange {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// `lastN` when given, else unknown (`*`).
    pub size: Option<usize>,
}

impl ContentRange {
    pub fn header(&self) -> String {
        let f = citybrain_model::time::format_datetime;
        let size = self.size.map_or("*".to_string(), |n| n.to_string());
        format!("date-time {}-{}/{}", f(&self.start), f(&self.end), size)
    }
}

/// The answer of a temporal retrieval or query.
#[derive(Debug, Clone)]
pub struct TemporalPage {
    pub entities: Vec<TemporalEntity>,
    pub range: Option<ContentRange>,
    pub total: Option<usize>,
    pub has_more: bool,
    pub offset: usize,
    pub limit: usize,
}

/// The filters of a query that need no values (ids, types, idPattern, scope, attrs),
/// checked on what the history knows of an entity without building one.
fn meta_matches(query: &EntityQuery, h: &EntityHistory) -> bool {
    if query
        .ids
        .as_ref()
        .is_some_and(|ids| !ids.iter().any(|i| **i == *h.id))
    {
        return false;
    }
    if query
        .types
        .as_ref()
        .is_some_and(|t| !t.matches_types(&h.types))
    {
        return false;
    }
    if query
        .id_pattern
        .as_ref()
        .is_some_and(|r| !r.is_match(&h.id))
    {
        return false;
    }
    if let Some(attrs) = &query.attrs {
        if !h
            .series
            .iter()
            .any(|s| attrs.iter().any(|a| **a == *s.attr))
        {
            return false;
        }
    }
    if let Some(scope) = &query.scope {
        let es: Option<Vec<String>> = h
            .scope
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok());
        let Some(es) = es else { return false };
        if !scope.iter().any(|p| crate::query::scope_matches(p, &es)) {
            return false;
        }
    }
    true
}

/// The kind of a series' instances (from its first point).
fn kind_of(points: &[Point]) -> AttrKind {
    points
        .first()
        .map_or(AttrKind::Property, |p| attribute_of(p, None).kind)
}

impl Broker {
    fn tsdb(&self) -> Result<&dyn HistoryReader> {
        self.store.history().map(|h| h.reader()).ok_or_else(|| {
            BrokerError::new(
                ErrorKind::OperationNotSupported,
                "this store keeps no history",
            )
        })
    }

    /// Reads the selected series of one entity (no instance cap).
    /// What `rc` sees of an entity's history: the series it sees as stored, then those
    /// it sees masked, each instance through the mask (none in the aggregated
    /// representation: an aggregate of masked values would show what they hide).
    fn read_seen(
        &self,
        rc: &RequestContext,
        seen: &Seen,
        tq: &TemporalQuery,
        last_n: Option<usize>,
    ) -> Result<TemporalEntity> {
        let mut te = self.read_entity(&seen.h, tq, last_n)?;
        if seen.masked.is_empty() || tq.aggregation.is_some() {
            return Ok(te);
        }
        let masked = EntityHistory {
            id: seen.h.id.clone(),
            types: seen.h.types.clone(),
            scope: seen.h.scope.clone(),
            series: seen.masked.clone(),
        };
        for mut sp in self.read_entity(&masked, tq, last_n)?.series {
            let instances: Vec<citybrain_model::Attribute> = sp
                .points
                .iter()
                .map(|p| attribute_of(p, sp.dataset.as_deref()))
                .collect();
            let shown = self
                .authorizer()
                .mask_history(rc, &seen.h.types, &sp.attr, &instances);
            sp.points = sp
                .points
                .iter()
                .zip(shown)
                .filter_map(|(p, a)| {
                    a.map(|a| {
                        let mut q = point_of(&a);
                        // The instance keeps its identity (its recording time).
                        q.rec = p.rec;
                        q
                    })
                })
                .collect();
            if !sp.points.is_empty() {
                sp.kind = kind_of(&sp.points);
                te.series.push(sp);
            }
        }
        Ok(te)
    }

    fn read_entity(
        &self,
        h: &EntityHistory,
        tq: &TemporalQuery,
        last_n: Option<usize>,
    ) -> Result<TemporalEntity> {
        let db = self.tsdb()?;
        let sel = tq.selection(last_n);
        let mut series = Vec::new();
        for s in &h.series {
            if !tq.wants(&s.attr, s.dataset.as_deref()) {
                continue;
            }
            if let Some(agg) = &tq.aggregation {
                if let Some(sp) = self.aggregate_series(db, s, tq, agg, &sel) {
                    series.push(sp);
                }
                continue;
            }
            let (mut points, errors) = db.read(s.id, &sel);
            if !errors.is_empty() {
                tracing::error!(entity = %h.id, attr = %s.attr, errors = errors.len(), "history read skipped damaged blocks");
            }
            let deleted_only = tq.property == TimeProperty::DeletedAt;
            if points.iter().any(|p| is_deletion(p) != deleted_only) {
                points.retain(|p| is_deletion(p) == deleted_only);
                if let Some(n) = last_n {
                    // Re-read without the cap: deletions took places in the last N.
                    let mut all = db.read(s.id, &tq.selection(None)).0;
                    all.retain(|p| is_deletion(p) == deleted_only);
                    let cut = all.len().saturating_sub(n);
                    all.drain(..cut);
                    points = all;
                }
            }
            if points.is_empty() {
                continue;
            }
            series.push(SeriesPoints {
                attr: s.attr.clone(),
                dataset: s.dataset.clone(),
                kind: kind_of(&points),
                points,
                buckets: None,
            });
        }
        Ok(TemporalEntity {
            id: h.id.to_string(),
            types: h.types.clone(),
            scope: h
                .scope
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            series,
        })
    }

    /// The aggregated periods of one series: straight from the compressed columns when
    /// the engine can, else from its points.
    fn aggregate_series(
        &self,
        db: &dyn HistoryReader,
        s: &citybrain_storage::tsdb::SeriesInfo,
        tq: &TemporalQuery,
        agg: &Aggregation,
        sel: &Selection,
    ) -> Option<SeriesPoints> {
        let prop = tq.property;
        let origin = match (tq.timerel, tq.time_at) {
            (Some(TimeRel::After | TimeRel::Between), Some(t)) => Some(t.timestamp_millis()),
            _ => None,
        };
        let end = match (tq.timerel, tq.time_at, tq.end_time_at) {
            (Some(TimeRel::Between), _, Some(e)) => Some(e.timestamp_millis()),
            (Some(TimeRel::Before), Some(t), _) => Some(t.timestamp_millis()),
            _ => None,
        };
        let next = agg.period.map(|d| {
            move |start: i64| {
                d.add_to(from_millis(start))
                    .map_or(i64::MAX, |t| t.timestamp_millis())
            }
        });
        let next_ref: Option<&dyn Fn(i64) -> i64> = next.as_ref().map(|f| f as _);
        let fast = (prop == TimeProperty::ObservedAt)
            .then(|| db.aggregate(s.id, sel, origin, end, next_ref, &agg.methods))
            .flatten();
        let (buckets, kind) = match fast {
            Some(Ok(b)) => (b, AttrKind::Property),
            other => {
                if let Some(Err(e)) = other {
                    tracing::error!(error = %e, attr = %s.attr, "aggregating around a damaged block");
                }
                let deleted_only = prop == TimeProperty::DeletedAt;
                let (mut points, _) = db.read(s.id, sel);
                points.retain(|p| is_deletion(p) == deleted_only);
                let time_of = |p: &Point| prop.millis_of(p);
                let b = aggregate(&points, &time_of, origin, end, next_ref, &agg.methods);
                (b, kind_of(&points))
            }
        };
        (!buckets.is_empty()).then(|| SeriesPoints {
            attr: s.attr.clone(),
            dataset: s.dataset.clone(),
            kind,
            points: Vec::new(),
            buckets: Some(buckets),
        })
    }

    /// Caps every series at `max` instances and computes the Content-Range (6.3.10).
    fn cap(&self, entities: &mut [TemporalEntity], tq: &TemporalQuery) -> Option<ContentRange> {
        if tq.format == TemporalFormat::Aggregated {
            return None;
        }
        let max = self.limits.max_instances.max(1);
        let prop = tq.property;
        let descending = tq.last_n.is_some();
        let mut cut: Option<i64> = None;
        for e in entities.iter() {
            for s in &e.series {
                if s.points.len() <= max {
                    continue;
                }
                let c = if descending {
                    prop.millis_of(&s.points[s.points.len() - max])
                } else {
                    prop.millis_of(&s.points[max - 1])
                };
                cut = Some(match cut {
                    None => c,
                    Some(x) if descending => x.max(c),
                    Some(x) => x.min(c),
                });
            }
        }
        let cut = cut?;
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for e in entities.iter_mut() {
            for s in &mut e.series {
                s.points.retain(|p| {
                    let t = prop.millis_of(p);
                    if descending {
                        t >= cut
                    } else {
                        t <= cut
                    }
                });
                // Within the cut a series may still exceed the cap at equal times.
                if s.points.len() > max {
                    if descending {
                        let n = s.points.len() - max;
                        s.points.drain(..n);
                    } else {
                        s.points.truncate(max);
                    }
                }
                for p in &s.points {
                    lo = lo.min(prop.millis_of(p));
                    hi = hi.max(prop.millis_of(p));
                }
            }
            // A series cut to nothing stays, empty: the client learns it continues later.
        }
        let (start, end) = if descending {
            let start = match (tq.timerel, tq.time_at, tq.end_time_at) {
                (Some(TimeRel::Between), _, Some(end)) => end,
                (Some(TimeRel::Before), Some(t), _) => t,
                _ => from_millis(hi),
            };
            (start, from_millis(cut))
        } else {
            let start = match (tq.timerel, tq.time_at) {
                (Some(TimeRel::After | TimeRel::Between), Some(t)) => t,
                _ => from_millis(lo.min(cut)),
            };
            (start, from_millis(cut))
        };
        Some(ContentRange {
            start,
            end,
            size: tq.last_n,
        })
    }

    /// `GET /temporal/entities/{id}`.
    pub fn retrieve_temporal(
        &self,
        rc: &RequestContext,
        id: &str,
        tq: &TemporalQuery,
    ) -> Result<TemporalPage> {
        crate::entities::check_id(id)?;
        self.check_tenant(rc)?;
        let types: Vec<Arc<str>> = self
            .store
            .get(&rc.tenant, id)?
            .map(|e| e.types.clone())
            .unwrap_or_default();
        let not_found = || {
            BrokerError::from(citybrain_model::ModelError::not_found(format!(
                "entity '{id}' has no temporal representation"
            )))
        };
        if !self.may_read(rc, Action::history(Verb::Read, &types, Some(id)))? {
            return Err(not_found());
        }
        let db = self.tsdb()?;
        let h = db.entity(&rc.tenant, id).ok_or_else(not_found)?;
        let everything = self.authorizer().sees_everything(rc);
        let h = self
            .history_seen(rc, everything, h)?
            .ok_or_else(not_found)?;
        if let Some(attrs) = &tq.attrs {
            if !h.series().any(|s| attrs.iter().any(|a| **a == *s.attr)) {
                return Err(citybrain_model::ModelError::not_found(format!(
                    "entity '{id}' has no history of the requested attributes"
                ))
                .into());
            }
        }
        let mut entities = vec![self.read_seen(rc, &h, tq, tq.last_n)?];
        let range = self.cap(&mut entities, tq);
        Ok(TemporalPage {
            entities,
            range,
            total: None,
            has_more: false,
            offset: 0,
            limit: 1,
        })
    }

    /// `GET /temporal/entities` and `POST /temporal/entityOperations/query`.
    pub fn query_temporal(
        &self,
        rc: &RequestContext,
        query: &EntityQuery,
        tq: &TemporalQuery,
    ) -> Result<TemporalPage> {
        self.check_tenant(rc)?;
        let asked = query.types_asked();
        self.allow(rc, Action::history(Verb::Read, &asked, None))?;
        let db = self.tsdb()?;
        let mut page = TemporalPage {
            entities: Vec::new(),
            range: None,
            total: None,
            has_more: false,
            offset: query.offset,
            limit: query.limit,
        };
        let mut matched = 0usize;
        let mut failure: Option<BrokerError> = None;
        // With orderBy every match is collected and sorted before paging.
        let mut candidates: Vec<(Seen, Option<TemporalEntity>)> = Vec::new();
        let everything = self.authorizer().sees_everything(rc);
        let mut visit = |h: EntityHistory| {
            // What the caller may not see is not matched; masked attributes' series
            // are set aside before the filter looks at them (and shown masked).
            let h = match self.history_seen(rc, everything, h) {
                Ok(Some(h)) => h,
                Ok(None) => return ControlFlow::Continue(()),
                Err(e) => {
                    failure = Some(e);
                    return ControlFlow::Break(());
                }
            };
            match self.temporal_match(&h.h, query, tq) {
                Ok(true) => {}
                Ok(false) => return ControlFlow::Continue(()),
                Err(e) => {
                    failure = Some(e);
                    return ControlFlow::Break(());
                }
            }
            // An entity without instances of the requested attributes (or, with a time
            // window, without instances in it) is not part of the answer. The series
            // list answers the first without reading; only a window needs points.
            if (tq.attrs.is_some() || tq.dataset_ids.is_some())
                && !h.series().any(|s| tq.wants(&s.attr, s.dataset.as_deref()))
            {
                return ControlFlow::Continue(());
            }
            let mut te = None;
            if tq.timerel.is_some() {
                match self.read_seen(rc, &h, tq, tq.last_n) {
                    Ok(t) if t.series.is_empty() => return ControlFlow::Continue(()),
                    Ok(t) => te = Some(t),
                    Err(e) => {
                        failure = Some(e);
                        return ControlFlow::Break(());
                    }
                }
            }
            if query.order_by.is_some() {
                candidates.push((h, te));
                return ControlFlow::Continue(());
            }
            matched += 1;
            if matched > query.offset {
                if page.entities.len() < query.limit {
                    let te = match te {
                        Some(t) => t,
                        None => match self.read_seen(rc, &h, tq, tq.last_n) {
                            Ok(t) => t,
                            Err(e) => {
                                failure = Some(e);
                                return ControlFlow::Break(());
                            }
                        },
                    };
                    page.entities.push(te);
                } else {
                    page.has_more = true;
                    if !query.count {
                        return ControlFlow::Break(());
                    }
                }
            }
            ControlFlow::Continue(())
        };
        match &query.ids {
            Some(ids) => {
                let mut sorted = ids.clone();
                sorted.sort();
                sorted.dedup();
                for id in sorted {
                    if let Some(h) = db.entity(&rc.tenant, &id) {
                        if visit(h).is_break() {
                            break;
                        }
                    }
                }
            }
            None => db.scan(&rc.tenant, None, &mut visit),
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some(order) = &query.order_by {
            // Sort on the current entity when there is one (its values, createdAt...),
            // else on what the history knows (id, type).
            let mut keyed: Vec<(Arc<Entity>, Seen, Option<TemporalEntity>)> =
                Vec::with_capacity(candidates.len());
            for (h, te) in candidates {
                let e = self.store.get(&rc.tenant, &h.h.id)?.unwrap_or_else(|| {
                    Arc::new(Entity::shell(h.h.id.to_string(), h.h.types.clone()))
                });
                keyed.push((e, h, te));
            }
            keyed.sort_by(|a, b| order.compare(&a.0, &b.0));
            matched = keyed.len();
            page.has_more = keyed.len() > query.offset + query.limit;
            for (_, h, te) in keyed.into_iter().skip(query.offset).take(query.limit) {
                let te = match te {
                    Some(t) => t,
                    None => self.read_seen(rc, &h, tq, tq.last_n)?,
                };
                page.entities.push(te);
            }
        }
        if query.count {
            page.total = Some(matched);
        }
        page.range = self.cap(&mut page.entities, tq);
        Ok(page)
    }

    /// The entity-level filters of a temporal query; `q` and geo-queries look at the
    /// instances inside the time window.
    fn temporal_match(
        &self,
        h: &EntityHistory,
        query: &EntityQuery,
        tq: &TemporalQuery,
    ) -> Result<bool> {
        // Without q or a geo-query, what the history knows of the entity is enough.
        if query.q.is_none() && query.geo.is_none() {
            return Ok(meta_matches(query, h));
        }
        let mut shell = Entity {
            id: h.id.to_string(),
            types: h.types.clone(),
            scope: h
                .scope
                .as_deref()
                .and_then(|s| serde_json::from_str(s).ok()),
            created_at: DateTime::<Utc>::UNIX_EPOCH,
            modified_at: DateTime::<Utc>::UNIX_EPOCH,
            attrs: Vec::new(),
        };
        {
            let te = self.read_entity(
                h,
                &TemporalQuery {
                    attrs: None,
                    dataset_ids: None,
                    format: TemporalFormat::Normalized,
                    aggregation: None,
                    ..tq.clone()
                },
                None,
            )?;
            for s in &te.series {
                let instances: citybrain_model::Instances = s
                    .points
                    .iter()
                    .map(|p| attribute_of(p, s.dataset.as_deref()))
                    .collect();
                match shell.attrs.iter_mut().find(|(n, _)| *n == s.attr) {
                    Some((_, v)) => v.extend(instances),
                    None => shell.attrs.push((s.attr.clone(), instances)),
                }
            }
        }
        Ok(query.matches(&shell))
    }
}

#[cfg(test)]
mod tests;
