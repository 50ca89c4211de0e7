//! Fuzz bodies: each function feeds arbitrary bytes to the code that reads what a
//! client (or a config file) sends, and must return without panicking whatever the
//! input. They live in the library so that both the cargo-fuzz targets in `fuzz/`
//! (nightly, libFuzzer) and `tests/fuzz_smoke.rs` (stable `cargo test`, seed corpus
//! plus pseudo-random mutations) run the same code, and so that they keep compiling.
//!
//! Not part of the product's API.

use std::path::Path;
use std::sync::OnceLock;

use bytes::BytesMut;

use crate::auth::{ScramSecret, ScramServer, ScramVerdict};
use crate::config::{Config, Userlist};
use crate::protocol::frame::{read_cstr, read_header, split_message, HEADER_LEN};
use crate::protocol::frontend::{self, tag};
use crate::protocol::startup::{self, StartupPacket};
use crate::server::dirty::text_is_dirty;
use crate::server::params::{client_startup_params, ServerParams};
use crate::session::prepared::Statement;

/// A fuzz body: takes any bytes, must not panic.
pub type Body = fn(&[u8]);

/// The fuzz targets, by the name used in `fuzz/fuzz_targets/` and `fuzz/corpus/`.
pub const TARGETS: &[(&str, Body)] = &[
    ("client_messages", client_messages),
    ("startup_packet", startup_packet),
    ("scram_server", scram_server),
    ("config", config),
];

/// A stream of client messages after login, as the session and relay read it: framing
/// (`read_header` / `split_message`, at every prefix length the socket might deliver)
/// and every decoder the relay and the admin console apply to a message body.
pub fn client_messages(data: &[u8]) {
    // A header read from any prefix agrees with the one read from the whole stream.
    let whole = read_header(data);
    for cut in 0..data.len().min(HEADER_LEN + 1) {
        match read_header(&data[..cut]) {
            Ok(Some(h)) => assert_eq!(whole, Ok(Some(h))),
            Ok(None) => assert!(cut < HEADER_LEN),
            Err(e) => assert_eq!(whole, Err(e)),
        }
    }
    let mut rest = data;
    while let Ok(Some((h, body))) = split_message(rest) {
        assert_eq!(body.len(), h.body_len());
        assert!(h.len <= crate::protocol::MAX_MESSAGE_LEN);
        message_body(h.tag, body);
        rest = &rest[h.total()..];
    }
    // A message cut short: the relay inspects the prefix of a large Bind.
    if let Ok(Some(h)) = read_header(rest) {
        let body = &rest[HEADER_LEN..];
        if h.tag == tag::BIND {
            let _ = frontend::bind_names(body);
        }
    }
}

/// The decoders for one whole client message body.
fn message_body(tag_byte: u8, body: &[u8]) {
    let _ = frontend::is_known_tag(tag_byte);
    match tag_byte {
        tag::QUERY => {
            let text = frontend::query_text(tag_byte, body);
            if let Some(text) = text {
                // The relay scans the whole body (the text ends at its NUL).
                assert_eq!(text_is_dirty(body), text_is_dirty(text));
            }
            let text = text.unwrap_or_default();
            let _ = crate::admin::parse::parse(&String::from_utf8_lossy(text));
        }
        tag::PARSE => {
            let _ = frontend::parse_statement_name(body);
            if let Some(text) = frontend::query_text(tag_byte, body) {
                // The relay scans the rest of the body after the name (the
                // text ends at its NUL).
                let (_, rest) = read_cstr(body).unwrap_or_default();
                assert_eq!(text_is_dirty(rest), text_is_dirty(text));
            }
            if let Some((name, stmt)) = Statement::from_parse(body) {
                assert!(name.len() < body.len());
                assert!(stmt.name.starts_with("pgpool_"));
            }
        }
        tag::BIND => {
            if let Some((portal, stmt, after)) = frontend::bind_names(body) {
                assert_eq!(portal.len() + stmt.len() + after.len() + 2, body.len());
            }
        }
        tag::DESCRIBE | tag::CLOSE => {
            if let Some((_, name, after)) = frontend::target(body) {
                assert_eq!(name.len() + after.len() + 2, body.len());
            }
        }
        tag::PASSWORD => {
            let _ = frontend::parse_password(body);
            if let Some((mechanism, data)) = frontend::parse_sasl_initial(body) {
                assert!(mechanism.len() + data.len() < body.len());
            }
        }
        _ => {}
    }
}

