//! Why an event was skipped, rejected or failed.

use std::borrow::Cow;

/// Why an event was skipped, rejected or failed. `kind` groups events in the
/// summary; `detail` says what exactly was wrong with this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub kind: Cow<'static, str>,
    pub detail: String,
}

impl Reason {
    pub fn new(kind: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Reason {
        Reason {
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    pub fn plain(kind: impl Into<Cow<'static, str>>) -> Reason {
        Reason::new(kind, String::new())
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.detail.is_empty() {
            f.write_str(&self.kind)
        } else {
            write!(f, "{}: {}", self.kind, self.detail)
        }
    }
}
