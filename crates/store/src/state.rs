//! In-memory state of one tenant: entities in id order, an index by type and an index of
//! attribute values.
//!
//! The id-ordered structures hold the entity itself (`Arc<Entity>`, ordered by id)
//! rather than a copy of its id: one allocation per entity serves them all. The value
//! index holds a slot number instead, stable across versions of the entity: an update
//! re-points the two id-ordered entries and touches the value index only for the
//! values it changed (a telemetry update of one attribute of an entity with ten
//! indexed values costs two index operations, not ten).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::ops::{Bound, ControlFlow};
use std::sync::Arc;

use citybrain_model::geobox::BBox;
use citybrain_model::intern::same;
use citybrain_model::q::{IndexKey, KeyRange};
use citybrain_model::{Attribute, Entity};

use crate::spatial::{self, SpatialIndex};

/// An entity ordered (and looked up) by its id.
#[derive(Debug, Clone)]
pub(crate) struct ById(pub Arc<Entity>);

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

impl PartialOrd for ById {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ById {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.id.cmp(&other.0.id)
    }
}

impl Borrow<str> for ById {
    fn borrow(&self) -> &str {
        &self.0.id
    }
}

/// Hashing for the maps keyed by type and attribute names (internal keys, looked up on
/// every write).
pub(crate) type Fast = foldhash::fast::RandomState;

/// An entity in the id-ordered map, with its slot number (what the value index holds).
#[derive(Debug, Clone)]
struct Slotted {
    e: ById,
    slot: u32,
}

impl PartialEq for Slotted {
    fn eq(&self, other: &Self) -> bool {
        self.e == other.e
    }
}

impl Eq for Slotted {}

impl PartialOrd for Slotted {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Slotted {
    fn cmp(&self, other: &Self) -> Ordering {
        self.e.cmp(&other.e)
    }
}

impl Borrow<str> for Slotted {
    fn borrow(&self) -> &str {
        &self.e.0.id
    }
}

/// One attribute's index: (value, slot), sorted.
pub(crate) type ValueIndex = BTreeSet<(IndexKey, u32)>;

#[derive(Debug, Default, Clone)]
pub(crate) struct TenantState {
    entities: BTreeSet<Slotted>,
    /// The current version of each entity by slot; freed slots are reused.
    slots: Vec<Option<Arc<Entity>>>,
    free: Vec<u32>,
    by_type: HashMap<Arc<str>, BTreeSet<ById>, Fast>,
    /// Value index: attribute IRI → (scalar value of an instance, slot). `None` when
    /// disabled.
    values: Option<HashMap<Arc<str>, ValueIndex, Fast>>,
    /// R-trees of GeoProperty boxes by attribute IRI; `None` when disabled.
    spatial: Option<SpatialIndex>,
    /// What a bulk load collects, while one runs.
    bulk: Option<Box<Bulk>>,
}

/// A snapshot's entities, collected by a bulk load and built into the ordered sets in
/// one go at its end: a snapshot lists them in id order, so the sets are built from
/// sorted runs (`BTreeSet::from_iter`, linear) instead of a million searches.
#[derive(Debug, Default, Clone)]
struct Bulk {
    entities: Vec<Slotted>,
    by_type: HashMap<Arc<str>, Vec<ById>, Fast>,
    values: HashMap<Arc<str>, Vec<(IndexKey, u32)>, Fast>,
}

/// The keys one attribute contributes to the value index, every instance's
/// (`citybrain_model::q::index_keys`), so that index candidates are a superset of
/// what `q` matches.
fn attr_keys(instances: &[Attribute]) -> Vec<IndexKey> {
    instances
        .iter()
        .flat_map(citybrain_model::q::index_keys)
        .collect()
}

/// Whether two versions of an attribute give the same index keys (same kinds and
/// values, instance by instance): then its entries stay as they are.
fn same_keys(a: &[Attribute], b: &[Attribute]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.kind == y.kind && x.value == y.value)
}

fn index_attr(
    values: &mut HashMap<Arc<str>, ValueIndex, Fast>,
    name: &Arc<str>,
    slot: u32,
    keys: Vec<IndexKey>,
) {
    if keys.is_empty() {
        return;
    }
    let set = match values.get_mut(&**name) {
        Some(set) => set,
        None => values.entry(name.clone()).or_default(),
    };
    for k in keys {
        set.insert((k, slot));
    }
}

