//! What a change means for a subscription (triggers) and the notification it sends:
//! rendering, linked entities, deleted attributes and previous values (`showChanges`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use citybrain_model::render::{render_joined, Format, RenderOptions};
use citybrain_model::time::format_datetime;
use citybrain_model::{AttrKind, Attribute, Entity, JsonLdContext};
use citybrain_storage::{Change, ChangeKind};
use serde_json::{json, Map, Value};

use super::model::Compiled;

type Names<'a> = Vec<&'a str>;

/// Attribute names created, updated and deleted between two versions of an entity. An
/// attribute that lost one instance (one datasetId) counts as deleted *and* stays.
fn attr_diff<'a>(before: &'a Entity, after: &'a Entity) -> (Names<'a>, Names<'a>, Names<'a>) {
    let (mut created, mut updated, mut deleted) = (Vec::new(), Vec::new(), Vec::new());
    for (n, inst) in &after.attrs {
        match before.attr(n) {
            None => created.push(&**n),
            Some(b) => {
                let changed_or_added = inst.iter().any(|a| !b.contains(a));
                if changed_or_added {
                    updated.push(&**n);
                }
            }
        }
    }
    for (n, old) in &before.attrs {
        let remaining = after.attr(n);
        let lost = old
            .iter()
            .any(|o| remaining.is_none_or(|r| !r.iter().any(|a| a.dataset_id() == o.dataset_id())));
        if lost {
            deleted.push(&**n);
        }
    }
    (created, updated, deleted)
}

/// Why a change notifies a subscription, if it does.
pub(super) fn trigger(s: &Compiled, change: &Change) -> Option<&'static str> {
    let entity = change.entity()?;
    if !s.selects(entity, false) {
        return None;
    }
    let hit = |names: &[&str]| {
        !names.is_empty()
            && s.watched
                .as_ref()
                .is_none_or(|w| names.iter().any(|n| w.contains(*n)))
    };
    let t = &s.triggers;
    let reason = match change.kind {
        ChangeKind::Created => {
            let all: Vec<&str> = entity.attrs.iter().map(|(n, _)| &**n).collect();
            if t.entity_created && (s.watched.is_none() || hit(&all)) {
                "entityCreated"
            } else if t.attribute_created && hit(&all) {
                "attributeCreated"
            } else {
                return None;
            }
        }
        ChangeKind::Updated => {
            let (Some(before), Some(after)) = (&change.before, &change.after) else {
                return None;
            };
            let (created, updated, deleted) = attr_diff(before, after);
            let all: Vec<&str> = created
                .iter()
                .chain(&updated)
                .chain(&deleted)
                .copied()
                .collect();
            if t.attribute_created && hit(&created) {
                "attributeCreated"
            } else if t.attribute_updated && hit(&updated) {
                "attributeUpdated"
            } else if t.attribute_deleted && hit(&deleted) {
                "attributeDeleted"
            } else if t.entity_updated && hit(&all) {
                "entityUpdated"
            } else {
                return None;
            }
        }
        ChangeKind::Deleted => {
            // Deleting an entity deletes its attributes too.
            let all: Vec<&str> = entity.attrs.iter().map(|(n, _)| &**n).collect();
            return if t.entity_deleted {
                Some("entityDeleted")
            } else if t.attribute_deleted && hit(&all) {
                Some("attributeDeleted")
            } else {
                None
            };
        }
    };
    let after = change.after.as_ref()?;
    s.selects(after, true).then_some(reason)
}

/// The member that carries an attribute's previous content (`showChanges`).
fn previous_key(kind: AttrKind) -> &'static str {
    match kind {
        AttrKind::Property | AttrKind::GeoProperty => "previousValue",
        AttrKind::Relationship => "previousObject",
        AttrKind::LanguageProperty => "previousLanguageMap",
        AttrKind::JsonProperty => "previousJson",
        AttrKind::VocabProperty => "previousVocab",
        AttrKind::ListProperty => "previousValueList",
        AttrKind::ListRelationship => "previousObjectList",
    }
}

/// How a deleted attribute instance is notified.
#[derive(Clone, Copy)]
struct TombstoneStyle {
    show_changes: bool,
    sys_attrs: bool,
    /// keyValues: the attribute is just "urn:ngsi-ld:null".
    key_values: bool,
}

