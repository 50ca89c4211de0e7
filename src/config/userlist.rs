//! The userlist (`auth.file`) in PgBouncer's format: `"user" "secret"` per line.
//!
//! Fields are double-quoted, `""` inside a field is a literal quote, anything after the
//! second field is ignored (as PgBouncer does), blank lines and lines starting with `;`
//! or `#` are comments. A secret is classified here but not decoded: SCRAM keys are
//! derived by the auth layer when the snapshot is built. No message ever contains a secret.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::error::{ConfigError, Problem};

/// A user's stored credential, as written in the userlist.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A plaintext password (usable with both md5 and SCRAM auth).
    Plain(String),
    /// The whole `md5<32 lowercase hex>` text: md5(password + user), PostgreSQL's format.
    Md5(String),
    /// The whole raw `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` text; its shape
    /// has been checked (base64 fields, 32-byte keys) but it is not decoded here.
    Scram(String),
}

impl Secret {
    /// The kind of secret, for logs and messages that must not show the secret itself.
    pub fn kind(&self) -> &'static str {
        match self {
            Secret::Plain(_) => "plain",
            Secret::Md5(_) => "md5",
            Secret::Scram(_) => "scram-sha-256",
        }
    }
}

impl fmt::Debug for Secret {
    /// Shows the kind only, so a logged `Userlist` leaks nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let variant = match self {
            Secret::Plain(_) => "Plain",
            Secret::Md5(_) => "Md5",
            Secret::Scram(_) => "Scram",
        };
        write!(f, "{variant}(<redacted>)")
    }
}

/// Users that may log in, with their secrets. Built once per (re)load.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Userlist {
    users: BTreeMap<String, Secret>,
}

impl Userlist {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Userlist, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, &e))?;
        Userlist::parse(&text, path)
    }

    /// Parses userlist text; `path` is used only in messages. Every malformed line is reported.
    pub fn parse(text: &str, path: &Path) -> Result<Userlist, ConfigError> {
        let mut users = BTreeMap::new();
        let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
        let mut problems = Vec::new();
        for (index, raw_line) in text.lines().enumerate() {
            let line = index + 1;
            let mut report = |user: Option<&str>, message: &str| {
                problems.push(Problem::new(path, Some(line), user, message));
            };
            let (user, secret) = match parse_line(raw_line) {
                Ok(None) => continue,
                Ok(Some(fields)) => fields,
                Err(LineError { user, message }) => {
                    report(user.as_deref(), message);
                    continue;
                }
            };
            let secret = match classify(secret) {
                Ok(secret) => secret,
                Err(message) => {
                    report(Some(&user), message);
                    continue;
                }
            };
            match first_line.entry(user.clone()) {
                Entry::Occupied(first) => {
                    let message = format!("duplicate user (first defined on line {})", first.get());
                    report(Some(&user), &message);
                }
                Entry::Vacant(slot) => {
                    slot.insert(line);
                    users.insert(user, secret);
                }
            }
        }
        if problems.is_empty() {
            Ok(Userlist { users })
        } else {
            Err(ConfigError::new(problems))
        }
    }

    /// The secret of `user`, if the user is listed.
    pub fn get(&self, user: &str) -> Option<&Secret> {
        self.users.get(user)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether no user is listed.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Every user and secret, ordered by user name (e.g. to derive SCRAM keys at load time).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Secret)> {
        self.users
            .iter()
            .map(|(user, secret)| (user.as_str(), secret))
    }
}

/// A malformed line: the user, when it could be read, and a message without secrets.
struct LineError {
    user: Option<String>,
    message: &'static str,
}

