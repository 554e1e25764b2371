//! The Bottleneck (Conv k₁×k₁, Conv k₂×k₂, residual when shapes allow; YOLOv5's is 1×1
//! then 3×3, ultralytics 8's 3×3 twice) and C3, the CSP bottleneck with three Convs that
//! repeats Bottlenecks inside itself (YOLO11's C3k is C3 with 3×3 Bottlenecks).

use std::sync::Arc;

use candle_core::{Result, Tensor};
use serde_yaml::Value;

use crate::act::ActSpec;
use crate::model::block::{Block, BlockContext};
use crate::model::conv::{Conv, StackedConvs};
use crate::model::layer::{BlockDef, Built, LayerInputs, LayerSpec};
use crate::model::yaml_args::{RowArgs, RowError};
use crate::ops::conv_bn_layer::{ConvShape, Cost};
use crate::ops::graph::{Graph, GraphError};

pub static BOTTLENECK: BlockDef = BlockDef {
    name: "Bottleneck",
    parse: |values, _| parse_row(values, Kind::Bottleneck),
    head: false,
};

pub static C3: BlockDef = BlockDef {
    name: "C3",
    parse: |values, _| parse_row(values, Kind::C3),
    head: false,
};

#[derive(Debug, Clone, Copy)]
enum Kind {
    Bottleneck,
    C3,
}

/// `[c2, shortcut, g, e]`, the same for both.
#[derive(Debug)]
struct BottleneckRow {
    kind: Kind,
    c2: usize,
    shortcut: bool,
    g: usize,
    e: f64,
}

fn parse_row(values: &[Value], kind: Kind) -> std::result::Result<Arc<dyn LayerSpec>, RowError> {
    let a = RowArgs::new(values, &["c2", "shortcut", "g", "e"], 1)?;
    Ok(Arc::new(BottleneckRow {
        kind,
        c2: a.c2()?,
        shortcut: a.bool_or(1, true)?,
        g: a.usize_or(2, 1)?,
        e: a.f64_or(3, 0.5)?,
    }))
}

pub(super) fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

impl LayerSpec for BottleneckRow {
    fn build(&self, layer: &LayerInputs) -> std::result::Result<Built, RowError> {
        let (c1, c2) = (layer.c1(), layer.width(self.c2));
        let act = layer.default_act;
        let (shortcut, g, e) = (self.shortcut, self.g, self.e);
        Ok(match self.kind {
            Kind::Bottleneck => Built::Layer {
                blocks: layer.repeat(|ctx| {
                    Ok(Box::new(Bottleneck::new(
                        c1,
                        c2,
                        shortcut,
                        g,
                        [1, 3],
                        e,
                        act,
                        ctx,
                    )?))
                })?,
                c2,
                args: format!("[{c1}, {c2}, {}, {g}, {e}]", py_bool(shortcut)),
            },
            Kind::C3 => Built::Layer {
                blocks: vec![Box::new(C3::new(
                    c1,
                    c2,
                    layer.n,
                    shortcut,
                    g,
                    e,
                    [1, 3],
                    act,
                    &layer.ctx,
                )?)],
                c2,
                args: format!("[{c1}, {c2}, {}, {}]", layer.n, py_bool(shortcut)),
            },
        })
    }
}

/// Standard bottleneck: Conv k₁×k₁ then Conv k₂×k₂ (grouped), with a residual when
/// shapes allow.
#[derive(Debug)]
pub struct Bottleneck {
    cv1: Conv,
    cv2: Conv,
    add: bool,
}

impl Bottleneck {
    /// `k`: the two kernel sizes; `e`: the hidden width as a fraction of `c2`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c1: usize,
        c2: usize,
        shortcut: bool,
        g: usize,
        k: [usize; 2],
        e: f64,
        act: &ActSpec,
        ctx: &BlockContext,
    ) -> Result<Self> {
        let hidden = (c2 as f64 * e) as usize;
        Ok(Bottleneck {
            cv1: Conv::new(ConvShape::new(c1, hidden, k[0], 1), act, &ctx.pp("cv1"))?,
            cv2: Conv::new(
                ConvShape {
                    g,
                    ..ConvShape::new(hidden, c2, k[1], 1)
                },
                act,
                &ctx.pp("cv2"),
            )?,
            add: shortcut && c1 == c2,
        })
    }

    pub(super) fn export_on(
        &self,
        g: &mut Graph,
        x: &str,
    ) -> std::result::Result<String, GraphError> {
        let hidden = self.cv1.export_on(g, x)?;
        let y = self.cv2.export_on(g, &hidden)?;
        Ok(if self.add { g.binary("Add", x, &y) } else { y })
    }

    pub(super) fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let hidden = self.cv1.forward(x, train)?;
        if self.add {
            self.cv2.forward_plus(&hidden, x, train)
        } else {
            self.cv2.forward(&hidden, train)
        }
    }

    pub(super) fn bottleneck_cost(&self, hw: (usize, usize), cost: &mut Cost) -> (usize, usize) {
        self.cv2.conv_cost(self.cv1.conv_cost(hw, cost), cost)
    }
}

