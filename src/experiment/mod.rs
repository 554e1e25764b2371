//! Activation experiments: `compare` trains one model per (activation, seed) and
//! `report` turns the runs into tables, statistics and plots.

pub mod compare;
pub mod record;
pub mod report;
pub mod stats;
