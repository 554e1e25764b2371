//! The GPU's code path ([`actyolo::ops::portable`]: candle compositions in place of the
//! CPU kernels), checked where there is no GPU by sending the CPU's tensors through it:
//! every activation against PyTorch's golden values (act_support's tolerance), each op
//! against its kernel, and whole models (forward, loss, every gradient, the BatchNorm
//! running statistics, fused inference) against the kernels.
//!
//! With `ACTYOLO_TEST_DEVICE=0` (a `cuda` build on a GPU machine; tools/gpu_check.sh) the
//! same checks run the path on that GPU, against the CPU kernels.
//!
//! Tolerance against the kernels: outputs, losses and running statistics elementwise,
//! |a − b| ≤ 1e-4 · (1 + |b|) on the CPU (f32 sums in another order) and 1e-3 · (1 + |b|)
//! on a GPU (cuBLAS sums differently again; TF32 stays off, candle's default). A whole
//! model's parameter gradients, sums over thousands of products with cancellation, are
//! compared by norm: ‖a − b‖ ≤ 1e-3 · ‖b‖ + 1e-5 (measured on the CPU path: at most 2.5e-4, in
//! yolov5n's first convolutions).

mod act_support;
mod tensor_support;

use std::sync::{Mutex, MutexGuard};

use actyolo::act::ActSpec;
use actyolo::model::build::Model;
use actyolo::model::config::ModelConfig;
use actyolo::ops::conv2d::{conv2d, conv2d_bias_act, conv2d_with_bias, Conv2dParams};
use actyolo::ops::head_conv::head_conv;
use actyolo::ops::maxpool::max_pool2d;
use actyolo::ops::upsample_nearest::upsample_nearest2d;
use actyolo::ops::{acon, maximum, portable, prelu};
use actyolo::train::hyp::Hyp;
use actyolo::train::loss::{scale_loss_gains, LossGains, YoloLoss};
use candle_core::{DType, Device, Tensor, Var};
use tensor_support::pattern as rand;
use tensor_support::three_boxes;

/// The switch is process-wide: one check at a time.
static SWITCH: Mutex<()> = Mutex::new(());

/// Where the path runs: the device `ACTYOLO_TEST_DEVICE` names, else the CPU with the
/// compositions switched on (the guard switches them off again).
struct PathDevice {
    device: Device,
    _lock: MutexGuard<'static, ()>,
}

impl PathDevice {
    fn new() -> PathDevice {
        let lock = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
        let device = match std::env::var("ACTYOLO_TEST_DEVICE") {
            Ok(spec) => actyolo::ops::device::select(&spec).expect("ACTYOLO_TEST_DEVICE"),
            Err(_) => Device::Cpu,
        };
        PathDevice {
            device,
            _lock: lock,
        }
    }

    /// The half precision mixed precision runs in on this device.
    fn half(&self) -> DType {
        if self.device.is_cpu() {
            DType::F16
        } else {
            DType::BF16
        }
    }

    fn tolerance(&self) -> f32 {
        if self.device.is_cpu() {
            1e-4
        } else {
            1e-3
        }
    }

    /// Runs `f` on the path: the compositions on, on the path's device.
    fn run<T>(&self, f: impl FnOnce(&Device) -> T) -> T {
        portable::use_on_the_cpu(self.device.is_cpu());
        let out = f(&self.device);
        portable::use_on_the_cpu(false);
        out
    }
}

