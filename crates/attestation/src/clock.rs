//! An injectable clock: the system time, or a fixed instant (audits of old quotes, tests).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// UNIX-seconds clock shared by the services. Cloning shares the same instant.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    fixed: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The system clock.
    #[must_use]
    pub fn system() -> Self {
        Self { fixed: None }
    }

    /// A clock stopped at `unix_seconds` (move it with [`Clock::set`]).
    #[must_use]
    pub fn fixed(unix_seconds: i64) -> Self {
        Self {
            fixed: Some(Arc::new(AtomicI64::new(unix_seconds))),
        }
    }

    /// A fixed clock if `at` is given, else the system clock.
    #[must_use]
    pub fn from_option(at: Option<i64>) -> Self {
        at.map_or_else(Self::system, Self::fixed)
    }

    /// Moves a fixed clock (no effect on the system clock).
    pub fn set(&self, unix_seconds: i64) {
        if let Some(f) = &self.fixed {
            f.store(unix_seconds, Ordering::Relaxed);
        }
    }

    /// Whether the clock is fixed.
    #[must_use]
    pub fn is_fixed(&self) -> bool {
        self.fixed.is_some()
    }

    /// Now, in UNIX seconds.
    #[must_use]
    pub fn now(&self) -> i64 {
        match &self.fixed {
            Some(f) => f.load(Ordering::Relaxed),
            None => time::OffsetDateTime::now_utc().unix_timestamp(),
        }
    }
}