/// A deleted attribute instance as notified: its null content and, with showChanges,
/// what it was.
fn tombstone(
    old: &Attribute,
    ld: &JsonLdContext,
    style: TombstoneStyle,
    now: DateTime<Utc>,
) -> Value {
    // A LanguageProperty's null is `{"@none": null}`, whether the attribute or the
    // whole entity went.
    let null = if old.kind == AttrKind::LanguageProperty {
        json!({"@none": "urn:ngsi-ld:null"})
    } else {
        json!("urn:ngsi-ld:null")
    };
    let mut m = Map::new();
    m.insert("type".into(), json!(old.kind.type_name()));
    if let Some(d) = &old.dataset_id() {
        m.insert("datasetId".into(), json!(d));
    }
    m.insert(old.kind.content_key().into(), null);
    if style.show_changes {
        m.insert(previous_key(old.kind).into(), previous_content(old, ld));
    }
    if style.sys_attrs {
        m.insert("createdAt".into(), json!(format_datetime(&old.created_at)));
        m.insert(
            "modifiedAt".into(),
            json!(format_datetime(&old.modified_at)),
        );
        m.insert("deletedAt".into(), json!(format_datetime(&now)));
    }
    if style.key_values {
        return json!("urn:ngsi-ld:null");
    }
    Value::Object(m)
}

fn previous_content(old: &Attribute, ld: &JsonLdContext) -> Value {
    let opts = RenderOptions::default();
    let rendered = citybrain_model::render::render_attribute(old, ld, &opts);
    rendered
        .get(old.kind.content_key())
        .cloned()
        .unwrap_or(Value::Null)
}

/// Adds tombstones for deleted instances and previous values (showChanges) to a rendered
/// entity, comparing with what it was before.
fn add_changes(
    m: &mut Map<String, Value>,
    e: &Entity,
    before: &Entity,
    s: &Compiled,
    reason: &str,
    now: DateTime<Utc>,
) {
    let ld = &s.notify_ld;
    let style = TombstoneStyle {
        show_changes: s.show_changes,
        sys_attrs: s.sys_attrs,
        key_values: s.format == Format::KeyValues,
    };
    for (name, old) in &before.attrs {
        if !s.projection.keeps(name) {
            continue;
        }
        let key = ld.compact(name);
        let current = e.attr(name);
        let removed: Vec<&Attribute> = old
            .iter()
            .filter(|o| current.is_none_or(|c| !c.iter().any(|a| a.dataset_id() == o.dataset_id())))
            .collect();
        if !removed.is_empty()
            && (reason == "attributeDeleted" || s.show_changes)
            && style.key_values
        {
            // keyValues: instances go in the simplified `dataset` form, deleted ones as null.
            let opts = RenderOptions {
                format: Format::KeyValues,
                ..RenderOptions::default()
            };
            let mut d = Map::new();
            for a in current.into_iter().flatten() {
                let k = a.dataset_id().unwrap_or("@none").to_string();
                d.insert(k, citybrain_model::render::render_attribute(a, ld, &opts));
            }
            for o in &removed {
                d.insert(
                    o.dataset_id().unwrap_or("@none").to_string(),
                    json!("urn:ngsi-ld:null"),
                );
            }
            // One instance: its value; several: the `dataset` form.
            let v = match <[(String, Value); 1]>::try_from(d.into_iter().collect::<Vec<_>>()) {
                Ok([(_, one)]) => one,
                Err(all) => json!({ "dataset": Map::from_iter(all) }),
            };
            m.insert(key.clone(), v);
        } else if !removed.is_empty() && (reason == "attributeDeleted" || s.show_changes) {
            // Every instance gone (`deleteAll`): one tombstone for the attribute, as the
            // ETSI suite reads it (046_22_08); some left: one per deleted instance.
            let whole = current.is_none() && removed.len() > 1 && !m.contains_key(&key);
            let stones: Vec<Value> = if whole {
                let first = removed
                    .iter()
                    .find(|o| o.dataset_id().is_none())
                    .or(removed.first());
                first
                    .map(|o| {
                        let mut t = tombstone(o, ld, style, now);
                        if let Some(obj) = t.as_object_mut() {
                            obj.remove("datasetId");
                        }
                        t
                    })
                    .into_iter()
                    .collect()
            } else {
                removed
                    .iter()
                    .map(|o| tombstone(o, ld, style, now))
                    .collect()
            };
            let merged = match m.remove(&key) {
                None => stones,
                Some(Value::Array(mut v)) => {
                    v.extend(stones);
                    v
                }
                Some(one) => std::iter::once(one).chain(stones).collect(),
            };
            let v = citybrain_model::render::one_or_list(merged);
            m.insert(key.clone(), v);
        }
        if s.show_changes {
            if let (Some(cur), Some(Value::Object(attr))) = (current, m.get_mut(&key)) {
                if let (Some(o), Some(n)) = (old.first(), cur.first()) {
                    if o != n {
                        attr.insert(previous_key(o.kind).into(), previous_content(o, ld));
                    }
                }
            }
        }
    }
}

