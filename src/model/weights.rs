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

/// A state_dict with what is known of the model it belongs to.
pub struct Weights {
    pub tensors: HashMap<String, Tensor>,
    /// The model YAML, when the file carries one.
    pub yaml: Option<serde_yaml::Value>,
    pub names: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error(transparent)]
    Pt(#[from] PtError),
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
}

fn file_error(path: &Path, message: impl Into<String>) -> WeightsError {
    WeightsError::File {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Reads `.pt`/`.pth` (YOLOv5 and yolov7 checkpoints) or `.safetensors`.
pub fn read_weights(path: &Path) -> Result<Weights, WeightsError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("pt" | "pth") => {
            let ckpt = read_pt(path)?;
            Ok(Weights { tensors: ckpt.tensors, yaml: Some(ckpt.yaml).filter(|y| !y.is_null()), names: ckpt.names })
        }
        Some("safetensors") => read_safetensors(path),
        _ => Err(file_error(path, "unsupported weights format: expected .pt (ultralytics train.py checkpoint) or .safetensors")),
    }
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
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| file_error(path, e.to_string()))?;
    Ok(Weights {
        tensors,
        yaml,
        names,
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
/// atomically (write, then rename), so an interrupted save never leaves a truncated file.
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
    let partial = path.with_extension("safetensors.partial");
    safetensors::serialize_to_file(
        sorted.into_iter().map(|(k, t)| (k.as_str(), t)),
        Some(metadata),
        &partial,
    )
    .map_err(|e| file_error(&partial, e.to_string()))?;
    std::fs::rename(&partial, path)
        .map_err(|e| file_error(path, format!("cannot move the new file into place: {e}")))
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
/// safetensors file exported from PyTorch needs), then loads the weights strictly.
pub fn load_model(
    path: &Path,
    cfg: Option<&ModelConfig>,
    act: Option<&ActSpec>,
) -> Result<Model, WeightsError> {
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
    let mut model = Model::new(&config, act, 0).map_err(|e| file_error(path, e.to_string()))?;
    model
        .load_state_dict(&weights.tensors, true)
        .map_err(|e| file_error(path, e))?;
    if weights.names.len() == model.detect.nc {
        model.names = weights.names;
    }
    Ok(model)
}
