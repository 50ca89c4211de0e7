//! Reload on file change: the config file and the auth file are polled
//! (metadata only: modification time, size, inode) every half second, and a
//! change is reloaded once it has held still for one poll, so an editor's
//! several writes or a Kubernetes ConfigMap update (a symlink swap, which
//! inotify on the file itself would miss) cause one reload. A file that
//! fails to load is retried only when it changes again.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::app::Shared;

/// How often the files are looked at.
pub const POLL: Duration = Duration::from_millis(500);

/// What identifies a version of a file; `None` when it cannot be read.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// The files whose change triggers a reload: the config and its auth file.
fn watched(shared: &Shared) -> Vec<PathBuf> {
    let mut files = vec![shared.config_path.clone()];
    if let Some(auth) = &shared.snapshot().config.auth.file {
        files.push(auth.clone());
    }
    files
}

fn stamps(files: &[PathBuf]) -> Vec<Stamp> {
    files.iter().map(|f| stamp(f)).collect()
}

fn reload_count(shared: &Shared) -> u64 {
    use std::sync::atomic::Ordering::Relaxed;
    shared.stats.reloads_ok.load(Relaxed) + shared.stats.reloads_failed.load(Relaxed)
}

/// Polls until the task is aborted.
pub async fn run(shared: Arc<Shared>) {
    let mut files = watched(&shared);
    let mut applied = stamps(&files);
    let mut previous = applied.clone();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reloads = reload_count(&shared);
    loop {
        tick.tick().await;
        let now = stamps(&files);
        // A reload by SIGHUP or RELOAD since the last poll loaded the files
        // as they were at that poll, or newer: count that version as loaded.
        // A change written after it differs from `previous` and is picked up.
        if reload_count(&shared) != reloads {
            reloads = reload_count(&shared);
            applied = previous.clone();
        }
        // Reload when the files differ from what was loaded and have not
        // moved since the last poll (debounce).
        if now != applied && now == previous {
            tracing::info!("configuration or auth file changed; reloading");
            crate::reload::reload(&shared.config_path, &shared);
            reloads = reload_count(&shared);
            // The auth file may have been renamed by the new config.
            files = watched(&shared);
            applied = stamps(&files);
            previous = applied.clone();
            continue;
        }
        previous = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_changes_with_content_and_is_none_for_missing_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let f = dir.path().join("pool.toml");
        assert_eq!(stamp(&f), None);
        std::fs::write(&f, "a").expect("write");
        let first = stamp(&f);
        assert!(first.is_some());
        std::fs::write(&f, "ab").expect("write");
        assert_ne!(stamp(&f), first);
    }
}