/// Builds a notification body. `change` gives what the entity was before, for
/// `showChanges` and for deletions; `lookup` finds linked entities (`join`).
pub(super) fn notification(
    s: &Compiled,
    entities: &[Arc<Entity>],
    change: Option<&Change>,
    reason: &str,
    now: DateTime<Utc>,
    lookup: &dyn Fn(&str) -> Option<Arc<Entity>>,
) -> Value {
    let ld_json = s.endpoint.accept == "application/ld+json";
    let ld = &s.notify_ld;
    let ctx_value = s.notify_context_value();
    let opts = RenderOptions {
        format: s.format,
        sys_attrs: s.sys_attrs,
        projection: s.projection.clone(),
        lang: None,
        dataset_ids: s.dataset_ids.clone(),
    };
    let keyvalues = s.format == Format::KeyValues;
    let roots: Vec<&Entity> = entities.iter().map(|e| e.as_ref()).collect();
    let mut data: Vec<Map<String, Value>> =
        render_joined(&roots, lookup, ld, &opts, s.join, s.join_level);
    if let Some(before) = change.and_then(|c| c.before.as_ref()) {
        if let (Some(first), Some(e)) = (data.first_mut(), entities.first()) {
            add_changes(first, e, before, s, reason, now);
        }
    }
    if let Some(d) = change
        .filter(|c| c.kind == ChangeKind::Deleted)
        .and_then(|c| c.before.as_ref())
    {
        let mut m = Map::new();
        m.insert("id".into(), json!(d.id));
        let types: Vec<String> = d.types.iter().map(|t| ld.compact(t)).collect();
        m.insert(
            "type".into(),
            if types.len() == 1 {
                json!(types[0])
            } else {
                json!(types)
            },
        );
        if s.show_changes || reason == "attributeDeleted" {
            let style = TombstoneStyle {
                show_changes: s.show_changes,
                sys_attrs: s.sys_attrs,
                key_values: keyvalues,
            };
            for (name, old) in &d.attrs {
                let watched = s.watched.as_ref().is_none_or(|w| w.contains(&**name));
                if let (Some(old), true, true) = (old.first(), s.projection.keeps(name), watched) {
                    m.insert(ld.compact(name), tombstone(old, ld, style, now));
                }
            }
        }
        if s.sys_attrs {
            m.insert("createdAt".into(), json!(format_datetime(&d.created_at)));
            m.insert("modifiedAt".into(), json!(format_datetime(&d.modified_at)));
        }
        m.insert("deletedAt".into(), json!(format_datetime(&now)));
        data.push(m);
    }
    let data: Vec<Value> = data
        .into_iter()
        .map(|mut m| {
            if ld_json {
                m.insert("@context".into(), ctx_value.clone());
            }
            Value::Object(m)
        })
        .collect();
    let mut n = json!({
        "id": format!("urn:ngsi-ld:Notification:{}", uuid::Uuid::new_v4()),
        "type": "Notification",
        "subscriptionId": s.id,
        "notifiedAt": format_datetime(&now),
        "data": data,
        "triggerReason": reason,
    });
    if ld_json {
        if let Some(o) = n.as_object_mut() {
            o.insert("@context".into(), ctx_value);
        }
    }
    n
}
