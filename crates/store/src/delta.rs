//! Update records for the log: the attributes an update changed, not the whole entity.
//!
//! A telemetry update changes one or two attributes of an entity that may hold dozens;
//! logging the after-image costs the whole entity in bytes and JSON encoding per
//! update (and fills the log, so snapshots come sooner). An update whose result can be
//! rebuilt exactly from the previous version is logged as a delta: the new
//! modification time, the attributes set (whole, with all their instances), the
//! attributes removed, and the types when they changed. Replay applies it to the
//! entity as the log left it, which is the `before` of the write: the log is replayed
//! in order from a snapshot taken at a record boundary.
//!
//! Decision: [`diff`] only answers a delta when [`apply`] provably gives `after` back
//! (same id, creation time and scope; attribute order reproducible), and otherwise the
//! caller logs the after-image as before. Equality of `apply(before, diff(before,
//! after)) == after` is checked by a property test.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use citybrain_model::entity::AttrEntry;
use citybrain_model::intern::same;
use citybrain_model::Entity;

/// What changed from one version of an entity to the next.
#[derive(Debug)]
pub(crate) struct Delta<'a> {
    /// Attributes added or changed, in `after`'s order.
    pub set: Vec<&'a AttrEntry>,
    /// Attributes removed (by name).
    pub removed: Vec<&'a str>,
    /// The new types, when they changed.
    pub types: Option<&'a [Arc<str>]>,
}

/// An owned delta, as read back from the log.
#[derive(Debug)]
pub(crate) struct OwnedDelta {
    pub modified_at: DateTime<Utc>,
    pub set: Vec<AttrEntry>,
    pub removed: Vec<String>,
    pub types: Option<Vec<Arc<str>>>,
}

/// The delta from `before` to `after`, or `None` when replaying a delta could not give
/// `after` exactly (the caller then logs the whole entity) or when it would not be
/// smaller (every attribute changed).
pub(crate) fn diff<'a>(before: &'a Entity, after: &'a Entity) -> Option<Delta<'a>> {
    if before.id != after.id || before.created_at != after.created_at || before.scope != after.scope
    {
        return None;
    }
    let mut set = Vec::new();
    // Replay keeps the attributes that stay in their place and appends new ones: the
    // attributes of `after` must be the kept ones in `before`'s order, then the new.
    let mut last_kept: Option<usize> = None;
    let mut new_seen = false;
    let mut kept = 0usize;
    for (i, entry) in after.attrs.iter().enumerate() {
        match before.attr_position(&entry.0, i) {
            Some(j) => {
                if new_seen || last_kept.is_some_and(|l| l >= j) {
                    return None;
                }
                last_kept = Some(j);
                kept += 1;
                if before.attrs[j].1 != entry.1 {
                    set.push(entry);
                }
            }
            None => {
                new_seen = true;
                set.push(entry);
            }
        }
    }
    let removed: Vec<&str> = if kept == before.attrs.len() {
        Vec::new()
    } else {
        before
            .attrs
            .iter()
            .filter(|(n, _)| !after.attrs.iter().any(|(m, _)| same(m, n)))
            .map(|(n, _)| &**n)
            .collect()
    };
    if !after.attrs.is_empty() && set.len() == after.attrs.len() {
        return None; // no smaller than the whole entity
    }
    let types = (before.types != after.types).then_some(after.types.as_slice());
    Some(Delta {
        set,
        removed,
        types,
    })
}

/// `before` with the delta applied: the entity the logged write produced.
pub(crate) fn apply(before: &Entity, d: OwnedDelta) -> Entity {
    let mut e = before.clone();
    e.modified_at = d.modified_at;
    if let Some(types) = d.types {
        e.types = types;
    }
    if !d.removed.is_empty() {
        e.attrs
            .retain(|(n, _)| !d.removed.iter().any(|r| r.as_str() == &**n));
    }
    for (name, instances) in d.set {
        match e.attrs.iter_mut().find(|(n, _)| same(n, &name)) {
            Some(slot) => slot.1 = instances,
            None => e.attrs.push((name, instances)),
        }
    }
    e.compact();
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use citybrain_model::Attribute;
    use proptest::prelude::*;
    use serde_json::json;

    fn entity(attrs: &[(u8, i64)], types: &[&str], t: i64) -> Entity {
        let at = DateTime::from_timestamp(t, 0).unwrap();
        Entity {
            id: "urn:ngsi-ld:X:1".into(),
            types: types.iter().map(|s| Arc::from(*s)).collect(),
            scope: None,
            created_at: DateTime::from_timestamp(0, 0).unwrap(),
            modified_at: at,
            attrs: attrs
                .iter()
                .map(|(n, v)| {
                    (
                        Arc::from(format!("https://x/a{n}").as_str()),
                        citybrain_model::instances![Attribute::property(
                            json!(v),
                            DateTime::from_timestamp(*v, 0).unwrap(),
                        )],
                    )
                })
                .collect(),
        }
    }

    fn owned(d: &Delta, m: DateTime<Utc>) -> OwnedDelta {
        OwnedDelta {
            modified_at: m,
            set: d.set.iter().map(|e| (*e).clone()).collect(),
            removed: d.removed.iter().map(|s| s.to_string()).collect(),
            types: d.types.map(<[_]>::to_vec),
        }
    }

    #[test]
    fn one_changed_attribute_is_the_whole_delta() {
        let a = entity(&[(1, 1), (2, 2), (3, 3)], &["T"], 10);
        let mut b = a.clone();
        b.attrs[1].1 = citybrain_model::instances![Attribute::property(json!(9), b.modified_at)];
        b.modified_at = DateTime::from_timestamp(11, 0).unwrap();
        let d = diff(&a, &b).unwrap();
        assert_eq!(d.set.len(), 1);
        assert!(d.removed.is_empty() && d.types.is_none());
        assert_eq!(apply(&a, owned(&d, b.modified_at)), b);
    }

    #[test]
    fn a_reordering_or_a_new_scope_is_logged_whole() {
        let a = entity(&[(1, 1), (2, 2), (3, 3)], &["T"], 10);
        let mut b = a.clone();
        b.attrs.swap(0, 2);
        assert!(diff(&a, &b).is_none());
        let mut c = a.clone();
        c.scope = Some(vec!["/x".into()]);
        assert!(diff(&a, &c).is_none());
    }

    proptest! {
        /// Whatever the change, a delta that is answered replays to `after` exactly.
        #[test]
        fn apply_of_diff_gives_after(
            before in proptest::collection::vec((0u8..12, 0i64..4), 0..8),
            after in proptest::collection::vec((0u8..12, 0i64..4), 0..8),
            retype in any::<bool>(),
        ) {
            let dedup = |v: Vec<(u8, i64)>| {
                let mut seen = std::collections::HashSet::new();
                v.into_iter().filter(|(n, _)| seen.insert(*n)).collect::<Vec<_>>()
            };
            let a = entity(&dedup(before), &["T"], 10);
            let b = entity(&dedup(after), if retype { &["T", "U"] } else { &["T"] }, 20);
            if let Some(d) = diff(&a, &b) {
                prop_assert_eq!(apply(&a, owned(&d, b.modified_at)), b);
            }
        }
    }
}
