//! Session parameters: what a client expects to be in force (its startup
//! parameters and what the server reported to it) and what a server connection
//! actually has, so that checkout can SET only the difference.

use std::fmt::Write as _;

/// Reported parameters (GUC_REPORT) that a client may set and that the pooler
/// keeps in line across server connections. Lowercase.
const TRACKED_REPORTED: &[&str] = &[
    "application_name",
    "client_encoding",
    "datestyle",
    "intervalstyle",
    "standard_conforming_strings",
    "timezone",
];

/// Startup keys that are not session parameters.
const NOT_PARAMETERS: &[&str] = &["user", "database", "options", "replication"];

/// True if `name` is a parameter the server reports with ParameterStatus and
/// the pooler keeps in line between connections.
pub fn is_tracked_reported(name_lower: &str) -> bool {
    TRACKED_REPORTED.contains(&name_lower)
}

/// An ordered set of parameter name (lowercase) → value pairs, with a
/// fingerprint of its contents so "already in sync" is one comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamSet {
    entries: Vec<(Box<str>, Box<str>)>,
    fingerprint: u64,
}

impl ParamSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `name` (lowercase).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .binary_search_by(|(k, _)| (**k).cmp(name))
            .ok()
            .map(|i| &*self.entries[i].1)
    }

    /// Sets `name` (lowercased here) to `value`.
    pub fn set(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        match self
            .entries
            .binary_search_by(|(k, _)| (**k).cmp(name.as_str()))
        {
            Ok(i) => {
                if *self.entries[i].1 == *value {
                    return;
                }
                self.entries[i].1 = value.into();
            }
            Err(i) => self.entries.insert(i, (name.into(), value.into())),
        }
        self.refresh_fingerprint();
    }

    /// Removes `name` (lowercase).
    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self.entries.binary_search_by(|(k, _)| (**k).cmp(name)) {
            self.entries.remove(i);
            self.refresh_fingerprint();
        }
    }

    /// A hash of the contents; equal sets have equal fingerprints. Never 0,
    /// which [`ServerParams`] uses for "not known to match anything".
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint | 1
    }

    fn refresh_fingerprint(&mut self) {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.entries.hash(&mut h);
        self.fingerprint = h.finish();
    }

    /// Iterates name/value pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (&**k, &**v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Why a client's startup parameters were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// A name that is not a plain identifier (it would be spliced into SET).
    #[error("invalid startup parameter name \"{0}\"")]
    BadName(String),
    /// An `options` value the pooler cannot interpret.
    #[error("unsupported value in startup option \"options\": {0}")]
    BadOptions(String),
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// Splits a startup `options` string into `-c name=value` / `--name=value`
/// settings. Backslash escapes the next character, as in PostgreSQL.
pub fn parse_options(options: &str) -> Result<Vec<(String, String)>, ParamError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut chars = options.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_ascii_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    let mut out = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if w == "-c" {
            it.next()
                .ok_or_else(|| ParamError::BadOptions("-c without a setting".into()))?
        } else if let Some(rest) = w.strip_prefix("--") {
            rest.to_owned()
        } else if let Some(rest) = w.strip_prefix("-c") {
            rest.to_owned()
        } else {
            return Err(ParamError::BadOptions(w));
        };
        let (name, value) = setting
            .split_once('=')
            .ok_or_else(|| ParamError::BadOptions(setting.clone()))?;
        let name = name.replace('-', "_");
        out.push((name, value.to_owned()));
    }
    Ok(out)
}

/// The parameters a client asked for at startup (including `options -c`),
/// validated and lowercased.
pub fn client_startup_params(params: &[(String, String)]) -> Result<ParamSet, ParamError> {
    let mut set = ParamSet::new();
    for (k, v) in params {
        let lower = k.to_ascii_lowercase();
        if NOT_PARAMETERS.contains(&lower.as_str()) || lower.starts_with("_pq_.") {
            if lower == "options" {
                for (name, value) in parse_options(v)? {
                    if !valid_name(&name) {
                        return Err(ParamError::BadName(name));
                    }
                    set.set(&name, &value);
                }
            }
            continue;
        }
        if !valid_name(&lower) {
            return Err(ParamError::BadName(k.clone()));
        }
        set.set(&lower, v);
    }
    Ok(set)
}

/// What a server connection has in force, as far as the pooler knows.
#[derive(Debug, Clone, Default)]
pub struct ServerParams {
    /// Values the server reported with ParameterStatus (canonical names kept
    /// separately for re-sending to clients).
    pub reported: ParamSet,
    /// Values of non-reported parameters the pooler SET on this connection.
    /// `None` as a value means "unknown" (after a custom reset query).
    pub custom: Vec<(Box<str>, Option<Box<str>>)>,
    /// Fingerprint of the wanted set this connection was last brought in
    /// line with; 0 after any change on the server side.
    pub synced_with: u64,
}

impl ServerParams {
    /// Records a ParameterStatus from the server.
    pub fn reported_changed(&mut self, name: &str, value: &str) {
        self.synced_with = 0;
        self.reported.set(name, value);
    }

