//! Helpers shared by the `data_*` tests.
// Each test binary uses only some of them.
#![allow(dead_code)]

use std::path::PathBuf;

use actyolo::data::synth::{generate, SynthConfig};

/// An empty folder of the system's temp dir, unique to this test and process.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("actyolo-test-{name}-{}", std::process::id()));
    // A leftover from an earlier run of the same process id is stale.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("cannot create a scratch folder");
    dir
}

/// A small synthetic dataset (64 px) in a scratch folder; returns its data.yaml.
pub fn small_synth(name: &str, n_train: usize, n_val: usize, seed: u64) -> PathBuf {
    let config = SynthConfig { out: scratch_dir(name), n_train, n_val, imgsz: 64, seed, ..SynthConfig::default() };
    generate(&config).expect("synth generation failed").data_yaml
}
