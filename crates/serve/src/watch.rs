//! Running a reload when files change or the process gets SIGHUP.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

/// How long a burst of changes may last before the reload runs: writers
/// (editors, `kubectl cp`, cert-manager) write in steps.
const SETTLE: Duration = Duration::from_millis(100);

/// Calls `reload` (on a tokio task) on SIGHUP and whenever anything changes
/// in the directories of `files`: a watch on the directory, not the file,
/// sees a Kubernetes Secret update, which swaps a symlink beside it. A burst
/// of events is one call; `reload` itself finds out whether its files
/// changed. What cannot be watched is logged at ERROR (SIGHUP still works).
/// `what` names the files in those logs. Needs a tokio runtime.
pub fn on_change(what: &'static str, files: Vec<PathBuf>, mut reload: impl FnMut() + Send + 'static) {
    // One pending reload at most.
    let (poke, mut pokes) = tokio::sync::mpsc::channel::<()>(1);
    let hup = poke.clone();
    tokio::spawn(async move {
        let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::error!(what, "cannot listen for SIGHUP; reloads follow file changes only");
            return;
        };
        while signal.recv().await.is_some() {
            let _ = hup.try_send(());
        }
    });
    let dirs: BTreeSet<PathBuf> = files
        .iter()
        .map(|f| match f.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = poke.try_send(());
        }
    })
    .map_err(|e| tracing::error!(what, error = %e, "cannot watch files; they reload on SIGHUP only"))
    .ok()
    .map(|mut w| {
        use notify::Watcher as _;
        for d in &dirs {
            if let Err(e) = w.watch(d, notify::RecursiveMode::NonRecursive) {
                tracing::error!(what, dir = %d.display(), error = %e, "cannot watch; it reloads on SIGHUP only");
            }
        }
        w
    });
    tokio::spawn(async move {
        // The watcher lives as long as this task.
        let _watcher = watcher;
        while pokes.recv().await.is_some() {
            tokio::time::sleep(SETTLE).await;
            while pokes.try_recv().is_ok() {}
            reload();
        }
    });
}