    fn custom_value(&self, name: &str) -> Option<Option<&str>> {
        self.custom
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| v.as_deref())
    }

    /// After a reset query: custom settings are back to their defaults when the
    /// query is known to reset everything, unknown otherwise.
    pub fn after_reset(&mut self, resets_all: bool) {
        self.synced_with = 0;
        if resets_all {
            self.custom.clear();
        } else {
            for (_, v) in &mut self.custom {
                *v = None;
            }
        }
    }

    /// Builds the SET/RESET statements that make this connection match
    /// `wanted`, or `None` when it already does. Also returns the names SET.
    pub fn diff_sql(&self, wanted: &ParamSet) -> Option<String> {
        if self.synced_with == wanted.fingerprint() {
            return None;
        }
        // set_config() takes the value as PostgreSQL takes it from startup
        // options (a list such as search_path stays a list), unlike SET 'x'.
        let mut sets = String::new();
        for (k, v) in wanted.iter() {
            let current = if is_tracked_reported(k) {
                self.reported.get(k).map(Some)
            } else {
                self.custom_value(k)
            };
            if current != Some(Some(v)) {
                sets.push_str(if sets.is_empty() { "SELECT " } else { ", " });
                // An E'' literal reads the same whatever the connection's
                // standard_conforming_strings (which a client may turn off).
                let _ = write!(
                    sets,
                    "set_config('{k}', E'{}', false)",
                    v.replace('\\', "\\\\").replace('\'', "''")
                );
            }
        }
        let mut sql = String::new();
        for (k, _) in &self.custom {
            if wanted.get(k).is_none() {
                let _ = write!(sql, "RESET {k};");
            }
        }
        if !sets.is_empty() {
            sql.push_str(&sets);
        }
        (!sql.is_empty()).then_some(sql)
    }

    /// Records that the statements from [`Self::diff_sql`] succeeded.
    pub fn applied(&mut self, wanted: &ParamSet) {
        self.custom.retain(|(k, _)| wanted.get(k).is_some());
        for (k, v) in wanted.iter() {
            if is_tracked_reported(k) {
                continue;
            }
            match self.custom.iter_mut().find(|(ck, _)| &**ck == k) {
                Some(entry) => entry.1 = Some(v.into()),
                None => self.custom.push((k.into(), Some(v.into()))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn options_are_split_like_postgres() {
        let o =
            parse_options(r"-c search_path=a,b --statement-timeout=5s -cwork_mem=64kB -c x=a\ b")
                .unwrap();
        assert_eq!(
            o,
            pairs(&[
                ("search_path", "a,b"),
                ("statement_timeout", "5s"),
                ("work_mem", "64kB"),
                ("x", "a b")
            ])
        );
        assert!(parse_options("-c").is_err());
        assert!(parse_options("garbage").is_err());
    }

    #[test]
    fn startup_params_skip_identity_keys_and_reject_bad_names() {
        let set = client_startup_params(&pairs(&[
            ("user", "u"),
            ("database", "d"),
            ("TimeZone", "UTC"),
            ("options", "-c search_path=s"),
            ("_pq_.x", "1"),
        ]))
        .unwrap();
        assert_eq!(set.get("timezone"), Some("UTC"));
        assert_eq!(set.get("search_path"), Some("s"));
        assert_eq!(set.len(), 2);
        assert!(client_startup_params(&pairs(&[("a;drop", "x")])).is_err());
    }

    #[test]
    fn diff_sets_only_what_differs() {
        let mut server = ServerParams::default();
        server.reported_changed("TimeZone", "UTC");
        server.reported_changed("application_name", "");
        let mut wanted = ParamSet::new();
        wanted.set("timezone", "UTC");
        assert_eq!(server.diff_sql(&wanted), None);
        wanted.set("application_name", "it's");
        wanted.set("search_path", "s1");
        assert_eq!(
            server.diff_sql(&wanted).unwrap(),
            "SELECT set_config('application_name', E'it''s', false), set_config('search_path', E's1', false)"
        );
        server.applied(&wanted);
        server.reported_changed("application_name", "it's");
        assert_eq!(server.diff_sql(&wanted), None);
        let mut other = ParamSet::new();
        other.set("timezone", "UTC");
        other.set("application_name", "it's");
        assert_eq!(server.diff_sql(&other).unwrap(), "RESET search_path;");
        server.after_reset(false);
        assert_eq!(
            server.diff_sql(&wanted).unwrap(),
            "SELECT set_config('search_path', E's1', false)"
        );
    }

    #[test]
    fn values_are_quoted_whatever_standard_conforming_strings() {
        let server = ServerParams::default();
        let mut wanted = ParamSet::new();
        wanted.set("application_name", r"x\'); DROP TABLE t; --");
        assert_eq!(
            server.diff_sql(&wanted).unwrap(),
            r"SELECT set_config('application_name', E'x\\''); DROP TABLE t; --', false)"
        );
    }
}
