//! Incidents: what the city handles. An incident gathers the events of one problem
//! (same category, same place, close in time), is routed to a department, and moves
//! through a lifecycle whose every step is kept with who did it, when and why.
//!
//! ```text
//! new → acknowledged → dispatched → in_progress ⇄ on_hold
//!                                        └→ resolved → closed
//! resolved, closed → reopened → acknowledged | dispatched | in_progress
//! new, acknowledged, dispatched, in_progress, on_hold, reopened → cancelled | duplicate
//! ```

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use citybrain_rules::{Event, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    New,
    Acknowledged,
    Dispatched,
    InProgress,
    OnHold,
    Resolved,
    Closed,
    Reopened,
    Cancelled,
    Duplicate,
}

impl Status {
    /// Where an incident may go from here.
    pub fn allowed(self) -> &'static [Status] {
        use Status::*;
        match self {
            New => &[Acknowledged, Dispatched, Cancelled, Duplicate],
            Acknowledged => &[Dispatched, InProgress, Cancelled, Duplicate],
            Dispatched => &[InProgress, OnHold, Cancelled, Duplicate],
            InProgress => &[OnHold, Resolved, Cancelled, Duplicate],
            OnHold => &[InProgress, Cancelled, Duplicate],
            Resolved => &[Closed, Reopened],
            Closed => &[Reopened],
            Reopened => &[Acknowledged, Dispatched, InProgress, Cancelled, Duplicate],
            Cancelled | Duplicate => &[],
        }
    }

    /// Whether the incident is still being handled (events attach to it).
    pub fn is_open(self) -> bool {
        !matches!(
            self,
            Status::Resolved | Status::Closed | Status::Cancelled | Status::Duplicate
        )
    }

    /// Moves that must say why.
    fn needs_reason(self) -> bool {
        matches!(
            self,
            Status::OnHold | Status::Reopened | Status::Cancelled | Status::Duplicate
        )
    }

    pub fn name(self) -> &'static str {
        use Status::*;
        match self {
            New => "new",
            Acknowledged => "acknowledged",
            Dispatched => "dispatched",
            InProgress => "in_progress",
            OnHold => "on_hold",
            Resolved => "resolved",
            Closed => "closed",
            Reopened => "reopened",
            Cancelled => "cancelled",
            Duplicate => "duplicate",
        }
    }
}

/// One step of an incident's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub at: DateTime<Utc>,
    pub by: String,
    /// `opened`, `event`, `status`, `comment`, `attachment`, `cleared`, `escalated`,
    /// `tasks`, `task`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub at: DateTime<Utc>,
    pub by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    /// An NGSI-LD id: `urn:ngsi-ld:Incident:{tenant-scoped number}`.
    pub id: String,
    pub category: String,
    pub severity: Severity,
    pub status: Status,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// `[lon, lat]` of the first event with a place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<[f64; 2]>,
    /// The entities whose events it gathers (sensors, vehicles, reports).
    pub entities: Vec<String>,
    pub rules: Vec<String>,
    pub event_count: u64,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_event_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// The service-level clock's marks (mode, breaches).
    #[serde(default)]
    pub sla: crate::parts::SlaMarks,
    /// The departments' parts of the work.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<crate::parts::Task>,
    /// What a citizen sent, for an Open311 request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<crate::parts::CitizenRequest>,
    pub history: Vec<Step>,
}

/// A refused move: where the incident is, and where it could go.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct TransitionError {
    pub from: Status,
    pub to: Status,
    pub allowed: Vec<Status>,
    pub message: String,
}

/// A request to move an incident.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Move {
    pub to: Option<Status>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub department: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
    /// For `duplicate`: the incident this one repeats.
    #[serde(default, rename = "duplicateOf")]
    pub duplicate_of: Option<String>,
}

impl Incident {
    /// A new incident from its first event.
    pub fn open(id: String, e: &Event, department: Option<String>, now: DateTime<Utc>) -> Incident {
        Incident {
            id,
            category: e.category.to_string(),
            severity: e.severity,
            status: Status::New,
            title: format!("{}: {}", e.rule, e.entity),
            department,
            unit: None,
            location: e.location,
            entities: vec![e.entity.to_string()],
            rules: vec![e.rule.to_string()],
            event_count: 1,
            opened_at: now,
            updated_at: now,
            last_event_at: e.at,
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
            duplicate_of: None,
            attachments: Vec::new(),
            sla: crate::parts::SlaMarks::default(),
            tasks: Vec::new(),
            request: None,
            history: vec![Step {
                at: now,
                by: "rules".into(),
                action: "opened".into(),
                from: None,
                to: Some(Status::New),
                reason: None,
                note: Some(describe(e)),
            }],
        }
    }

