//! Property tests of the parsers: arbitrary input never panics, and what parses behaves.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

use citybrain_model::entity::parse_entity;
use citybrain_model::geobox::geometry_box;
use citybrain_model::geojson::{haversine_distance, to_geometry, GeoQuery};
use citybrain_model::q::Query;
use citybrain_model::time::{Clock as _, SystemClock};
use citybrain_model::JsonLdContext;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Arbitrary JSON values, biased towards NGSI-LD-looking shapes.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        "[a-zA-Z:/._ -]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("Property"),
            Just("Relationship"),
            Just("GeoProperty"),
            Just("LanguageProperty"),
            Just("Point"),
            Just("urn:ngsi-ld:null"),
            Just("urn:a:b")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_string()),
                    Just("value".to_string()),
                    Just("object".to_string()),
                    Just("coordinates".to_string()),
                    Just("datasetId".to_string()),
                    Just("observedAt".to_string()),
                    Just("languageMap".to_string()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn entity_parser_never_panics(attrs in prop::collection::btree_map("[a-z]{1,6}", arb_json(), 0..6), id in prop_oneof![Just("urn:a:1".to_string()), "[a-z:]{0,8}"]) {
        let mut body = serde_json::Map::new();
        body.insert("id".into(), json!(id));
        body.insert("type".into(), json!("T"));
        for (k, v) in attrs { body.insert(k, v); }
        let _ = parse_entity(&body, &JsonLdContext::core(), SystemClock.now_precise());
    }

    #[test]
    fn parsed_entities_round_trip_through_storage_encoding(attrs in prop::collection::btree_map("[a-z]{1,6}", arb_json(), 0..6)) {
        let mut body = serde_json::Map::new();
        body.insert("id".into(), json!("urn:a:1"));
        body.insert("type".into(), json!("T"));
        for (k, v) in attrs { body.insert(k, v); }
        if let Ok(e) = parse_entity(&body, &JsonLdContext::core(), SystemClock.now_precise()) {
            let bytes = serde_json::to_vec(&e).unwrap();
            let back: citybrain_model::Entity = serde_json::from_slice(&bytes).unwrap();
            prop_assert_eq!(back, e);
        }
    }

    #[test]
    fn q_parser_never_panics(s in "[a-z0-9=!<>~;|().,\\[\\]\"' :-]{0,40}") {
        if let Ok(mut q) = Query::parse(&s) {
            q.resolve(&JsonLdContext::core());
            let e = parse_entity(json!({"id": "urn:a:1", "type": "T", "a": 1, "b": "x"}).as_object().unwrap(), &JsonLdContext::core(), SystemClock.now_precise()).unwrap();
            let _ = q.matches(&e);
        }
    }

    #[test]
    fn q_numeric_comparisons_agree_with_rust(v in -1000i64..1000, lit in -1000i64..1000) {
        let e = parse_entity(json!({"id": "urn:a:1", "type": "T", "a": v}).as_object().unwrap(), &JsonLdContext::core(), SystemClock.now_precise()).unwrap();
        for (op, expected) in [("==", v == lit), ("!=", v != lit), (">", v > lit), (">=", v >= lit), ("<", v < lit), ("<=", v <= lit)] {
            let mut q = Query::parse(&format!("a{op}{lit}")).unwrap();
            q.resolve(&JsonLdContext::core());
            prop_assert_eq!(q.matches(&e), expected, "a={} {} {}", v, op, lit);
        }
        let mut q = Query::parse(&format!("a=={}..{}", lit.min(0), lit.max(0))).unwrap();
        q.resolve(&JsonLdContext::core());
        prop_assert_eq!(q.matches(&e), v >= lit.min(0) && v <= lit.max(0));
    }

    #[test]
    fn geo_parsers_never_panic(g in arb_json(), rel in "[a-zA-Z;=0-9.-]{0,24}", geom in prop_oneof![Just("Point".to_string()), Just("Polygon".to_string()), Just("LineString".to_string()), Just("MultiPolygon".to_string()), "[A-Za-z]{0,8}"]) {
        let _ = to_geometry(&g);
        let _ = GeoQuery::new(&rel, &geom, g, "l".into());
    }

    #[test]
    fn near_agrees_with_haversine(lon in -179.0f64..179.0, lat in -80.0f64..80.0, dlon in -0.05f64..0.05, max in 10.0f64..5000.0) {
        let q = GeoQuery::new(&format!("near;maxDistance=={max}"), "Point", json!([lon, lat]), "l".into()).unwrap();
        let target = to_geometry(&json!({"type": "Point", "coordinates": [lon + dlon, lat]})).unwrap();
        let d = 6_371_008.8 * 2.0 * ((dlon.to_radians() / 2.0).sin().powi(2) * lat.to_radians().cos().powi(2)).sqrt().asin();
        if (d - max).abs() > 1.0 {
            prop_assert_eq!(q.matches(&target), d <= max, "distance {} max {}", d, max);
        }
    }
}

