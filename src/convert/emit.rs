//! Writes a [`Plan`] as pool.toml text: a header, `[listen]`, `[auth]`, `[pool]` in the
//! order of `config/pool.toml`, one table per database, then every setting that was not
//! carried over. Values and table names are rendered by toml_edit, so whatever a string
//! holds (quotes, backslashes, non-ASCII) reads back unchanged; comments are kept on one
//! line each (control characters escaped) and wrapped at a readable width.

use std::fmt::Write as _;
use std::path::Path;

use super::plan::{Database, Dropped, Plan, Section};

// Keys in the order the config parser (and `config/pool.toml`) lists them.
use crate::config::{AUTH_KEYS as AUTH_ORDER, DATABASE_KEYS as DATABASE_ORDER};
use crate::config::{LISTEN_KEYS as LISTEN_ORDER, POOL_KEYS as POOL_ORDER};

/// Comment lines are wrapped at this width.
const WIDTH: usize = 92;

/// The pool.toml text for `plan`, converted from `source`.
pub(super) fn render(plan: &Plan, source: &Path) -> String {
    let mut out = String::new();
    let header = format!(
        "pool.toml for pgpool-rs, converted from {} by `pgpool-rs convert` ({}). Check it \
         with: pgpool-rs --config pool.toml --check. \"note:\" comments explain values that \
         approximate PgBouncer's or keep its defaults; settings with no pool.toml \
         equivalent are listed at the end (\"not carried over:\").",
        source.display(),
        env!("CARGO_PKG_VERSION"),
    );
    comment(&mut out, "", &header);
    section(&mut out, "listen", &plan.listen, LISTEN_ORDER);
    section(&mut out, "auth", &plan.auth, AUTH_ORDER);
    section(&mut out, "pool", &plan.pool, POOL_ORDER);
    for db in &plan.databases {
        database(&mut out, db);
    }
    dropped(&mut out, &plan.dropped);
    out
}

/// `[name]` and its keys; nothing at all for an empty section.
fn section(out: &mut String, name: &str, section: &Section, order: &[&str]) {
    if section.keys.is_empty() && section.notes.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n[{name}]");
    for note in &section.notes {
        comment(out, "note: ", note);
    }
    keys(out, section, order, "");
}

/// The keys of a section in `order`, each after its notes; `prefix` comments them out.
fn keys(out: &mut String, section: &Section, order: &[&str], prefix: &str) {
    let mut sorted: Vec<_> = section.keys.iter().collect();
    sorted.sort_by_key(|k| {
        order
            .iter()
            .position(|o| *o == k.name)
            .unwrap_or(order.len())
    });
    for key in sorted {
        for note in &key.notes {
            comment(out, "note: ", note);
        }
        let value = key.value.to_string();
        let _ = writeln!(out, "{prefix}{} = {}", key.name, value.trim());
    }
}

fn database(out: &mut String, db: &Database) {
    let header = format!(
        "[databases.{}]",
        toml_edit::Key::new(db.name.as_str()).display_repr()
    );
    out.push('\n');
    for note in &db.notes {
        comment(out, "note: ", note);
    }
    match &db.disabled {
        None => {
            let _ = writeln!(out, "{header}");
            keys(out, &db.section, DATABASE_ORDER, "");
        }
        Some(reason) => {
            let text = format!(
                "not carried over as is: {header} from {} — {reason}. Uncomment and fix:",
                origin_text(&db.origin)
            );
            comment(out, "", &text);
            let _ = writeln!(out, "# {header}");
            keys(out, &db.section, DATABASE_ORDER, "# ");
        }
    }
}

fn dropped(out: &mut String, dropped: &[Dropped]) {
    if dropped.is_empty() {
        return;
    }
    let title = format!(
        "---- not carried over from pgbouncer.ini: {} setting{} ----",
        dropped.len(),
        if dropped.len() == 1 { "" } else { "s" }
    );
    out.push('\n');
    comment(out, "", &title);
    for d in dropped {
        let text = format!(
            "{} = {} — {} [{}]",
            d.what,
            d.value,
            d.why,
            origin_text(&d.origin)
        );
        comment(out, "not carried over: ", &text);
    }
}

/// `file:line` with the file's name only (the full path is in the header).
fn origin_text(origin: &super::ini::Origin) -> String {
    let name = origin
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| origin.file.display().to_string());
    format!("{name}:{}", origin.line)
}

/// Writes `# <lead><text>`, wrapped at [`WIDTH`], continuation lines indented.
fn comment(out: &mut String, lead: &str, text: &str) {
    let text = one_line(text);
    let mut line = format!("# {lead}");
    let indent = "#   ";
    let mut line_has_words = false;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if line_has_words && line.len() + 1 + word.len() > WIDTH {
            out.push_str(line.trim_end());
            out.push('\n');
            line = indent.to_owned();
            line_has_words = false;
        }
        if line_has_words {
            line.push(' ');
        }
        line.push_str(word);
        line_has_words = true;
    }
    out.push_str(line.trim_end());
    out.push('\n');
}

/// Control characters escaped (`\n` as the two characters `\` `n`): a TOML comment ends
/// at a newline and may not hold other control characters.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' => " ".to_owned(),
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}
