//! ultralytics 8's C2f (YOLOv8) and C3k2 (YOLO11): one 1×1 Conv splits its output in two
//! halves; a chain of inner blocks grows from the second; every intermediate map is
//! concatenated and a second 1×1 Conv mixes them. C2f's inner blocks are 3×3-3×3
//! Bottlenecks at full width; C3k2's are half-width Bottlenecks or, with `c3k` (and always
//! at scales m, l and x), C3k blocks (C3 with 3×3 Bottlenecks).

use std::sync::Arc;

use candle_core::{Result, Tensor};

use super::bottleneck::{py_bool, Bottleneck, C3};
use crate::act::ActSpec;
use crate::model::block::{Block, BlockContext};
use crate::model::conv::Conv;
use crate::model::layer::{BlockDef, Built, LayerInputs, LayerSpec};
use crate::model::yaml_args::{RowArgs, RowError};
use crate::ops::conv_bn_layer::{ConvShape, Cost};
use crate::ops::graph::{Graph, GraphError};

pub static C2F: BlockDef = BlockDef {
    name: "C2f",
    parse: |values, _| {
        let a = RowArgs::new(values, &["c2", "shortcut", "g", "e"], 1)?;
        Ok(Arc::new(C2fRow {
            c2: a.c2()?,
            inner: Inner::Bottleneck {
                shortcut: a.bool_or(1, false)?,
                g: a.usize_or(2, 1)?,
                e: 1.0,
            },
            e: a.f64_or(3, 0.5)?,
            c3k_at_large_scales: false,
        }))
    },
    head: false,
};

pub static C3K2: BlockDef = BlockDef {
    name: "C3k2",
    parse: |values, _| {
        let names = &["c2", "c3k", "e", "attn", "g", "shortcut"];
        let a = RowArgs::new(values, names, 1)?;
        if a.bool_or(3, false)? {
            return Err(RowError::Invalid(
                "argument 3 (`attn`): attention blocks inside C3k2 (YOLO26) are not supported; \
                 use False"
                    .into(),
            ));
        }
        let (c3k, shortcut, g) = (a.bool_or(1, false)?, a.bool_or(5, true)?, a.usize_or(4, 1)?);
        Ok(Arc::new(C2fRow {
            c2: a.c2()?,
            inner: if c3k {
                Inner::C3k { shortcut, g }
            } else {
                Inner::Bottleneck {
                    shortcut,
                    g,
                    e: 0.5,
                }
            },
            e: a.f64_or(2, 0.5)?,
            c3k_at_large_scales: true,
        }))
    },
    head: false,
};

/// What C2f and C3k2 chain inside.
#[derive(Debug, Clone, Copy)]
enum Inner {
    /// A 3×3-3×3 Bottleneck with hidden width `e` (C2f's at 1.0, C3k2's at 0.5).
    Bottleneck { shortcut: bool, g: usize, e: f64 },
    /// C3k: a C3 of two 3×3-3×3 Bottlenecks.
    C3k { shortcut: bool, g: usize },
}

#[derive(Debug)]
struct C2fRow {
    c2: usize,
    inner: Inner,
    /// The width of each half, as a fraction of `c2`.
    e: f64,
    /// C3k2: C3k blocks at scales m, l and x whatever the row says, as ultralytics builds.
    c3k_at_large_scales: bool,
}

impl LayerSpec for C2fRow {
    fn build(&self, layer: &LayerInputs) -> std::result::Result<Built, RowError> {
        let (c1, c2, n) = (layer.c1(), layer.width(self.c2), layer.n);
        let large = matches!(layer.scale, Some("m" | "l" | "x"));
        let inner = match self.inner {
            Inner::Bottleneck { shortcut, g, .. } if self.c3k_at_large_scales && large => {
                Inner::C3k { shortcut, g }
            }
            inner => inner,
        };
        let block = C2f::new(c1, c2, n, inner, self.e, layer.default_act, &layer.ctx)?;
        let args = match inner {
            _ if self.c3k_at_large_scales => {
                let c3k = py_bool(matches!(inner, Inner::C3k { .. }));
                format!("[{c1}, {c2}, {n}, {c3k}, {}]", self.e)
            }
            Inner::Bottleneck { shortcut, .. } | Inner::C3k { shortcut, .. } => {
                format!("[{c1}, {c2}, {n}, {}]", py_bool(shortcut))
            }
        };
        Ok(Built::Layer {
            blocks: vec![Box::new(block)],
            c2,
            args,
        })
    }
}

