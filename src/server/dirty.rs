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

/// Bytes tested per step of [`text_is_dirty`].
const LANES: usize = 32;
/// A step's bytes plus the two a keyword prefix may reach past the last one.
const WINDOW: usize = LANES + 2;

/// True if query text mentions something that changes session state without
/// a telling command tag. False positives only cost a reset.
///
/// The text ends at its first NUL (or the end of `sql`), so a Query body, or
/// a Parse body after the statement name, can be passed as it is.
///
/// Runs on every query, so it tests [`LANES`] bytes at a time, in a loop of
/// fixed length without early exit that the compiler turns into vector code
/// (SSE2 on x86-64): does any of them start one of the keywords' three-letter
/// prefixes (`set`, `adv`, `nex`, `tem`, `dbl`: "SELECT" is not one), or is
/// any of them NUL? Only then are those bytes checked one by one.
pub fn text_is_dirty(sql: &[u8]) -> bool {
    let Some(last) = sql.len().checked_sub(WINDOW) else {
        let mut window = [0u8; WINDOW];
        window[..sql.len()].copy_from_slice(sql);
        let (candidate, _) = window_flags(&window);
        return candidate && check_bytes(sql, 0, sql.len()).unwrap_or(false);
    };
    let mut start = 0;
    loop {
        // The last window ends at the end of `sql`, overlapping the one
        // before; its bytes before `start` were tested already.
        let at = start.min(last);
        let Ok(window) = <&[u8; WINDOW]>::try_from(&sql[at..at + WINDOW]) else {
            return check_bytes(sql, start, sql.len()).unwrap_or(false);
        };
        let (candidate, nul) = window_flags(window);
        let end = if at == last { sql.len() } else { at + LANES };
        if candidate {
            if let Some(dirty) = check_bytes(sql, start, end) {
                return dirty;
            }
        }
        if nul || at == last {
            return false;
        }
        start += LANES;
    }
}

/// Whether any of a window's first [`LANES`] bytes starts a keyword prefix,
/// and whether any is NUL.
#[inline(always)]
fn window_flags(w: &[u8; WINDOW]) -> (bool, bool) {
    let mut candidate = false;
    let mut nul = false;
    for i in 0..LANES {
        candidate |= is_prefix(w[i], w[i + 1], w[i + 2]);
        nul |= w[i] == 0;
    }
    (candidate, nul)
}

/// Checks `sql[from..to]` byte by byte: `Some(true)` at a keyword,
/// `Some(false)` at the NUL that ends the text, `None` if neither.
#[cold]
#[inline(never)]
fn check_bytes(sql: &[u8], from: usize, to: usize) -> Option<bool> {
    for (i, &b) in sql.iter().enumerate().take(to).skip(from) {
        if b == 0 {
            return Some(false);
        }
        if keyword_at(&sql[i..]) {
            return Some(true);
        }
    }
    None
}

/// True if `x y z` (any case) starts one of the keywords.
#[inline(always)]
fn is_prefix(x: u8, y: u8, z: u8) -> bool {
    let (x, y, z) = (x | 0x20, y | 0x20, z | 0x20);
    (x == b's') & (y == b'e') & (z == b't')
        | (x == b'a') & (y == b'd') & (z == b'v')
        | (x == b'n') & (y == b'e') & (z == b'x')
        | (x == b't') & (y == b'e') & (z == b'm')
        | (x == b'd') & (y == b'b') & (z == b'l')
}

/// True if a keyword starts at the beginning of `rest`.
fn keyword_at(rest: &[u8]) -> bool {
    match rest.first().map(|b| b | 0x20) {
        Some(b's') => starts_with_ci(rest, b"set_config") || starts_with_ci(rest, b"setval"),
        Some(b'a') => starts_with_ci(rest, b"advisory"),
        Some(b'n') => starts_with_ci(rest, b"nextval"),
        Some(b't') => starts_with_ci(rest, b"temp"),
        Some(b'd') => starts_with_ci(rest, b"dblink"),
        _ => false,
    }
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

    #[test]
    fn text_ends_at_its_nul() {
        // A Query body, and a Parse body after its name (parameter types
        // follow the NUL: bytes that spell a keyword prefix there are not text).
        assert!(!text_is_dirty(b"SELECT 1\0"));
        assert!(text_is_dirty(b"SELECT nextval('s')\0"));
        assert!(!text_is_dirty(b"SELECT $1\0\0\x01\0set"));
        assert!(!text_is_dirty(
            b"SELECT 1\0 SELECT set_config('a', 'b', false)"
        ));
        let long = [
            &b"SELECT abalance FROM pgbench_accounts WHERE aid = $1"[..],
            b"\0temp",
        ]
        .concat();
        assert!(!text_is_dirty(&long));
        assert!(text_is_dirty(
            &long[..long.len() - 5]
                .iter()
                .chain(b" temp\0")
                .copied()
                .collect::<Vec<_>>()
        ));
    }

    /// The window-wise scan agrees with a plain search of the text before the
    /// first NUL, wherever a keyword or NUL sits (window boundaries included)
    /// and however it is cased.
    #[test]
    fn text_scan_matches_a_plain_search() {
        fn plain(sql: &[u8]) -> bool {
            let text = sql.split(|&b| b == 0).next().unwrap_or_default();
            let lower = text.to_ascii_lowercase();
            [
                "set_config",
                "setval",
                "advisory",
                "nextval",
                "temp",
                "dblink",
            ]
            .iter()
            .any(|k| lower.windows(k.len()).any(|w| w == k.as_bytes()))
        }
        let pieces: [&[u8]; 13] = [
            b"SELECT ", b"set", b"_config", b"val", b"adv", b"isory", b"NEXT", b"val", b"te",
            b"mp", b"dbl", b"ink", b"\0",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut dirty = 0;
        for _ in 0..20_000 {
            let mut sql = Vec::new();
            let len = (next() % 150) as usize;
            while sql.len() < len {
                match next() % 4 {
                    0 => sql.extend_from_slice(pieces[(next() % 13) as usize]),
                    1 => sql.push(b' '),
                    _ => sql.push(b"abcdelmnpstvxy_"[(next() % 15) as usize]),
                }
            }
            for b in sql.iter_mut() {
                if next() % 2 == 0 {
                    *b = b.to_ascii_uppercase();
                }
            }
            let want = plain(&sql);
            dirty += usize::from(want);
            assert_eq!(
                text_is_dirty(&sql),
                want,
                "{:?}",
                String::from_utf8_lossy(&sql)
            );
        }
        assert!(dirty > 1_000 && dirty < 19_000, "a mix of both: {dirty}");
    }
}
