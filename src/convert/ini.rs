//! Reading a pgbouncer.ini the way PgBouncer does: `[section]` headers, `key = value`
//! lines, whole-line comments starting with `;` or `#`, and `%include file`.
//!
//! As in PgBouncer, `;` and `#` start a comment only at the beginning of a line (later on
//! they are part of the value), the value runs to the end of the line with surrounding
//! blanks removed, keys are made of letters, digits and `_ . - *` (a database name with
//! other characters is written in double quotes, `""` for a quote), and the section in
//! force carries into and out of an included file. An included file's relative path is
//! looked up next to the including file first and then in the current directory (where
//! PgBouncer looks).

use std::fmt;
use std::path::{Path, PathBuf};

use super::ConvertError;

/// How deeply `%include` may nest (PgBouncer stops at a similar depth); also what ends
/// an include loop.
pub(super) const MAX_INCLUDE_DEPTH: usize = 10;

/// Where a line of pgbouncer.ini (or an included file) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file, as named on the command line or resolved from `%include`.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
}

impl fmt::Display for Origin {
    /// `<file>:<line>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One `key = value` line, with the section it is in (lower-cased) and where it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub section: String,
    pub key: String,
    pub value: String,
    pub origin: Origin,
}

/// Reads `path` and everything it includes, in order.
pub(super) fn read(path: &Path) -> Result<Vec<Entry>, ConvertError> {
    let mut reader = Reader {
        section: None,
        entries: Vec::new(),
        stack: Vec::new(),
    };
    reader.file(path, None)?;
    Ok(reader.entries)
}

struct Reader {
    /// The section in force (`None` before the first header).
    section: Option<String>,
    entries: Vec<Entry>,
    /// Canonical paths of the files being read, outermost first (to catch loops).
    stack: Vec<PathBuf>,
}

impl Reader {
    fn file(&mut self, path: &Path, included_from: Option<&Origin>) -> Result<(), ConvertError> {
        let unreadable = |e: std::io::Error| match included_from {
            None => ConvertError::Read {
                file: path.to_path_buf(),
                source: e,
            },
            Some(origin) => ConvertError::Include {
                origin: origin.clone(),
                target: path.to_path_buf(),
                source: e,
            },
        };
        let bytes = std::fs::read(path).map_err(unreadable)?;
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if let Some(origin) = included_from {
            if self.stack.contains(&canonical) {
                return Err(syntax(origin, "%include loop: the file includes itself"));
            }
            if self.stack.len() >= MAX_INCLUDE_DEPTH {
                let message = format!("%include nested more than {MAX_INCLUDE_DEPTH} deep");
                return Err(syntax(origin, &message));
            }
        }
        let text = String::from_utf8(bytes).map_err(|e| {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
            let origin = Origin {
                file: path.to_path_buf(),
                line,
            };
            syntax(&origin, "not valid UTF-8")
        })?;
        self.stack.push(canonical);
        // A byte-order mark some editors write is not part of the first line.
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        for (i, raw) in text.lines().enumerate() {
            let origin = Origin {
                file: path.to_path_buf(),
                line: i + 1,
            };
            self.line(raw, origin)?;
        }
        self.stack.pop();
        Ok(())
    }

    fn line(&mut self, raw: &str, origin: Origin) -> Result<(), ConvertError> {
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            return Ok(());
        }
        if let Some(rest) = line.strip_prefix('%') {
            return self.directive(rest, &origin);
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some((name, after)) = rest.split_once(']') else {
                return Err(syntax(&origin, "section header without a closing ']'"));
            };
            let after = after.trim_start();
            if !(after.is_empty() || after.starts_with(';') || after.starts_with('#')) {
                return Err(syntax(&origin, "unexpected text after the section header"));
            }
            self.section = Some(name.trim().to_ascii_lowercase());
            return Ok(());
        }
        let (key, rest) = split_key(line).map_err(|message| syntax(&origin, &message))?;
        let Some(value) = rest.trim_start_matches([' ', '\t']).strip_prefix('=') else {
            return Err(syntax(
                &origin,
                &format!("expected \"key = value\" after \"{key}\""),
            ));
        };
        let Some(section) = self.section.clone() else {
            return Err(syntax(&origin, "setting before any [section] header"));
        };
        self.entries.push(Entry {
            section,
            key,
            value: value.trim().to_owned(),
            origin,
        });
        Ok(())
    }

    /// `%include <file>`; nothing else starts with `%`.
    fn directive(&mut self, rest: &str, origin: &Origin) -> Result<(), ConvertError> {
        let target = match rest.strip_prefix("include") {
            Some(target) if target.trim().is_empty() => {
                return Err(syntax(origin, "%include without a file name"))
            }
            Some(target) if target.starts_with([' ', '\t']) => target.trim(),
            _ => return Err(syntax(origin, "unknown directive (only %include is known)")),
        };
        let path = resolve_include(&origin.file, Path::new(target));
        self.file(&path, Some(origin))
    }
}

/// An included file: absolute as is; relative next to the including file if it exists
/// there, else relative to the current directory (PgBouncer's rule).
fn resolve_include(including: &Path, target: &Path) -> PathBuf {
    if target.is_absolute() {
        return target.to_path_buf();
    }
    let beside = including.parent().unwrap_or(Path::new("")).join(target);
    if beside.exists() {
        beside
    } else {
        target.to_path_buf()
    }
}

/// Splits a key (bare, or a double-quoted database name) from the rest of the line.
fn split_key(line: &str) -> Result<(String, &str), String> {
    if let Some(quoted) = line.strip_prefix('"') {
        let mut key = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '"' {
                key.push(c);
                continue;
            }
            if quoted[i + 1..].starts_with('"') {
                key.push('"');
                chars.next();
                continue;
            }
            if key.is_empty() {
                return Err("empty quoted name".to_owned());
            }
            return Ok((key, &quoted[i + 1..]));
        }
        return Err("quoted name without a closing '\"'".to_owned());
    }
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || "_.-*".contains(c)))
        .unwrap_or(line.len());
    if end == 0 {
        return Err(format!(
            "expected \"key = value\", a [section] or a comment, got \"{line}\""
        ));
    }
    Ok((line[..end].to_owned(), &line[end..]))
}

fn syntax(origin: &Origin, message: &str) -> ConvertError {
    ConvertError::Syntax {
        origin: origin.clone(),
        message: message.to_owned(),
    }
}
