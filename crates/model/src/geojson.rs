//! GeoJSON geometries (RFC 7946) and NGSI-LD geo-queries (`georel`, `geometry`,
//! `coordinates`, `geoproperty`), evaluated with the `geo` crate (DE-9IM relations and
//! haversine distances on WGS 84 coordinates).

use geo::{
    Coord, Geometry, LineString, MultiLineString, MultiPoint, MultiPolygon, Point, Polygon, Relate,
};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{ModelError, Result};
use crate::geobox::{arc_distance, haversine};
use crate::value::AttrValue;

const GEOMETRY_TYPES: [&str; 6] = [
    "Point",
    "LineString",
    "Polygon",
    "MultiPoint",
    "MultiLineString",
    "MultiPolygon",
];

/// True for an object that has a GeoJSON geometry `type` and `coordinates`.
pub fn looks_like_geometry(v: &Value) -> bool {
    v.get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| GEOMETRY_TYPES.contains(&t))
        && v.get("coordinates").is_some()
}

/// Validates a GeoJSON geometry value of the attribute `name`.
pub fn validate_geometry(name: &str, v: &Value) -> Result<()> {
    to_geometry(v)
        .map(|_| ())
        .map_err(|e| ModelError::bad_data(format!("GeoProperty '{name}': {}", e.detail)))
}

/// Converts a GeoJSON geometry object to a `geo` geometry.
pub fn to_geometry(v: &Value) -> Result<Geometry<f64>> {
    let ty = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ModelError::bad_data("geometry has no 'type'"))?;
    let coords = v
        .get("coordinates")
        .ok_or_else(|| ModelError::bad_data("geometry has no 'coordinates'"))?;
    parse_coordinates(ty, coords)
}

/// Builds a geometry from a type name and its coordinates (as in a `geoQ`).
pub fn parse_coordinates(ty: &str, coords: &Value) -> Result<Geometry<f64>> {
    Ok(match ty {
        "Point" => Geometry::Point(Point(position(coords)?)),
        "LineString" => Geometry::LineString(line(coords, 2)?),
        "Polygon" => Geometry::Polygon(polygon(coords)?),
        "MultiPoint" => Geometry::MultiPoint(MultiPoint(
            list(coords)?
                .iter()
                .map(|c| position(c).map(Point))
                .collect::<Result<_>>()?,
        )),
        "MultiLineString" => Geometry::MultiLineString(MultiLineString(
            list(coords)?
                .iter()
                .map(|c| line(c, 2))
                .collect::<Result<_>>()?,
        )),
        "MultiPolygon" => Geometry::MultiPolygon(MultiPolygon(
            list(coords)?.iter().map(polygon).collect::<Result<_>>()?,
        )),
        other => {
            return Err(ModelError::bad_data(format!(
                "unsupported geometry type '{other}'"
            )))
        }
    })
}

fn list(v: &Value) -> Result<&Vec<Value>> {
    v.as_array()
        .ok_or_else(|| ModelError::bad_data(format!("coordinates must be arrays, got {v}")))
}

fn position(v: &Value) -> Result<Coord<f64>> {
    let a = list(v)?;
    if a.len() < 2 || a.len() > 3 {
        return Err(ModelError::bad_data(format!(
            "a position has 2 or 3 numbers, got {v}"
        )));
    }
    let num = |i: usize| {
        a[i].as_f64().ok_or_else(|| {
            ModelError::bad_data(format!("position entries must be numbers, got {v}"))
        })
    };
    let (x, y) = (num(0)?, num(1)?);
    if !(-180.0..=180.0).contains(&x) || !(-90.0..=90.0).contains(&y) {
        return Err(ModelError::bad_data(format!(
            "position {v} is outside longitude [-180,180] / latitude [-90,90]"
        )));
    }
    Ok(Coord { x, y })
}

fn line(v: &Value, min: usize) -> Result<LineString<f64>> {
    let pts = list(v)?.iter().map(position).collect::<Result<Vec<_>>>()?;
    if pts.len() < min {
        return Err(ModelError::bad_data(format!(
            "a line needs at least {min} positions"
        )));
    }
    Ok(LineString(pts))
}

