//! BatchNorm2d with PyTorch's semantics: batch statistics in training (biased variance
//! to normalise, unbiased to update the running variance), running statistics in eval.

use candle_core::{Result, Tensor, Var};
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
        let running_mean = Var::from_tensor(&vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?)?;
        let running_var = Var::from_tensor(&vb.get_with_hints(channels, "running_var", Init::Const(1.0))?)?;
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
        let c = self.weight.elem_count();
        let per_channel = |t: &Tensor| t.reshape((1, c, 1, 1));
        let (mean, var) = if train {
            let mean = x.mean_keepdim((0, 2, 3))?;
            let var = x.broadcast_sub(&mean)?.sqr()?.mean_keepdim((0, 2, 3))?;
            self.update_running(&mean, &var, x.elem_count() / c)?;
            (mean, var)
        } else {
            (
                per_channel(self.running_mean.as_tensor())?,
                per_channel(self.running_var.as_tensor())?,
            )
        };
        let inv_std = (var + self.config.eps)?.sqrt()?.recip()?;
        x.broadcast_sub(&mean)?
            .broadcast_mul(&inv_std)?
            .broadcast_mul(&per_channel(&self.weight)?)?
            .broadcast_add(&per_channel(&self.bias)?)
    }

    /// The weight and bias of a convolution (weight: out channels first, no bias) followed
    /// by this BatchNorm in eval mode, as one convolution with bias.
    pub fn fold(&self, conv_weight: &Tensor) -> Result<(Tensor, Tensor)> {
        let scale = (self.weight.detach() / (self.running_var.as_tensor() + self.config.eps)?.sqrt()?)?;
        let mut shape = vec![1; conv_weight.rank()];
        shape[0] = scale.elem_count();
        let weight = conv_weight.detach().broadcast_mul(&scale.reshape(shape)?)?;
        let bias = (self.bias.detach() - (self.running_mean.as_tensor() * &scale)?)?;
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
