//! `parse_model`: from a [`ModelConfig`] to a [`Model`], with YOLOv5's width and depth
//! rules (yolov7's are the same), channel bookkeeping, activation precedence and the Detect
//! head's strides.

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor};

use super::blocks::{Block, BlockContext, Bottleneck, Conv, Focus, Spp, Sppf, C3};
use super::blocks_v7::{RepConv, Sppcspc};
use super::config::{DetectKind, LayerRow, ModelConfig, ModuleRow};
use super::detect::Detect;
use crate::act::{ActArg, ActSpec};
use crate::ops::conv_bn_layer::{ConvShape, Cost};
use crate::ops::maxpool::MaxPool2d;
use crate::ops::vars::SeededVarMap;

/// One row of the built model.
#[derive(Debug)]
pub struct Layer {
    /// Input layers; `None` is the input image.
    pub from: Vec<Option<usize>>,
    /// `number` repeats (after the depth gain); C3 repeats inside one block, SPPCSPC ignores it.
    pub blocks: Vec<Block>,
    pub c2: usize,
}

/// A layer as ultralytics' summary prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerSummary {
    pub index: usize,
    pub from: String,
    pub n: usize,
    pub params: usize,
    pub module: String,
    pub arguments: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{config}: layer {row} {module}: {message}")]
    Layer {
        config: String,
        row: usize,
        module: String,
        message: String,
    },
    #[error("{config}: {message}")]
    Model { config: String, message: String },
}

#[derive(Debug)]
pub struct Model {
    pub config: ModelConfig,
    pub layers: Vec<Layer>,
    pub detect: Detect,
    detect_from: Vec<usize>,
    /// Which outputs later layers read, so the forward pass keeps only those.
    keep: Vec<bool>,
    pub summary: Vec<LayerSummary>,
    pub names: Vec<String>,
    default_act: ActSpec,
    vars: SeededVarMap,
}

/// Width rule: `make_divisible(c · width, 8)`.
pub fn scale_width(c: usize, width: f64) -> usize {
    // Saturating: an absurd width becomes a size the variable store refuses, not an overflow.
    (((c as f64 * width) / 8.0).ceil() as usize).saturating_mul(8)
}

/// Depth rule: `max(round(n · depth), 1)` for n > 1, with Python's round-half-to-even.
pub fn scale_depth(n: usize, depth: f64) -> usize {
    if n > 1 {
        ((n as f64 * depth).round_ties_even() as usize).max(1)
    } else {
        n
    }
}

/// The activation a Conv runs: the override, else the row's own, else the YAML's, else
/// SiLU. An explicit identity (`act=False`) is structure, not a choice, and stays.
fn resolve_act(row: &ActArg, model_default: &ActSpec, override_act: Option<&ActSpec>) -> ActSpec {
    match (row, override_act) {
        (ActArg::Spec(s), _) if s.is_identity() => s.clone(),
        (_, Some(o)) => o.clone(),
        (ActArg::Spec(s), None) => s.clone(),
        (ActArg::Default, None) => model_default.clone(),
    }
}

