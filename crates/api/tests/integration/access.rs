//! The authorization seam, driven by a test policy as governance will drive it: every
//! family builds the caller's context, writes are refused by verb and type, reads leave
//! out what the caller may not see (and match masked entities as masked), and who did
//! what is recorded.

use std::sync::Arc;

use citybrain_access::{Action, Authorizer, Denied, Principal, RequestContext, Resource, View};
use citybrain_model::Entity;
use serde_json::json;

use super::harness::app_with_policy;

/// Anonymous callers may only read; `viewer`s too; cameras are seen by `police` only;
/// people's names are masked; modes are switched by `duty` officers only.
struct Policy;

fn roles(rc: &RequestContext) -> &[String] {
    match &rc.principal {
        Principal::User(i) => &i.roles,
        _ => &[],
    }
}

fn has(rc: &RequestContext, role: &str) -> bool {
    roles(rc).iter().any(|r| r == role)
}

impl Authorizer for Policy {
    fn authorize(&self, rc: &RequestContext, a: &Action<'_>) -> Result<(), Denied> {
        if matches!(rc.principal, Principal::Service(_)) {
            return Ok(());
        }
        if !a.verb.writes() {
            return Ok(());
        }
        if rc.principal.is_anonymous() {
            return Err(Denied::Unauthenticated("log in to change anything".into()));
        }
        if has(rc, "viewer") {
            return Err(Denied::Forbidden("viewers only read".into()));
        }
        if a.resource == Resource::Mode && !has(rc, "duty") {
            return Err(Denied::Forbidden("only duty officers switch modes".into()));
        }
        let cameras = match a.resource {
            Resource::Entity { types, .. } | Resource::History { types, .. } => {
                types.iter().any(|t| t.ends_with("Camera"))
            }
            _ => false,
        };
        if cameras && !has(rc, "police") {
            return Err(Denied::Forbidden("cameras are police business".into()));
        }
        Ok(())
    }

    fn view(&self, rc: &RequestContext, e: &Entity) -> View {
        let is = |t: &str| e.types.iter().any(|x| x.ends_with(t));
        if is("Camera") && !has(rc, "police") {
            return View::Hidden;
        }
        if is("Person") {
            let mut m = e.clone();
            m.attrs.retain(|(name, _)| !name.ends_with("name"));
            return View::Masked(Box::new(m));
        }
        View::Full
    }
}

fn user(id: &str, roles: &[&str]) -> Principal {
    Principal::user(id, roles)
}

#[tokio::test]
async fn writes_are_refused_by_who_calls_and_what_they_do() {
    let app = app_with_policy(Arc::new(Policy)).await;
    let anon = Principal::Anonymous;
    let ana = user("ana", &["editor"]);
    let vic = user("vic", &["viewer"]);
    let car = json!({"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle", "speed": {"type": "Property", "value": 3}});
    let r = app
        .call_as(&anon, "POST", "/ngsi-ld/v1/entities", &[], Some(&car))
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.body["type"]
        .as_str()
        .unwrap()
        .ends_with("/Unauthenticated"));
    let r = app
        .call_as(&vic, "POST", "/ngsi-ld/v1/entities", &[], Some(&car))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = app
        .call_as(&ana, "POST", "/ngsi-ld/v1/entities", &[], Some(&car))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Reads stay open; a batch write by a viewer is refused per entity.
    let r = app
        .call_as(
            &anon,
            "GET",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:1",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .call_as(
            &vic,
            "POST",
            "/ngsi-ld/v1/entityOperations/upsert",
            &[],
            Some(&json!([car])),
        )
        .await;
    assert_eq!(r.status, 207, "{}", r.text);
    assert_eq!(r.body["errors"][0]["error"]["status"], 403);
    // The platform: modes by duty officers only, and the switch records who.
    let body = json!({"mode": "emergency", "reason": "flood"});
    let r = app
        .call_as(&ana, "PUT", "/platform/v1/mode", &[], Some(&body))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let olga = user("olga", &["duty"]);
    let r = app
        .call_as(&olga, "PUT", "/platform/v1/mode", &[], Some(&body))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["by"], "user:olga");
}

#[tokio::test]
async fn reads_leave_out_what_the_caller_may_not_see() {
    let app = app_with_policy(Arc::new(Policy)).await;
    let ana = user("ana", &["editor"]);
    let pol = user("pia", &["police"]);
    for e in [
        json!({"id": "urn:ngsi-ld:Camera:1", "type": "Camera", "zone": {"type": "Property", "value": "a"}}),
        json!({"id": "urn:ngsi-ld:Person:1", "type": "Person", "name": {"type": "Property", "value": "Li"}, "zone": {"type": "Property", "value": "a"}}),
        json!({"id": "urn:ngsi-ld:Vehicle:1", "type": "Vehicle", "zone": {"type": "Property", "value": "a"}}),
    ] {
        let who = if e["type"] == "Camera" { &pol } else { &ana };
        let r = app
            .call_as(who, "POST", "/ngsi-ld/v1/entities", &[], Some(&e))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let q = "/ngsi-ld/v1/entities?q=zone==%22a%22&count=true&options=keyValues";
    let r = app.call_as(&ana, "GET", q, &[], None).await;
    assert_eq!(r.header("NGSILD-Results-Count"), Some("2"), "{}", r.text);
    let ids: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["urn:ngsi-ld:Person:1", "urn:ngsi-ld:Vehicle:1"]);
    let person = &r.body[0];
    assert!(person.get("name").is_none(), "masked: {person}");
    let r = app.call_as(&pol, "GET", q, &[], None).await;
    assert_eq!(r.header("NGSILD-Results-Count"), Some("3"));
    // Hidden is not found; a filter cannot probe a masked attribute.
    let r = app
        .call_as(
            &ana,
            "GET",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:1",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .call_as(
            &ana,
            "GET",
            "/ngsi-ld/v1/entities?type=Person&q=name==%22Li%22",
            &[],
            None,
        )
        .await;
    assert_eq!(r.body, json!([]));
}

