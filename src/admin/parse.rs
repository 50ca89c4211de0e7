//! Parsing admin console commands (PgBouncer's syntax, case-insensitive).

/// A SHOW variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    /// SHOW POOLS
    Pools,
    /// SHOW STATS
    Stats,
    /// SHOW DATABASES
    Databases,
    /// SHOW CONFIG
    Config,
    /// SHOW LISTS
    Lists,
    /// SHOW VERSION
    Version,
    /// SHOW USERS
    Users,
    /// SHOW CLIENTS
    Clients,
    /// SHOW SERVERS
    Servers,
    /// SHOW HOSTS (pgpool-rs): each database entry's hosts, roles and state.
    Hosts,
}

/// An admin console command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An empty query string.
    Empty,
    /// A read-only SHOW.
    Show(Show),
    /// Reload the config file.
    Reload,
    /// Stop the pooler (graceful).
    Shutdown,
    /// Close a database's pool; its clients get an error at their next transaction.
    Kill(String),
    /// Retire the server connections of one or all databases as they are released.
    Reconnect(Option<String>),
    /// Hold new transactions of one database or all, once running ones end.
    Pause(Option<String>),
    /// Undo PAUSE.
    Resume(Option<String>),
}

impl Command {
    /// True for commands only `admin_users` may run.
    pub fn needs_admin(&self) -> bool {
        !matches!(self, Command::Empty | Command::Show(_))
    }
}

/// Why a command was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not a known command.
    #[error("unknown command: {0}")]
    Unknown(String),
    /// A command missing its argument.
    #[error("{0} needs a database name")]
    MissingArgument(&'static str),
}

/// Parses one command; a trailing `;` is allowed.
pub fn parse(sql: &str) -> Result<Command, ParseError> {
    let text = sql.trim().trim_end_matches(';').trim();
    if text.is_empty() {
        return Ok(Command::Empty);
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let arg = words.get(1).map(|w| w.trim_matches('"').to_owned());
    let cmd = match upper.first().map(String::as_str) {
        Some("SHOW") => {
            let what = match upper.get(1).map(String::as_str) {
                Some("POOLS") => Show::Pools,
                Some("STATS") => Show::Stats,
                Some("DATABASES") => Show::Databases,
                Some("CONFIG") => Show::Config,
                Some("LISTS") => Show::Lists,
                Some("VERSION") => Show::Version,
                Some("USERS") => Show::Users,
                Some("CLIENTS") => Show::Clients,
                Some("SERVERS") => Show::Servers,
                Some("HOSTS") => Show::Hosts,
                _ => return Err(ParseError::Unknown(text.to_owned())),
            };
            if upper.len() > 2 {
                return Err(ParseError::Unknown(text.to_owned()));
            }
            Command::Show(what)
        }
        Some("RELOAD") if upper.len() == 1 => Command::Reload,
        Some("SHUTDOWN") if upper.len() == 1 => Command::Shutdown,
        Some("KILL") => Command::Kill(arg.ok_or(ParseError::MissingArgument("KILL"))?),
        Some("RECONNECT") => Command::Reconnect(arg),
        Some("PAUSE") => Command::Pause(arg),
        Some("RESUME") => Command::Resume(arg),
        _ => return Err(ParseError::Unknown(text.to_owned())),
    };
    if matches!(
        cmd,
        Command::Kill(_)
            | Command::Reconnect(Some(_))
            | Command::Pause(Some(_))
            | Command::Resume(Some(_))
    ) && upper.len() > 2
    {
        return Err(ParseError::Unknown(text.to_owned()));
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbouncer_commands() {
        assert_eq!(parse("SHOW POOLS;"), Ok(Command::Show(Show::Pools)));
        assert_eq!(parse("  show stats "), Ok(Command::Show(Show::Stats)));
        assert_eq!(parse("show Databases"), Ok(Command::Show(Show::Databases)));
        assert_eq!(parse("RELOAD"), Ok(Command::Reload));
        assert_eq!(parse("kill app"), Ok(Command::Kill("app".into())));
        assert_eq!(parse("RECONNECT"), Ok(Command::Reconnect(None)));
        assert_eq!(
            parse("reconnect app;"),
            Ok(Command::Reconnect(Some("app".into())))
        );
        assert_eq!(parse("PAUSE"), Ok(Command::Pause(None)));
        assert_eq!(parse("pause app;"), Ok(Command::Pause(Some("app".into()))));
        assert_eq!(parse("RESUME app"), Ok(Command::Resume(Some("app".into()))));
        assert_eq!(parse(""), Ok(Command::Empty));
        assert_eq!(parse(";"), Ok(Command::Empty));
    }

    #[test]
    fn rejects_unknown_and_incomplete() {
        assert!(matches!(parse("SHOW NOTHING"), Err(ParseError::Unknown(_))));
        assert!(matches!(parse("SELECT 1"), Err(ParseError::Unknown(_))));
        assert_eq!(parse("KILL"), Err(ParseError::MissingArgument("KILL")));
        assert!(parse("SHOW POOLS extra").is_err());
    }

    #[test]
    fn admin_only_commands() {
        assert!(!parse("SHOW POOLS").unwrap().needs_admin());
        assert!(parse("RELOAD").unwrap().needs_admin());
        assert!(parse("SHUTDOWN").unwrap().needs_admin());
        assert!(parse("KILL app").unwrap().needs_admin());
        assert!(parse("PAUSE").unwrap().needs_admin());
        assert!(parse("RESUME").unwrap().needs_admin());
    }
}
