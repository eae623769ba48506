//! Error types: configuration errors found while building a pipeline, and
//! run errors that a pipeline returns when a step fails.

use std::fmt;

/// A configuration value that paipa refuses, found while building.
///
/// The message names the field and the value, so that a zero worker count or
/// a zero chunk size is reported where it was written, not as a panic deep
/// inside a worker.
///
/// ```
/// let err = paipa::iter::chunk::<std::ops::Range<u32>>(0).err().unwrap();
/// assert_eq!(err.to_string(), "invalid chunk size: 0 (must be at least 1)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    value: String,
    rule: &'static str,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, value: impl fmt::Display, rule: &'static str) -> Self {
        ConfigError {
            field,
            value: value.to_string(),
            rule,
        }
    }

    /// The name of the refused field, such as `"chunk size"` or `"workers"`.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The refused value, as written.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {} ({})", self.field, self.value, self.rule)
    }
}

impl std::error::Error for ConfigError {}
