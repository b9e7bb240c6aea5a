//! The benchmark's one clock.

use std::time::Instant;

/// Now, for measuring elapsed time.
#[allow(
    clippy::disallowed_methods,
    reason = "a benchmark measures elapsed time; nothing here reaches the domain"
)]
pub fn now() -> Instant {
    Instant::now()
}
