//! Tasks: the parts of an incident that different departments handle (一件事一次办).
//! An emergency plan opens a set of tasks when an incident of its category appears; a
//! request filed with tasks fans out the same way. Tasks may wait for others (`after`);
//! the incident is in progress once one starts and resolved when all are done, so
//! whoever follows it sees one status.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::incident::{Incident, Status, Step};
pub use crate::parts::{Task, TaskStatus};
use crate::sla::Mode;

/// A task as written in a plan or a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    pub department: String,
    pub title: String,
    /// Tasks (by position in the list) that must be done first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<usize>,
}

/// An emergency plan: the tasks an incident of `category` opens in `mode`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub id: String,
    pub category: String,
    /// `emergency` (default) or `normal`.
    #[serde(default = "emergency")]
    pub mode: Mode,
    pub tasks: Vec<TaskSpec>,
}

fn emergency() -> Mode {
    Mode::Emergency
}

/// Checks a task list: departments and titles, and dependencies on earlier tasks only
/// (so there is no cycle). `field` names the list in errors.
pub fn check_tasks(field: &str, tasks: &[TaskSpec]) -> Result<(), String> {
    if tasks.len() > 64 {
        return Err(format!("{field}: at most 64 tasks"));
    }
    for (i, t) in tasks.iter().enumerate() {
        if t.department.trim().is_empty() {
            return Err(format!("{field}[{i}].department: must not be empty"));
        }
        if t.title.trim().is_empty() {
            return Err(format!("{field}[{i}].title: must not be empty"));
        }
        if let Some(a) = t.after.iter().find(|a| **a >= i) {
            return Err(format!(
                "{field}[{i}].after: {a} is not an earlier task (tasks wait only for tasks listed before them)"
            ));
        }
    }
    Ok(())
}

/// Checks plans (ids unique, tasks valid).
pub fn check_plans(plans: &[Plan]) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, p) in plans.iter().enumerate() {
        if p.id.trim().is_empty() || !seen.insert(p.id.clone()) {
            return Err(format!("[{i}].id: must be present and unique"));
        }
        if p.tasks.is_empty() {
            return Err(format!("[{i}].tasks: a plan opens at least one task"));
        }
        check_tasks(&format!("[{i}].tasks"), &p.tasks)?;
    }
    Ok(())
}

/// Adds tasks to an incident (numbered after those it has).
pub fn open_tasks(
    i: &mut Incident,
    specs: &[TaskSpec],
    by: &str,
    note: String,
    now: DateTime<Utc>,
) {
    let base = i.tasks.len();
    for (k, s) in specs.iter().enumerate() {
        i.tasks.push(Task {
            n: base + k,
            department: s.department.clone(),
            title: s.title.clone(),
            status: TaskStatus::Open,
            after: s.after.iter().map(|a| base + a).collect(),
            done_at: None,
        });
    }
    i.history.push(Step {
        at: now,
        by: by.to_string(),
        action: "tasks".into(),
        from: None,
        to: None,
        reason: None,
        note: Some(note),
    });
}

/// Why a task cannot move.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskError {
    NoSuchTask(usize),
    /// The tasks it waits for.
    Waiting(Vec<usize>),
    /// Done or cancelled tasks stay so.
    Final(TaskStatus),
    /// The incident is not being handled.
    Closed(Status),
}

/// Moves task `n` of `i`; moves the incident along: in progress with the first task
/// started or done, resolved when every task is done or cancelled.
pub fn move_task(
    i: &mut Incident,
    n: usize,
    to: TaskStatus,
    by: &str,
    now: DateTime<Utc>,
) -> Result<(), TaskError> {
    let Some(task) = i.tasks.get(n) else {
        return Err(TaskError::NoSuchTask(n));
    };
    if !i.status.is_open() {
        return Err(TaskError::Closed(i.status));
    }
    if matches!(task.status, TaskStatus::Done | TaskStatus::Cancelled) {
        return Err(TaskError::Final(task.status));
    }
    if matches!(to, TaskStatus::InProgress | TaskStatus::Done) {
        let waiting: Vec<usize> = task
            .after
            .iter()
            .copied()
            .filter(|a| {
                i.tasks
                    .get(*a)
                    .is_some_and(|t| t.status != TaskStatus::Done)
            })
            .collect();
        if !waiting.is_empty() {
            return Err(TaskError::Waiting(waiting));
        }
    }
    let from = task.status;
    let title = task.title.clone();
    if let Some(t) = i.tasks.get_mut(n) {
        t.status = to;
        if to == TaskStatus::Done {
            t.done_at = Some(now);
        }
    }
    i.history.push(Step {
        at: now,
        by: by.to_string(),
        action: "task".into(),
        from: None,
        to: None,
        reason: None,
        note: Some(format!("task {n} ({title}): {from:?} → {to:?}")),
    });
    i.updated_at = now;
    let started = matches!(to, TaskStatus::InProgress | TaskStatus::Done);
    if started
        && matches!(
            i.status,
            Status::New | Status::Acknowledged | Status::Dispatched | Status::Reopened
        )
    {
        set_status(i, Status::InProgress, "a task started", now);
    }
    let all_settled = i
        .tasks
        .iter()
        .all(|t| matches!(t.status, TaskStatus::Done | TaskStatus::Cancelled));
    if all_settled
        && i.tasks.iter().any(|t| t.status == TaskStatus::Done)
        && i.status == Status::InProgress
    {
        set_status(i, Status::Resolved, "every task is done", now);
    }
    Ok(())
}

fn set_status(i: &mut Incident, to: Status, why: &str, now: DateTime<Utc>) {
    i.history.push(Step {
        at: now,
        by: "tasks".into(),
        action: "status".into(),
        from: Some(i.status),
        to: Some(to),
        reason: Some(why.into()),
        note: None,
    });
    if i.acknowledged_at.is_none() {
        i.acknowledged_at = Some(now);
    }
    if to == Status::Resolved {
        i.resolved_at = Some(now);
    }
    i.status = to;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(d: &str, after: &[usize]) -> TaskSpec {
        TaskSpec {
            department: d.into(),
            title: format!("{d} work"),
            after: after.to_vec(),
        }
    }

    #[test]
    fn dependencies_point_back_only() {
        assert!(check_tasks("t", &[spec("a", &[]), spec("b", &[0])]).is_ok());
        let e = check_tasks("t", &[spec("a", &[1]), spec("b", &[])]).unwrap_err();
        assert!(e.starts_with("t[0].after"), "{e}");
        assert!(check_tasks("t", &[spec("", &[])])
            .unwrap_err()
            .contains("department"));
    }
}
