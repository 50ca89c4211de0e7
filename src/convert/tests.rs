//! Unit tests of the readers: the ini file (sections, comments, quoting, %include), the
//! connect strings, and PgBouncer's value syntax.

use std::path::Path;

use super::ini::{self, Entry};
use super::{connstr, values, ConvertError};

/// Writes `files` (name, text) into a fresh directory and returns it.
pub(super) fn files(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        let path = dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(path, text).expect("write");
    }
    dir
}

fn triples(entries: &[Entry]) -> Vec<(String, String, String)> {
    entries
        .iter()
        .map(|e| (e.section.clone(), e.key.clone(), e.value.clone()))
        .collect()
}

fn t(section: &str, key: &str, value: &str) -> (String, String, String) {
    (section.to_owned(), key.to_owned(), value.to_owned())
}

#[test]
fn ini_reads_sections_comments_and_values_as_pgbouncer_does() {
    let dir = files(&[(
        "pgbouncer.ini",
        "; comment\n# another\n\n[databases]  ; trailing comment\n\
         app = host=h dbname=app\n  \"my db\" = host=h\n\"q\"\"uote\"=host=h\n\
         [PgBouncer]\n\tlisten_port=6432   \r\nserver_reset_query = DISCARD ALL ; not a comment\n\
         admin_users =\n",
    )]);
    let entries = ini::read(&dir.path().join("pgbouncer.ini")).expect("test input");
    assert_eq!(
        triples(&entries),
        vec![
            t("databases", "app", "host=h dbname=app"),
            t("databases", "my db", "host=h"),
            t("databases", "q\"uote", "host=h"),
            t("pgbouncer", "listen_port", "6432"),
            t(
                "pgbouncer",
                "server_reset_query",
                "DISCARD ALL ; not a comment"
            ),
            t("pgbouncer", "admin_users", ""),
        ]
    );
    assert_eq!(entries[0].origin.line, 5);
    assert_eq!(entries[4].origin.line, 10);
}

#[test]
fn include_is_relative_to_the_including_file_and_keeps_the_section() {
    let dir = files(&[
        (
            "etc/pgbouncer.ini",
            "[pgbouncer]\nlisten_port = 6432\n%include conf.d/more.ini\nmax_client_conn = 5\n",
        ),
        (
            "etc/conf.d/more.ini",
            "default_pool_size = 7\n[databases]\n%include ../dbs.ini\n",
        ),
        ("etc/dbs.ini", "app = host=h\n"),
    ]);
    let main = dir.path().join("etc/pgbouncer.ini");
    let entries = ini::read(&main).expect("test input");
    assert_eq!(
        triples(&entries),
        vec![
            t("pgbouncer", "listen_port", "6432"),
            t("pgbouncer", "default_pool_size", "7"),
            t("databases", "app", "host=h"),
            // The section set inside the included file stays in force after it.
            t("databases", "max_client_conn", "5"),
        ]
    );
    assert!(entries[1].origin.file.ends_with("conf.d/more.ini"));
    assert_eq!(entries[1].origin.line, 1);
    assert!(entries[2].origin.file.ends_with("dbs.ini"));
}

