//! SGD (Nesterov), Adam and AdamW over YOLOv5's three parameter groups, with torch's
//! update rules, gradient-norm clipping, and state that can be saved for `--resume`.

use std::collections::HashMap;

use candle_core::{backprop::GradStore, Result, Tensor, Var};
use candle_nn::VarMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OptimizerKind {
    Sgd,
    Adam,
    AdamW,
    /// The model family's own choice, made when training starts ([`auto_optimizer`]).
    Auto,
}

impl OptimizerKind {
    pub const ALL: [OptimizerKind; 4] = [
        OptimizerKind::Sgd,
        OptimizerKind::Adam,
        OptimizerKind::AdamW,
        OptimizerKind::Auto,
    ];

    /// The name ultralytics' `--optimizer` takes.
    pub fn name(self) -> &'static str {
        match self {
            OptimizerKind::Sgd => "SGD",
            OptimizerKind::Adam => "Adam",
            OptimizerKind::AdamW => "AdamW",
            OptimizerKind::Auto => "auto",
        }
    }
}

/// What `auto` resolves to: the optimiser, its learning rate and momentum (Adam's β₁), and
/// the bias learning rate warmup starts from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoChoice {
    pub kind: OptimizerKind,
    pub lr0: f64,
    pub momentum: f64,
    pub warmup_bias_lr: f64,
}

/// ultralytics 8's `optimizer: auto` for a run of `iterations` optimiser-sized batches
/// (`ceil(images / max(batch, 64)) · epochs`) over `nc` classes: AdamW at
/// lr `round(0.002 · 5 / (4 + nc), 6)`, momentum 0.9, for up to 10,000 iterations. Longer
/// runs get SGD at 0.01 and 0.9 (ultralytics 8.4 picks its MuSGD there, which is not
/// built here; 8.3 picked SGD). Warmup starts biases at 0.
pub fn auto_optimizer(iterations: usize, nc: usize) -> AutoChoice {
    let (kind, lr0) = if iterations > 10_000 {
        (OptimizerKind::Sgd, 0.01)
    } else {
        let fit = 0.002 * 5.0 / (4 + nc) as f64;
        (OptimizerKind::AdamW, (fit * 1e6).round() / 1e6)
    };
    AutoChoice {
        kind,
        lr0,
        momentum: 0.9,
        warmup_bias_lr: 0.0,
    }
}

/// A name that is not an optimiser's.
#[derive(Debug, thiserror::Error)]
#[error("`{name}` is not an optimiser; choose {}", OptimizerKind::ALL.map(|k| k.name()).join(", "))]
pub struct UnknownOptimizer {
    pub name: String,
}

impl std::str::FromStr for OptimizerKind {
    type Err = UnknownOptimizer;

    /// One of SGD, Adam or AdamW, in any case.
    fn from_str(text: &str) -> std::result::Result<Self, UnknownOptimizer> {
        OptimizerKind::ALL
            .into_iter()
            .find(|kind| kind.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| UnknownOptimizer {
                name: text.to_string(),
            })
    }
}

/// The optimiser's and the schedule's keys of `hyp.*.yaml`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimHyp {
    /// Initial learning rate.
    pub lr0: f64,
    /// Final learning rate as a fraction of `lr0`.
    pub lrf: f64,
    /// SGD momentum / Adam beta1.
    pub momentum: f64,
    pub weight_decay: f64,
    /// Warmup length in epochs (fractions allowed).
    pub warmup_epochs: f64,
    pub warmup_momentum: f64,
    pub warmup_bias_lr: f64,
}

/// The groups train.py's `smart_optimizer` makes, in its order: biases (no decay; its
/// learning rate warms *down* from warmup_bias_lr), weights with decay, and BatchNorm
/// weights (no decay). Activation parameters (PReLU, FReLU, ACON) join the last group, and
/// so does yolov7's implicit knowledge (IDetect's `ia`/`im`), as yolov7's train.py puts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupKind {
    Bias,
    Decay,
    NoDecay,
}

