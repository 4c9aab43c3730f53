//! The simulated network as FIWARE Smart Data Models entities (normalized NGSI-LD, core
//! context), so the platform and its map draw the twin like any city's roads:
//! `Road` (a named street, or one edge where unnamed), `RoadSegment` (one edge, with its
//! geometry), `TrafficLight` (one signal, at its junction); and the twin's ambulances
//! as `Vehicle` entities.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::geo::Geo;
use crate::net::Network;

/// Entity id of the road segment of edge `edge`.
pub fn segment_id(edge: &str) -> String {
    format!("urn:ngsi-ld:RoadSegment:{}", sanitize(edge))
}

/// Entity id of traffic light `tls`.
pub fn light_id(tls: &str) -> String {
    format!("urn:ngsi-ld:TrafficLight:{}", sanitize(tls))
}

/// Entity id of detector `detector`'s observations.
pub fn flow_id(detector: &str) -> String {
    format!("urn:ngsi-ld:TrafficFlowObserved:{}", sanitize(detector))
}

/// SUMO ids may hold `#`, spaces and other characters a URN must not: they are
/// percent-encoded (reversibly) so every id stays a valid URI.
pub fn sanitize(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn round(x: f64) -> f64 {
    (x * 1e7).round() / 1e7
}

/// Roads, road segments and traffic lights of the network.
pub fn network(net: &Network, geo: &Geo) -> Vec<Value> {
    let mut out = Vec::new();
    let mut roads: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for e in &net.edges {
        // The middle lane's shape stands for the edge's geometry.
        let lanes: Vec<_> = e.lanes.iter().filter_map(|l| net.lanes.get(l)).collect();
        let Some(mid) = lanes.get(lanes.len() / 2) else {
            continue;
        };
        if mid.shape.len() < 2 {
            continue;
        }
        let coords: Vec<Value> = mid
            .shape
            .iter()
            .map(|(x, y)| {
                let (lon, lat) = geo.lon_lat(*x, *y);
                json!([round(lon), round(lat)])
            })
            .collect();
        let (road_key, road_name) = match &e.name {
            Some(n) if !n.trim().is_empty() => (format!("name-{n}"), n.clone()),
            _ => (format!("edge-{}", e.id), e.id.clone()),
        };
        let road = format!("urn:ngsi-ld:Road:{}", sanitize(&road_key));
        let sid = segment_id(&e.id);
        roads
            .entry(road.clone())
            .or_insert_with(|| (road_name.clone(), Vec::new()))
            .1
            .push(sid.clone());
        let max_speed = lanes.iter().map(|l| l.speed).fold(0.0, f64::max);
        out.push(json!({
            "id": sid,
            "type": "RoadSegment",
            "name": {"type": "Property", "value": road_name},
            "location": {"type": "GeoProperty", "value": {"type": "LineString", "coordinates": coords}},
            "length": {"type": "Property", "value": (mid.length * 100.0).round() / 100.0, "unitCode": "MTR"},
            "totalLaneNumber": {"type": "Property", "value": lanes.len()},
            "maximumAllowedSpeed": {"type": "Property", "value": (max_speed * 36.0).round() / 10.0, "unitCode": "KMH"},
            "refRoad": {"type": "Relationship", "object": road},
            "dataProvider": {"type": "Property", "value": "citybrain-twin"},
        }));
    }
    for (id, (name, segments)) in roads {
        out.push(json!({
            "id": id,
            "type": "Road",
            "name": {"type": "Property", "value": name},
            "refRoadSegment": {"type": "Relationship", "object": segments},
            "dataProvider": {"type": "Property", "value": "citybrain-twin"},
        }));
    }
    // A traffic light stands at the junction its controlled links arrive at (the
    // first one, for a light that controls several).
    for tls in &net.traffic_lights {
        let mut incoming: Vec<&str> = net
            .connections
            .iter()
            .filter(|c| c.tl.as_deref() == Some(tls.as_str()))
            .map(|c| c.from_lane.as_str())
            .collect();
        incoming.sort_unstable();
        incoming.dedup();
        let junction = incoming
            .first()
            .and_then(|l| net.lanes.get(*l))
            .and_then(|l| net.edges.iter().find(|e| e.id == l.edge))
            .and_then(|e| net.junctions.get(&e.to));
        let Some(j) = junction else { continue };
        let (lon, lat) = geo.lon_lat(j.x, j.y);
        let mut segments: Vec<String> = incoming
            .iter()
            .filter_map(|l| net.lanes.get(*l))
            .map(|l| segment_id(&l.edge))
            .collect();
        segments.dedup();
        out.push(json!({
            "id": light_id(tls),
            "type": "TrafficLight",
            "name": {"type": "Property", "value": tls},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [round(lon), round(lat)]}},
            "controlledLanes": {"type": "Property", "value": incoming.len()},
            "refRoadSegment": {"type": "Relationship", "object": segments},
            "dataProvider": {"type": "Property", "value": "citybrain-twin"},
        }));
    }
    out
}

