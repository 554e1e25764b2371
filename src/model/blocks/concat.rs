//! Concat: the inputs joined along the channels.

use std::sync::Arc;

use candle_core::{Result, Tensor};

use crate::model::block::Block;
use crate::model::layer::{BlockDef, Built, LayerInputs, LayerSpec};
use crate::model::yaml_args::{RowArgs, RowError};
use crate::ops::concat;
use crate::ops::conv_bn_layer::Cost;
use crate::ops::graph::{Graph, GraphError};

pub static CONCAT: BlockDef = BlockDef {
    name: "Concat",
    parse: |values, _| {
        let a = RowArgs::new(values, &["dimension"], 0)?;
        let dim = match a.get(0) {
            None => 1,
            Some(v) => v.as_i64().ok_or_else(|| a.bad(0, "an integer"))?,
        };
        if dim != 1 && dim != -3 {
            return Err(RowError::Invalid(format!(
                "argument 0 (`dimension`): only the channel dimension (1) is supported, got {dim}"
            )));
        }
        Ok(Arc::new(ConcatRow { dim }))
    },
    head: false,
};

#[derive(Debug)]
struct ConcatRow {
    dim: i64,
}

impl LayerSpec for ConcatRow {
    fn build(&self, layer: &LayerInputs) -> std::result::Result<Built, RowError> {
        Ok(Built::Layer {
            blocks: vec![Box::new(Concat)],
            c2: layer.channels.iter().sum(),
            args: format!("[{}]", self.dim),
        })
    }
}

#[derive(Debug)]
struct Concat;

impl Block for Concat {
    fn forward_t(&self, xs: &[Tensor], _train: bool) -> Result<Tensor> {
        concat::channels(xs)
    }

    fn joins_inputs(&self) -> bool {
        true
    }

    fn cost(&self, hws: &[(usize, usize)], _c_in: usize, _cost: &mut Cost) -> (usize, usize) {
        hws[0]
    }

    fn export(&self, g: &mut Graph, xs: &[String]) -> std::result::Result<String, GraphError> {
        Ok(g.concat(xs, 1))
    }
}
