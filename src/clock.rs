//! The wall clock, read in one place by the shell (daemon and CLI); the protocol core never
//! reads it and takes `now` as an argument instead.

use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch by the system clock; 0 if the clock is before 1970.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