/// Entity id of the twin's ambulance `unit`.
pub fn vehicle_id(unit: &str) -> String {
    format!("urn:ngsi-ld:Vehicle:twin-{}", sanitize(unit))
}

/// The ambulances as Smart Data Models `Vehicle` entities: `vehicleType` ambulance,
/// `serviceStatus` (`parked` at the station, `onRoute` otherwise), where they are and
/// how fast, and what they do: `responseStatus` (`available`, `dispatched`,
/// `at_scene`, `returning`) and `refIncident` while on a call given by an incident.
pub fn ambulances(units: &[crate::emergency::UnitView], geo: &Geo) -> Vec<Value> {
    units
        .iter()
        .map(|u| {
            let (lon, lat) = geo.lon_lat(u.x, u.y);
            let mut e = json!({
                "id": vehicle_id(&u.unit),
                "type": "Vehicle",
                "name": {"type": "Property", "value": u.unit},
                "vehicleType": {"type": "Property", "value": "ambulance"},
                "category": {"type": "Property", "value": ["municipalServices"]},
                "serviceStatus": {"type": "Property", "value": if u.status == "available" { "parked" } else { "onRoute" }},
                "responseStatus": {"type": "Property", "value": u.status},
                "speed": {"type": "Property", "value": (u.speed * 3.6 * 10.0).round() / 10.0, "unitCode": "KMH"},
                "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [round(lon), round(lat)]}},
                "refStation": {"type": "Property", "value": u.station},
            });
            if let (Some(call), Some(obj)) = (&u.call, e.as_object_mut()) {
                if call.starts_with("urn:") {
                    obj.insert(
                        "refIncident".into(),
                        json!({"type": "Relationship", "object": call}),
                    );
                }
            }
            e
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_stay_valid_uris() {
        assert_eq!(sanitize("-194017408#1"), "-194017408%231");
        assert_eq!(sanitize("a b/c"), "a%20b%2Fc");
        assert_eq!(sanitize("A0B0.140.00"), "A0B0.140.00");
    }

    #[test]
    fn ambulances_are_vehicles_on_the_map_with_their_call() {
        let geo = Geo::Local {
            lon0: 120.0,
            lat0: 30.0,
            cx: 0.0,
            cy: 0.0,
        };
        let unit = |status: &'static str, call: Option<&str>| crate::emergency::UnitView {
            unit: "ambulance-S1".into(),
            station: "S1".into(),
            status,
            call: call.map(str::to_string),
            x: 0.0,
            y: 0.0,
            speed: 10.0,
        };
        let v = ambulances(
            &[
                unit("dispatched", Some("urn:ngsi-ld:Incident:7")),
                unit("available", None),
                unit("dispatched", Some("call-1")),
            ],
            &geo,
        );
        assert_eq!(v[0]["id"], "urn:ngsi-ld:Vehicle:twin-ambulance-S1");
        assert_eq!(v[0]["type"], "Vehicle");
        assert_eq!(v[0]["serviceStatus"]["value"], "onRoute");
        assert_eq!(v[0]["speed"]["value"], 36.0);
        assert_eq!(v[0]["refIncident"]["object"], "urn:ngsi-ld:Incident:7");
        assert_eq!(
            v[0]["location"]["value"]["coordinates"],
            json!([120.0, 30.0])
        );
        assert_eq!(v[1]["serviceStatus"]["value"], "parked");
        assert!(v[1].get("refIncident").is_none());
        // A call that is not an entity id (the CLI's) is not a relationship.
        assert!(v[2].get("refIncident").is_none());
    }
}
