//! Scratch folders for the tests, removed when the test is done with them.
// Each test binary uses only some of these.
#![allow(dead_code)]

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

/// An empty folder in the system's temp dir, unique to its name and the process, removed
/// when dropped; kept when dropped by a failing test, to be looked at.
pub struct Scratch(PathBuf);

impl Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Scratch {
    /// The folder, kept until the test binary exits: for what a `static` holds for
    /// every test (statics are never dropped).
    pub fn keep_until_exit(self) -> PathBuf {
        let dir = self.0.clone();
        std::mem::forget(self);
        remove_at_exit(dir.clone());
        dir
    }
}

pub fn scratch_dir(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("actyolo-test-{name}-{}", std::process::id()));
    // A leftover from an earlier run with the same process id is stale.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("cannot create a scratch folder");
    Scratch(dir)
}

/// Folders removed when the process exits.
static AT_EXIT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" {
    fn atexit(callback: extern "C" fn()) -> std::os::raw::c_int;
}

extern "C" fn remove_kept_folders() {
    if let Ok(dirs) = AT_EXIT.lock() {
        for dir in dirs.iter() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn remove_at_exit(dir: PathBuf) {
    static REGISTER: Once = Once::new();
    // SAFETY: `atexit` is the C library's; the callback takes no arguments and only
    // removes folders.
    REGISTER.call_once(|| unsafe {
        atexit(remove_kept_folders);
    });
    AT_EXIT.lock().unwrap().push(dir);
}
