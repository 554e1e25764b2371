//! Weights in and out: safetensors with ultralytics state_dict names (plus the model YAML
//! and class names in the header's metadata), and ultralytics (YOLOv5) and yolov7 `.pt`
//! checkpoints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::build::Model;
use super::config::ModelConfig;
use super::pt::{read_pt, PtError};
use crate::act::ActSpec;
use crate::util::fs::{write_atomic, FileError};

/// A state_dict with what is known of the model it belongs to.
pub struct Weights {
    pub tensors: HashMap<String, Tensor>,
    /// The model YAML, when the file carries one.
    pub yaml: Option<serde_yaml::Value>,
    pub names: Vec<String>,
    /// What the reader noticed about the file that the user should know.
    pub notes: Vec<String>,
}

/// The metadata key of a training run's counters, in its resume state
/// (`last.state.safetensors`, whose tensors are the raw weights under `raw/`, the EMA under
/// `ema/` and the optimiser's) and in `last.safetensors`.
pub const STATE_KEY: &str = "state";

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error(transparent)]
    Pt(#[from] PtError),
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error(transparent)]
    Write(#[from] FileError),
    #[error("{} has {nc} classes but {names} class names were given", path.display())]
    Classes {
        path: PathBuf,
        nc: usize,
        names: usize,
    },
}

fn file_error(path: &Path, message: impl Into<String>) -> WeightsError {
    WeightsError::File {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Reads `.pt`/`.pth` (YOLOv5 and yolov7 checkpoints) or `.safetensors`.
pub fn read_weights(path: &Path) -> Result<Weights, WeightsError> {
    let weights = match path.extension().and_then(|e| e.to_str()) {
        Some("pt" | "pth") => {
            let ckpt = read_pt(path)?;
            Ok(Weights {
                tensors: ckpt.tensors,
                yaml: Some(ckpt.yaml).filter(|y| !y.is_null()),
                names: ckpt.names,
                notes: Vec::new(),
            })
        }
        Some("safetensors") => read_safetensors(path),
        _ => Err(file_error(path, "unsupported weights format: expected .pt (ultralytics train.py checkpoint) or .safetensors")),
    }?;
    check_finite(&weights.tensors).map_err(|message| file_error(path, message))?;
    Ok(weights)
}

/// Every value of every tensor is finite; else the first tensor that is not, by name.
fn check_finite(tensors: &HashMap<String, Tensor>) -> Result<(), String> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        let values = tensors[name]
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| format!("{name}: {e}"))?;
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(format!(
                "tensor `{name}` holds {bad}: the weights are broken (a diverged run?); use an earlier checkpoint"
            ));
        }
    }
    Ok(())
}

fn read_safetensors(path: &Path) -> Result<Weights, WeightsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| file_error(path, format!("not a safetensors file: {e}")))?;
    let meta = header.metadata().clone().unwrap_or_default();
    let yaml = match meta.get("yaml") {
        Some(text) => Some(
            serde_yaml::from_str(text)
                .map_err(|e| file_error(path, format!("metadata `yaml` is not valid YAML: {e}")))?,
        ),
        None => None,
    };
    let names = match meta.get("names") {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| file_error(path, format!("metadata `names` is not a JSON list: {e}")))?,
        None => vec![],
    };
    let mut tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| file_error(path, e.to_string()))?;
    let mut notes = Vec::new();
    let is_resume_state = tensors.keys().any(|k| k.starts_with("raw/"))
        && tensors.keys().any(|k| k.starts_with("ema/"));
    if is_resume_state {
        // A resume state: what val and detect want from it is the EMA, as in last.safetensors.
        tensors = tensors
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix("ema/").map(|name| (name.to_string(), v)))
            .collect();
        notes.push(format!(
            "{} is a training run's resume state; using its EMA weights (the same as last.safetensors beside it)",
            path.display()
        ));
    }
    Ok(Weights {
        tensors,
        yaml,
        names,
        notes,
    })
}

