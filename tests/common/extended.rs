//! Extended-query protocol messages (Parse, Bind, Describe, Execute, Close, Sync, Flush)
//! for raw-protocol tests, and helpers to check the exact order of the replies.
//! Parameters and results are always in text format.

use bytes::Bytes;

use super::raw::{message, parse_error, ErrorFields, RawConn};

fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// Parse: statement `name` ("" = unnamed) for `sql`, with parameter type OIDs (0 = infer).
pub fn parse(name: &str, sql: &str, param_types: &[u32]) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, name);
    cstr(&mut body, sql);
    body.extend_from_slice(&u16::try_from(param_types.len()).expect("few").to_be_bytes());
    for oid in param_types {
        body.extend_from_slice(&oid.to_be_bytes());
    }
    message(b'P', &body)
}

/// Bind: portal `portal` ("" = unnamed) from statement `statement`, text parameters
/// (`None` = NULL), text results.
pub fn bind(portal: &str, statement: &str, params: &[Option<&str>]) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, portal);
    cstr(&mut body, statement);
    body.extend_from_slice(&0u16.to_be_bytes()); // parameter formats: all text
    body.extend_from_slice(&u16::try_from(params.len()).expect("few").to_be_bytes());
    for p in params {
        match p {
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                body.extend_from_slice(&i32::try_from(v.len()).expect("small").to_be_bytes());
                body.extend_from_slice(v.as_bytes());
            }
        }
    }
    body.extend_from_slice(&0u16.to_be_bytes()); // result formats: all text
    message(b'B', &body)
}

/// Describe of a statement ('S').
pub fn describe_statement(name: &str) -> Vec<u8> {
    let mut body = vec![b'S'];
    cstr(&mut body, name);
    message(b'D', &body)
}

/// Describe of a portal ('P').
pub fn describe_portal(name: &str) -> Vec<u8> {
    let mut body = vec![b'P'];
    cstr(&mut body, name);
    message(b'D', &body)
}

/// Execute of `portal`, all rows.
pub fn execute(portal: &str) -> Vec<u8> {
    let mut body = Vec::new();
    cstr(&mut body, portal);
    body.extend_from_slice(&0i32.to_be_bytes());
    message(b'E', &body)
}

/// Close of a statement ('S').
pub fn close_statement(name: &str) -> Vec<u8> {
    let mut body = vec![b'S'];
    cstr(&mut body, name);
    message(b'C', &body)
}

/// Close of a portal ('P').
pub fn close_portal(name: &str) -> Vec<u8> {
    let mut body = vec![b'P'];
    cstr(&mut body, name);
    message(b'C', &body)
}

/// Sync.
pub fn sync() -> Vec<u8> {
    message(b'S', &[])
}

/// Flush.
pub fn flush() -> Vec<u8> {
    message(b'H', &[])
}

/// Bind of the unnamed portal + Execute: run statement `statement` with `params`.
pub fn run(statement: &str, params: &[Option<&str>]) -> Vec<u8> {
    let mut out = bind("", statement, params);
    out.extend(execute(""));
    out
}

/// Concatenates messages into one buffer (sent with one write: a pipeline).
pub fn batch(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// Sends `parts` in one write and reads replies through `syncs` ReadyForQuery messages.
pub async fn exchange(raw: &mut RawConn, parts: &[Vec<u8>], syncs: usize) -> Vec<(u8, Bytes)> {
    raw.send(&batch(parts)).await;
    let mut out = Vec::new();
    for _ in 0..syncs {
        out.extend(raw.read_until_ready().await);
    }
    out
}

/// The message tags as a string, e.g. "12DCZ" (ParseComplete, BindComplete, DataRow,
/// CommandComplete, ReadyForQuery). NoticeResponse ('N') and ParameterStatus ('S')
/// are left out: they may come at any time.
pub fn tags(messages: &[(u8, Bytes)]) -> String {
    messages
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t != b'N' && *t != b'S')
        .map(char::from)
        .collect()
}

/// The ErrorResponses among messages, in order.
pub fn errors(messages: &[(u8, Bytes)]) -> Vec<ErrorFields> {
    messages
        .iter()
        .filter(|(t, _)| *t == b'E')
        .map(|(_, body)| parse_error(body))
        .collect()
}

/// The first column of every DataRow, in order (NULL = "NULL").
pub fn column0(messages: &[(u8, Bytes)]) -> Vec<String> {
    messages
        .iter()
        .filter(|(t, _)| *t == b'D')
        .map(|(_, body)| {
            super::raw::data_row(body)
                .into_iter()
                .next()
                .flatten()
                .unwrap_or_else(|| "NULL".into())
        })
        .collect()
}

/// A short description of messages for assertion failures: tags, values and errors.
pub fn describe(messages: &[(u8, Bytes)]) -> String {
    format!(
        "tags {:?}, rows {:?}, errors {:?}",
        tags(messages),
        column0(messages),
        errors(messages)
    )
}
