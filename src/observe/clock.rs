//! Monotonic instants as wall-clock times. The transaction path reads the
//! clock once per event it times (an `Instant`); the console turns those
//! into wall-clock times only when it shows them, against one pairing of
//! `Instant` and `SystemTime` taken when the process first asked.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

fn base() -> &'static (Instant, SystemTime) {
    static BASE: OnceLock<(Instant, SystemTime)> = OnceLock::new();
    BASE.get_or_init(|| (Instant::now(), SystemTime::now()))
}

/// Microseconds from the process's clock base to `at` (at least 1, so that
/// 0 can mean "never").
pub fn micros_since_base(at: Instant) -> u64 {
    let us = at.saturating_duration_since(base().0).as_micros();
    u64::try_from(us).unwrap_or(u64::MAX).max(1)
}

/// The wall-clock time of a value from [`micros_since_base`].
pub fn wall_time(micros: u64) -> SystemTime {
    base().1 + Duration::from_micros(micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_within_a_millisecond_of_the_wall_clock() {
        let now = Instant::now();
        let wall = wall_time(micros_since_base(now));
        let diff = match SystemTime::now().duration_since(wall) {
            Ok(d) => d,
            Err(e) => e.duration(),
        };
        assert!(diff < Duration::from_millis(50), "{diff:?}");
        let later = micros_since_base(now + Duration::from_millis(5));
        assert_eq!(later - micros_since_base(now), 5_000);
    }
}