fn polygon(v: &Value) -> Result<Polygon<f64>> {
    let rings = list(v)?;
    let mut rings = rings
        .iter()
        .map(|r| line(r, 4))
        .collect::<Result<Vec<_>>>()?
        .into_iter();
    let exterior = rings
        .next()
        .ok_or_else(|| ModelError::bad_data("a polygon needs an exterior ring"))?;
    let interiors: Vec<_> = rings.collect();
    for r in std::iter::once(&exterior).chain(interiors.iter()) {
        if r.0.first() != r.0.last() {
            return Err(ModelError::bad_data(
                "polygon rings must be closed (first position = last)",
            ));
        }
    }
    Ok(Polygon::new(exterior, interiors))
}

/// A GeoJSON Point as its text holds it, read without building a JSON tree (most
/// located entities are points, and a snapshot load reads a million of them).
#[derive(Deserialize)]
struct PointText<'a> {
    #[serde(borrow, rename = "type")]
    kind: &'a str,
    coordinates: [f64; 2],
}

/// The geometry of a GeoProperty's value (`None` when it holds none).
pub fn value_geometry(v: &AttrValue) -> Option<Geometry<f64>> {
    if let AttrValue::Json(text) = v {
        if let Ok(p) = serde_json::from_str::<PointText>(text) {
            let (x, y) = (p.coordinates[0], p.coordinates[1]);
            if p.kind == "Point" && (-180.0..=180.0).contains(&x) && (-90.0..=90.0).contains(&y) {
                return Some(Geometry::Point(Point::new(x, y)));
            }
        }
    }
    to_geometry(&v.to_value()).ok()
}

/// A geo-relation of NGSI-LD.
#[derive(Debug, Clone, PartialEq)]
pub enum GeoRel {
    Near {
        max_distance: Option<f64>,
        min_distance: Option<f64>,
    },
    Within,
    Contains,
    Intersects,
    Equals,
    Disjoint,
    Overlaps,
}

impl GeoRel {
    /// Parses `near;maxDistance==1000`, `within`, ...
    pub fn parse(s: &str) -> Result<GeoRel> {
        let mut parts = s.split(';');
        let head = parts.next().unwrap_or_default();
        let rel = match head {
            "near" => {
                let (mut max_distance, mut min_distance) = (None, None);
                for p in parts {
                    let (k, v) = p.split_once("==").ok_or_else(|| {
                        ModelError::bad_data(format!("georel modifier '{p}' must be key==value"))
                    })?;
                    let d: f64 = v
                        .parse()
                        .ok()
                        .filter(|d: &f64| d.is_finite() && *d >= 0.0)
                        .ok_or_else(|| {
                            ModelError::bad_data(format!(
                                "georel distance '{v}' must be a non-negative number"
                            ))
                        })?;
                    match k {
                        "maxDistance" => max_distance = Some(d),
                        "minDistance" => min_distance = Some(d),
                        other => {
                            return Err(ModelError::bad_data(format!(
                                "unknown georel modifier '{other}'"
                            )))
                        }
                    }
                }
                if max_distance.is_none() && min_distance.is_none() {
                    return Err(ModelError::bad_data(
                        "georel 'near' needs maxDistance or minDistance",
                    ));
                }
                return Ok(GeoRel::Near {
                    max_distance,
                    min_distance,
                });
            }
            "within" => GeoRel::Within,
            "contains" => GeoRel::Contains,
            "intersects" => GeoRel::Intersects,
            "equals" => GeoRel::Equals,
            "disjoint" => GeoRel::Disjoint,
            "overlaps" => GeoRel::Overlaps,
            other => return Err(ModelError::bad_data(format!("unknown georel '{other}'"))),
        };
        if parts.next().is_some() {
            return Err(ModelError::bad_data(format!(
                "georel '{head}' takes no modifiers"
            )));
        }
        Ok(rel)
    }
}

