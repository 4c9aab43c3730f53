#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure
//! The default policies as a decision matrix kept in case files (`cases/*.txt`), and
//! what a caller sees of an entity: left out, attributes removed, masked.

use std::sync::Arc;

use chrono::TimeZone;
use citybrain_access::{
    Action, Authorizer, DatasetRef, Principal, RequestContext, Resource, Verb, View,
};
use citybrain_model::time::ManualClock;
use citybrain_policy::{Decided, Governance, Mask, PseudonymKeys};
use serde_json::json;

fn governance() -> Governance {
    let now = chrono::Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    let clock = Arc::new(ManualClock::new(now));
    let keys = Arc::new(PseudonymKeys::ephemeral(now).unwrap());
    Governance::new(clock, keys).unwrap()
}

async fn classified() -> Governance {
    let g = governance();
    let c: serde_json::Value =
        serde_json::from_str(include_str!("cases/classification.json")).unwrap();
    let admin = RequestContext::request("", Principal::user("root", &["admin"]), "t".into());
    g.set_classification(&admin, c).await.unwrap();
    g
}

fn principal(s: &str) -> Principal {
    if s == "anonymous" {
        return Principal::Anonymous;
    }
    let mut parts = s.split_whitespace();
    let id = parts.next().unwrap().strip_prefix("user:").unwrap();
    let mut i = citybrain_access::Identity::new(id, &[]);
    for p in parts {
        match p.split_once('=').unwrap() {
            ("roles", r) => i.roles = r.split(',').map(str::to_string).collect(),
            ("dept", d) => i.department = Some(d.to_string()),
            other => panic!("unknown principal part {other:?}"),
        }
    }
    Principal::User(Arc::new(i))
}

fn api(name: &str) -> Resource<'static> {
    match name {
        "incidents" => Resource::Incident(None),
        "rules" => Resource::Rule(None),
        "modes" => Resource::Mode,
        "open311" => Resource::Open311,
        "operations" => Resource::Operations,
        "governance" => Resource::Governance,
        "subscriptions" => Resource::Subscription(None),
        "registrations" => Resource::Registration(None),
        other => panic!("unknown api {other}"),
    }
}

fn verb(s: &str) -> Verb {
    match s {
        "read" => Verb::Read,
        "create" | "subscribe" => Verb::Create,
        "update" => Verb::Update,
        "delete" => Verb::Delete,
        "administer" => Verb::Administer,
        "export" => Verb::Export,
        "aggregate" => Verb::Aggregate,
        other => panic!("unknown action {other}"),
    }
}

#[tokio::test]
async fn the_default_policies_decide_as_the_case_file_says() {
    let g = classified().await;
    let mut checked = 0;
    let mut failures = Vec::new();
    for (n, line) in include_str!("cases/default.txt").lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        let [who, action, resource, expected] = cols[..] else {
            panic!("line {}: four columns expected", n + 1);
        };
        let rc = RequestContext::request("", principal(who), "t".into());
        let (kind, name) = resource.split_once(':').unwrap();
        let types: [Arc<str>; 1] = [Arc::from(format!("https://smartdatamodels.org/{name}"))];
        let got = match kind {
            // dataset:<access>:<publisher>:<Type,Type>
            "dataset" => {
                let parts: Vec<&str> = name.split(':').collect();
                let [access, publisher, list] = parts[..] else {
                    panic!("line {}: dataset:<access>:<publisher>:<types>", n + 1);
                };
                let types: Vec<Arc<str>> = list.split(',').map(Arc::from).collect();
                let d = DatasetRef {
                    id: "ds",
                    types: &types,
                    attrs: &[],
                    publisher,
                    access,
                };
                match g.authorize(&rc, &Action::new(verb(action), Resource::Dataset(d))) {
                    Ok(()) => "allow".to_string(),
                    Err(_) => "deny".to_string(),
                }
            }
            "attr" => {
                let (t, a) = name.split_once('.').unwrap();
                match g.attribute_decision(&rc, t, a) {
                    Decided::Deny => "deny".to_string(),
                    Decided::Allow(None) => "allow".to_string(),
                    Decided::Allow(Some(m)) => format!("mask:{}", mask_name(m)),
                }
            }
            // Reads are filtered, not refused: an entity of the type is seen or left out.
            "type" | "history" if action == "read" => {
                let e = citybrain_model::Entity {
                    id: "urn:x:1".into(),
                    types: types.to_vec(),
                    scope: None,
                    created_at: chrono::DateTime::UNIX_EPOCH,
                    modified_at: chrono::DateTime::UNIX_EPOCH,
                    attrs: Vec::new(),
                };
                match g.view(&rc, &e) {
                    View::Hidden => "deny".to_string(),
                    _ => "allow".to_string(),
                }
            }
            _ => {
                let res = match kind {
                    "type" => Resource::Entity {
                        types: &types,
                        id: None,
                    },
                    "history" => Resource::History {
                        types: &types,
                        id: None,
                    },
                    "api" => api(name),
                    other => panic!("line {}: unknown resource kind {other}", n + 1),
                };
                match g.authorize(&rc, &Action::new(verb(action), res)) {
                    Ok(()) => "allow".to_string(),
                    Err(_) => "deny".to_string(),
                }
            }
        };
        if got != expected {
            failures.push(format!("line {}: {line}: got {got}", n + 1));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 30, "only {checked} cases read");
}

