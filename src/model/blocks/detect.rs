//! The detection heads' rows, which end a model: YOLOv5's `Detect(nc, anchors)`, yolov7's
//! `IDetect(nc, anchors)`, and ultralytics 8's anchor-free `Detect(nc)` (YOLOv8, YOLO11).

use std::sync::Arc;

use serde_yaml::Value;

use crate::model::anchor_free::AnchorFreeDetect;
use crate::model::head::{Detect, DetectKind, Head};
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

/// `[nc, anchors]`, either by the model's names or written out; `[nc]` alone is the
/// anchor-free head (`Detect` only).
#[derive(Debug)]
struct HeadRow {
    kind: DetectKind,
    nc: usize,
    /// None for the anchor-free head.
    anchors: Option<Vec<Vec<(f64, f64)>>>,
}

fn parse_head(
    values: &[Value],
    ctx: &RowContext,
    kind: DetectKind,
) -> std::result::Result<Arc<dyn LayerSpec>, RowError> {
    let required = match kind {
        DetectKind::Detect => 1,
        DetectKind::IDetect => 2,
    };
    let a = RowArgs::new(values, &["nc", "anchors"], required)?;
    let nc = match &values[0] {
        Value::String(s) if s == "nc" => ctx.nc,
        v => v
            .as_u64()
            .filter(|n| (1..=MAX_NC as u64).contains(n))
            .ok_or_else(|| a.bad(0, &format!("nc or a whole number from 1 to {MAX_NC}")))?
            as usize,
    };
    let anchors = match values.get(1) {
        None => None,
        Some(Value::String(s)) if s == "anchors" => {
            if ctx.anchors.is_empty() {
                return Err(RowError::Invalid(
                    "argument 1 names `anchors`, but the file has no `anchors:` key; add one, \
                     or write Detect's row as [nc] for the anchor-free head"
                        .into(),
                ));
            }
            Some(ctx.anchors.to_vec())
        }
        Some(v) => Some(parse_anchors(v).map_err(|source| RowError::Anchors { index: 1, source })?),
    };
    Ok(Arc::new(HeadRow { kind, nc, anchors }))
}

impl LayerSpec for HeadRow {
    fn build(&self, layer: &LayerInputs) -> std::result::Result<Built, RowError> {
        let Some(anchors) = &self.anchors else {
            let head = AnchorFreeDetect::new(
                self.nc,
                layer.reg_max,
                &layer.channels,
                layer.strides.clone(),
                layer.legacy_head,
                layer.default_act,
                &layer.ctx,
            )?;
            return Ok(Built::Head {
                head: Head::AnchorFree(head),
                args: format!("[{}, {}, {:?}]", self.nc, layer.reg_max, layer.channels),
            });
        };
        let levels = layer.channels.len();
        if levels != anchors.len() {
            return Err(RowError::Invalid(format!(
                "{levels} inputs but {} anchor levels",
                anchors.len()
            )));
        }
        let head = Detect::new(
            self.kind,
            self.nc,
            anchors,
            &layer.channels,
            layer.strides.clone(),
            &layer.ctx,
        )?;
        let flat: Vec<Vec<f64>> = anchors
            .iter()
            .map(|l| l.iter().flat_map(|(w, h)| [*w, *h]).collect())
            .collect();
        Ok(Built::Head {
            head: Head::Anchors(head),
            args: format!("[{}, {flat:?}, {:?}]", self.nc, layer.channels),
        })
    }
}
