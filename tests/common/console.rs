//! Admin console helpers: SHOW results as column names + text rows, and commands that
//! must succeed or fail.

use tokio_postgres::{Client, SimpleQueryMessage};

use super::sqlstate;

/// A SHOW result: column names and rows (NULL = `None`).
pub struct Shown {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows.
    pub rows: Vec<Vec<Option<String>>>,
}

impl Shown {
    pub fn col(&self, name: &str) -> usize {
        self.columns
            .iter()
            .position(|c| c == name)
            .unwrap_or_else(|| panic!("no column {name} in {:?}", self.columns))
    }

    /// The rows whose `key` column equals `value`.
    pub fn rows_where<'a>(&'a self, key: &str, value: &'a str) -> Vec<&'a Vec<Option<String>>> {
        let i = self.col(key);
        self.rows
            .iter()
            .filter(|r| r[i].as_deref() == Some(value))
            .collect()
    }

    /// The value of `column` in `row`.
    pub fn get<'a>(&self, row: &'a [Option<String>], column: &str) -> Option<&'a str> {
        row[self.col(column)].as_deref()
    }

    /// `column` of `row` as an integer.
    pub fn int(&self, row: &[Option<String>], column: &str) -> i64 {
        let v = self.get(row, column);
        v.and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{column} is not an integer: {v:?}"))
    }

    /// The single row of POOLS for (database, user).
    pub fn pool_row(&self, database: &str, user: &str) -> Option<&Vec<Option<String>>> {
        let (d, u) = (self.col("database"), self.col("user"));
        self.rows
            .iter()
            .find(|r| r[d].as_deref() == Some(database) && r[u].as_deref() == Some(user))
    }

    /// SHOW CONFIG's value for `key`.
    pub fn config_value(&self, key: &str) -> String {
        let rows = self.rows_where("key", key);
        assert_eq!(rows.len(), 1, "config key {key} once in SHOW CONFIG");
        self.get(rows[0], "value")
            .unwrap_or_else(|| panic!("config {key} is NULL"))
            .to_string()
    }
}

pub async fn try_show(client: &Client, sql: &str) -> Result<Shown, tokio_postgres::Error> {
    let messages = client.simple_query(sql).await?;
    let mut shown = Shown {
        columns: Vec::new(),
        rows: Vec::new(),
    };
    for m in &messages {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                shown.columns = cols.iter().map(|c| c.name().to_string()).collect();
            }
            SimpleQueryMessage::Row(row) => {
                if shown.columns.is_empty() {
                    shown.columns = row.columns().iter().map(|c| c.name().to_string()).collect();
                }
                shown.rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                );
            }
            _ => {}
        }
    }
    Ok(shown)
}

pub async fn show(client: &Client, sql: &str) -> Shown {
    try_show(client, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e} ({:?})", sqlstate(&e)))
}

/// Runs a command that must fail; returns its SQLSTATE.
pub async fn fails_with(client: &Client, sql: &str) -> String {
    match client.simple_query(sql).await {
        Ok(m) => panic!("{sql} succeeded ({} messages) but should fail", m.len()),
        Err(e) => sqlstate(&e).unwrap_or_else(|| panic!("{sql}: error without SQLSTATE: {e}")),
    }
}

/// The command tag of a command that must succeed.
pub async fn command_ok(client: &Client, sql: &str) -> String {
    let messages = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e} ({:?})", sqlstate(&e)));
    assert!(
        messages
            .iter()
            .any(|m| matches!(m, SimpleQueryMessage::CommandComplete(_))),
        "{sql} completed"
    );
    sql.to_string()
}
