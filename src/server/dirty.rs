//! Deciding, conservatively and cheaply, whether a transaction may have left
//! session state behind, so the reset query runs only when it is needed.
//!
//! Two sources: the CommandComplete tags the server sends (anything but plain
//! data access and transaction control counts as dirty) and a lexical scan of
//! the query text for functions that change the session without a telling tag
//! (`set_config`, session advisory locks, sequences, temporary objects, dblink).
//! Named protocol-level statements are dirty too until the pooler manages them.

/// Command tags (first word) that leave no session state behind.
const CLEAN_TAGS: &[&[u8]] = &[
    b"SELECT",
    b"UPDATE",
    b"DELETE",
    b"BEGIN",
    b"START",
    b"COMMIT",
    b"ROLLBACK",
    b"SAVEPOINT",
    b"RELEASE",
    b"FETCH",
    b"MOVE",
    b"SHOW",
    b"EXPLAIN",
    b"LOCK",
    b"TRUNCATE",
    b"VACUUM",
    b"ANALYZE",
    b"CLOSE",
];

/// Command tags that may have called `nextval()` through a column default,
/// which leaves `currval()`/`lastval()` state: `DISCARD SEQUENCES` clears it.
const SEQUENCE_TAGS: &[&[u8]] = &[b"INSERT", b"COPY", b"MERGE"];

/// What a command may have left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dirt {
    /// Nothing.
    Clean,
    /// Only sequence state (`currval`/`lastval`).
    Sequences,
    /// Anything: run the full reset query.
    Full,
}

/// What a CommandComplete tag (body without its NUL) may have changed.
#[inline]
pub fn tag_dirt(tag: &[u8]) -> Dirt {
    let word = tag.split(|&b| b == b' ' || b == 0).next().unwrap_or(tag);
    if CLEAN_TAGS.contains(&word) {
        Dirt::Clean
    } else if SEQUENCE_TAGS.contains(&word) {
        Dirt::Sequences
    } else {
        Dirt::Full
    }
}

/// True if a CommandComplete tag may have changed any session state.
#[inline]
pub fn tag_is_dirty(tag: &[u8]) -> bool {
    tag_dirt(tag) != Dirt::Clean
}

#[inline]
fn starts_with_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len()
        && hay
            .iter()
            .zip(needle)
            .all(|(a, b)| a.to_ascii_lowercase() == *b)
}

/// True if query text mentions something that changes session state without
/// a telling command tag. False positives only cost a reset.
pub fn text_is_dirty(sql: &[u8]) -> bool {
    for i in 0..sql.len() {
        let rest = &sql[i..];
        let hit = match sql[i] | 0x20 {
            b's' => starts_with_ci(rest, b"set_config") || starts_with_ci(rest, b"setval"),
            b'a' => starts_with_ci(rest, b"advisory"),
            b'n' => starts_with_ci(rest, b"nextval"),
            b't' => starts_with_ci(rest, b"temp"),
            b'd' => starts_with_ci(rest, b"dblink"),
            _ => false,
        };
        if hit {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags() {
        for clean in [
            &b"SELECT 1"[..],
            b"UPDATE 3",
            b"BEGIN",
            b"COMMIT",
            b"ROLLBACK",
            b"FETCH 2",
        ] {
            assert!(!tag_is_dirty(clean), "{:?}", std::str::from_utf8(clean));
        }
        for dirty in [
            &b"SET"[..],
            b"RESET",
            b"INSERT 0 1",
            b"CREATE TABLE",
            b"LISTEN",
            b"PREPARE",
            b"DECLARE CURSOR",
            b"DISCARD ALL",
            b"DO",
            b"CALL",
            b"COPY 3",
        ] {
            assert!(tag_is_dirty(dirty), "{:?}", std::str::from_utf8(dirty));
        }
    }

    #[test]
    fn sequence_only_tags() {
        assert_eq!(tag_dirt(b"INSERT 0 1"), Dirt::Sequences);
        assert_eq!(tag_dirt(b"COPY 3"), Dirt::Sequences);
        assert_eq!(tag_dirt(b"SELECT 1"), Dirt::Clean);
        assert_eq!(tag_dirt(b"SET"), Dirt::Full);
    }

    #[test]
    fn text_scan() {
        assert!(!text_is_dirty(
            b"SELECT abalance FROM pgbench_accounts WHERE aid = $1"
        ));
        assert!(text_is_dirty(b"select SET_CONFIG('a.b', 'c', false)"));
        assert!(text_is_dirty(b"SELECT pg_advisory_lock(1)"));
        assert!(text_is_dirty(b"SELECT nextval('s')"));
        assert!(text_is_dirty(b"SELECT 1 INTO TEMPORARY t"));
        assert!(text_is_dirty(b"select setval('s', 1)"));
        assert!(text_is_dirty(b"SELECT * FROM dblink('x', 'y') AS t(a int)"));
        // At the very end of the text, and the shortest keyword alone.
        assert!(text_is_dirty(b"create temp"));
        assert!(text_is_dirty(b"TEMP"));
        assert!(!text_is_dirty(b"te"));
        assert!(!text_is_dirty(b"t"));
        assert!(!text_is_dirty(b"SELECT set, nexus, dbx, adv FROM tem_like"));
        assert!(!text_is_dirty(b""));
    }
}
