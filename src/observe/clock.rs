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

/// True once `period` has passed since `since`, as seen at `now`: the same as
/// `now.saturating_duration_since(since) >= period` (a zero period has always
/// passed, even when `since` is later than `now`), in about half the
/// instructions (an addition and a comparison, no `Duration` built); the
/// checkout path asks it several times per transaction. A period too long to
/// add never passes.
#[inline]
pub fn has_elapsed(now: Instant, since: Instant, period: Duration) -> bool {
    period.is_zero() || since.checked_add(period).is_some_and(|due| now >= due)
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
    fn has_elapsed_agrees_with_the_duration_comparison() {
        let base = Instant::now();
        let ms = Duration::from_millis;
        for (since, now, period) in [
            (0, 0, 0),
            (0, 5, 5),
            (0, 5, 6),
            (3, 2, 0),
            (3, 2, 1),
            (10, 1_010, 1_000),
            (10, 1_009, 1_000),
        ] {
            let (since, now) = (base + ms(since), base + ms(now));
            assert_eq!(
                has_elapsed(now, since, ms(period)),
                now.saturating_duration_since(since) >= ms(period),
                "since {since:?} now {now:?} period {period}"
            );
        }
        let sub_nano = base + Duration::from_nanos(999_999_999);
        assert!(has_elapsed(
            sub_nano,
            base,
            Duration::from_nanos(999_999_999)
        ));
        assert!(!has_elapsed(sub_nano, base, Duration::from_secs(1)));
        assert!(!has_elapsed(base, base, Duration::MAX));
    }

    #[test]
    fn round_trips_within_a_millisecond_of_the_wall_clock() {
        // The base is taken on first use: well before `now`, or `now` would
        // round down to the "never" floor of 1 µs.
        let _ = base();
        std::thread::sleep(Duration::from_millis(2));
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
