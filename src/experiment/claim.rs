//! Several `compare` processes on one experiment folder: which runs a shard owns, and lock
//! files that keep two processes from training one run (or writing one file) at once.
//!
//! A lock is a file created atomically (`create_new`), holding the claimer's host, pid,
//! the run's epoch and a heartbeat time, rewritten after every epoch. It is stale when its
//! process is gone (same host, no such pid) or its heartbeat is older than the timeout
//! (another host); a stale lock is taken over by renaming it away first, so that of two
//! processes seeing the same stale lock only one takes it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::util::fs::{write_atomic, FileError};

/// What a lock file says about its holder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockInfo {
    pub host: String,
    pub pid: u32,
    /// The last finished epoch of the run it holds (none before the first).
    pub epoch: Option<usize>,
    /// Seconds since the Unix epoch at the last heartbeat.
    pub heartbeat: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// This machine's name, as the lock files record it.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer it is given.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ok && len > 0 {
        String::from_utf8_lossy(&buf[..len]).into_owned()
    } else {
        "unknown-host".into()
    }
}

/// Whether a process of this host with `pid` exists.
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
    let status = unsafe { libc::kill(pid, 0) };
    status == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

impl LockInfo {
    fn mine(epoch: Option<usize>) -> LockInfo {
        LockInfo {
            host: host_name(),
            pid: std::process::id(),
            epoch,
            heartbeat: now(),
        }
    }

    /// Seconds since the last heartbeat.
    pub fn age(&self) -> u64 {
        now().saturating_sub(self.heartbeat)
    }

    /// Its holder is gone: a dead process of this host, or no heartbeat for `timeout`.
    pub fn is_stale(&self, timeout: Duration) -> bool {
        if self.host == host_name() {
            return !process_alive(self.pid) || self.age() > timeout.as_secs();
        }
        self.age() > timeout.as_secs()
    }
}

/// Reads a lock file; `None` when there is none (or it is being replaced right now).
pub fn read_lock(path: &Path) -> Option<LockInfo> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// A held lock; dropping it removes the file.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
}

