//! Typed, located reading of a parsed TOML tree (`toml_edit` keeps byte spans).
//!
//! A [`Section`] is one TOML table; its getters return the value of a key converted to
//! the type we need, or `None` when the key is absent or wrong — in which case the
//! problem, with file, line and dotted key, has been recorded in the [`Reader`]. Callers
//! fall back to the default and keep going, so one pass reports every problem.
//! [`Lines`] answers "which line is this key on" for checks made after reading.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml_edit::{Item, TableLike, Value};

use super::error::Problem;

/// Longest accepted duration (10 years), so that `Instant + d` can never overflow downstream.
pub(super) const MAX_DURATION_SECS: u64 = 10 * 365 * 24 * 3600;

/// Collects the problems of one file and maps byte offsets to 1-based lines.
pub(super) struct Reader<'a> {
    file: &'a Path,
    line_starts: Vec<usize>,
    problems: Vec<Problem>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(file: &'a Path, text: &str) -> Reader<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Reader {
            file,
            line_starts,
            problems: Vec::new(),
        }
    }

    /// The 1-based line holding byte `offset`.
    pub(super) fn line_of(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }

    /// The line a span starts on, if there is a span.
    pub(super) fn span_line(&self, span: Option<Range<usize>>) -> Option<usize> {
        span.map(|s| self.line_of(s.start))
    }

    /// Records a problem in this file.
    pub(super) fn report(&mut self, line: Option<usize>, key: &str, message: impl Into<String>) {
        let key = (!key.is_empty()).then_some(key);
        self.problems
            .push(Problem::new(self.file, line, key, message.into()));
    }

    /// The problems recorded so far, consuming the reader.
    pub(super) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }
}

/// Appends `key` to a dotted path, quoting it when it is not a bare TOML key.
pub(super) fn join(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""))
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// What a TOML item is, for "expected X, got Y" messages.
fn type_name(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
        Item::Value(v) => value_type_name(v),
    }
}

fn value_type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "a table",
    }
}

/// One TOML table being read (or an absent one, whose getters all return `None`).
pub(super) struct Section<'t> {
    path: String,
    line: Option<usize>,
    table: Option<&'t dyn TableLike>,
}

