//! `parse_model`: from a [`ModelConfig`] to a [`Model`], with YOLOv5's width and depth
//! rules (yolov7's are the same), channel bookkeeping, activation precedence and the Detect
//! head's strides.

use std::collections::HashMap;

use candle_core::{DType, Device, Result, Tensor, Var};

use super::block::{scale_depth, Block, BlockContext};
use super::config::{LayerRow, ModelConfig};
use super::head::Head;
use super::layer::{Built, LayerInputs};
use super::yaml_args::RowError;
use crate::act::ActSpec;
use crate::ops::conv_bn_layer::Cost;
use crate::ops::graph::{Graph, GraphError};
use crate::ops::vars::SeededVarMap;
use crate::ops::{concat, conv2d};

/// One row of the built model.
#[derive(Debug)]
pub struct Layer {
    /// Input layers; `None` is the input image.
    pub from: Vec<Option<usize>>,
    /// `number` repeats (after the depth gain); C3 repeats inside one block, SPPCSPC ignores it.
    pub blocks: Vec<Box<dyn Block>>,
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
    #[error("{config}: layer {row} {module}")]
    Layer {
        config: String,
        row: usize,
        module: String,
        #[source]
        source: RowError,
    },
    #[error("{config}: no layers")]
    NoLayers { config: String },
    #[error("{config}: the head has no Detect layer")]
    NoHead { config: String },
    #[error("{config}: {names} class names for a model of {nc} classes")]
    Names {
        config: String,
        names: usize,
        nc: usize,
    },
}

/// Why a state_dict does not load into a model.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{} tensors the model needs are missing from the weights, e.g. {}; were they made with another config or activation (see --cfg, --act)?", .0.len(), examples(.0))]
    Missing(Vec<String>),
    #[error("{} tensors in the weights do not belong to this model, e.g. {}; were they made with another config or activation (see --cfg, --act)?", .0.len(), examples(.0))]
    Unexpected(Vec<String>),
    #[error("{name}: the weights have shape {weights:?}, the model {model:?}")]
    Shape {
        name: String,
        weights: Vec<usize>,
        model: Vec<usize>,
    },
    #[error("{name}")]
    Tensor {
        name: String,
        #[source]
        source: candle_core::Error,
    },
    #[error("the variable store's lock is poisoned (a thread panicked while holding it)")]
    Poisoned,
}

/// The first 8 names, for messages.
fn examples(names: &[String]) -> String {
    names.iter().take(8).cloned().collect::<Vec<_>>().join(", ")
}

#[derive(Debug)]
pub struct Model {
    pub config: ModelConfig,
    pub layers: Vec<Layer>,
    pub head: Head,
    detect_from: Vec<usize>,
    /// Which outputs later layers read, so the forward pass keeps only those.
    keep: Vec<bool>,
    pub summary: Vec<LayerSummary>,
    pub names: Vec<String>,
    default_act: ActSpec,
    /// `--act`, which replaced every Conv's activation, when given.
    override_act: Option<ActSpec>,
    vars: SeededVarMap,
    device: Device,
}

impl Model {
    /// Builds the model with fresh, seeded parameters (f32, CPU). `override_act` (from
    /// `--act`) replaces every Conv's activation; `names` are the classes' (their numbers
    /// when not given).
    pub fn new(
        config: &ModelConfig,
        override_act: Option<&ActSpec>,
        seed: u64,
        names: Option<Vec<String>>,
    ) -> std::result::Result<Model, BuildError> {
        Model::new_on(config, override_act, seed, names, &Device::Cpu)
    }