/// A geometry near (lon, lat): a point, a line or a triangle whose vertices lie up to
/// `scale` degrees away (up to 60°, so that arcs bulge and cross the antimeridian).
fn arb_geometry(lon: f64, lat: f64) -> impl Strategy<Value = Value> {
    (
        0usize..3,
        prop_oneof![
            Just(1e-9f64),
            Just(1e-6),
            Just(0.001),
            Just(0.1),
            Just(5.0),
            Just(60.0)
        ],
        proptest::collection::vec((-1.0f64..1.0, -1.0f64..1.0), 3),
    )
        .prop_map(move |(kind, scale, offsets)| {
            let pos: Vec<Value> = offsets
                .iter()
                .map(|(dx, dy)| {
                    let mut x = lon + dx * scale;
                    if x > 180.0 {
                        x -= 360.0;
                    } else if x < -180.0 {
                        x += 360.0;
                    }
                    json!([x, (lat + dy * scale).clamp(-90.0, 90.0)])
                })
                .collect();
            match kind {
                0 => json!({"type": "Point", "coordinates": pos[0]}),
                1 => json!({"type": "LineString", "coordinates": [pos[0], pos[1]]}),
                _ => json!({"type": "Polygon", "coordinates": [[pos[0], pos[1], pos[2], pos[0]]]}),
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The spatial index's promise: a geometry a query matches has a box that meets
    /// one of the query's boxes (so the index's candidates hold every match).
    #[test]
    fn a_match_meets_the_query_boxes(
        (target, query, rel, dist) in (
            // Anywhere, and often near the antimeridian and the poles.
            prop_oneof![-180.0f64..180.0, 179.0f64..180.0, -180.0f64..-179.0],
            prop_oneof![-89.0f64..89.0, 88.0f64..89.99, -89.99f64..-88.0],
        ).prop_flat_map(|(lon, lat)| (
            arb_geometry(lon, lat),
            arb_geometry(lon, lat),
            0usize..6,
            prop_oneof![1.0f64..1000.0, 1000.0f64..1e6, 1e6f64..2e7],
        ))
    ) {
        let geom = to_geometry(&target).unwrap();
        let rels = ["near", "within", "contains", "intersects", "equals", "overlaps"];
        let q = if rel == 0 {
            // Near: the centre is the query's first vertex; the distance either random
            // or a hair beyond the target's own distance, so that the match happens at
            // the cap's edge (where a box too small would miss it).
            let center = if query["type"] == "Point" { query["coordinates"].clone() } else { query["coordinates"][0].clone() };
            let center = if center[0].is_array() { center[0].clone() } else { center };
            let c = geo::Point::new(center[0].as_f64().unwrap(), center[1].as_f64().unwrap());
            let d = match haversine_distance(&c, &geom) {
                Some(exact) if dist < 1e6 => exact * (1.0 + 1e-12) + 1e-6,
                _ => dist,
            };
            GeoQuery::new(&format!("near;maxDistance=={d}"), "Point", center, "l".into())
        } else {
            GeoQuery::new(rels[rel], query["type"].as_str().unwrap(), query["coordinates"].clone(), "l".into())
        };
        let Ok(q) = q else { return Ok(()) };
        if q.matches(&geom) {
            let boxes = q.candidate_boxes().unwrap();
            let b = geometry_box(&geom);
            prop_assert!(boxes.iter().any(|q| q.intersects(&b)), "{} {} matches {} but boxes {:?} miss {:?}", rels[rel], query, target, boxes, b);
        }
    }
}
