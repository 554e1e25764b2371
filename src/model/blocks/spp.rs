//! Spatial pyramid pooling: SPP (parallel k×k max-pools) and SPPF (three chained ones, the
//! same result faster).

use std::sync::Arc;

use candle_core::{Result, Tensor};

use crate::act::ActSpec;
use crate::model::block::{Block, BlockContext};
use crate::model::conv::Conv;
use crate::model::layer::{BlockDef, Built, LayerInputs, LayerSpec};
use crate::model::yaml_args::{RowArgs, RowError};
use crate::ops::conv_bn_layer::{ConvShape, Cost};
use crate::ops::graph::{Graph, GraphError};
use crate::ops::maxpool::max_pool2d;

pub static SPPF: BlockDef = BlockDef {
    name: "SPPF",
    parse: |values, _| {
        let a = RowArgs::new(values, &["c2", "k"], 1)?;
        Ok(Arc::new(SppfRow {
            c2: a.c2()?,
            k: a.usize_or(1, 5)?,
        }))
    },
    head: false,
};

pub static SPP: BlockDef = BlockDef {
    name: "SPP",
    parse: |values, _| {
        let a = RowArgs::new(values, &["c2", "k"], 1)?;
        Ok(Arc::new(SppRow {
            c2: a.c2()?,
            ks: a.usize_list_or(1, &[5, 9, 13])?,
        }))
    },
    head: false,
};

#[derive(Debug)]
struct SppfRow {
    c2: usize,
    k: usize,
}

impl LayerSpec for SppfRow {
    fn build(&self, layer: &LayerInputs) -> std::result::Result<Built, RowError> {
        let (c1, c2, k) = (layer.c1(), layer.width(self.c2), self.k);
        Ok(Built::Layer {
            blocks: layer
                .repeat(|ctx| Ok(Box::new(Sppf::new(c1, c2, k, layer.default_act, ctx)?)))?,
            c2,
            args: format!("[{c1}, {c2}, {k}]"),
        })
    }
}

#[derive(Debug)]
struct SppRow {
    c2: usize,
    ks: Vec<usize>,
}

impl LayerSpec for SppRow {
    fn build(&self, layer: &LayerInputs) -> std::result::Result<Built, RowError> {
        let (c1, c2, ks) = (layer.c1(), layer.width(self.c2), &self.ks);
        Ok(Built::Layer {
            blocks: layer
                .repeat(|ctx| Ok(Box::new(Spp::new(c1, c2, ks, layer.default_act, ctx)?)))?,
            c2,
            args: format!("[{c1}, {c2}, {ks:?}]"),
        })
    }
}

/// Spatial pyramid pooling, fast: three chained k×k max-pools (= SPP with k, 2k-1, 3k-2).
#[derive(Debug)]
struct Sppf {
    cv1: Conv,
    cv2: Conv,
    k: usize,
}

impl Sppf {
    fn new(c1: usize, c2: usize, k: usize, act: &ActSpec, ctx: &BlockContext) -> Result<Self> {
        let hidden = c1 / 2;
        Ok(Sppf {
            cv1: Conv::new(ConvShape::new(c1, hidden, 1, 1), act, &ctx.pp("cv1"))?,
            cv2: Conv::new(ConvShape::new(hidden * 4, c2, 1, 1), act, &ctx.pp("cv2"))?,
            k,
        })
    }
}

impl Block for Sppf {
    fn forward_t(&self, xs: &[Tensor], train: bool) -> Result<Tensor> {
        let x = self.cv1.forward(&xs[0], train)?;
        let y1 = max_pool2d(&x, self.k, 1, self.k / 2)?;
        let y2 = max_pool2d(&y1, self.k, 1, self.k / 2)?;
        let y3 = max_pool2d(&y2, self.k, 1, self.k / 2)?;
        self.cv2.forward_joined(&[x, y1, y2, y3], train)
    }

    fn cost(&self, hws: &[(usize, usize)], _c_in: usize, cost: &mut Cost) -> (usize, usize) {
        self.cv2.conv_cost(self.cv1.conv_cost(hws[0], cost), cost)
    }

    fn export(&self, g: &mut Graph, xs: &[String]) -> std::result::Result<String, GraphError> {
        let x = self.cv1.export_on(g, &xs[0])?;
        let y1 = g.max_pool(&x, self.k, 1, self.k / 2);
        let y2 = g.max_pool(&y1, self.k, 1, self.k / 2);
        let y3 = g.max_pool(&y2, self.k, 1, self.k / 2);
        let cat = g.concat(&[&x, &y1, &y2, &y3], 1);
        self.cv2.export_on(g, &cat)
    }

    fn children(&self) -> Vec<&dyn Block> {
        vec![&self.cv1, &self.cv2]
    }

    fn children_mut(&mut self) -> Vec<&mut dyn Block> {
        vec![&mut self.cv1, &mut self.cv2]
    }
}

/// Spatial pyramid pooling with parallel max-pools of several sizes.
#[derive(Debug)]
struct Spp {
    cv1: Conv,
    cv2: Conv,
    ks: Vec<usize>,
}

impl Spp {
    fn new(c1: usize, c2: usize, ks: &[usize], act: &ActSpec, ctx: &BlockContext) -> Result<Self> {
        let hidden = c1 / 2;
        Ok(Spp {
            cv1: Conv::new(ConvShape::new(c1, hidden, 1, 1), act, &ctx.pp("cv1"))?,
            cv2: Conv::new(
                ConvShape::new(hidden * (ks.len() + 1), c2, 1, 1),
                act,
                &ctx.pp("cv2"),
            )?,
            ks: ks.to_vec(),
        })
    }
}

impl Block for Spp {
    fn forward_t(&self, xs: &[Tensor], train: bool) -> Result<Tensor> {
        let x = self.cv1.forward(&xs[0], train)?;
        self.cv2.forward_joined(&pyramid(&x, &self.ks)?, train)
    }

    fn cost(&self, hws: &[(usize, usize)], _c_in: usize, cost: &mut Cost) -> (usize, usize) {
        self.cv2.conv_cost(self.cv1.conv_cost(hws[0], cost), cost)
    }

    fn export(&self, g: &mut Graph, xs: &[String]) -> std::result::Result<String, GraphError> {
        let x = self.cv1.export_on(g, &xs[0])?;
        let pooled = export_pyramid(g, &x, &self.ks);
        self.cv2.export_on(g, &pooled)
    }

    fn children(&self) -> Vec<&dyn Block> {
        vec![&self.cv1, &self.cv2]
    }

    fn children_mut(&mut self) -> Vec<&mut dyn Block> {
        vec![&mut self.cv1, &mut self.cv2]
    }
}

/// `x` and its stride-1 'same' max-pools of each size in `ks`, to be joined along the
/// channels (SPP's and SPPCSPC's parallel pooling).
pub fn pyramid(x: &Tensor, ks: &[usize]) -> Result<Vec<Tensor>> {
    let mut parts = vec![x.clone()];
    for &k in ks {
        parts.push(max_pool2d(x, k, 1, k / 2)?);
    }
    Ok(parts)
}

/// [`pyramid`] in an ONNX graph.
pub fn export_pyramid(g: &mut Graph, x: &str, ks: &[usize]) -> String {
    let mut parts = vec![x.to_string()];
    for &k in ks {
        parts.push(g.max_pool(x, k, 1, k / 2));
    }
    g.concat(&parts, 1)
}
