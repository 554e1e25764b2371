//! Run folders numbered as ultralytics numbers them, and file writes. Files that hold
//! results or weights are written atomically: a temporary file in the same
//! folder, fsync, rename over the target, fsync of the folder. A kill at any moment leaves
//! either the old file or the new one, never a truncated mix. Every error names its path.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// `path`, or when it exists (and `exist_ok` is false) the first free `path2`, `path3`, …
/// as ultralytics' `increment_path` for folders.
pub fn increment_path(path: &Path, exist_ok: bool) -> PathBuf {
    if exist_ok || !path.exists() {
        return path.to_owned();
    }
    let numbered = |n: u32| {
        let mut name = OsString::from(path.as_os_str());
        name.push(n.to_string());
        PathBuf::from(name)
    };
    (2..9999)
        .map(numbered)
        .find(|p| !p.exists())
        .unwrap_or_else(|| numbered(9999))
}

/// An I/O error with the path it happened on.
#[derive(Debug, thiserror::Error)]
#[error("{}: {action}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub action: &'static str,
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    pub fn new(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> FileError {
        let path = path.to_path_buf();
        move |source| FileError {
            path,
            action,
            source,
        }
    }
}

/// Writes `bytes` to `path` atomically (see the module documentation). The new file's mode
/// follows the umask, as any file the user creates.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    // One name per target, so a write cut short by a kill is overwritten by the next.
    let temporary = folder.join(format!(".{file_name}.partial"));
    let result = write_synced(&temporary, bytes, &file_name);
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    std::fs::rename(&temporary, path).map_err(|source| {
        let _ = std::fs::remove_file(&temporary);
        FileError {
            path: path.to_path_buf(),
            action: "cannot move the new file into place",
            source,
        }
    })?;
    // The rename is durable only once the folder's entry is on disk.
    std::fs::File::open(&folder)
        .and_then(|dir| dir.sync_all())
        .map_err(FileError::new(&folder, "cannot sync the folder"))
}

fn write_synced(temporary: &Path, bytes: &[u8], file_name: &str) -> Result<(), FileError> {
    let mut file =
        std::fs::File::create(temporary).map_err(FileError::new(temporary, "cannot create"))?;
    let half = bytes.len() / 2;
    file.write_all(&bytes[..half])
        .map_err(FileError::new(temporary, "cannot write"))?;
    kill_point(file_name);
    file.write_all(&bytes[half..])
        .and_then(|()| file.sync_all())
        .map_err(FileError::new(temporary, "cannot write"))
}

/// The environment variable of the kill test: `ACTYOLO_KILL_AT=NAME#N` makes the process
/// SIGKILL itself halfway through the N-th atomic write of a file named NAME (N defaults
/// to 1), so a test can kill a run mid-write at an exact point. Unset, it costs one check
/// per file written.
pub const KILL_AT_VAR: &str = "ACTYOLO_KILL_AT";

fn kill_point(file_name: &str) {
    static TARGET: OnceLock<Option<(String, usize)>> = OnceLock::new();
    static WRITES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let target = TARGET.get_or_init(|| {
        let spec = std::env::var(KILL_AT_VAR).ok()?;
        let (name, count) = spec.split_once('#').unwrap_or((&spec, "1"));
        Some((name.to_string(), count.parse().unwrap_or(1)))
    });
    if let Some((name, count)) = target {
        if name == file_name {
            let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            if n == *count {
                // SAFETY: kill(2) on our own pid has no memory effects.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
        }
    }
}

/// A text file's contents, refusing files larger than `limit` bytes (a path that names the
/// wrong file, such as an image or a weights file, should not be read whole).
pub fn read_text(path: &Path, limit: u64) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    if size > limit {
        return Err(std::io::Error::other(format!(
            "{size} bytes is more than the {limit} a text file of this kind may have"
        )));
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::BufReader::new(file), &mut text)?;
    Ok(text)
}
