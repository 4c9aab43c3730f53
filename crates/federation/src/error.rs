//! The federation's error type: what the broker refuses, what a registration's
//! validation refuses (naming the member), and the failures of a context source.

use citybrain_broker::BrokerError;
use citybrain_model::{ErrorCode, ErrorKind, ModelError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FederationError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Model(#[from] ModelError),
    /// An error answer that also names the context sources that failed.
    #[error("{0}")]
    Warned(Box<FederationError>, Vec<Warning>),
}

impl From<citybrain_access::Denied> for FederationError {
    fn from(d: citybrain_access::Denied) -> Self {
        FederationError::Model(d.into())
    }
}

impl ErrorCode for FederationError {
    fn kind(&self) -> ErrorKind {
        match self {
            FederationError::Broker(b) => b.kind(),
            FederationError::Model(m) => m.kind,
            FederationError::Warned(e, _) => e.kind(),
        }
    }

    fn public_detail(&self) -> String {
        match self {
            FederationError::Broker(b) => b.public_detail(),
            FederationError::Model(m) => m.detail.clone(),
            FederationError::Warned(e, _) => e.public_detail(),
        }
    }
}

impl FederationError {
    pub fn bad_data(detail: impl Into<String>) -> Self {
        FederationError::Model(ModelError::bad_data(detail))
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        FederationError::Model(ModelError::not_found(detail))
    }
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        FederationError::Model(ModelError::new(kind, detail))
    }
}

pub type Result<T, E = FederationError> = std::result::Result<T, E>;

/// An `NGSILD-Warning` (6.3.17) about one context source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 299 an error answer, 111 an invalid payload, 199 no answer in time.
    pub code: u16,
    /// The source's endpoint.
    pub agent: String,
    pub text: String,
}

impl Warning {
    /// The header value: `code agent "text"`.
    pub fn header_value(&self) -> String {
        let agent: String = self
            .agent
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .collect();
        let text: String = self
            .text
            .chars()
            .map(|c| {
                if c == '"' || !(' '..='~').contains(&c) {
                    '\''
                } else {
                    c
                }
            })
            .collect();
        format!("{} {} \"{}\"", self.code, agent, text)
    }
}