    /// [`Model::new`] with its parameters on `device`: the same initial values (they are
    /// drawn on the host), computed there.
    pub fn new_on(
        config: &ModelConfig,
        override_act: Option<&ActSpec>,
        seed: u64,
        names: Option<Vec<String>>,
        device: &Device,
    ) -> std::result::Result<Model, BuildError> {
        let vars = SeededVarMap::new(seed);
        let ctx = BlockContext {
            vb: vars.builder(DType::F32, device).pp("model"),
            seed,
        };
        let source = config.source.clone();
        let row_err = |row: usize, error: RowError| BuildError::Layer {
            config: source.clone(),
            row,
            module: config.layers[row].def.name.to_string(),
            source: error,
        };
        let default_act = override_act
            .cloned()
            .or_else(|| config.activation.clone())
            .unwrap_or_else(ActSpec::silu);
        let last = config
            .layers
            .len()
            .checked_sub(1)
            .ok_or_else(|| BuildError::NoLayers {
                config: source.clone(),
            })?;
        let mut layers: Vec<Layer> = Vec::new();
        let mut summary = Vec::new();
        let mut detect = None;
        let mut legacy_head = true;
        for (i, row) in config.layers.iter().enumerate() {
            let err = |message: String| row_err(i, RowError::Invalid(message));
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
            let strides = if row.def.head {
                if i != last {
                    return Err(err(format!("{} must be the last layer", row.def.name)));
                }
                let inputs: Vec<usize> = from
                    .iter()
                    .map(|f| f.ok_or_else(|| err("the head cannot read the input image".into())))
                    .collect::<std::result::Result<_, _>>()?;
                dry_run_strides(&config.layers, &layers, config.ch, &inputs)
                    .map_err(|(row, message)| row_err(row, RowError::Invalid(message)))?
            } else {
                Vec::new()
            };
            let inputs = LayerInputs {
                channels: from
                    .iter()
                    .map(|f| f.map_or(config.ch, |j| layers[j].c2))
                    .collect(),
                n: scale_depth(row.number, config.depth_multiple),
                width_multiple: config.width_multiple,
                max_channels: config.max_channels,
                scale: config.scale.as_deref(),
                reg_max: config.reg_max,
                legacy_head,
                default_act: &default_act,
                override_act,
                ctx: ctx.pp(i),
                strides,
            };
            let (blocks, c2, args) = match row.spec.build(&inputs).map_err(|e| row_err(i, e))? {
                Built::Layer { blocks, c2, args } => (blocks, c2, args),
                Built::Head { head, args } => {
                    summary.push(LayerSummary {
                        index: i,
                        from: from_text(&row.from, row.from_list),
                        n: 1,
                        params: count(&head.params()),
                        module: row.def.name.into(),
                        arguments: args,
                    });
                    detect = Some((head, from.iter().flatten().copied().collect::<Vec<_>>()));
                    continue;
                }
            };
            legacy_head &= !super::blocks::is_yolo11_block(row.def);
            let params = blocks.iter().map(|b| count(&b.params())).sum();
            summary.push(LayerSummary {
                index: i,
                from: from_text(&row.from, row.from_list),
                n: inputs.n,
                params,
                module: row.def.name.into(),
                arguments: args,
            });
            layers.push(Layer { from, blocks, c2 });
        }
        let (detect, detect_from) = detect.ok_or_else(|| BuildError::NoHead {
            config: source.clone(),
        })?;
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
        let names = match names {
            Some(names) if names.len() == detect.nc() => names,
            Some(names) => {
                return Err(BuildError::Names {
                    config: source,
                    names: names.len(),
                    nc: detect.nc(),
                })
            }
            None => (0..detect.nc()).map(|c| c.to_string()).collect(),
        };
        Ok(Model {
            config: config.clone(),
            layers,
            head: detect,
            detect_from,
            keep,
            summary,
            names,
            default_act,
            override_act: override_act.cloned(),
            vars,
            device: device.clone(),
        })
    }

    /// Where the parameters live and the forward pass computes.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The same model with every variable (parameters, running statistics) copied to
    /// `device`. Unfused models only: fusing replaces convolutions' weights outside the
    /// variables.
    pub fn to_device(self, device: &Device) -> Result<Model> {
        if self.device.same_device(device) {
            return Ok(self);
        }
        let model = Model::new_on(
            &self.config,
            self.override_act.as_ref(),
            self.vars.seed(),
            Some(self.names.clone()),
            device,
        )
        .map_err(candle_core::Error::wrap)?;
        let tensors = self.state_dict().map_err(candle_core::Error::wrap)?;
        model
            .load_state_dict(&tensors, true)
            .map_err(candle_core::Error::wrap)?;
        Ok(model)
    }

    /// Every variable by its ultralytics name: the parameters and running statistics.
    pub fn state_dict(&self) -> std::result::Result<HashMap<String, Tensor>, LoadError> {
        Ok(self
            .variables()?
            .iter()
            .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
            .collect())
    }

