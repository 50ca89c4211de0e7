//! The connect strings of `[databases]` and `[users]`: `key=value` pairs separated by
//! blanks, a value optionally in single quotes with `''` for a quote, as PgBouncer reads
//! them (not libpq: no backslash escapes, no empty values).

/// Splits a connect string into its `(key, value)` pairs, in order. Errors are plain
/// messages; the caller adds the file and line.
pub(super) fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut rest = text.trim_start_matches(is_blank);
    while !rest.is_empty() {
        let key_end = rest
            .find(|c: char| c == '=' || is_blank(c))
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        let after_key = rest[key_end..].trim_start_matches(is_blank);
        let Some(after_eq) = after_key.strip_prefix('=') else {
            return Err(format!("expected \"{key}=value\" in the connect string"));
        };
        if key.is_empty() {
            return Err("a connect string parameter has no name before '='".to_owned());
        }
        let after_eq = after_eq.trim_start_matches(is_blank);
        let (value, after_value) = match after_eq.strip_prefix('\'') {
            Some(quoted) => unquote(quoted)
                .ok_or_else(|| format!("{key}: the quoted value has no closing quote"))?,
            None => {
                let end = after_eq.find(is_blank).unwrap_or(after_eq.len());
                (after_eq[..end].to_owned(), &after_eq[end..])
            }
        };
        if value.is_empty() {
            return Err(format!("{key}: empty value"));
        }
        pairs.push((key.to_owned(), value));
        rest = after_value.trim_start_matches(is_blank);
    }
    Ok(pairs)
}

/// The part of a quoted value after the opening quote: the value and what follows the
/// closing quote, or `None` when the quote is not closed.
fn unquote(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        if c != '\'' {
            value.push(c);
        } else if text[i + 1..].starts_with('\'') {
            value.push('\'');
            chars.next();
        } else {
            return Some((value, &text[i + 1..]));
        }
    }
    None
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `text` with the values of `password=` pairs replaced by `<redacted>` (for comments).
/// Text that does not parse is replaced entirely: it may contain a password.
pub(super) fn redacted(text: &str) -> String {
    match parse(text) {
        Ok(pairs) => pairs
            .iter()
            .map(|(k, v)| {
                if k == "password" {
                    format!("{k}=<redacted>")
                } else {
                    format!("{k}={}", quote(v))
                }
            })
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => "<unparsable connect string>".to_owned(),
    }
}

/// A value as it would be written in a connect string (quoted when it must be).
pub(super) fn quote(value: &str) -> String {
    if value.contains([' ', '\t', '\'']) {
        format!("'{}'", value.replace('\'', "''"))
    } else {
        value.to_owned()
    }
}
