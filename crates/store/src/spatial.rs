//! The spatial index of one tenant: an R-tree (`rstar`) per GeoProperty attribute of
//! the boxes of its values ([`citybrain_model::geobox`]), holding slot numbers as the
//! value index does. It lives in [`crate::state::TenantState`], under the tenant's lock
//! with the other indexes, and changes only when a GeoProperty's value changes (a
//! telemetry update of a located sensor leaves it alone).
//!
//! Boxes are kept as `f32` (20 bytes an entry, against 36 with `f64`), rounded outward,
//! so a stored box always covers the exact one: at worst two metres wider, which only
//! adds a candidate that the exact check then drops.
//!
//! A snapshot's entities are loaded in bulk ([`SpatialIndex::begin_bulk`]): collected,
//! then packed with one `bulk_load` (sort-tile-recursive), several times faster than
//! inserting a million boxes one by one and a better-shaped tree.

use std::collections::HashMap;
use std::sync::Arc;

use citybrain_model::geobox::{geometry_box, BBox};
use citybrain_model::geojson::value_geometry;
use citybrain_model::{AttrKind, Attribute};
use rstar::{RTree, RTreeObject, AABB};

use crate::state::Fast;

/// One indexed box: an instance of a GeoProperty of the entity in `slot`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Entry {
    min: [f32; 2],
    max: [f32; 2],
    slot: u32,
}

impl RTreeObject for Entry {
    type Envelope = AABB<[f32; 2]>;

    fn envelope(&self) -> Self::Envelope {
        AABB::from_corners(self.min, self.max)
    }
}

/// The largest `f32` at or below `x`.
fn down(x: f64) -> f32 {
    let f = x as f32;
    if f64::from(f) > x {
        f.next_down()
    } else {
        f
    }
}

/// The smallest `f32` at or above `x`.
fn up(x: f64) -> f32 {
    let f = x as f32;
    if f64::from(f) < x {
        f.next_up()
    } else {
        f
    }
}

fn envelope(b: &BBox) -> AABB<[f32; 2]> {
    AABB::from_corners(
        [down(b.min[0]), down(b.min[1])],
        [up(b.max[0]), up(b.max[1])],
    )
}

/// The entries of one attribute's instances (GeoProperties whose value is a geometry).
fn entries(instances: &[Attribute], slot: u32) -> Vec<Entry> {
    instances
        .iter()
        .filter(|a| a.kind == AttrKind::GeoProperty)
        .filter_map(|a| value_geometry(&a.value))
        .map(|g| {
            let env = envelope(&geometry_box(&g));
            Entry {
                min: env.lower(),
                max: env.upper(),
                slot,
            }
        })
        .collect()
}

/// Whether an attribute has any GeoProperty instance (else it is not indexed here).
pub(crate) fn has_geo(instances: &[Attribute]) -> bool {
    instances.iter().any(|a| a.kind == AttrKind::GeoProperty)
}

#[derive(Debug, Default, Clone)]
pub(crate) struct SpatialIndex {
    trees: HashMap<Arc<str>, RTree<Entry>, Fast>,
    /// Entries collected while loading a snapshot, packed by `end_bulk`.
    bulk: Option<HashMap<Arc<str>, Vec<Entry>, Fast>>,
}

impl SpatialIndex {
    /// Collects entries from now on instead of inserting them, until [`Self::end_bulk`].
    pub fn begin_bulk(&mut self) {
        self.end_bulk();
        self.bulk = Some(HashMap::default());
    }

    /// Packs the collected entries into the trees.
    pub fn end_bulk(&mut self) {
        let Some(bulk) = self.bulk.take() else {
            return;
        };
        for (name, mut list) in bulk {
            if let Some(tree) = self.trees.remove(&*name) {
                list.extend(tree.iter().copied());
            }
            self.trees.insert(name, RTree::bulk_load(list));
        }
    }

    pub fn add(&mut self, name: &Arc<str>, slot: u32, instances: &[Attribute]) {
        if !has_geo(instances) {
            return;
        }
        let list = entries(instances, slot);
        if list.is_empty() {
            return;
        }
        if let Some(bulk) = self.bulk.as_mut() {
            bulk.entry(name.clone()).or_default().extend(list);
            return;
        }
        let tree = match self.trees.get_mut(&**name) {
            Some(t) => t,
            None => self.trees.entry(name.clone()).or_default(),
        };
        for e in list {
            tree.insert(e);
        }
    }

    pub fn remove(&mut self, name: &str, slot: u32, instances: &[Attribute]) {
        if !has_geo(instances) {
            return;
        }
        // A removal while collecting (not done by a snapshot load) packs first.
        self.end_bulk();
        let Some(tree) = self.trees.get_mut(name) else {
            return;
        };
        for e in entries(instances, slot) {
            tree.remove(&e);
        }
        if tree.size() == 0 {
            self.trees.remove(name);
        }
    }

    /// The slots whose `name` boxes meet any of `boxes`, each once, unordered; `None`
    /// while a bulk load is unpacked (the caller then scans).
    pub fn find(&self, name: &str, boxes: &[BBox]) -> Option<Vec<u32>> {
        if self.bulk.is_some() {
            return None;
        }
        let Some(tree) = self.trees.get(name) else {
            return Some(Vec::new());
        };
        let mut out: Vec<u32> = boxes
            .iter()
            .flat_map(|b| tree.locate_in_envelope_intersecting(&envelope(b)))
            .map(|e| e.slot)
            .collect();
        out.sort_unstable();
        out.dedup();
        Some(out)
    }

