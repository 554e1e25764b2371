//! Small helpers every layer may use: atomic file writes with named I/O errors.

pub mod fs;
