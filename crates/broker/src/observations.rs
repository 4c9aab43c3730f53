//! Bulk observations: the write path of the ingestion pipeline. Every record becomes
//! history (one point per mapped attribute, at its `observedAt`), and each entity's
//! current state is updated once per batch with the records applied in order, instead
//! of one read-modify-write (and one full entity in the log) per record. Subscriptions
//! therefore see one change per entity per batch, carrying its latest values; the
//! history keeps every observation. Both writes go through the same log and group
//! commit; the call answers when both are durable.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use citybrain_model::intern::same;
use citybrain_model::ops;
use citybrain_model::Entity;
use citybrain_storage::history::{meta_op, point_of};
use citybrain_storage::tsdb::{HistOp, Point, SeriesKey};
use citybrain_storage::{Commit, ModifyOptions};

use crate::error::{BrokerError, Result};
use crate::request::RequestContext;
use crate::Broker;

/// An attribute series of one entity: (attribute, datasetId).
type SeriesId = (Arc<str>, Option<Arc<str>>);

struct Group {
    id: String,
    /// Item indexes, in order.
    idx: Vec<usize>,
    /// The fragments, until the write consumes them.
    entities: Option<Vec<Entity>>,
    /// Every fragment's points, per attribute series.
    series: Vec<(SeriesId, Vec<Point>)>,
}

/// A batch of observations grouped by entity, with every history point computed: pure
/// CPU work, so a caller may build it on another thread than the one that writes it
/// (file import does it on its decoder thread).
pub struct ObservationBatch {
    groups: Vec<Group>,
    out: Vec<Result<bool>>,
}

impl ObservationBatch {
    /// Groups `items` (in arrival order) by entity id and derives their points.
    /// Consecutive fragments of one entity are merged here (append semantics, in
    /// order), so the writer applies one fragment per entity, and the fragments'
    /// memory is released on the thread that made it. A fragment with a tombstone
    /// (null value: delete) is kept apart: deleting inside a merged fragment would lose
    /// the deletion.
    pub fn new(items: Vec<Entity>, now: DateTime<Utc>) -> ObservationBatch {
        let mut out: Vec<Result<bool>> = Vec::with_capacity(items.len());
        let mut groups: Vec<Group> = Vec::new();
        let mut by_id: HashMap<String, usize, foldhash::fast::RandomState> = HashMap::default();
        for (i, e) in items.into_iter().enumerate() {
            if let Err(err) = crate::entities::check_id(&e.id) {
                out.push(Err(err));
                continue;
            }
            let g = match by_id.get(e.id.as_str()) {
                Some(g) => *g,
                None => {
                    groups.push(Group {
                        id: e.id.clone(),
                        idx: Vec::new(),
                        entities: Some(Vec::new()),
                        series: Vec::new(),
                    });
                    by_id.insert(e.id.clone(), groups.len() - 1);
                    groups.len() - 1
                }
            };
            let grp = &mut groups[g];
            grp.idx.push(i);
            let prev_ent = grp.entities.as_ref().and_then(|l| l.last());
            for (name, instances) in &e.attrs {
                for a in instances {
                    let ds = a.dataset_id();
                    let found = grp
                        .series
                        .iter_mut()
                        .find(|((n, d), _)| same(n, name) && d.as_deref() == ds);
                    match found {
                        Some((_, pts)) => {
                            let prev_attr = prev_ent
                                .and_then(|pe| pe.attrs.iter().find(|(n, _)| same(n, name)))
                                .and_then(|(_, list)| list.iter().find(|b| b.dataset_id() == ds));
                            let p = point_reusing(a, prev_attr.zip(pts.last()));
                            pts.push(p);
                        }
                        None => grp
                            .series
                            .push(((name.clone(), ds.map(Arc::from)), vec![point_of(a)])),
                    }
                }
            }
            if let Some(list) = grp.entities.as_mut() {
                match list.last_mut() {
                    Some(last) if !has_tombstone(last) && !has_tombstone(&e) => {
                        merge_fragment(last, e, now)
                    }
                    _ => list.push(e),
                }
            }
            out.push(Ok(false));
        }
        ObservationBatch { groups, out }
    }

    pub fn len(&self) -> usize {
        self.out.len()
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }
}