/// The split-chain-concatenate block (C2f, C3k2).
#[derive(Debug)]
struct C2f {
    cv1: Conv,
    cv2: Conv,
    m: Vec<Box<dyn Block>>,
    /// The width of each half of cv1's output.
    c: usize,
}

impl C2f {
    fn new(
        c1: usize,
        c2: usize,
        n: usize,
        inner: Inner,
        e: f64,
        act: &ActSpec,
        ctx: &BlockContext,
    ) -> Result<Self> {
        let c = (c2 as f64 * e) as usize;
        let m = (0..n)
            .map(|j| -> Result<Box<dyn Block>> {
                let ctx = ctx.pp("m").pp(j);
                Ok(match inner {
                    Inner::Bottleneck { shortcut, g, e } => {
                        Box::new(Bottleneck::new(c, c, shortcut, g, [3, 3], e, act, &ctx)?)
                    }
                    Inner::C3k { shortcut, g } => {
                        Box::new(C3::new(c, c, 2, shortcut, g, 0.5, [3, 3], act, &ctx)?)
                    }
                })
            })
            .collect::<Result<_>>()?;
        Ok(C2f {
            cv1: Conv::new(ConvShape::new(c1, 2 * c, 1, 1), act, &ctx.pp("cv1"))?,
            cv2: Conv::new(ConvShape::new((2 + n) * c, c2, 1, 1), act, &ctx.pp("cv2"))?,
            m,
            c,
        })
    }
}

impl C2f {
    /// The block of the input's channel parts (one part: the input itself): cv1 is 1×1 and
    /// reads them where they lie.
    fn forward_of_parts(&self, input: &[Tensor], train: bool) -> Result<Tensor> {
        let y = self.cv1.forward_joined(input, train)?;
        let mut parts = vec![y.narrow(1, 0, self.c)?, y.narrow(1, self.c, self.c)?];
        for block in &self.m {
            let next = block.forward_t(&parts[parts.len() - 1..], train)?;
            parts.push(next);
        }
        self.cv2.forward_joined(&parts, train)
    }
}

impl Block for C2f {
    fn forward_t(&self, xs: &[Tensor], train: bool) -> Result<Tensor> {
        self.forward_of_parts(&xs[..1], train)
    }

    fn forward_parts(&self, parts: &[Tensor], train: bool) -> Result<Tensor> {
        self.forward_of_parts(parts, train)
    }

    fn cost(&self, hws: &[(usize, usize)], _c_in: usize, cost: &mut Cost) -> (usize, usize) {
        let hw = self.cv1.conv_cost(hws[0], cost);
        for block in &self.m {
            block.cost(&[hw], self.c, cost);
        }
        self.cv2.conv_cost(hw, cost)
    }

    fn export(&self, g: &mut Graph, xs: &[String]) -> std::result::Result<String, GraphError> {
        let y = self.cv1.export_on(g, &xs[0])?;
        let c = self.c as i64;
        let sizes = g.ints(&[c, c]);
        let mut parts = g.op_outputs(
            "Split",
            &[&y, &sizes],
            vec![("axis", crate::ops::graph::Attr::Int(1))],
            2,
        );
        for block in &self.m {
            let next = block.export(g, &parts[parts.len() - 1..])?;
            parts.push(next);
        }
        let cat = g.concat(&parts, 1);
        self.cv2.export_on(g, &cat)
    }

    fn children(&self) -> Vec<&dyn Block> {
        let mut blocks: Vec<&dyn Block> = vec![&self.cv1, &self.cv2];
        blocks.extend(self.m.iter().map(|b| b.as_ref()));
        blocks
    }

    fn children_mut(&mut self) -> Vec<&mut dyn Block> {
        let mut blocks: Vec<&mut dyn Block> = vec![&mut self.cv1, &mut self.cv2];
        blocks.extend(self.m.iter_mut().map(|b| b.as_mut() as &mut dyn Block));
        blocks
    }
}