impl<'t> Section<'t> {
    /// The document's top level.
    pub(super) fn root(table: &'t dyn TableLike) -> Section<'t> {
        Section {
            path: String::new(),
            line: None,
            table: Some(table),
        }
    }

    /// Dotted path of this table (`databases.app`).
    pub(super) fn path(&self) -> &str {
        &self.path
    }

    /// Line of the table's header (or of its key, for inline and dotted tables).
    pub(super) fn line(&self) -> Option<usize> {
        self.line
    }

    /// Dotted path of one of this table's keys.
    pub(super) fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Whether the key is present (with any type).
    pub(super) fn has(&self, key: &str) -> bool {
        self.table.is_some_and(|t| t.contains_key(key))
    }

    fn entry(&self, rd: &Reader<'_>, key: &str) -> Option<(Option<usize>, &'t Item)> {
        let (k, item) = self.table?.get_key_value(key)?;
        let line = rd
            .span_line(k.span())
            .or_else(|| rd.span_line(item.span()))
            .or(self.line);
        Some((line, item))
    }

    /// The line of `key`, or of this table's header when the key is absent.
    pub(super) fn key_line(&self, rd: &Reader<'_>, key: &str) -> Option<usize> {
        self.entry(rd, key).and_then(|(line, _)| line).or(self.line)
    }

    /// Records a problem about `key`, located at its line (or this table's header).
    pub(super) fn report(&self, rd: &mut Reader<'_>, key: &str, message: impl Into<String>) {
        let line = self.key_line(rd, key);
        rd.report(line, &self.key_path(key), message);
    }

    /// Records every key not in `known` as unknown.
    pub(super) fn check_known(&self, rd: &mut Reader<'_>, known: &[&str]) {
        let Some(table) = self.table else { return };
        for (key, _) in table.iter() {
            if !known.contains(&key) {
                let message = format!("unknown key (expected one of {})", known.join(", "));
                self.report(rd, key, message);
            }
        }
    }

    fn value(&self, rd: &mut Reader<'_>, key: &str, expected: &str) -> Option<&'t Value> {
        let (line, item) = self.entry(rd, key)?;
        match item {
            Item::Value(value) => Some(value),
            other => {
                let message = format!("expected {expected}, got {}", type_name(other));
                rd.report(line, &self.key_path(key), message);
                None
            }
        }
    }

    fn wrong_type(&self, rd: &mut Reader<'_>, key: &str, expected: &str, got: &Value) {
        let message = format!("expected {expected}, got {}", value_type_name(got));
        self.report(rd, key, message);
    }

    /// A string value.
    pub(super) fn string(&self, rd: &mut Reader<'_>, key: &str) -> Option<String> {
        match self.value(rd, key, "a string")? {
            Value::String(s) => Some(s.value().clone()),
            other => {
                self.wrong_type(rd, key, "a string", other);
                None
            }
        }
    }

    /// A boolean value.
    pub(super) fn boolean(&self, rd: &mut Reader<'_>, key: &str) -> Option<bool> {
        match self.value(rd, key, "a boolean (true or false)")? {
            Value::Boolean(b) => Some(*b.value()),
            other => {
                self.wrong_type(rd, key, "a boolean (true or false)", other);
                None
            }
        }
    }

    /// An integer within `min..=max`.
    fn integer(&self, rd: &mut Reader<'_>, key: &str, min: i64, max: i64) -> Option<i64> {
        let n = match self.value(rd, key, "an integer")? {
            Value::Integer(n) => *n.value(),
            other => {
                self.wrong_type(rd, key, "an integer", other);
                return None;
            }
        };
        let message = if n < 0 && min >= 0 {
            format!("must not be negative, got {n}")
        } else if n < min {
            format!("must be at least {min}, got {n}")
        } else if n > max {
            format!("must be at most {max}, got {n}")
        } else {
            return Some(n);
        };
        self.report(rd, key, message);
        None
    }

    /// A count (pool sizes, limits): a non-negative integer of at least `min`.
    pub(super) fn count(&self, rd: &mut Reader<'_>, key: &str, min: u32) -> Option<u32> {
        let n = self.integer(rd, key, i64::from(min), i64::from(u32::MAX))?;
        u32::try_from(n).ok()
    }

    /// A TCP port, 1..=65535.
    pub(super) fn port(&self, rd: &mut Reader<'_>, key: &str) -> Option<u16> {
        let n = self.integer(rd, key, 1, i64::from(u16::MAX))?;
        u16::try_from(n).ok()
    }

    /// A duration: integer seconds, or milliseconds when the key ends in `_ms`; at least
    /// `min` of that unit.
    pub(super) fn duration(&self, rd: &mut Reader<'_>, key: &str, min: u32) -> Option<Duration> {
        let millis = key.ends_with("_ms");
        let max = if millis {
            MAX_DURATION_SECS * 1000
        } else {
            MAX_DURATION_SECS
        };
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let n = self.integer(rd, key, i64::from(min), max)?;
        let n = u64::try_from(n).ok()?;
        Some(if millis {
            Duration::from_millis(n)
        } else {
            Duration::from_secs(n)
        })
    }

    /// One of an enum's spellings.
    pub(super) fn choice<T: Copy>(
        &self,
        rd: &mut Reader<'_>,
        key: &str,
        all: &[(T, &str)],
    ) -> Option<T> {
        let text = self.string(rd, key)?;
        if let Some((value, _)) = all.iter().find(|(_, name)| *name == text) {
            return Some(*value);
        }
        let names: Vec<&str> = all.iter().map(|(_, name)| *name).collect();
        let message = format!(
            "invalid value \"{text}\" (expected one of {})",
            names.join(", ")
        );
        self.report(rd, key, message);
        None
    }

    /// An array of strings.
    pub(super) fn strings(&self, rd: &mut Reader<'_>, key: &str) -> Option<Vec<String>> {
        const EXPECTED: &str = "an array of strings";
        let array = match self.value(rd, key, EXPECTED)? {
            Value::Array(array) => array,
            other => {
                self.wrong_type(rd, key, EXPECTED, other);
                return None;
            }
        };
        let mut out = Vec::with_capacity(array.len());
        for (i, element) in array.iter().enumerate() {
            match element {
                Value::String(s) => out.push(s.value().clone()),
                other => {
                    let message = format!(
                        "expected {EXPECTED}, but element {} is {}",
                        i + 1,
                        value_type_name(other)
                    );
                    self.report(rd, key, message);
                    return None;
                }
            }
        }
        Some(out)
    }

    /// A sub-table; an absent section when the key is missing or not a table.
    pub(super) fn section(&self, rd: &mut Reader<'_>, key: &str) -> Section<'t> {
        let mut section = Section {
            path: self.key_path(key),
            line: None,
            table: None,
        };
        if let Some((line, item)) = self.entry(rd, key) {
            section.line = line;
            match item.as_table_like() {
                Some(table) => section.table = Some(table),
                None => {
                    let message = format!("expected a table, got {}", type_name(item));
                    rd.report(line, &section.path, message);
                }
            }
        }
        section
    }

    /// Every key of this table as a sub-table, in file order (for `[databases.*]`).
    pub(super) fn sections(&self, rd: &mut Reader<'_>) -> Vec<(String, Section<'t>)> {
        let Some(table) = self.table else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (key, item) in table.iter() {
            let section = self.section(rd, key);
            if item.is_table_like() {
                out.push((key.to_owned(), section));
            }
        }
        out
    }
}

/// Line of every key in the document, by dotted path, for checks made after reading.
pub(super) struct Lines(BTreeMap<String, usize>);

impl Lines {
    /// Indexes every key of `root`, recursing into tables.
    pub(super) fn index(rd: &Reader<'_>, root: &dyn TableLike) -> Lines {
        let mut lines = Lines(BTreeMap::new());
        lines.walk(rd, root, "");
        lines
    }

    fn walk(&mut self, rd: &Reader<'_>, table: &dyn TableLike, prefix: &str) {
        for (key, item) in table.iter() {
            let path = join(prefix, key);
            let key_span = table.get_key_value(key).and_then(|(k, _)| k.span());
            if let Some(line) = rd.span_line(key_span).or_else(|| rd.span_line(item.span())) {
                self.0.insert(path.clone(), line);
            }
            if let Some(sub) = item.as_table_like() {
                self.walk(rd, sub, &path);
            }
        }
    }

    /// The line of the key at `path` (`["databases", "app", "pool_size"]`), or of its
    /// nearest enclosing table that appears in the file.
    pub(super) fn find(&self, path: &[&str]) -> Option<usize> {
        (1..=path.len()).rev().find_map(|n| {
            let dotted = path[..n].iter().fold(String::new(), |acc, k| join(&acc, k));
            self.0.get(&dotted).copied()
        })
    }
}
