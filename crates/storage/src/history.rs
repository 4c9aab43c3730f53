//! Entity changes as history: which attribute instances a change records, and the
//! conversion between NGSI-LD attribute instances and time-series points.
//!
//! An instance is recorded when it is new or its `modifiedAt`, value, `observedAt` or
//! unit changed. Its point time is `observedAt`, or the arrival time (`modifiedAt`)
//! when absent. Plain numeric Properties become compressed numbers; every other
//! instance (text, booleans, JSON, geometry, relationships, language maps, instances
//! with sub-attributes) is stored whole, as a document, so nothing is lost.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use citybrain_model::time::from_micros;
use citybrain_model::{AttrKind, AttrValue, Attribute, Entity};
use citybrain_tsdb::{HistOp, Point, SeriesKey, Val};

/// Milliseconds since the epoch.
pub fn millis(t: &DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Microseconds since the epoch.
pub fn micros(t: &DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// The point recording one attribute instance.
pub fn point_of(a: &Attribute) -> Point {
    let t = a.observed_at.as_ref().unwrap_or(&a.modified_at);
    let plain = a.kind == AttrKind::Property && a.sub().is_empty() && a.object_type().is_none();
    let numeric = match (&a.value, plain) {
        (AttrValue::Int(i), true) => Some(Val::I(*i)),
        (AttrValue::Float(f), true) => Some(Val::F(*f)),
        _ => None,
    };
    let (unit, v) = match numeric {
        Some(v) => (a.unit_code.clone(), v),
        None => {
            let mut doc = a.clone();
            doc.observed_at = None;
            doc.set_dataset_id(None);
            doc.created_at = DateTime::<Utc>::UNIX_EPOCH;
            doc.modified_at = DateTime::<Utc>::UNIX_EPOCH;
            let text = serde_json::to_string(&doc).unwrap_or_else(|_| "null".into());
            (None, Val::D(Arc::from(text)))
        }
    };
    Point {
        t: millis(t),
        rec: micros(&a.modified_at),
        observed: a.observed_at.is_some(),
        unit,
        v,
    }
}

/// The attribute instance a point records (`createdAt`/`modifiedAt` = recording time).
pub fn attribute_of(p: &Point, dataset: Option<&str>) -> Attribute {
    let rec = from_micros(p.rec);
    let mut a = match &p.v {
        Val::F(f) => {
            let mut a = Attribute::property(serde_json::Value::Null, rec);
            a.value = AttrValue::Float(*f);
            a
        }
        Val::I(i) => {
            let mut a = Attribute::property(serde_json::Value::Null, rec);
            a.value = AttrValue::Int(*i);
            a
        }
        Val::D(d) => serde_json::from_str::<Attribute>(d)
            .unwrap_or_else(|_| Attribute::property(serde_json::Value::Null, rec)),
    };
    if p.unit.is_some() {
        a.unit_code = p.unit.clone();
    }
    a.observed_at = p.observed.then(|| from_micros(p.t.saturating_mul(1000)));
    a.created_at = rec;
    a.modified_at = rec;
    a.set_dataset_id(dataset.map(Into::into));
    a
}

/// The instance identifier of a point (unique within its attribute).
pub fn instance_id(p: &Point) -> String {
    format!("urn:ngsi-ld:Instance:{}", p.rec)
}

/// Parses what [`instance_id`] made.
pub fn parse_instance_id(id: &str) -> Option<i64> {
    id.strip_prefix("urn:ngsi-ld:Instance:")?.parse().ok()
}

/// The content NGSI-LD uses for "deleted" (`urn:ngsi-ld:null`).
pub const NULL: &str = "urn:ngsi-ld:null";

/// True for a point that records a deletion.
pub fn is_deletion(p: &Point) -> bool {
    !p.observed && matches!(&p.v, Val::D(d) if d.contains(NULL) && deletion_of(d))
}

fn deletion_of(doc: &str) -> bool {
    serde_json::from_str::<Attribute>(doc).is_ok_and(|a| a.value == null_content(a.kind))
}

/// The NGSI-LD null of a kind (a LanguageProperty's is `{"@none": "urn:ngsi-ld:null"}`).
fn null_content(kind: AttrKind) -> AttrValue {
    if kind == AttrKind::LanguageProperty {
        AttrValue::from_value(serde_json::json!({ "@none": NULL }))
    } else {
        AttrValue::Str(NULL.into())
    }
}

/// A deletion instance of an attribute of `kind`, at `at_us`.
fn deletion_point(kind: AttrKind, at_us: i64) -> Point {
    let mut a = Attribute::property(serde_json::Value::Null, DateTime::<Utc>::UNIX_EPOCH);
    a.kind = kind;
    a.value = null_content(kind);
    let text = serde_json::to_string(&a).unwrap_or_else(|_| "null".into());
    Point {
        t: at_us.div_euclid(1000),
        rec: at_us,
        observed: false,
        unit: None,
        v: Val::D(Arc::from(text)),
    }
}

fn deletion(
    tenant: &Arc<str>,
    entity: &Arc<str>,
    name: &Arc<str>,
    a: &Attribute,
    at_us: i64,
) -> HistOp {
    HistOp::Insert {
        key: SeriesKey {
            tenant: tenant.clone(),
            entity: entity.clone(),
            attr: name.clone(),
            dataset: a.dataset_id().map(Arc::from),
        },
        points: vec![deletion_point(a.kind, at_us)],
    }
}

/// The history of deleting an entity: one deletion instance per attribute instance.
pub fn derive_delete(tenant: &Arc<str>, before: &Entity, at_us: i64) -> Vec<HistOp> {
    let entity: Arc<str> = Arc::from(before.id.as_str());
    before
        .attrs
        .iter()
        .flat_map(|(name, instances)| {
            instances
                .iter()
                .map(|a| deletion(tenant, &entity, name, a, at_us))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Whether `b` is a new instance of the attribute `a` was. An observation is
/// identified by its `observedAt`: the same value, unit and `observedAt` sent again (an
/// at-least-once sender retrying, an edge forwarder resending after a lost answer) is
/// the same observation and records nothing. Without `observedAt`, every write is an
/// instance at its modification time.
fn changed(a: &Attribute, b: &Attribute) -> bool {
    let same_observation = a.observed_at.is_some() && a.observed_at == b.observed_at;
    (!same_observation && a.modified_at != b.modified_at)
        || a.value != b.value
        || a.observed_at != b.observed_at
        || a.unit_code != b.unit_code
}

/// The entity's types and scope for the history, when a change creates the entity or
/// alters them.
pub fn meta_op(tenant: &Arc<str>, before: Option<&Entity>, after: &Entity) -> Option<HistOp> {
    let meta_changed = before.is_none_or(|b| b.types != after.types || b.scope != after.scope);
    meta_changed.then(|| HistOp::EntityMeta {
        tenant: tenant.clone(),
        entity: Arc::from(after.id.as_str()),
        types: after.types.clone(),
        scope: after
            .scope
            .as_ref()
            .and_then(|s| serde_json::to_string(s).ok())
            .map(Arc::from),
    })
}

/// The history a change of one entity records.
pub fn derive(tenant: &Arc<str>, before: Option<&Entity>, after: &Entity) -> Vec<HistOp> {
    let mut ops: Vec<HistOp> = meta_op(tenant, before, after).into_iter().collect();
    let entity: Arc<str> = Arc::from(after.id.as_str());
    for (name, instances) in &after.attrs {
        let old = before.and_then(|b| b.attr(name));
        for a in instances {
            let prev = old.and_then(|o| o.iter().find(|x| x.dataset_id() == a.dataset_id()));
            if prev.is_some_and(|p| !changed(p, a)) {
                continue;
            }
            ops.push(HistOp::Insert {
                key: SeriesKey {
                    tenant: tenant.clone(),
                    entity: entity.clone(),
                    attr: name.clone(),
                    dataset: a.dataset_id().map(Arc::from),
                },
                points: vec![point_of(a)],
            });
        }
    }
    // Instances that disappeared were deleted at the entity's modification time.
    if let Some(b) = before {
        let at = micros(&after.modified_at);
        for (name, instances) in &b.attrs {
            let now = after.attr(name);
            for a in instances {
                let kept = now.is_some_and(|n| n.iter().any(|x| x.dataset_id() == a.dataset_id()));
                if !kept {
                    ops.push(deletion(tenant, &entity, name, a, at));
                }
            }
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use citybrain_model::time::{Clock as _, SystemClock};
    use serde_json::json;

    #[test]
    fn numbers_are_points_and_the_rest_documents() {
        let now = SystemClock.now_precise();
        let mut a = Attribute::property(json!(21.5), now);
        a.unit_code = Some(Arc::from("CEL"));
        a.observed_at = Some(now - chrono::Duration::seconds(5));
        let p = point_of(&a);
        assert_eq!(p.v, Val::F(21.5));
        assert!(p.observed);
        let back = attribute_of(&p, Some("urn:ds"));
        assert_eq!(back.value, a.value);
        assert_eq!(back.unit_code.as_deref(), Some("CEL"));
        assert_eq!(back.dataset_id(), Some("urn:ds"));
        assert_eq!(
            millis(back.observed_at.as_ref().unwrap()),
            millis(a.observed_at.as_ref().unwrap())
        );

        let mut r = Attribute::property(json!("urn:x"), now);
        r.kind = AttrKind::Relationship;
        let p = point_of(&r);
        assert!(matches!(p.v, Val::D(_)));
        assert!(!p.observed);
        let back = attribute_of(&p, None);
        assert_eq!(back.kind, AttrKind::Relationship);
        assert_eq!(back.value, r.value);
        assert_eq!(parse_instance_id(&instance_id(&p)), Some(p.rec));
    }

    #[test]
    fn a_resent_observation_records_nothing() {
        let t0 = SystemClock.now_precise();
        let tenant: Arc<str> = Arc::from("");
        let entity = |v: f64, observed: Option<DateTime<Utc>>, at: DateTime<Utc>| {
            let mut a = Attribute::property(json!(v), at);
            a.observed_at = observed;
            Entity {
                id: "urn:x:1".into(),
                types: vec![Arc::from("T")],
                scope: None,
                created_at: t0,
                modified_at: at,
                attrs: vec![(Arc::from("v"), citybrain_model::instances![a])],
            }
        };
        let obs = Some(t0 - chrono::Duration::seconds(60));
        let later = t0 + chrono::Duration::seconds(1);
        let first = entity(11.0, obs, t0);
        // The same observation sent again later: nothing new.
        assert!(derive(&tenant, Some(&first), &entity(11.0, obs, later)).is_empty());
        // A new observation time, or a new value, is an instance.
        let newer = Some(t0);
        assert_eq!(
            derive(&tenant, Some(&first), &entity(11.0, newer, later)).len(),
            1
        );
        assert_eq!(
            derive(&tenant, Some(&first), &entity(12.0, obs, later)).len(),
            1
        );
        // Without observedAt every write is an instance.
        let plain = entity(5.0, None, t0);
        assert_eq!(
            derive(&tenant, Some(&plain), &entity(5.0, None, later)).len(),
            1
        );
    }
}
