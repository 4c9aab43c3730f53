//! The engine: rules indexed by entity type, one state per (rule, entity), a queue of
//! the deadlines ticks must visit, and the events that come out.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::compile::{compile, Rule, Zone};
use crate::error::RuleError;
use crate::signal::{Change, EvalError, Input, State};
use crate::spec::{RuleSpec, Severity};

type Fast = foldhash::fast::RandomState;

pub use crate::signal::ObsValue;

/// One attribute value of one entity at a time.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    pub entity: &'a str,
    pub entity_type: &'a str,
    pub attr: &'a str,
    pub at: DateTime<Utc>,
    pub value: ObsValue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The condition became true.
    Raised,
    /// It is true no more.
    Cleared,
    /// It happened (a geofence entered or left, a sequence completed): nothing to clear.
    Momentary,
}

/// What a rule found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub rule: Arc<str>,
    pub category: Arc<str>,
    pub severity: Severity,
    pub entity: Arc<str>,
    pub entity_type: Arc<str>,
    pub kind: EventKind,
    pub at: DateTime<Utc>,
    /// The value that crossed (levels), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The entity's last known position (`location`), for correlation by place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<[f64; 2]>,
}

/// A rule as the engine holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleStatus {
    pub id: String,
    pub enabled: bool,
    /// Why the engine disabled it at run time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Entities with state for it.
    pub entities: usize,
}

struct Slot {
    rule: Rule,
    id: Arc<str>,
    category: Arc<str>,
    ty: Arc<str>,
    disabled: Option<String>,
}

/// An entity the engine has seen: its id, last known position, and the state of each
/// rule that watches it. Entities are numbered on first sight; an observation finds
/// its entity by number and its states side by side: the rule slots in a sorted list
/// of their own (a few cache lines to search), the states in the same order.
struct Seen {
    id: Arc<str>,
    position: Option<[f64; 2]>,
    /// Whether its rules run their emergency conditions (see [`Engine::set_emergency`]).
    emergency: bool,
    rules: Vec<u32>,
    states: Vec<Held>,
}

impl Seen {
    fn find(&self, rule: u32) -> Option<usize> {
        self.rules.binary_search(&rule).ok()
    }
}

/// A rule's state for one entity, and the deadline it is queued under.
struct Held {
    state: State,
    scheduled: Option<i64>,
}

/// Rule slots by entity type (or id), then by attribute (`*`: any).
type Index = HashMap<Arc<str>, HashMap<Arc<str>, Vec<u32>, Fast>, Fast>;

/// The rules of one tenant and their state.
#[derive(Default)]
pub struct Engine {
    slots: Vec<Option<Slot>>,
    by_id: HashMap<String, u32, Fast>,
    /// Rule slots by what they watch: (entity type or id, attribute or `*` for any).
    /// A rule naming ids is found under each id; one watching a whole type (maybe with
    /// an id prefix) under its type. An observation looks up four keys, so it meets
    /// only the rules that read its attribute of its entity.
    by_type: Index,
    by_entity: Index,
    /// Deadlines ticks must visit: (due, rule slot, entity number).
    queue: BTreeSet<(i64, u32, u32)>,
    /// Entities by number, with their last known position (for events) from the
    /// location attribute, and the numbers by id. Entities stay numbered for the
    /// engine's life, or until [`Engine::forget`].
    seen: Vec<Seen>,
    numbers: HashMap<Arc<str>, u32, Fast>,
    /// Numbers of forgotten entities, given again.
    free: Vec<u32>,
    location_attr: Option<String>,
    /// Emergency mode everywhere, or in these zones only.
    emergency_everywhere: bool,
    emergency_zones: Vec<Zone>,
}

impl Engine {
    pub fn new() -> Engine {
        Engine::default()
    }

    /// The attribute whose points give events their location (`location` by default;
    /// the hub passes the expanded NGSI-LD name).
    pub fn set_location_attr(&mut self, name: &str) {
        self.location_attr = Some(name.to_string());
    }

