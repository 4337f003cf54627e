//! Files that hold secrets: written atomically with mode 0600, refused when others can read.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// A file problem, naming the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A secret file that group or others may read.
    #[error(
        "{path} has mode {mode:04o}, so other users may read this secret; run: chmod 600 {path}"
    )]
    LoosePermissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The content is not what the file should hold.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl FileError {
    /// Wraps an I/O error with the path.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        FileError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    /// A content error with the path.
    pub fn invalid(path: &Path, reason: impl std::fmt::Display) -> Self {
        FileError::Invalid {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory with `mode`,
/// fsync, rename over the target, fsync the directory. A crash leaves the old file or the new
/// one, never half of either.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| FileError::invalid(path, "not a file name"))?;
    // A fresh random name, created exclusively and never through a symlink: whoever may
    // write in the directory cannot plant a file or a link at a name it can predict and have
    // the secret written through it (issue 24, finding 7).
    let (tmp, mut f) = {
        let mut tries = 0;
        loop {
            let tag = rand_core::RngCore::next_u64(&mut rand_core::OsRng);
            let tmp = dir.join(format!(".{}.tmp.{tag:016x}", name.to_string_lossy()));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(mode)
                .open(&tmp)
            {
                Ok(f) => break (tmp, f),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 8 => tries += 1,
                Err(e) => return Err(FileError::io(path, e)),
            }
        }
    };
    let result = (|| {
        // The umask may have narrowed the mode; secrets must not be wider than asked.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| FileError::io(path, e))
}

/// Writes a secret file (mode 0600, atomically).
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic(path, bytes, 0o600)
}

/// Writes a public file (mode 0644, atomically).
pub fn write_public(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    write_atomic(path, bytes, 0o644)
}

/// Reads a secret file, refusing it when group or others have any access.
pub fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, FileError> {
    let meta = fs::metadata(path).map_err(|e| FileError::io(path, e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(FileError::LoosePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| FileError::io(path, e))
}

/// Reads a public file.
pub fn read_public(path: &Path) -> Result<Vec<u8>, FileError> {
    fs::read(path).map_err(|e| FileError::io(path, e))
}

/// Creates a directory (and parents) with mode 0700 if it does not exist.
pub fn create_private_dir(path: &Path) -> Result<(), FileError> {
    fs::create_dir_all(path).map_err(|e| FileError::io(path, e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(|e| FileError::io(path, e))
}

/// Magic at the start of every secret key file.
pub const KEY_MAGIC: &[u8; 4] = b"PTTK";

/// What a key file holds (the byte after the magic and version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum KeyKind {
    /// The domain authority's Ed25519 secret key.
    Authority = 1,
    /// A device's Ed25519 secret key.
    DeviceIdentity = 2,
    /// A device's X25519 secret key.
    DeviceX25519 = 3,
    /// The authority's channel epoch secrets.
    EpochSecrets = 4,
    /// A device's channel key chains (its data directory's `keys.bin`).
    ChannelKeys = 5,
}

/// Frames key material: magic ‖ version 1 ‖ kind ‖ payload.
pub fn frame_key(kind: KeyKind, payload: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut v = Zeroizing::new(Vec::with_capacity(6 + payload.len()));
    v.extend_from_slice(KEY_MAGIC);
    v.push(1);
    v.push(kind as u8);
    v.extend_from_slice(payload);
    v
}

/// Reads a secret key file of the given kind and returns its payload.
pub fn read_key(path: &Path, kind: KeyKind) -> Result<Zeroizing<Vec<u8>>, FileError> {
    let bytes = read_secret(path)?;
    if bytes.len() < 6 || &bytes[..4] != KEY_MAGIC || bytes[4] != 1 {
        return Err(FileError::invalid(
            path,
            "not a ptt-node key file (bad magic or version)",
        ));
    }
    if bytes[5] != kind as u8 {
        return Err(FileError::invalid(
            path,
            format!("holds key kind {}, expected {:?}", bytes[5], kind),
        ));
    }
    Ok(Zeroizing::new(bytes[6..].to_vec()))
}

/// Reads a 32-byte key of the given kind.
pub fn read_key32(path: &Path, kind: KeyKind) -> Result<Zeroizing<[u8; 32]>, FileError> {
    let p = read_key(path, kind)?;
    if p.len() != 32 {
        return Err(FileError::invalid(
            path,
            format!("key is {} bytes, expected 32", p.len()),
        ));
    }
    let mut k = Zeroizing::new([0u8; 32]);
    k.copy_from_slice(&p);
    Ok(k)
}

/// Keeps this process's memory (device, channel and authority keys) out of core files: the
/// core size limit is set to 0, and the process is marked not dumpable, which also stops a
/// core pipe (systemd-coredump, apport), which ignores the size limit, and other processes of
/// the same user from reading its memory through /proc or ptrace. The `dist` profile aborts
/// on panic, so without this a panic would write every secret the process holds to disk.
/// Called first thing by every `ptt-node` command.
pub fn no_core_dumps() -> std::io::Result<()> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit and prctl take plain values and change only this process's limits
    // and flags.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[cfg(target_os = "linux")]
    // SAFETY: as above.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Someone who may write in the directory plants links at the temporary names the old
    /// code used (`.NAME.tmp.PID`) and at a few others: the secret is never written through
    /// one, and lands in the target with mode 0600.
    #[test]
    fn a_secret_is_never_written_through_a_planted_link() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        fs::write(&victim, b"untouched").unwrap();
        let target = t.path().join("device.key");
        let planted = t
            .path()
            .join(format!(".device.key.tmp.{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        write_secret(&target, b"secret").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(fs::read(&target).unwrap(), b"secret");
        let meta = fs::symlink_metadata(&target).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // No temporary file is left behind but the planted link.
        let left: Vec<String> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp."))
            .collect();
        assert_eq!(left, [planted.file_name().unwrap().to_string_lossy()]);
    }

    /// Core files are off for this process once asked.
    #[test]
    fn no_core_dumps_sets_the_core_limit_to_zero() {
        no_core_dumps().unwrap();
        let limits = fs::read_to_string("/proc/self/limits").unwrap();
        let core = limits
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .unwrap();
        let fields: Vec<&str> = core.split_whitespace().collect();
        assert_eq!(&fields[4..6], ["0", "0"], "{core}");
        // SAFETY: reads this process's flag.
        assert_eq!(unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) }, 0);
    }

    #[test]
    fn secret_round_trip_and_loose_mode_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("identity.key");
        write_secret(&p, &frame_key(KeyKind::DeviceIdentity, &[1u8; 32])).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(*read_key32(&p, KeyKind::DeviceIdentity).unwrap(), [1u8; 32]);
        assert!(matches!(
            read_key32(&p, KeyKind::Authority),
            Err(FileError::Invalid { .. })
        ));
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        let e = read_key32(&p, KeyKind::DeviceIdentity).unwrap_err();
        assert!(matches!(e, FileError::LoosePermissions { mode: 0o640, .. }));
        assert!(e.to_string().contains("chmod 600"));
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn short_or_foreign_files_are_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write_secret(&p, b"PTT").unwrap();
        assert!(matches!(
            read_key(&p, KeyKind::Authority),
            Err(FileError::Invalid { .. })
        ));
        write_secret(&p, &frame_key(KeyKind::Authority, &[0u8; 5])).unwrap();
        assert!(matches!(
            read_key32(&p, KeyKind::Authority),
            Err(FileError::Invalid { .. })
        ));
    }
}
