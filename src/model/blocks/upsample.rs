//! nn.Upsample: nearest-neighbour upsampling by an integer scale.

use std::sync::Arc;

use candle_core::{Result, Tensor};

use crate::model::block::Block;
use crate::model::layer::{BlockDef, Built, LayerInputs, LayerSpec};
use crate::model::yaml_args::{show, RowArgs, RowError};
use crate::ops::conv_bn_layer::Cost;
use crate::ops::graph::{Attr, Graph, GraphError};
use crate::ops::upsample_nearest::upsample_nearest2d;

/// The largest scale factor (YOLO models use 2).
const MAX_SCALE: usize = 64;

pub static UPSAMPLE: BlockDef = BlockDef {
    name: "nn.Upsample",
    parse: |values, _| {
        let a = RowArgs::new(values, &["size", "scale_factor", "mode"], 0)?;
        if a.get(0).is_some() {
            return Err(RowError::Invalid(
                "argument 0 (`size`): only None (scale by scale_factor) is supported".into(),
            ));
        }
        let scale = a.usize_or(1, 2)?;
        if scale > MAX_SCALE {
            return Err(a.bad(1, &format!("a scale factor from 1 to {MAX_SCALE}")));
        }
        match a.get(2).map(|v| v.as_str()) {
            None | Some(Some("nearest")) => {}
            Some(_) => {
                return Err(RowError::Invalid(format!(
                    "argument 2 (`mode`): only 'nearest' is supported, got {}",
                    show(&values[2])
                )))
            }
        }
        Ok(Arc::new(UpsampleRow { scale }))
    },
    head: false,
};

#[derive(Debug)]
struct UpsampleRow {
    scale: usize,
}

impl LayerSpec for UpsampleRow {
    fn build(&self, layer: &LayerInputs) -> std::result::Result<Built, RowError> {
        Ok(Built::Layer {
            blocks: vec![Box::new(Upsample { scale: self.scale })],
            c2: layer.c1(),
            args: format!("[None, {}, 'nearest']", self.scale),
        })
    }
}

#[derive(Debug)]
struct Upsample {
    scale: usize,
}

impl Block for Upsample {
    fn forward_t(&self, xs: &[Tensor], _train: bool) -> Result<Tensor> {
        upsample_nearest2d(&xs[0], self.scale)
    }

    /// thop counts one operation per output element.
    fn cost(&self, hws: &[(usize, usize)], c_in: usize, cost: &mut Cost) -> (usize, usize) {
        let out = (hws[0].0 * self.scale, hws[0].1 * self.scale);
        cost.macs += c_in as f64 * (out.0 * out.1) as f64;
        out
    }

    /// `Resize` by whole scales, nearest, as torch exports `nn.Upsample(mode='nearest')`.
    fn export(&self, g: &mut Graph, xs: &[String]) -> std::result::Result<String, GraphError> {
        let s = self.scale as f32;
        let scales = g.floats(&[4], vec![1.0, 1.0, s, s]);
        Ok(g.op(
            "Resize",
            &[&xs[0], "", &scales],
            vec![
                ("coordinate_transformation_mode", Attr::Str("asymmetric")),
                ("mode", Attr::Str("nearest")),
                ("nearest_mode", Attr::Str("floor")),
            ],
        ))
    }
}