/// What a state_dict entry is for the optimiser, by its ultralytics name.
pub fn group_of(name: &str) -> Option<GroupKind> {
    let buffer = name.ends_with("running_mean")
        || name.ends_with("running_var")
        || name.ends_with("num_batches_tracked")
        || name.ends_with(".anchors")
        // The anchor-free head's DFL weight is the fixed bin index 0..reg_max.
        || name.ends_with(".dfl.conv.weight");
    if buffer {
        None
    } else if name.ends_with(".bias") {
        Some(GroupKind::Bias)
    } else if is_batchnorm_weight(name) || name.contains(".act.") || name.ends_with(".implicit") {
        Some(GroupKind::NoDecay)
    } else {
        Some(GroupKind::Decay)
    }
}

/// A BatchNorm's weight: a Conv's `bn`, or one in a yolov7 RepConv's branches
/// (`rbr_dense.1`, `rbr_1x1.1`, `rbr_identity`).
fn is_batchnorm_weight(name: &str) -> bool {
    [
        ".bn.weight",
        ".rbr_dense.1.weight",
        ".rbr_1x1.1.weight",
        ".rbr_identity.weight",
    ]
    .iter()
    .any(|suffix| name.ends_with(suffix))
}

#[derive(Debug, Clone)]
pub struct ParamGroup {
    pub kind: GroupKind,
    pub params: Vec<(String, Var)>,
    pub lr: f64,
    pub initial_lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
}

/// Per-parameter state: the momentum buffer (SGD) or the first moment (Adam), and the
/// second moment (Adam).
#[derive(Debug, Clone)]
struct Slot {
    first: Tensor,
    second: Option<Tensor>,
}

#[derive(Debug)]
pub struct Optimizer {
    pub kind: OptimizerKind,
    pub groups: Vec<ParamGroup>,
    slots: HashMap<String, Slot>,
    /// Optimiser steps taken (Adam's bias correction).
    pub steps: u64,
}