impl Block for Bottleneck {
    fn forward_t(&self, xs: &[Tensor], train: bool) -> Result<Tensor> {
        self.forward(&xs[0], train)
    }

    fn cost(&self, hws: &[(usize, usize)], _c_in: usize, cost: &mut Cost) -> (usize, usize) {
        self.bottleneck_cost(hws[0], cost)
    }

    fn export(&self, g: &mut Graph, xs: &[String]) -> std::result::Result<String, GraphError> {
        self.export_on(g, &xs[0])
    }

    fn children(&self) -> Vec<&dyn Block> {
        vec![&self.cv1, &self.cv2]
    }

    fn children_mut(&mut self) -> Vec<&mut dyn Block> {
        vec![&mut self.cv1, &mut self.cv2]
    }
}

/// CSP bottleneck with 3 convolutions.
#[derive(Debug)]
pub struct C3 {
    cv1: Conv,
    cv2: Conv,
    cv3: Conv,
    m: Vec<Bottleneck>,
    /// cv1 and cv2 as one conv once fused, reading the block's input once at inference.
    cv12: Option<StackedConvs>,
}

impl C3 {
    /// `k`: the kernel sizes of the Bottlenecks inside.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c1: usize,
        c2: usize,
        n: usize,
        shortcut: bool,
        g: usize,
        e: f64,
        k: [usize; 2],
        act: &ActSpec,
        ctx: &BlockContext,
    ) -> Result<Self> {
        let hidden = (c2 as f64 * e) as usize;
        Ok(C3 {
            cv1: Conv::new(ConvShape::new(c1, hidden, 1, 1), act, &ctx.pp("cv1"))?,
            cv2: Conv::new(ConvShape::new(c1, hidden, 1, 1), act, &ctx.pp("cv2"))?,
            cv3: Conv::new(ConvShape::new(2 * hidden, c2, 1, 1), act, &ctx.pp("cv3"))?,
            m: (0..n)
                .map(|j| {
                    Bottleneck::new(hidden, hidden, shortcut, g, k, 1.0, act, &ctx.pp("m").pp(j))
                })
                .collect::<Result<_>>()?,
            cv12: None,
        })
    }
}

impl C3 {
    /// The block of the input's channel parts (one part: the input itself): cv1 and cv2 are
    /// 1×1 and read them where they lie.
    fn forward_of_parts(&self, parts: &[Tensor], train: bool) -> Result<Tensor> {
        let stacked = match &self.cv12 {
            Some(cv12) => cv12.forward(parts, train)?,
            None => None,
        };
        let (mut y, y2) = match stacked.as_deref() {
            Some([y1, y2]) => (y1.clone(), y2.clone()),
            _ => (
                self.cv1.forward_joined(parts, train)?,
                self.cv2.forward_joined(parts, train)?,
            ),
        };
        for b in &self.m {
            y = b.forward(&y, train)?;
        }
        self.cv3.forward_joined(&[y, y2], train)
    }
}

impl Block for C3 {
    fn forward_t(&self, xs: &[Tensor], train: bool) -> Result<Tensor> {
        self.forward_of_parts(&xs[..1], train)
    }

    fn forward_parts(&self, parts: &[Tensor], train: bool) -> Result<Tensor> {
        self.forward_of_parts(parts, train)
    }

    fn cost(&self, hws: &[(usize, usize)], _c_in: usize, cost: &mut Cost) -> (usize, usize) {
        let hw = hws[0];
        self.cv2.conv_cost(hw, cost);
        let inner = self.m.iter().fold(self.cv1.conv_cost(hw, cost), |hw, b| {
            b.bottleneck_cost(hw, cost)
        });
        self.cv3.conv_cost(inner, cost)
    }

    fn export(&self, g: &mut Graph, xs: &[String]) -> std::result::Result<String, GraphError> {
        let x = &xs[0];
        let mut y = self.cv1.export_on(g, x)?;
        for b in &self.m {
            y = b.export_on(g, &y)?;
        }
        let y2 = self.cv2.export_on(g, x)?;
        let cat = g.concat(&[&y, &y2], 1);
        self.cv3.export_on(g, &cat)
    }

    fn children(&self) -> Vec<&dyn Block> {
        let mut blocks: Vec<&dyn Block> = vec![&self.cv1, &self.cv2, &self.cv3];
        blocks.extend(self.m.iter().map(|b| b as &dyn Block));
        blocks
    }

    fn children_mut(&mut self) -> Vec<&mut dyn Block> {
        let mut blocks: Vec<&mut dyn Block> = vec![&mut self.cv1, &mut self.cv2, &mut self.cv3];
        blocks.extend(self.m.iter_mut().map(|b| b as &mut dyn Block));
        blocks
    }

    fn fuse(&mut self) -> Result<()> {
        self.children_mut().into_iter().try_for_each(|b| b.fuse())?;
        self.cv12 = StackedConvs::of(&[&self.cv1, &self.cv2])?;
        Ok(())
    }
}