/// `old` with fragment `n` merged (as `merge_fragment` on a clone of `old`), without
/// copying the instances the fragment replaces: a telemetry record replaces most of
/// an entity's attributes.
fn merged_copy(old: &Entity, mut n: Entity, now: DateTime<Utc>) -> Entity {
    if has_tombstone(&n) {
        let mut e = old.clone();
        merge_fragment(&mut e, n, now);
        return e;
    }
    let mut replaced = false;
    // Exactly the room needed: an entry holds its instance inline (over 100 bytes).
    let added = n
        .attrs
        .iter()
        .filter(|(x, _)| old.attr_position(x, 0).is_none())
        .count();
    let mut attrs = Vec::with_capacity(old.attrs.len() + added);
    for (name, list) in &old.attrs {
        let from = n.attrs.iter().position(|(x, _)| same(x, name));
        let mut out = citybrain_model::Instances::with_capacity(list.len());
        for a in list {
            let hit = from.and_then(|f| {
                let l = &mut n.attrs[f].1;
                let i = l.iter().position(|b| b.dataset_id() == a.dataset_id())?;
                Some(l.remove(i))
            });
            match hit {
                Some(mut inst) => {
                    inst.created_at = a.created_at;
                    inst.modified_at = now;
                    replaced = true;
                    out.push(inst);
                }
                None => out.push(a.clone()),
            }
        }
        attrs.push((name.clone(), out));
    }
    let mut e = Entity {
        id: old.id.clone(),
        types: old.types.clone(),
        scope: old.scope.clone(),
        created_at: old.created_at,
        modified_at: if replaced { now } else { old.modified_at },
        attrs,
    };
    // What is left is new: other datasets, other attributes, other types.
    n.attrs.retain(|(_, l)| !l.is_empty());
    merge_fragment(&mut e, n, now);
    e
}

/// Whether a fragment deletes an attribute instance (null content).
fn has_tombstone(e: &Entity) -> bool {
    e.attrs
        .iter()
        .any(|(_, list)| list.iter().any(|a| a.value.is_null()))
}

/// Applies fragment `n` after `e` with append semantics (`ops::append`: types added,
/// instances appended or replaced, keeping their `createdAt`). Without a tombstone
/// this is done in place, with no outcome to report: the bulk path runs it once per
/// record.
fn merge_fragment(e: &mut Entity, n: Entity, now: DateTime<Utc>) {
    for t in &n.types {
        if !e.types.contains(t) {
            e.types.push(t.clone());
        }
    }
    if has_tombstone(&n) {
        ops::append(e, n.attrs, false, now);
        return;
    }
    let mut any = false;
    for (name, instances) in n.attrs {
        for mut inst in instances {
            any = true;
            match e.attrs.iter_mut().find(|(x, _)| same(x, &name)) {
                Some((_, list)) => match list
                    .iter_mut()
                    .find(|a| a.dataset_id() == inst.dataset_id())
                {
                    Some(slot) => {
                        inst.created_at = slot.created_at;
                        inst.modified_at = now;
                        *slot = inst;
                    }
                    None => list.push(inst),
                },
                None => e
                    .attrs
                    .push((name.clone(), citybrain_model::instances![inst])),
            }
        }
    }
    if any {
        e.modified_at = now;
    }
}

/// The point of `a`. When the previous record of the same series had the same content
/// (a station's fixed position sent with every reading), its stored document is
/// shared instead of serialized again: the point differs only in its times.
fn point_reusing(
    a: &citybrain_model::Attribute,
    prev: Option<(&citybrain_model::Attribute, &Point)>,
) -> Point {
    if let Some((b, p)) = prev {
        let same = a.kind == b.kind
            && a.value == b.value
            && a.unit_code == b.unit_code
            && a.object_type() == b.object_type()
            && a.sub() == b.sub();
        if same && matches!(p.v, citybrain_storage::tsdb::Val::D(_)) {
            let fresh = point_of_times(a);
            return Point {
                v: p.v.clone(),
                unit: p.unit.clone(),
                ..fresh
            };
        }
    }
    point_of(a)
}

/// The times of `a`'s point (as `point_of` sets them), with no value.
fn point_of_times(a: &citybrain_model::Attribute) -> Point {
    let t = a.observed_at.as_ref().unwrap_or(&a.modified_at);
    Point {
        t: citybrain_storage::history::millis(t),
        rec: citybrain_storage::history::micros(&a.modified_at),
        observed: a.observed_at.is_some(),
        unit: None,
        v: citybrain_storage::tsdb::Val::I(0),
    }
}

impl Broker {
    /// Upserts a batch of observations (entity fragments, in arrival order): appends
    /// their attributes to existing entities (creating new ones), records every
    /// attribute of every item in the history. Answers one result per item,
    /// index-aligned (`Ok(true)`: this item created its entity), once everything
    /// is durable. A storage failure fails the whole call (nothing is acknowledged).
    ///
    /// The fragments are model entities built by a validated mapping (expanded names,
    /// URI ids, non-null values, valid geometry), as `citybrain-ingest` makes them;
    /// the id is checked here again, the rest is trusted.
    pub async fn upsert_observations(
        &self,
        rc: &RequestContext,
        items: Vec<Entity>,
    ) -> Result<Vec<Result<bool>>> {
        let now = self.clock.now();
        self.write_observations(rc, ObservationBatch::new(items, now))
            .await
    }

