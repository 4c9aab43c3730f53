//! Points, series keys and the mutations the engine applies.

use std::sync::Arc;

/// A value of a point: numbers kept as numbers (compressed), everything else (strings,
/// booleans, JSON, geometry, relationships, whole attribute instances with
/// sub-attributes) as a JSON document, dictionary-encoded in segments.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    F(f64),
    I(i64),
    D(Arc<str>),
}

impl Val {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Val::F(f) => Some(*f),
            Val::I(i) => Some(*i as f64),
            Val::D(_) => None,
        }
    }
}

/// One observation of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Observation time, milliseconds since the epoch (`observedAt`, or arrival time).
    pub t: i64,
    /// When the point was recorded, microseconds since the epoch; unique and increasing
    /// within a series (the engine bumps collisions), so it also identifies the instance.
    pub rec: i64,
    /// Whether `t` came from an explicit `observedAt`.
    pub observed: bool,
    pub unit: Option<Arc<str>>,
    pub v: Val,
}

/// Identifies a series: (tenant, entity, attribute, datasetId).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub tenant: Arc<str>,
    pub entity: Arc<str>,
    pub attr: Arc<str>,
    /// `None` is the default instance.
    pub dataset: Option<Arc<str>>,
}

/// Which attribute series a delete targets.
#[derive(Debug, Clone, PartialEq)]
pub enum DatasetSel {
    /// Every series of the attribute.
    All,
    /// One dataset (`None` = the default instance).
    One(Option<Arc<str>>),
}

/// A mutation of the history, as logged in the write-ahead log and applied on replay.
#[derive(Debug, Clone, PartialEq)]
pub enum HistOp {
    /// Appends points to a series (created on first use).
    Insert { key: SeriesKey, points: Vec<Point> },
    /// Sets the entity's types (expanded) and scope (a JSON document, if any), used to
    /// filter, render and pick retention policies.
    EntityMeta {
        tenant: Arc<str>,
        entity: Arc<str>,
        types: Vec<Arc<str>>,
        scope: Option<Arc<str>>,
    },
    /// Forgets the whole history of an entity.
    DeleteEntity { tenant: Arc<str>, entity: Arc<str> },
    /// Forgets the history of an attribute.
    DeleteAttr {
        tenant: Arc<str>,
        entity: Arc<str>,
        attr: Arc<str>,
        dataset: DatasetSel,
    },
    /// Removes one instance (`rec` identifies it within its series).
    DeleteInstance { key: SeriesKey, rec: i64 },
    /// Replaces one instance's value, keeping its identity (`point.rec`).
    ReplaceInstance { key: SeriesKey, point: Point },
}
