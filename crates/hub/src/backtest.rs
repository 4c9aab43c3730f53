//! Back-testing: what a rule would have raised over a past period, replayed from the
//! history with a fresh engine (the live state is not touched).

use std::collections::BTreeSet;
use std::ops::{Bound, ControlFlow};

use chrono::{DateTime, Utc};
use citybrain_access::RequestContext;
use citybrain_rules::{Engine, Event, ObsValue, Observation, RuleSpec};
use citybrain_storage::history::attribute_of;
use citybrain_storage::tsdb::{Selection, TimeProp};
use serde::Serialize;

use crate::{Hub, HubError};

/// Most observations one back-test replays: a longer period must be split.
pub const MAX_OBSERVATIONS: usize = 2_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct Backtest {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Entities of the rule's type with history in the period.
    pub entities: usize,
    pub observations: usize,
    pub events: Vec<Event>,
}

struct Obs {
    t: i64,
    entity: usize,
    attr: String,
    value: ObsValue,
}

impl Hub {
    /// Replays the history of `[from, to)` through `spec` alone.
    ///
    /// Only the series `rc` reads as stored are replayed (a caller writes the rule, so
    /// a rule over values it may not see would tell them by when it fires); the
    /// events' values and positions come from those series alone.
    pub fn backtest(
        &self,
        rc: &RequestContext,
        spec: &RuleSpec,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Backtest, HubError> {
        if to <= from {
            return Err(HubError::Invalid(citybrain_rules::RuleError::new(
                "to",
                "must be after 'from'",
            )));
        }
        let expanded = self.expanded(spec);
        let mut engine = Engine::new();
        engine.set_location_attr(&self.location);
        engine.put(expanded.clone())?;
        let Some(history) = self.store.history() else {
            return Err(HubError::NoHistory);
        };
        let tsdb = history.reader();
        let mut wanted: BTreeSet<Option<String>> = BTreeSet::new();
        expanded.when.attrs(&mut wanted);
        let any_attr = wanted.contains(&None);
        let sel = Selection {
            time: TimeProp::Observed,
            lower: Bound::Included(from.timestamp_millis()),
            upper: Bound::Excluded(to.timestamp_millis()),
            last_n: None,
        };
        let tenant = rc.tenant.as_str();
        let ty = expanded.select.ty.clone();
        let mut entities: Vec<(String, String)> = Vec::new();
        let mut obs: Vec<Obs> = Vec::new();
        let mut too_many = false;
        let mut allowed: std::collections::HashMap<(Vec<std::sync::Arc<str>>, String), bool> =
            std::collections::HashMap::new();
        tsdb.scan(tenant, None, &mut |h| {
            if !h.types.iter().any(|t| **t == *ty)
                || (!expanded.select.ids.is_empty()
                    && !expanded.select.ids.iter().any(|i| **i == *h.id))
            {
                return ControlFlow::Continue(());
            }
            let idx = entities.len();
            let mut any = false;
            for s in &h.series {
                if !any_attr && !wanted.contains(&Some(s.attr.to_string())) {
                    continue;
                }
                let (points, _) = tsdb.read(s.id, &sel);
                // Only what the caller reads as stored is replayed: a rule it writes
                // would otherwise tell masked or hidden values by when it fires.
                let Some(first) = points.first() else {
                    continue;
                };
                let key = (h.types.clone(), s.attr.to_string());
                let readable = match allowed.get(&key) {
                    Some(r) => *r,
                    None => {
                        let sample = attribute_of(first, s.dataset.as_deref());
                        let r = self.reads_as_stored(rc, &h.types, &s.attr, sample);
                        allowed.insert(key, r);
                        r
                    }
                };
                if !readable {
                    continue;
                }
                for p in points {
                    let a = attribute_of(&p, s.dataset.as_deref());
                    obs.push(Obs {
                        t: p.t,
                        entity: idx,
                        attr: s.attr.to_string(),
                        value: ObsValue::from_json(&a.value.to_value()),
                    });
                    any = true;
                }
                if obs.len() > MAX_OBSERVATIONS {
                    too_many = true;
                    return ControlFlow::Break(());
                }
            }
            // An entity without data in the period is not counted.
            if any {
                entities.push((h.id.to_string(), ty.clone()));
            }
            ControlFlow::Continue(())
        });
        if too_many {
            return Err(HubError::Invalid(citybrain_rules::RuleError::new(
                "from",
                format!("the period holds more than {MAX_OBSERVATIONS} observations; test a shorter one"),
            )));
        }
        obs.sort_by_key(|o| o.t);
        let mut events = Vec::new();
        for o in &obs {
            let at = DateTime::from_timestamp_millis(o.t).unwrap_or(from);
            // Ticks first: what was due before this observation happens before it.
            events.extend(engine.tick(at));
            let (id, ty) = &entities[o.entity];
            events.extend(engine.observe(&Observation {
                entity: id,
                entity_type: ty,
                attr: &o.attr,
                at,
                value: o.value.clone(),
            }));
        }
        events.extend(engine.tick(to));
        Ok(Backtest {
            from,
            to,
            entities: entities.len(),
            observations: obs.len(),
            events,
        })
    }
}