    /// Writes a prepared [`ObservationBatch`] (see [`Broker::upsert_observations`]).
    pub async fn write_observations(
        &self,
        rc: &RequestContext,
        batch: ObservationBatch,
    ) -> Result<Vec<Result<bool>>> {
        self.stage_observations(rc, batch)?.wait().await
    }

    /// Applies and logs a batch without waiting for durability: the caller waits on
    /// [`StagedObservations::wait`] (or its commits) before acknowledging anything,
    /// and may meanwhile stage the next batch (MQTT pipelines its connections so).
    pub fn stage_observations(
        &self,
        rc: &RequestContext,
        batch: ObservationBatch,
    ) -> Result<StagedObservations> {
        let now = self.clock.now();
        let ObservationBatch {
            mut groups,
            mut out,
        } = batch;
        let tenant: Arc<str> = Arc::from(rc.tenant.as_str());
        let mut hist: Vec<HistOp> = Vec::new();
        let mut last = None;
        let ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
        let authz = &*self.authz;
        let results = self.store.modify_many(
            &rc.tenant,
            &ids,
            &mut |i, cur| {
                // Called once per item: the fragments move into the new state.
                let mut ents = groups[i].entities.take().unwrap_or_default().into_iter();
                let mut e = match cur {
                    Some(old) => match ents.next() {
                        Some(first) => merged_copy(old, first, now),
                        None => return Ok(None),
                    },
                    None => match ents.next() {
                        Some(first) => first,
                        None => return Ok(None),
                    },
                };
                for n in ents {
                    merge_fragment(&mut e, n, now);
                }
                crate::access::check_put(authz, rc, &ids[i], cur, &e.types)?;
                Ok(Some(e))
            },
            ModifyOptions {
                history: false,
                origin: rc.origin(),
            },
        )?;
        for (g, res) in groups.into_iter().zip(results) {
            let m = match res {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(me) => {
                    for i in &g.idx {
                        out[*i] = Err(BrokerError::Model(me.clone()));
                    }
                    continue;
                }
            };
            let entity: Arc<str> = Arc::from(g.id.as_str());
            if let Some(after) = &m.after {
                hist.extend(meta_op(&tenant, m.before.as_deref(), after));
            }
            if m.before.is_none() {
                out[g.idx[0]] = Ok(true);
            }
            for ((attr, dataset), points) in g.series {
                hist.push(HistOp::Insert {
                    key: SeriesKey {
                        tenant: tenant.clone(),
                        entity: entity.clone(),
                        attr,
                        dataset,
                    },
                    points,
                });
            }
            last = Some(m.commit);
        }
        let mut commits = Vec::with_capacity(2);
        if let Some(c) = last {
            commits.push(c);
        }
        if !hist.is_empty() {
            if let Some(h) = self.store.history() {
                commits.push(h.append_history(&rc.tenant, hist)?);
            }
        }
        Ok(StagedObservations { out, commits })
    }
}

/// A batch applied in memory and in the log, not yet known durable.
pub struct StagedObservations {
    out: Vec<Result<bool>>,
    commits: Vec<Commit>,
}

impl StagedObservations {
    /// Waits until the batch is durable; answers the per-item results.
    pub async fn wait(self) -> Result<Vec<Result<bool>>> {
        for c in self.commits {
            c.wait().await?;
        }
        Ok(self.out)
    }

