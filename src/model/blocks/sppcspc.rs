//! yolov7's SPPCSPC: SPP inside a CSP block, `SPPCSPC(c1, c2, n, shortcut, g, e, k)`,
//! whose n, shortcut and g are read but, as in yolov7, unused.

use std::sync::Arc;

use candle_core::{Result, Tensor};

use super::spp::{export_pyramid, pyramid};
use crate::act::ActSpec;
use crate::model::block::{Block, BlockContext};
use crate::model::conv::Conv;
use crate::model::layer::{BlockDef, Built, LayerInputs, LayerSpec};
use crate::model::yaml_args::{RowArgs, RowError};
use crate::ops::conv_bn_layer::{ConvShape, Cost};
use crate::ops::graph::{Graph, GraphError};

pub static SPPCSPC: BlockDef = BlockDef {
    name: "SPPCSPC",
    parse: |values, _| {
        let a = RowArgs::new(values, &["c2", "shortcut", "g", "e", "k"], 1)?;
        // yolov7 passes shortcut and g on but never reads them; a mistyped one is still a mistake.
        a.bool_or(1, false)?;
        a.usize_or(2, 1)?;
        Ok(Arc::new(SppcspcRow {
            c2: a.c2()?,
            e: a.f64_or(3, 0.5)?,
            ks: a.usize_list_or(4, &[5, 9, 13])?,
        }))
    },
    head: false,
};

#[derive(Debug)]
struct SppcspcRow {
    c2: usize,
    e: f64,
    ks: Vec<usize>,
}

impl LayerSpec for SppcspcRow {
    fn build(&self, layer: &LayerInputs) -> std::result::Result<Built, RowError> {
        let (c1, c2) = (layer.c1(), layer.width(self.c2));
        let block = Sppcspc::new(c1, c2, self.e, &self.ks, layer.default_act, &layer.ctx)?;
        Ok(Built::Layer {
            blocks: vec![Box::new(block)],
            c2,
            args: format!("[{c1}, {c2}, {}, {:?}]", self.e, self.ks),
        })
    }
}

/// SPP inside a CSP block: cv1 → cv3 → cv4 and its max-pool pyramid, then cv5 → cv6, beside
/// the cv2 shortcut; cv7 joins them.
#[derive(Debug)]
struct Sppcspc {
    cv1: Conv,
    cv2: Conv,
    cv3: Conv,
    cv4: Conv,
    cv5: Conv,
    cv6: Conv,
    cv7: Conv,
    ks: Vec<usize>,
}

impl Sppcspc {
    /// yolov7's `SPPCSPC(c1, c2, n, shortcut, g, e, k)`, whose n, shortcut and g are unused.
    fn new(
        c1: usize,
        c2: usize,
        e: f64,
        ks: &[usize],
        act: &ActSpec,
        ctx: &BlockContext,
    ) -> Result<Self> {
        let hidden = (2.0 * c2 as f64 * e) as usize;
        let conv = |c_in, c_out, k, name: &str| {
            Conv::new(ConvShape::new(c_in, c_out, k, 1), act, &ctx.pp(name))
        };
        Ok(Sppcspc {
            cv1: conv(c1, hidden, 1, "cv1")?,
            cv2: conv(c1, hidden, 1, "cv2")?,
            cv3: conv(hidden, hidden, 3, "cv3")?,
            cv4: conv(hidden, hidden, 1, "cv4")?,
            cv5: conv(hidden * (ks.len() + 1), hidden, 1, "cv5")?,
            cv6: conv(hidden, hidden, 3, "cv6")?,
            cv7: conv(2 * hidden, c2, 1, "cv7")?,
            ks: ks.to_vec(),
        })
    }
}

impl Block for Sppcspc {
    fn forward_t(&self, xs: &[Tensor], train: bool) -> Result<Tensor> {
        let x = &xs[0];
        let x1 = self.cv4.forward(
            &self.cv3.forward(&self.cv1.forward(x, train)?, train)?,
            train,
        )?;
        let y1 = self.cv6.forward(
            &self.cv5.forward_joined(&pyramid(&x1, &self.ks)?, train)?,
            train,
        )?;
        let y2 = self.cv2.forward(x, train)?;
        self.cv7.forward_joined(&[y1, y2], train)
    }

    /// Every conv keeps the size.
    fn cost(&self, hws: &[(usize, usize)], _c_in: usize, cost: &mut Cost) -> (usize, usize) {
        [
            &self.cv1, &self.cv2, &self.cv3, &self.cv4, &self.cv5, &self.cv6, &self.cv7,
        ]
        .into_iter()
        .fold(hws[0], |hw, conv| conv.conv_cost(hw, cost))
    }

    fn export(&self, g: &mut Graph, xs: &[String]) -> std::result::Result<String, GraphError> {
        let x = &xs[0];
        let x1 = self.cv1.export_on(g, x)?;
        let x1 = self.cv3.export_on(g, &x1)?;
        let x1 = self.cv4.export_on(g, &x1)?;
        let pooled = export_pyramid(g, &x1, &self.ks);
        let y1 = self.cv5.export_on(g, &pooled)?;
        let y1 = self.cv6.export_on(g, &y1)?;
        let y2 = self.cv2.export_on(g, x)?;
        let cat = g.concat(&[&y1, &y2], 1);
        self.cv7.export_on(g, &cat)
    }

    fn children(&self) -> Vec<&dyn Block> {
        vec![
            &self.cv1, &self.cv2, &self.cv3, &self.cv4, &self.cv5, &self.cv6, &self.cv7,
        ]
    }

    fn children_mut(&mut self) -> Vec<&mut dyn Block> {
        vec![
            &mut self.cv1,
            &mut self.cv2,
            &mut self.cv3,
            &mut self.cv4,
            &mut self.cv5,
            &mut self.cv6,
            &mut self.cv7,
        ]
    }
}
