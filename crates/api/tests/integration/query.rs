use serde_json::json;

use super::harness::{app, vehicle};

async fn seeded() -> super::harness::App {
    let app = app().await;
    let mut items = Vec::new();
    for i in 0..25 {
        items.push(vehicle(
            &format!("urn:ngsi-ld:Vehicle:{i:02}"),
            i as f64 * 4.0,
            2.0 + i as f64 * 0.001,
            41.0,
        ));
    }
    items.push(json!({"id": "urn:ngsi-ld:Bike:1", "type": "Bike", "speed": 12}));
    let r = app
        .post("/ngsi-ld/v1/entityOperations/create", &json!(items))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    app
}

fn ids(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn pagination_is_stable_with_next_links_and_counts() {
    let app = seeded().await;
    let r = app
        .get("/ngsi-ld/v1/entities?type=Vehicle&limit=10&count=true")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ngsild-results-count"), Some("25"));
    assert_eq!(ids(&r.body).len(), 10);
    let link = r.header_all("link");
    assert!(
        link.contains("rel=\"next\"") && link.contains("offset=10"),
        "{link}"
    );
    let mut seen = ids(&r.body);
    for offset in [10, 20] {
        let r = app
            .get(&format!(
                "/ngsi-ld/v1/entities?type=Vehicle&limit=10&offset={offset}"
            ))
            .await;
        seen.extend(ids(&r.body));
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 25, "no entity skipped or repeated");
    assert_eq!(seen, sorted, "id order");
    let r = app
        .get("/ngsi-ld/v1/entities?type=Vehicle&limit=10&offset=20")
        .await;
    assert!(!r.header_all("link").contains("next"));
    let r = app
        .get("/ngsi-ld/v1/entities?type=Vehicle&limit=0&count=true")
        .await;
    assert_eq!(
        (r.status.as_u16(), r.header("ngsild-results-count")),
        (200, Some("25"))
    );
    // A count alone has no next page (a link to itself would loop a client forever).
    assert!(
        !r.header_all("link").contains("next"),
        "{}",
        r.header_all("link")
    );
    for path in [
        "/ngsi-ld/v1/subscriptions?limit=0&count=true",
        "/ngsi-ld/v1/temporal/entities?type=Vehicle&limit=0&count=true&timerel=after&timeAt=2000-01-01T00:00:00Z",
    ] {
        let r = app.get(path).await;
        assert!(!r.header_all("link").contains("next"), "{path}: {}", r.header_all("link"));
    }
    let r = app
        .get("/ngsi-ld/v1/entities?type=Vehicle&limit=5000")
        .await;
    assert_eq!((r.status.as_u16(), r.error_type()), (403, "TooManyResults"));
}

#[tokio::test]
async fn q_type_id_and_geo_filters() {
    let app = seeded().await;
    let r = app
        .get("/ngsi-ld/v1/entities?type=Vehicle&q=speed%3E=80;speed%3C90&limit=100")
        .await;
    assert_eq!(
        ids(&r.body),
        [
            "urn:ngsi-ld:Vehicle:20",
            "urn:ngsi-ld:Vehicle:21",
            "urn:ngsi-ld:Vehicle:22"
        ]
    );
    let r = app
        .get("/ngsi-ld/v1/entities?type=Vehicle,Bike&q=speed==12&limit=100")
        .await;
    assert_eq!(
        ids(&r.body),
        ["urn:ngsi-ld:Bike:1", "urn:ngsi-ld:Vehicle:03"]
    );
    let r = app
        .get("/ngsi-ld/v1/entities?q=speed==0..8%7Cbrand==%22Nope%22&limit=100")
        .await;
    assert_eq!(ids(&r.body).len(), 3);
    let r = app
        .get("/ngsi-ld/v1/entities?type=Vehicle&idPattern=Vehicle:0[12]&limit=100")
        .await;
    assert_eq!(
        ids(&r.body),
        ["urn:ngsi-ld:Vehicle:01", "urn:ngsi-ld:Vehicle:02"]
    );
    let r = app
        .get("/ngsi-ld/v1/entities?type=Vehicle,Bike&id=urn:ngsi-ld:Vehicle:05,urn:ngsi-ld:Bike:1")
        .await;
    assert_eq!(ids(&r.body).len(), 2);
    // id takes precedence over idPattern (1.9, 5.2.33).
    let r = app
        .get("/ngsi-ld/v1/entities?type=Vehicle&id=urn:ngsi-ld:Vehicle:05&idPattern=Vehicle:0[12]")
        .await;
    assert_eq!(ids(&r.body), ["urn:ngsi-ld:Vehicle:05"]);
    let r = app
        .get("/ngsi-ld/v1/entities?type=Vehicle&attrs=speed&limit=1")
        .await;
    let e = &r.body[0];
    assert!(e.get("speed").is_some() && e.get("brand").is_none());
    let r = app
        .get("/ngsi-ld/v1/entities?type=Vehicle&pick=id,speed&limit=1")
        .await;
    assert!(r.body[0].get("type").is_none() && r.body[0].get("speed").is_some());
    // ~85 m per 0.001 degree of longitude at 41N: 300 m catches 4 vehicles.
    let r = app.get("/ngsi-ld/v1/entities?type=Vehicle&georel=near;maxDistance==300&geometry=Point&coordinates=%5B2.0,41.0%5D&limit=100").await;
    assert_eq!(ids(&r.body).len(), 4, "{}", r.text);
    let poly = "%5B%5B%5B2.0045,40.9%5D,%5B2.1,40.9%5D,%5B2.1,41.1%5D,%5B2.0045,41.1%5D,%5B2.0045,40.9%5D%5D%5D";
    let r = app.get(&format!("/ngsi-ld/v1/entities?type=Vehicle&georel=within&geometry=Polygon&coordinates={poly}&limit=100")).await;
    assert_eq!(ids(&r.body).len(), 20, "{}", r.text);
    let r = app
        .call(
            "GET",
            "/ngsi-ld/v1/entities?type=Vehicle&limit=2",
            &[("accept", "application/geo+json")],
            None,
        )
        .await;
    assert_eq!(r.body["type"], "FeatureCollection");
    assert_eq!(r.body["features"].as_array().unwrap().len(), 2);
    let r = app
        .get("/ngsi-ld/v1/entities?type=Vehicle&options=keyValues&limit=1")
        .await;
    assert_eq!(r.body[0]["brand"], "Mercedes");
}

#[tokio::test]
async fn post_query_accepts_a_query_object() {
    let app = seeded().await;
    let q = json!({"type": "Query", "entities": [{"type": "Vehicle"}], "q": "speed>90", "attrs": ["speed"]});
    let r = app
        .post("/ngsi-ld/v1/entityOperations/query?count=true", &q)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("ngsild-results-count"), Some("2"));
}

