//! A seeded variable store: candle's `VarMap` draws random initial values from an
//! unseeded generator, so training runs could not be repeated. `SeededVarMap` keeps the
//! same `VarMap` (names, saving, optimizer access) and draws every initial value from
//! one ChaCha stream, in the order the model asks for its variables.

use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

#[derive(Clone)]
pub struct SeededVarMap {
    vars: VarMap,
    rng: Arc<Mutex<ChaCha8Rng>>,
}

impl std::fmt::Debug for SeededVarMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeededVarMap({} variables)", self.vars.all_vars().len())
    }
}

impl SeededVarMap {
    pub fn new(seed: u64) -> Self {
        SeededVarMap {
            vars: VarMap::new(),
            rng: Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))),
        }
    }

    /// The underlying map: every variable created so far, by name.
    pub fn var_map(&self) -> &VarMap {
        &self.vars
    }

    /// A builder whose variables are created here (f32 on the CPU unless told otherwise).
    pub fn builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    fn sample(&self, init: Init, shape: &Shape) -> Result<Vec<f64>> {
        let n = shape.elem_count();
        let mut rng = self
            .rng
            .lock()
            .map_err(|_| candle_core::Error::Msg("variable store: rng lock poisoned".into()))?;
        let draw_uniform = |rng: &mut ChaCha8Rng, lo: f64, up: f64| -> Result<Vec<f64>> {
            let dist = Uniform::new(lo, up).map_err(|e| candle_core::Error::Msg(format!("uniform init [{lo}, {up}): {e}")))?;
            Ok((0..n).map(|_| dist.sample(rng)).collect())
        };
        let draw_normal = |rng: &mut ChaCha8Rng, mean: f64, std: f64| -> Result<Vec<f64>> {
            let dist = Normal::new(mean, std).map_err(|e| candle_core::Error::Msg(format!("normal init ({mean}, {std}): {e}")))?;
            Ok((0..n).map(|_| dist.sample(rng)).collect())
        };
        match init {
            Init::Const(v) => Ok(vec![v; n]),
            Init::Uniform { lo, up } => draw_uniform(&mut rng, lo, up),
            Init::Randn { mean, stdev } => draw_normal(&mut rng, mean, stdev),
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                // The same bounds as candle's `Init::var`.
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    candle_nn::init::NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        draw_uniform(&mut rng, -bound, bound)
                    }
                    candle_nn::init::NormalOrUniform::Normal => draw_normal(&mut rng, 0.0, std),
                }
            }
        }
    }

    /// A fresh random stream derived from this store's, for a module that needs its own
    /// (RReLU noise), so that drawing from it never shifts later initial values.
    pub fn fork_rng(&self) -> Result<ChaCha8Rng> {
        let mut rng = self
            .rng
            .lock()
            .map_err(|_| candle_core::Error::Msg("variable store: rng lock poisoned".into()))?;
        Ok(ChaCha8Rng::seed_from_u64(rng.random()))
    }
}

impl SimpleBackend for SeededVarMap {
    fn get(&self, shape: Shape, name: &str, init: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        let mut data = self.vars.data().lock().map_err(|_| candle_core::Error::Msg("variable store: lock poisoned".into()))?;
        if let Some(var) = data.get(name) {
            let t = var.as_tensor();
            if t.shape() != &shape {
                candle_core::bail!("variable `{name}`: shape {:?} requested, {:?} stored", shape, t.shape());
            }
            return Ok(t.clone());
        }
        let values = self.sample(init, &shape)?;
        let tensor = Tensor::from_vec(values, shape, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&tensor)?;
        let t = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        let data = self.vars.data().lock().map_err(|_| candle_core::Error::Msg("variable store: lock poisoned".into()))?;
        match data.get(name) {
            Some(var) => Ok(var.as_tensor().clone()),
            None => candle_core::bail!("variable `{name}` does not exist"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars
            .data()
            .lock()
            .map(|d| d.contains_key(name))
            .unwrap_or(false)
    }
}
