//! A seeded variable store: candle's `VarMap` draws random initial values from an
//! unseeded generator, so training runs could not be repeated. `SeededVarMap` keeps the
//! same `VarMap` (names, saving, optimizer access) and draws each variable's initial
//! values from a ChaCha stream keyed by the seed and the variable's name. A variable's
//! start therefore does not depend on which others exist: two models that differ only in
//! their activations (FReLU adds a conv per layer) start from the same conv weights.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

#[derive(Clone)]
pub struct SeededVarMap {
    vars: VarMap,
    seed: u64,
    /// Values held by every variable created so far (shared by clones).
    values: Arc<AtomicUsize>,
}

/// The most values a model may hold: 25 times the largest YOLO (yolov7-e6e, 150M), and
/// 4 GB in float32. A config mistake (`width_multiple: 1000`, a huge `nc`) becomes an
/// error here instead of an allocation that aborts the process.
pub const MAX_VALUES: usize = 1_000_000_000;

impl std::fmt::Debug for SeededVarMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SeededVarMap({} variables)", self.vars.all_vars().len())
    }
}

impl SeededVarMap {
    pub fn new(seed: u64) -> Self {
        SeededVarMap {
            vars: VarMap::new(),
            seed,
            values: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The seed every initial value is drawn from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The underlying map: every variable created so far, by name.
    pub fn var_map(&self) -> &VarMap {
        &self.vars
    }

    /// A builder whose variables are created here (f32 on the CPU unless told otherwise).
    pub fn builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    /// The stream for one name: the same on every run with this seed.
    pub fn rng_for(&self, name: &str) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed ^ stable_hash(name))
    }

    fn sample(&self, init: Init, shape: &Shape, name: &str) -> Result<Vec<f64>> {
        let n = shape.elem_count();
        let mut rng = self.rng_for(name);
        let draw_uniform = |rng: &mut ChaCha8Rng, lo: f64, up: f64| -> Result<Vec<f64>> {
            let dist = Uniform::new(lo, up)
                .map_err(|e| candle_core::Error::Msg(format!("uniform init [{lo}, {up}): {e}")))?;
            Ok((0..n).map(|_| dist.sample(rng)).collect())
        };
        let draw_normal = |rng: &mut ChaCha8Rng, mean: f64, std: f64| -> Result<Vec<f64>> {
            let dist = Normal::new(mean, std).map_err(|e| {
                candle_core::Error::Msg(format!("normal init ({mean}, {std}): {e}"))
            })?;
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
}

impl SimpleBackend for SeededVarMap {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let mut data = self
            .vars
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("variable store: lock poisoned".into()))?;
        if let Some(var) = data.get(name) {
            let t = var.as_tensor();
            if t.shape() != &shape {
                candle_core::bail!(
                    "variable `{name}`: shape {:?} requested, {:?} stored",
                    shape,
                    t.shape()
                );
            }
            return Ok(t.clone());
        }
        let count = shape
            .dims()
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .and_then(|n| n.checked_add(self.values.load(Ordering::Relaxed)))
            .filter(|&total| total <= MAX_VALUES);
        let Some(total) = count else {
            candle_core::bail!(
                "`{name}` of shape {:?} would take the model past {MAX_VALUES} values; check width_multiple, depth_multiple, the channel arguments and nc",
                shape.dims()
            );
        };
        self.values.store(total, Ordering::Relaxed);
        let values = self.sample(init, &shape, name)?;
        let tensor = Tensor::from_vec(values, shape, dev)?.to_dtype(dtype)?;
        let var = Var::from_tensor(&tensor)?;
        let t = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        let data = self
            .vars
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("variable store: lock poisoned".into()))?;
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

/// FNV-1a: a name's hash that, unlike std's `DefaultHasher`, is promised not to change
/// between Rust releases, so seeded runs stay repeatable.
pub fn stable_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
