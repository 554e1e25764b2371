//! The detection heads' rows: YOLOv5's `Detect(nc, anchors)` and yolov7's
//! `IDetect(nc, anchors)`, which end a model.

use std::sync::Arc;

use serde_yaml::Value;

use crate::model::head::{Detect, DetectKind};
use crate::model::layer::{BlockDef, Built, LayerInputs, LayerSpec};
use crate::model::yaml_args::{parse_anchors, RowArgs, RowContext, RowError, MAX_NC};

pub static DETECT: BlockDef = BlockDef {
    name: "Detect",
    parse: |values, ctx| parse_head(values, ctx, DetectKind::Detect),
    head: true,
};

pub static IDETECT: BlockDef = BlockDef {
    name: "IDetect",
    parse: |values, ctx| parse_head(values, ctx, DetectKind::IDetect),
    head: true,
};

/// `[nc, anchors]`, either by the model's names or written out.
#[derive(Debug)]
struct HeadRow {
    kind: DetectKind,
    nc: usize,
    anchors: Vec<Vec<(f64, f64)>>,
}

fn parse_head(
    values: &[Value],
    ctx: &RowContext,
    kind: DetectKind,
) -> std::result::Result<Arc<dyn LayerSpec>, RowError> {
    let a = RowArgs::new(values, &["nc", "anchors"], 2)?;
    let nc = match &values[0] {
        Value::String(s) if s == "nc" => ctx.nc,
        v => v
            .as_u64()
            .filter(|n| (1..=MAX_NC as u64).contains(n))
            .ok_or_else(|| a.bad(0, &format!("nc or a whole number from 1 to {MAX_NC}")))?
            as usize,
    };
    let anchors = match &values[1] {
        Value::String(s) if s == "anchors" => ctx.anchors.to_vec(),
        v => parse_anchors(v).map_err(|source| RowError::Anchors { index: 1, source })?,
    };
    Ok(Arc::new(HeadRow { kind, nc, anchors }))
}

impl LayerSpec for HeadRow {
    fn build(&self, layer: &LayerInputs) -> std::result::Result<Built, RowError> {
        let levels = layer.channels.len();
        if levels != self.anchors.len() && !self.anchors.is_empty() {
            return Err(RowError::Invalid(format!(
                "{levels} inputs but {} anchor levels",
                self.anchors.len()
            )));
        }
        let anchors: Vec<Vec<(f64, f64)>> = (0..levels)
            .map(|l| self.anchors[l.min(self.anchors.len() - 1)].clone())
            .collect();
        let head = Detect::new(
            self.kind,
            self.nc,
            &anchors,
            &layer.channels,
            layer.strides.clone(),
            &layer.ctx,
        )?;
        let flat: Vec<Vec<f64>> = anchors
            .iter()
            .map(|l| l.iter().flat_map(|(w, h)| [*w, *h]).collect())
            .collect();
        Ok(Built::Head {
            head,
            args: format!("[{}, {flat:?}, {:?}]", self.nc, layer.channels),
        })
    }
}
