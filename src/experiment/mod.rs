//! Activation experiments: `compare` trains one model per (activation, seed) and
//! `report` turns the runs into tables, statistics and plots.

pub mod claim;
pub mod record;
pub mod report;
pub mod runner;
pub mod stats;