/// Writes the model's state_dict, YAML and class names (see [`save_tensors`]).
pub fn save_safetensors(model: &Model, path: &Path) -> Result<(), WeightsError> {
    let data = model
        .vars()
        .var_map()
        .data()
        .lock()
        .map_err(|_| file_error(path, "variable store lock poisoned"))?;
    let tensors: HashMap<String, Tensor> = data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    drop(data);
    save_tensors(
        &tensors,
        &model.config.yaml,
        &model.names,
        HashMap::new(),
        path,
    )
}

/// Writes named tensors with the model YAML, class names and any `extra` metadata;
/// atomically, so an interrupted save never leaves a truncated file.
pub fn save_tensors(
    tensors: &HashMap<String, Tensor>,
    yaml: &serde_yaml::Value,
    names: &[String],
    extra: HashMap<String, String>,
    path: &Path,
) -> Result<(), WeightsError> {
    let mut sorted: Vec<(&String, &Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let yaml = serde_yaml::to_string(yaml).map_err(|e| file_error(path, e.to_string()))?;
    let names = serde_json::to_string(names).map_err(|e| file_error(path, e.to_string()))?;
    let mut metadata = HashMap::from([
        ("yaml".to_string(), yaml),
        ("names".to_string(), names),
        ("format".to_string(), "actyolo".to_string()),
    ]);
    metadata.extend(extra);
    let bytes = safetensors::serialize(
        sorted.into_iter().map(|(k, t)| (k.as_str(), t)),
        Some(metadata),
    )
    .map_err(|e| file_error(path, e.to_string()))?;
    Ok(write_atomic(path, &bytes)?)
}

/// A safetensors file's tensors and its metadata entry `key`, if any.
pub fn read_tensors_with(
    path: &Path,
    key: &str,
) -> Result<(HashMap<String, Tensor>, Option<String>), WeightsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, format!("cannot read: {e}")))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| file_error(path, format!("not a safetensors file: {e}")))?;
    let value = header.metadata().as_ref().and_then(|m| m.get(key).cloned());
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| file_error(path, e.to_string()))?;
    Ok((tensors, value))
}

/// Builds a model from a weights file: its own YAML (or `cfg` when given, which a
/// safetensors file exported from PyTorch needs), then loads the weights strictly. The
/// class names are `names` when given (a dataset's), else the file's. Returns the model and
/// what the user should be told (a resume state used for its EMA, class names in the file
/// that do not fit the model).
pub fn load_model(
    path: &Path,
    cfg: Option<&ModelConfig>,
    act: Option<&ActSpec>,
    names: Option<&[String]>,
) -> Result<(Model, Vec<String>), WeightsError> {
    let weights = read_weights(path)?;
    let config = match (cfg, &weights.yaml) {
        (Some(cfg), _) => cfg.clone(),
        (None, Some(yaml)) => ModelConfig::from_yaml(yaml.clone(), &path.display().to_string())
            .map_err(|e| file_error(path, format!("its model YAML: {e}")))?,
        (None, None) => {
            return Err(file_error(
                path,
                "the file carries no model YAML: pass the config it was trained with (--cfg)",
            ))
        }
    };
    let mut notes = weights.notes;
    let names = match names {
        Some(given) if given.len() != config.nc => {
            return Err(WeightsError::Classes {
                path: path.to_owned(),
                nc: config.nc,
                names: given.len(),
            })
        }
        Some(given) => Some(given.to_vec()),
        None if weights.names.len() == config.nc => Some(weights.names),
        None => {
            if !weights.names.is_empty() {
                notes.push(format!(
                    "WARNING ⚠️ {}: {} class names for a model of {} classes; using the class numbers as names",
                    path.display(),
                    weights.names.len(),
                    config.nc
                ));
            }
            None
        }
    };
    let model = Model::new(&config, act, 0, names).map_err(|e| file_error(path, e.to_string()))?;
    model
        .load_state_dict(&weights.tensors, true)
        .map_err(|e| file_error(path, e))?;
    Ok((model, notes))
}
