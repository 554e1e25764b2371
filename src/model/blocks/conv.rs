//! The `Conv` row: YOLOv5's and ultralytics 8's `Conv(c1, c2, k, s, p, g, d, act)`, or
//! yolov7's `Conv(c1, c2, k, s, p, g, act)` (no dilation), which builds a
//! [`Conv`](crate::model::conv::Conv).

use std::sync::Arc;

use serde_yaml::Value;

use crate::act::{ActArg, ActSpec};
use crate::model::conv::Conv;
use crate::model::layer::{BlockDef, Built, LayerInputs, LayerSpec};
use crate::model::yaml_args::{RowArgs, RowContext, RowError};
use crate::ops::conv_bn_layer::ConvShape;

pub static CONV: BlockDef = BlockDef {
    name: "Conv",
    parse: parse_conv,
    head: false,
};

/// A Conv's row arguments (Focus takes the same, without dilation).
#[derive(Debug)]
pub(super) struct ConvRow {
    c2: usize,
    k: usize,
    s: usize,
    p: Option<usize>,
    g: usize,
    d: usize,
    act: ActArg,
}

fn parse_conv(
    values: &[Value],
    _: &RowContext,
) -> std::result::Result<Arc<dyn LayerSpec>, RowError> {
    // yolov7's Conv has no dilation: True, False or a spec in the sixth place is its `act`.
    let yolov7 = matches!(values.get(5), Some(Value::Bool(_) | Value::String(_)));
    let names: &'static [&'static str] = if yolov7 {
        &["c2", "k", "s", "p", "g", "act"]
    } else {
        &["c2", "k", "s", "p", "g", "d", "act"]
    };
    Ok(Arc::new(ConvRow::read(
        &RowArgs::new(values, names, 1)?,
        !yolov7,
    )?))
}

impl ConvRow {
    /// `c2, k, s, p, g`, then `d` when the row has it, then `act`.
    pub(super) fn read(a: &RowArgs, has_dilation: bool) -> std::result::Result<Self, RowError> {
        Ok(ConvRow {
            c2: a.c2()?,
            k: a.usize_or(1, 1)?,
            s: a.usize_or(2, 1)?,
            p: a.opt_usize(3)?,
            g: a.usize_or(4, 1)?,
            d: if has_dilation { a.usize_or(5, 1)? } else { 1 },
            act: a.act(if has_dilation { 6 } else { 5 })?,
        })
    }

    /// The convolution on this layer's input, and its activation.
    pub(super) fn shape(&self, layer: &LayerInputs) -> (ConvShape, ActSpec) {
        let shape = ConvShape {
            c1: layer.c1(),
            c2: layer.width(self.c2),
            k: self.k,
            s: self.s,
            p: self.p,
            g: self.g,
            d: self.d,
        };
        (shape, layer.act(&self.act))
    }
}

impl LayerSpec for ConvRow {
    fn build(&self, layer: &LayerInputs) -> std::result::Result<Built, RowError> {
        let (shape, act) = self.shape(layer);
        let ConvShape { c1, c2, .. } = shape;
        Ok(Built::Layer {
            blocks: layer.repeat(|ctx| Ok(Box::new(Conv::new(shape, &act, ctx)?)))?,
            c2,
            args: format!(
                "[{c1}, {c2}, {}, {}, {}, {}, {}, {act}]",
                self.k,
                self.s,
                self.p.map_or("None".into(), |p| p.to_string()),
                self.g,
                self.d
            ),
        })
    }
}
