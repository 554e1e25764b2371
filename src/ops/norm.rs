//! BatchNorm2d with PyTorch's semantics: batch statistics in training (biased variance
//! to normalise, unbiased to update the running variance), running statistics in eval.

use candle_core::{DType, Result, Tensor, Var};

use std::sync::Arc;

use super::batchnorm::{batch_norm_act, ChannelStats};
use super::conv2d::Conv2dParams;
use super::conv2d_bn::conv_batch_norm_act;
use super::elementwise::Elementwise;
use super::portable;
use crate::util::profile::{self, Stage};
use candle_nn::{Init, VarBuilder};

/// BatchNorm hyperparameters. YOLOv5's `initialize_weights` sets every BatchNorm2d in a
/// model to eps 1e-3 and momentum 0.03, activations' own BatchNorms included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BnConfig {
    pub eps: f64,
    pub momentum: f64,
}

impl BnConfig {
    pub const YOLO: BnConfig = BnConfig {
        eps: 1e-3,
        momentum: 0.03,
    };
}

#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Var,
    pub running_var: Var,
    pub config: BnConfig,
}

impl BatchNorm2d {
    pub fn new(channels: usize, config: BnConfig, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let running_mean =
            Var::from_tensor(&vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?)?;
        let running_var =
            Var::from_tensor(&vb.get_with_hints(channels, "running_var", Init::Const(1.0))?)?;
        Ok(BatchNorm2d {
            weight,
            bias,
            running_mean,
            running_var,
            config,
        })
    }

    /// The learnable parameters (not the running statistics).
    pub fn params(&self) -> Vec<Tensor> {
        vec![self.weight.clone(), self.bias.clone()]
    }

    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_act(x, train, None)
    }

    /// BatchNorm followed by `act`, fused into one kernel; in training it also updates
    /// the running statistics.
    pub fn forward_act(
        &self,
        x: &Tensor,
        train: bool,
        act: Option<Arc<dyn Elementwise>>,
    ) -> Result<Tensor> {
        let _t = profile::span(Stage::BatchNormForward);
        if portable::wanted(x.device()) {
            return self.forward_act_portable(x, train, act);
        }
        let fixed = if train {
            None
        } else {
            let v = |t: &Var| t.as_tensor().to_dtype(DType::F32)?.to_vec1::<f32>();
            Some(ChannelStats {
                mean: v(&self.running_mean)?,
                var: v(&self.running_var)?,
            })
        };
        let (y, stats) = batch_norm_act(x, &self.weight, &self.bias, self.config.eps, fixed, act)?;
        if train {
            self.update_batch_stats(&stats, x.elem_count())?;
        }
        Ok(y)
    }

    /// [`Self::forward_act`] off the CPU: candle's composition, with the batch statistics
    /// kept on the device.
    fn forward_act_portable(
        &self,
        x: &Tensor,
        train: bool,
        act: Option<Arc<dyn Elementwise>>,
    ) -> Result<Tensor> {
        let running =
            (!train).then(|| (self.running_mean.as_tensor(), self.running_var.as_tensor()));
        let (y, mean, var) =
            portable::batch_norm(x, &self.weight, &self.bias, self.config.eps, running)?;
        if train {
            self.update_running(&mean, &var, x.elem_count() / mean.elem_count().max(1))?;
        }
        act.map_or(Ok(y.clone()), |f| f.tensor(&y))
    }

    /// Moves the running statistics towards a batch's, of `elements` values in all.
    fn update_batch_stats(&self, stats: &ChannelStats, elements: usize) -> Result<()> {
        let c = stats.mean.len();
        let t = |v: &[f32]| Tensor::from_slice(v, c, self.running_mean.device());
        self.update_running(&t(&stats.mean)?, &t(&stats.var)?, elements / c.max(1))
    }

    /// Training only: `conv2d(x, conv_weight)`, this BatchNorm with the batch's statistics
    /// and `act`, as one op (see [`conv_batch_norm_act`]); updates the running statistics.
    pub fn forward_conv_act(
        &self,
        x: &Tensor,
        conv_weight: &Tensor,
        params: Conv2dParams,
        act: Option<Arc<dyn Elementwise>>,
    ) -> Result<Tensor> {
        if portable::wanted(x.device()) {
            return self.forward_act(&portable::conv2d(x, conv_weight, params)?, true, act);
        }
        let bn_params = Tensor::cat(&[&self.weight, &self.bias], 0)?;
        let (y, stats) =
            conv_batch_norm_act(x, conv_weight, params, &bn_params, self.config.eps, act)?;
        self.update_batch_stats(&stats, y.elem_count())?;
        Ok(y)
    }

    /// The weight and bias of a convolution (weight: out channels first, no bias) followed
    /// by this BatchNorm in eval mode, as one convolution with bias.
    pub fn fold(&self, conv_weight: &Tensor) -> Result<(Tensor, Tensor)> {
        // Every input detached: the running statistics are variables, so results derived
        // from them would count as needing a gradient and the fused inference kernels
        // would be skipped.
        let (gamma, beta) = (self.weight.detach(), self.bias.detach());
        let mean = self.running_mean.as_tensor().detach();
        let std = (self.running_var.as_tensor().detach() + self.config.eps)?.sqrt()?;
        let scale = (&gamma / &std)?;
        let mut shape = vec![1; conv_weight.rank()];
        shape[0] = scale.elem_count();
        let weight = conv_weight.detach().broadcast_mul(&scale.reshape(shape)?)?;
        // In yolov5's order (`fuse_conv_and_bn`): bias − weight·mean / std, so that a fused
        // model and its ONNX export round as ultralytics' do.
        let bias = (beta - ((gamma * mean)? / std)?)?;
        Ok((weight, bias))
    }

    fn update_running(&self, mean: &Tensor, var: &Tensor, n: usize) -> Result<()> {
        let m = self.config.momentum;
        let unbiased = (var.detach().flatten_all()? * (n as f64 / (n.max(2) - 1) as f64))?;
        let mean = mean.detach().flatten_all()?;
        let rm = ((self.running_mean.as_tensor() * (1.0 - m))? + (mean * m)?)?;
        let rv = ((self.running_var.as_tensor() * (1.0 - m))? + (unbiased * m)?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)
    }
}
