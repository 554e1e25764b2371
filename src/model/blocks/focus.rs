//! Focus: space-to-depth (each 2×2 patch into channels), then a Conv (YOLOv5 before 6.0).

use std::sync::Arc;

use candle_core::{Result, Tensor};
use serde_yaml::Value;

use super::conv::ConvRow;
use crate::act::ActSpec;
use crate::model::block::{Block, BlockContext};
use crate::model::conv::Conv;
use crate::model::layer::{BlockDef, Built, LayerInputs, LayerSpec};
use crate::model::yaml_args::{RowArgs, RowContext, RowError};
use crate::ops::conv_bn_layer::{ConvShape, Cost};
use crate::ops::graph::{Graph, GraphError};

pub static FOCUS: BlockDef = BlockDef {
    name: "Focus",
    parse: parse_focus,
    head: false,
};

#[derive(Debug)]
struct FocusRow(ConvRow);

fn parse_focus(
    values: &[Value],
    _: &RowContext,
) -> std::result::Result<Arc<dyn LayerSpec>, RowError> {
    let a = RowArgs::new(values, &["c2", "k", "s", "p", "g", "act"], 1)?;
    Ok(Arc::new(FocusRow(ConvRow::read(&a, false)?)))
}

impl LayerSpec for FocusRow {
    fn build(&self, layer: &LayerInputs) -> std::result::Result<Built, RowError> {
        let (shape, act) = self.0.shape(layer);
        let ConvShape { c1, c2, .. } = shape;
        Ok(Built::Layer {
            blocks: layer.repeat(|ctx| Ok(Box::new(Focus::new(shape, &act, ctx)?)))?,
            c2,
            args: format!("[{c1}, {c2}, {}, {}, {act}]", shape.k, shape.s),
        })
    }
}

#[derive(Debug)]
struct Focus {
    conv: Conv,
}

impl Focus {
    fn new(shape: ConvShape, act: &ActSpec, ctx: &BlockContext) -> Result<Self> {
        Ok(Focus {
            conv: Conv::new(
                ConvShape {
                    c1: shape.c1 * 4,
                    ..shape
                },
                act,
                &ctx.pp("conv"),
            )?,
        })
    }
}

impl Block for Focus {
    fn forward_t(&self, xs: &[Tensor], train: bool) -> Result<Tensor> {
        let x = &xs[0];
        let (n, c, h, w) = x.dims4()?;
        // x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]
        let patches = x.reshape((n, c, h / 2, 2, w / 2, 2))?;
        let pick = |dy: usize, dx: usize| {
            patches
                .narrow(3, dy, 1)?
                .narrow(5, dx, 1)?
                .reshape((n, c, h / 2, w / 2))
        };
        let y = Tensor::cat(&[pick(0, 0)?, pick(1, 0)?, pick(0, 1)?, pick(1, 1)?], 1)?;
        self.conv.forward(&y, train)
    }

    fn cost(&self, hws: &[(usize, usize)], _c_in: usize, cost: &mut Cost) -> (usize, usize) {
        let hw = hws[0];
        self.conv.conv_cost((hw.0 / 2, hw.1 / 2), cost)
    }

    /// The four strided slices, in the forward's order, then the conv.
    fn export(&self, g: &mut Graph, xs: &[String]) -> std::result::Result<String, GraphError> {
        let (axes, steps, ends) = (
            g.ints(&[2, 3]),
            g.ints(&[2, 2]),
            g.ints(&[i64::MAX, i64::MAX]),
        );
        let patches: Vec<String> = [(0, 0), (1, 0), (0, 1), (1, 1)]
            .into_iter()
            .map(|(dy, dx)| {
                let starts = g.ints(&[dy, dx]);
                g.op("Slice", &[&xs[0], &starts, &ends, &axes, &steps], vec![])
            })
            .collect();
        let y = g.concat(&patches, 1);
        self.conv.export_on(g, &y)
    }

    fn children(&self) -> Vec<&dyn Block> {
        vec![&self.conv]
    }

    fn children_mut(&mut self) -> Vec<&mut dyn Block> {
        vec![&mut self.conv]
    }
}
