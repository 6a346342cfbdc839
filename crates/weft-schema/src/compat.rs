//! Compatibility levels on top of the per-format `can_read` checkers.

use std::fmt;
use std::str::FromStr;

use crate::{Incompatibility, ParsedSchema};

/// The registry's compatibility levels, as the Confluent API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompatibilityLevel {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

impl CompatibilityLevel {
    pub const ALL: [CompatibilityLevel; 7] = [
        CompatibilityLevel::None,
        CompatibilityLevel::Backward,
        CompatibilityLevel::BackwardTransitive,
        CompatibilityLevel::Forward,
        CompatibilityLevel::ForwardTransitive,
        CompatibilityLevel::Full,
        CompatibilityLevel::FullTransitive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CompatibilityLevel::None => "NONE",
            CompatibilityLevel::Backward => "BACKWARD",
            CompatibilityLevel::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityLevel::Forward => "FORWARD",
            CompatibilityLevel::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityLevel::Full => "FULL",
            CompatibilityLevel::FullTransitive => "FULL_TRANSITIVE",
        }
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Backward
                | CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Forward
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name is not a compatibility level (the registry answers 42203).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid compatibility level {0:?}")]
pub struct InvalidLevel(pub String);

impl FromStr for CompatibilityLevel {
    type Err = InvalidLevel;

    fn from_str(s: &str) -> Result<Self, InvalidLevel> {
        CompatibilityLevel::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| InvalidLevel(s.to_owned()))
    }
}

/// Why `new` may not follow `previous` (oldest first) under `level`; empty when it may.
///
/// Non-transitive levels check against the newest previous version only; transitive ones
/// against every version. BACKWARD: `new` reads what the old ones wrote. FORWARD: the old
/// ones read what `new` writes. FULL: both.
pub fn check_compatibility(
    level: CompatibilityLevel,
    new: &ParsedSchema,
    previous: &[&ParsedSchema],
) -> Vec<Incompatibility> {
    let against: &[&ParsedSchema] = if level.transitive() {
        previous
    } else {
        previous.last().map(std::slice::from_ref).unwrap_or(&[])
    };
    let mut reasons = Vec::new();
    // Newest first: the most relevant reasons lead the list.
    for old in against.iter().rev() {
        // The checkers speak of "reader" and "writer"; say which of the two schemas is
        // which, so a FULL verdict tells the user what direction broke.
        if level.backward() {
            reasons.extend(new.can_read(old).into_iter().map(|r| directed(r, BACKWARD)));
        }
        if level.forward() {
            reasons.extend(old.can_read(new).into_iter().map(|r| directed(r, FORWARD)));
        }
    }
    reasons
}

const BACKWARD: &str = "the new schema cannot read data written with an earlier version";
const FORWARD: &str = "an earlier version cannot read data written with the new schema";

fn directed(mut reason: Incompatibility, direction: &str) -> Incompatibility {
    reason.message = format!("{direction}: {}", reason.message);
    reason
}