    /// Entries held (all attributes).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.trees.values().map(RTree::size).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::TenantState;
    use citybrain_model::entity::parse_entity;
    use citybrain_model::geojson::GeoQuery;
    use citybrain_model::{Entity, JsonLdContext};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    const LOCATION: &str = "https://uri.etsi.org/ngsi-ld/location";

    /// A located entity: a point, or a small square, at (x, y) in a 0.1° city; `v` is a
    /// reading that changes without moving it.
    fn located(n: u8, shape: u8, x: f64, y: f64, v: i64) -> Arc<Entity> {
        let (x, y) = (13.3 + x * 0.1, 52.4 + y * 0.1);
        let geometry = if shape == 0 {
            json!({"type": "Point", "coordinates": [x, y]})
        } else {
            let d = 0.001 * f64::from(shape);
            json!({"type": "Polygon", "coordinates": [[[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]]})
        };
        let mut body = json!({"id": format!("urn:x:{n}"), "type": "T", "p": v});
        if shape < 3 {
            body["location"] = json!({"type": "GeoProperty", "value": geometry});
        }
        let t = chrono::DateTime::from_timestamp(0, 0).unwrap();
        Arc::new(parse_entity(body.as_object().unwrap(), &JsonLdContext::core(), t).unwrap())
    }

    fn matches(q: &GeoQuery, e: &Entity) -> bool {
        e.attr(LOCATION).is_some_and(|i| {
            i.iter()
                .filter_map(|a| citybrain_model::geojson::to_geometry(&a.value.to_value()).ok())
                .any(|g| q.matches(&g))
        })
    }

    fn query(kind: u8, x: f64, y: f64, size: f64) -> GeoQuery {
        let (x, y) = (13.3 + x * 0.1, 52.4 + y * 0.1);
        let (rel, geometry, coords): (String, &str, Value) = match kind {
            0 => (
                format!("near;maxDistance=={}", size * 3000.0),
                "Point",
                json!([x, y]),
            ),
            1 | 2 => {
                let d = size * 0.03;
                let square = json!([[[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]]);
                (
                    if kind == 1 { "within" } else { "intersects" }.into(),
                    "Polygon",
                    square,
                )
            }
            _ => (
                "intersects".into(),
                "LineString",
                json!([[x, y], [x + size * 0.03, y + size * 0.01]]),
            ),
        };
        GeoQuery::new(&rel, geometry, coords, LOCATION.into()).unwrap()
    }

    proptest! {
        /// After any sequence of puts (moves, reshapes, readings that leave the location
        /// alone, the location removed) and deletes, including a bulk-loaded start, the
        /// index's candidates hold exactly the matches a scan finds, current versions.
        #[test]
        fn index_and_scan_agree(
            bulk in proptest::collection::vec((0u8..30, 0u8..4, 0.0f64..1.0, 0.0f64..1.0), 0..30),
            steps in proptest::collection::vec(
                (0u8..30, 0u8..4, 0.0f64..1.0, 0.0f64..1.0, 0i64..3, proptest::bool::weighted(0.15)),
                1..60,
            ),
            queries in proptest::collection::vec((0u8..4, 0.0f64..1.0, 0.0f64..1.0, 0.01f64..1.0), 1..8),
        ) {
            let mut st = TenantState::new(true, true);
            st.begin_bulk();
            for (n, shape, x, y) in &bulk {
                st.put(located(*n, *shape, *x, *y, 0));
            }
            st.end_bulk();
            for (n, shape, x, y, v, delete) in &steps {
                if *delete {
                    st.delete(&format!("urn:x:{n}"));
                } else if *v == 2 {
                    // A reading: same location as now (or none), new value.
                    if let Some(cur) = st.get(&format!("urn:x:{n}")).cloned() {
                        let mut e = (*cur).clone();
                        e.attrs.retain(|(a, _)| !a.ends_with("/p") && &**a != "p");
                        let p = located(*n, 3, 0.0, 0.0, 7);
                        e.attrs.extend(p.attrs.iter().cloned());
                        st.put(Arc::new(e));
                    }
                } else {
                    st.put(located(*n, *shape, *x, *y, *v));
                }
            }
            for (kind, x, y, size) in &queries {
                let q = query(*kind, *x, *y, *size);
                let boxes = q.candidate_boxes().unwrap();
                let got: Vec<Arc<Entity>> = st
                    .in_boxes(LOCATION, &boxes)
                    .unwrap()
                    .into_iter()
                    .filter(|e| matches(&q, e))
                    .collect();
                let want: Vec<&Arc<Entity>> = st.iter().filter(|e| matches(&q, e)).collect();
                prop_assert_eq!(got.len(), want.len(), "{:?}", q.rel);
                for (g, w) in got.iter().zip(want) {
                    prop_assert!(Arc::ptr_eq(g, w), "{} is a stale version or out of order", g.id);
                }
            }
            // Nothing is left behind by moves and deletes: one entry per located entity.
            let located = st.iter().filter(|e| e.attr(LOCATION).is_some()).count();
            prop_assert_eq!(st.spatial_len(), located);
        }
    }

    #[test]
    fn outward_rounding_covers_the_exact_value() {
        for x in [13.123_456_789_012_3, -179.999_999_999, 52.0, 0.1, -0.1] {
            assert!(f64::from(down(x)) <= x && f64::from(up(x)) >= x, "{x}");
            assert!(f64::from(up(x)) - f64::from(down(x)) < 3e-5);
        }
    }
}
