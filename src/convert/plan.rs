//! What the converted pool.toml will hold, before it is written out: the keys of each
//! section with the notes that explain them, the database entries, and every PgBouncer
//! setting that could not be carried over (with the reason).
//!
//! The mapping (`pgbouncer.rs`, `databases.rs`) fills a [`Plan`]; `emit.rs` renders it.

use toml_edit::Value;

use super::ini::Origin;

/// One key of a pool.toml section, with the notes written above it.
#[derive(Debug, Clone)]
pub(super) struct Key {
    /// The pool.toml key (`max_client_conn`).
    pub name: &'static str,
    /// Its value, rendered by toml_edit so that it reads back exactly.
    pub value: Value,
    /// Why the value is what it is, when that is not obvious (`# note: ...` lines).
    pub notes: Vec<String>,
}

/// A section of pool.toml (`[listen]`, `[auth]`, `[pool]`): keys in the order they are set.
#[derive(Debug, Clone, Default)]
pub(super) struct Section {
    pub keys: Vec<Key>,
    /// Notes about the section as a whole (written under its header).
    pub notes: Vec<String>,
}

impl Section {
    /// Sets `name` (replacing an earlier value and its notes).
    pub fn set(&mut self, name: &'static str, value: impl Into<Value>) {
        self.set_noted(name, value, None);
    }

    /// Sets `name` with an explanatory note.
    pub fn set_noted(&mut self, name: &'static str, value: impl Into<Value>, note: Option<String>) {
        let key = Key {
            name,
            value: value.into(),
            notes: note.into_iter().collect(),
        };
        match self.keys.iter_mut().find(|k| k.name == name) {
            Some(existing) => *existing = key,
            None => self.keys.push(key),
        }
    }

    /// Adds a note to `name` (which must have been set; otherwise the note is dropped).
    pub fn note(&mut self, name: &str, note: String) {
        if let Some(key) = self.keys.iter_mut().find(|k| k.name == name) {
            key.notes.push(note);
        }
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.keys.iter().find(|k| k.name == name).map(|k| &k.value)
    }
}

/// One `[databases.<name>]` entry.
#[derive(Debug, Clone)]
pub(super) struct Database {
    /// The name clients connect to.
    pub name: String,
    /// Where it came from in the ini file.
    pub origin: Origin,
    /// Keys of the entry (`host`, `port`, ...).
    pub section: Section,
    /// Notes written above the entry's header.
    pub notes: Vec<String>,
    /// When set, the entry is written commented out, preceded by this reason: it could
    /// not be carried over as is (a Unix socket, a reserved name, ...) but is kept as a
    /// starting point for a hand edit.
    pub disabled: Option<String>,
}

/// A PgBouncer setting with no pool.toml equivalent.
#[derive(Debug, Clone)]
pub(super) struct Dropped {
    /// What it was, as the user would recognise it (`logfile`, `[users] alice`,
    /// `[databases] app: client_encoding`).
    pub what: String,
    /// Its value (passwords already redacted).
    pub value: String,
    /// Why it is not carried over and what to do instead.
    pub why: String,
    /// Where it was set.
    pub origin: Origin,
}

/// The converted configuration.
#[derive(Debug, Clone, Default)]
pub(super) struct Plan {
    pub listen: Section,
    pub auth: Section,
    pub pool: Section,
    pub databases: Vec<Database>,
    pub dropped: Vec<Dropped>,
}

impl Plan {
    /// Records a setting that is not carried over.
    pub fn drop_setting(
        &mut self,
        what: impl Into<String>,
        value: impl Into<String>,
        why: impl Into<String>,
        origin: &Origin,
    ) {
        self.dropped.push(Dropped {
            what: what.into(),
            value: value.into(),
            why: why.into(),
            origin: origin.clone(),
        });
    }
}
