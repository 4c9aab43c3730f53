//! Pure entity operations with NGSI-LD semantics. The broker runs them inside the store's
//! read-modify-write, so they never see a concurrent change.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::context::JsonLdContext;
use crate::entity::{parse_attr_value, Attribute, Entity, Instances, ParseMode, ParsedAttr};
use crate::error::{ModelError, Result};

/// Which attributes an update changed, and which it did not (with the reason).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateOutcome {
    /// Expanded names (shared with the entity: no copy per update).
    pub updated: Vec<Arc<str>>,
    pub not_updated: Vec<(String, String)>,
}

impl UpdateOutcome {
    pub fn changed(&self) -> bool {
        !self.updated.is_empty()
    }
}

fn replace_instance(old: &Attribute, mut new: Attribute, now: DateTime<Utc>) -> Attribute {
    new.created_at = old.created_at;
    new.modified_at = now;
    new
}

fn upsert_instance(list: &mut Instances, new: Attribute, now: DateTime<Utc>) {
    match list.iter_mut().find(|a| a.dataset_id() == new.dataset_id()) {
        Some(slot) => *slot = replace_instance(slot, new, now),
        None => list.push(new),
    }
}

/// Append attributes (`POST /entities/{id}/attrs`): new ones are added, existing ones
/// (same name and datasetId) are replaced unless `no_overwrite`. A tombstone (null
/// content) deletes the instance.
pub fn append(
    e: &mut Entity,
    attrs: Vec<(Arc<str>, Instances)>,
    no_overwrite: bool,
    now: DateTime<Utc>,
) -> UpdateOutcome {
    apply_instances(e, attrs, now, |_, exists_instance| {
        if exists_instance && no_overwrite {
            Err("attribute exists and noOverwrite was requested")
        } else {
            Ok(())
        }
    })
}

/// Update attributes (`PATCH /entities/{id}/attrs`): only attributes that exist are
/// touched (an instance with a new datasetId is added to an existing attribute); a
/// tombstone (null content) deletes the instance.
pub fn update(
    e: &mut Entity,
    attrs: Vec<(Arc<str>, Instances)>,
    now: DateTime<Utc>,
) -> UpdateOutcome {
    apply_instances(e, attrs, now, |exists_attr, _| {
        if exists_attr {
            Ok(())
        } else {
            Err("attribute does not exist")
        }
    })
}

/// Applies instances one by one; `allow(attribute exists, instance exists)` decides.
fn apply_instances(
    e: &mut Entity,
    attrs: Vec<(Arc<str>, Instances)>,
    now: DateTime<Utc>,
    allow: impl Fn(bool, bool) -> Result<(), &'static str>,
) -> UpdateOutcome {
    let mut out = UpdateOutcome::default();
    for (name, instances) in attrs {
        let mut any = false;
        for inst in instances {
            let exists_attr = e.attr(&name).is_some();
            let exists_instance = e
                .attr(&name)
                .is_some_and(|l| l.iter().any(|a| a.dataset_id() == inst.dataset_id()));
            if let Err(reason) = allow(exists_attr, exists_instance) {
                out.not_updated.push((name.to_string(), reason.into()));
                continue;
            }
            if inst.value.is_null() {
                if delete_attribute(e, &name, inst.dataset_id(), false, now) {
                    any = true;
                } else {
                    out.not_updated.push((
                        name.to_string(),
                        "attribute (with this datasetId) does not exist".into(),
                    ));
                }
                continue;
            }
            match e.attr_mut(&name) {
                Some(list) => upsert_instance(list, inst, now),
                None => e.attrs.push((name.clone(), smallvec::smallvec![inst])),
            }
            any = true;
        }
        if any {
            out.updated.push(name.clone());
        }
    }
    if out.changed() {
        e.modified_at = now;
    }
    out
}

fn merge_instance(old: &Attribute, new: Attribute, now: DateTime<Utc>) -> Attribute {
    let mut m = old.clone();
    m.kind = new.kind;
    m.value = new.value.clone();
    m.observed_at = new.observed_at.or(old.observed_at);
    m.unit_code = new.unit_code.clone().or_else(|| old.unit_code.clone());
    m.set_object_type(new.object_type().or(old.object_type()).cloned());
    for (sname, sub) in new.sub().iter().cloned() {
        let pos = m.sub().iter().position(|(n, _)| *n == sname);
        match (pos, sub.value.is_null()) {
            (Some(i), true) => {
                m.sub_mut().remove(i);
            }
            (Some(i), false) => {
                let old_sub = m.sub()[i].1.clone();
                m.sub_mut()[i].1 = merge_instance(&old_sub, sub, now);
            }
            (None, true) => {}
            (None, false) => m.sub_mut().push((sname, sub)),
        }
    }
    m.tidy_extras();
    m.modified_at = now;
    m
}