impl Drop for PathDevice {
    fn drop(&mut self) {
        portable::use_on_the_cpu(false);
        portable::set_mixed_precision(None);
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn assert_close(path: &[f32], kernel: &[f32], tol: f32, what: &str) {
    assert_eq!(path.len(), kernel.len(), "{what}: lengths");
    let worst = path
        .iter()
        .zip(kernel)
        .map(|(a, b)| ((a - b).abs() - tol * (1.0 + b.abs()), *a, *b))
        .fold((f32::MIN, 0.0, 0.0), |w, e| if e.0 > w.0 { e } else { w });
    assert!(
        worst.0 <= 0.0 && path.iter().all(|v| v.is_finite()),
        "{what}: path {} vs kernel {} (beyond tolerance by {:e})",
        worst.1,
        worst.2,
        worst.0
    );
}

fn assert_close_in_norm(path: &[f32], kernel: &[f32], tol: f32, what: &str) {
    assert_eq!(path.len(), kernel.len(), "{what}: lengths");
    let norm = |v: &mut dyn Iterator<Item = f32>| v.map(|x| x * x).sum::<f32>().sqrt();
    let off = norm(&mut path.iter().zip(kernel).map(|(a, b)| a - b));
    let size = norm(&mut kernel.iter().copied());
    assert!(
        off <= tol * size + 1e-5,
        "{what}: ‖path − kernel‖ = {off:e}, ‖kernel‖ = {size:e}, ratio {:e} > {tol:e}",
        off / size
    );
}

/// An op's output and the gradients of `Σ out · r` with respect to its inputs, computed
/// by `op` on `device` from the CPU tensors `inputs`.
fn output_and_gradients(
    device: &Device,
    inputs: &[Tensor],
    op: &dyn Fn(&[Tensor]) -> candle_core::Result<Tensor>,
) -> Vec<Vec<f32>> {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|t| Var::from_tensor(&t.to_device(device).unwrap()).unwrap())
        .collect();
    let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let y = op(&tensors).unwrap();
    let r = rand(y.dims(), 7).to_device(device).unwrap();
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let mut out = vec![values(&y)];
    out.extend(
        tensors
            .iter()
            .map(|t| values(grads.get(t).expect("a gradient"))),
    );
    out
}

/// The op through the path and through the kernels: the same output and gradients.
fn check_op(name: &str, inputs: &[Tensor], op: &dyn Fn(&[Tensor]) -> candle_core::Result<Tensor>) {
    let path = PathDevice::new();
    let kernel = output_and_gradients(&Device::Cpu, inputs, op);
    let ours = path.run(|device| output_and_gradients(device, inputs, op));
    for (i, (a, b)) in ours.iter().zip(&kernel).enumerate() {
        let what = if i == 0 {
            "output".into()
        } else {
            format!("gradient {i}")
        };
        assert_close(a, b, path.tolerance(), &format!("{name} {what}"));
    }
}

#[test]
fn every_activation_matches_pytorch_on_the_path() {
    let path = PathDevice::new();
    path.run(act_support::assert_every_case_matches);
}

#[test]
fn convolutions_match_the_kernels() {
    let params = |stride, padding, dilation, groups| Conv2dParams {
        stride,
        padding,
        dilation,
        groups,
    };
    for (p, w) in [
        (params(1, 1, 1, 1), [8, 4, 3, 3]),
        (params(2, 1, 1, 1), [8, 4, 3, 3]),
        (params(1, 2, 2, 1), [8, 4, 3, 3]),
        (params(1, 1, 1, 4), [8, 1, 3, 3]),
        (params(1, 0, 1, 1), [8, 4, 1, 1]),
        (params(1, 1, 1, 1), [64, 64, 3, 3]),
    ] {
        let inputs = [
            rand(&[2, w[1] * p.groups, 8, 8], 1),
            rand(&w, 2),
            rand(&[w[0]], 3),
        ];
        check_op("conv2d", &inputs[..2], &|t| conv2d(&t[0], &t[1], p));
        check_op("conv2d_with_bias", &inputs, &|t| {
            conv2d_with_bias(&t[0], &t[1], &t[2], p)
        });
    }
    // The fused inference op, activation included, where nothing needs a gradient.
    let silu = ActSpec::silu().elementwise();
    let silu = silu.as_ref();
    let inputs = [
        rand(&[2, 4, 9, 11], 1),
        rand(&[8, 4, 3, 3], 2),
        rand(&[8], 3),
    ];
    let path = PathDevice::new();
    let fused = |device: &Device| {
        let t: Vec<Tensor> = inputs
            .iter()
            .map(|t| t.to_device(device).unwrap())
            .collect();
        values(&conv2d_bias_act(&t[..1], &t[1], &t[2], params(1, 1, 1, 1), silu, None).unwrap())
    };
    let kernel = fused(&Device::Cpu);
    assert_close(
        &path.run(fused),
        &kernel,
        path.tolerance(),
        "conv2d_bias_act",
    );
}

#[test]
fn pooling_upsampling_and_the_head_match_the_kernels() {
    // SPPF's and SPP's stride-1 pools, yolov7's MP, and a padded stride-2 pool; ReLU-like
    // inputs with ties (zeros), where torch gives the whole gradient to the first.
    let x = rand(&[2, 3, 13, 12], 4).relu().unwrap();
    for (k, s, p) in [(5, 1, 2), (9, 1, 4), (2, 2, 0), (3, 2, 1)] {
        check_op(
            &format!("max_pool2d k{k} s{s} p{p}"),
            std::slice::from_ref(&x),
            &|t| max_pool2d(&t[0], k, s, p),
        );
    }
    // Twice from one input: every YOLO neck reads the upsampled map's input elsewhere too.
    check_op("upsample_nearest2d", &[rand(&[2, 3, 5, 4], 5)], &|t| {
        Tensor::cat(
            &[upsample_nearest2d(&t[0], 2)?, upsample_nearest2d(&t[0], 2)?],
            1,
        )
    });
    let inputs = [
        rand(&[2, 8, 5, 4], 6),
        rand(&[3 * 7, 8, 1, 1], 7),
        rand(&[21], 8),
    ];
    check_op("head_conv", &inputs, &|t| head_conv(&t[0], &t[1], &t[2], 3));
}

#[test]
fn learnable_activation_ops_match_the_kernels() {
    let x = rand(&[2, 4, 5, 3], 9);
    let mut with_ties = values(&x);
    with_ties[..8].fill(0.0);
    let x_ties = Tensor::from_vec(with_ties, x.dims(), &Device::Cpu).unwrap();
    check_op(
        "prelu per channel",
        &[x_ties.clone(), rand(&[4], 10)],
        &|t| prelu::apply(&t[0], &t[1]),
    );
    check_op("prelu one slope", &[x.clone(), rand(&[1], 11)], &|t| {
        prelu::apply(&t[0], &t[1])
    });
    check_op(
        "maximum",
        &[x_ties.clone(), x_ties.affine(0.5, 0.0).unwrap()],
        &|t| maximum::apply(&t[0], &t[1]),
    );
    let (p1, p2) = (rand(&[4], 12), rand(&[4], 13));
    check_op(
        "ACON-C",
        &[x.clone(), p1.clone(), p2.clone(), rand(&[4], 14)],
        &|t| acon::apply(&t[0], &t[1], &t[2], &t[3]),
    );
    check_op("Meta-ACON-C", &[x, p1, p2, rand(&[8], 15)], &|t| {
        acon::apply(&t[0], &t[1], &t[2], &t[3])
    });
}

/// A model's training step on `device`: the loss, every parameter's gradient and every
/// variable after the step's BatchNorm updates; then the fused model's decoded output.
fn model_step(cfg: &str, act: Option<&str>, device: &Device) -> Vec<(String, Vec<f32>)> {
    let config = ModelConfig::load(cfg).unwrap().with_nc(3).unwrap();
    let act = act.map(|a| ActSpec::parse(a).unwrap());
    let model = Model::new_on(&config, act.as_ref(), 0, None, device).unwrap();
    let gains = scale_loss_gains(
        &LossGains::from_hyp(&Hyp::load("hyp.scratch-low.yaml").unwrap().loss).unwrap(),
        model.head.strides().len(),
        3,
        64,
    );
    let loss = YoloLoss::new(gains, 3, &model.head.anchored().unwrap().anchors).unwrap();
    let x = rand(&[2, 3, 64, 64], 16).affine(0.5, 0.5).unwrap();
    let targets = three_boxes();
    let (total, _) = loss
        .compute(&model.forward(&x, true).unwrap(), &targets)
        .unwrap();
    let grads = total.backward().unwrap();
    let mut out = vec![("loss".to_string(), values(&total.reshape(1).unwrap()))];
    let vars = model.vars().var_map().data().lock().unwrap();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names {
        let var = vars[name].as_tensor();
        if let Some(g) = grads.get(var) {
            out.push((format!("grad {name}"), values(g)));
        }
        out.push((format!("after the step {name}"), values(var)));
    }
    drop(vars);
    let mut fused = model;
    fused.fuse().unwrap();
    let (decoded, _) = fused.predict(&x).unwrap();
    out.push(("fused prediction".into(), values(&decoded)));
    out
}

/// `gradients`: false where the model's own gradients are chaotic (see the caller).
fn check_model(cfg: &str, act: Option<&str>, gradients: bool) {
    let path = PathDevice::new();
    let kernel = model_step(cfg, act, &Device::Cpu);
    let ours = path.run(|device| model_step(cfg, act, device));
    assert_eq!(ours.len(), kernel.len(), "{cfg} {act:?}: what was compared");
    assert!(ours.len() > 100, "{cfg}: too few gradients compared");
    for ((name, a), (kernel_name, b)) in ours.iter().zip(&kernel) {
        assert_eq!(name, kernel_name);
        let what = format!("{cfg} {act:?} {name}");
        if name.starts_with("grad ") {
            if gradients {
                assert_close_in_norm(a, b, 1e-3, &what);
            }
        } else {
            assert_close(a, b, path.tolerance(), &what);
        }
    }
}

#[test]
fn yolov5n_trains_and_infers_the_same_on_the_path() {
    check_model("yolov5n.yaml", None, true);
}

#[test]
fn yolov7_tiny_trains_and_infers_the_same_on_the_path() {
    // With SiLU: with its own LeakyReLU(0.1), this small random-init model in training
    // mode is chaotic at 64 px (an input change of 1e-5 moves the kernels' own gradients
    // by 13%), so no two summation orders could agree. The blocks (MP, SP, ELAN concats,
    // IDetect) are what this checks; the activations have their own test above.
    check_model("yolov7-tiny.yaml", Some("nn.SiLU()"), true);
}

#[test]
fn learnable_activations_in_a_model_train_the_same_on_the_path() {
    for act in ["nn.PReLU()", "MetaAconC()", "nn.Hardswish()"] {
        check_model("yolov5n.yaml", Some(act), true);
    }
    // FReLU's gradients at initialisation are chaotic (an input change of 1e-5 moves the
    // kernels' own by 50%: max(x, funnel) with the two close), so only its loss, running
    // statistics and fused inference are compared; its maximum op is checked above.
    check_model("yolov5n.yaml", Some("FReLU()"), false);
}

#[test]
fn batch_norm_matches_the_kernel_in_training() {
    use actyolo::ops::batchnorm::batch_norm_act;
    let inputs = [rand(&[2, 4, 5, 3], 20), rand(&[4], 21), rand(&[4], 22)];
    let path = PathDevice::new();
    let kernel = output_and_gradients(&Device::Cpu, &inputs, &|t| {
        Ok(batch_norm_act(&t[0], &t[1], &t[2], 1e-3, None, None)?.0)
    });
    let ours = path.run(|device| {
        output_and_gradients(device, &inputs, &|t| {
            Ok(portable::batch_norm(&t[0], &t[1], &t[2], 1e-3, None)?.0)
        })
    });
    for (i, (a, b)) in ours.iter().zip(&kernel).enumerate() {
        assert_close(a, b, path.tolerance(), &format!("batch norm {i}"));
    }
}

#[test]
fn gradient_norms_read_on_the_device_equal_the_kernels() {
    use actyolo::train::diagnostics::GradNorms;
    let config = ModelConfig::load("yolov5n.yaml")
        .unwrap()
        .with_nc(3)
        .unwrap();
    let model = Model::new(&config, None, 0, None).unwrap();
    let x = rand(&[2, 3, 64, 64], 16).affine(0.5, 0.5).unwrap();
    let raw = model.forward(&x, true).unwrap();
    let root = raw
        .iter()
        .map(|r| r.sqr().unwrap().sum_all().unwrap())
        .reduce(|a, b| (a + b).unwrap())
        .unwrap();
    let grads = root.backward().unwrap();
    let params = model.vars().var_map().data().lock().unwrap().clone();
    let params: Vec<(String, Var)> = params.into_iter().collect();
    let norms = || {
        let mut norms = GradNorms::new(params.iter());
        norms.add(&grads).unwrap();
        norms.take().0
    };
    let path = PathDevice::new();
    let kernel = norms();
    let ours = path.run(|_| norms());
    assert_eq!(ours.len(), kernel.len());
    assert!(kernel.len() > 50, "too few Convs");
    for (module, norm) in &kernel {
        let theirs = ours[module];
        assert!(
            (theirs - norm).abs() <= 1e-6 * norm,
            "{module}: {theirs} vs {norm}"
        );
    }
}

#[test]
fn mixed_precision_stays_within_bfloat16_of_fp32() {
    // Convolutions in half precision (bfloat16 on a GPU, as --amp trains; float16 on the
    // CPU, whose matmul has no bfloat16): within 1e-2 of FP32 in norm (bfloat16 keeps 8
    // significant bits), and visibly not FP32 (else --amp would be doing nothing).
    let p = Conv2dParams {
        stride: 1,
        padding: 1,
        dilation: 1,
        groups: 1,
    };
    let inputs = [rand(&[2, 16, 12, 12], 1), rand(&[32, 16, 3, 3], 2)];
    let op = |t: &[Tensor]| conv2d(&t[0], &t[1], p);
    let path = PathDevice::new();
    let fp32 = output_and_gradients(&Device::Cpu, &inputs, &op);
    let mixed = path.run(|device| {
        portable::set_mixed_precision(Some(path.half()));
        output_and_gradients(device, &inputs, &op)
    });
    for (i, (a, b)) in mixed.iter().zip(&fp32).enumerate() {
        assert_close_in_norm(a, b, 1e-2, &format!("half-precision conv {i}"));
        let off = a
            .iter()
            .zip(b)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            off > 1e-4,
            "half-precision conv {i}: equal to FP32 (largest difference {off:e})"
        );
    }
    // A whole training step's loss.
    let loss = |device: &Device| model_step("yolov5n.yaml", None, device)[0].1[0];
    let fp32 = loss(&Device::Cpu);
    let mixed = path.run(|device| {
        portable::set_mixed_precision(Some(path.half()));
        loss(device)
    });
    assert!(
        (mixed - fp32).abs() <= 1e-2 * fp32.abs() && mixed != fp32,
        "loss: half precision {mixed} vs FP32 {fp32}"
    );
}