    /// Which entities run the emergency conditions of their rules (`emergency:` in a
    /// rule; rules without one run as they are): every entity (`everywhere`), or those
    /// whose last known position lies in one of `zones` (an entity without a position
    /// is in a zone's mode only when it is everywhere). An entity whose mode changes
    /// starts its rules that have an emergency condition afresh (their thresholds
    /// changed); its other rules keep their state. Entities that move across a zone's
    /// border switch as their position arrives.
    pub fn set_emergency(&mut self, everywhere: bool, zones: Vec<Zone>) {
        self.emergency_everywhere = everywhere;
        self.emergency_zones = zones;
        for n in 0..self.seen.len() {
            self.refresh_mode(n as u32);
        }
    }

    /// Whether an entity runs its rules' emergency conditions.
    pub fn in_emergency(&self, entity: &str) -> bool {
        self.numbers
            .get(entity)
            .and_then(|n| self.seen.get(*n as usize))
            .is_some_and(|s| s.emergency)
    }

    fn refresh_mode(&mut self, n: u32) {
        let Some(seen) = self.seen.get_mut(n as usize) else {
            return;
        };
        let flag = self.emergency_everywhere
            || seen
                .position
                .is_some_and(|p| self.emergency_zones.iter().any(|z| z.contains(p)));
        if flag == seen.emergency {
            return;
        }
        seen.emergency = flag;
        let mut at = 0;
        while at < seen.rules.len() {
            let rule = seen.rules[at];
            let varies = self
                .slots
                .get(rule as usize)
                .and_then(Option::as_ref)
                .is_some_and(|s| s.rule.emergency.is_some());
            if varies {
                if let Some(d) = seen.states[at].scheduled {
                    self.queue.remove(&(d, rule, n));
                }
                seen.rules.remove(at);
                seen.states.remove(at);
            } else {
                at += 1;
            }
        }
    }