impl Model {
    /// Builds the model with fresh, seeded parameters (f32, CPU). `override_act` (from
    /// `--act`) replaces every Conv's activation.
    pub fn new(
        config: &ModelConfig,
        override_act: Option<&ActSpec>,
        seed: u64,
    ) -> std::result::Result<Model, BuildError> {
        let vars = SeededVarMap::new(seed);
        let ctx = BlockContext {
            vb: vars.builder(DType::F32, &Device::Cpu).pp("model"),
            seed,
        };
        let source = config.source.clone();
        let model_err = |message: String| BuildError::Model {
            config: source.clone(),
            message,
        };
        let default_act = override_act
            .cloned()
            .or_else(|| config.activation.clone())
            .unwrap_or_else(ActSpec::silu);
        let (gd, gw) = (config.depth_multiple, config.width_multiple);
        let last = config
            .layers
            .len()
            .checked_sub(1)
            .ok_or_else(|| model_err("no layers".into()))?;
        let mut layers: Vec<Layer> = Vec::new();
        let mut summary = Vec::new();
        let mut detect = None;
        for (i, row) in config.layers.iter().enumerate() {
            let module_name = module_name(&row.module);
            let err = |message: String| BuildError::Layer {
                config: source.clone(),
                row: i,
                module: module_name.to_string(),
                message,
            };
            let from: Vec<Option<usize>> = row
                .from
                .iter()
                .map(|&f| {
                    if f == -1 {
                        i.checked_sub(1)
                    } else if f < 0 {
                        Some((i as i64 + f) as usize)
                    } else {
                        Some(f as usize)
                    }
                })
                .collect();
            let ch = |f: &Option<usize>| f.map_or(config.ch, |j| layers[j].c2);
            let c1 = ch(&from[0]);
            let n = scale_depth(row.number, gd);
            let layer_ctx = ctx.pp(i);
            let repeat_ctx = |j: usize| {
                if n > 1 {
                    layer_ctx.pp(j)
                } else {
                    layer_ctx.clone()
                }
            };
            let act_of = |arg: &ActArg| resolve_act(arg, &default_act, override_act);
            let build = |f: &dyn Fn(&BlockContext) -> Result<Block>| -> std::result::Result<Vec<Block>, BuildError> {
                (0..n).map(|j| f(&repeat_ctx(j)).map_err(|e| err(e.to_string()))).collect()
            };
            let (blocks, c2, args) = match &row.module {
                ModuleRow::Conv {
                    c2,
                    k,
                    s,
                    p,
                    g,
                    d,
                    act,
                } => {
                    let c2 = scale_width(*c2, gw);
                    let a = act_of(act);
                    let shape = ConvShape {
                        c1,
                        c2,
                        k: *k,
                        s: *s,
                        p: *p,
                        g: *g,
                        d: *d,
                    };
                    (
                        build(&|c| Ok(Block::Conv(Conv::new(shape, &a, c)?)))?,
                        c2,
                        format!(
                            "[{c1}, {c2}, {k}, {s}, {}, {g}, {d}, {a}]",
                            p.map_or("None".into(), |p| p.to_string())
                        ),
                    )
                }
                ModuleRow::Bottleneck { c2, shortcut, g, e } => {
                    let c2 = scale_width(*c2, gw);
                    (
                        build(&|c| {
                            Ok(Block::Bottleneck(Bottleneck::new(
                                c1,
                                c2,
                                *shortcut,
                                *g,
                                *e,
                                &default_act,
                                c,
                            )?))
                        })?,
                        c2,
                        format!("[{c1}, {c2}, {}, {g}, {e}]", py_bool(*shortcut)),
                    )
                }
                ModuleRow::C3 { c2, shortcut, g, e } => {
                    let c2 = scale_width(*c2, gw);
                    let block = C3::new(c1, c2, n, *shortcut, *g, *e, &default_act, &layer_ctx)
                        .map_err(|e| err(e.to_string()))?;
                    (
                        vec![Block::C3(block)],
                        c2,
                        format!("[{c1}, {c2}, {n}, {}]", py_bool(*shortcut)),
                    )
                }
                ModuleRow::Sppf { c2, k } => {
                    let c2 = scale_width(*c2, gw);
                    (
                        build(&|c| Ok(Block::Sppf(Sppf::new(c1, c2, *k, &default_act, c)?)))?,
                        c2,
                        format!("[{c1}, {c2}, {k}]"),
                    )
                }
                ModuleRow::Spp { c2, k } => {
                    let c2 = scale_width(*c2, gw);
                    (
                        build(&|c| Ok(Block::Spp(Spp::new(c1, c2, k, &default_act, c)?)))?,
                        c2,
                        format!("[{c1}, {c2}, {k:?}]"),
                    )
                }
                ModuleRow::Focus {
                    c2,
                    k,
                    s,
                    p,
                    g,
                    act,
                } => {
                    let c2 = scale_width(*c2, gw);
                    let a = act_of(act);
                    let shape = ConvShape {
                        c1,
                        c2,
                        k: *k,
                        s: *s,
                        p: *p,
                        g: *g,
                        d: 1,
                    };
                    (
                        build(&|c| Ok(Block::Focus(Focus::new(shape, &a, c)?)))?,
                        c2,
                        format!("[{c1}, {c2}, {k}, {s}, {a}]"),
                    )
                }
                ModuleRow::Concat { dim } => (
                    vec![Block::Concat],
                    from.iter().map(ch).sum(),
                    format!("[{dim}]"),
                ),
                ModuleRow::Upsample { scale } => (
                    vec![Block::Upsample(*scale)],
                    c1,
                    format!("[None, {scale}, 'nearest']"),
                ),
                ModuleRow::Mp { k } => (
                    vec![Block::MaxPool(MaxPool2d {
                        kernel: *k,
                        stride: *k,
                        padding: 0,
                    })],
                    c1,
                    format!("[{k}]"),
                ),
                ModuleRow::Sp { k, s } => (
                    vec![Block::MaxPool(MaxPool2d {
                        kernel: *k,
                        stride: *s,
                        padding: k / 2,
                    })],
                    c1,
                    format!("[{k}, {s}]"),
                ),
                ModuleRow::Sppcspc { c2, e, k } => {
                    let c2 = scale_width(*c2, gw);
                    let block = Sppcspc::new(c1, c2, *e, k, &default_act, &layer_ctx)
                        .map_err(|e| err(e.to_string()))?;
                    (
                        vec![Block::Sppcspc(Box::new(block))],
                        c2,
                        format!("[{c1}, {c2}, {e}, {k:?}]"),
                    )
                }
                ModuleRow::RepConv { c2, s, g, act } => {
                    let c2 = scale_width(*c2, gw);
                    let a = act_of(act);
                    (
                        build(&|c| Ok(Block::RepConv(RepConv::new(c1, c2, *s, *g, &a, c)?)))?,
                        c2,
                        format!("[{c1}, {c2}, 3, {s}, None, {g}, {a}]"),
                    )
                }
                ModuleRow::Detect { kind, nc, anchors } => {
                    if i != last {
                        return Err(err("Detect must be the last layer".into()));
                    }
                    if from.len() != anchors.len() && !anchors.is_empty() {
                        return Err(err(format!(
                            "{} inputs but {} anchor levels",
                            from.len(),
                            anchors.len()
                        )));
                    }
                    let inputs: Vec<usize> = from
                        .iter()
                        .map(|f| f.ok_or_else(|| err("Detect cannot read the input image".into())))
                        .collect::<std::result::Result<_, _>>()?;
                    let channels: Vec<usize> = inputs.iter().map(|&j| layers[j].c2).collect();
                    let strides = dry_run_strides(&config.layers, &layers, config.ch, &inputs)
                        .map_err(|e| BuildError::Layer {
                            config: source.clone(),
                            row: e.row,
                            module: self::module_name(&config.layers[e.row].module).into(),
                            message: e.message,
                        })?;
                    let anchors: Vec<Vec<(f64, f64)>> = (0..inputs.len())
                        .map(|l| anchors[l.min(anchors.len() - 1)].clone())
                        .collect();
                    let head = Detect::new(*kind, *nc, &anchors, &channels, strides, &layer_ctx)
                        .map_err(|e| err(e.to_string()))?;
                    let args = format!(
                        "[{nc}, {:?}, {channels:?}]",
                        anchors
                            .iter()
                            .map(|l| l.iter().flat_map(|(w, h)| [*w, *h]).collect::<Vec<_>>())
                            .collect::<Vec<_>>()
                    );
                    summary.push(LayerSummary {
                        index: i,
                        from: from_text(&row.from, row.from_list),
                        n: 1,
                        params: count(&head.params()),
                        module: module_name.into(),
                        arguments: args,
                    });
                    detect = Some((head, inputs));
                    continue;
                }
            };
            let params = blocks.iter().map(|b| count(&b.params())).sum();
            summary.push(LayerSummary {
                index: i,
                from: from_text(&row.from, row.from_list),
                n,
                params,
                module: module_name.into(),
                arguments: args,
            });
            layers.push(Layer { from, blocks, c2 });
        }
        let (detect, detect_from) =
            detect.ok_or_else(|| model_err("the head has no Detect layer".into()))?;
        let mut keep = vec![false; layers.len()];
        for (i, layer) in layers.iter().enumerate() {
            for f in layer.from.iter().flatten() {
                if *f + 1 != i {
                    keep[*f] = true;
                }
            }
        }
        for &f in &detect_from {
            keep[f] = true;
        }
        let names = (0..detect.nc).map(|c| c.to_string()).collect();
        Ok(Model {
            config: config.clone(),
            layers,
            detect,
            detect_from,
            keep,
            summary,
            names,
            default_act,
            vars,
        })
    }

