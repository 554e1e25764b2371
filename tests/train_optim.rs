//! Optimiser steps, ModelEMA and the warmup/LR schedule against torch.optim and
//! ultralytics' code (fixtures: tools/gen_train_fixtures.py). Tolerance: 1e-6 absolute +
//! 1e-6 relative (a few f32 operations per step).

use std::collections::HashMap;

use actyolo::train::ema::ModelEma;
use actyolo::train::optim::{group_of, GroupKind, Optimizer, OptimizerKind};
use actyolo::train::schedule::{LrSchedule, Warmup};
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;

#[derive(serde::Deserialize)]
struct Step {
    lr: [f64; 3],
    momentum: f64,
}

#[derive(serde::Deserialize)]
struct WarmupPoint {
    ni: usize,
    epoch: usize,
    accumulate: usize,
    lr: [f64; 3],
    momentum: f64,
}

#[derive(serde::Deserialize)]
struct Fixture {
    names: Vec<String>,
    weight_decay: f64,
    schedule: Vec<Step>,
    epochs: usize,
    batches: usize,
    lrf: f64,
    warmup_iterations: usize,
    warmup: Vec<WarmupPoint>,
    linear: Vec<f64>,
    cosine: Vec<f64>,
}

fn fixture() -> (Fixture, HashMap<String, Tensor>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let json = std::fs::read_to_string(format!("{dir}/train.json")).unwrap();
    (
        serde_json::from_str(&json).unwrap(),
        candle_core::safetensors::load(format!("{dir}/train.safetensors"), &Device::Cpu).unwrap(),
    )
}

fn assert_close(ours: &Tensor, torch: &Tensor, what: &str) {
    let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = torch.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() <= 1e-6 + 1e-6 * y.abs(), "{what}: {x} vs {y}");
    }
}

/// A VarMap holding the fixture's initial state_dict.
fn vars(t: &HashMap<String, Tensor>) -> VarMap {
    let map = VarMap::new();
    let mut data = map.data().lock().unwrap();
    for (k, v) in t {
        if let Some(name) = k.strip_prefix("init/") {
            data.insert(
                name.to_string(),
                Var::from_tensor(&v.copy().unwrap()).unwrap(),
            );
        }
    }
    drop(data);
    map
}

#[test]
fn sgd_adam_adamw_and_ema_follow_torch_step_by_step() {
    let (fx, t) = fixture();
    for (kind, label) in [
        (OptimizerKind::Sgd, "SGD"),
        (OptimizerKind::Adam, "Adam"),
        (OptimizerKind::AdamW, "AdamW"),
    ] {
        let map = vars(&t);
        let mut opt = Optimizer::new(kind, &map, 0.01, 0.937, fx.weight_decay).unwrap();
        assert_eq!(
            opt.groups.iter().map(|g| g.kind).collect::<Vec<_>>(),
            [GroupKind::Bias, GroupKind::Decay, GroupKind::NoDecay]
        );
        let mut ema = ModelEma::new(&map, 0).unwrap();
        for (step, sched) in fx.schedule.iter().enumerate() {
            let running_mean = map.data().lock().unwrap()["model.0.bn.running_mean"].clone();
            running_mean
                .set(&(running_mean.as_tensor() + 0.01 * (step + 1) as f64).unwrap())
                .unwrap();
            for (group, lr) in opt.groups.iter_mut().zip(sched.lr) {
                group.lr = lr;
                group.momentum = sched.momentum;
            }
            let grads: HashMap<String, Tensor> = fx
                .names
                .iter()
                .map(|n| (n.clone(), t[&format!("grad/{step}/{n}")].clone()))
                .collect();
            opt.step(&grads, 10.0).unwrap();
            let data = map.data().lock().unwrap();
            for name in &fx.names {
                assert_close(
                    data[name].as_tensor(),
                    &t[&format!("{label}/{step}/{name}")],
                    &format!("{label} step {step} {name}"),
                );
            }
            drop(data);
            if kind == OptimizerKind::Sgd {
                ema.update(&map).unwrap();
                for (name, value) in &ema.tensors {
                    assert_close(
                        value,
                        &t[&format!("ema/{step}/{name}")],
                        &format!("EMA step {step} {name}"),
                    );
                }
            }
        }
    }
}