    /// Another event of the same problem.
    pub fn attach(&mut self, e: &Event, now: DateTime<Utc>) {
        self.event_count += 1;
        self.last_event_at = self.last_event_at.max(e.at);
        if !self.entities.iter().any(|x| **x == *e.entity) {
            self.entities.push(e.entity.to_string());
        }
        if !self.rules.iter().any(|x| **x == *e.rule) {
            self.rules.push(e.rule.to_string());
        }
        // The most serious event sets the severity.
        self.severity = self.severity.max(e.severity);
        if self.location.is_none() {
            self.location = e.location;
        }
        self.updated_at = now;
        self.history.push(Step {
            at: now,
            by: "rules".into(),
            action: "event".into(),
            from: None,
            to: None,
            reason: None,
            note: Some(describe(e)),
        });
    }

    /// Applies a move, or says which moves are allowed.
    pub fn transition(
        &mut self,
        m: &Move,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(), TransitionError> {
        let to = m.to.unwrap_or(self.status);
        let refuse = |message: String| TransitionError {
            from: self.status,
            to,
            allowed: self.status.allowed().to_vec(),
            message,
        };
        if !self.status.allowed().contains(&to) {
            let allowed: Vec<&str> = self.status.allowed().iter().map(|s| s.name()).collect();
            return Err(refuse(format!(
                "an incident that is {} cannot become {}; allowed: {}",
                self.status.name(),
                to.name(),
                if allowed.is_empty() {
                    "none (final)".to_string()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        let reason = m.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
        if to.needs_reason() && reason.is_none() {
            return Err(refuse(format!(
                "'reason' is required to make an incident {}",
                to.name()
            )));
        }
        if to == Status::Duplicate {
            match &m.duplicate_of {
                Some(d) if *d != self.id => self.duplicate_of = Some(d.clone()),
                _ => return Err(refuse("'duplicateOf' must name another incident".into())),
            }
        }
        if to == Status::Dispatched && m.department.is_none() && self.department.is_none() {
            return Err(refuse(
                "'department' is required to dispatch an incident that has none".into(),
            ));
        }
        if let Some(d) = &m.department {
            self.department = Some(d.clone());
        }
        if let Some(u) = &m.unit {
            self.unit = Some(u.clone());
        }
        match to {
            Status::Acknowledged if self.acknowledged_at.is_none() => {
                self.acknowledged_at = Some(now)
            }
            Status::Resolved => self.resolved_at = Some(now),
            Status::Closed => self.closed_at = Some(now),
            Status::Reopened => {
                self.resolved_at = None;
                self.closed_at = None;
            }
            _ => {}
        }
        // Dispatching or starting work acknowledges an incident nobody acknowledged.
        if matches!(to, Status::Dispatched | Status::InProgress) && self.acknowledged_at.is_none() {
            self.acknowledged_at = Some(now);
        }
        self.history.push(Step {
            at: now,
            by: by.to_string(),
            action: "status".into(),
            from: Some(self.status),
            to: Some(to),
            reason: reason.map(str::to_string),
            note: match (&m.department, &m.unit) {
                (None, None) => None,
                (d, u) => Some(format!(
                    "department: {}, unit: {}",
                    d.as_deref().unwrap_or("-"),
                    u.as_deref().unwrap_or("-")
                )),
            },
        });
        self.status = to;
        self.updated_at = now;
        Ok(())
    }
}

fn describe(e: &Event) -> String {
    let kind = match e.kind {
        citybrain_rules::EventKind::Raised => "raised",
        citybrain_rules::EventKind::Cleared => "cleared",
        citybrain_rules::EventKind::Momentary => "happened",
    };
    match e.value {
        Some(v) => format!(
            "rule {} {kind} on {} at {} (value {v})",
            e.rule, e.entity, e.at
        ),
        None => format!("rule {} {kind} on {} at {}", e.rule, e.entity, e.at),
    }
}

/// How events are gathered into incidents: an event joins an open incident of its
/// category that shares its entity, or lies within `radius_m` of it, when the
/// incident's last event is at most `window_ms` older.
#[derive(Debug, Clone, Copy)]
pub struct Correlation {
    pub window_ms: i64,
    pub radius_m: f64,
}

impl Default for Correlation {
    fn default() -> Self {
        Correlation {
            window_ms: 30 * 60_000,
            radius_m: 200.0,
        }
    }
}

impl Correlation {
    pub fn matches(&self, i: &Incident, e: &Event) -> bool {
        if !i.status.is_open() || i.category != *e.category {
            return false;
        }
        if (e.at - i.last_event_at).num_milliseconds().abs() > self.window_ms {
            return false;
        }
        if i.entities.iter().any(|x| **x == *e.entity) {
            return true;
        }
        match (i.location, e.location) {
            (Some(a), Some(b)) => metres(a, b) <= self.radius_m,
            _ => false,
        }
    }
}

/// Great-circle distance in metres (mean Earth radius).
fn metres(a: [f64; 2], b: [f64; 2]) -> f64 {
    let (p1, p2) = (a[1].to_radians(), b[1].to_radians());
    let dp = p2 - p1;
    let dl = (b[0] - a[0]).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6_371_008.8 * h.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn event(entity: &str, at: &str, loc: Option<[f64; 2]>) -> Event {
        Event {
            rule: Arc::from("r"),
            category: Arc::from("flooding"),
            severity: Severity::Medium,
            entity: Arc::from(entity),
            entity_type: Arc::from("T"),
            kind: citybrain_rules::EventKind::Raised,
            at: at.parse().unwrap(),
            value: Some(1.0),
            location: loc,
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn the_lifecycle_refuses_what_it_does_not_allow_and_says_what_it_does() {
        let now = t("2026-03-01T00:00:00Z");
        let mut i = Incident::open(
            "urn:i:1".into(),
            &event("urn:e:1", "2026-03-01T00:00:00Z", None),
            None,
            now,
        );
        let mv = |to: Status| Move {
            to: Some(to),
            ..Default::default()
        };
        let err = i.transition(&mv(Status::Resolved), "op", now).unwrap_err();
        assert_eq!(
            err.allowed,
            vec![
                Status::Acknowledged,
                Status::Dispatched,
                Status::Cancelled,
                Status::Duplicate
            ]
        );
        assert!(
            err.message
                .contains("allowed: acknowledged, dispatched, cancelled, duplicate"),
            "{}",
            err.message
        );
        i.transition(&mv(Status::Acknowledged), "op", now).unwrap();
        let err = i
            .transition(&mv(Status::Dispatched), "op", now)
            .unwrap_err();
        assert!(
            err.message.contains("'department' is required"),
            "{}",
            err.message
        );
        i.transition(
            &Move {
                to: Some(Status::Dispatched),
                department: Some("water".into()),
                unit: Some("crew-7".into()),
                ..Default::default()
            },
            "op",
            now,
        )
        .unwrap();
        i.transition(&mv(Status::InProgress), "crew-7", now)
            .unwrap();
        assert!(
            i.transition(&mv(Status::OnHold), "crew-7", now).is_err(),
            "a hold needs a reason"
        );
        i.transition(
            &Move {
                to: Some(Status::OnHold),
                reason: Some("waiting for a pump".into()),
                ..Default::default()
            },
            "crew-7",
            now,
        )
        .unwrap();
        i.transition(&mv(Status::InProgress), "crew-7", now)
            .unwrap();
        i.transition(&mv(Status::Resolved), "crew-7", now).unwrap();
        i.transition(&mv(Status::Closed), "op", now).unwrap();
        assert!(i.closed_at.is_some());
        let err = i
            .transition(&mv(Status::InProgress), "op", now)
            .unwrap_err();
        assert_eq!(err.allowed, vec![Status::Reopened]);
        assert_eq!(i.history.len(), 8, "{:#?}", i.history);
        assert_eq!(i.unit.as_deref(), Some("crew-7"));
    }

    #[test]
    fn events_gather_by_category_place_and_time() {
        let c = Correlation::default();
        let now = t("2026-03-01T00:00:00Z");
        let i = Incident::open(
            "urn:i:1".into(),
            &event("urn:e:1", "2026-03-01T00:00:00Z", Some([116.40, 39.90])),
            None,
            now,
        );
        // Same entity, later but within the window.
        assert!(c.matches(&i, &event("urn:e:1", "2026-03-01T00:20:00Z", None)));
        // Another entity 100 m away.
        assert!(c.matches(
            &i,
            &event("urn:e:2", "2026-03-01T00:10:00Z", Some([116.40, 39.9009]))
        ));
        // 1 km away, or too late, or another category: a new incident.
        assert!(!c.matches(
            &i,
            &event("urn:e:3", "2026-03-01T00:10:00Z", Some([116.40, 39.909]))
        ));
        assert!(!c.matches(&i, &event("urn:e:1", "2026-03-01T01:00:01Z", None)));
        let mut other = event("urn:e:1", "2026-03-01T00:10:00Z", None);
        other.category = Arc::from("traffic");
        assert!(!c.matches(&i, &other));
    }
}