/// Merge-patch (`PATCH /entities/{id}`): attributes are merged member by member, `null`
/// deletes an attribute (or a sub-attribute), missing attributes are added.
pub fn merge(e: &mut Entity, attrs: Vec<ParsedAttr>, now: DateTime<Utc>) -> UpdateOutcome {
    let mut out = UpdateOutcome::default();
    for (name, patch) in attrs {
        match patch {
            None => {
                if delete_attribute(e, &name, None, true, now) {
                    out.updated.push(name.clone());
                } else {
                    out.not_updated
                        .push((name.to_string(), "attribute does not exist".into()));
                }
            }
            Some(instances) => {
                for inst in instances {
                    if inst.value.is_null() {
                        let ds = inst.dataset_id().map(str::to_string);
                        delete_attribute(e, &name, ds.as_deref(), false, now);
                        continue;
                    }
                    match e.attr_mut(&name) {
                        Some(list) => {
                            match list
                                .iter_mut()
                                .find(|a| a.dataset_id() == inst.dataset_id())
                            {
                                Some(slot) => *slot = merge_instance(slot, inst, now),
                                None => list.push(inst),
                            }
                        }
                        None => e.attrs.push((name.clone(), smallvec::smallvec![inst])),
                    }
                }
                out.updated.push(name.clone());
            }
        }
    }
    if out.changed() {
        e.modified_at = now;
    }
    out
}

/// Partial attribute update (`PATCH /entities/{id}/attrs/{attrId}`): the fragment's members
/// replace the attribute's; members it does not give are kept.
pub fn patch_attribute(
    e: &mut Entity,
    name: &str,
    iri: &str,
    fragment: &Map<String, Value>,
    ctx: &JsonLdContext,
    now: DateTime<Utc>,
) -> Result<()> {
    let dataset_id = fragment
        .get("datasetId")
        .and_then(Value::as_str)
        .map(str::to_string);
    let existing = e
        .attr(iri)
        .and_then(|l| l.iter().find(|a| a.dataset_id() == dataset_id.as_deref()))
        .cloned()
        .ok_or_else(|| {
            ModelError::not_found(format!("attribute '{name}' not found in entity '{}'", e.id))
        })?;
    if let Some(Value::String(t)) = fragment.get("type") {
        if ctx.expand(t) != ctx.expand(existing.kind.type_name()) {
            return Err(ModelError::bad_data(format!(
                "attribute '{name}' is a {}; a partial update cannot change it to {t}",
                existing.kind.type_name()
            )));
        }
    }
    let mut frag = fragment.clone();
    let has_content = [
        "value",
        "object",
        "languageMap",
        "json",
        "vocab",
        "valueList",
        "objectList",
    ]
    .iter()
    .any(|k| frag.contains_key(*k));
    if !has_content {
        frag.insert(
            existing.kind.content_key().into(),
            existing.value.to_value(),
        );
    }
    if !frag.contains_key("type") && !has_content {
        frag.insert(
            "type".into(),
            Value::String(existing.kind.type_name().into()),
        );
    }
    let parsed = parse_attr_value(
        name,
        iri,
        &Value::Object(frag),
        ctx,
        now,
        ParseMode {
            nulls_delete: true,
            temporal: false,
        },
    )?;
    let Some(mut instances) = parsed else {
        delete_attribute(e, iri, dataset_id.as_deref(), false, now);
        return Ok(());
    };
    let new = instances
        .pop()
        .ok_or_else(|| ModelError::bad_data(format!("attribute '{name}' fragment is empty")))?;
    if new.value.is_null() {
        delete_attribute(e, iri, dataset_id.as_deref(), false, now);
        return Ok(());
    }
    if let Some(slot) = e.attr_mut(iri).and_then(|l| {
        l.iter_mut()
            .find(|a| a.dataset_id() == dataset_id.as_deref())
    }) {
        *slot = merge_instance(slot, new, now);
    }
    e.modified_at = now;
    Ok(())
}

/// Deletes an attribute: the default instance, the instance with `dataset_id`, or all.
pub fn delete_attribute(
    e: &mut Entity,
    name: &str,
    dataset_id: Option<&str>,
    all: bool,
    now: DateTime<Utc>,
) -> bool {
    let Some(pos) = e.attrs.iter().position(|(n, _)| &**n == name) else {
        return false;
    };
    let removed = if all {
        e.attrs.remove(pos);
        true
    } else {
        let list = &mut e.attrs[pos].1;
        let before = list.len();
        list.retain(|a| a.dataset_id() != dataset_id);
        let removed = list.len() != before;
        if list.is_empty() {
            e.attrs.remove(pos);
        }
        removed
    };
    if removed {
        e.modified_at = now;
    }
    removed
}

