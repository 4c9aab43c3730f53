//! Errors of rule definitions. Every one names the field at fault.

/// A rule that cannot be accepted: `field` is a path into the rule
/// (`when.of[1].above`), or the source for text that does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct RuleError {
    pub field: String,
    pub message: String,
}

impl RuleError {
    pub fn new(field: &str, message: impl Into<String>) -> RuleError {
        RuleError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}