    /// The activation of every Conv that does not name its own.
    pub fn default_activation(&self) -> &ActSpec {
        &self.default_act
    }

    /// The activation that replaced every Conv's (`--act`), when one did.
    pub fn override_act(&self) -> Option<&ActSpec> {
        self.override_act.as_ref()
    }

    /// The raw head maps per level, (bs, na, ny, nx, no) (one anchor for anchor-free heads).
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        // Images come from the loaders on the CPU; a model on a GPU takes them there.
        let x = &x.to_device(&self.device)?;
        let mut saved: Vec<Option<Tensor>> = Vec::with_capacity(self.layers.len());
        // The previous layer's output, in channel parts: at inference, where convs read their
        // input's parts in place, a Concat that only the next layer reads is not written,
        // and its inputs go on as the parts, which that layer's first 1×1 convs read
        // (`Block::forward_parts`).
        let mut previous = vec![x.clone()];
        for (i, layer) in self.layers.iter().enumerate() {
            let (first, rest) = layer
                .blocks
                .split_first()
                .ok_or_else(|| candle_core::Error::Msg(format!("layer {i} has no block")))?;
            let mut out = match layer.from.as_slice() {
                [Some(j)] if j + 1 == i && previous.len() > 1 => {
                    first.forward_parts(&previous, train)?
                }
                from => {
                    let inputs: Vec<Tensor> = from
                        .iter()
                        .map(|f| match f {
                            Some(j) if *j + 1 != i => saved[*j].clone().ok_or_else(|| {
                                candle_core::Error::Msg(format!(
                                    "layer {i}: output of layer {j} was not kept"
                                ))
                            }),
                            Some(_) => concat::channels(&previous),
                            None => Ok(x.clone()),
                        })
                        .collect::<Result<_>>()?;
                    if !train
                        && !self.keep[i]
                        && rest.is_empty()
                        && first.joins_inputs()
                        && conv2d::reads_input_parts(&self.device)
                    {
                        saved.push(None);
                        previous = inputs;
                        continue;
                    }
                    first.forward_t(&inputs, train)?
                }
            };
            for block in rest {
                out = block.forward_t(&[out], train)?;
            }
            saved.push(self.keep[i].then(|| out.clone()));
            previous = vec![out];
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
        self.head.forward(&feats, train)
    }

    /// Eval-mode inference: decoded predictions (bs, N, nc + 5) and the raw maps.
    pub fn predict(&self, x: &Tensor) -> Result<(Tensor, Vec<Tensor>)> {
        crate::util::runtime::on_pool(|| {
            let raw = self.forward(x, false)?;
            Ok((self.head.decode(&raw)?, raw))
        })
    }