/// `Ok(None)` for blank and comment lines, else the user and raw secret.
fn parse_line(line: &str) -> Result<Option<(String, String)>, LineError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
        return Ok(None);
    }
    // A user field holding a quote may have swallowed the password (`"u""pw"`): omit it.
    let error = |user: Option<&str>, message| LineError {
        user: user.filter(|u| !u.contains('"')).map(str::to_owned),
        message,
    };
    let (user, rest) = match quoted(line) {
        Quoted::Field(user, rest) => (user, rest),
        Quoted::Missing => return Err(error(None, "expected \"user\" \"password\"")),
        Quoted::Unterminated => return Err(error(None, "unterminated quoted user name")),
    };
    if user.is_empty() {
        return Err(error(None, "empty user name"));
    }
    let after_user = rest.trim_start();
    if after_user.is_empty() {
        return Err(error(Some(&user), "missing password field"));
    }
    if after_user.len() == rest.len() {
        return Err(error(
            Some(&user),
            "expected whitespace between the user and password fields",
        ));
    }
    match quoted(after_user) {
        Quoted::Field(secret, _ignored) => Ok(Some((user, secret))),
        Quoted::Missing => Err(error(Some(&user), "password field must be double-quoted")),
        Quoted::Unterminated => Err(error(Some(&user), "unterminated quoted password")),
    }
}

enum Quoted<'a> {
    /// The unescaped field and what follows its closing quote.
    Field(String, &'a str),
    /// The text does not start with a quote.
    Missing,
    /// The closing quote is missing.
    Unterminated,
}

/// Reads one `"..."` field at the start of `text`, where `""` stands for `"`.
fn quoted(text: &str) -> Quoted<'_> {
    let Some(body) = text.strip_prefix('"') else {
        return Quoted::Missing;
    };
    let mut value = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '"' {
            value.push(c);
        } else if matches!(chars.peek(), Some((_, '"'))) {
            chars.next();
            value.push('"');
        } else {
            return Quoted::Field(value, &body[i + 1..]);
        }
    }
    Quoted::Unterminated
}

const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";

/// Bytes in a SHA-256 StoredKey or ServerKey.
const SCRAM_KEY_LEN: usize = 32;

/// Decides the kind of a secret, rejecting empty and malformed SCRAM ones.
fn classify(secret: String) -> Result<Secret, &'static str> {
    if let Some(rest) = secret.strip_prefix(SCRAM_PREFIX) {
        check_scram(rest)?;
        Ok(Secret::Scram(secret))
    } else if is_md5(&secret) {
        Ok(Secret::Md5(secret))
    } else if secret.is_empty() {
        Err("empty password")
    } else {
        Ok(Secret::Plain(secret))
    }
}

/// `md5` followed by 32 lowercase hex digits.
fn is_md5(secret: &str) -> bool {
    secret.strip_prefix("md5").is_some_and(|hex| {
        hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Checks `<iter>:<salt>$<StoredKey>:<ServerKey>` (after the `SCRAM-SHA-256$` prefix).
fn check_scram(rest: &str) -> Result<(), &'static str> {
    const SHAPE: &str = "malformed SCRAM secret (expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>)";
    let (params, keys) = rest.split_once('$').ok_or(SHAPE)?;
    let (iterations, salt) = params.split_once(':').ok_or(SHAPE)?;
    let (stored_key, server_key) = keys.split_once(':').ok_or(SHAPE)?;
    let iterations_ok = !iterations.is_empty()
        && iterations.bytes().all(|b| b.is_ascii_digit())
        && iterations.parse::<u32>().is_ok_and(|n| n > 0);
    if !iterations_ok {
        return Err("malformed SCRAM secret: the iteration count must be a positive integer");
    }
    match STANDARD.decode(salt) {
        Ok(bytes) if !bytes.is_empty() => {}
        _ => return Err("malformed SCRAM secret: the salt is not valid base64"),
    }
    for key in [stored_key, server_key] {
        match STANDARD.decode(key) {
            Ok(bytes) if bytes.len() == SCRAM_KEY_LEN => {}
            _ => {
                return Err(
                    "malformed SCRAM secret: StoredKey and ServerKey must be base64 of 32 bytes",
                )
            }
        }
    }
    Ok(())
}