    /// The activation of every Conv that does not name its own.
    pub fn default_activation(&self) -> &ActSpec {
        &self.default_act
    }

    /// The raw Detect maps per level, (bs, na, ny, nx, no).
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let mut saved: Vec<Option<Tensor>> = Vec::with_capacity(self.layers.len());
        let mut previous = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            let inputs: Vec<Tensor> = layer
                .from
                .iter()
                .map(|f| match f {
                    Some(j) if *j + 1 != i => saved[*j].clone().ok_or_else(|| {
                        candle_core::Error::Msg(format!(
                            "layer {i}: output of layer {j} was not kept"
                        ))
                    }),
                    Some(_) => Ok(previous.clone()),
                    None => Ok(x.clone()),
                })
                .collect::<Result<_>>()?;
            let mut out = layer.blocks[0].forward(&inputs, train)?;
            for block in &layer.blocks[1..] {
                out = block.forward(&[out], train)?;
            }
            saved.push(self.keep[i].then(|| out.clone()));
            previous = out;
        }
        let feats: Vec<Tensor> = self
            .detect_from
            .iter()
            .map(|&j| {
                saved[j].clone().ok_or_else(|| {
                    candle_core::Error::Msg(format!("Detect input {j} was not kept"))
                })
            })
            .collect::<Result<_>>()?;
        self.detect.forward(&feats)
    }

    /// Eval-mode inference: decoded predictions (bs, N, nc + 5) and the raw maps.
    pub fn predict(&self, x: &Tensor) -> Result<(Tensor, Vec<Tensor>)> {
        crate::util::runtime::on_pool(|| {
            let raw = self.forward(x, false)?;
            Ok((self.detect.decode(&raw)?, raw))
        })
    }

    /// Folds every BatchNorm into its convolution, RepConv's branches into one convolution
    /// and IDetect's implicit knowledge into its convolutions (inference only).
    pub fn fuse(&mut self) -> Result<()> {
        for block in self.layers.iter_mut().flat_map(|l| &mut l.blocks) {
            block.fuse()?;
        }
        self.detect.fuse()
    }

    /// Every learnable parameter (BatchNorm running statistics and anchors excluded).
    pub fn params(&self) -> Vec<Tensor> {
        let mut params: Vec<Tensor> = self
            .layers
            .iter()
            .flat_map(|l| &l.blocks)
            .flat_map(Block::params)
            .collect();
        params.extend(self.detect.params());
        params
    }

    pub fn num_params(&self) -> usize {
        count(&self.params())
    }

    /// GFLOPs at a square input of `imgsz`, counted as ultralytics' summary does (thop MACs × 2).
    pub fn gflops(&self, imgsz: usize) -> f64 {
        let mut cost = Cost::default();
        let hws = shape_pass(&self.layers, self.config.ch, (imgsz, imgsz), &mut cost);
        let detect_hws: Vec<(usize, usize)> = self.detect_from.iter().map(|&j| hws[j]).collect();
        self.detect.cost(&detect_hws, &mut cost);
        2.0 * cost.macs / 1e9
    }

    /// The stride input sizes must be a multiple of: the largest Detect stride, at least
    /// 32 (as ultralytics' `DetectMultiBackend` and train.py take it).
    pub fn max_stride(&self) -> usize {
        let largest = self.detect.strides.iter().copied().fold(0.0, f64::max);
        (largest as usize).max(32)
    }

    /// Elements of every layer's output for one image of `hw`, the Detect maps included:
    /// what the feature maps of a forward pass hold at most.
    pub fn feature_elements(&self, hw: (usize, usize)) -> f64 {
        let hws = shape_pass(&self.layers, self.config.ch, hw, &mut Cost::default());
        let layers: f64 = self
            .layers
            .iter()
            .zip(&hws)
            .map(|(layer, (h, w))| (layer.c2 * h * w) as f64)
            .sum();
        let outputs = self.detect.na * (self.detect.nc + 5);
        let head: f64 = self
            .detect_from
            .iter()
            .map(|&j| (outputs * hws[j].0 * hws[j].1) as f64)
            .sum();
        layers + head
    }

    /// The state_dict: every tensor by its ultralytics name.
    pub fn vars(&self) -> &SeededVarMap {
        &self.vars
    }

    /// Loads a state_dict into the model, converting dtypes. `strict` also rejects tensors
    /// the model does not have; a missing or mis-shaped tensor is always an error.
    pub fn load_state_dict(
        &self,
        tensors: &HashMap<String, Tensor>,
        strict: bool,
    ) -> std::result::Result<(), String> {
        let data = self
            .vars
            .var_map()
            .data()
            .lock()
            .map_err(|_| "variable store lock poisoned".to_string())?;
        let mut missing: Vec<&String> = data.keys().filter(|k| !tensors.contains_key(*k)).collect();
        missing.sort();
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(8).map(|s| s.as_str()).collect();
            return Err(format!(
                "{} tensors the model needs are missing from the weights, e.g. {}; were they made with another config or activation (see --cfg, --act)?",
                missing.len(),
                shown.join(", ")
            ));
        }
        if strict {
            // yolov7's IDetect also stores `anchor_grid`: its anchors in pixels, which follow
            // from `anchors` and the strides.
            let derived =
                |k: &str| k.ends_with("num_batches_tracked") || k.ends_with(".anchor_grid");
            let mut unexpected: Vec<&String> = tensors
                .keys()
                .filter(|k| !data.contains_key(*k) && !derived(k))
                .collect();
            unexpected.sort();
            if !unexpected.is_empty() {
                let shown: Vec<&str> = unexpected.iter().take(8).map(|s| s.as_str()).collect();
                return Err(format!("{} tensors in the weights do not belong to this model, e.g. {}; were they made with another config or activation (see --cfg, --act)?", unexpected.len(), shown.join(", ")));
            }
        }
        for (name, var) in data.iter() {
            let t = &tensors[name];
            if t.dims() != var.dims() {
                return Err(format!(
                    "{name}: the weights have shape {:?}, the model {:?}",
                    t.dims(),
                    var.dims()
                ));
            }
            let value = t
                .to_dtype(var.dtype())
                .and_then(|t| t.to_device(var.device()))
                .map_err(|e| format!("{name}: {e}"))?;
            var.set(&value).map_err(|e| format!("{name}: {e}"))?;
        }
        Ok(())
    }
}

