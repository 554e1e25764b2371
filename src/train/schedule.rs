//! Learning-rate and momentum schedules of train.py: warmup over max(3 epochs, 100
//! iterations) (bias LR down from warmup_bias_lr, others up from 0; momentum up from
//! warmup_momentum), then the linear or one-cycle (cosine) LR lambda with `lrf`.

/// The per-epoch LR factor `lf(epoch)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrSchedule {
    /// `(1 - x / epochs) * (1 - lrf) + lrf`
    Linear { epochs: usize, lrf: f64 },
    /// `((1 - cos(x π / epochs)) / 2) * (lrf - 1) + 1`
    Cosine { epochs: usize, lrf: f64 },
}

impl LrSchedule {
    pub fn factor(&self, epoch: f64) -> f64 {
        match *self {
            LrSchedule::Linear { epochs, lrf } => (1.0 - epoch / epochs as f64) * (1.0 - lrf) + lrf,
            LrSchedule::Cosine { epochs, lrf } => {
                ((1.0 - (epoch * std::f64::consts::PI / epochs as f64).cos()) / 2.0) * (lrf - 1.0)
                    + 1.0
            }
        }
    }
}

/// numpy's `interp` on two points.
fn interp(x: f64, (x0, x1): (f64, f64), (y0, y1): (f64, f64)) -> f64 {
    if x <= x0 {
        y0
    } else if x >= x1 {
        y1
    } else {
        y0 + (x - x0) / (x1 - x0) * (y1 - y0)
    }
}

/// Warmup settings from the hyperparameters.
#[derive(Debug, Clone, Copy)]
pub struct Warmup {
    /// Warmup iterations: max(round(warmup_epochs · batches per epoch), 100).
    pub iterations: usize,
    pub bias_lr: f64,
    pub momentum: f64,
    pub final_momentum: f64,
}

impl Warmup {
    pub fn new(
        warmup_epochs: f64,
        batches_per_epoch: usize,
        bias_lr: f64,
        warmup_momentum: f64,
        momentum: f64,
    ) -> Warmup {
        Warmup {
            iterations: ((warmup_epochs * batches_per_epoch as f64).round() as usize).max(100),
            bias_lr,
            momentum: warmup_momentum,
            final_momentum: momentum,
        }
    }

    /// (learning rate, momentum) at global iteration `ni` for a group whose scheduled LR
    /// is `target_lr`; `None` once warmup is over. The bias group starts at `bias_lr`.
    pub fn at(&self, ni: usize, target_lr: f64, is_bias: bool) -> Option<(f64, f64)> {
        if ni > self.iterations {
            return None;
        }
        let span = (0.0, self.iterations as f64);
        let start = if is_bias { self.bias_lr } else { 0.0 };
        Some((
            interp(ni as f64, span, (start, target_lr)),
            interp(ni as f64, span, (self.momentum, self.final_momentum)),
        ))
    }

    /// Batches to accumulate before a step during warmup: rising from 1 to nbs / batch.
    pub fn accumulate(&self, ni: usize, nominal: usize, batch: usize) -> usize {
        let target = nominal as f64 / batch as f64;
        (interp(ni as f64, (0.0, self.iterations as f64), (1.0, target)).round() as usize).max(1)
    }
}
