//! A YAML row as the builder sees it: the module's registration ([`BlockDef`]: its name
//! and how its arguments are parsed), the parsed row ([`LayerSpec`]), what it is built
//! with ([`LayerInputs`]) and what it builds ([`Built`]).

use std::sync::Arc;

use candle_core::Result;
use serde_yaml::Value;

use super::block::{scale_width, Block, BlockContext};
use super::head::Head;
use super::yaml_args::{RowContext, RowError};
use crate::act::{ActArg, ActSpec};

/// Parses one YAML row's arguments into its layer.
pub type ParseRow = fn(&[Value], &RowContext) -> std::result::Result<Arc<dyn LayerSpec>, RowError>;

/// A module of the YAML: its name and how its arguments are parsed.
#[derive(Debug)]
pub struct BlockDef {
    pub name: &'static str,
    /// Parses a row's arguments (the model's `nc` and `anchors` resolve named ones).
    pub parse: ParseRow,
    /// The detection head, which ends the model (its first argument is the class count).
    pub head: bool,
}

/// A parsed row: builds its layer.
pub trait LayerSpec: std::fmt::Debug + Send + Sync {
    fn build(&self, layer: &LayerInputs) -> std::result::Result<Built, RowError>;
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
    Head { head: Head, args: String },
}

/// What a row is built with.
pub struct LayerInputs<'a> {
    /// Channels of each input (the input image's for `-1` on the first row).
    pub channels: Vec<usize>,
    /// Repeats after the depth multiple.
    pub n: usize,
    pub width_multiple: f64,
    /// The widest a layer may be before the width multiple (ultralytics' `max_channels`).
    pub max_channels: usize,
    /// The scale of a file with `scales` (C3k2 uses C3k blocks at m, l and x).
    pub scale: Option<&'a str>,
    /// Bins per box side of the anchor-free head.
    pub reg_max: usize,
    /// ultralytics' `legacy`: false once a YOLO11 block (C3k2) came before the head,
    /// whose class branch then starts with depthwise convolutions.
    pub legacy_head: bool,
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

    /// The width rule: `make_divisible(min(c, max_channels) · width_multiple, 8)`.
    pub fn width(&self, c: usize) -> usize {
        scale_width(c.min(self.max_channels), self.width_multiple)
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
    ) -> std::result::Result<Vec<Box<dyn Block>>, RowError> {
        (0..self.n)
            .map(|j| {
                let ctx = if self.n > 1 {
                    self.ctx.pp(j)
                } else {
                    self.ctx.clone()
                };
                Ok(make(&ctx)?)
            })
            .collect()
    }
}
