//! The ops of this folder as plain candle compositions, for tensors off the CPU (a CUDA
//! GPU): candle runs each piece on the tensor's device and differentiates the composition
//! itself. Each kernel's entry point sends non-CPU tensors here, so a model built on a GPU
//! runs the same code as on the CPU. On the CPU these are slower than the kernels, and
//! the tests hold each kernel and its composition to the same values and gradients.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use candle_core::{DType, Device, Result, Tensor, D};

use super::window::Conv2dParams;

static ON_THE_CPU: AtomicBool = AtomicBool::new(false);
static HALF_CONVOLUTIONS: AtomicU8 = AtomicU8::new(FULL);
const FULL: u8 = 0;
const BF16: u8 = 1;
const F16: u8 = 2;

/// Whether an op on `device` takes these compositions: off the CPU, and on the CPU too
/// after [`use_on_the_cpu`].
pub fn wanted(device: &Device) -> bool {
    !device.is_cpu() || ON_THE_CPU.load(Ordering::Relaxed)
}

/// Sends the CPU's tensors here as well, process-wide: the GPU's code path run where there
/// is no GPU, so that tests can hold a whole model on it to the kernels' results.
pub fn use_on_the_cpu(on: bool) {
    ON_THE_CPU.store(on, Ordering::Relaxed);
}

/// Mixed precision (`--amp`), process-wide: with `Some(half)`, convolutions here compute
/// in `half` (inputs and weights rounded to it, products summed in f32 by cuBLAS, the
/// result widened back), everything else in f32, as PyTorch's autocast leaves BatchNorm
/// and the loss in f32. Training uses bfloat16, whose f32 exponent range needs no loss
/// scale; float16 is accepted too (candle's CPU matmul has no bfloat16, so the tests run
/// this path on the CPU in float16). The CPU kernels ignore it.
pub fn set_mixed_precision(half: Option<DType>) {
    let code = match half {
        Some(DType::BF16) => BF16,
        Some(DType::F16) => F16,
        _ => FULL,
    };
    HALF_CONVOLUTIONS.store(code, Ordering::Relaxed);
}

/// `conv2d` of NCHW `x` with `weight` (out, in / groups, kh, kw); in bfloat16 under
/// [`set_mixed_precision`].
pub fn conv2d(x: &Tensor, weight: &Tensor, p: Conv2dParams) -> Result<Tensor> {
    let conv = |x: &Tensor, w: &Tensor| x.conv2d(w, p.padding, p.stride, p.dilation, p.groups);
    let half = match HALF_CONVOLUTIONS.load(Ordering::Relaxed) {
        BF16 => Some(DType::BF16),
        F16 => Some(DType::F16),
        _ => None,
    };
    match half {
        Some(half) if x.dtype() == DType::F32 => {
            conv(&x.to_dtype(half)?, &weight.to_dtype(half)?)?.to_dtype(DType::F32)
        }
        _ => conv(x, weight),
    }
}

/// `conv2d` plus one bias per output channel.
pub fn conv2d_with_bias(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    p: Conv2dParams,
) -> Result<Tensor> {
    conv2d(x, weight, p)?.broadcast_add(&per_channel(bias)?)
}

/// The Detect head's 1×1 conv as (N, anchors, H, W, outputs).
pub fn head_conv(x: &Tensor, weight: &Tensor, bias: &Tensor, anchors: usize) -> Result<Tensor> {
    let p = Conv2dParams::POINTWISE;
    let y = conv2d_with_bias(x, weight, bias, p)?;
    let (n, c, h, w) = y.dims4()?;
    y.reshape((n, anchors, c / anchors.max(1), h, w))?
        .permute((0, 1, 3, 4, 2))?
        .contiguous()
}

/// Max pooling with `padding` cells of −∞ on each side, with torch's gradient: all of it
/// to the window's first maximum (candle's own pooling splits it among ties and has no
/// backward for a stride other than the kernel, which SPPF's 5×5 stride-1 pools need).
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let x = if padding == 0 {
        x.clone()
    } else {
        let x = pad_edges(x, 2, padding, f32::NEG_INFINITY)?;
        pad_edges(&x, 3, padding, f32::NEG_INFINITY)?
    };
    let (_, _, h, w) = x.dims4()?;
    if h < kernel || w < kernel || stride == 0 {
        candle_core::bail!("max_pool2d: a {kernel}x{kernel} window does not fit {h}x{w}");
    }
    let (out_h, out_w) = ((h - kernel) / stride + 1, (w - kernel) / stride + 1);
    // The stride-1 maxima over every window the strided ones start at, in torch's scan
    // order: a later element wins only when strictly greater.
    let (rows, cols) = ((out_h - 1) * stride + 1, (out_w - 1) * stride + 1);
    let mut best: Option<Tensor> = None;
    for i in 0..kernel {
        for j in 0..kernel {
            let window = x.narrow(2, i, rows)?.narrow(3, j, cols)?;
            best = Some(match best {
                None => window,
                Some(best) => window.gt(&best)?.where_cond(&window, &best)?,
            });
        }
    }
    let best = best.ok_or_else(|| candle_core::Error::Msg("max_pool2d: kernel 0".into()))?;
    every_nth(&every_nth(&best, 2, stride, out_h)?, 3, stride, out_w)
}

