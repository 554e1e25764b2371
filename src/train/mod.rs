//! Training: hyperparameters, loss, optimiser, schedule, EMA, checkpoints and the loop.

pub mod hyp;
pub mod assign;
pub mod ota;
pub mod loss;
pub mod ema;
pub mod optim;
pub mod schedule;
pub mod autoanchor;
pub mod trainer;
