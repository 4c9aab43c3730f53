//! The demo district: a few hundred entities of FIWARE Smart Data Models types around
//! Hangzhou's West Lake, generated deterministically, loaded once on first start with
//! `serve --demo`.

use std::sync::Arc;

use citybrain_broker::{BatchItem, Broker, Principal, RequestContext, UpsertMode};
use serde_json::{json, Value};

/// Marker document: the demo was loaded once; deleting demo entities does not bring them back.
const MARKER: (&str, &str) = ("citybrain", "demo-loaded");

/// A small deterministic generator (SplitMix64), so the demo city is the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }
    fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i64
    }
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn point(rng: &mut Rng) -> Value {
    // Around West Lake, Hangzhou (120.10-120.20 E, 30.22-30.29 N).
    json!({"type": "Point", "coordinates": [round(rng.range(120.10, 120.20), 6), round(rng.range(30.22, 30.29), 6)]})
}

fn prop(v: Value, observed: &str) -> Value {
    json!({"type": "Property", "value": v, "observedAt": observed})
}

fn prop_unit(v: Value, unit: &str, observed: &str) -> Value {
    json!({"type": "Property", "value": v, "unitCode": unit, "observedAt": observed})
}

/// Builds the demo entities (normalized NGSI-LD, core context).
pub fn entities(observed: &str) -> Vec<Value> {
    let mut rng = Rng(20_260_101);
    let mut out = Vec::new();
    let roads = [
        "Beishan Street",
        "Nanshan Road",
        "Hubin Road",
        "Shuguang Road",
        "Yan'an Road",
        "Qingchun Road",
        "Tianmushan Road",
        "Wensan Road",
    ];
    for i in 0..40 {
        let road = roads[i % roads.len()];
        let speed = round(rng.range(8.0, 62.0), 1);
        let occupancy = round(rng.range(0.05, 0.85), 2);
        out.push(json!({
            "id": format!("urn:ngsi-ld:TrafficFlowObserved:hz-{i:03}"),
            "type": "TrafficFlowObserved",
            "name": prop(json!(format!("{road} detector {}", i / roads.len() + 1)), observed),
            "laneId": prop(json!(rng.int(1, 3)), observed),
            "intensity": prop_unit(json!(rng.int(40, 1400)), "E50", observed),
            "occupancy": prop_unit(json!(occupancy), "C62", observed),
            "averageVehicleSpeed": prop_unit(json!(speed), "KMH", observed),
            "congested": prop(json!(speed < 20.0 && occupancy > 0.5), observed),
            "dateObserved": prop(json!(observed), observed),
            "location": {"type": "GeoProperty", "value": point(&mut rng)}
        }));
    }
    let parkings = [
        "Hubin Yintai",
        "Wulin Square",
        "West Lake Culture Square",
        "Hangzhou Tower",
        "Longxiangqiao",
        "Qianwangci",
        "Zhejiang Library",
        "Huanglong Stadium",
        "Westlake Museum",
        "Yuewang Temple",
    ];
    for i in 0..30 {
        let total = rng.int(80, 900);
        let free = rng.int(0, total);
        out.push(json!({
            "id": format!("urn:ngsi-ld:OffStreetParking:hz-{i:03}"),
            "type": "OffStreetParking",
            "name": prop(json!(format!("{} P{}", parkings[i % parkings.len()], i / parkings.len() + 1)), observed),
            "totalSpotNumber": prop(json!(total), observed),
            "availableSpotNumber": prop(json!(free), observed),
            "occupancyDetectionType": prop(json!(["singleSpaceDetection"]), observed),
            "chargeType": prop(json!(["temporaryPrice"]), observed),
            "status": prop(json!(if free == 0 { "full" } else { "spacesAvailable" }), observed),
            "location": {"type": "GeoProperty", "value": point(&mut rng)}
        }));
    }
    for i in 0..20 {
        let pm25 = round(rng.range(8.0, 95.0), 1);
        out.push(json!({
            "id": format!("urn:ngsi-ld:AirQualityObserved:hz-{i:03}"),
            "type": "AirQualityObserved",
            "name": prop(json!(format!("Air station {}", i + 1)), observed),
            "pm25": prop_unit(json!(pm25), "GQ", observed),
            "pm10": prop_unit(json!(round(pm25 * rng.range(1.2, 1.9), 1)), "GQ", observed),
            "no2": prop_unit(json!(round(rng.range(10.0, 80.0), 1)), "GQ", observed),
            "o3": prop_unit(json!(round(rng.range(20.0, 160.0), 1)), "GQ", observed),
            "temperature": prop_unit(json!(round(rng.range(4.0, 33.0), 1)), "CEL", observed),
            "relativeHumidity": prop_unit(json!(round(rng.range(0.35, 0.95), 2)), "C62", observed),
            "airQualityLevel": prop(json!(if pm25 < 35.0 { "good" } else if pm25 < 75.0 { "moderate" } else { "unhealthy" }), observed),
            "dateObserved": prop(json!(observed), observed),
            "location": {"type": "GeoProperty", "value": point(&mut rng)}
        }));
    }
    for i in 0..150 {
        let device = format!("urn:ngsi-ld:Device:hz-lamp-ctrl-{i:03}");
        let on = rng.unit() < 0.8;
        let battery = round(rng.range(0.2, 1.0), 2);
        let loc = point(&mut rng);
        out.push(json!({
            "id": device,
            "type": "Device",
            "category": prop(json!(["actuator", "meter"]), observed),
            "controlledProperty": prop(json!(["light", "energy"]), observed),
            "batteryLevel": prop_unit(json!(battery), "C62", observed),
            "deviceState": prop(json!(if battery < 0.3 { "lowBattery" } else { "ok" }), observed),
            "location": {"type": "GeoProperty", "value": loc}
        }));
        out.push(json!({
            "id": format!("urn:ngsi-ld:Streetlight:hz-{i:03}"),
            "type": "Streetlight",
            "status": prop(json!(if rng.unit() < 0.03 { "defectiveLamp" } else { "ok" }), observed),
            "powerState": prop(json!(if on { "on" } else { "off" }), observed),
            "illuminanceLevel": prop(json!(if on { round(rng.range(0.6, 1.0), 2) } else { 0.0 }), observed),
            "refDevice": {"type": "Relationship", "object": device},
            "location": {"type": "GeoProperty", "value": loc}
        }));
    }
    out
}

