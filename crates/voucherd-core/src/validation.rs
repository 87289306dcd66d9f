//! Field-level validation errors, collected so that a client learns about
//! every problem of a request at once instead of one per round trip.

use std::fmt;

/// One rejected field, named the way the wire names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every field error found in one input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    pub errors: Vec<FieldError>,
}

impl Invalid {
    pub fn one(field: impl Into<String>, message: impl Into<String>) -> Invalid {
        Invalid {
            errors: vec![FieldError {
                field: field.into(),
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                formatter.write_str("; ")?;
            }
            write!(formatter, "{}: {}", error.field, error.message)?;
        }
        Ok(())
    }
}

/// Collects field errors while a whole input is checked.
#[derive(Debug, Default)]
pub struct Collector {
    errors: Vec<FieldError>,
}

impl Collector {
    pub fn reject(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// Records the errors of a check that failed. A check that failed only
    /// because another one did repeats that one's error, so repeats are
    /// dropped.
    pub fn note<T>(&mut self, result: &Result<T, Invalid>) {
        if let Err(invalid) = result {
            for error in &invalid.errors {
                if !self.errors.contains(error) {
                    self.errors.push(error.clone());
                }
            }
        }
    }

    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, Invalid> {
        if self.errors.is_empty() {
            Ok(value())
        } else {
            Err(Invalid {
                errors: self.errors,
            })
        }
    }
}
