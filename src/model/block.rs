//! What every layer of a model is: a [`Block`] (forward, parameters, cost, fuse), built from
//! a YAML row by the [`LayerSpec`] its module's [`BlockDef`] parses. The registry
//! [`BLOCKS`] names each module once; adding one is a file in `blocks/` and its line here.

use std::fmt::Debug;
use std::sync::Arc;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_yaml::Value;

use super::blocks::{bottleneck, concat, conv, focus, pool, repconv, spp, sppcspc, upsample};
use super::head::{self, Detect};
use super::yaml_args::RowContext;
use crate::act::{ActArg, ActSpec, Activation};
use crate::ops::conv_bn_layer::Cost;
use crate::ops::vars::stable_hash;

/// One layer (or one repeat of it).
pub trait Block: Debug + Send + Sync {
    /// The output from the layer's inputs, one per `from` entry.
    fn forward_t(&self, xs: &[Tensor], train: bool) -> Result<Tensor>;

    /// Output size for inputs of `hws` (one per input) with `c_in` channels in the first,
    /// adding thop's count to `cost`.
    fn cost(&self, hws: &[(usize, usize)], c_in: usize, cost: &mut Cost) -> (usize, usize);

    /// The blocks it is made of: a composite's parameters, fusing and activations are
    /// theirs.
    fn children(&self) -> Vec<&dyn Block> {
        Vec::new()
    }

    fn children_mut(&mut self) -> Vec<&mut dyn Block> {
        Vec::new()
    }

    /// Every learnable parameter (BatchNorm running statistics excluded).
    fn params(&self) -> Vec<Tensor> {
        self.children()
            .into_iter()
            .flat_map(|b| b.params())
            .collect()
    }

    /// Folds BatchNorms (and whatever else folds) into convolutions for inference.
    fn fuse(&mut self) -> Result<()> {
        self.children_mut().into_iter().try_for_each(|b| b.fuse())
    }

    /// The activations inside, for the summary.
    fn activations(&self) -> Vec<&Activation> {
        self.children()
            .into_iter()
            .flat_map(|b| b.activations())
            .collect()
    }
}

/// Where a block's parameters come from, and what it needs beyond them.
#[derive(Clone)]
pub struct BlockContext<'a> {
    pub vb: VarBuilder<'a>,
    /// Seeds each activation's private random stream (RReLU), by parameter path, so the
    /// stream does not depend on the order in which layers are built.
    pub seed: u64,
}

impl<'a> BlockContext<'a> {
    pub fn pp(&self, name: impl ToString) -> Self {
        BlockContext {
            vb: self.vb.pp(name),
            seed: self.seed,
        }
    }

    pub fn rng(&self) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed ^ stable_hash(&self.vb.prefix()))
    }
}

/// A module of the YAML: its name and how its arguments are parsed.
#[derive(Debug)]
pub struct BlockDef {
    pub name: &'static str,
    /// Parses a row's arguments (the model's `nc` and `anchors` resolve named ones).
    pub parse: fn(&[Value], &RowContext) -> std::result::Result<Arc<dyn LayerSpec>, String>,
    /// The detection head, which ends the model (its first argument is the class count).
    pub head: bool,
}

/// A parsed row: builds its layer.
pub trait LayerSpec: Debug + Send + Sync {
    fn build(&self, layer: &LayerInputs) -> std::result::Result<Built, String>;
}

/// A built row.
pub enum Built {
    /// Blocks applied in sequence, the layer's output channels, and its arguments as
    /// ultralytics' summary prints them.
    Layer {
        blocks: Vec<Box<dyn Block>>,
        c2: usize,
        args: String,
    },
    /// The detection head.
    Head { head: Detect, args: String },
}

/// What a row is built with.
pub struct LayerInputs<'a> {
    /// Channels of each input (the input image's for `-1` on the first row).
    pub channels: Vec<usize>,
    /// Repeats after the depth multiple.
    pub n: usize,
    pub width_multiple: f64,
    /// The activation of every Conv that does not name its own.
    pub default_act: &'a ActSpec,
    /// `--act`: replaces every Conv's activation.
    pub override_act: Option<&'a ActSpec>,
    /// The layer's parameters, under `model.{i}`.
    pub ctx: BlockContext<'a>,
    /// The strides of the inputs (measured by a dry run), for a head.
    pub strides: Vec<f64>,
}

impl LayerInputs<'_> {
    /// The first input's channels.
    pub fn c1(&self) -> usize {
        self.channels[0]
    }

    /// YOLOv5's width rule: `make_divisible(c · width_multiple, 8)`.
    pub fn width(&self, c: usize) -> usize {
        scale_width(c, self.width_multiple)
    }

    /// The activation a Conv runs: the override, else the row's own, else the YAML's, else
    /// SiLU. An explicit identity (`act=False`) is structure, not a choice, and stays.
    pub fn act(&self, row: &ActArg) -> ActSpec {
        match (row, self.override_act) {
            (ActArg::Spec(s), _) if s.is_identity() => s.clone(),
            (_, Some(o)) => o.clone(),
            (ActArg::Spec(s), None) => s.clone(),
            (ActArg::Default, None) => self.default_act.clone(),
        }
    }

    /// `n` blocks made by `make`, each under its own index when there are several (as
    /// `nn.Sequential` names them).
    pub fn repeat(
        &self,
        make: impl Fn(&BlockContext) -> Result<Box<dyn Block>>,
    ) -> std::result::Result<Vec<Box<dyn Block>>, String> {
        (0..self.n)
            .map(|j| {
                let ctx = if self.n > 1 {
                    self.ctx.pp(j)
                } else {
                    self.ctx.clone()
                };
                make(&ctx).map_err(|e| e.to_string())
            })
            .collect()
    }
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

/// Every module a YOLOv5 or YOLOv7 YAML may name.
pub static BLOCKS: &[&BlockDef] = &[
    &conv::CONV,
    &bottleneck::BOTTLENECK,
    &bottleneck::C3,
    &spp::SPPF,
    &spp::SPP,
    &focus::FOCUS,
    &concat::CONCAT,
    &upsample::UPSAMPLE,
    &head::DETECT,
    &pool::MP,
    &pool::SP,
    &sppcspc::SPPCSPC,
    &repconv::REPCONV,
    &head::IDETECT,
];

/// The module registered as `name`.
pub fn lookup(name: &str) -> Option<&'static BlockDef> {
    BLOCKS.iter().copied().find(|d| d.name == name)
}

/// The registered name closest to `name`, for "did you mean" messages.
pub fn closest(name: &str) -> &'static str {
    BLOCKS
        .iter()
        .map(|d| d.name)
        .max_by(|a, b| strsim::jaro_winkler(name, a).total_cmp(&strsim::jaro_winkler(name, b)))
        .unwrap_or("Conv")
}