fn mask_name(m: Mask) -> &'static str {
    match m {
        Mask::Redact => "redact",
        Mask::Partial => "partial",
        Mask::Pseudonym => "pseudonym",
        Mask::Geohash(_) => "geohash",
        Mask::Time(_) => "time",
    }
}

fn vehicle() -> citybrain_model::Entity {
    let now = chrono::Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    let v = json!({
        "id": "urn:ngsi-ld:Vehicle:1", "type": "https://smartdatamodels.org/Vehicle",
        "https://smartdatamodels.org/licensePlate": {"type": "Property", "value": "粤B12345"},
        "https://smartdatamodels.org/driverPhone": {"type": "Property", "value": "13812341234"},
        "https://smartdatamodels.org/speed": {"type": "Property", "value": 42}
    });
    let ctx = citybrain_model::JsonLdContext::core();
    citybrain_model::entity::parse_entity(v.as_object().unwrap(), &ctx, now).unwrap()
}

fn value(e: &citybrain_model::Entity, attr: &str) -> Option<serde_json::Value> {
    e.attr(&format!("https://smartdatamodels.org/{attr}"))
        .map(|i| i[0].value.to_value())
}

#[tokio::test]
async fn readers_see_what_their_policies_let_them() {
    let g = classified().await;
    let e = vehicle();
    let as_ = |who: &str| RequestContext::request("", principal(who), "t".into());

    assert!(matches!(
        g.view(&as_("user:root roles=admin"), &e),
        View::Full
    ));
    assert!(matches!(g.view(&as_("anonymous"), &e), View::Hidden));

    let View::Masked(m) = g.view(&as_("user:vic roles=viewer"), &e) else {
        panic!("a viewer sees a masked vehicle");
    };
    assert_eq!(value(&m, "licensePlate"), Some(json!("粤B****5")));
    assert_eq!(value(&m, "driverPhone"), None, "restricted: removed");
    assert_eq!(value(&m, "speed"), Some(json!(42)));

    let View::Masked(m) = g.view(&as_("user:ann roles=analyst"), &e) else {
        panic!("an analyst sees a masked vehicle");
    };
    let p = value(&m, "licensePlate").unwrap();
    assert!(p.as_str().unwrap().starts_with("pn:k1:"), "{p}");
    // The same plate gives the same pseudonym (linkable), never the plate.
    let View::Masked(again) = g.view(&as_("user:ann2 roles=analyst"), &e) else {
        panic!()
    };
    assert_eq!(value(&again, "licensePlate"), Some(p));

    let View::Masked(m) = g.view(&as_("user:olga roles=operator"), &e) else {
        panic!("an operator does not see the driver's phone");
    };
    assert_eq!(value(&m, "licensePlate"), Some(json!("粤B12345")));
    assert_eq!(value(&m, "driverPhone"), None);
}

#[tokio::test]
async fn policies_are_validated_versioned_and_take_effect_at_once() {
    let g = classified().await;
    let admin = RequestContext::request("", Principal::user("root", &["admin"]), "t".into());
    let viewer = RequestContext::request("", Principal::user("vic", &["viewer"]), "t".into());
    let types: [Arc<str>; 1] = [Arc::from("https://x/AirQualityObserved")];
    let write = Action::entity(Verb::Create, &types, None);
    assert!(g.authorize(&viewer, &write).is_err());

    // A typo in an attribute is refused, naming the policy.
    let bad = r#"@id("typo") permit (principal, action, resource) when { resource.levle > 0 };"#;
    let e = g.set_policies(&admin, bad).await.unwrap_err().to_string();
    assert!(e.contains("typo") && e.contains("levle"), "{e}");
    let e = g
        .set_policies(&admin, "permit (principal")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("policies:"), "{e}");
    let e = g
        .set_policies(
            &admin,
            r#"@id("m") @mask("scramble") permit (principal, action, resource);"#,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("policy m") && e.contains("scramble"), "{e}");
    // Only those who may administer governance change it.
    assert!(g
        .set_policies(&viewer, "permit (principal, action, resource);")
        .await
        .is_err());
    // A set under which its author could no longer administer governance is refused:
    // nobody could change it back.
    for lockout in [
        "",
        "// nothing",
        "@id(\"viewers\") permit (principal in Role::\"viewer\", action == Action::\"read\", resource);",
        &format!(
            "{}\n@id(\"lock\") forbid (principal, action, resource);",
            citybrain_policy::DEFAULT_POLICIES
        ),
    ] {
        let e = g
            .set_policies(&admin, lockout)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("administer governance"), "{lockout}: {e}");
    }
    assert_eq!(g.policies().version, 0);

    let text = format!(
        "{}\n@id(\"viewers-write-air\") permit (principal in Role::\"viewer\", action == Action::\"create\", resource is EntityType) when {{ resource.name == \"AirQualityObserved\" }};",
        citybrain_policy::DEFAULT_POLICIES
    );
    let v = g.set_policies(&admin, &text).await.unwrap();
    assert_eq!((v.version, v.author.as_str()), (1, "user:root"));
    assert!(
        g.authorize(&viewer, &write).is_ok(),
        "cached denial dropped"
    );
}

