//! The decision and view-plan caches: keyed by a hash of the whole key, with the
//! whole key kept and compared on a hit, so that a lookup allocates nothing and a
//! collision never returns another request's decision.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::Decided;

/// What a decision is asked about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Res<'a> {
    Type(&'a str),
    Attr(&'a str, &'a str),
    Api(&'static str),
    Dataset(DatasetRes<'a>),
}

/// A dataset as a Cedar resource.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DatasetRes<'a> {
    pub(crate) id: &'a str,
    pub(crate) level: crate::Level,
    pub(crate) owner: &'a str,
    pub(crate) access: &'a str,
}

/// What one caller may see of one entity type: the type's decision and each
/// attribute's, filled in as attributes are met.
pub(crate) struct Plan {
    pub(crate) visible: bool,
    pub(crate) attrs: RwLock<HashMap<Arc<str>, Decided, foldhash::fast::RandomState>>,
}

/// A resource as a cache entry holds it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ResKey {
    Type(Box<str>),
    Attr(Box<str>, Box<str>),
    Api(&'static str),
    Dataset(Box<str>, crate::Level, Box<str>, Box<str>),
}

impl Res<'_> {
    pub(crate) fn owned(&self) -> ResKey {
        match *self {
            Res::Type(t) => ResKey::Type(t.into()),
            Res::Attr(t, a) => ResKey::Attr(t.into(), a.into()),
            Res::Api(a) => ResKey::Api(a),
            Res::Dataset(d) => {
                ResKey::Dataset(d.id.into(), d.level, d.owner.into(), d.access.into())
            }
        }
    }

    pub(crate) fn is(&self, k: &ResKey) -> bool {
        match (*self, k) {
            (Res::Type(t), ResKey::Type(u)) => t == &**u,
            (Res::Attr(t, a), ResKey::Attr(u, b)) => t == &**u && a == &**b,
            (Res::Api(a), ResKey::Api(b)) => a == *b,
            (Res::Dataset(d), ResKey::Dataset(id, level, owner, access)) => {
                d.id == &**id && d.level == *level && d.owner == &**owner && d.access == &**access
            }
            _ => false,
        }
    }
}

/// The part of a decision's context beyond principal, action, resource and tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CtxKey {
    /// Hour and weekday, as one number.
    pub(crate) bucket: u32,
    pub(crate) emergency: bool,
    pub(crate) source: Option<std::net::IpAddr>,
    pub(crate) purpose: Option<Arc<str>>,
}

/// One cached decision, with everything it was decided on (compared on a hit, so that
/// a hash collision can never return another request's decision).
pub(crate) struct DecisionEntry {
    pub(crate) principal: u64,
    pub(crate) action: &'static str,
    pub(crate) res: ResKey,
    pub(crate) tenant: Box<str>,
    pub(crate) ctx: CtxKey,
    pub(crate) decided: Decided,
}

/// One cached view plan, with what it was made for.
pub(crate) struct PlanEntry {
    pub(crate) principal: u64,
    pub(crate) types: Vec<Arc<str>>,
    pub(crate) tenant: Box<str>,
    pub(crate) ctx: CtxKey,
    pub(crate) plan: Arc<Plan>,
}

/// Cache maps are keyed by a hash of the whole key and hold the entries of that hash;
/// a lookup allocates nothing.
pub(crate) type Cache<T> = HashMap<u64, Vec<T>, foldhash::fast::RandomState>;