#[tokio::test]
async fn the_caller_is_recorded_and_the_request_id_answered() {
    let app = app_with_policy(Arc::new(Policy)).await;
    let ana = user("ana", &["editor"]);
    let r = app
        .call_as(
            &ana,
            "POST",
            "/platform/v1/incidents",
            &[("x-request-id", "req-7")],
            Some(&json!({"category": "water", "title": "Burst main"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("x-request-id"), Some("req-7"));
    assert_eq!(r.body["history"][0]["by"], "user:ana");
    let id = r.body["id"].as_str().unwrap().to_string();
    let r = app
        .call_as(
            &ana,
            "POST",
            &format!("/platform/v1/incidents/{id}/comments"),
            &[],
            Some(&json!({"text": "crew on site"})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        r.body["history"].as_array().unwrap().last().unwrap()["by"],
        "user:ana"
    );
    // A request without an id gets one.
    let r = app
        .call_as(&ana, "GET", "/platform/v1/incidents", &[], None)
        .await;
    let id = r.header("x-request-id").unwrap_or_default();
    assert!(id.len() >= 10 && id.contains('-'), "a generated id: {id}");
    // Anonymous callers cannot file incidents under this policy.
    let r = app
        .call_as(
            &Principal::Anonymous,
            "POST",
            "/platform/v1/incidents",
            &[],
            Some(&json!({"category": "water", "title": "x"})),
        )
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn history_and_retyping_obey_the_same_policy() {
    let app = app_with_policy(Arc::new(Policy)).await;
    let ana = user("ana", &["editor"]);
    let pia = user("pia", &["police"]);
    let cam = json!({"id": "urn:ngsi-ld:Camera:9", "type": "Camera", "zone": {"type": "Property", "value": "a", "observedAt": "2026-01-01T00:00:00Z"}});
    let r = app
        .call_as(&pia, "POST", "/ngsi-ld/v1/entities", &[], Some(&cam))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Its history is hidden from those who may not see it, and theirs to keep.
    let path = "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Camera:9";
    let r = app.call_as(&ana, "GET", path, &[], None).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = app.call_as(&ana, "DELETE", path, &[], None).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = app.call_as(&pia, "GET", path, &[], None).await;
    assert_eq!(r.status, 200, "the history is still there: {}", r.text);
    let r = app
        .call_as(
            &ana,
            "GET",
            "/ngsi-ld/v1/temporal/entities?type=Camera",
            &[],
            None,
        )
        .await;
    assert_eq!(r.body, json!([]), "{}", r.text);
    // A forbidden entity reads as absent, not as forbidden.
    let r = app
        .call_as(
            &ana,
            "GET",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Camera:9",
            &[],
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    // Nobody moves an entity into a type they may not write.
    let car = json!({"id": "urn:ngsi-ld:Vehicle:9", "type": "Vehicle", "zone": {"type": "Property", "value": "a"}});
    let r = app
        .call_as(&ana, "POST", "/ngsi-ld/v1/entities", &[], Some(&car))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let retyped = json!({"type": "Camera", "zone": {"type": "Property", "value": "b"}});
    let r = app
        .call_as(
            &ana,
            "PUT",
            "/ngsi-ld/v1/entities/urn:ngsi-ld:Vehicle:9",
            &[],
            Some(&retyped),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
}

/// May delete anything but cars.
struct NoCarDeletes;

impl Authorizer for NoCarDeletes {
    fn authorize(&self, _rc: &RequestContext, a: &Action<'_>) -> Result<(), Denied> {
        match a.resource {
            Resource::Entity { types, .. }
                if a.verb == citybrain_access::Verb::Delete
                    && types.iter().any(|t| t.ends_with("Car")) =>
            {
                Err(Denied::Forbidden("cars are not yours to delete".into()))
            }
            _ => Ok(()),
        }
    }
    fn view(&self, _rc: &RequestContext, _e: &Entity) -> View {
        View::Full
    }
}

/// A purge is checked whole before it changes anything: one entity the caller may
/// not delete, and nothing is deleted (403).
#[tokio::test]
async fn a_purge_refused_for_one_entity_deletes_none() {
    let app = app_with_policy(Arc::new(NoCarDeletes)).await;
    let items = json!([
        {"id": "urn:ngsi-ld:Building:a", "type": "Building", "name": {"type": "Property", "value": "x"}},
        {"id": "urn:ngsi-ld:Car:1", "type": "Car", "name": {"type": "Property", "value": "x"}}
    ]);
    let r = app
        .post("/ngsi-ld/v1/entityOperations/create", &items)
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = app.delete("/ngsi-ld/v1/entities?q=name==%22x%22").await;
    assert_eq!(r.status, 403, "{}", r.text);
    for id in ["urn:ngsi-ld:Building:a", "urn:ngsi-ld:Car:1"] {
        let r = app.get(&format!("/ngsi-ld/v1/entities/{id}")).await;
        assert_eq!(r.status, 200, "{id} was deleted");
    }
    // Without the car, the purge goes through.
    let r = app
        .delete("/ngsi-ld/v1/entities?q=name==%22x%22&type=Building")
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
}
