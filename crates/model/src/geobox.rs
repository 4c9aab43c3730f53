//! Longitude/latitude boxes for a spatial index: the box of a stored geometry and the
//! boxes a geo-query's matches must meet.
//!
//! The one promise, checked by a property test: when a query matches a geometry, the
//! geometry's box meets one of the query's boxes. An index may then hand out the
//! geometries whose boxes meet the query's as candidates and check each exactly, and
//! answer what a scan answers.
//!
//! Two geometries of one relation set the boxes:
//! - `within`, `contains`, `intersects`, `equals` and `overlaps` are planar (DE-9IM on
//!   longitude/latitude, as the `geo` crate evaluates them): a geometry they match meets
//!   the query geometry, so the planar boxes meet.
//! - `near` measures on the sphere, to the nearest point of the geometry along
//!   great-circle arcs between its vertices. An arc bulges poleward of its end points
//!   (a 1,100 km east-west line at 60° N passes 0.38°, 42 km, north of them), so a geometry's box
//!   also covers its arcs' extreme latitudes; and the query box is the exact box of the
//!   spherical cap around the centre (lat ± δ, lon ± asin(sin δ / cos lat)), split at
//!   the antimeridian, whole-longitude where the cap holds a pole.
//!
//! `disjoint` and a `near` with only `minDistance` match mostly far-away things; they
//! have no boxes and are answered by a scan.

use std::f64::consts::{FRAC_PI_2, PI};

use geo::{Coord, Geometry, LineString};

use crate::geojson::{GeoQuery, GeoRel};

/// Mean earth radius in metres, as `geo`'s haversine distance uses it.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Degrees added on every side of a box, for the rounding of the trigonometry: about a
/// millimetre, far below any position's precision.
const MARGIN_DEG: f64 = 1e-8;

/// A box in degrees: `min` and `max` as [longitude, latitude].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BBox {
    pub min: [f64; 2],
    pub max: [f64; 2],
}

impl BBox {
    /// The whole globe.
    pub const WORLD: BBox = BBox {
        min: [-180.0, -90.0],
        max: [180.0, 90.0],
    };

    fn at(c: Coord<f64>) -> BBox {
        BBox {
            min: [c.x, c.y],
            max: [c.x, c.y],
        }
    }

    fn add(&mut self, c: Coord<f64>) {
        self.add_lat(c.y);
        self.min[0] = self.min[0].min(c.x);
        self.max[0] = self.max[0].max(c.x);
    }

    fn add_lat(&mut self, lat: f64) {
        self.min[1] = self.min[1].min(lat);
        self.max[1] = self.max[1].max(lat);
    }

    fn widened(self) -> BBox {
        BBox {
            min: [
                (self.min[0] - MARGIN_DEG).max(-180.0),
                (self.min[1] - MARGIN_DEG).max(-90.0),
            ],
            max: [
                (self.max[0] + MARGIN_DEG).min(180.0),
                (self.max[1] + MARGIN_DEG).min(90.0),
            ],
        }
    }

    /// Small enough that reading its candidates beats a scan that may stop at the
    /// first page: under a quarter of the globe's longitudes and latitudes. A cap
    /// around a pole or a continent-wide polygon is answered by a scan instead.
    pub fn is_narrow(&self) -> bool {
        self.max[0] - self.min[0] <= 90.0 && self.max[1] - self.min[1] <= 45.0
    }

    /// True when the two boxes share a point (edges included).
    pub fn intersects(&self, other: &BBox) -> bool {
        self.min[0] <= other.max[0]
            && other.min[0] <= self.max[0]
            && self.min[1] <= other.max[1]
            && other.min[1] <= self.max[1]
    }
}

