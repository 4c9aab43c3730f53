//! Service levels on the desk: the policy as written, checks of the open incidents
//! against it (breaches marked, escalated one severity level up and to the policy's
//! department, logged and counted by one event), and the figures per department.

use citybrain_access::{Principal, RequestContext, Resource, Verb};
use citybrain_telemetry::InternalEvent;

use crate::desk::SLA;
use crate::incident::{Incident, Step};
use crate::requests::DeskError;
use crate::sla::{self, Breach, DepartmentReport, Policy, SlaPolicy};
use crate::{Hub, HubError};

impl Hub {
    /// The service-level policy as written.
    pub async fn sla_policy(&self, tenant: &str) -> SlaPolicy {
        self.desks
            .read(tenant, |d| d.policy.spec.clone())
            .await
            .unwrap_or_default()
    }

    /// Replaces the service-level policy (checked first; errors name the field).
    pub async fn set_sla_policy(
        &self,
        rc: &RequestContext,
        spec: SlaPolicy,
    ) -> Result<(), DeskError> {
        self.allow(rc, Verb::Administer, Resource::Routing)?;
        let policy = Policy::compile(spec).map_err(DeskError::Invalid)?;
        self.put_doc(rc, SLA, "policy", &policy.spec).await?;
        self.desks.lock(&rc.tenant).await.policy = policy;
        Ok(())
    }

    /// Service figures per department.
    pub async fn sla_report(&self, tenant: &str) -> Vec<DepartmentReport> {
        let Some(d) = self.desks.lock_existing(tenant).await else {
            return Vec::new();
        };
        sla::report(&d.policy, d.incidents.values())
    }

    /// Every tenant's figures (for `/metrics`).
    pub async fn sla_reports(&self) -> Vec<(String, Vec<DepartmentReport>)> {
        let mut out = Vec::new();
        for (t, desk) in self.desks.tenants() {
            let d = desk.lock().await;
            out.push((t, sla::report(&d.policy, d.incidents.values())));
        }
        out
    }

    /// Marks the breaches of every open incident and escalates them: one severity
    /// level up, and the department of the policy's `escalateTo`, if any.
    pub async fn check_slas(&self) -> Result<Vec<Incident>, HubError> {
        let now = self.clock.now();
        let mut staged = Vec::new();
        {
            for (tenant, desk) in self.desks.tenants() {
                let tenant = &tenant;
                let mut d = desk.lock().await;
                let mut mine: Vec<Incident> = Vec::new();
                let mut before = Vec::new();
                let policy = d.policy.clone();
                // Only open incidents can breach (`sla::check`).
                for id in d.incidents.open_ids() {
                    let Some(i) = d.incidents.get(&id) else {
                        continue;
                    };
                    let breaches = sla::check(&policy, i, now);
                    if breaches.is_empty() {
                        continue;
                    }
                    before.push((id.clone(), Some(i.clone())));
                    let escalated = d.incidents.update(&id, |i: &mut Incident| {
                        escalate(i, &breaches, &policy, now);
                        i.clone()
                    });
                    if let Some(i) = escalated {
                        SlaBreached {
                            tenant,
                            incident: &i,
                            breaches: breaches.len(),
                            counter: &self.stats.sla_breaches,
                        }
                        .emit();
                        mine.push(i);
                    }
                }
                if mine.is_empty() {
                    continue;
                }
                // Logged under the desk's guard, as every incident change is.
                let rc = RequestContext::service(tenant.as_str(), Principal::SLA);
                let commits = self.stage_on(&mut d, &rc, &mine, before)?;
                staged.push((rc, mine, commits));
            }
        }
        let mut changed = Vec::new();
        for (rc, list, commits) in staged {
            self.publish_incidents(&rc, &list, commits).await?;
            changed.extend(list);
        }
        Ok(changed)
    }
}

/// An incident breached its service level and was escalated: logged and counted here,
/// in one place.
struct SlaBreached<'a> {
    tenant: &'a str,
    incident: &'a Incident,
    breaches: usize,
    counter: &'a std::sync::atomic::AtomicU64,
}

impl InternalEvent for SlaBreached<'_> {
    fn emit(self) {
        tracing::warn!(
            tenant = self.tenant,
            incident = %self.incident.id,
            department = ?self.incident.department,
            severity = ?self.incident.severity,
            breaches = self.breaches,
            "SLA breached: escalated"
        );
        self.counter
            .fetch_add(self.breaches as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What a breach does: the marks, one severity level up, the escalation department.
fn escalate(
    i: &mut Incident,
    breaches: &[Breach],
    policy: &Policy,
    now: chrono::DateTime<chrono::Utc>,
) {
    for b in breaches {
        match b {
            Breach::Acknowledge => i.sla.ack_breached_at = Some(now),
            Breach::Resolve => i.sla.resolve_breached_at = Some(now),
        }
    }
    let before = (i.severity, i.department.clone());
    i.severity = raise(i.severity);
    if let Some(to) = policy.escalate_to(&i.category) {
        i.department = Some(to.clone());
    }
    let what: Vec<&str> = breaches
        .iter()
        .map(|b| match b {
            Breach::Acknowledge => "not acknowledged in time",
            Breach::Resolve => "not resolved in time",
        })
        .collect();
    i.history.push(Step {
        at: now,
        by: "sla".into(),
        action: "escalated".into(),
        from: None,
        to: None,
        reason: Some(what.join("; ")),
        note: Some(format!(
            "severity {:?} → {:?}; department {} → {}",
            before.0,
            i.severity,
            before.1.as_deref().unwrap_or("-"),
            i.department.as_deref().unwrap_or("-")
        )),
    });
    i.updated_at = now;
}

fn raise(s: citybrain_rules::Severity) -> citybrain_rules::Severity {
    use citybrain_rules::Severity::*;
    match s {
        Low => Medium,
        Medium => High,
        High | Critical => Critical,
    }
}