impl Optimizer {
    /// Groups the trainable variables of `vars`; `weight_decay` applies to the decay group.
    pub fn new(
        kind: OptimizerKind,
        vars: &VarMap,
        lr: f64,
        momentum: f64,
        weight_decay: f64,
    ) -> Result<Optimizer> {
        if kind == OptimizerKind::Auto {
            candle_core::bail!("optimizer `auto` is resolved before training starts");
        }
        let data = vars
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("variable store lock poisoned".into()))?;
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        let mut groups: Vec<ParamGroup> = [GroupKind::Bias, GroupKind::Decay, GroupKind::NoDecay]
            .into_iter()
            .map(|kind| ParamGroup {
                kind,
                params: vec![],
                lr,
                initial_lr: lr,
                momentum,
                weight_decay: if kind == GroupKind::Decay {
                    weight_decay
                } else {
                    0.0
                },
            })
            .collect();
        for name in names {
            if let Some(kind) = group_of(name) {
                let group = groups
                    .iter_mut()
                    .find(|g| g.kind == kind)
                    .ok_or_else(|| candle_core::Error::Msg("optimizer group".into()))?;
                group.params.push((name.clone(), data[name].clone()));
            }
        }
        Ok(Optimizer {
            kind,
            groups,
            slots: HashMap::new(),
            steps: 0,
        })
    }

    /// Every trainable variable, by name.
    pub fn params(&self) -> impl Iterator<Item = &(String, Var)> {
        self.groups.iter().flat_map(|g| &g.params)
    }

    /// Adds one backward pass's gradients to `sums` (by parameter name): gradient
    /// accumulation up to the nominal batch size.
    pub fn accumulate(&self, sums: &mut HashMap<String, Tensor>, grads: &GradStore) -> Result<()> {
        for (name, var) in self.params() {
            if let Some(g) = grads.get(var.as_tensor()) {
                let total = match sums.remove(name) {
                    Some(sum) => (sum + g)?,
                    None => g.clone(),
                };
                sums.insert(name.clone(), total);
            }
        }
        Ok(())
    }

    /// One step with the accumulated gradients (by parameter name), after clipping their
    /// global norm to `max_norm` as train.py does (`clip_grad_norm_(…, 10.0)`).
    pub fn step(&mut self, grads: &HashMap<String, Tensor>, max_norm: f64) -> Result<()> {
        let mut total = 0f64;
        for g in grads.values() {
            total += g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
        let norm = total.sqrt();
        let clip = if norm > max_norm {
            max_norm / (norm + 1e-6)
        } else {
            1.0
        };
        self.steps += 1;
        for gi in 0..self.groups.len() {
            let group = self.groups[gi].clone();
            for (name, var) in &group.params {
                let Some(grad) = grads.get(name) else {
                    continue;
                };
                let grad = if clip < 1.0 {
                    (grad * clip)?
                } else {
                    grad.clone()
                };
                self.update(name, var, &grad, &group)?;
            }
        }
        Ok(())
    }

    fn update(&mut self, name: &str, var: &Var, grad: &Tensor, group: &ParamGroup) -> Result<()> {
        let p = var.as_tensor().detach();
        let (lr, wd, mom) = (group.lr, group.weight_decay, group.momentum);
        let new = match self.kind {
            OptimizerKind::Auto => {
                candle_core::bail!("optimizer `auto` is resolved before training starts")
            }
            OptimizerKind::Sgd => {
                // torch.optim.SGD(nesterov=True, dampening=0): d = g + wd·p; b = μ·b + d
                // (b = d on the first step); p -= lr·(d + μ·b).
                let d = if wd != 0.0 {
                    (grad + (&p * wd)?)?
                } else {
                    grad.clone()
                };
                let buf = match self.slots.get(name) {
                    Some(s) => ((&s.first * mom)? + &d)?,
                    None => d.clone(),
                };
                let step = (d + (&buf * mom)?)?;
                self.slots.insert(
                    name.to_string(),
                    Slot {
                        first: buf,
                        second: None,
                    },
                );
                (p - (step * lr)?)?
            }
            OptimizerKind::Adam | OptimizerKind::AdamW => {
                // torch.optim.Adam(betas=(momentum, 0.999), eps=1e-8): L2 decay folded into
                // the gradient for Adam, decoupled (p *= 1 - lr·wd) for AdamW.
                let (b1, b2, eps) = (mom, 0.999, 1e-8);
                let (g, p) = match self.kind {
                    OptimizerKind::Adam if wd != 0.0 => ((grad + (&p * wd)?)?, p),
                    OptimizerKind::AdamW if wd != 0.0 => (grad.clone(), (&p * (1.0 - lr * wd))?),
                    _ => (grad.clone(), p),
                };
                let (m, v) = match self.slots.get(name) {
                    Some(s) => (
                        s.first.clone(),
                        s.second.clone().unwrap_or(s.first.zeros_like()?),
                    ),
                    None => (g.zeros_like()?, g.zeros_like()?),
                };
                let m = ((m * b1)? + (&g * (1.0 - b1))?)?;
                let v = ((v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
                let t = self.steps as i32;
                let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
                let denom = ((v.sqrt()? / c2.sqrt())? + eps)?;
                let new = (&p - ((&m / denom)? * (lr / c1))?)?;
                self.slots.insert(
                    name.to_string(),
                    Slot {
                        first: m,
                        second: Some(v),
                    },
                );
                new
            }
        };
        var.set(&new)
    }

    /// The optimiser state as named tensors (`first.<param>`, `second.<param>`), for a checkpoint.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (name, slot) in &self.slots {
            out.insert(format!("first.{name}"), slot.first.clone());
            if let Some(s) = &slot.second {
                out.insert(format!("second.{name}"), s.clone());
            }
        }
        out
    }

    /// Restores [`Optimizer::state_tensors`].
    pub fn load_state_tensors(&mut self, tensors: &HashMap<String, Tensor>, steps: u64) {
        self.slots.clear();
        for (key, t) in tensors {
            if let Some(name) = key.strip_prefix("first.") {
                let second = tensors.get(&format!("second.{name}")).cloned();
                self.slots.insert(
                    name.to_string(),
                    Slot {
                        first: t.clone(),
                        second,
                    },
                );
            }
        }
        self.steps = steps;
    }
}
