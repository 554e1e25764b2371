//! Helpers shared by the `data_*` tests.
// Each test binary uses only some of them.
#![allow(dead_code)]

use std::ops::Deref;
use std::path::{Path, PathBuf};

use actyolo::data::synth::{generate, SynthConfig};

/// An empty folder in the system's temp dir, unique to the test and process, removed
/// when dropped.
pub struct Scratch(PathBuf);

impl Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn scratch_dir(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("actyolo-test-{name}-{}", std::process::id()));
    // A leftover from an earlier run with the same process id is stale.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("cannot create a scratch folder");
    Scratch(dir)
}

/// A small synthetic dataset (64 px) in a scratch folder.
pub struct SmallSynth {
    pub yaml: PathBuf,
    pub dir: Scratch,
}

pub fn small_synth(name: &str, n_train: usize, n_val: usize, seed: u64) -> SmallSynth {
    let dir = scratch_dir(name);
    let config = SynthConfig {
        out: dir.to_path_buf(),
        n_train,
        n_val,
        imgsz: 64,
        seed,
        ..SynthConfig::default()
    };
    let yaml = generate(&config)
        .expect("synth generation failed")
        .data_yaml;
    SmallSynth { yaml, dir }
}
