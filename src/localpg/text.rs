//! Text helpers for [`super::LocalPostgres`]: libpq URIs and SQL quoting.

/// A libpq URI with user and password percent-encoded.
pub fn conn_uri(host: &str, port: u16, db: &str, user: &str, password: &str) -> String {
    let (user, db) = (percent_encode(user), percent_encode(db));
    if password.is_empty() {
        format!("postgresql://{user}@{host}:{port}/{db}")
    } else {
        let password = percent_encode(password);
        format!("postgresql://{user}:{password}@{host}:{port}/{db}")
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled (standard_conforming_strings is on).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_encodes_user_and_password() {
        assert_eq!(
            conn_uri("127.0.0.1", 5, "db", "a b", "p@ss:w/rd"),
            "postgresql://a%20b:p%40ss%3Aw%2Frd@127.0.0.1:5/db"
        );
        assert_eq!(conn_uri("h", 1, "d", "u", ""), "postgresql://u@h:1/d");
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