#[tokio::test]
async fn order_by_sorts_before_paging() {
    let app = super::harness::app().await;
    for (i, name, sub) in [(2, "B", 2), (1, "A", 3), (3, "C", 1)] {
        let r = app
            .post(
                "/ngsi-ld/v1/entities",
                &json!({"id": format!("urn:ngsi-ld:Building:{i}"), "type": "Building",
                    "name": {"type": "Property", "value": name, "sub": {"type": "Property", "value": sub}}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        // createdAt has millisecond precision: keep the creations apart.
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    let get = |q: &str| {
        let url = format!("/ngsi-ld/v1/entities?type=Building&{q}");
        let app = &app;
        async move { ids(&app.get(&url).await.body) }
    };
    let b = |n: &[u8]| -> Vec<String> {
        n.iter()
            .map(|i| format!("urn:ngsi-ld:Building:{i}"))
            .collect()
    };
    assert_eq!(get("orderBy=name").await, b(&[1, 2, 3]));
    assert_eq!(get("orderBy=name;desc").await, b(&[3, 2, 1]));
    assert_eq!(get("orderBy=name.sub").await, b(&[3, 2, 1]));
    assert_eq!(
        get("orderBy=createdAt;desc,id").await[0],
        "urn:ngsi-ld:Building:3"
    );
    assert_eq!(get("orderBy=name;desc&limit=1&offset=1").await, b(&[2]));
    let r = app
        .get("/ngsi-ld/v1/entities?type=Building&orderBy=name;sideways")
        .await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("orderBy"), "{}", r.text);
    let r = app
        .post(
            "/ngsi-ld/v1/entityOperations/query",
            &json!({"type": "Query", "entities": [{"type": "Building"}], "orderBy": "name;desc"}),
        )
        .await;
    assert_eq!(ids(&r.body), b(&[3, 2, 1]));
    // The temporal query sorts the same way.
    let r = app
        .get("/ngsi-ld/v1/temporal/entities?type=Building&orderBy=name.sub&timerel=after&timeAt=1970-01-01T00:00:00Z&timeproperty=createdAt")
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ids(&r.body), b(&[3, 2, 1]));
}

/// `q` on LanguageProperty (`name[en]`, `name[*]`, `name`), VocabProperty (short name
/// or full IRI) and ListProperty (any member) values, through the value index.
#[tokio::test]
async fn q_matches_language_vocab_and_list_properties() {
    let app = super::harness::app().await;
    let e = json!({
        "id": "urn:ngsi-ld:Building:p", "type": "Building",
        "name": {"type": "LanguageProperty", "languageMap": {"en": "Big", "fr": "Grand"}},
        "category": {"type": "VocabProperty", "vocab": "commercial"},
        "scores": {"type": "ListProperty", "valueList": [1, 2, 3]}
    });
    let r = app.post("/ngsi-ld/v1/entities", &e).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // The simplified representation (4.5.4): wrapped languageMap, json and vocab; bare
    // lists.
    let mut with_json = e.clone();
    with_json["id"] = json!("urn:ngsi-ld:Thing:j");
    with_json["type"] = json!("Thing");
    with_json["street"] = json!({"type": "JsonProperty", "json": {"a": 1}});
    assert_eq!(
        app.post("/ngsi-ld/v1/entities", &with_json).await.status,
        201
    );
    let kv = app
        .get("/ngsi-ld/v1/entities/urn:ngsi-ld:Thing:j?options=keyValues")
        .await
        .body;
    assert_eq!(
        kv["name"],
        json!({"languageMap": {"en": "Big", "fr": "Grand"}}),
        "{kv}"
    );
    assert_eq!(kv["category"], json!({"vocab": "commercial"}), "{kv}");
    assert_eq!(kv["street"], json!({"json": {"a": 1}}), "{kv}");
    assert_eq!(kv["scores"], json!([1, 2, 3]), "{kv}");
    let other = json!({"id": "urn:ngsi-ld:Building:o", "type": "Building",
        "name": {"type": "LanguageProperty", "languageMap": {"en": "Small"}}});
    assert_eq!(app.post("/ngsi-ld/v1/entities", &other).await.status, 201);
    for (q, hit) in [
        ("name%5Ben%5D==%22Big%22", true),
        ("name%5Bfr%5D==%22Big%22", false),
        ("name%5B*%5D==%22Grand%22", true),
        ("name==%22Grand%22", true),
        ("category==%22commercial%22", true),
        (
            "category==%22https://uri.etsi.org/ngsi-ld/default-context/commercial%22",
            true,
        ),
        ("category==%22residential%22", false),
        ("scores==2", true),
        ("scores==5", false),
        ("scores%3E2", true),
    ] {
        let r = app
            .get(&format!("/ngsi-ld/v1/entities?type=Building&q={q}"))
            .await;
        assert_eq!(r.status, 200, "{q}: {}", r.text);
        assert_eq!(
            ids(&r.body),
            if hit {
                vec!["urn:ngsi-ld:Building:p".to_string()]
            } else {
                Vec::<String>::new()
            },
            "{q}"
        );
    }
}