    /// Adds the model, fused, and its decoded output to an ONNX graph whose input is
    /// `images`; returns the output's name.
    pub fn export(&self, g: &mut Graph, images: &str) -> std::result::Result<String, GraphError> {
        let mut outputs: Vec<String> = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let inputs: Vec<String> = layer
                .from
                .iter()
                .map(|f| match f {
                    Some(j) => outputs[*j].clone(),
                    None => images.to_string(),
                })
                .collect();
            let mut out = layer.blocks[0].export(g, &inputs)?;
            for block in &layer.blocks[1..] {
                out = block.export(g, &[out])?;
            }
            outputs.push(out);
        }
        let feats: Vec<String> = self
            .detect_from
            .iter()
            .map(|&j| outputs[j].clone())
            .collect();
        self.head.export(g, &feats)
    }

    /// Folds every BatchNorm into its convolution, RepConv's branches into one convolution
    /// and IDetect's implicit knowledge into its convolutions (inference only).
    pub fn fuse(&mut self) -> Result<()> {
        for block in self.layers.iter_mut().flat_map(|l| &mut l.blocks) {
            block.fuse()?;
        }
        self.head.fuse()
    }

    /// Every learnable parameter (BatchNorm running statistics and anchors excluded).
    pub fn params(&self) -> Vec<Tensor> {
        let mut params: Vec<Tensor> = self
            .layers
            .iter()
            .flat_map(|l| &l.blocks)
            .flat_map(|b| b.params())
            .collect();
        params.extend(self.head.params());
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
        self.head.cost(&detect_hws, &mut cost);
        2.0 * cost.macs / 1e9
    }

    /// The stride input sizes must be a multiple of: the largest Detect stride, at least
    /// 32 (as ultralytics' `DetectMultiBackend` and train.py take it).
    pub fn max_stride(&self) -> usize {
        let largest = self.head.strides().iter().copied().fold(0.0, f64::max);
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
        let outputs = self.head.outputs_per_cell();
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

    /// The variables by name, locked.
    fn variables(
        &self,
    ) -> std::result::Result<std::sync::MutexGuard<'_, HashMap<String, Var>>, LoadError> {
        self.vars
            .var_map()
            .data()
            .lock()
            .map_err(|_| LoadError::Poisoned)
    }

    /// Loads a state_dict into the model, converting dtypes. `strict` also rejects tensors
    /// the model does not have; a missing or mis-shaped tensor is always an error.
    pub fn load_state_dict(
        &self,
        tensors: &HashMap<String, Tensor>,
        strict: bool,
    ) -> std::result::Result<(), LoadError> {
        let data = self.variables()?;
        let mut missing: Vec<String> = data
            .keys()
            .filter(|k| !tensors.contains_key(*k))
            .cloned()
            .collect();
        missing.sort();
        if !missing.is_empty() {
            return Err(LoadError::Missing(missing));
        }
        if strict {
            // yolov7's IDetect also stores `anchor_grid`: its anchors in pixels, which follow
            // from `anchors` and the strides.
            let derived =
                |k: &str| k.ends_with("num_batches_tracked") || k.ends_with(".anchor_grid");
            let mut unexpected: Vec<String> = tensors
                .keys()
                .filter(|k| !data.contains_key(*k) && !derived(k))
                .cloned()
                .collect();
            unexpected.sort();
            if !unexpected.is_empty() {
                return Err(LoadError::Unexpected(unexpected));
            }
        }
        for (name, var) in data.iter() {
            let t = &tensors[name];
            if t.dims() != var.dims() {
                return Err(LoadError::Shape {
                    name: name.clone(),
                    weights: t.dims().to_vec(),
                    model: var.dims().to_vec(),
                });
            }
            let tensor_error = |source| LoadError::Tensor {
                name: name.clone(),
                source,
            };
            let value = t
                .to_dtype(var.dtype())
                .and_then(|t| t.to_device(var.device()))
                .map_err(tensor_error)?;
            var.set(&value).map_err(tensor_error)?;
        }
        Ok(())
    }
}

fn count(params: &[Tensor]) -> usize {
    params.iter().map(Tensor::elem_count).sum()
}

fn from_text(from: &[i64], list: bool) -> String {
    if list {
        format!("{from:?}")
    } else {
        from[0].to_string()
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

/// Detect's strides from a dry run of the shapes at 256×256, as ultralytics measures them.
/// The dry run also checks the whole graph: no layer's output may be empty (a window larger
/// than its input, too many stride-2 layers), and a Concat must join maps of one size. The
/// error names the first layer whose shapes do not work.
fn dry_run_strides(
    rows: &[LayerRow],
    layers: &[Layer],
    ch: usize,
    inputs: &[usize],
) -> std::result::Result<Vec<f64>, (usize, String)> {
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
            return Err((
                i,
                format!(
                    "its output is empty at a {SIZE}x{SIZE} input ({}): a kernel larger than its input, or too many stride-2 layers",
                    inputs.join(", ")
                ),
            ));
        }
        // Blocks with several inputs (Concat) join maps of one size.
        if layer.from.len() > 1 {
            let sizes: Vec<(usize, usize)> = layer
                .from
                .iter()
                .map(|f| f.map_or((SIZE, SIZE), |j| hws[j]))
                .collect();
            if sizes.windows(2).any(|pair| pair[0] != pair[1]) {
                let inputs: Vec<String> = layer.from.iter().map(describe).collect();
                return Err((
                    i,
                    format!(
                        "{} joins maps of different sizes at a {SIZE}x{SIZE} input ({}); check its `from` layers",
                        rows[i].def.name,
                        inputs.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(inputs
        .iter()
        .map(|&j| SIZE as f64 / hws[j].0 as f64)
        .collect())
}
