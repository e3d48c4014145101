//! Local files that hold cluster state: private directories and files, and atomic writes
//! through temporary files that nobody else can have made or swapped.
//!
//! A data dir holds every object (Secrets included, if sealed), the raft log and the admin
//! token, so it is the owner's alone: created 0700, and refused when group or others may
//! read it, as etcd refuses a loose data dir. Files in it are 0600 whatever the umask.
//! Temporary files get a random name and are created with `O_EXCL` (`create_new`): a
//! fixed name can be pre-created or symlinked by another user in a shared directory, and
//! two writers would write through the same file.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Creates `dir` (and missing parents) 0700. An existing directory is left as it is: see
/// [`check_private_dir`].
///
/// # Errors
/// IO errors creating it.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Refuses a directory that group or others have any access to, with the command that
/// fixes it. Data dirs made by a ketch before 2026-12-07 are 0755: starting on one stops
/// here and says what to run.
///
/// # Errors
/// [`std::io::ErrorKind::PermissionDenied`] for a loose directory; IO errors reading it.
pub fn check_private_dir(dir: &Path) -> std::io::Result<()> {
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "the directory is accessible to group or others (mode {mode:04o}; ketch before \
                 2026-12-07 made data dirs 0755), and it holds the cluster's state and tokens: \
                 run `chmod 700 {}` and start again",
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Makes sure `path` exists and is 0600 before a library (redb) opens it: created empty
/// 0600 if missing (redb initializes an empty file), tightened if it was looser (files
/// written by a ketch before 2026-12-07 were 0644).
///
/// # Errors
/// IO errors creating or changing it.
pub fn ensure_private_file(path: &Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// A fresh temporary name beside `path`: `.<file name>.<random>.tmp`.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{:016x}.tmp", rand::random::<u64>()))
}

/// Creates a new temporary file beside `path` (random name, `O_EXCL`, 0600) holding
/// `contents`, synced. The caller renames or links it into place.
fn write_temp(path: &Path, contents: &[u8]) -> std::io::Result<PathBuf> {
    let tmp = temp_path(path);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(contents)?;
            f.sync_all()
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Replaces `path` with a 0600 file holding `contents`, atomically: readers see the old
/// file or the new one, never a part.
///
/// # Errors
/// IO errors writing or renaming.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = write_temp(path, contents)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Writes a new 0600 file at `path` holding `contents`, refusing to replace one that
/// exists ([`std::io::ErrorKind::AlreadyExists`]); never a partial file at `path`.
///
/// # Errors
/// The file exists; IO errors.
pub fn write_private_new(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = write_temp(path, contents)?;
    // link(2) fails on an existing target, where rename would replace it.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    linked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn data_dirs_are_made_private_and_a_loose_one_is_refused_with_the_chmod_to_run() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/data");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        check_private_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = check_private_dir(&dir).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
        assert!(
            err.to_string()
                .contains(&format!("run `chmod 700 {}`", dir.display())),
            "{err}"
        );
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert!(check_private_dir(&dir).is_err());
    }

    #[test]
    fn private_files_are_0600_and_temporary_names_never_repeat() {
        let root = tempfile::tempdir().unwrap();
        let token = root.path().join("admin.token");
        write_private(&token, b"one").unwrap();
        write_private(&token, b"two").unwrap();
        assert_eq!(std::fs::read(&token).unwrap(), b"two");
        assert_eq!(mode(&token), 0o600);
        let new = root.path().join("key");
        write_private_new(&new, b"k").unwrap();
        assert_eq!(mode(&new), 0o600);
        assert_eq!(
            write_private_new(&new, b"other").unwrap_err().kind(),
            std::io::ErrorKind::AlreadyExists
        );
        assert_eq!(std::fs::read(&new).unwrap(), b"k");
        let names: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "no temporary file is left behind");
        assert_ne!(temp_path(&token), temp_path(&token));
        let old = root.path().join("raft.redb");
        std::fs::write(&old, b"").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        ensure_private_file(&old).unwrap();
        assert_eq!(mode(&old), 0o600);
        let fresh = root.path().join("log.redb");
        ensure_private_file(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o600);
    }
}