impl Lock {
    /// Takes the lock at `path` if it is free or stale; `None` while another live process
    /// holds it.
    pub fn try_take(path: &Path, timeout: Duration) -> Result<Option<Lock>, FileError> {
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)
                .map_err(FileError::new(folder, "cannot create the folder"))?;
        }
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
            {
                Ok(mut file) => {
                    let text = serde_json::to_string(&LockInfo::mine(None)).unwrap_or_default();
                    file.write_all(text.as_bytes())
                        .and_then(|()| file.sync_all())
                        .map_err(FileError::new(path, "cannot write the lock"))?;
                    return Ok(Some(Lock {
                        path: path.to_path_buf(),
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let taken = match read_lock(path) {
                        Some(info) => info.is_stale(timeout) && take_over(path, Some(&info)),
                        // Empty or unreadable: being written by its creator this instant,
                        // or left so by a process killed right after creating it.
                        None => modified_before(path, UNWRITTEN_LOCK) && take_over(path, None),
                    };
                    if !taken {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(FileError::new(path, "cannot create the lock")(e)),
            }
        }
        Ok(None)
    }

    /// Waits until the lock is free (polling), then takes it.
    pub fn take(path: &Path, timeout: Duration) -> Result<Lock, FileError> {
        loop {
            if let Some(lock) = Lock::try_take(path, timeout)? {
                return Ok(lock);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Rewrites the heartbeat, with the run's last finished epoch.
    pub fn beat(&self, epoch: Option<usize>) -> Result<(), FileError> {
        let text = serde_json::to_string(&LockInfo::mine(epoch)).unwrap_or_default();
        write_atomic(&self.path, text.as_bytes())
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // Only our own: a lock taken over from us (we were thought dead) is not removed.
        if read_lock(&self.path)
            .is_some_and(|i| i.pid == std::process::id() && i.host == host_name())
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A lock file still without its contents this long after it was created is abandoned.
const UNWRITTEN_LOCK: Duration = Duration::from_secs(10);

fn modified_before(path: &Path, age: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|elapsed| elapsed > age)
}

/// Moves a stale lock (`None`: one without contents) aside. Only the process whose rename
/// moved exactly the stale lock it read takes over; one that moved a fresh lock (another
/// process's takeover, between its read and its rename) puts it back.
fn take_over(path: &Path, stale: Option<&LockInfo>) -> bool {
    let aside = path.with_extension(format!("stale-{}", std::process::id()));
    if std::fs::rename(path, &aside).is_err() {
        return false;
    }
    let moved = read_lock(&aside);
    if moved.as_ref() == stale {
        let _ = std::fs::remove_file(&aside);
        true
    } else {
        let _ = std::fs::rename(&aside, path);
        false
    }
}

/// Shard `index` of `count` (from 1), as `--shard M/N` or a scheduler's array index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("--shard {0}: expected M/N with 1 <= M <= N, e.g. --shard 2/4")]
    Syntax(String),
    #[error("{name}={value}: {reason}")]
    Environment {
        name: &'static str,
        value: String,
        reason: String,
    },
}

impl std::str::FromStr for Shard {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Shard, ShardError> {
        let parse = |s: &str| s.trim().parse::<usize>().ok();
        match text.split_once('/').map(|(m, n)| (parse(m), parse(n))) {
            Some((Some(index), Some(count))) if (1..=count).contains(&index) => {
                Ok(Shard { index, count })
            }
            _ => Err(ShardError::Syntax(text.to_string())),
        }
    }
}

/// FNV-1a, 64 bits: a hash that every build and platform computes alike.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Shard {
    /// Whether this shard trains the run of `act` and `seed`: by a stable hash of the
    /// two, so adding an activation or a seed does not move the existing runs.
    pub fn owns(&self, act: &str, seed: u64) -> bool {
        stable_hash(&format!("{act}\u{0}{seed}")) % self.count as u64 == (self.index - 1) as u64
    }

    /// The shard a scheduler gives through the environment: Slurm's job array
    /// (`SLURM_ARRAY_TASK_ID` from `SLURM_ARRAY_TASK_MIN`, `SLURM_ARRAY_TASK_COUNT`) or a
    /// Kubernetes Indexed Job (`JOB_COMPLETION_INDEX` from 0, with the count in
    /// `ACTYOLO_SHARD_COUNT`); with the variables' names, to say which was used.
    pub fn from_env(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<(Shard, String)>, ShardError> {
        let number = |name: &'static str| -> Result<Option<usize>, ShardError> {
            get(name)
                .map(|value| {
                    value
                        .trim()
                        .parse::<usize>()
                        .map_err(|_| ShardError::Environment {
                            name,
                            value: value.clone(),
                            reason: "not a whole number".into(),
                        })
                })
                .transpose()
        };
        let shard = |index: usize, count: usize, name: &'static str, value: usize| {
            if (1..=count).contains(&index) {
                Ok(Shard { index, count })
            } else {
                Err(ShardError::Environment {
                    name,
                    value: value.to_string(),
                    reason: format!("gives shard {index} of {count}"),
                })
            }
        };
        if let (Some(id), Some(count)) = (
            number("SLURM_ARRAY_TASK_ID")?,
            number("SLURM_ARRAY_TASK_COUNT")?,
        ) {
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(1);
            let index = (id + 1).saturating_sub(min);
            let s = shard(index, count, "SLURM_ARRAY_TASK_ID", id)?;
            return Ok(Some((s, format!("SLURM_ARRAY_TASK_ID={id} (from SLURM_ARRAY_TASK_MIN={min}), SLURM_ARRAY_TASK_COUNT={count}"))));
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let Some(count) = number("ACTYOLO_SHARD_COUNT")? else {
                return Err(ShardError::Environment {
                    name: "JOB_COMPLETION_INDEX",
                    value: index.to_string(),
                    reason: "set ACTYOLO_SHARD_COUNT to the Job's completions as well".into(),
                });
            };
            let s = shard(index + 1, count, "JOB_COMPLETION_INDEX", index)?;
            return Ok(Some((
                s,
                format!("JOB_COMPLETION_INDEX={index}, ACTYOLO_SHARD_COUNT={count}"),
            )));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_split_runs_stably() {
        assert_eq!(
            "2/4".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 4 }
        );
        for bad in ["0/4", "5/4", "2", "a/b", "1/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        // Every run is owned by exactly one shard.
        for count in 1..6 {
            for seed in 0..5 {
                for act in ["silu", "relu", "nn.LeakyReLU(0.1)"] {
                    let owners = (1..=count)
                        .filter(|&index| Shard { index, count }.owns(act, seed))
                        .count();
                    assert_eq!(owners, 1);
                }
            }
        }
        // FNV-1a's published test vectors: "" and "a".
        assert_eq!(stable_hash(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn schedulers_give_the_shard_through_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let slurm = Shard::from_env(env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "8"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(slurm.0, Shard { index: 3, count: 8 });
        let k8s = Shard::from_env(env(&[
            ("JOB_COMPLETION_INDEX", "0"),
            ("ACTYOLO_SHARD_COUNT", "4"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(k8s.0, Shard { index: 1, count: 4 });
        assert!(Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "0")])).is_err());
        assert!(Shard::from_env(env(&[])).unwrap().is_none());
    }

    #[test]
    fn a_lock_is_exclusive_until_dropped_and_a_dead_holder_is_taken_over() {
        let dir = std::env::temp_dir().join(format!("actyolo-lock-{}", std::process::id()));
        let path = dir.join("run.lock");
        let timeout = Duration::from_secs(600);
        let lock = Lock::try_take(&path, timeout).unwrap().unwrap();
        assert!(Lock::try_take(&path, timeout).unwrap().is_none());
        lock.beat(Some(3)).unwrap();
        assert_eq!(read_lock(&path).unwrap().epoch, Some(3));
        drop(lock);
        assert!(!path.exists());
        // A lock left by a process of this host that no longer exists.
        let dead = LockInfo {
            host: host_name(),
            pid: u32::MAX - 1,
            epoch: Some(1),
            heartbeat: now(),
        };
        std::fs::write(&path, serde_json::to_string(&dead).unwrap()).unwrap();
        assert!(dead.is_stale(timeout));
        let lock = Lock::try_take(&path, timeout).unwrap().unwrap();
        drop(lock);
        // An empty lock file (its creator killed before writing it) is live while new and
        // abandoned once older than UNWRITTEN_LOCK.
        std::fs::write(&path, "").unwrap();
        assert!(Lock::try_take(&path, timeout).unwrap().is_none());
        let old = SystemTime::now() - UNWRITTEN_LOCK - Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(Lock::try_take(&path, timeout).unwrap().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