/// A parsed geo-query. `geoproperty` is an expanded attribute IRI.
#[derive(Debug, Clone)]
pub struct GeoQuery {
    pub rel: GeoRel,
    pub geometry: Geometry<f64>,
    /// The original (type, coordinates), kept to echo in subscriptions.
    pub geometry_type: String,
    pub coordinates: Value,
    pub geoproperty: String,
}

impl GeoQuery {
    /// Builds a geo-query from its parts; `coordinates` is JSON text or a JSON value.
    pub fn new(
        georel: &str,
        geometry: &str,
        coordinates: Value,
        geoproperty: String,
    ) -> Result<GeoQuery> {
        let rel = GeoRel::parse(georel)?;
        let coordinates = match coordinates {
            Value::String(s) => serde_json::from_str(&s).map_err(|_| {
                ModelError::bad_data(format!("coordinates '{s}' are not a JSON array"))
            })?,
            v => v,
        };
        if !GEOMETRY_TYPES.contains(&geometry) {
            return Err(ModelError::bad_data(format!(
                "unknown geometry '{geometry}'"
            )));
        }
        let geom = parse_coordinates(geometry, &coordinates)?;
        if matches!(rel, GeoRel::Near { .. }) && !matches!(geom, Geometry::Point(_)) {
            return Err(ModelError::bad_data("georel 'near' needs a Point geometry"));
        }
        Ok(GeoQuery {
            rel,
            geometry: geom,
            geometry_type: geometry.to_string(),
            coordinates,
            geoproperty,
        })
    }

    /// True when the entity geometry `target` satisfies the relation.
    pub fn matches(&self, target: &Geometry<f64>) -> bool {
        match &self.rel {
            GeoRel::Near {
                max_distance,
                min_distance,
            } => {
                let Geometry::Point(center) = &self.geometry else {
                    return false;
                };
                let Some(d) = haversine_distance(center, target) else {
                    return false;
                };
                max_distance.is_none_or(|m| d <= m) && min_distance.is_none_or(|m| d >= m)
            }
            GeoRel::Within => target.relate(&self.geometry).is_within(),
            GeoRel::Contains => target.relate(&self.geometry).is_contains(),
            GeoRel::Intersects => target.relate(&self.geometry).is_intersects(),
            // Identical coordinates are equal even when the polygon is not valid (for
            // instance self-intersecting), where DE-9IM gives no answer.
            GeoRel::Equals => {
                target == &self.geometry || target.relate(&self.geometry).is_equal_topo()
            }
            GeoRel::Disjoint => target.relate(&self.geometry).is_disjoint(),
            GeoRel::Overlaps => target.relate(&self.geometry).is_overlaps(),
        }
    }
}

/// Distance in metres from a point to the nearest part of a geometry (0 inside it), on
/// the sphere: to points, and to the great-circle arcs between a line's or a ring's
/// vertices.
pub fn haversine_distance(from: &Point<f64>, target: &Geometry<f64>) -> Option<f64> {
    let c = from.0;
    match target {
        Geometry::Point(p) => Some(haversine(c, p.0)),
        Geometry::MultiPoint(m) => min(m.0.iter().map(|p| haversine(c, p.0))),
        Geometry::LineString(l) => nearest_arc(c, std::iter::once(l)),
        Geometry::MultiLineString(m) => nearest_arc(c, m.0.iter()),
        Geometry::Polygon(_) | Geometry::MultiPolygon(_) if target.relate(from).is_intersects() => {
            Some(0.0)
        }
        Geometry::Polygon(p) => nearest_arc(c, std::iter::once(p.exterior()).chain(p.interiors())),
        Geometry::MultiPolygon(m) => nearest_arc(
            c,
            m.0.iter()
                .flat_map(|p| std::iter::once(p.exterior()).chain(p.interiors())),
        ),
        _ => None,
    }
}

fn min(ds: impl Iterator<Item = f64>) -> Option<f64> {
    ds.fold(None, |m: Option<f64>, d| Some(m.map_or(d, |m| m.min(d))))
}