fn unindex_attr(
    values: &mut HashMap<Arc<str>, ValueIndex, Fast>,
    name: &str,
    slot: u32,
    keys: Vec<IndexKey>,
) {
    if keys.is_empty() {
        return;
    }
    if let Some(set) = values.get_mut(name) {
        for k in keys {
            set.remove(&(k, slot));
        }
        if set.is_empty() {
            values.remove(name);
        }
    }
}

/// Moves the spatial entries of the GeoProperties whose values changed between two
/// versions of an entity (same slot).
fn reindex_spatial(spatial: &mut SpatialIndex, old: &ById, new: &ById, slot: u32) {
    for (i, (name, instances)) in new.0.attrs.iter().enumerate() {
        match old.0.attr_position(name, i).map(|at| &old.0.attrs[at].1) {
            Some(before) if same_keys(before, instances) => {}
            Some(before) => {
                spatial.remove(name, slot, before);
                spatial.add(name, slot, instances);
            }
            None => spatial.add(name, slot, instances),
        }
    }
    for (name, instances) in &old.0.attrs {
        if spatial::has_geo(instances) && !new.0.attrs.iter().any(|(n, _)| same(n, name)) {
            spatial.remove(name, slot, instances);
        }
    }
}

impl TenantState {
    pub fn new(value_index: bool, spatial_index: bool) -> Self {
        Self {
            values: value_index.then(HashMap::default),
            spatial: spatial_index.then(SpatialIndex::default),
            ..Default::default()
        }
    }

    /// Collects what [`Self::put`] is given (a snapshot load into an empty state) and
    /// builds the indexes once, at [`Self::end_bulk`]; nothing may be read meanwhile.
    pub fn begin_bulk(&mut self) {
        if let Some(s) = self.spatial.as_mut() {
            s.begin_bulk();
        }
        if self.entities.is_empty() {
            self.bulk = Some(Box::default());
        }
    }