    /// Adds a rule, or replaces the one with its id (its state starts afresh).
    pub fn put(&mut self, spec: RuleSpec) -> Result<(), RuleError> {
        let rule = compile(spec)?;
        let id = rule.spec.id.clone();
        if let Some(old) = self.by_id.get(&id).copied() {
            self.remove_slot(old);
        }
        let ty: Arc<str> = Arc::from(rule.spec.select.ty.as_str());
        let keys = index_keys(&rule);
        let slot = Slot {
            id: Arc::from(id.as_str()),
            category: Arc::from(rule.spec.category.as_str()),
            ty: ty.clone(),
            rule,
            disabled: None,
        };
        let idx = match self.slots.iter().position(Option::is_none) {
            Some(free) => {
                self.slots[free] = Some(slot);
                free as u32
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_id.insert(id, idx);
        for (by_id, who, attr) in keys {
            let index = if by_id {
                &mut self.by_entity
            } else {
                &mut self.by_type
            };
            index
                .entry(who)
                .or_default()
                .entry(attr)
                .or_default()
                .push(idx);
        }
        Ok(())
    }

    /// Removes a rule and its state; `false` when there is none with this id.
    pub fn remove(&mut self, id: &str) -> bool {
        match self.by_id.get(id).copied() {
            Some(idx) => {
                self.remove_slot(idx);
                true
            }
            None => false,
        }
    }

    fn remove_slot(&mut self, idx: u32) {
        let Some(slot) = self.slots.get_mut(idx as usize).and_then(Option::take) else {
            return;
        };
        self.by_id.remove(&*slot.id);
        for (by_id, who, attr) in index_keys(&slot.rule) {
            let index = if by_id {
                &mut self.by_entity
            } else {
                &mut self.by_type
            };
            if let Some(attrs) = index.get_mut(&who) {
                if let Some(list) = attrs.get_mut(&attr) {
                    list.retain(|i| *i != idx);
                    if list.is_empty() {
                        attrs.remove(&attr);
                    }
                }
                if attrs.is_empty() {
                    index.remove(&who);
                }
            }
        }
        self.drop_states(idx);
    }

    fn drop_states(&mut self, idx: u32) {
        for seen in &mut self.seen {
            if let Some(at) = seen.find(idx) {
                seen.rules.remove(at);
                seen.states.remove(at);
            }
        }
        self.queue.retain(|(_, r, _)| *r != idx);
    }

    /// One rule's run-time status.
    pub fn status_of(&self, id: &str) -> Option<RuleStatus> {
        let idx = *self.by_id.get(id)?;
        let s = self.slots.get(idx as usize)?.as_ref()?;
        Some(RuleStatus {
            id: s.id.to_string(),
            enabled: s.rule.spec.enabled && s.disabled.is_none(),
            disabled_reason: s.disabled.clone(),
            entities: self.seen.iter().filter(|s| s.find(idx).is_some()).count(),
        })
    }

    /// The rules, with run-time status.
    pub fn status(&self) -> Vec<RuleStatus> {
        let mut counts: HashMap<u32, usize> = HashMap::new();
        for r in self.seen.iter().flat_map(|s| &s.rules) {
            *counts.entry(*r).or_default() += 1;
        }
        let mut out: Vec<RuleStatus> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let s = s.as_ref()?;
                Some(RuleStatus {
                    id: s.id.to_string(),
                    enabled: s.rule.spec.enabled && s.disabled.is_none(),
                    disabled_reason: s.disabled.clone(),
                    entities: counts.get(&(i as u32)).copied().unwrap_or(0),
                })
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Evaluates one observation against the rules that watch its entity.
    pub fn observe(&mut self, obs: &Observation) -> Vec<Event> {
        self.note_position(obs);
        let mut rules: Vec<u32> = Vec::new();
        for list in self.listed(obs) {
            rules.extend_from_slice(list);
        }
        if rules.is_empty() {
            return Vec::new();
        }
        // A composite reading two attributes is listed once per attribute.
        rules.sort_unstable();
        rules.dedup();
        self.run_rules(&rules, obs)
    }

    /// Evaluates one observation against one rule only, if it reads that attribute of
    /// that entity: how a rule put while entities exist learns their current state
    /// (the other rules have seen the observation already).
    pub fn observe_rule(&mut self, rule: &str, obs: &Observation) -> Vec<Event> {
        let Some(&idx) = self.by_id.get(rule) else {
            return Vec::new();
        };
        self.note_position(obs);
        if !self.listed(obs).any(|list| list.contains(&idx)) {
            return Vec::new();
        }
        self.run_rules(&[idx], obs)
    }

    /// The index's lists of rules for an observation: under its entity's type and
    /// under its id, for its attribute and for any attribute.
    fn listed<'a>(&'a self, obs: &'a Observation) -> impl Iterator<Item = &'a Vec<u32>> + 'a {
        [
            (&self.by_type, obs.entity_type),
            (&self.by_entity, obs.entity),
        ]
        .into_iter()
        .filter_map(|(index, who)| index.get(who))
        .flat_map(move |attrs| [obs.attr, ANY].into_iter().filter_map(|a| attrs.get(a)))
    }

    /// Keeps an entity's last position (zones, correlation by place).
    fn note_position(&mut self, obs: &Observation) {
        if let ObsValue::Point(p) = obs.value {
            if obs.attr == self.location_attr.as_deref().unwrap_or("location") {
                let n = self.number(obs.entity);
                if let Some(seen) = self.seen.get_mut(n as usize) {
                    seen.position = Some(p);
                }
                if !self.emergency_zones.is_empty() {
                    self.refresh_mode(n);
                }
            }
        }
    }

    /// Runs the rules numbered `rules` (those that select the entity) on `obs`.
    fn run_rules(&mut self, rules: &[u32], obs: &Observation) -> Vec<Event> {
        let mut events = Vec::new();
        let t = obs.at.timestamp_millis();
        let input = Input::Obs {
            attr: obs.attr,
            t,
            value: &obs.value,
        };
        let entity = self.number(obs.entity);
        for &idx in rules {
            let Some(slot) = self.slots.get(idx as usize).and_then(Option::as_ref) else {
                continue;
            };
            if !slot.rule.spec.enabled
                || slot.disabled.is_some()
                || !selects(slot, obs.entity, obs.entity_type)
            {
                continue;
            }
            self.run(idx, entity, &input, &mut events);
        }
        events
    }

    /// Moves the clock to `now`: windows close, holds elapse, heartbeats are missed.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Event> {
        self.tick_some(now, usize::MAX).0
    }

    /// [`Engine::tick`] over at most `max` due states; answers the events and whether
    /// due states remain. A caller that shares the engine ticks in slices, so that a
    /// burst of deadlines (every entity's window closing at once) does not hold up
    /// the observations behind it.
    pub fn tick_some(&mut self, now: DateTime<Utc>, max: usize) -> (Vec<Event>, bool) {
        let now_ms = now.timestamp_millis();
        let mut events = Vec::new();
        let mut done = 0usize;
        while let Some(first) = self.queue.first().cloned() {
            if first.0 > now_ms {
                break;
            }
            if done >= max {
                return (events, true);
            }
            done += 1;
            self.queue.remove(&first);
            let (due, idx, entity) = first;
            let held = self.seen.get_mut(entity as usize).and_then(|s| {
                let at = s.find(idx)?;
                s.states.get_mut(at)
            });
            match held {
                Some(h) if h.scheduled == Some(due) => h.scheduled = None,
                _ => continue, // superseded
            }
            self.run(idx, entity, &Input::Tick(now_ms), &mut events);
        }
        (events, false)
    }

    /// The number of an entity, given on first sight (a forgotten entity's number is
    /// given again).
    fn number(&mut self, id: &str) -> u32 {
        if let Some(n) = self.numbers.get(id) {
            return *n;
        }
        let id: Arc<str> = Arc::from(id);
        let fresh = Seen {
            id: id.clone(),
            position: None,
            emergency: self.emergency_everywhere,
            rules: Vec::new(),
            states: Vec::new(),
        };
        let n = match self.free.pop() {
            Some(n) if (n as usize) < self.seen.len() => {
                self.seen[n as usize] = fresh;
                n
            }
            _ => {
                self.seen.push(fresh);
                (self.seen.len() - 1) as u32
            }
        };
        self.numbers.insert(id, n);
        n
    }

    /// Forgets an entity (it was deleted): its rule states and their deadlines go, so
    /// a heartbeat rule does not report a deleted entity as silent, and its number is
    /// given to the next new entity.
    pub fn forget(&mut self, entity: &str) {
        let Some(n) = self.numbers.remove(entity) else {
            return;
        };
        let Engine { seen, queue, .. } = self;
        if let Some(s) = seen.get_mut(n as usize) {
            for (rule, held) in s.rules.iter().zip(&s.states) {
                if let Some(d) = held.scheduled {
                    queue.remove(&(d, *rule, n));
                }
            }
            *s = Seen {
                id: Arc::from(""),
                position: None,
                emergency: false,
                rules: Vec::new(),
                states: Vec::new(),
            };
        }
        self.free.push(n);
    }

    /// Steps the state of (rule `idx`, `entity`), turns its changes into events,
    /// reschedules it, and disables the rule if it fails.
    fn run(&mut self, idx: u32, entity: u32, input: &Input, events: &mut Vec<Event>) {
        let Some(slot) = self.slots.get(idx as usize).and_then(Option::as_ref) else {
            return;
        };
        let Some(seen) = self.seen.get_mut(entity as usize) else {
            return;
        };
        let cond = match (seen.emergency, &slot.rule.emergency) {
            (true, Some(e)) => e,
            _ => &slot.rule.cond,
        };
        let at = match seen.rules.binary_search(&idx) {
            Ok(at) => at,
            Err(at) => {
                seen.rules.insert(at, idx);
                seen.states.insert(
                    at,
                    Held {
                        state: State::new(cond),
                        scheduled: None,
                    },
                );
                at
            }
        };
        let Some(held) = seen.states.get_mut(at) else {
            return;
        };
        let mut changes = Vec::new();
        if let Err(EvalError(reason)) = held.state.step(cond, input, &mut changes) {
            self.disable(idx, reason);
            return;
        }
        let deadline = held.state.deadline(cond);
        for (t, ch) in changes {
            let (kind, value) = match ch {
                Change::Raised(v) => (EventKind::Raised, v),
                Change::Cleared(v) => (EventKind::Cleared, v),
                Change::Momentary(v) => (EventKind::Momentary, v),
            };
            events.push(Event {
                rule: slot.id.clone(),
                category: slot.category.clone(),
                severity: slot.rule.spec.severity,
                entity: seen.id.clone(),
                entity_type: slot.ty.clone(),
                kind,
                at: DateTime::from_timestamp_millis(t).unwrap_or(DateTime::<Utc>::MIN_UTC),
                value,
                location: seen.position,
            });
        }
        if deadline != held.scheduled {
            if let Some(old) = held.scheduled {
                self.queue.remove(&(old, idx, entity));
            }
            if let Some(d) = deadline {
                self.queue.insert((d, idx, entity));
            }
            held.scheduled = deadline;
        }
    }

    fn disable(&mut self, idx: u32, reason: String) {
        if let Some(slot) = self.slots.get_mut(idx as usize).and_then(Option::as_mut) {
            slot.disabled = Some(reason);
        }
        self.drop_states(idx);
    }
}

/// The attribute key of rules that read any attribute (`missing` without `attr`).
const ANY: &str = "*";

/// Where a rule is listed: (by entity id?, type or id, attribute).
fn index_keys(rule: &Rule) -> Vec<(bool, Arc<str>, Arc<str>)> {
    let mut attrs = BTreeSet::new();
    rule.spec.when.attrs(&mut attrs);
    let sel = &rule.spec.select;
    let whos: Vec<&str> = if sel.ids.is_empty() {
        vec![sel.ty.as_str()]
    } else {
        sel.ids.iter().map(String::as_str).collect()
    };
    let mut out = Vec::new();
    for who in whos {
        for a in &attrs {
            out.push((
                !sel.ids.is_empty(),
                Arc::from(who),
                Arc::from(a.as_deref().unwrap_or(ANY)),
            ));
        }
    }
    out
}

fn selects(slot: &Slot, entity: &str, entity_type: &str) -> bool {
    let sel = &slot.rule.spec.select;
    sel.ty == entity_type
        && (sel.ids.is_empty() || sel.ids.iter().any(|i| i == entity))
        && sel
            .id_prefix
            .as_deref()
            .is_none_or(|p| entity.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An engine holding the rules of a YAML text.
    fn engine_of(yaml: &str) -> Engine {
        let mut e = Engine::new();
        for r in crate::parse_rules(yaml, "t").unwrap() {
            e.put(r).unwrap();
        }
        e
    }

    #[test]
    fn stored_values_read_as_their_json_does() {
        for v in [
            json!(3),
            json!(-2.5),
            json!("free"),
            json!(true),
            json!(null),
            json!({"type": "Point", "coordinates": [116.4, 39.9]}),
            json!({"type": "Polygon", "coordinates": []}),
            json!([1, 2]),
        ] {
            let stored = citybrain_model::AttrValue::from_value(v.clone());
            assert_eq!(ObsValue::from_attr(&stored), ObsValue::from_json(&v), "{v}");
        }
    }

    /// An emergency zone switches the entities inside it to their rules' emergency
    /// thresholds, and only them; an entity that moves in switches on arrival.
    #[test]
    fn emergency_zones_switch_the_entities_inside() {
        let mut e = engine_of(
            "id: level\ncategory: flood\nfor: {type: Gauge}\nwhen: {kind: threshold, attr: level, above: 5}\nemergency: {kind: threshold, attr: level, above: 3}\n",
        );
        let t0 = DateTime::from_timestamp(1_000, 0).unwrap();
        let obs = |id: &'static str, attr: &'static str, value: ObsValue| Observation {
            entity: id,
            entity_type: "Gauge",
            attr,
            at: t0,
            value,
        };
        e.observe(&obs("inside", "location", ObsValue::Point([10.5, 10.5])));
        e.observe(&obs("outside", "location", ObsValue::Point([20.0, 20.0])));
        let zone = Zone::from_geojson(
            "area",
            &json!({"type": "Polygon", "coordinates": [[[10, 10], [11, 10], [11, 11], [10, 11], [10, 10]]]}),
        )
        .unwrap();
        e.set_emergency(false, vec![zone]);
        assert!(e.in_emergency("inside") && !e.in_emergency("outside"));
        let raised = |e: &mut Engine, id: &'static str, v: f64| {
            e.observe(&obs(id, "level", ObsValue::Number(v)))
                .iter()
                .any(|ev| ev.kind == EventKind::Raised)
        };
        assert!(
            raised(&mut e, "inside", 4.0),
            "emergency threshold 3 inside"
        );
        assert!(
            !raised(&mut e, "outside", 4.0),
            "normal threshold 5 outside"
        );
        // The outside gauge is carried into the zone: its next reading is judged by 3.
        e.observe(&obs("outside", "location", ObsValue::Point([10.2, 10.8])));
        assert!(e.in_emergency("outside"));
        assert!(raised(&mut e, "outside", 4.5));
        // Back to normal: the state starts afresh, under 5 nothing is raised.
        e.set_emergency(false, Vec::new());
        assert!(!e.in_emergency("inside"));
        assert!(!raised(&mut e, "inside", 4.0));
        // Everywhere, an entity without a position is in emergency too.
        e.set_emergency(true, Vec::new());
        assert!(raised(&mut e, "nowhere", 4.0));
    }

    /// `observe_rule` feeds one rule only: the others do not see the observation
    /// (they have seen it already), and a rule that does not read it is left alone.
    #[test]
    fn observe_rule_feeds_one_rule_only() {
        let mut e = engine_of(
            "- id: a\n  category: c\n  for: {type: Gauge}\n  when: {kind: threshold, attr: level, above: 5}\n- id: b\n  category: c\n  for: {type: Gauge}\n  when: {kind: threshold, attr: level, above: 5}\n- id: other\n  category: c\n  for: {type: Gauge}\n  when: {kind: threshold, attr: flow, above: 5}\n",
        );
        let t0 = DateTime::from_timestamp(1_000, 0).unwrap();
        let o = |attr: &'static str| Observation {
            entity: "g",
            entity_type: "Gauge",
            attr,
            at: t0,
            value: ObsValue::Number(9.0),
        };
        let names = |ev: Vec<Event>| ev.iter().map(|x| x.rule.to_string()).collect::<Vec<_>>();
        assert_eq!(names(e.observe_rule("a", &o("level"))), vec!["a"]);
        assert!(
            e.observe_rule("other", &o("level")).is_empty(),
            "reads flow, not level"
        );
        assert!(e.observe_rule("nope", &o("level")).is_empty());
        assert_eq!(
            names(e.observe(&o("level"))),
            vec!["b"],
            "a is raised already"
        );
    }