/// The distance to the nearest arc of any of `lines` (or its only vertex).
fn nearest_arc<'a>(c: Coord<f64>, lines: impl Iterator<Item = &'a LineString<f64>>) -> Option<f64> {
    min(lines.flat_map(|l| {
        let arcs = l.0.windows(2).map(move |w| arc_distance(c, w[0], w[1]));
        let single = (l.0.len() == 1).then(|| haversine(c, l.0[0]));
        arcs.chain(single)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn geom(v: Value) -> Geometry<f64> {
        to_geometry(&v).unwrap()
    }

    #[test]
    fn near_within_contains() {
        let q = GeoQuery::new(
            "near;maxDistance==2000",
            "Point",
            json!("[-8.5,41.2]"),
            "l".into(),
        )
        .unwrap();
        assert!(q.matches(&geom(
            json!({"type": "Point", "coordinates": [-8.51, 41.2]})
        )));
        assert!(!q.matches(&geom(json!({"type": "Point", "coordinates": [-8.6, 41.2]}))));
        let q = GeoQuery::new(
            "near;minDistance==2000",
            "Point",
            json!([-8.5, 41.2]),
            "l".into(),
        )
        .unwrap();
        assert!(q.matches(&geom(json!({"type": "Point", "coordinates": [-8.6, 41.2]}))));
        let square = json!([[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]);
        let q = GeoQuery::new("within", "Polygon", square.clone(), "l".into()).unwrap();
        assert!(q.matches(&geom(json!({"type": "Point", "coordinates": [5, 5]}))));
        assert!(!q.matches(&geom(json!({"type": "Point", "coordinates": [15, 5]}))));
        let q = GeoQuery::new("contains", "Point", json!([5, 5]), "l".into()).unwrap();
        assert!(q.matches(&geom(json!({"type": "Polygon", "coordinates": square}))));
        let q = GeoQuery::new(
            "intersects",
            "LineString",
            json!([[-5, 5], [5, 5]]),
            "l".into(),
        )
        .unwrap();
        assert!(q.matches(&geom(json!({"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]}))));
        let q = GeoQuery::new("disjoint", "Point", json!([50, 50]), "l".into()).unwrap();
        assert!(q.matches(&geom(json!({"type": "Point", "coordinates": [5, 5]}))));
        let q = GeoQuery::new("equals", "Point", json!([5, 5]), "l".into()).unwrap();
        assert!(q.matches(&geom(json!({"type": "Point", "coordinates": [5, 5]}))));
    }

    #[test]
    fn points_read_from_text_are_the_geometries_the_parser_makes() {
        for v in [
            json!({"type": "Point", "coordinates": [13.4, 52.5]}),
            json!({"coordinates": [-179.5, -89.0], "type": "Point"}),
            json!({"type": "Point", "coordinates": [13.4, 52.5, 30.0]}),
            json!({"type": "LineString", "coordinates": [[13.4, 52.5], [13.5, 52.6]]}),
        ] {
            let a = AttrValue::from_value(v.clone());
            assert_eq!(value_geometry(&a), to_geometry(&v).ok(), "{v}");
        }
        for bad in [
            json!({"type": "Point", "coordinates": [200.0, 52.5]}),
            json!({"type": "Pointy", "coordinates": [13.4, 52.5]}),
        ] {
            assert_eq!(
                value_geometry(&AttrValue::from_value(bad.clone())),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_bad_geo_input() {
        assert!(GeoRel::parse("near").is_err());
        assert!(GeoRel::parse("near;maxDistance==-1").is_err());
        assert!(GeoRel::parse("around").is_err());
        assert!(GeoQuery::new(
            "within",
            "Polygon",
            json!("[[[0,0],[1,0],[1,1]]]"),
            "l".into()
        )
        .is_err());
        assert!(GeoQuery::new("within", "Point", json!("not json"), "l".into()).is_err());
        assert!(GeoQuery::new(
            "near;maxDistance==1",
            "Polygon",
            json!([[[0, 0], [1, 0], [1, 1], [0, 0]]]),
            "l".into()
        )
        .is_err());
        assert!(to_geometry(&json!({"type": "Point", "coordinates": [200, 0]})).is_err());
        assert!(to_geometry(&json!({"type": "Circle", "coordinates": [0, 0]})).is_err());
    }
}