/// Loads the demo city into the default tenant unless it was loaded before.
pub async fn load_once(
    broker: &Arc<Broker>,
    store: &dyn citybrain_store::EntityStore,
) -> anyhow::Result<usize> {
    if store.get_doc("", MARKER.0, MARKER.1)?.is_some() {
        return Ok(0);
    }
    let observed = citybrain_model::time::format_datetime(&broker.clock().now());
    let items = entities(&observed);
    let rc = RequestContext::service("", Principal::SYSTEM);
    let batch: Vec<BatchItem> = items
        .iter()
        .map(|body| BatchItem::core(body.clone()))
        .collect();
    let out = broker
        .batch_upsert(&rc, &batch, UpsertMode::Replace)
        .await?;
    if let Some((id, e)) = out.errors.first() {
        anyhow::bail!(
            "demo entity {id} was refused: {}",
            citybrain_model::ErrorCode::public_detail(e)
        );
    }
    store
        .put_doc(
            "",
            MARKER.0,
            MARKER.1,
            json!({"entities": items.len()}),
            &rc.origin(),
        )?
        .wait()
        .await?;
    Ok(items.len())
}

/// The demo's rules, routing (normal and emergency), an area, service levels and Open311 services
/// (`examples/hub/`), put once into an empty hub.
/// The demo's datasets (`examples/catalog/datasets.json`), once: what a newcomer finds
/// at `/platform/v1/catalog`. Returns how many were defined.
pub async fn load_catalog(catalog: &citybrain_catalog::Catalog) -> anyhow::Result<usize> {
    let rc = RequestContext::service("", Principal::SYSTEM);
    if !catalog.datasets(&rc)?.is_empty() {
        return Ok(0);
    }
    let all: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(include_str!("../../../examples/catalog/datasets.json"))?;
    for (id, spec) in &all {
        let spec = citybrain_catalog::DatasetSpec::from_json(spec.to_string().as_bytes())
            .map_err(|e| anyhow::anyhow!("demo dataset {id}: {e}"))?;
        catalog.put(&rc, id, spec).await?;
    }
    Ok(all.len())
}

pub async fn load_hub(hub: &citybrain_hub::Hub) -> anyhow::Result<usize> {
    if !hub.rules("").is_empty() {
        return Ok(0);
    }
    let desk: serde_json::Value =
        serde_json::from_str(include_str!("../../../examples/hub/desk.json"))?;
    let rc = RequestContext::service("", Principal::SYSTEM);
    let routing = serde_json::from_value(desk["routing"].clone())?;
    hub.set_routing(&rc, citybrain_hub::sla::Mode::Normal, routing)
        .await
        .map_err(|e| anyhow::anyhow!("demo routing: {e}"))?;
    let emergency = serde_json::from_value(desk["emergency_routing"].clone())?;
    hub.set_routing(&rc, citybrain_hub::sla::Mode::Emergency, emergency)
        .await
        .map_err(|e| anyhow::anyhow!("demo emergency routing: {e}"))?;
    let areas: std::collections::BTreeMap<String, citybrain_hub::AreaSpec> =
        serde_json::from_value(desk["areas"].clone())?;
    for (name, spec) in areas {
        hub.put_area(&rc, &name, spec)
            .await
            .map_err(|e| anyhow::anyhow!("demo area {name}: {e}"))?;
    }
    hub.set_sla_policy(&rc, serde_json::from_value(desk["sla"].clone())?)
        .await
        .map_err(|e| anyhow::anyhow!("demo SLA policy: {e}"))?;
    hub.set_open311_config(&rc, serde_json::from_value(desk["open311"].clone())?)
        .await
        .map_err(|e| anyhow::anyhow!("demo Open311 services: {e}"))?;
    // Rules last: a rule put judges the city as it is, so the demo readings already
    // over a limit become incidents at once, routed by the desk set up above.
    let rules = citybrain_rules::parse_rules(
        include_str!("../../../examples/hub/rules.yaml"),
        "examples/hub/rules.yaml",
    )?;
    let n = rules.len();
    for r in rules {
        hub.put_rule(&rc, r, false).await?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    #[test]
    fn demo_city_is_deterministic_and_sized() {
        let a = super::entities("2026-01-01T00:00:00Z");
        let b = super::entities("2026-01-01T00:00:00Z");
        assert_eq!(a, b);
        assert_eq!(a.len(), 390);
    }

    #[test]
    fn demo_rules_parse_and_one_reads_the_forecasts() {
        let rules = citybrain_rules::parse_rules(
            include_str!("../../../examples/hub/rules.yaml"),
            "examples/hub/rules.yaml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rules.len(), 5);
        let text = serde_json::to_string(&rules.last().map(|r| &r.id)).unwrap_or_default();
        assert!(text.contains("congestion-expected"), "{text}");
    }
}
