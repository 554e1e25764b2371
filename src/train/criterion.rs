//! The loss a model trains with, chosen by its head: YOLOv5's (and yolov7's) for
//! anchor-based heads, ultralytics 8's for the anchor-free one. Both give three logged
//! parts, named as each family's results.csv names them.

use candle_core::Tensor;

use super::loss::{LossError, YoloLoss};
use super::loss_v8::V8Loss;

#[derive(Debug, Clone)]
pub enum Criterion {
    Anchors(YoloLoss),
    AnchorFree(V8Loss),
}

impl Criterion {
    /// The total to backpropagate (the parts' sum times the batch size) and the parts.
    pub fn compute(
        &self,
        preds: &[Tensor],
        targets: &Tensor,
    ) -> Result<(Tensor, [f32; 3]), LossError> {
        match self {
            Criterion::Anchors(loss) => loss.compute(preds, targets),
            Criterion::AnchorFree(loss) => loss.compute(preds, targets),
        }
    }

    /// The parts' names, in order.
    pub fn part_names(&self) -> [&'static str; 3] {
        match self {
            Criterion::Anchors(_) => ["box_loss", "obj_loss", "cls_loss"],
            Criterion::AnchorFree(_) => ["box_loss", "cls_loss", "dfl_loss"],
        }
    }
}

impl crate::eval::val::ValLoss for Criterion {
    fn parts(
        &self,
        raw: &[Tensor],
        targets: &Tensor,
    ) -> Result<[f32; 3], Box<dyn std::error::Error + Send + Sync>> {
        Ok(self.compute(raw, targets)?.1)
    }
}