/// Replace an entity (`PUT /entities/{id}`): everything but `id` and `createdAt` is replaced.
pub fn replace(old: &Entity, mut new: Entity, now: DateTime<Utc>) -> Entity {
    new.id = old.id.clone();
    new.created_at = old.created_at;
    new.modified_at = now;
    new
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::DEFAULT_VOCAB;
    use crate::entity::{parse_attributes, parse_entity};
    use serde_json::json;

    fn t(s: &str) -> DateTime<Utc> {
        crate::time::parse_datetime(s).unwrap()
    }

    fn base() -> Entity {
        let body = json!({"id": "urn:a:1", "type": "T",
            "p": {"type": "Property", "value": 1, "unitCode": "C", "s1": {"type": "Property", "value": "x"}},
            "m": [{"type": "Property", "value": 1}, {"type": "Property", "value": 2, "datasetId": "urn:ds:2"}]});
        parse_entity(
            body.as_object().unwrap(),
            &JsonLdContext::core(),
            t("2024-01-01T00:00:00Z"),
        )
        .unwrap()
    }

    fn attrs(v: Value, nulls: bool) -> Vec<ParsedAttr> {
        parse_attributes(
            v.as_object().unwrap(),
            &JsonLdContext::core(),
            t("2024-02-01T00:00:00Z"),
            ParseMode {
                nulls_delete: nulls,
                temporal: false,
            },
        )
        .unwrap()
    }

    fn plain(v: Value) -> Vec<(Arc<str>, Instances)> {
        attrs(v, false)
            .into_iter()
            .map(|(n, a)| (n, a.unwrap()))
            .collect()
    }

    fn n(s: &str) -> String {
        format!("{DEFAULT_VOCAB}{s}")
    }

    #[test]
    fn append_respects_no_overwrite() {
        let now = t("2024-02-01T00:00:00Z");
        let mut e = base();
        let out = append(&mut e, plain(json!({"p": 5, "qq": 6})), true, now);
        assert_eq!(out.updated, vec![Arc::from(n("qq"))]);
        assert_eq!(out.not_updated.len(), 1);
        assert_eq!(
            e.default_instance(&n("p")).unwrap().value.to_value(),
            json!(1)
        );
        let out = append(&mut e, plain(json!({"p": 5})), false, now);
        assert_eq!(out.updated, vec![Arc::from(n("p"))]);
        let p = e.default_instance(&n("p")).unwrap();
        assert_eq!(p.value.to_value(), json!(5));
        assert_eq!(p.created_at, t("2024-01-01T00:00:00Z"));
        assert_eq!(e.modified_at, now);
    }

    #[test]
    fn update_only_touches_existing() {
        let mut e = base();
        let out = update(
            &mut e,
            plain(
                json!({"p": 7, "zz": 1, "m": {"type": "Property", "value": 9, "datasetId": "urn:ds:2"}}),
            ),
            t("2024-02-01T00:00:00Z"),
        );
        assert_eq!(out.updated, vec![Arc::from(n("p")), Arc::from(n("m"))]);
        assert_eq!(
            out.not_updated,
            vec![(n("zz"), "attribute does not exist".to_string())]
        );
        assert!(e.attr(&n("zz")).is_none());
        assert_eq!(e.attr(&n("m")).unwrap()[1].value.to_value(), json!(9));
    }

    #[test]
    fn merge_keeps_unmentioned_members_and_deletes_nulls() {
        let mut e = base();
        let out = merge(
            &mut e,
            attrs(
                json!({"p": {"value": 2, "s1": null, "s2": 3}, "m": null, "new": 1}),
                true,
            ),
            t("2024-02-01T00:00:00Z"),
        );
        assert_eq!(out.updated.len(), 3);
        let p = e.default_instance(&n("p")).unwrap();
        assert_eq!(p.value.to_value(), json!(2));
        assert_eq!(p.unit_code.as_deref(), Some("C"), "unitCode kept");
        assert!(
            p.sub_attr(&n("s1")).is_none(),
            "null deletes a sub-attribute"
        );
        assert!(p.sub_attr(&n("s2")).is_some());
        assert!(e.attr(&n("m")).is_none());
        assert!(e.attr(&n("new")).is_some());
    }

    #[test]
    fn delete_by_dataset_id_and_all() {
        let now = t("2024-02-01T00:00:00Z");
        let mut e = base();
        assert!(delete_attribute(
            &mut e,
            &n("m"),
            Some("urn:ds:2"),
            false,
            now
        ));
        assert_eq!(e.attr(&n("m")).unwrap().len(), 1);
        assert!(!delete_attribute(
            &mut e,
            &n("m"),
            Some("urn:ds:9"),
            false,
            now
        ));
        assert!(delete_attribute(&mut e, &n("m"), None, false, now));
        assert!(e.attr(&n("m")).is_none());
        assert!(!delete_attribute(&mut e, &n("nope"), None, true, now));
    }

    #[test]
    fn patch_attribute_keeps_value_when_only_metadata_changes() {
        let now = t("2024-02-01T00:00:00Z");
        let mut e = base();
        let frag = json!({"unitCode": "F"});
        patch_attribute(
            &mut e,
            "p",
            &n("p"),
            frag.as_object().unwrap(),
            &JsonLdContext::core(),
            now,
        )
        .unwrap();
        let p = e.default_instance(&n("p")).unwrap();
        assert_eq!(
            (p.value.to_value(), p.unit_code.as_deref()),
            (json!(1), Some("F"))
        );
        let err = patch_attribute(
            &mut e,
            "zz",
            &n("zz"),
            frag.as_object().unwrap(),
            &JsonLdContext::core(),
            now,
        )
        .unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::ResourceNotFound);
    }
}