/// The box of a geometry: its vertices, and the extreme latitudes of the great-circle
/// arcs between them (whole longitudes for an arc across the antimeridian).
pub fn geometry_box(g: &Geometry<f64>) -> BBox {
    let mut lines: Vec<&LineString<f64>> = Vec::new();
    let mut points: Vec<Coord<f64>> = Vec::new();
    match g {
        Geometry::Point(p) => points.push(p.0),
        Geometry::MultiPoint(m) => points.extend(m.0.iter().map(|p| p.0)),
        Geometry::LineString(l) => lines.push(l),
        Geometry::MultiLineString(m) => lines.extend(m.0.iter()),
        Geometry::Polygon(p) => {
            lines.push(p.exterior());
            lines.extend(p.interiors());
        }
        Geometry::MultiPolygon(m) => {
            for p in &m.0 {
                lines.push(p.exterior());
                lines.extend(p.interiors());
            }
        }
        // Not made by the GeoJSON parser; a box that meets every query keeps the
        // index's promise for them.
        _ => return BBox::WORLD,
    }
    let first = points
        .first()
        .copied()
        .or_else(|| lines.iter().find_map(|l| l.0.first().copied()));
    let Some(first) = first else {
        return BBox::WORLD;
    };
    let mut b = BBox::at(first);
    for c in &points {
        b.add(*c);
    }
    for l in lines {
        for c in &l.0 {
            b.add(*c);
        }
        for w in l.0.windows(2) {
            let (a, z) = (w[0], w[1]);
            if (a.x - z.x).abs() > 180.0 {
                b.min[0] = -180.0;
                b.max[0] = 180.0;
            }
            for lat in arc_extremes(a, z) {
                b.add_lat(lat);
            }
        }
    }
    b.widened()
}