/// `n` cells of `value` before and after `x` along `dim`.
fn pad_edges(x: &Tensor, dim: usize, n: usize, value: f32) -> Result<Tensor> {
    let mut shape = x.dims().to_vec();
    shape[dim] = n;
    let edge = Tensor::full(value, shape, x.device())?.to_dtype(x.dtype())?;
    Tensor::cat(&[&edge, x, &edge], dim)
}

/// Elements 0, step, 2·step, … (`count` of them) along `dim`.
fn every_nth(x: &Tensor, dim: usize, step: usize, count: usize) -> Result<Tensor> {
    if step == 1 {
        return x.narrow(dim, 0, count);
    }
    // Pad to count·step, split the dim into (count, step) and keep offset 0 of each step.
    let len = x.dim(dim)?;
    let mut shape = x.dims().to_vec();
    shape[dim] = count * step - len;
    let tail = Tensor::zeros(shape, x.dtype(), x.device())?;
    let x = Tensor::cat(&[x, &tail], dim)?;
    let mut split = x.dims().to_vec();
    split.splice(dim..=dim, [count, step]);
    x.reshape(split)?.narrow(dim + 1, 0, 1)?.squeeze(dim + 1)
}

/// Nearest-neighbour upsampling by `scale` in both spatial dimensions, as a broadcast:
/// candle's own upsampling op overwrites its input's gradient instead of adding to it, so
/// a feature map that is also read elsewhere (every YOLO neck) would lose gradient.
pub fn upsample_nearest2d(x: &Tensor, scale: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    x.reshape((n, c, h, 1, w, 1))?
        .broadcast_as((n, c, h, scale, w, scale))?
        .reshape((n, c, h * scale, w * scale))
}

/// `maximum(a, b)` with torch's gradient: the larger input takes it, ties split it.
pub fn maximum(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let gt = a.gt(b)?.to_dtype(a.dtype())?;
    let tie = a.eq(b)?.to_dtype(a.dtype())?;
    let share = (gt + (tie * 0.5)?)?;
    a.mul(&share)? + b.mul(&share.affine(-1.0, 1.0)?)?
}

/// PReLU: `x` where positive, else `weight[c] · x` (one slope, or one per channel).
pub fn prelu(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let slope = if weight.elem_count() == 1 {
        weight.flatten_all()?.reshape(())?.broadcast_as(x.shape())?
    } else {
        per_channel(weight)?.broadcast_as(x.shape())?
    };
    let positive = x.gt(0f64)?;
    positive.where_cond(x, &x.mul(&slope)?)
}

/// ACON-C / Meta-ACON-C: `d·x·σ(β·d·x) + p2·x`, `d = p1 − p2`; `beta` has C values or N·C.
pub fn acon(x: &Tensor, p1: &Tensor, p2: &Tensor, beta: &Tensor) -> Result<Tensor> {
    let (n, c) = (x.dim(0)?, x.dim(1)?);
    let mut shape = vec![1; x.rank()];
    shape[1] = c;
    let p1 = p1.reshape(shape.as_slice())?;
    let p2 = p2.reshape(shape.as_slice())?;
    if beta.elem_count() == n * c && n > 1 {
        shape[0] = n;
    }
    let beta = beta.reshape(shape.as_slice())?;
    let dx = x.broadcast_mul(&(p1 - &p2)?)?;
    let gate = candle_nn::ops::sigmoid(&dx.broadcast_mul(&beta)?)?;
    dx.mul(&gate)? + x.broadcast_mul(&p2)?
}

/// BatchNorm of NCHW `x`: with `running` (mean, var) as constants (eval), else with the
/// batch's mean and biased variance, differentiated through. Returns the output and the
/// statistics it normalised with.
pub fn batch_norm(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    running: Option<(&Tensor, &Tensor)>,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (mean, var) = match running {
        Some((mean, var)) => (mean.flatten_all()?, var.flatten_all()?),
        None => {
            let c = x.dim(1)?;
            let per_channel = x.transpose(0, 1)?.reshape((c, ()))?;
            let mean = per_channel.mean(D::Minus1)?;
            let var = per_channel
                .broadcast_sub(&mean.unsqueeze(1)?)?
                .sqr()?
                .mean(D::Minus1)?;
            (mean, var)
        }
    };
    let scale = (weight / (&var + eps)?.sqrt()?)?;
    let shift = (bias - (&mean * &scale)?)?;
    let y = x
        .broadcast_mul(&per_channel(&scale)?)?
        .broadcast_add(&per_channel(&shift)?)?;
    Ok((y, mean, var))
}

/// Elementwise arctangent; candle has none, so it is computed on the CPU and carries the
/// gradient 1 / (1 + x²) on `x`'s device.
pub fn atan(x: &Tensor) -> Result<Tensor> {
    let values = x
        .to_dtype(DType::F64)?
        .flatten_all()?
        .to_vec1::<f64>()?
        .into_iter()
        .map(f64::atan)
        .collect::<Vec<_>>();
    let value = Tensor::from_vec(values, x.shape(), x.device())?.to_dtype(x.dtype())?;
    let slope = (x.sqr()? + 1.0)?.recip()?.detach();
    // value + (x − x)·slope: the value unchanged, the gradient dy · slope.
    value + (x - x.detach())?.mul(&slope)?
}

/// A vector of C values shaped (1, C, 1, 1) to broadcast over NCHW.
fn per_channel(v: &Tensor) -> Result<Tensor> {
    v.reshape((1, (), 1, 1))
}
