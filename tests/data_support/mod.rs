//! Helpers shared by the `data_*` tests.
// Each test binary uses only some of them.
#![allow(dead_code)]

use std::path::PathBuf;

use actyolo::data::synth::{generate, SynthConfig};

#[path = "../scratch_support/mod.rs"]
mod scratch_support;
pub use scratch_support::{scratch_dir, Scratch};

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
