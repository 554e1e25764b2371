//! ModelEMA (ultralytics): an exponential moving average of every floating-point entry
//! of the state_dict (parameters and BatchNorm buffers alike), with the decay ramp
//! d = decay · (1 − exp(−updates / tau)), updated after every optimiser step.

use std::collections::{HashMap, HashSet};

use candle_core::{Result, Tensor};
use candle_nn::VarMap;

#[derive(Debug)]
pub struct ModelEma {
    /// The averaged state_dict, by name.
    pub tensors: HashMap<String, Tensor>,
    pub updates: u64,
    pub decay: f64,
    pub tau: f64,
    /// Parameters that never change (`--freeze`), left out of the average.
    pub frozen: HashSet<String>,
}

impl ModelEma {
    pub fn new(vars: &VarMap, updates: u64) -> Result<ModelEma> {
        let data = vars
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("variable store lock poisoned".into()))?;
        let tensors = data
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_tensor().detach().copy()?)))
            .collect::<Result<_>>()?;
        Ok(ModelEma {
            tensors,
            updates,
            decay: 0.9999,
            tau: 2000.0,
            frozen: HashSet::new(),
        })
    }

    /// The decay of the next update.
    pub fn current_decay(&self) -> f64 {
        self.decay * (1.0 - (-(self.updates as f64) / self.tau).exp())
    }

    pub fn update(&mut self, vars: &VarMap) -> Result<()> {
        self.updates += 1;
        let d = self.current_decay();
        let data = vars
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("variable store lock poisoned".into()))?;
        for (name, ema) in self.tensors.iter_mut() {
            if self.frozen.contains(name) {
                continue;
            }
            if let Some(var) = data.get(name) {
                *ema = ((&*ema * d)? + (var.as_tensor().detach() * (1.0 - d))?)?;
            }
        }
        Ok(())
    }
}
