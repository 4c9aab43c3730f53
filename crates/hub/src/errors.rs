//! The hub's errors in the platform's one error table ([`ErrorCode`]): each names its
//! kind, what a client may be told and the extension members of its problem body; the
//! API derives statuses from the kind in one place.

use citybrain_model::{ErrorCode, ErrorKind};
use serde_json::{json, Map, Value};

use crate::desk::DeskError;
use crate::open311::Open311Error;
use crate::tasks::TaskError;
use crate::HubError;

impl ErrorCode for HubError {
    fn kind(&self) -> ErrorKind {
        match self {
            HubError::Invalid(_) => ErrorKind::BadRequestData,
            HubError::NotFound(_) => ErrorKind::ResourceNotFound,
            HubError::Exists(_) => ErrorKind::AlreadyExists,
            HubError::NoHistory => ErrorKind::OperationNotSupported,
            HubError::Store(s) => s.kind(),
            HubError::Encode(_) => ErrorKind::InternalError,
            HubError::Denied(d) => d.kind(),
        }
    }

    fn public_detail(&self) -> String {
        match self {
            HubError::Store(s) => s.public_detail(),
            HubError::Encode(_) => "a document could not be encoded; see the server log".into(),
            other => other.to_string(),
        }
    }
}

impl ErrorCode for DeskError {
    fn kind(&self) -> ErrorKind {
        match self {
            DeskError::NotFound(_) | DeskError::NoArea(_) => ErrorKind::ResourceNotFound,
            DeskError::Conflict(_) | DeskError::Transition(_) => ErrorKind::Conflict,
            DeskError::Invalid(_) => ErrorKind::BadRequestData,
            DeskError::Hub(h) => h.kind(),
            DeskError::Task(_, TaskError::NoSuchTask(_)) => ErrorKind::ResourceNotFound,
            DeskError::Task(..) => ErrorKind::Conflict,
        }
    }

    fn public_detail(&self) -> String {
        match self {
            DeskError::Hub(h) => h.public_detail(),
            DeskError::Transition(t) => t.message.clone(),
            other => other.to_string(),
        }
    }

    fn problem_type(&self) -> Option<(&'static str, &'static str)> {
        match self {
            DeskError::Transition(_) => {
                Some(("InvalidTransition", "The incident cannot make this move"))
            }
            DeskError::Task(_, TaskError::Waiting(_)) => {
                Some(("TaskWaiting", "The task waits for other tasks"))
            }
            _ => None,
        }
    }

    /// The moves that are allowed, by name, for a client to offer; the tasks a task
    /// waits for.
    fn extensions(&self) -> Map<String, Value> {
        let mut m = Map::new();
        match self {
            DeskError::Transition(t) => {
                m.insert("from".into(), json!(t.from));
                m.insert("to".into(), json!(t.to));
                m.insert("allowed".into(), json!(t.allowed));
            }
            DeskError::Task(_, TaskError::Waiting(w)) => {
                m.insert("waitingFor".into(), json!(w));
            }
            _ => {}
        }
        m
    }
}

impl ErrorCode for Open311Error {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
    fn public_detail(&self) -> String {
        self.description.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incident::{Status, TransitionError};

    #[test]
    fn a_refused_move_names_the_allowed_ones() {
        let e = DeskError::Transition(TransitionError {
            from: Status::Closed,
            to: Status::New,
            allowed: vec![Status::Reopened],
            message: "no".into(),
        });
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert_eq!(e.problem_type().map(|p| p.0), Some("InvalidTransition"));
        assert_eq!(e.extensions()["allowed"], json!(["reopened"]));
        let w = DeskError::Task("waits".into(), TaskError::Waiting(vec![0]));
        assert_eq!(w.extensions()["waitingFor"], json!([0]));
        let n = DeskError::Task("none".into(), TaskError::NoSuchTask(3));
        assert_eq!(n.kind(), ErrorKind::ResourceNotFound);
    }
}
