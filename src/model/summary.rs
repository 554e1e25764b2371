//! The model summary `actyolo info` prints: ultralytics' layer table and totals.

use serde::Serialize;

use super::build::{LayerSummary, Model};

#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub config: String,
    /// The activation most Convs run (the override, the YAML's, or SiLU).
    pub activation: String,
    pub layers: Vec<LayerSummary>,
    pub parameters: usize,
    pub gflops: f64,
    pub imgsz: usize,
}

impl ModelSummary {
    pub fn of(model: &Model, imgsz: usize) -> ModelSummary {
        ModelSummary {
            config: model.config.source.clone(),
            activation: model.default_activation().to_string(),
            layers: model.summary.clone(),
            parameters: model.num_params(),
            gflops: model.gflops(imgsz),
            imgsz,
        }
    }

    /// The table as ultralytics prints it, then the totals.
    pub fn render(&self) -> String {
        let mut out = format!("activation: {}\n{:>3}{:>18}{:>3}{:>10}  {:<40}{:<30}\n", self.activation, "", "from", "n", "params", "module", "arguments");
        for l in &self.layers {
            out += &format!("{:>3}{:>18}{:>3}{:>10}  {:<40}{:<30}\n", l.index, l.from, l.n, l.params, l.module, l.arguments);
        }
        out += &format!(
            "{} summary: {} layers, {} parameters, {:.1} GFLOPs at {}x{}\n",
            self.config, self.layers.len(), self.parameters, self.gflops, self.imgsz, self.imgsz
        );
        out
    }
}
