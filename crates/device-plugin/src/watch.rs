//! File-system monitors: the SGX device nodes (health) and the kubelet's socket directory
//! (kubelet restarts). Each is an inotify watch (`notify`) for speed plus a periodic re-check,
//! so a missed or unsupported event only delays detection by one poll interval.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use sgx_platform::{DeviceNodes, Platform};
use tokio::sync::{mpsc, watch};

/// Identity of the kubelet's `kubelet.sock`: a restarted kubelet creates a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubeletId {
    /// Inode number.
    pub ino: u64,
    /// Change time, seconds.
    pub ctime: i64,
    /// Change time, nanoseconds.
    pub ctime_nsec: i64,
}

/// What the kubelet directory looks like now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirSnapshot {
    /// `kubelet.sock`, if present.
    pub kubelet: Option<KubeletId>,
    /// File names present in the directory.
    pub files: BTreeSet<String>,
}

impl DirSnapshot {
    /// Reads `dir`.
    #[must_use]
    pub fn read(dir: &Path) -> Self {
        use std::os::unix::fs::MetadataExt;
        let kubelet = std::fs::metadata(dir.join(kubelet_api::KUBELET_SOCKET))
            .ok()
            .map(|m| KubeletId {
                ino: m.ino(),
                ctime: m.ctime(),
                ctime_nsec: m.ctime_nsec(),
            });
        let files = std::fs::read_dir(dir)
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        Self { kubelet, files }
    }

    /// Whether `name` exists in the directory.
    #[must_use]
    pub fn has(&self, name: &str) -> bool {
        self.files.contains(name)
    }
}

/// An inotify watch on a few directories (non-recursive) that wakes a channel on any event.
struct DirWatch {
    watcher: Option<notify::RecommendedWatcher>,
    /// Watched directories and their inode (a directory deleted and created again under the
    /// same name needs a new watch).
    watched: BTreeMap<PathBuf, u64>,
    dirs: Vec<PathBuf>,
}

impl DirWatch {
    fn new(dirs: Vec<PathBuf>, tx: mpsc::UnboundedSender<()>) -> Self {
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok() {
                let _ = tx.send(());
            }
        })
        .map_err(|e| tracing::warn!(error = %e, "inotify unavailable; relying on polling"))
        .ok();
        let mut w = Self {
            watcher,
            watched: BTreeMap::new(),
            dirs,
        };
        w.refresh();
        w
    }

    /// Adds watches for directories that exist now (e.g. `/dev/sgx` created after start) and
    /// forgets ones that vanished (inotify drops them itself).
    fn refresh(&mut self) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        use std::os::unix::fs::MetadataExt;
        for dir in &self.dirs {
            let ino = std::fs::metadata(dir)
                .ok()
                .filter(std::fs::Metadata::is_dir)
                .map(|m| m.ino());
            let watched = self.watched.get(dir).copied();
            if ino == watched {
                continue;
            }
            if watched.is_some() {
                let _ = watcher.unwatch(dir);
                self.watched.remove(dir);
            }
            if let Some(ino) = ino {
                match watcher.watch(dir, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        self.watched.insert(dir.clone(), ino);
                    }
                    Err(e) => tracing::debug!(dir = %dir.display(), error = %e, "cannot watch"),
                }
            }
        }
    }
}

/// Sleeps until `until`, or forever for `None` (a state machine's optional timer).
pub(crate) async fn sleep_until(until: Option<tokio::time::Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Keeps `tx` equal to the platform's device nodes until `shutdown` flips.
pub async fn monitor_devices(
    platform: Arc<dyn Platform>,
    tx: watch::Sender<DeviceNodes>,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let mut dirs = DirWatch::new(platform.watch_dirs(), ev_tx);
    loop {
        tokio::select! {
            _ = ev_rx.recv() => {}
            () = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => return,
        }
        // Coalesce bursts of events (a node replaced = delete + create).
        while ev_rx.try_recv().is_ok() {}
        dirs.refresh();
        let now = platform.device_nodes();
        tx.send_if_modified(|cur| {
            if *cur == now {
                return false;
            }
            tracing::info!(
                enclave = now.enclave().map(|n| n.host_path.display().to_string()),
                provision = now.provision().map(|n| n.host_path.display().to_string()),
                "sgx device nodes changed"
            );
            *cur = now;
            true
        });
    }
}

/// Keeps `tx` equal to the kubelet directory's snapshot until `shutdown` flips.
pub async fn monitor_kubelet_dir(
    dir: PathBuf,
    tx: watch::Sender<DirSnapshot>,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let mut watch = DirWatch::new(vec![dir.clone()], ev_tx);
    loop {
        tokio::select! {
            _ = ev_rx.recv() => {}
            () = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => return,
        }
        while ev_rx.try_recv().is_ok() {}
        watch.refresh();
        let now = DirSnapshot::read(&dir);
        tx.send_if_modified(|cur| {
            if *cur == now {
                return false;
            }
            *cur = now;
            true
        });
    }
}