#[test]
fn warmup_and_lr_lambdas_follow_train_py() {
    let (fx, _) = fixture();
    let linear = LrSchedule::Linear {
        epochs: fx.epochs,
        lrf: fx.lrf,
    };
    let cosine = LrSchedule::Cosine {
        epochs: fx.epochs,
        lrf: fx.lrf,
    };
    for e in 0..=fx.epochs {
        assert!((linear.factor(e as f64) - fx.linear[e]).abs() < 1e-12);
        assert!((cosine.factor(e as f64) - fx.cosine[e]).abs() < 1e-12);
    }
    let warmup = Warmup::new(3.0, fx.batches, 0.1, 0.8, 0.937);
    assert_eq!(warmup.iterations, fx.warmup_iterations);
    for p in &fx.warmup {
        assert_eq!(warmup.accumulate(p.ni, 64, 16), p.accumulate, "ni {}", p.ni);
        for (j, lr) in p.lr.iter().enumerate() {
            let target = 0.01 * linear.factor(p.epoch as f64);
            match warmup.at(p.ni, target, j == 0) {
                Some((ours, momentum)) => {
                    assert!(
                        (ours - lr).abs() < 1e-12,
                        "ni {} group {j}: {ours} vs {lr}",
                        p.ni
                    );
                    assert!((momentum - p.momentum).abs() < 1e-12);
                }
                None => assert!(p.ni > fx.warmup_iterations),
            }
        }
    }
}

#[test]
fn yolov7_parameters_join_yolov7s_groups() {
    // yolov7's train.py: BatchNorm weights (RepConv's branches too) and IDetect's implicit
    // knowledge without decay, conv weights with it, every bias in the bias group.
    for (name, group) in [
        ("model.102.rbr_dense.0.weight", Some(GroupKind::Decay)),
        ("model.102.rbr_dense.1.weight", Some(GroupKind::NoDecay)),
        ("model.102.rbr_1x1.1.weight", Some(GroupKind::NoDecay)),
        ("model.102.rbr_identity.weight", Some(GroupKind::NoDecay)),
        ("model.102.rbr_identity.bias", Some(GroupKind::Bias)),
        ("model.102.rbr_identity.running_var", None),
        ("model.105.ia.0.implicit", Some(GroupKind::NoDecay)),
        ("model.105.im.2.implicit", Some(GroupKind::NoDecay)),
        ("model.105.m.0.weight", Some(GroupKind::Decay)),
        ("model.105.anchors", None),
    ] {
        assert_eq!(group_of(name), group, "{name}");
    }
}

#[test]
fn auto_follows_ultralytics_8() {
    use actyolo::train::optim::auto_optimizer;
    // ultralytics 8.4's build_optimizer: lr_fit = round(0.002 * 5 / (4 + nc), 6), AdamW up to
    // 10,000 iterations (its log for nc=3: "AdamW(lr=0.001429, momentum=0.9)").
    let short = auto_optimizer(1_280, 3);
    assert_eq!(
        (short.kind, short.lr0, short.momentum, short.warmup_bias_lr),
        (OptimizerKind::AdamW, 0.001429, 0.9, 0.0)
    );
    assert_eq!(auto_optimizer(10_000, 80).lr0, 0.000119);
    let long = auto_optimizer(10_001, 80);
    assert_eq!((long.kind, long.lr0), (OptimizerKind::Sgd, 0.01));
    assert!(Optimizer::new(OptimizerKind::Auto, &VarMap::new(), 0.01, 0.9, 0.0).is_err());
}
