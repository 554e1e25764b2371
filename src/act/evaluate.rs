//! Evaluating an activation at given points: y and dy/dx, as `acts eval` and the plots show.

use candle_core::{DType, Device, Result, Tensor, Var};
use serde::Serialize;

use super::{ActSpec, Activation};
use crate::ops::vars::SeededVarMap;

/// x, y and the gradient of sum(y) with respect to x.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub spec: String,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    pub dydx: Vec<f64>,
}

/// Evaluates `spec` in eval mode at `xs`, in f32 as models run. The points form one
/// 1×N×1×1 tensor, so channel-wise activations treat them as one channel vector, and
/// learnable ones use their initial parameters (seed 0).
pub fn evaluate(spec: &ActSpec, xs: &[f64]) -> Result<Evaluation> {
    let device = Device::Cpu;
    let n = xs.len();
    if n == 0 {
        candle_core::bail!("no points to evaluate");
    }
    let store = SeededVarMap::new(0);
    let act = Activation::new(
        spec,
        n,
        store.builder(DType::F32, &device),
        store.rng_for("act"),
    )?;
    let x = Var::from_tensor(
        &Tensor::from_vec(xs.to_vec(), (1, n, 1, 1), &device)?.to_dtype(DType::F32)?,
    )?;
    let y = act.forward(x.as_tensor(), false)?;
    let grads = y.sum_all()?.backward()?;
    let dydx = match grads.get(x.as_tensor()) {
        Some(g) => g.clone(),
        None => x.zeros_like()?,
    };
    let to_vec = |t: &Tensor| t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>();
    Ok(Evaluation {
        spec: spec.to_string(),
        x: to_vec(x.as_tensor())?,
        y: to_vec(&y)?,
        dydx: to_vec(&dydx)?,
    })
}

impl Evaluation {
    /// Columns x, y, dy/dx; when the output is shorter than the input (GLU), y gets its own rows.
    pub fn render_table(&self) -> String {
        let mut out = format!("{}\n", self.spec);
        if self.y.len() == self.x.len() {
            out += &format!("{:>14} {:>14} {:>14}\n", "x", "y", "dy/dx");
            for ((x, y), d) in self.x.iter().zip(&self.y).zip(&self.dydx) {
                out += &format!("{x:>14.6} {y:>14.6} {d:>14.6}\n");
            }
        } else {
            out += &format!("{:>14} {:>14}\n", "x", "dy/dx");
            for (x, d) in self.x.iter().zip(&self.dydx) {
                out += &format!("{x:>14.6} {d:>14.6}\n");
            }
            out += &format!(
                "y ({} values): {}\n",
                self.y.len(),
                self.y
                    .iter()
                    .map(|v| format!("{v:.6}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        out
    }
}
