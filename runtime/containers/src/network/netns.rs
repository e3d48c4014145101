//! Network namespaces pinned by a bind mount on a file, as `ip netns add` and containerd's
//! CRI make them: so a namespace outlives the thread that created it and runc joins it by
//! path.

use std::fs;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

/// Whether `path` is a mounted network (or other) namespace: an unmounted leftover file sits
/// on the directory's own filesystem instead.
pub(super) fn is_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// What failed (`unmounting`, …) and why.
pub(super) type NetnsFailure = (&'static str, io::Error);

/// Creates a network namespace and pins it at `path`, as containerd's `pkg/netns` does:
/// an empty file, and a thread of our own that unshares its network namespace, bind-mounts
/// it onto the file and exits. The thread is not a tokio worker because its namespace
/// changes for good; no other code ever runs on it.
pub(super) async fn create_netns(path: &Path) -> Result<(), NetnsFailure> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| ("creating the directory of", e))?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o444)
        .open(path)
        .map_err(|e| ("creating the file of", e))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let target = path.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("ketch-netns".into())
        .spawn(move || {
            let made = nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| ("unsharing", io::Error::from(e)))
                .and_then(|()| {
                    nix::mount::mount(
                        Some("/proc/thread-self/ns/net"),
                        &target,
                        None::<&str>,
                        MsFlags::MS_BIND,
                        None::<&str>,
                    )
                    .map_err(|e| ("bind-mounting", io::Error::from(e)))
                });
            let _ = tx.send(made);
        });
    let made = match spawned {
        Ok(_) => rx
            .await
            .unwrap_or_else(|_| Err(("creating", io::Error::other("the netns thread panicked")))),
        Err(e) => Err(("starting a thread for", e)),
    };
    if made.is_err() {
        let _ = fs::remove_file(path);
    }
    made
}

/// Unmounts and removes a netns file; a missing or unmounted one is fine. `MNT_DETACH`: a
/// process still holding the namespace open (a container being killed) keeps it alive
/// without blocking us.
pub(super) fn remove_netns(path: &Path) -> Result<(), NetnsFailure> {
    // Several rounds in case a racing attach mounted twice.
    for _ in 0..4 {
        if !is_netns(path) {
            break;
        }
        match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
            Err(e) => return Err(("unmounting", e.into())),
        }
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(("removing", e)),
        _ => Ok(()),
    }
}