fn count(params: &[Tensor]) -> usize {
    params.iter().map(Tensor::elem_count).sum()
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

fn from_text(from: &[i64], list: bool) -> String {
    if list {
        format!("{from:?}")
    } else {
        from[0].to_string()
    }
}

fn module_name(m: &ModuleRow) -> &'static str {
    match m {
        ModuleRow::Conv { .. } => "Conv",
        ModuleRow::Bottleneck { .. } => "Bottleneck",
        ModuleRow::C3 { .. } => "C3",
        ModuleRow::Sppf { .. } => "SPPF",
        ModuleRow::Spp { .. } => "SPP",
        ModuleRow::Focus { .. } => "Focus",
        ModuleRow::Concat { .. } => "Concat",
        ModuleRow::Upsample { .. } => "nn.Upsample",
        ModuleRow::Mp { .. } => "MP",
        ModuleRow::Sp { .. } => "SP",
        ModuleRow::Sppcspc { .. } => "SPPCSPC",
        ModuleRow::RepConv { .. } => "RepConv",
        ModuleRow::Detect {
            kind: DetectKind::Detect,
            ..
        } => "Detect",
        ModuleRow::Detect {
            kind: DetectKind::IDetect,
            ..
        } => "IDetect",
    }
}

/// Output sizes of every layer for an input of `hw`, adding thop's counts to `cost`.
fn shape_pass(
    layers: &[Layer],
    ch: usize,
    hw: (usize, usize),
    cost: &mut Cost,
) -> Vec<(usize, usize)> {
    let mut hws: Vec<(usize, usize)> = Vec::with_capacity(layers.len());
    for (i, layer) in layers.iter().enumerate() {
        let ins: Vec<(usize, usize)> = layer
            .from
            .iter()
            .map(|f| f.map_or(hw, |j| hws[j]))
            .collect();
        let c_in = layer.from[0].map_or(ch, |j| layers[j].c2);
        let mut out = layer.blocks[0].cost(&ins, c_in, cost);
        for block in &layer.blocks[1..] {
            out = block.cost(&[out], layer.c2, cost);
        }
        debug_assert!(i == hws.len());
        hws.push(out);
    }
    hws
}

