//! The pool.toml and userlist.txt embedded in the Kubernetes manifests (config/k8s/*/
//! configmap.yaml and secret.yaml) pass `pgpool-rs --check`, so a config change that
//! breaks them fails here rather than in a cluster. (.ci/lint-deploy checks the YAML
//! itself against the Kubernetes schemas.)

use std::path::{Path, PathBuf};
use std::process::Command;

const PGPOOL_BIN: &str = env!("CARGO_BIN_EXE_pgpool-rs");

/// The text of the block scalar `key: |` in a YAML file: the lines after it that are
/// indented deeper than the key, with that extra indentation removed.
fn block_scalar(path: &Path, key: &str) -> String {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    let start = lines
        .iter()
        .position(|l| l.trim() == format!("{key}: |"))
        .unwrap_or_else(|| panic!("no `{key}: |` in {}", path.display()));
    let key_indent = indent_of(lines[start]);
    let body: Vec<&str> = lines[start + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent_of(l) > key_indent)
        .copied()
        .collect();
    let body_indent = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indent_of(l))
        .min()
        .unwrap_or_else(|| panic!("empty `{key}` in {}", path.display()));
    body.iter()
        .map(|l| l.get(body_indent..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn manifests(flavour: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/k8s")
        .join(flavour)
}

/// Writes the flavour's pool.toml and userlist.txt side by side (as the projected
/// volume does) and runs `--check` on them.
fn check(flavour: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = block_scalar(&manifests(flavour).join("configmap.yaml"), "pool.toml");
    let users = block_scalar(&manifests(flavour).join("secret.yaml"), "userlist.txt");
    assert!(
        pool.contains("[databases."),
        "{flavour}: extracted {pool:?}"
    );
    assert!(users.starts_with('"'), "{flavour}: extracted {users:?}");
    std::fs::write(dir.path().join("pool.toml"), pool).expect("write pool.toml");
    std::fs::write(dir.path().join("userlist.txt"), users).expect("write userlist");
    let out = Command::new(PGPOOL_BIN)
        .arg("--config")
        .arg(dir.path().join("pool.toml"))
        .arg("--check")
        .env_remove("PGPOOL_CONFIG")
        .output()
        .expect("run pgpool-rs --check");
    assert!(
        out.status.success(),
        "config/k8s/{flavour}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sidecar_config_is_valid() {
    check("sidecar");
}

#[test]
fn standalone_config_is_valid() {
    check("standalone");
}