#[test]
fn include_errors_name_the_including_line() {
    let dir = files(&[("a.ini", "[pgbouncer]\n\n%include missing.ini\n")]);
    let err = ini::read(&dir.path().join("a.ini")).unwrap_err();
    assert!(matches!(err, ConvertError::Include { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("a.ini:3: %include missing.ini"), "{text}");

    let dir = files(&[
        ("a.ini", "[pgbouncer]\n%include b.ini\n"),
        ("b.ini", "%include a.ini\n"),
    ]);
    let err = ini::read(&dir.path().join("a.ini"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("b.ini:1: %include loop"), "{err}");
}

#[test]
fn malformed_lines_are_errors_with_file_and_line() {
    let cases = [
        (
            "[pgbouncer]\nlisten_port 6432\n",
            2,
            "expected \"key = value\"",
        ),
        ("[pgbouncer\n", 1, "closing ']'"),
        ("[pgbouncer] junk\n", 1, "after the section header"),
        ("listen_port = 1\n", 1, "before any [section]"),
        ("[databases]\n\"open = host=h\n", 2, "closing '\"'"),
        ("[pgbouncer]\n%inclde x\n", 2, "unknown directive"),
        ("[pgbouncer]\n%include  \n", 2, "without a file name"),
        ("[pgbouncer]\n= 5\n", 2, "expected \"key = value\""),
    ];
    for (text, line, what) in cases {
        let dir = files(&[("p.ini", text)]);
        let err = ini::read(&dir.path().join("p.ini"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("p.ini:{line}: ")), "{text:?}: {err}");
        assert!(err.contains(what), "{text:?}: {err}");
    }
    let dir = files(&[("bom.ini", "\u{feff}[pgbouncer]\nlisten_port = 1\n")]);
    let entries = ini::read(&dir.path().join("bom.ini")).expect("test input");
    assert_eq!(triples(&entries), vec![t("pgbouncer", "listen_port", "1")]);
    std::fs::write(dir.path().join("bin.ini"), b"[pgbouncer]\nx = \xff\n").expect("test input");
    let err = ini::read(&dir.path().join("bin.ini"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bin.ini:2: not valid UTF-8"), "{err}");
}

#[test]
fn connect_strings_split_like_pgbouncer() {
    let pairs = connstr::parse("  host=h1,h2  port = 5433 password='a b''c' user=x=y ")
        .expect("test input");
    let expected = [
        ("host", "h1,h2"),
        ("port", "5433"),
        ("password", "a b'c"),
        ("user", "x=y"),
    ];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(pairs, expected);
    assert_eq!(connstr::parse("").expect("test input"), vec![]);
    for bad in ["host", "host=", "=x", "password='open", "host=''"] {
        assert!(connstr::parse(bad).is_err(), "{bad:?} should be rejected");
    }
    assert_eq!(
        connstr::redacted("host=h password='s e''cret'"),
        "host=h password=<redacted>"
    );
    assert_eq!(
        connstr::redacted("password='"),
        "<unparsable connect string>"
    );
}

#[test]
fn integers_booleans_and_lists() {
    assert_eq!(values::integer("100"), Ok(100));
    assert_eq!(values::integer(" 0x10 "), Ok(16));
    assert_eq!(values::integer("010"), Ok(8));
    assert_eq!(values::integer("0"), Ok(0));
    assert_eq!(values::integer("-3"), Ok(-3));
    for bad in ["", "abc", "10abc", "1.5", "0x", "09"] {
        assert!(values::integer(bad).is_err(), "{bad:?}");
    }
    assert_eq!(values::boolean("1"), Ok(true));
    assert_eq!(values::boolean("0"), Ok(false));
    assert_eq!(values::boolean("on"), Ok(true));
    assert!(values::boolean("maybe").is_err());
    assert_eq!(values::list(" a, b ,,c "), vec!["a", "b", "c"]);
    assert!(values::list("").is_empty());
}

#[test]
fn durations_parse_fractions_and_units() {
    assert_eq!(values::seconds("600"), Ok(600.0));
    assert_eq!(values::seconds("2.5"), Ok(2.5));
    assert_eq!(values::seconds("1e3"), Ok(1000.0));
    assert_eq!(values::seconds("250ms"), Ok(0.25));
    assert_eq!(values::seconds("5 min"), Ok(300.0));
    assert_eq!(values::seconds("1h"), Ok(3600.0));
    for bad in ["", "-1", "abc", "5 fortnights", "inf", "nan", "1..2"] {
        assert!(values::seconds(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn durations_round_to_the_pool_toml_unit_with_a_note() {
    let exact = values::duration(600.0, false, 0, "600");
    assert_eq!((exact.value, exact.note), (600, None));
    let rounded = values::duration(2.6, false, 0, "2.6");
    assert_eq!(rounded.value, 3);
    assert!(rounded.note.expect("test input").contains("rounded to 3 s"));
    // Never 0 ("off") for a value that was not 0.
    let tiny = values::duration(0.2, false, 0, "0.2");
    assert_eq!(tiny.value, 1);
    assert!(tiny.note.is_some());
    let zero = values::duration(0.0, false, 0, "0");
    assert_eq!((zero.value, zero.note), (0, None));
    let ms = values::duration(2.5, true, 0, "2.5");
    assert_eq!((ms.value, ms.note), (2500, None));
    let sub_ms = values::duration(0.0015, true, 0, "0.0015");
    assert_eq!(sub_ms.value, 2);
    assert!(sub_ms.note.is_some());
    let raised = values::duration(0.0, false, 1, "0");
    assert_eq!(raised.value, 1);
    assert!(raised.note.expect("test input").contains("minimum"));
    let capped = values::duration(1e12, false, 0, "1e12");
    assert_eq!(capped.value, values::MAX_SECS as i64);
    assert!(capped.note.expect("test input").contains("capped"));
}

#[test]
fn a_missing_file_is_a_read_error() {
    let err = ini::read(Path::new("/nonexistent/pgbouncer.ini")).unwrap_err();
    assert!(matches!(err, ConvertError::Read { .. }));
    assert!(err
        .to_string()
        .starts_with("/nonexistent/pgbouncer.ini: cannot read"));
}
