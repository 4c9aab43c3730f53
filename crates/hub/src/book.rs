//! The incidents of one tenant, with the open ones indexed by category.
//!
//! Decision: correlation (every rule event) and the SLA check (every second) only
//! ever look at open incidents, and correlation only at those of the event's
//! category. Incidents are kept for good (they are the city's record), so a scan of
//! all of them grows with the city's history; the index keeps both to the open
//! incidents of one category. The map is private: every change goes through
//! [`Book::put`] or [`Book::update`], which keep the index in step (an incident can
//! close and reopen; its category never changes).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::incident::Incident;

#[derive(Debug, Default)]
pub(crate) struct Book {
    all: BTreeMap<String, Incident>,
    /// Category → ids of its open incidents.
    open: HashMap<String, BTreeSet<String>>,
}

impl Book {
    /// Adds or replaces an incident.
    pub(crate) fn put(&mut self, i: Incident) {
        let id = i.id.clone();
        if let Some(old) = self.all.insert(id.clone(), i) {
            self.unindex(&old.category, &id);
        }
        self.reindex(&id);
    }

    /// Takes an incident out (a change that could not be stored is undone).
    pub(crate) fn remove(&mut self, id: &str) {
        if let Some(old) = self.all.remove(id) {
            self.unindex(&old.category, id);
        }
    }

    /// Applies `f` to an incident (its index entry follows); `None` if there is none.
    pub(crate) fn update<R>(&mut self, id: &str, f: impl FnOnce(&mut Incident) -> R) -> Option<R> {
        let i = self.all.get_mut(id)?;
        let category = i.category.clone();
        let r = f(i);
        self.unindex(&category, id);
        self.reindex(id);
        Some(r)
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Incident> {
        self.all.get(id)
    }

    /// Every incident, in id order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Incident> {
        self.all.values()
    }

    /// The open incidents of one category.
    pub(crate) fn open_in<'a>(&'a self, category: &str) -> impl Iterator<Item = &'a Incident> {
        self.open
            .get(category)
            .into_iter()
            .flatten()
            .filter_map(|id| self.all.get(id))
    }

    /// The ids of every open incident.
    pub(crate) fn open_ids(&self) -> Vec<String> {
        self.open.values().flatten().cloned().collect()
    }

    fn unindex(&mut self, category: &str, id: &str) {
        if let Some(set) = self.open.get_mut(category) {
            set.remove(id);
            if set.is_empty() {
                self.open.remove(category);
            }
        }
    }

    fn reindex(&mut self, id: &str) {
        if let Some(i) = self.all.get(id) {
            if i.status.is_open() {
                self.open
                    .entry(i.category.clone())
                    .or_default()
                    .insert(id.to_string());
            }
        }
    }

    #[cfg(test)]
    fn check(&self) {
        let want: usize = self.all.values().filter(|i| i.status.is_open()).count();
        let have: usize = self.open.values().map(|s| s.len()).sum();
        assert_eq!(want, have, "open index out of step");
        for (c, ids) in &self.open {
            for id in ids {
                let i = &self.all[id];
                assert!(i.status.is_open() && &i.category == c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::Status;
    use proptest::prelude::*;

    fn incident(n: u8, category: &str) -> Incident {
        let e = citybrain_rules::Event {
            rule: "r".into(),
            category: category.into(),
            severity: citybrain_rules::Severity::Low,
            entity: format!("urn:e:{n}").as_str().into(),
            entity_type: "T".into(),
            kind: citybrain_rules::EventKind::Raised,
            at: chrono::DateTime::from_timestamp(0, 0).unwrap_or_default(),
            value: None,
            location: None,
        };
        Incident::open(format!("urn:ngsi-ld:Incident:{n}"), &e, None, e.at)
    }

    const STATUSES: [Status; 5] = [
        Status::New,
        Status::OnHold,
        Status::Resolved,
        Status::Closed,
        Status::Reopened,
    ];

    proptest! {
        /// After any puts and status changes, the index holds exactly the open
        /// incidents, each under its category.
        #[test]
        fn the_open_index_follows_every_change(
            ops in proptest::collection::vec((0u8..12, 0usize..3, 0usize..5, any::<bool>()), 0..60)
        ) {
            let mut b = Book::default();
            let cats = ["flood", "heat", "noise"];
            for (n, c, s, put) in ops {
                let id = format!("urn:ngsi-ld:Incident:{n}");
                if put || b.get(&id).is_none() {
                    let mut i = incident(n, cats[c]);
                    i.status = STATUSES[s];
                    b.put(i);
                } else {
                    b.update(&id, |i| i.status = STATUSES[s]);
                }
                b.check();
            }
            for c in cats {
                let open: Vec<&str> = b.open_in(c).map(|i| i.id.as_str()).collect();
                let want: Vec<&str> = b
                    .values()
                    .filter(|i| i.category == c && i.status.is_open())
                    .map(|i| i.id.as_str())
                    .collect();
                prop_assert_eq!(open, want);
            }
        }
    }
}
