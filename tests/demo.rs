//! `pgpool-rs demo`: starts, prints a working connection string, and on SIGINT exits 0
//! within 15 s leaving no temporary directories behind.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pgpool_rs::localpg;

#[tokio::test]
async fn demo_serves_and_cleans_up_on_sigint() {
    let port = localpg::free_port().unwrap();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgpool-rs"))
        .args(["demo", "--port", &port.to_string(), "--pool-size", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log.reopen().unwrap()))
        .spawn()
        .unwrap();
    let stderr_text = || std::fs::read_to_string(log.path()).unwrap_or_default();

    // Read the banner on a thread; the lines come over a channel so we can time out.
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut url, mut config, mut data) = (None, None, None);
    let deadline = Instant::now() + Duration::from_secs(60);
    while url.is_none() || config.is_none() || data.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                panic!("no complete banner ({e}); stderr:\n{}", stderr_text());
            }
        };
        if let Some(rest) = line.split_once("psql \"postgresql://").map(|(_, r)| r) {
            if url.is_none() {
                url = Some(format!("postgresql://{}", rest.split('"').next().unwrap()));
            }
        } else if let Some(rest) = line.trim().strip_prefix("Config:") {
            config = Some(PathBuf::from(rest.trim()));
        } else if let Some(rest) = line.split_once("data in ").map(|(_, r)| r) {
            data = Some(PathBuf::from(rest.split_whitespace().next().unwrap()));
        }
    }
    let (url, config, data) = (url.unwrap(), config.unwrap(), data.unwrap());
    assert!(url.contains(&format!(":{port}/demo")), "{url}");
    assert!(config.exists() && data.exists());

    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}\nstderr:\n{}", stderr_text()));
    tokio::spawn(conn);
    assert_eq!(common::simple_value(&client, "SELECT 1").await, "1");
    drop(client);

    localpg::send_signal(child.id(), "INT").unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "demo still running 15 s after SIGINT; stderr:\n{}",
                stderr_text()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "demo exited with {status}; stderr:\n{}",
        stderr_text()
    );
    let config_dir = config.parent().unwrap();
    assert!(!config_dir.exists(), "{} left behind", config_dir.display());
    assert!(!data.exists(), "{} left behind", data.display());
}

#[test]
fn demo_without_postgres_binaries_says_what_to_install() {
    let out = Command::new(env!("CARGO_BIN_EXE_pgpool-rs"))
        .args(["demo", "--port", &localpg::free_port().unwrap().to_string()])
        .env("PG_BIN", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("PostgreSQL server binaries (initdb, postgres, pg_ctl) not found")
            && stderr.contains("PG_BIN"),
        "{stderr}"
    );
}
