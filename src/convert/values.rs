//! PgBouncer's value syntax, and turning its values into pool.toml's.
//!
//! - Integers as C's `strtol(value, 0)` reads them: decimal, `0x` hex, leading-`0` octal.
//! - Durations are seconds, possibly fractional (`2.5`, `1e3`); pool.toml wants whole
//!   seconds (or milliseconds for `_ms` keys), so a value is rounded to the nearest unit,
//!   never to 0 when it was not 0 (0 means "off"), with a note whenever precision is lost.
//!   A unit suffix as PostgreSQL writes them (`ms`, `s`, `min`, `h`, `d`) is also
//!   accepted, although PgBouncer itself only takes plain numbers.
//! - Booleans are integers (0 = off); `on/off`, `true/false`, `yes/no` are accepted too.
//! - Lists (admin_users) are comma-separated, blanks around names ignored.

/// Longest duration pool.toml accepts: 10 years (as the config reader).
pub(super) const MAX_SECS: u64 = 10 * 365 * 24 * 3600;

/// An integer written as `strtol` with base 0 reads it.
pub(super) fn integer(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (radix, digits) = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, hex)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(format!("expected an integer, got \"{text}\""));
    }
    let n = i64::from_str_radix(digits, radix)
        .map_err(|_| format!("the number \"{text}\" is too large"))?;
    Ok(if negative { -n } else { n })
}

/// A boolean: an integer (non-zero = true) or on/off, true/false, yes/no.
pub(super) fn boolean(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        other => integer(other)
            .map(|n| n != 0)
            .map_err(|_| format!("expected 0 or 1, got \"{text}\"")),
    }
}

/// A duration in seconds: a non-negative decimal number, optionally with a unit.
pub(super) fn seconds(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(t.len());
    let (number, unit) = (t[..split].trim_end(), t[split..].trim());
    let scale = match unit {
        "" | "s" | "sec" => 1.0,
        "us" => 1e-6,
        "ms" => 1e-3,
        "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(format!("unknown time unit \"{unit}\" in \"{text}\"")),
    };
    let plain = !number.is_empty()
        && number
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    let value: f64 = match number.parse() {
        Ok(v) if plain => v,
        _ => return Err(format!("expected a number of seconds, got \"{text}\"")),
    };
    if !value.is_finite() || value < 0.0 {
        return Err(format!(
            "expected a non-negative number of seconds, got \"{text}\""
        ));
    }
    Ok(value * scale)
}

/// A duration converted to a pool.toml integer, and a note when it had to be changed.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Converted {
    pub value: i64,
    pub note: Option<String>,
}

/// `secs` as whole seconds (or milliseconds when `millis`), at least `min` units.
/// `original` is the ini text, quoted in notes.
pub(super) fn duration(secs: f64, millis: bool, min: u64, original: &str) -> Converted {
    let (units, unit_name, max) = if millis {
        (secs * 1000.0, "ms", MAX_SECS * 1000)
    } else {
        (secs, "s", MAX_SECS)
    };
    let rounded = units.round();
    // A non-zero value must not become 0, which means "off".
    let mut value = if rounded == 0.0 && units > 0.0 {
        1.0
    } else {
        rounded
    };
    let mut note = None;
    if value > max as f64 {
        value = max as f64;
        note = Some(format!(
            "\"{original}\" is more than pool.toml allows; capped at {max} {unit_name} (10 years)"
        ));
    } else if value < min as f64 {
        value = min as f64;
        note = Some(format!(
            "\"{original}\" is below pool.toml's minimum; raised to {min} {unit_name}"
        ));
    } else if (value - units).abs() > 1e-9 {
        note = Some(format!(
            "\"{original}\" rounded to {value} {unit_name} (pool.toml takes whole {})",
            if millis { "milliseconds" } else { "seconds" }
        ));
    }
    Converted {
        value: value as i64,
        note,
    }
}

/// A comma-separated list, blanks trimmed, empty items left out.
pub(super) fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A note for a file path whose meaning changes between the two files: PgBouncer reads
/// a relative path from its working directory and expands `~`; pgpool-rs reads a relative
/// path from pool.toml's directory and expands nothing.
pub(super) fn path_note(path: &str) -> Option<String> {
    if path.starts_with('~') {
        Some(
            "PgBouncer expanded ~ to a home directory; pgpool-rs does not: write the full path"
                .to_owned(),
        )
    } else if !path.starts_with('/') {
        Some(
            "relative: PgBouncer read it from its working directory, pgpool-rs reads it \
             from this file's directory"
                .to_owned(),
        )
    } else {
        None
    }
}