    /// A deleted entity is forgotten: its heartbeat does not report it silent, and a
    /// new entity that takes its number starts with no state.
    #[test]
    fn a_forgotten_entity_is_not_reported_silent() {
        let mut e = engine_of(
            "id: beat\ncategory: devices\nfor: {type: Meter}\nwhen: {kind: missing, attr: v, after: 10m}\n",
        );
        let t0 = DateTime::from_timestamp(1_000_000, 0).unwrap();
        for id in ["kept", "gone"] {
            e.observe(&Observation {
                entity: id,
                entity_type: "Meter",
                attr: "v",
                at: t0,
                value: ObsValue::Number(1.0),
            });
        }
        e.forget("gone");
        let later = t0 + chrono::Duration::minutes(11);
        let silent: Vec<String> = e
            .tick(later)
            .iter()
            .map(|ev| ev.entity.to_string())
            .collect();
        assert_eq!(silent, vec!["kept".to_string()]);
        // A new entity reuses the number, with a state of its own.
        e.observe(&Observation {
            entity: "new",
            entity_type: "Meter",
            attr: "v",
            at: later,
            value: ObsValue::Number(2.0),
        });
        assert_eq!(e.status_of("beat").map(|s| s.entities), Some(2));
        let again: Vec<String> = e
            .tick(later + chrono::Duration::minutes(11))
            .iter()
            .map(|ev| ev.entity.to_string())
            .collect();
        assert_eq!(again, vec!["new".to_string()]);
    }
}
