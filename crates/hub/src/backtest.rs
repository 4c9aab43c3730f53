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
    /// Only history `rc` may read whole is replayed (a caller writes the rule, so a
    /// rule over values it may not see would tell them by when it fires), and the
    /// events keep their values and positions only for those who see them on the
    /// event feed ([`Hub::event_for`]).
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
        tsdb.scan(tenant, None, &mut |h| {
            if !h.types.iter().any(|t| **t == *ty)
                || (!expanded.select.ids.is_empty()
                    && !expanded.select.ids.iter().any(|i| **i == *h.id))
                || !self.reads_whole(rc, &h.id)
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
        if !self.shows_event_values(rc) {
            for e in &mut events {
                e.value = None;
                e.location = None;
            }
        }
        Ok(Backtest {
            from,
            to,
            entities: entities.len(),
            observations: obs.len(),
            events,
        })
    }
}