    /// The per-item results and the commits to wait on before acknowledging.
    pub fn into_parts(self) -> (Vec<Result<bool>>, Vec<Commit>) {
        (self.out, self.commits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use citybrain_model::time::{Clock as _, SystemClock};
    use citybrain_model::{AttrKind, Attribute};
    use serde_json::json;

    #[test]
    fn a_shared_document_is_the_point_it_would_have_been() {
        let t0 = SystemClock.now_precise();
        let geo = |secs: i64| {
            let mut a =
                Attribute::property(json!({"type": "Point", "coordinates": [116.4, 39.9]}), t0);
            a.kind = AttrKind::GeoProperty;
            a.observed_at = Some(t0 + chrono::Duration::seconds(secs));
            a
        };
        let (a, b) = (geo(0), geo(60));
        let pa = point_of(&a);
        assert_eq!(point_reusing(&b, Some((&a, &pa))), point_of(&b));
        // Different content: serialized afresh.
        let mut c = geo(120);
        c.value = citybrain_model::AttrValue::from_value(
            json!({"type": "Point", "coordinates": [1.0, 2.0]}),
        );
        assert_eq!(point_reusing(&c, Some((&a, &pa))), point_of(&c));
        // Numbers are never documents.
        let n = Attribute::property(json!(3.5), t0);
        let pn = point_of(&n);
        assert_eq!(point_reusing(&n, Some((&n, &pn))), pn);
    }

    fn fragment(id: &str, attrs: &[(&str, serde_json::Value)], t0: DateTime<Utc>) -> Entity {
        Entity {
            id: id.into(),
            types: vec![Arc::from("https://example.org/T")],
            scope: None,
            created_at: t0,
            modified_at: t0,
            attrs: attrs
                .iter()
                .map(|(n, v)| {
                    (
                        Arc::from(*n),
                        citybrain_model::instances![Attribute::property(v.clone(), t0)],
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn fragments_merge_in_order_unless_one_deletes() {
        let t0 = SystemClock.now_precise();
        let batch = ObservationBatch::new(
            vec![
                fragment("urn:a:1", &[("p", json!(1)), ("q", json!(1))], t0),
                fragment("urn:a:2", &[("p", json!(7))], t0),
                fragment("urn:a:1", &[("p", json!(2))], t0),
                fragment("urn:a:1", &[("q", serde_json::Value::Null)], t0),
                fragment("urn:a:1", &[("p", json!(3))], t0),
            ],
            t0,
        );
        assert_eq!(batch.len(), 5);
        let g = &batch.groups[0];
        assert_eq!(g.idx, vec![0, 2, 3, 4]);
        // Every observation is a point, merged or not.
        let p = g
            .series
            .iter()
            .find(|(k, _)| &*k.0 == "p")
            .map(|(_, v)| v.len());
        assert_eq!(p, Some(3));
        let frags = g.entities.as_ref().map(|l| l.len());
        // [p=2,q=1] merged; the deletion apart; p=3 apart after it.
        assert_eq!(frags, Some(3));
        let first = &g.entities.as_ref().unwrap()[0];
        assert_eq!(
            first.attr("p").unwrap()[0].value,
            citybrain_model::AttrValue::Int(2)
        );
        assert_eq!(
            first.attr("q").unwrap()[0].value,
            citybrain_model::AttrValue::Int(1)
        );
    }

    #[test]
    fn the_in_place_merge_is_append() {
        let t0 = SystemClock.now_precise();
        let t1 = t0 + chrono::Duration::seconds(5);
        let base = fragment("urn:a:1", &[("p", json!(1)), ("q", json!("x"))], t0);
        let mut ds = Attribute::property(json!(9), t0);
        ds.set_dataset_id(Some("urn:ds:1".into()));
        let mut n = fragment("urn:a:1", &[("p", json!(2)), ("r", json!(true))], t0);
        n.attrs[0].1.push(ds);
        n.types.push(Arc::from("https://example.org/U"));
        let mut fast = base.clone();
        merge_fragment(&mut fast, n.clone(), t1);
        let mut slow = base.clone();
        for t in &n.types {
            if !slow.types.contains(t) {
                slow.types.push(t.clone());
            }
        }
        ops::append(&mut slow, n.attrs, false, t1);
        assert_eq!(fast, slow);
        assert_eq!(fast.attr("p").map(|l| l.len()), Some(2));
    }

    #[test]
    fn the_copying_merge_is_clone_then_merge() {
        let t0 = SystemClock.now_precise();
        let t1 = t0 + chrono::Duration::seconds(5);
        let mut old = fragment(
            "urn:a:1",
            &[("p", json!(1)), ("q", json!("x")), ("s", json!(0))],
            t0,
        );
        let mut ds = Attribute::property(json!(9), t0);
        ds.set_dataset_id(Some("urn:ds:1".into()));
        old.attrs[0].1.push(ds.clone());
        let cases = vec![
            // replaces one instance of p (the default), q, adds r and a dataset of s
            {
                let mut n = fragment(
                    "urn:a:1",
                    &[("p", json!(2)), ("q", json!("y")), ("r", json!(true))],
                    t1,
                );
                let mut s2 = Attribute::property(json!(3), t1);
                s2.set_dataset_id(Some("urn:ds:2".into()));
                n.attrs
                    .push((Arc::from("s"), citybrain_model::instances![s2]));
                n
            },
            // replaces the dataset instance only, adds a type
            {
                let mut n = fragment("urn:a:1", &[], t1);
                let mut d = ds.clone();
                d.value = citybrain_model::AttrValue::Int(10);
                n.attrs
                    .push((Arc::from("p"), citybrain_model::instances![d]));
                n.types.push(Arc::from("https://example.org/U"));
                n
            },
            // nothing to replace
            fragment("urn:a:1", &[("z", json!(1))], t1),
            // a tombstone
            fragment("urn:a:1", &[("q", serde_json::Value::Null)], t1),
        ];
        for n in cases {
            let mut want = old.clone();
            merge_fragment(&mut want, n.clone(), t1);
            assert_eq!(merged_copy(&old, n, t1), want);
        }
    }
}
