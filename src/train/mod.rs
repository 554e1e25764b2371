//! Training: hyperparameters, loss, optimiser, schedule, EMA, checkpoints and the loop.

pub mod assign;
pub mod autoanchor;
pub mod diagnostics;
pub mod ema;
pub mod hyp;
pub mod loss;
pub mod optim;
pub mod ota;
pub mod schedule;
pub mod trainer;
