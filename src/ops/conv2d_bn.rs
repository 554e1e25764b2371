//! Conv2d (no bias) + BatchNorm2d with batch statistics + an optional pointwise
//! activation, as one custom op for training. The composition of the two ops is the same
//! arithmetic, but candle's backward pass gives every graph node's input a zeroed
//! gradient buffer and adds into it: for the convolution's output, the largest tensor of
//! each layer, that was three passes over memory per layer and step.

use std::sync::{Arc, OnceLock};

use candle_core::{CpuStorage, CustomOp3, Device, Layout, Result, Shape, Tensor};

use super::batchnorm::{channel_stats, BatchNormAct, ChannelStats};
use super::conv2d::{Conv2dOp, Conv2dParams};
use super::elementwise::Elementwise;
use super::storage::contiguous;
use crate::util::profile::{self, Stage};

/// What the forward pass leaves for the backward pass and the running averages.
#[derive(Debug)]
struct Saved {
    conv_out: Tensor,
    stats: Arc<ChannelStats>,
}

/// The op over `(x, conv weight, [bn weight; bn bias])`.
#[derive(Debug)]
struct ConvBnAct {
    conv: Conv2dOp,
    eps: f32,
    act: Option<Arc<dyn Elementwise>>,
    saved: Arc<OnceLock<Saved>>,
}

impl ConvBnAct {
    fn batch_norm(&self, stats: Arc<ChannelStats>) -> BatchNormAct {
        BatchNormAct::new(stats, self.eps, true, self.act.clone())
    }
}

impl CustomOp3 for ConvBnAct {
    fn name(&self) -> &'static str {
        "conv2d-batch-norm-act"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
        ps: &CpuStorage,
        pl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (conv_out, shape) = {
            let _t = profile::span(Stage::ConvForward);
            self.conv.forward_vec((xs, xl), (ws, wl), None)?
        };
        let _t = profile::span(Stage::BatchNormForward);
        let y = &conv_out;
        let (n, c, hw) = (
            shape.dims()[0],
            shape.dims()[1],
            shape.dims()[2] * shape.dims()[3],
        );
        let params = contiguous::<f32>("conv2d-batch-norm", ps, pl)?;
        if params.len() != 2 * c {
            candle_core::bail!(
                "conv2d-batch-norm: {} BatchNorm parameters for {c} channels",
                params.len()
            );
        }
        let stats = Arc::new(channel_stats(y, (n, c, hw)));
        let out = self
            .batch_norm(stats.clone())
            .forward(y, &params[..c], &params[c..], (n, c, hw));
        let conv_out = Tensor::from_vec(conv_out, shape.clone(), &Device::Cpu)?;
        if self.saved.set(Saved { conv_out, stats }).is_err() {
            candle_core::bail!("conv2d-batch-norm: one op value ran forward twice");
        }
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        params: &Tensor,
        out: &Tensor,
        dout: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Some(saved) = self.saved.get() else {
            candle_core::bail!("conv2d-batch-norm: backward before forward")
        };
        let c = saved.stats.mean.len();
        let params = params.detach();
        let (gamma, beta) = (params.narrow(0, 0, c)?, params.narrow(0, c, c)?);
        // BatchNormAct's result is this op's (the activation included).
        let grads =
            self.batch_norm(saved.stats.clone())
                .bwd(&saved.conv_out, &gamma, &beta, out, dout)?;
        let (Some(dconv), Some(dgamma), Some(dbeta)) = grads else {
            candle_core::bail!("conv2d-batch-norm: BatchNorm gave no gradient")
        };
        let (dx, dw, _) = self.conv.gradients(x, w, &dconv, false)?;
        Ok((dx, Some(dw), Some(Tensor::cat(&[dgamma, dbeta], 0)?)))
    }
}

/// Training-mode `act(batch_norm(conv2d(x, weight)))` with this batch's statistics, which
/// it also returns (for the running averages). `bn_params` is the BatchNorm's weight and
/// bias, concatenated.
pub fn conv_batch_norm_act(
    x: &Tensor,
    weight: &Tensor,
    params: Conv2dParams,
    bn_params: &Tensor,
    eps: f64,
    act: Option<Arc<dyn Elementwise>>,
) -> Result<(Tensor, Arc<ChannelStats>)> {
    let saved = Arc::new(OnceLock::new());
    let op = ConvBnAct {
        conv: Conv2dOp::plain(params),
        eps: eps as f32,
        act,
        saved: saved.clone(),
    };
    let y = x
        .contiguous()?
        .apply_op3(&weight.contiguous()?, &bn_params.contiguous()?, op)?;
    let stats = saved.get().map(|s| s.stats.clone()).ok_or_else(|| {
        candle_core::Error::Msg("conv2d-batch-norm: no statistics after the forward pass".into())
    })?;
    Ok((y, stats))
}
