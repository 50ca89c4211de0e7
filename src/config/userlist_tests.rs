//! (Test-only module: its parent declares it under `#[cfg(test)]`.)
//! Tests of the userlist format: quoting, comments, secret kinds, and malformed lines
//! (reported with their line, never with the secret).

use std::path::Path;

use super::{Problem, Secret, Userlist};

const SCRAM: &str = "SCRAM-SHA-256$4096:cGdwb29sLXJzLXNhbHQxNg==$jENsq/E/lqYVL7/QzvO0xA4qAs5/uV44TjF3aCyC2UY=:J+QwXDdopGbiJoExdTM/Q2AU0dVWC0s/OZaPorVRdO4=";
const MD5: &str = "md54df07aad7d44cfdeb59222e6b468e8f9";

fn parse(text: &str) -> Userlist {
    Userlist::parse(text, Path::new("users.txt")).unwrap_or_else(|e| panic!("{e}"))
}

fn problems(text: &str) -> Vec<Problem> {
    match Userlist::parse(text, Path::new("users.txt")) {
        Ok(users) => panic!("expected problems, got {users:?}"),
        Err(e) => e.problems,
    }
}

#[test]
fn classifies_plain_md5_and_scram_secrets() {
    let text = format!("\"alice\" \"s3cret\"\n\"bob\" \"{MD5}\"\n\"carol\" \"{SCRAM}\"\n");
    let users = parse(&text);
    assert_eq!(users.len(), 3);
    assert!(!users.is_empty());
    assert_eq!(users.get("alice"), Some(&Secret::Plain("s3cret".into())));
    assert_eq!(users.get("bob"), Some(&Secret::Md5(MD5.into())));
    assert_eq!(users.get("carol"), Some(&Secret::Scram(SCRAM.into())));
    assert_eq!(users.get("dave"), None);
    let names: Vec<&str> = users.iter().map(|(user, _)| user).collect();
    assert_eq!(names, ["alice", "bob", "carol"]);
    assert_eq!(users.get("carol").map(Secret::kind), Some("scram-sha-256"));
}

#[test]
fn md5_needs_exactly_32_lowercase_hex_digits_otherwise_plain() {
    let upper = MD5.to_uppercase().replacen("MD5", "md5", 1);
    let short = &MD5[..34];
    let text = format!("\"a\" \"{upper}\"\n\"b\" \"{short}\"\n\"c\" \"md5\"\n\"d\" \"{MD5}0\"\n");
    let users = parse(&text);
    for user in ["a", "b", "c", "d"] {
        assert!(matches!(users.get(user), Some(Secret::Plain(_))), "{user}");
    }
}

#[test]
fn doubled_quotes_are_literal_quotes() {
    let users = parse("\"o\"\"brien\" \"pa\"\"ss \"\"word\"\"\"\n");
    assert_eq!(
        users.get("o\"brien"),
        Some(&Secret::Plain("pa\"ss \"word\"".into()))
    );
}

#[test]
fn comments_blank_lines_whitespace_crlf_and_extra_fields() {
    let text = "; comment\r\n# another\r\n\r\n   \r\n  \"a\"\t\"x\"  \r\n\"b\" \"y\" \"ignored\" extra\n  ; indented comment\n";
    let users = parse(text);
    assert_eq!(users.len(), 2);
    assert_eq!(users.get("a"), Some(&Secret::Plain("x".into())));
    assert_eq!(users.get("b"), Some(&Secret::Plain("y".into())));
    assert!(parse("").is_empty());
    assert!(parse("; only comments\n").is_empty());
}

#[test]
fn malformed_lines_are_reported_with_line_numbers_and_no_secret() {
    let text = "\
; header
\"ok\" \"fine\"
alice hunter2
\"bob\" hunter2
\"carol\" \"hunter2
\"dave
\"erin\"
\"frank\"\"hunter2\"
\"\" \"hunter2\"
\"gina\" \"\"
\"ok\" \"hunter2\"
";
    let p = problems(text);
    let shown: Vec<String> = p.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        shown,
        [
            "users.txt:3: expected \"user\" \"password\"",
            "users.txt:4: bob: password field must be double-quoted",
            "users.txt:5: carol: unterminated quoted password",
            "users.txt:6: unterminated quoted user name",
            "users.txt:7: erin: missing password field",
            "users.txt:8: missing password field",
            "users.txt:9: empty user name",
            "users.txt:10: gina: empty password",
            "users.txt:11: ok: duplicate user (first defined on line 2)",
        ]
    );
    for line in &shown {
        assert!(!line.contains("hunter2"), "secret leaked: {line}");
    }
}

#[test]
fn malformed_scram_secrets_are_rejected_without_echoing_them() {
    let (params, keys) = SCRAM["SCRAM-SHA-256$".len()..].split_once('$').unwrap();
    let (stored, server) = keys.split_once(':').unwrap();
    let bad = [
        "SCRAM-SHA-256$".to_owned(),
        format!("SCRAM-SHA-256${params}"),
        format!("SCRAM-SHA-256$4096${keys}"),
        format!("SCRAM-SHA-256$0:c2FsdA==${keys}"),
        format!("SCRAM-SHA-256$-1:c2FsdA==${keys}"),
        format!("SCRAM-SHA-256$+7:c2FsdA==${keys}"),
        format!("SCRAM-SHA-256$x:c2FsdA==${keys}"),
        format!("SCRAM-SHA-256$4096:not*base64${keys}"),
        format!("SCRAM-SHA-256$4096::${keys}"),
        format!("SCRAM-SHA-256${params}${stored}"),
        format!("SCRAM-SHA-256${params}${stored}:c2hvcnQ="),
        format!("SCRAM-SHA-256${params}$!!!!:{server}"),
    ];
    for (i, secret) in bad.iter().enumerate() {
        let text = format!("; c\n\"u{i}\" \"{secret}\"\n");
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{secret}");
        assert_eq!(p[0].line, Some(2));
        assert_eq!(p[0].key.as_deref(), Some(format!("u{i}").as_str()));
        assert!(
            p[0].message.starts_with("malformed SCRAM secret"),
            "{}",
            p[0].message
        );
        let shown = p[0].to_string();
        assert!(
            !shown.contains(stored) && !shown.contains("c2FsdA"),
            "{shown}"
        );
    }
    // Valid with any positive iteration count and salt length.
    let other = format!("SCRAM-SHA-256$15000:YWJj${keys}");
    assert!(
        matches!(parse(&format!("\"u\" \"{other}\"")).get("u"), Some(Secret::Scram(s)) if *s == other)
    );
}

#[test]
fn secrets_do_not_appear_in_debug_output() {
    let users = parse(&format!(
        "\"a\" \"hunter2\"\n\"b\" \"{MD5}\"\n\"c\" \"{SCRAM}\"\n"
    ));
    let shown = format!("{users:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains(MD5) && !shown.contains("4096"),
        "{shown}"
    );
    assert!(shown.contains("Plain(<redacted>)"), "{shown}");
}

#[test]
fn load_reads_a_file_and_reports_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("userlist.txt");
    std::fs::write(&path, "\"a\" \"b\"\n").unwrap();
    assert_eq!(Userlist::load(&path).unwrap().len(), 1);
    let missing = dir.path().join("none.txt");
    let e = Userlist::load(&missing).unwrap_err();
    assert_eq!(e.problems.len(), 1);
    assert_eq!(e.problems[0].file, missing);
    assert!(e.problems[0].message.starts_with("cannot read file"));
}
