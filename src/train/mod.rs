//! Training: hyperparameters, the losses (YOLOv5's and yolov7's; ultralytics 8's with its
//! task-aligned assigner), optimiser, schedule, EMA, checkpoints and the loop.

pub mod assign;
pub mod autoanchor;
pub mod criterion;
pub mod diagnostics;
pub mod ema;
pub mod hyp;
pub mod loss;
pub mod loss_v8;
pub mod optim;
pub mod ota;
pub mod results;
pub mod schedule;
pub mod tal;
pub mod trainer;
