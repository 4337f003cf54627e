//! The control socket file: binding it with its final mode, the link in the data directory,
//! and removing them at shutdown.
//!
//! Never removes a file that is not a socket or a link.

use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

use super::DaemonError;
use crate::control::{self};

/// Removes `path` if it is there and of the kind `is` accepts (never another kind of file).
pub(super) fn remove_if(path: &Path, is: impl Fn(&std::fs::FileType) -> bool) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| is(&m.file_type())) {
        let _ = std::fs::remove_file(path);
    }
}

/// Checks that `path` itself (not a link's target) is a socket of exactly `mode`.
fn check_socket(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let m = std::fs::symlink_metadata(path)?;
    if !m.file_type().is_socket() {
        return Err(std::io::Error::other(
            "is not the socket just bound (replaced meanwhile?)",
        ));
    }
    let found = m.permissions().mode() & 0o777;
    if found != mode {
        return Err(std::io::Error::other(format!(
            "was bound with mode {found:o}, not {mode:o}"
        )));
    }
    Ok(())
}

/// Binds the control socket at `path` (mode 0600, or 0660 for the service's group), creating
/// its directory if missing. A stale socket there is replaced; any other file is an error, never
/// removed. When the socket is not `DATA/control.sock`, a symbolic link there points at it, so
/// `--data DATA` reaches the daemon wherever its socket is; the link is returned.
pub(super) fn bind_control_socket(
    path: &Path,
    group: bool,
    data: &Path,
) -> Result<(UnixListener, Option<PathBuf>), DaemonError> {
    use std::os::unix::fs::FileTypeExt as _;
    let err = |p: &Path, e: std::io::Error| DaemonError::Socket {
        path: p.to_path_buf(),
        source: e,
    };
    match std::fs::symlink_metadata(path) {
        // A stale socket, or the link an earlier run as a service left in its data directory.
        Ok(m) if m.file_type().is_socket() || m.file_type().is_symlink() => {
            let _ = std::fs::remove_file(path);
        }
        Ok(_) => {
            return Err(err(
                path,
                std::io::Error::other(
                    "exists and is not a socket; refusing to replace it (choose another --socket)",
                ),
            ));
        }
        Err(_) => {}
    }
    if let Some(parent) = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty() && !p.exists())
    {
        std::fs::create_dir_all(parent).map_err(|e| err(parent, e))?;
        // Through a descriptor of the directory itself, opened without following a link:
        // a path chmod would follow one planted in the directory's place meanwhile.
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(parent)
            .and_then(|d| {
                d.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(if group {
                    0o750
                } else {
                    0o700
                }))
            })
            .map_err(|e| err(parent, e))?;
    }
    let mode = if group { 0o660 } else { 0o600 };
    // The socket is created with its final mode: no moment when others may connect.
    // SAFETY: umask only changes this process's file creation mask; it is restored at once.
    let old = unsafe { libc::umask(0o777 & !mode) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener = bound.map_err(|e| err(path, e))?;
    // No chmod after the bind: the mask gave the socket its mode, and a chmod by path would
    // follow a link planted in its place meanwhile. What is there must be that socket.
    check_socket(path, mode).map_err(|e| err(path, e))?;
    let link = control::socket_path(data);
    if link == path {
        return Ok((listener, None));
    }
    match std::fs::symlink_metadata(&link) {
        Ok(m) if m.file_type().is_symlink() || m.file_type().is_socket() => {
            let _ = std::fs::remove_file(&link);
        }
        Ok(_) => {
            tracing::warn!(path = %link.display(), "not a socket or link: left alone; --data will not reach this daemon");
            return Ok((listener, None));
        }
        Err(_) => {}
    }
    match std::os::unix::fs::symlink(path, &link) {
        Ok(()) => Ok((listener, Some(link))),
        Err(e) => {
            tracing::warn!(path = %link.display(), error = %e, "cannot link the control socket into the data directory");
            Ok((listener, None))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_in_the_sockets_place_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        std::fs::write(&path, b"precious").unwrap();
        let e = bind_control_socket(&path, false, dir.path()).err().unwrap();
        assert!(e.to_string().contains("exists and is not a socket"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }

    #[test]
    fn remove_if_removes_only_the_kind_it_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        remove_if(&file, std::fs::FileType::is_symlink);
        assert!(file.exists());
        remove_if(&file, std::fs::FileType::is_file);
        assert!(!file.exists());
    }

    #[tokio::test]
    async fn the_socket_and_its_new_directory_get_their_modes_without_a_path_chmod() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/ptt/control.sock");
        let (_l, link) = bind_control_socket(&path, true, dir.path()).unwrap();
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o660);
        assert_eq!(mode(path.parent().unwrap()), 0o750);
        assert!(link.is_some());
    }

    #[test]
    fn only_the_socket_itself_with_its_mode_passes_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        std::fs::set_permissions(&sock, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        check_socket(&sock, 0o600).unwrap();
        assert!(check_socket(&sock, 0o660).is_err());
        // A link to the socket in its place is refused: the check does not follow it.
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&sock, &link).unwrap();
        assert!(check_socket(&link, 0o600).is_err());
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(check_socket(&file, 0o600).is_err());
    }
}
