//! yolov7's max-pooling rows: `MP(k)` (k×k, stride k) and `SP(k, s)` (k×k, stride s,
//! padding k // 2).

use std::sync::Arc;

use candle_core::{Result, Tensor};

use crate::model::block::Block;
use crate::model::layer::{BlockDef, Built, LayerInputs, LayerSpec};
use crate::model::yaml_args::{RowArgs, RowError};
use crate::ops::conv_bn_layer::{conv_out, Cost};
use crate::ops::graph::{Graph, GraphError};
use crate::ops::maxpool::{max_pool2d, MaxPool2d};

pub static MP: BlockDef = BlockDef {
    name: "MP",
    parse: |values, _| {
        let a = RowArgs::new(values, &["k"], 0)?;
        let k = a.usize_or(0, 2)?;
        Ok(Arc::new(PoolRow {
            pool: MaxPool2d {
                kernel: k,
                stride: k,
                padding: 0,
            },
            args: format!("[{k}]"),
        }))
    },
    head: false,
};

pub static SP: BlockDef = BlockDef {
    name: "SP",
    parse: |values, _| {
        let a = RowArgs::new(values, &["k", "s"], 0)?;
        let (k, s) = (a.usize_or(0, 3)?, a.usize_or(1, 1)?);
        Ok(Arc::new(PoolRow {
            pool: MaxPool2d {
                kernel: k,
                stride: s,
                padding: k / 2,
            },
            args: format!("[{k}, {s}]"),
        }))
    },
    head: false,
};

#[derive(Debug)]
struct PoolRow {
    pool: MaxPool2d,
    args: String,
}

impl LayerSpec for PoolRow {
    fn build(&self, layer: &LayerInputs) -> std::result::Result<Built, RowError> {
        Ok(Built::Layer {
            blocks: vec![Box::new(Pool(self.pool))],
            c2: layer.c1(),
            args: self.args.clone(),
        })
    }
}

#[derive(Debug)]
struct Pool(MaxPool2d);

impl Block for Pool {
    fn forward_t(&self, xs: &[Tensor], _train: bool) -> Result<Tensor> {
        let p = &self.0;
        max_pool2d(&xs[0], p.kernel, p.stride, p.padding)
    }

    /// thop counts no operations for max-pooling.
    fn cost(&self, hws: &[(usize, usize)], _c_in: usize, _cost: &mut Cost) -> (usize, usize) {
        let (p, hw) = (&self.0, hws[0]);
        (
            conv_out(hw.0, p.kernel, p.stride, p.padding, 1),
            conv_out(hw.1, p.kernel, p.stride, p.padding, 1),
        )
    }

    fn export(&self, g: &mut Graph, xs: &[String]) -> std::result::Result<String, GraphError> {
        let p = &self.0;
        Ok(g.max_pool(&xs[0], p.kernel, p.stride, p.padding))
    }
}