/// The first layer whose shapes do not work, found by the dry run.
struct ShapeError {
    row: usize,
    message: String,
}

/// Detect's strides from a dry run of the shapes at 256×256, as ultralytics measures them.
/// The dry run also checks the whole graph: no layer's output may be empty (a window larger
/// than its input, too many stride-2 layers), and a Concat must join maps of one size.
fn dry_run_strides(
    rows: &[LayerRow],
    layers: &[Layer],
    ch: usize,
    inputs: &[usize],
) -> std::result::Result<Vec<f64>, ShapeError> {
    const SIZE: usize = 256;
    let hws = shape_pass(layers, ch, (SIZE, SIZE), &mut Cost::default());
    let describe = |f: &Option<usize>| match f {
        Some(j) => format!("layer {j} gives {}x{}", hws[*j].0, hws[*j].1),
        None => format!("the input is {SIZE}x{SIZE}"),
    };
    for (i, layer) in layers.iter().enumerate() {
        let (h, w) = hws[i];
        if h == 0 || w == 0 {
            let inputs: Vec<String> = layer.from.iter().map(describe).collect();
            return Err(ShapeError {
                row: i,
                message: format!(
                    "its output is empty at a {SIZE}x{SIZE} input ({}): a kernel larger than its input, or too many stride-2 layers",
                    inputs.join(", ")
                ),
            });
        }
        if let ModuleRow::Concat { .. } = rows[i].module {
            let sizes: Vec<(usize, usize)> = layer
                .from
                .iter()
                .map(|f| f.map_or((SIZE, SIZE), |j| hws[j]))
                .collect();
            if sizes.windows(2).any(|pair| pair[0] != pair[1]) {
                let inputs: Vec<String> = layer.from.iter().map(describe).collect();
                return Err(ShapeError {
                    row: i,
                    message: format!(
                        "Concat joins maps of different sizes at a {SIZE}x{SIZE} input ({}); check its `from` layers",
                        inputs.join(", ")
                    ),
                });
            }
        }
    }
    Ok(inputs
        .iter()
        .map(|&j| SIZE as f64 / hws[j].0 as f64)
        .collect())
}
