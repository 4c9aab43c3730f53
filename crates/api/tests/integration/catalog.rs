//! The data catalogue through the real HTTP stack with governance on: datasets defined
//! by administrators, DCAT-AP 3 listing only what a caller may see, CSV exports through
//! the caller's view, and differentially private aggregates with an enforced budget.

use serde_json::{json, Value};

use super::harness::{app_governed, Governed};

fn classification() -> Value {
    json!({
        "types": {
            "Vehicle": {"level": "internal", "owner": "transport"},
            "Camera": {"level": "core", "owner": "police"}
        },
        "attributes": {"Vehicle.licensePlate": {"level": "important"}}
    })
}

async fn city() -> Governed {
    let g = app_governed(classification()).await;
    let mut batch = Vec::new();
    for i in 0..30 {
        batch.push(json!({
            "id": format!("urn:ngsi-ld:Vehicle:{i}"), "type": "Vehicle",
            "licensePlate": {"type": "Property", "value": format!("=粤B{i:05}")},
            "speed": {"type": "Property", "value": 40 + i},
            "location": {"type": "GeoProperty",
                         "value": {"type": "Point", "coordinates": [120.0 + (i as f64) / 100.0, 30.0]}}
        }));
    }
    batch.push(json!({"id": "urn:ngsi-ld:Camera:1", "type": "Camera",
                      "status": {"type": "Property", "value": "on"}}));
    let r = g
        .call(
            Some(&g.admin),
            "POST",
            "/ngsi-ld/v1/entityOperations/create",
            &[],
            Some(&Value::Array(batch)),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let traffic = json!({
        "title": "Vehicles on the road", "description": "Speeds of the fleet",
        "publisher": "transport", "accessRights": "PUBLIC", "license": "CC-BY-4.0",
        "types": ["Vehicle"], "keywords": ["traffic"], "themes": ["TRAN"],
        "contactPoint": "open-data@city.example",
        "privacy": {"mechanism": "laplace", "budget": {"epsilon": 1.0},
                    "maxQueryCost": 0.5,
                    "bounds": {"speed": {"lower": 0, "upper": 200}}}
    });
    let r = g
        .call(
            Some(&g.admin),
            "PUT",
            "/platform/v1/datasets/traffic",
            &[],
            Some(&traffic),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["author"], "user:root");
    let cameras = json!({
        "title": "Cameras", "description": "Camera status", "publisher": "police",
        "accessRights": "NON_PUBLIC", "types": ["Camera"]
    });
    let r = g
        .call(
            Some(&g.admin),
            "PUT",
            "/platform/v1/datasets/cameras",
            &[],
            Some(&cameras),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    g
}

fn ids(catalog: &Value) -> Vec<String> {
    catalog["dcat:dataset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dct:identifier"].as_str().unwrap().to_string())
        .collect()
}

fn distributions(d: &Value) -> Vec<String> {
    d["dcat:distribution"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["dct:title"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn datasets_are_defined_by_administrators_and_validated() {
    let g = city().await;
    let viewer = g.key("vic", &["viewer"], |_| {});
    let body = json!({"title": "x", "description": "y", "publisher": "p",
                      "accessRights": "PUBLIC", "types": ["Vehicle"]});
    let r = g
        .call(
            Some(&viewer),
            "PUT",
            "/platform/v1/datasets/x",
            &[],
            Some(&body),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = g
        .call(None, "DELETE", "/platform/v1/datasets/traffic", &[], None)
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    let mut bad = body.clone();
    bad["themes"] = json!(["ROADS"]);
    let r = g
        .call(
            Some(&g.admin),
            "PUT",
            "/platform/v1/datasets/x",
            &[],
            Some(&bad),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("themes"), "{}", r.text);
    let r = g
        .call(
            Some(&g.admin),
            "PUT",
            "/platform/v1/datasets/a%20b",
            &[],
            Some(&body),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    // Redefining keeps the first issue date.
    let first = g
        .call(
            Some(&g.admin),
            "GET",
            "/platform/v1/datasets/traffic",
            &[],
            None,
        )
        .await;
    let mut again = first.body.clone();
    for k in ["id", "issued", "modified", "author"] {
        again.as_object_mut().unwrap().remove(k);
    }
    again["title"] = json!("Vehicles");
    let r = g
        .call(
            Some(&g.admin),
            "PUT",
            "/platform/v1/datasets/traffic",
            &[],
            Some(&again),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["issued"], first.body["issued"]);
    assert_eq!(r.body["title"], "Vehicles");
    // Removal.
    let r = g
        .call(
            Some(&g.admin),
            "DELETE",
            "/platform/v1/datasets/cameras",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = g
        .call(
            Some(&g.admin),
            "GET",
            "/platform/v1/datasets/cameras",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
}

#[tokio::test]
async fn the_dcat_catalogue_lists_only_what_a_caller_may_see() {
    let g = city().await;
    let r = g.call(None, "GET", "/platform/v1/catalog", &[], None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("application/ld+json"));
    assert_eq!(r.body["@type"], "dcat:Catalog");
    assert_eq!(r.body["@context"]["dcat"], "http://www.w3.org/ns/dcat#");
    assert!(r.body["dct:title"].is_string() && r.body["dct:publisher"]["foaf:name"].is_string());
    // Anonymous: the open dataset, not the police's; of its distributions only the
    // private aggregates (Vehicle data is internal).
    assert_eq!(ids(&r.body), ["traffic"]);
    let d = &r.body["dcat:dataset"][0];
    assert_eq!(d["@type"], "dcat:Dataset");
    assert_eq!(
        d["dct:accessRights"]["@id"],
        "http://publications.europa.eu/resource/authority/access-right/PUBLIC"
    );
    assert_eq!(
        d["dct:license"]["@id"],
        "http://publications.europa.eu/resource/authority/licence/CC_BY_4_0"
    );
    assert_eq!(
        d["dcat:theme"][0]["@id"],
        "http://publications.europa.eu/resource/authority/data-theme/TRAN"
    );
    assert_eq!(
        d["cb:classification"], "confidential",
        "licensePlate is important data"
    );
    assert_eq!(
        d["dcat:contactPoint"]["vcard:hasEmail"]["@id"],
        "mailto:open-data@city.example"
    );
    assert_eq!(
        distributions(d),
        ["Differentially private aggregates (count, sum, mean, histogram)"]
    );
    // The administrator sees both, with every distribution.
    let r = g
        .call(Some(&g.admin), "GET", "/platform/v1/catalog", &[], None)
        .await;
    assert_eq!(ids(&r.body), ["cameras", "traffic"]);
    let t = &r.body["dcat:dataset"][1];
    assert_eq!(distributions(t).len(), 4, "{t}");
    let url = t["dcat:distribution"][0]["dcat:accessURL"]["@id"]
        .as_str()
        .unwrap();
    assert!(
        url.starts_with("http://localhost/ngsi-ld/v1/entities?type=") && url.ends_with("/Vehicle"),
        "{url}"
    );
    // A viewer reads Vehicles but may not export them.
    let viewer = g.key("vic", &["viewer"], |_| {});
    let r = g
        .call(Some(&viewer), "GET", "/platform/v1/catalog", &[], None)
        .await;
    assert_eq!(ids(&r.body), ["traffic"]);
    let titles = distributions(&r.body["dcat:dataset"][0]);
    assert!(
        titles.iter().any(|t| t.contains("NGSI-LD query")),
        "{titles:?}"
    );
    assert!(!titles.iter().any(|t| t.contains("CSV")), "{titles:?}");
    // What is hidden is not found, in every form.
    for uri in [
        "/platform/v1/catalog/datasets/cameras",
        "/platform/v1/datasets/cameras",
        "/platform/v1/datasets/cameras/export",
    ] {
        let r = g.call(Some(&viewer), "GET", uri, &[], None).await;
        assert_eq!(r.status, 404, "{uri}: {}", r.text);
    }
    let r = g
        .call(
            None,
            "GET",
            "/platform/v1/catalog/datasets/traffic",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["@id"],
        "http://localhost/platform/v1/catalog/datasets/traffic"
    );
    assert!(r.body["@context"].is_object());
    let r = g
        .call(None, "GET", "/platform/v1/datasets", &[], None)
        .await;
    assert_eq!(r.body.as_array().unwrap().len(), 1, "{}", r.text);
}

#[tokio::test]
async fn exports_go_through_the_callers_view() {
    let g = city().await;
    let analyst = g.key("ann", &["analyst"], |_| {});
    let r = g
        .call(
            Some(&analyst),
            "GET",
            "/platform/v1/datasets/traffic/export?limit=10",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    let lines: Vec<&str> = r.text.lines().collect();
    assert_eq!(lines[0], "id,type,licensePlate,location,speed");
    assert_eq!(lines.len(), 11, "{}", r.text);
    // Plates are pseudonymised for an analyst: no plate leaves in clear.
    assert!(!r.text.contains("粤B"), "{}", r.text);
    let next = r.header("link").unwrap();
    assert!(
        next.contains("offset=10") && next.contains("rel=\"next\""),
        "{next}"
    );
    // The administrator exports the values; formula-like text is defused.
    let r = g
        .call(
            Some(&g.admin),
            "GET",
            "/platform/v1/datasets/traffic/export?limit=100",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains(",'=粤B00000,"), "{}", r.text);
    assert_eq!(r.text.lines().count(), 31);
    assert!(r.header("link").is_none());
    // Viewers read but may not export; anonymous callers neither.
    let viewer = g.key("vic", &["viewer"], |_| {});
    let r = g
        .call(
            Some(&viewer),
            "GET",
            "/platform/v1/datasets/traffic/export",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = g
        .call(
            None,
            "GET",
            "/platform/v1/datasets/traffic/export",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = g
        .call(
            Some(&g.admin),
            "GET",
            "/platform/v1/datasets/traffic/export?format=xml",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
}

#[tokio::test]
async fn aggregates_are_noisy_and_the_budget_is_enforced() {
    let g = city().await;
    let agg = "/platform/v1/datasets/traffic/aggregate";
    // A mean of speed: true value 54.5 over 30 vehicles; noisy, within the bounds.
    let r = g
        .call(
            None,
            "GET",
            &format!("{agg}?statistic=mean&attribute=speed"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.body["value"].as_f64().unwrap();
    assert!((0.0..=200.0).contains(&v), "{}", r.text);
    assert_eq!(r.body["statistic"], "mean");
    assert_eq!(r.body["privacy"]["mechanism"], "laplace");
    assert_eq!(r.body["privacy"]["epsilon"], 0.5);
    assert_eq!(r.body["privacy"]["bounds"], json!([0.0, 200.0]));
    assert_eq!(r.body["privacy"]["budget"]["consumer"], "anonymous");
    assert_eq!(r.body["privacy"]["budget"]["spent"], 0.5);
    assert_eq!(r.body["accuracy"].as_array().unwrap().len(), 2);
    // A count in an area (the first ten vehicles lie west of 120.095).
    let area = "georel=within&geometry=Polygon&coordinates=[[[119.9,29.9],[120.095,29.9],[120.095,30.1],[119.9,30.1],[119.9,29.9]]]";
    let r = g
        .call(
            None,
            "GET",
            &format!("{agg}?statistic=count&epsilon=0.25&{area}"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["privacy"]["budget"]["spent"], 0.75);
    let c = r.body["value"].as_f64().unwrap();
    // Laplace scale 4 at ε = 0.25: 10 ± 40 holds with probability 1 - e^-10.
    assert!((c - 10.0).abs() <= 40.0, "{}", r.text);
    // Beyond the per-query cost, and unknown parameters: refused by name, nothing spent.
    let r = g
        .call(None, "GET", &format!("{agg}?epsilon=0.6"), &[], None)
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("epsilon"), "{}", r.text);
    let r = g
        .call(None, "GET", &format!("{agg}?colour=red"), &[], None)
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("colour"), "{}", r.text);
    let r = g
        .call(None, "GET", &format!("{agg}?statistic=sum"), &[], None)
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("attribute"), "{}", r.text);
    // The budget: 0.75 of 1.0 spent; 0.5 more is refused with 403, 0.25 fits.
    let r = g
        .call(None, "GET", &format!("{agg}?epsilon=0.5"), &[], None)
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.text.contains("privacy budget exhausted"), "{}", r.text);
    let r = g
        .call(
            None,
            "GET",
            &format!("{agg}?statistic=histogram&attribute=speed&bins=0,50,100,200&epsilon=0.25"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["bins"].as_array().unwrap().len(), 3);
    let r = g
        .call(None, "GET", &format!("{agg}?epsilon=0.01"), &[], None)
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let b = g
        .call(
            None,
            "GET",
            "/platform/v1/datasets/traffic/budget",
            &[],
            None,
        )
        .await;
    assert_eq!(b.status, 200, "{}", b.text);
    assert_eq!(b.body["remaining"], 0.0);
    assert_eq!(b.body["releases"], 3);
    // The exhaustion is handed to the security watch.
    let x = g.catalog.take_exhaustions();
    assert_eq!(x.len(), 2);
    assert_eq!(
        (x[0].dataset.as_str(), x[0].consumer.as_str()),
        ("traffic", "anonymous")
    );
    // Another consumer has a budget of its own.
    let r = g
        .call(
            Some(&g.admin),
            "GET",
            &format!("{agg}?statistic=count"),
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["privacy"]["budget"]["consumer"], "user:root");
    assert_eq!(r.body["privacy"]["budget"]["spent"], 0.5);
    // A dataset without privacy parameters offers no aggregates.
    let r = g
        .call(
            Some(&g.admin),
            "GET",
            "/platform/v1/datasets/cameras/aggregate",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
}