/// The untagged first packet: the length check, the decoder, and what login does with
/// a StartupMessage's parameters (validation, then the SET statements built from them).
pub fn startup_packet(data: &[u8]) {
    let Some((len, body)) = data.split_first_chunk::<4>() else {
        return;
    };
    if let Ok(n) = startup::packet_len(*len) {
        assert!((8..=startup::MAX_STARTUP_LEN).contains(&n));
    }
    let packet = match startup::parse(body) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let StartupPacket::Startup { params, .. } = packet else {
        return;
    };
    // Encoding the parameters again gives the same packet back.
    let mut buf = BytesMut::new();
    let pairs: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    startup::encode_startup(&mut buf, &pairs);
    let again = startup::parse(&buf[4..]);
    if params
        .iter()
        .all(|(k, v)| !k.is_empty() && !k.contains('\0') && !v.contains('\0'))
    {
        match again {
            Ok(StartupPacket::Startup { params: p2, .. }) => assert_eq!(p2, params),
            other => panic!("re-encoded startup packet did not parse back: {other:?}"),
        }
    }
    match client_startup_params(&params) {
        Ok(wanted) => {
            let _ = ServerParams::default().diff_sql(&wanted);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The server side of a SCRAM exchange fed an arbitrary client-first-message and
/// client-final-message (split at the first NUL byte; none = client-first only), for a
/// known user and for an unknown one (mock). Also the SASLInitialResponse framing.
pub fn scram_server(data: &[u8]) {
    let (first, fin) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let _ = frontend::parse_sasl_initial(data);
    for secret in [Some(fuzz_secret().clone()), None] {
        let mut server = ScramServer::with_nonce(secret, FUZZ_NONCE);
        let reply = match server.client_first(first) {
            Ok(reply) => reply,
            Err(e) => {
                let _ = e.to_string();
                continue;
            }
        };
        assert!(reply.starts_with(b"r="));
        let Some(fin) = fin else { continue };
        match server.client_final(fin) {
            // Finding the password by fuzzing would be news: only the mock-free exchange
            // with the right proof may succeed, and the fuzz secret's password is long.
            Ok(ScramVerdict::Success { .. }) => panic!("a fuzzed SCRAM proof was accepted"),
            Ok(ScramVerdict::WrongPassword) => {}
            Err(e) => {
                let _ = e.to_string();
            }
        }
        // The exchange is over: any further message is out of order.
        assert!(server.client_final(fin).is_err());
    }
}

/// The server nonce of [`scram_server`] (fixed, so the fuzzer can learn to echo it).
pub const FUZZ_NONCE: &str = "fuzzNONCEfuzzNONCEfuzz";

/// The secret of [`scram_server`]: derived once (PBKDF2 is slow), with a password no
/// fuzzer will guess.
fn fuzz_secret() -> &'static ScramSecret {
    static SECRET: OnceLock<ScramSecret> = OnceLock::new();
    SECRET.get_or_init(|| {
        ScramSecret::from_password(
            "a long password the fuzzer will not find 7c1e9f",
            b"fuzz-salt-16byte",
            4096,
        )
    })
}

/// `pool.toml` and userlist text: both parsers (and their error messages, which
/// quote lines and keys) on the same input, and stored SCRAM secrets.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, Path::new("fuzz/pool.toml")) {
        Ok(config) => {
            let _ = format!("{config:?}");
        }
        Err(e) => {
            assert!(!e.problems.is_empty());
            let _ = e.to_string();
        }
    }
    match Userlist::parse(text, Path::new("fuzz/userlist.txt")) {
        Ok(list) => {
            let _ = format!("{list:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    for line in text.lines() {
        let _ = ScramSecret::parse(line.trim());
    }
}
