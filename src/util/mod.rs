//! Small helpers every layer may use: errors as text, atomic file writes with named I/O
//! errors, run folders and number formatting, mean and spread, the process's start-up
//! settings, and the benchmark's per-stage timers.

pub mod error;
pub mod format;
pub mod fs;
pub mod profile;
pub mod runtime;
pub mod stats;
