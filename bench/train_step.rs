//! The training step both benchmarks time (perf on the CPU, gpu on a CUDA device): what
//! `Run::train_epoch` does per batch (forward, loss, backward, gradient accumulation, SGD
//! step with clipping) on a fixed synthetic batch, minus the data loading, the warmup
//! schedule and the EMA.

use std::collections::HashMap;

use actyolo::act::ActSpec;
use actyolo::model::build::Model;
use actyolo::model::config::ModelConfig;
use actyolo::train::hyp::Hyp;
use actyolo::train::loss::{scale_loss_gains, LossGains, YoloLoss};
use actyolo::train::optim::{Optimizer, OptimizerKind};
use actyolo::util::profile::{self, Stage};
use anyhow::Result;
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const HYP: &str = "hyp.scratch-low.yaml";
const BOXES_PER_IMAGE: usize = 10;
/// train.py clips the gradient norm to 10 before each step.
const MAX_GRAD_NORM: f64 = 10.0;

/// `BOXES_PER_IMAGE` seeded boxes per image of a batch of `batch`, each inside the image,
/// of classes below `nc`: (image, class, x, y, w, h) rows, normalised, as the loss reads them.
pub fn synthetic_targets(batch: usize, nc: usize) -> Vec<[f32; 6]> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut rows = Vec::with_capacity(batch * BOXES_PER_IMAGE);
    for image in 0..batch {
        for _ in 0..BOXES_PER_IMAGE {
            let (w, h) = (
                rng.random_range(0.05..0.5f32),
                rng.random_range(0.05..0.5f32),
            );
            let (x, y) = (
                rng.random_range(w / 2.0..1.0 - w / 2.0),
                rng.random_range(h / 2.0..1.0 - h / 2.0),
            );
            rows.push([image as f32, rng.random_range(0..nc) as f32, x, y, w, h]);
        }
    }
    rows
}

pub struct TrainStep {
    pub model: Model,
    loss: YoloLoss,
    optimizer: Optimizer,
    images: Tensor,
    targets: Tensor,
    batch: usize,
    imgsz: usize,
}

impl TrainStep {
    /// The model `cfg` with `nc` classes (and `act` for every Conv) on `device`, a seeded
    /// random batch of (`batch`, `imgsz`) images there, and `targets`.
    pub fn new(
        cfg: &str,
        nc: usize,
        act: Option<&ActSpec>,
        (batch, imgsz): (usize, usize),
        targets: &[[f32; 6]],
        device: &Device,
    ) -> Result<TrainStep> {
        let config = ModelConfig::load(cfg)?.with_nc(nc)?;
        let model = Model::new_on(&config, act, 0, None, device)?;
        let hyp = Hyp::load(HYP)?;
        let detect = model
            .head
            .anchored()
            .ok_or_else(|| anyhow::anyhow!("the training step is anchor-based (YOLOv5, YOLOv7)"))?;
        let gains = scale_loss_gains(
            &LossGains::from_hyp(&hyp.loss)?,
            detect.strides.len(),
            nc,
            imgsz,
        );
        let loss = YoloLoss::new(gains, nc, &detect.anchors)?;
        // Decay as train.py scales it at the nominal batch 64 (accumulation makes it 1).
        let optimizer = Optimizer::new(
            OptimizerKind::Sgd,
            model.vars().var_map(),
            hyp.optim.lr0,
            hyp.optim.momentum,
            hyp.optim.weight_decay,
        )?;
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let pixels: Vec<f32> = (0..batch * 3 * imgsz * imgsz)
            .map(|_| rng.random())
            .collect();
        let images = Tensor::from_vec(pixels, (batch, 3, imgsz, imgsz), device)?;
        let targets = Tensor::from_vec(targets.concat(), (targets.len(), 6), &Device::Cpu)?;
        Ok(TrainStep {
            model,
            loss,
            optimizer,
            images,
            targets,
            batch,
            imgsz,
        })
    }

    /// Every part of the step sits in a profile span, freeing included, so that a profile
    /// accounts for the whole step. It runs on a rayon worker, as the trainer's does, and
    /// ends when the device has finished.
    pub fn run(&mut self) -> candle_core::Result<()> {
        actyolo::util::runtime::on_pool(|| self.step())?;
        self.model.device().synchronize()
    }

    fn step(&mut self) -> candle_core::Result<()> {
        let preds = {
            let _t = profile::span(Stage::OtherForward);
            self.model.forward(&self.images, true)?
        };
        let total = {
            let _t = profile::span(Stage::Loss);
            let (total, _) = self
                .loss
                .compute(&preds, &self.targets)
                .map_err(candle_core::Error::wrap)?;
            let value = total.to_scalar::<f32>()?;
            if !value.is_finite() {
                candle_core::bail!("the loss became {value}");
            }
            total
        };
        let grads = {
            let _t = profile::span(Stage::OtherBackward);
            let grads = total.backward()?;
            // Freeing the forward graph is part of the backward pass's cost.
            drop((total, preds));
            grads
        };
        let _t = profile::span(Stage::Optimizer);
        let mut accumulated = HashMap::new();
        self.optimizer.accumulate(&mut accumulated, &grads)?;
        // The gradient store holds a gradient per graph node: freeing it is the step's too.
        drop(grads);
        self.optimizer.step(&accumulated, MAX_GRAD_NORM)
    }

    /// Forward GFLOP of one step: ultralytics' count at the training size, times the batch.
    pub fn forward_gflop(&self) -> f64 {
        self.model.gflops(self.imgsz) * self.batch as f64
    }
}
