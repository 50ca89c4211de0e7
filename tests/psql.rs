//! psql through the pooler: multi-statement commands and scripts, \copy both ways, and
//! errors reported the way psql expects.

mod common;

use common::*;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn multi_statement_command() {
    let pooler = Pooler::start(cluster());
    let out = psql_through(
        &pooler,
        "app",
        "app",
        &[
            "-A",
            "-t",
            "-c",
            "CREATE TABLE IF NOT EXISTS psql_multi (id int, v text); \
             INSERT INTO psql_multi VALUES (1, 'a'), (2, 'b'); \
             SELECT count(*) FROM psql_multi",
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    // Every statement's result comes back: two command tags, then the count.
    assert_eq!(stdout(&out), "CREATE TABLE\nINSERT 0 2\n2");
}

#[test]
fn script_with_transactions() {
    let pooler = Pooler::start(cluster());
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        "CREATE TABLE IF NOT EXISTS psql_script (id int);\n\
         BEGIN;\n\
         INSERT INTO psql_script SELECT generate_series(1, 10);\n\
         SAVEPOINT s;\n\
         INSERT INTO psql_script VALUES (999);\n\
         ROLLBACK TO SAVEPOINT s;\n\
         COMMIT;\n\
         \\set n 3\n\
         SELECT count(*) + :n FROM psql_script;\n",
    )
    .unwrap();
    let out = psql_through(
        &pooler,
        "app",
        "app",
        &["-A", "-t", "-q", "-f", script.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(stdout(&out), "13");
}

#[test]
fn copy_both_directions() {
    let pooler = Pooler::start(cluster());
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let output = dir.path().join("out.csv");
    let rows: String = (1..=500).map(|i| format!("{i},\"row, {i}\"\n")).collect();
    std::fs::write(&input, &rows).unwrap();
    let out = psql_through(
        &pooler,
        "app",
        "app",
        &[
            "-c",
            "CREATE TABLE IF NOT EXISTS psql_copy (id int, v text)",
            "-c",
            &format!(
                "\\copy psql_copy FROM '{}' WITH (FORMAT csv)",
                input.display()
            ),
            "-c",
            &format!(
                "\\copy (SELECT * FROM psql_copy ORDER BY id) TO '{}' WITH (FORMAT csv)",
                output.display()
            ),
        ],
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(std::fs::read_to_string(&output).unwrap(), rows);
}

#[test]
fn errors_are_reported_and_the_pooler_carries_on() {
    let pooler = Pooler::start(cluster());
    let out = psql_through(&pooler, "app", "app", &["-c", "SELECT no_such_column"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no_such_column"), "{stderr}");
    let out = psql_through(
        &pooler,
        "app",
        "app",
        &["-A", "-t", "-c", "SELECT 'still here'"],
    );
    assert_eq!(stdout(&out), "still here", "{}", output_text(&out));
}