#[tokio::test]
async fn policies_and_classification_survive_a_restart() {
    use citybrain_store::{EmbeddedStore, StoreOptions};
    let dir = tempfile::tempdir().unwrap();
    let now = chrono::Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap();
    let keys = Arc::new(PseudonymKeys::ephemeral(now).unwrap());
    let admin = RequestContext::request("", Principal::user("root", &["admin"]), "t".into());
    {
        let store = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
        let g = Governance::with_store(
            Arc::new(ManualClock::new(now)),
            keys.clone(),
            Arc::new(store.clone()),
            None,
        )
        .unwrap();
        g.set_policies(
            &admin,
            r#"@id("only-admins") permit (principal in Role::"admin", action, resource);"#,
        )
        .await
        .unwrap();
        g.set_classification(&admin, json!({"types": {"Camera": {"level": "core"}}}))
            .await
            .unwrap();
        store.close();
    }
    let store = EmbeddedStore::open(StoreOptions::new(dir.path())).unwrap();
    let g = Governance::with_store(Arc::new(ManualClock::new(now)), keys, Arc::new(store), None)
        .unwrap();
    assert_eq!(g.policies().version, 1);
    assert!(g.policies().policies.contains("only-admins"));
    assert_eq!(g.policy_versions().unwrap().len(), 1);
    assert_eq!(
        g.classification().of_type("Camera").level,
        citybrain_policy::Level::Restricted
    );
}

/// Policies decide on the request's context: the declared purpose, the client's
/// address and the tenant's mode (a "break-glass" rule for emergencies).
#[tokio::test]
async fn policies_see_purpose_source_and_mode() {
    let g = classified().await;
    let admin = RequestContext::request("", Principal::user("root", &["admin"]), "t".into());
    let text = r#"
        @id("admin") permit (principal in Role::"admin", action, resource);
        @id("research") permit (principal in Role::"analyst", action == Action::"read", resource is EntityType)
          when { context has purpose && context.purpose == "research" };
        @id("office") permit (principal in Role::"viewer", action == Action::"read", resource is EntityType)
          when { context has source && context.source.isInRange(ip("10.0.0.0/8")) };
        @id("break-glass") permit (principal in Role::"operator", action == Action::"read", resource is EntityType)
          when { context.mode == "emergency" };
    "#;
    g.set_policies(&admin, text).await.unwrap();
    let emergency = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let e2 = emergency.clone();
    g.set_mode_source(Arc::new(move |t: &str| {
        t.is_empty() && e2.load(std::sync::atomic::Ordering::Relaxed)
    }));
    let camera = citybrain_model::Entity {
        id: "urn:x:cam".into(),
        types: vec![Arc::from("https://smartdatamodels.org/Camera")],
        scope: None,
        created_at: chrono::DateTime::UNIX_EPOCH,
        modified_at: chrono::DateTime::UNIX_EPOCH,
        attrs: Vec::new(),
    };
    let sees = |rc: &RequestContext| !matches!(g.view(rc, &camera), View::Hidden);
    let user = |who: &str, role: &str| {
        RequestContext::request("", Principal::user(who, &[role]), "t".into())
    };
    // Purpose: declared or not.
    let mut ann = user("ann", "analyst");
    assert!(!sees(&ann));
    ann.purpose = Some("marketing".into());
    assert!(!sees(&ann));
    ann.purpose = Some("research".into());
    assert!(sees(&ann));
    // Source address: inside the office network or not, or unknown.
    let mut vic = user("vic", "viewer");
    assert!(!sees(&vic));
    vic.source = Some("10.1.2.3".parse().unwrap());
    assert!(sees(&vic));
    vic.source = Some("203.0.113.9".parse().unwrap());
    assert!(!sees(&vic));
    // Mode: the operator reads only while the tenant is in emergency mode, and the
    // cached decision follows the switch at once.
    let olga = user("olga", "operator");
    assert!(!sees(&olga));
    emergency.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(sees(&olga));
    emergency.store(false, std::sync::atomic::Ordering::Relaxed);
    assert!(!sees(&olga));
    // Another tenant is not in emergency.
    let mut other = olga.clone();
    other.tenant = "water".into();
    emergency.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(!sees(&other));
}
