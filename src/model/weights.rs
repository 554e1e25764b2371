//! Weights in and out: safetensors with ultralytics state_dict names (plus the model YAML
//! and class names in the header's metadata), and ultralytics (YOLOv5) and yolov7 `.pt`
//! checkpoints.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::build::{BuildError, LoadError, Model};
use super::config::{ConfigError, ModelConfig};
use super::pt::{read_pt, PtError};
use crate::act::{ActSpec, SpecError};
use crate::util::fs::{write_atomic, FileError};

/// A state_dict with what is known of the model it belongs to.
pub struct Weights {
    pub tensors: HashMap<String, Tensor>,
    /// The model YAML, when the file carries one.
    pub yaml: Option<serde_yaml::Value>,
    pub names: Vec<String>,
    /// The activation the model was built with over its YAML's (`--act`), when it was.
    pub act: Option<ActSpec>,
    /// What the reader noticed about the file that the user should know.
    pub notes: Vec<String>,
}

/// The metadata key of the activation that overrides the YAML's (`train --act`).
pub const ACT_KEY: &str = "act";

/// The metadata key of a training run's counters, in its resume state
/// (`last.state.safetensors`, whose tensors are the raw weights under `raw/`, the EMA under
/// `ema/` and the optimiser's) and in `last.safetensors`.
pub const STATE_KEY: &str = "state";

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error(transparent)]
    Pt(#[from] PtError),
    #[error("{}: unsupported weights format: expected .pt (ultralytics train.py checkpoint) or .safetensors (val and detect also run .onnx exports)", .0.display())]
    Format(PathBuf),
    #[error("{}: an ONNX export runs in val and detect only; give the .pt or .safetensors it was exported from", .0.display())]
    Onnx(PathBuf),
    #[error("{}: cannot read", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a safetensors file", path.display())]
    NotSafetensors {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
    #[error("{}: metadata `yaml` is not valid YAML", path.display())]
    MetadataYaml {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{}: metadata `names` is not a JSON list", path.display())]
    MetadataNames {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}", path.display())]
    Tensor {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },
    #[error("{}: tensor `{tensor}` holds {value}: the weights are broken (a diverged run?); use an earlier checkpoint", path.display())]
    NonFinite {
        path: PathBuf,
        tensor: String,
        value: f32,
    },
    #[error("{}: the file carries no model YAML: pass the config it was trained with (--cfg)", .0.display())]
    NoYaml(PathBuf),
    #[error("{}: its model YAML", path.display())]
    Config {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
    #[error("{}", path.display())]
    Build {
        path: PathBuf,
        #[source]
        source: BuildError,
    },
    #[error("{}", path.display())]
    Load {
        path: PathBuf,
        #[source]
        source: LoadError,
    },
    #[error("{}: cannot write the class names", path.display())]
    Metadata {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: cannot write the model YAML", path.display())]
    Yaml {
        path: PathBuf,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{}: cannot serialise the tensors", path.display())]
    Serialize {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
    #[error(transparent)]
    Write(#[from] FileError),
    #[error("{} has {nc} classes but {names} class names were given", path.display())]
    Classes {
        path: PathBuf,
        nc: usize,
        names: usize,
    },
    #[error("{}: metadata `act`", path.display())]
    MetadataAct {
        path: PathBuf,
        #[source]
        source: SpecError,
    },
    #[error("the variable store's lock is poisoned (a thread panicked while holding it)")]
    Poisoned,
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
                act: None,
                notes: Vec::new(),
            })
        }
        Some("safetensors") => read_safetensors(path),
        Some("onnx") => Err(WeightsError::Onnx(path.to_path_buf())),
        _ => Err(WeightsError::Format(path.to_path_buf())),
    }?;
    check_finite(path, &weights.tensors)?;
    Ok(weights)
}

/// Every value of every tensor is finite; else the first tensor that is not, by name.
fn check_finite(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<(), WeightsError> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        let values = tensors[name]
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(tensor_error(path))?;
        if let Some(&value) = values.iter().find(|v| !v.is_finite()) {
            return Err(WeightsError::NonFinite {
                path: path.to_path_buf(),
                tensor: name.clone(),
                value,
            });
        }
    }
    Ok(())
}

fn tensor_error(path: &Path) -> impl Fn(candle_core::Error) -> WeightsError + '_ {
    move |source| WeightsError::Tensor {
        path: path.to_path_buf(),
        source,
    }
}

/// Tensors by name.
type TensorMap = HashMap<String, Tensor>;
/// A safetensors header's `__metadata__`.
type HeaderMetadata = HashMap<String, String>;

/// A safetensors file's tensors and header metadata.
fn read_safetensors_file(path: &Path) -> Result<(TensorMap, HeaderMetadata), WeightsError> {
    let bytes = std::fs::read(path).map_err(|source| WeightsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|source| {
        WeightsError::NotSafetensors {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let meta = header.metadata().clone().unwrap_or_default();
    let tensors =
        candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(tensor_error(path))?;
    Ok((tensors, meta))
}

fn read_safetensors(path: &Path) -> Result<Weights, WeightsError> {
    let (mut tensors, meta) = read_safetensors_file(path)?;
    let yaml = match meta.get("yaml") {
        Some(text) => {
            Some(
                serde_yaml::from_str(text).map_err(|source| WeightsError::MetadataYaml {
                    path: path.to_path_buf(),
                    source,
                })?,
            )
        }
        None => None,
    };
    let names = match meta.get("names") {
        Some(text) => serde_json::from_str(text).map_err(|source| WeightsError::MetadataNames {
            path: path.to_path_buf(),
            source,
        })?,
        None => vec![],
    };
    let act = match meta.get(ACT_KEY) {
        Some(text) => Some(
            ActSpec::parse(text).map_err(|source| WeightsError::MetadataAct {
                path: path.to_path_buf(),
                source,
            })?,
        ),
        None => None,
    };
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
        act,
        notes,
    })
}

/// Writes the model's state_dict, YAML and class names (see [`save_tensors`]).
pub fn save_safetensors(model: &Model, path: &Path) -> Result<(), WeightsError> {
    let tensors = model.state_dict().map_err(|_| WeightsError::Poisoned)?;
    save_tensors(
        &tensors,
        &model.config.yaml,
        model.override_act(),
        &model.names,
        HashMap::new(),
        path,
    )
}

/// Writes named tensors with the model YAML, the activation that overrides it (`--act`),
/// class names and any `extra` metadata; atomically, so an interrupted save never leaves a
/// truncated file.
pub fn save_tensors(
    tensors: &HashMap<String, Tensor>,
    yaml: &serde_yaml::Value,
    act: Option<&ActSpec>,
    names: &[String],
    extra: HashMap<String, String>,
    path: &Path,
) -> Result<(), WeightsError> {
    let mut sorted: Vec<(&String, &Tensor)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let yaml = serde_yaml::to_string(yaml).map_err(|source| WeightsError::Yaml {
        path: path.to_path_buf(),
        source,
    })?;
    let names = serde_json::to_string(names).map_err(|source| WeightsError::Metadata {
        path: path.to_path_buf(),
        source,
    })?;
    let mut metadata = HashMap::from([
        ("yaml".to_string(), yaml),
        ("names".to_string(), names),
        ("format".to_string(), "actyolo".to_string()),
    ]);
    if let Some(act) = act {
        metadata.insert(ACT_KEY.to_string(), act.to_string());
    }
    metadata.extend(extra);
    let bytes = safetensors::serialize(
        sorted.into_iter().map(|(k, t)| (k.as_str(), t)),
        Some(metadata),
    )
    .map_err(|source| WeightsError::Serialize {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(write_atomic(path, &bytes)?)
}

/// A safetensors file's tensors and its metadata entry `key`, if any.
pub fn read_tensors_with(
    path: &Path,
    key: &str,
) -> Result<(HashMap<String, Tensor>, Option<String>), WeightsError> {
    let (tensors, meta) = read_safetensors_file(path)?;
    Ok((tensors, meta.get(key).cloned()))
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
            .map_err(|source| WeightsError::Config {
                path: path.to_path_buf(),
                source,
            })?,
        (None, None) => return Err(WeightsError::NoYaml(path.to_path_buf())),
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
    // A file trained with --act says so; the YAML alone would build another model.
    let act = act.or(weights.act.as_ref());
    let model = Model::new(&config, act, 0, names).map_err(|source| WeightsError::Build {
        path: path.to_path_buf(),
        source,
    })?;
    model
        .load_state_dict(&weights.tensors, true)
        .map_err(|source| WeightsError::Load {
            path: path.to_path_buf(),
            source,
        })?;
    Ok((model, notes))
}