fn unit(c: Coord<f64>) -> [f64; 3] {
    let (lon, lat) = (c.x.to_radians(), c.y.to_radians());
    [lat.cos() * lon.cos(), lat.cos() * lon.sin(), lat.sin()]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// `unit(z) - unit(a)`, computed from the coordinate differences with half-angle
/// identities, so that it keeps its precision when the points are close (a plain
/// subtraction of the unit vectors loses all digits for points a millimetre apart).
fn chord(a: Coord<f64>, z: Coord<f64>) -> [f64; 3] {
    let (f1, f2) = (a.y.to_radians(), z.y.to_radians());
    let (l1, l2) = (a.x.to_radians(), z.x.to_radians());
    let (hf, mf) = ((f2 - f1) / 2.0, (f1 + f2) / 2.0);
    let (hl, ml) = ((l2 - l1) / 2.0, (l1 + l2) / 2.0);
    let dcos_f = -2.0 * mf.sin() * hf.sin();
    let dcos_l = -2.0 * ml.sin() * hl.sin();
    let dsin_l = 2.0 * ml.cos() * hl.sin();
    [
        dcos_f * l2.cos() + f1.cos() * dcos_l,
        dcos_f * l2.sin() + f1.cos() * dsin_l,
        2.0 * mf.cos() * hf.sin(),
    ]
}

/// The unit normal of the great circle through `a` and `z` (`a × z`, well conditioned
/// for close points); `None` for the same point or antipodes (no single arc).
fn normal(a: Coord<f64>, z: Coord<f64>) -> Option<[f64; 3]> {
    let n = cross(unit(a), chord(a, z));
    let len = dot(n, n).sqrt();
    if len.is_nan() || len <= 1e-300 || (a.x == z.x && a.y == z.y) {
        return None;
    }
    // Antipodes: the normal is all rounding.
    if dot(unit(a), unit(z)) < -1.0 + 1e-12 {
        return None;
    }
    Some([n[0] / len, n[1] / len, n[2] / len])
}

/// Latitudes (degrees) of the northern- and southernmost points of the great circle
/// through `a` and `z` that lie on the short arc between them.
fn arc_extremes(a: Coord<f64>, z: Coord<f64>) -> Vec<f64> {
    let (p, q) = (unit(a), unit(z));
    let Some(n) = normal(a, z) else {
        // The same point, or antipodes: the vertices decide.
        return Vec::new();
    };
    // The great circle's highest point: the pole direction without its part along n.
    let v = [-n[2] * n[0], -n[2] * n[1], 1.0 - n[2] * n[2]];
    let vl = dot(v, v).sqrt();
    if vl < 1e-15 {
        // The equator: every point at latitude 0, as the vertices are.
        return Vec::new();
    }
    let v = [v[0] / vl, v[1] / vl, v[2] / vl];
    [v, [-v[0], -v[1], -v[2]]]
        .into_iter()
        .filter(|x| dot(cross(p, *x), n) >= 0.0 && dot(cross(*x, q), n) >= 0.0)
        .map(|x| x[2].clamp(-1.0, 1.0).asin().to_degrees())
        .collect()
}

/// Distance in metres from `c` to the short great-circle arc from `a` to `z`: to the
/// foot of the perpendicular where it falls on the arc, else to the nearer end.
///
/// Written here rather than taken from `geo` (0.31), whose `haversine_closest_point`
/// answered points beyond a segment's ends on the arc's great circle (for a 2,700 km
/// segment, 30 km closer than its nearest end), so `near` matched lines it should not.
pub(crate) fn arc_distance(c: Coord<f64>, a: Coord<f64>, z: Coord<f64>) -> f64 {
    let ends = haversine(c, a).min(haversine(c, z));
    let (p, q, x) = (unit(a), unit(z), unit(c));
    let Some(n) = normal(a, z) else {
        return ends;
    };
    let h = dot(x, n);
    let foot = [x[0] - h * n[0], x[1] - h * n[1], x[2] - h * n[2]];
    if dot(foot, foot).sqrt() < 1e-15 {
        // `c` is a pole of the arc's great circle: every point of it is 90° away.
        return ends;
    }
    if dot(cross(p, foot), n) >= 0.0 && dot(cross(foot, q), n) >= 0.0 {
        (h.abs().clamp(0.0, 1.0).asin() * EARTH_RADIUS_M).min(ends)
    } else {
        ends
    }
}

/// Great-circle distance in metres (the haversine formula, `geo`'s radius).
pub(crate) fn haversine(a: Coord<f64>, z: Coord<f64>) -> f64 {
    let (la, lz) = (a.y.to_radians(), z.y.to_radians());
    let h = ((lz - la) / 2.0).sin().powi(2)
        + la.cos() * lz.cos() * ((z.x - a.x).to_radians() / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().clamp(0.0, 1.0).asin()
}

/// The boxes of the points within `metres` of `center` on the sphere.
pub fn cap_boxes(center: Coord<f64>, metres: f64) -> Vec<BBox> {
    // Relative and absolute slack for the haversine's own rounding.
    let delta = metres / EARTH_RADIUS_M * (1.0 + 1e-9) + 1e-9;
    if delta >= PI {
        return vec![BBox::WORLD];
    }
    let lat = center.y.to_radians();
    let (lo, hi) = (lat - delta, lat + delta);
    if hi >= FRAC_PI_2 || lo <= -FRAC_PI_2 {
        // A pole inside the cap: every longitude.
        return vec![BBox {
            min: [-180.0, lo.max(-FRAC_PI_2).to_degrees()],
            max: [180.0, hi.min(FRAC_PI_2).to_degrees()],
        }
        .widened()];
    }
    let dlon = (delta.sin() / lat.cos())
        .clamp(-1.0, 1.0)
        .asin()
        .to_degrees();
    let (lo, hi) = (lo.to_degrees(), hi.to_degrees());
    let (west, east) = (center.x - dlon, center.x + dlon);
    let band = |w: f64, e: f64| {
        BBox {
            min: [w, lo],
            max: [e, hi],
        }
        .widened()
    };
    if west < -180.0 {
        vec![band(west + 360.0, 180.0), band(-180.0, east)]
    } else if east > 180.0 {
        vec![band(west, 180.0), band(-180.0, east - 360.0)]
    } else {
        vec![band(west, east)]
    }
}

impl GeoQuery {
    /// The boxes a matching geometry's [`geometry_box`] meets; `None` where the
    /// relation cannot be narrowed by boxes (`disjoint`, `near` without
    /// `maxDistance`).
    pub fn candidate_boxes(&self) -> Option<Vec<BBox>> {
        match &self.rel {
            GeoRel::Near {
                max_distance: Some(m),
                ..
            } => match &self.geometry {
                Geometry::Point(p) => Some(cap_boxes(p.0, *m)),
                _ => None,
            },
            GeoRel::Near { .. } | GeoRel::Disjoint => None,
            GeoRel::Within
            | GeoRel::Contains
            | GeoRel::Intersects
            | GeoRel::Equals
            | GeoRel::Overlaps => Some(vec![geometry_box(&self.geometry)]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geojson::to_geometry;
    use serde_json::json;

    #[test]
    fn an_east_west_arc_bulges_poleward() {
        let g = to_geometry(&json!({"type": "LineString", "coordinates": [[0, 60], [20, 60]]}))
            .unwrap();
        let b = geometry_box(&g);
        // tan φ = tan 60° / cos 10°: the arc's vertex at 60.378° N.
        assert!((b.max[1] - 60.378_35).abs() < 1e-4, "{b:?}");
        assert!((b.min[1] - 60.0).abs() < 1e-6);
    }

    #[test]
    fn an_arc_across_the_antimeridian_is_found_by_near() {
        let g =
            to_geometry(&json!({"type": "LineString", "coordinates": [[179.5, 0], [-179.5, 0]]}))
                .unwrap();
        let q = GeoQuery::new(
            "near;maxDistance==200",
            "Point",
            json!([180, 0.001]),
            "l".into(),
        )
        .unwrap();
        assert!(q.matches(&g));
        let b = geometry_box(&g);
        assert!(
            q.candidate_boxes()
                .unwrap()
                .iter()
                .any(|q| q.intersects(&b)),
            "{b:?}"
        );
    }

    #[test]
    fn near_measures_to_the_arc_not_beyond_its_ends() {
        // geo 0.31's closest point for this segment lay 2.8° west of its western end.
        let line = to_geometry(&json!({"type": "LineString", "coordinates": [
            [-76.0358676201786, 45.91606497461586], [-110.44270673787257, 44.787119794057475]
        ]}))
        .unwrap();
        let c = geo::Point::new(-110.44270673787257, 36.91403430885812);
        let d = crate::geojson::haversine_distance(&c, &line).unwrap();
        assert!((d - 875_448.4).abs() < 1.0, "{d}");
        // Across the middle of an east-west arc: the perpendicular, shorter than either end.
        let c = geo::Point::new(-93.0, 46.0);
        let d = crate::geojson::haversine_distance(&c, &line).unwrap();
        assert!(
            d < haversine(
                c.0,
                Coord {
                    x: -76.0358676201786,
                    y: 45.91606497461586
                }
            )
        );
        assert!(d < 111_000.0, "{d}");
    }

    #[test]
    fn a_millimetre_segment_is_measured_like_its_ends() {
        // Two vertices 1e-10° apart and a centre 0.001° north: 111.2 m, not the 88 m
        // that a normal computed from the unit vectors' plain cross product gave.
        let (a, z) = (
            Coord {
                x: 131.134229,
                y: 4.409628,
            },
            Coord {
                x: 131.1342290001,
                y: 4.409628,
            },
        );
        let c = Coord {
            x: 131.13422900005,
            y: 4.410628,
        };
        let d = arc_distance(c, a, z);
        assert!(
            (d - haversine(c, a)).abs() < 0.01,
            "{d} vs {}",
            haversine(c, a)
        );
        // (From 0.001° down: longer arcs bulge north by a measurable amount.)
        for k in 3..12 {
            let z = Coord {
                x: a.x + 10f64.powi(-k),
                y: a.y,
            };
            let c = Coord {
                x: a.x + 10f64.powi(-k) / 2.0,
                y: a.y + 0.001,
            };
            let d = arc_distance(c, a, z);
            assert!((d - 111_195.08 * 0.001).abs() < 0.05, "1e-{k}: {d}");
        }
    }

    #[test]
    fn a_cap_is_split_at_the_antimeridian_and_whole_at_a_pole() {
        let boxes = cap_boxes(Coord { x: 179.999, y: 0.0 }, 1000.0);
        assert_eq!(boxes.len(), 2);
        assert_eq!(boxes[1].min[0], -180.0);
        let polar = cap_boxes(Coord { x: 10.0, y: 89.999 }, 1000.0);
        assert_eq!((polar[0].min[0], polar[0].max[0]), (-180.0, 180.0));
        // 500 m at 52° N: ±0.0045° of latitude, ±0.0073° of longitude.
        let b = cap_boxes(Coord { x: 13.4, y: 52.5 }, 500.0)[0];
        assert!((b.max[1] - 52.5 - 0.004_496).abs() < 1e-5, "{b:?}");
        assert!((b.max[0] - 13.4 - 0.007_38).abs() < 1e-4, "{b:?}");
    }
}
