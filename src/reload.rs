//! Signals: SIGHUP reloads the config (parse and validate the whole file
//! first; a bad file is logged with file/line/key and the old config stays in
//! force); SIGTERM/SIGINT start the shutdown.

use std::path::Path;
use std::sync::Arc;

use tokio::signal::unix::{signal, SignalKind};

use crate::app::Shared;
use crate::snapshot::Snapshot;

/// Reloads the config at `path` into `shared`; true on success.
pub fn reload(path: &Path, shared: &Shared) -> bool {
    match Snapshot::load(path) {
        Ok(snapshot) => {
            shared.apply(snapshot);
            shared
                .stats
                .reloads_ok
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(config = %path.display(), "configuration reloaded");
            true
        }
        Err(e) => {
            shared
                .stats
                .reloads_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            for line in e.to_string().lines() {
                tracing::error!(problem = %line, "configuration reload rejected; keeping the old one");
            }
            false
        }
    }
}

/// Handles SIGHUP (reload) and, as PgBouncer does, SIGUSR1 (PAUSE all) and
/// SIGUSR2 (RESUME all), until SIGTERM or SIGINT arrives.
pub async fn run_until_shutdown(path: &Path, shared: &Arc<Shared>) {
    let (Ok(mut hup), Ok(mut term), Ok(mut int), Ok(mut usr1), Ok(mut usr2)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::user_defined2()),
    ) else {
        tracing::warn!("cannot install signal handlers; stopping on Ctrl-C only");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                reload(path, shared);
            }
            _ = usr1.recv() => {
                shared.pause(None);
            }
            _ = usr2.recv() => {
                if let Err(e) = shared.resume(None) {
                    tracing::info!(error = %e, "SIGUSR2 ignored");
                }
            }
            _ = term.recv() => return,
            _ = int.recv() => return,
        }
    }
}

/// Waits for SIGTERM or SIGINT (the second signal during a drain).
pub async fn wait_for_stop_signal() {
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
