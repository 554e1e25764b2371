//! The model summary `actyolo info` prints: ultralytics' layer table and totals.

use serde::Serialize;

use super::build::{LayerSummary, Model};

#[derive(Debug, Clone, Serialize)]
pub struct ModelSummary {
    pub config: String,
    /// The activation most Convs run: the override, else the one most rows name (yolov7-tiny's
    /// nn.LeakyReLU(0.1)), else the YAML's, else SiLU.
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
            activation: most_common_activation(model),
            layers: model.summary.clone(),
            parameters: model.num_params(),
            gflops: model.gflops(imgsz),
            imgsz,
        }
    }

    /// The table as ultralytics prints it, then the totals.
    pub fn render(&self) -> String {
        let mut out = format!(
            "activation: {}\n{:>3}{:>18}{:>3}{:>10}  {:<40}{:<30}\n",
            self.activation, "", "from", "n", "params", "module", "arguments"
        );
        for l in &self.layers {
            out += &format!(
                "{:>3}{:>18}{:>3}{:>10}  {:<40}{:<30}\n",
                l.index, l.from, l.n, l.params, l.module, l.arguments
            );
        }
        out += &format!(
            "{} summary: {} layers, {} parameters, {:.1} GFLOPs at {}x{}\n",
            self.config,
            self.layers.len(),
            self.parameters,
            self.gflops,
            self.imgsz,
            self.imgsz
        );
        out
    }
}

/// The activation the most Convs (and RepConvs) run; the model's default on a tie with it.
fn most_common_activation(model: &Model) -> String {
    let default = model.default_activation().to_string();
    let mut counts: Vec<(String, usize)> = vec![(default, 0)];
    for act in model
        .layers
        .iter()
        .flat_map(|l| &l.blocks)
        .flat_map(|b| b.activations())
        .chain(model.head.activations())
    {
        let spec = act.spec().to_string();
        match counts.iter_mut().find(|(s, _)| *s == spec) {
            Some((_, n)) => *n += 1,
            None => counts.push((spec, 1)),
        }
    }
    // max_by_key keeps the last maximum; reversed, the first (the default) wins ties.
    counts
        .into_iter()
        .rev()
        .max_by_key(|(_, n)| *n)
        .map(|(s, _)| s)
        .unwrap_or_default()
}