    pub fn end_bulk(&mut self) {
        let Some(bulk) = self.bulk.take() else {
            if let Some(s) = self.spatial.as_mut() {
                s.end_bulk();
            }
            return;
        };
        let Bulk {
            mut entities,
            by_type,
            values,
        } = *bulk;
        // Stable: of equal ids (only in a damaged file), the later stays later.
        entities.sort_by(|a, b| a.e.cmp(&b.e));
        if entities.windows(2).any(|w| w[0].e == w[1].e) {
            // Put one by one (the later version of an id wins), as without a bulk load.
            if let Some(s) = self.spatial.as_mut() {
                s.end_bulk();
            }
            let mut fresh = TenantState::new(self.values.is_some(), self.spatial.is_some());
            for s in entities {
                fresh.put(s.e.0);
            }
            *self = fresh;
            return;
        }
        // The value index (sorting every key) and the spatial index are built on their
        // own threads while this one builds the id and type sets. The state was empty
        // when the load began: every set is new.
        let spatial = self.spatial.as_mut();
        let built = std::thread::scope(|scope| {
            let sorting = scope.spawn(move || {
                values
                    .into_iter()
                    .map(|(name, keys)| (name, keys.into_iter().collect::<ValueIndex>()))
                    .collect::<Vec<_>>()
            });
            // Packing the R-trees takes longest (about 0.8 s at a million points).
            let packing = spatial.map(|s| scope.spawn(move || s.end_bulk()));
            self.entities = entities.into_iter().collect();
            for (t, list) in by_type {
                self.by_type.insert(t, list.into_iter().collect());
            }
            if let Some(Err(panic)) = packing.map(|p| p.join()) {
                std::panic::resume_unwind(panic);
            }
            sorting.join()
        });
        let built = match built {
            Ok(b) => b,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        if let Some(index) = self.values.as_mut() {
            index.extend(built);
        }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Entity>> {
        self.entities.get(id).map(|b| &b.e.0)
    }

    /// The types of the entities held.
    pub fn type_names(&self) -> Vec<Arc<str>> {
        self.by_type.keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.entities.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Entity>> {
        self.entities.iter().map(|b| &b.e.0)
    }

    fn unindex(&mut self, old: &Slotted) {
        for t in &old.e.0.types {
            if let Some(set) = self.by_type.get_mut(&**t) {
                set.remove(&old.e);
                if set.is_empty() {
                    self.by_type.remove(&**t);
                }
            }
        }
        if let Some(values) = self.values.as_mut() {
            for (name, instances) in &old.e.0.attrs {
                unindex_attr(values, name, old.slot, attr_keys(instances));
            }
        }
        if let Some(spatial) = self.spatial.as_mut() {
            for (name, instances) in &old.e.0.attrs {
                spatial.remove(name, old.slot, instances);
            }
        }
        if let Some(s) = self.slots.get_mut(old.slot as usize) {
            *s = None;
            self.free.push(old.slot);
        }
    }

    fn index(&mut self, e: ById) {
        let slot = match self.free.pop() {
            Some(n) => {
                if let Some(s) = self.slots.get_mut(n as usize) {
                    *s = Some(e.0.clone());
                }
                n
            }
            None => {
                self.slots.push(Some(e.0.clone()));
                (self.slots.len() - 1) as u32
            }
        };
        for t in &e.0.types {
            self.by_type.entry(t.clone()).or_default().insert(e.clone());
        }
        if let Some(values) = self.values.as_mut() {
            for (name, instances) in &e.0.attrs {
                index_attr(values, name, slot, attr_keys(instances));
            }
        }
        if let Some(spatial) = self.spatial.as_mut() {
            for (name, instances) in &e.0.attrs {
                spatial.add(name, slot, instances);
            }
        }
        self.entities.insert(Slotted { e, slot });
    }

    pub fn put(&mut self, e: Arc<Entity>) {
        let e = ById(e);
        if let Some(bulk) = self.bulk.as_mut() {
            let slot = self.slots.len() as u32;
            self.slots.push(Some(e.0.clone()));
            for t in &e.0.types {
                bulk.by_type.entry(t.clone()).or_default().push(e.clone());
            }
            if self.values.is_some() {
                for (name, instances) in &e.0.attrs {
                    let keys = attr_keys(instances);
                    if !keys.is_empty() {
                        let list = bulk.values.entry(name.clone()).or_default();
                        list.extend(keys.into_iter().map(|k| (k, slot)));
                    }
                }
            }
            if let Some(spatial) = self.spatial.as_mut() {
                for (name, instances) in &e.0.attrs {
                    spatial.add(name, slot, instances);
                }
            }
            bulk.entities.push(Slotted { e, slot });
            return;
        }
        // One search: `replace` swaps the stored entity and hands back the old one.
        let slot = match self.entities.get(&*e.0.id) {
            Some(old) => old.slot,
            None => return self.index(e),
        };
        let Some(old) = self.entities.replace(Slotted { e: e.clone(), slot }) else {
            return;
        };
        self.reindex(&old.e, &e, slot);
    }

    /// Moves the entries of `old` to `new` (same id, same slot): the id-ordered type
    /// entries are replaced in place (one search each), and the value index changes
    /// only for the attributes whose indexed values changed.
    fn reindex(&mut self, old: &ById, new: &ById, slot: u32) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            *s = Some(new.0.clone());
        }
        for t in &old.0.types {
            if !new.0.types.contains(t) {
                if let Some(set) = self.by_type.get_mut(&**t) {
                    set.remove(old);
                    if set.is_empty() {
                        self.by_type.remove(&**t);
                    }
                }
            }
        }
        for t in &new.0.types {
            // Replaces the old entry, or inserts one for a newly added type.
            match self.by_type.get_mut(&**t) {
                Some(set) => {
                    set.replace(new.clone());
                }
                None => {
                    self.by_type
                        .entry(t.clone())
                        .or_default()
                        .insert(new.clone());
                }
            }
        }
        if let Some(spatial) = self.spatial.as_mut() {
            reindex_spatial(spatial, old, new, slot);
        }
        let Some(values) = self.values.as_mut() else {
            return;
        };
        for (i, (name, instances)) in new.0.attrs.iter().enumerate() {
            match old.0.attr_position(name, i).map(|at| &old.0.attrs[at].1) {
                Some(before) if same_keys(before, instances) => {}
                Some(before) => {
                    let (gone, came) = (attr_keys(before), attr_keys(instances));
                    let gone: Vec<IndexKey> =
                        gone.into_iter().filter(|k| !came.contains(k)).collect();
                    unindex_attr(values, name, slot, gone);
                    index_attr(values, name, slot, came);
                }
                None => index_attr(values, name, slot, attr_keys(instances)),
            }
        }
        for (name, instances) in &old.0.attrs {
            if !new.0.attrs.iter().any(|(n, _)| same(n, name)) {
                unindex_attr(values, name, slot, attr_keys(instances));
            }
        }
    }

    /// Entities whose GeoProperty `attr` has a box meeting any of `boxes`, in id
    /// order (candidates: the caller checks the relation); `None` without an index.
    pub fn in_boxes(&self, attr: &str, boxes: &[BBox]) -> Option<Vec<Arc<Entity>>> {
        let slots = self.spatial.as_ref()?.find(attr, boxes)?;
        let mut out: Vec<ById> = slots
            .into_iter()
            .filter_map(|n| self.slots.get(n as usize)?.clone().map(ById))
            .collect();
        out.sort();
        Some(out.into_iter().map(|b| b.0).collect())
    }

    /// Entries in the spatial index (tests: nothing is left behind).
    #[cfg(test)]
    pub fn spatial_len(&self) -> usize {
        self.spatial.as_ref().map_or(0, SpatialIndex::len)
    }

    pub fn delete(&mut self, id: &str) -> Option<Arc<Entity>> {
        let old = self.entities.take(id)?;
        self.unindex(&old);
        Some(old.e.0)
    }

    /// Entities whose `attr` falls in any of `ranges`, in id order; `None` without an index.
    pub fn in_ranges(&self, attr: &str, ranges: &[KeyRange]) -> Option<Vec<Arc<Entity>>> {
        let values = self.values.as_ref()?;
        let Some(set) = values.get(attr) else {
            return Some(Vec::new());
        };
        let mut out: Vec<ById> = Vec::new();
        for (lo, hi) in ranges {
            let lo = match lo {
                Bound::Included(k) => Bound::Included((k.clone(), u32::MIN)),
                Bound::Excluded(k) => Bound::Excluded((k.clone(), u32::MAX)),
                Bound::Unbounded => Bound::Unbounded,
            };
            let hi = match hi {
                Bound::Included(k) => Bound::Included((k.clone(), u32::MAX)),
                Bound::Excluded(k) => Bound::Excluded((k.clone(), u32::MIN)),
                Bound::Unbounded => Bound::Unbounded,
            };
            if let (
                Bound::Included(a) | Bound::Excluded(a),
                Bound::Included(b) | Bound::Excluded(b),
            ) = (&lo, &hi)
            {
                if a > b {
                    continue;
                }
            }
            out.extend(
                set.range((lo, hi))
                    .filter_map(|(_, n)| self.slots.get(*n as usize)?.clone().map(ById)),
            );
        }
        out.sort();
        out.dedup();
        Some(out.into_iter().map(|b| b.0).collect())
    }

    pub fn scan(
        &self,
        types: Option<&[String]>,
        after: Option<&str>,
        visit: &mut dyn FnMut(&Arc<Entity>) -> ControlFlow<()>,
    ) {
        let lower = match after {
            Some(a) => Bound::Excluded(a),
            None => Bound::Unbounded,
        };
        let range = (lower, Bound::Unbounded);
        match types {
            None => {
                for e in self.entities.range::<str, _>(range) {
                    if visit(&e.e.0).is_break() {
                        return;
                    }
                }
            }
            Some([one]) => {
                let Some(set) = self.by_type.get(one.as_str()) else {
                    return;
                };
                for e in set.range::<str, _>(range) {
                    if visit(&e.0).is_break() {
                        return;
                    }
                }
            }
            Some(many) => {
                // Merge the per-type sets in id order without duplicates.
                let mut all: BTreeSet<&ById> = BTreeSet::new();
                for t in many {
                    if let Some(set) = self.by_type.get(t.as_str()) {
                        all.extend(set.range::<str, _>(range));
                    }
                }
                for e in all {
                    if visit(&e.0).is_break() {
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use citybrain_model::Attribute;
    use proptest::prelude::*;
    use serde_json::json;

    /// (entity number, attributes as (name number, value), delete?)
    type Step = (u8, Vec<(u8, i64)>, bool);

    fn entity(n: u8, attrs: &[(u8, i64)]) -> Arc<Entity> {
        let t = DateTime::from_timestamp(0, 0).unwrap();
        let mut seen = std::collections::HashSet::new();
        Arc::new(Entity {
            id: format!("urn:x:{n}"),
            types: vec![Arc::from(if n.is_multiple_of(2) { "T" } else { "U" })],
            scope: None,
            created_at: t,
            modified_at: t,
            attrs: attrs
                .iter()
                .filter(|(a, _)| seen.insert(*a))
                .map(|(a, v)| {
                    (
                        Arc::from(format!("a{a}").as_str()),
                        citybrain_model::instances![Attribute::property(json!(v), t)],
                    )
                })
                .collect(),
        })
    }

    /// Everything a reader can ask of a state: entities in order, by type, by value.
    fn answers(st: &TenantState) -> Vec<String> {
        let mut out: Vec<String> = st.iter().map(|e| format!("{e:?}")).collect();
        for t in ["T", "U"] {
            let mut ids = Vec::new();
            st.scan(Some(&[t.to_string()]), None, &mut |e| {
                ids.push(e.id.clone());
                ControlFlow::Continue(())
            });
            out.push(format!("{t}: {ids:?}"));
        }
        for a in 0..3u8 {
            for v in 0..4i64 {
                let k = IndexKey::Num(v as f64);
                let got: Vec<String> = st
                    .in_ranges(
                        &format!("a{a}"),
                        &[(Bound::Included(k.clone()), Bound::Included(k))],
                    )
                    .unwrap_or_default()
                    .iter()
                    .map(|e| e.id.clone())
                    .collect();
                out.push(format!("a{a}={v}: {got:?}"));
            }
        }
        out
    }

    proptest! {
        /// A bulk load (a snapshot: begin_bulk, puts, end_bulk), whatever the order of
        /// its entities and even with an id twice, answers what the same puts one by
        /// one answer, and so it does after later updates and deletes.
        #[test]
        fn a_bulk_load_equals_puts_one_by_one(
            loaded in proptest::collection::vec((0u8..12, proptest::collection::vec((0u8..3, 0i64..4), 0..4)), 0..30),
            later in proptest::collection::vec(
                (0u8..12, proptest::collection::vec((0u8..3, 0i64..4), 0..4), proptest::bool::weighted(0.3)),
                0..20,
            ),
        ) {
            let mut bulk = TenantState::new(true, true);
            let mut plain = TenantState::new(true, true);
            bulk.begin_bulk();
            for (n, attrs) in &loaded {
                bulk.put(entity(*n, attrs));
                plain.put(entity(*n, attrs));
            }
            bulk.end_bulk();
            prop_assert_eq!(answers(&bulk), answers(&plain));
            for (n, attrs, delete) in &later {
                for st in [&mut bulk, &mut plain] {
                    if *delete {
                        st.delete(&format!("urn:x:{n}"));
                    } else {
                        st.put(entity(*n, attrs));
                    }
                }
            }
            prop_assert_eq!(answers(&bulk), answers(&plain));
        }

        /// After any sequence of puts (values changed, attributes added and removed) and
        /// deletes, the value index finds exactly what a scan finds, current versions.
        #[test]
        fn the_value_index_follows_updates(steps in proptest::collection::vec(
            (0u8..6, proptest::collection::vec((0u8..3, 0i64..4), 0..4), proptest::bool::weighted(0.15)),
            1..60,
        )) {
            let mut st = TenantState::new(true, true);
            let steps: Vec<Step> = steps;
            for (n, attrs, delete) in &steps {
                if *delete {
                    st.delete(&format!("urn:x:{n}"));
                } else {
                    st.put(entity(*n, attrs));
                }
            }
            for a in 0..3u8 {
                let name = format!("a{a}");
                for v in 0..4i64 {
                    let k = IndexKey::Num(v as f64);
                    let got: Vec<Arc<Entity>> = st
                        .in_ranges(&name, &[(Bound::Included(k.clone()), Bound::Included(k))])
                        .unwrap_or_default();
                    let want: Vec<&Arc<Entity>> = st
                        .iter()
                        .filter(|e| e.attr(&name).is_some_and(|i| i[0].value == citybrain_model::AttrValue::Int(v)))
                        .collect();
                    prop_assert_eq!(got.len(), want.len());
                    for (g, w) in got.iter().zip(want) {
                        prop_assert!(Arc::ptr_eq(g, w), "a stale version of {}", g.id);
                    }
                }
            }
            let mut by_type = 0;
            st.scan(Some(&["T".to_string()]), None, &mut |e| {
                assert!(Arc::ptr_eq(e, st.get(&e.id).unwrap()));
                by_type += 1;
                ControlFlow::Continue(())
            });
            prop_assert_eq!(by_type, st.iter().filter(|e| e.has_type("T")).count());
        }
    }
}
