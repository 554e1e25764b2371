//! The model YAML, exactly as YOLOv5 v7.0's and yolov7's `parse_model` read it, parsed into
//! typed rows. Nothing is evaluated: the few names they `eval` (`nc`, `anchors`, `None`,
//! activation specs) are resolved here by name.

use std::path::{Path, PathBuf};

use std::sync::Arc;

use serde_yaml::Value;

use super::blocks::{self, BLOCKS};
use super::layer::{BlockDef, LayerSpec};
use super::yaml_args::{parse_anchors, show, AnchorError, RowContext, RowError, MAX_NC};
use crate::act::{ActSpec, SpecError};

/// A parsed model configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Where it came from, for messages: a shipped name or a path.
    pub source: String,
    pub nc: usize,
    pub depth_multiple: f64,
    pub width_multiple: f64,
    /// Anchors per detection level, as (w, h) pairs in pixels.
    pub anchors: Vec<Vec<(f64, f64)>>,
    /// The YAML's global `activation:`, if any.
    pub activation: Option<ActSpec>,
    /// Input channels (`ch`, default 3).
    pub ch: usize,
    /// Backbone rows, then head rows.
    pub layers: Vec<LayerRow>,
    /// The YAML as read, kept for checkpoints.
    pub yaml: Value,
}

/// One `[from, number, module, args]` row.
#[derive(Debug, Clone)]
pub struct LayerRow {
    pub from: Vec<i64>,
    /// Whether `from` was written as a list (Concat, Detect take several inputs).
    pub from_list: bool,
    pub number: usize,
    /// The module as registered, and its arguments as written.
    pub def: &'static BlockDef,
    pub args: Vec<Value>,
    /// The arguments parsed (widths before scaling).
    pub spec: Arc<dyn LayerSpec>,
}

impl PartialEq for LayerRow {
    fn eq(&self, other: &LayerRow) -> bool {
        (
            &self.from,
            self.from_list,
            self.number,
            self.def.name,
            &self.args,
        ) == (
            &other.from,
            other.from_list,
            other.number,
            other.def.name,
            &other.args,
        )
    }
}

/// The largest width and depth multiples (YOLOv5x uses 1.25 and 1.33).
const MAX_MULTIPLE: f64 = 64.0;

const KEYS: &[&str] = &[
    "nc",
    "depth_multiple",
    "width_multiple",
    "anchors",
    "backbone",
    "head",
    "activation",
    "ch",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: not valid YAML")]
    Yaml {
        file: String,
        #[source]
        source: serde_yaml::Error,
    },
    /// A key of the file is missing or out of range (the message says which and why).
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("{file}: activation")]
    Activation {
        file: String,
        #[source]
        source: SpecError,
    },
    #[error("{file}: anchors")]
    Anchors {
        file: String,
        #[source]
        source: AnchorError,
    },
    #[error("{file}: layer {row} {module}")]
    Row {
        file: String,
        row: usize,
        module: String,
        #[source]
        source: RowError,
    },
    #[error("model config `{name}` not found: it is neither a file nor a shipped config ({})", SHIPPED.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))]
    NotFound { name: String },
}

/// The configs that ship inside the binary, by file name.
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "yolov5n.yaml",
        include_str!("../../configs/models/yolov5n.yaml"),
    ),
    (
        "yolov5s.yaml",
        include_str!("../../configs/models/yolov5s.yaml"),
    ),
    (
        "yolov5m.yaml",
        include_str!("../../configs/models/yolov5m.yaml"),
    ),
    (
        "yolov5l.yaml",
        include_str!("../../configs/models/yolov5l.yaml"),
    ),
    (
        "yolov5x.yaml",
        include_str!("../../configs/models/yolov5x.yaml"),
    ),
    (
        "yolov5n6.yaml",
        include_str!("../../configs/models/yolov5n6.yaml"),
    ),
    (
        "yolov5s6.yaml",
        include_str!("../../configs/models/yolov5s6.yaml"),
    ),
    (
        "yolov5m6.yaml",
        include_str!("../../configs/models/yolov5m6.yaml"),
    ),
    (
        "yolov5l6.yaml",
        include_str!("../../configs/models/yolov5l6.yaml"),
    ),
    (
        "yolov5x6.yaml",
        include_str!("../../configs/models/yolov5x6.yaml"),
    ),
    (
        "yolov7.yaml",
        include_str!("../../configs/models/yolov7.yaml"),
    ),
    (
        "yolov7x.yaml",
        include_str!("../../configs/models/yolov7x.yaml"),
    ),
    (
        "yolov7-tiny.yaml",
        include_str!("../../configs/models/yolov7-tiny.yaml"),
    ),
];

impl ModelConfig {
    /// Loads `name`: a path to a YAML file, or the name of a shipped config
    /// (`yolov5n.yaml` or `yolov5n`). A file on disk wins over a shipped name.
    pub fn load(name: &str) -> Result<ModelConfig, ConfigError> {
        let path = PathBuf::from(name);
        if path.is_file() {
            return Self::from_file(&path);
        }
        let wanted = if name.ends_with(".yaml") || name.ends_with(".yml") {
            name.to_string()
        } else {
            format!("{name}.yaml")
        };
        match SHIPPED.iter().find(|(n, _)| *n == wanted) {
            Some((n, text)) => Self::from_str(text, n),
            None => Err(ConfigError::NotFound {
                name: name.to_string(),
            }),
        }
    }

    pub fn from_file(path: &Path) -> Result<ModelConfig, ConfigError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: source.clone(),
            source: e,
        })?;
        Self::from_str(&text, &source)
    }

    pub fn from_str(text: &str, source: &str) -> Result<ModelConfig, ConfigError> {
        let yaml: Value = serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml {
            file: source.into(),
            source: e,
        })?;
        Self::from_yaml(yaml, source)
    }

    /// From an already parsed YAML value (e.g. the `yaml` a checkpoint carries).
    pub fn from_yaml(yaml: Value, source: &str) -> Result<ModelConfig, ConfigError> {
        let file_err = |message: String| ConfigError::File {
            file: source.into(),
            message,
        };
        let map = yaml.as_mapping().ok_or_else(|| file_err("expected a mapping with nc, depth_multiple, width_multiple, anchors, backbone, head".into()))?;
        for key in map.keys() {
            let key = key.as_str().unwrap_or("");
            if !KEYS.contains(&key) {
                let closest = KEYS
                    .iter()
                    .max_by(|a, b| {
                        strsim::jaro_winkler(key, a).total_cmp(&strsim::jaro_winkler(key, b))
                    })
                    .copied()
                    .unwrap_or("nc");
                return Err(file_err(format!(
                    "unknown key `{key}` (did you mean `{closest}`?); known keys: {}",
                    KEYS.join(", ")
                )));
            }
        }
        let get = |key: &str| {
            map.get(key)
                .ok_or_else(|| file_err(format!("missing key `{key}`")))
        };
        let number = |key: &str| {
            get(key)?
                .as_f64()
                .filter(|v| *v > 0.0 && *v <= MAX_MULTIPLE)
                .ok_or_else(|| {
                    file_err(format!(
                        "`{key}` must be a number above 0 and at most {MAX_MULTIPLE}, got {}",
                        map.get(key).map_or_else(String::new, show)
                    ))
                })
        };
        let nc = get("nc")?
            .as_u64()
            .filter(|n| (1..=MAX_NC as u64).contains(n))
            .ok_or_else(|| file_err(format!("`nc` must be a whole number from 1 to {MAX_NC}")))?
            as usize;
        let ch = match map.get("ch") {
            Some(v) => v
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| file_err("`ch` must be a positive integer".into()))?
                as usize,
            None => 3,
        };
        let activation = match map.get("activation") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                Some(ActSpec::parse(s).map_err(|e| ConfigError::Activation {
                    file: source.into(),
                    source: e,
                })?)
            }
            Some(other) => {
                return Err(file_err(format!(
                    "activation: expected a spec such as nn.SiLU(), got {}",
                    show(other)
                )))
            }
        };
        let anchors = parse_anchors(get("anchors")?).map_err(|e| ConfigError::Anchors {
            file: source.into(),
            source: e,
        })?;
        let ctx = RowContext {
            nc,
            anchors: &anchors,
        };
        let mut layers = Vec::new();
        for section in ["backbone", "head"] {
            let rows = get(section)?.as_sequence().ok_or_else(|| {
                file_err(format!(
                    "`{section}` must be a list of [from, number, module, args] rows"
                ))
            })?;
            for row in rows {
                let index = layers.len();
                layers.push(parse_row(row, index, &ctx).map_err(|(module, e)| {
                    ConfigError::Row {
                        file: source.into(),
                        row: index,
                        module,
                        source: e,
                    }
                })?);
            }
        }
        Ok(ModelConfig {
            source: source.to_string(),
            nc,
            depth_multiple: number("depth_multiple")?,
            width_multiple: number("width_multiple")?,
            anchors,
            activation,
            ch,
            layers,
            yaml,
        })
    }

    /// The same config with `nc` classes (as `--nc` or a dataset overrides it): the head
    /// rows are read again with that class count.
    pub fn with_nc(mut self, nc: usize) -> Result<ModelConfig, ConfigError> {
        let ctx = RowContext {
            nc,
            anchors: &self.anchors,
        };
        for (index, row) in self.layers.iter_mut().enumerate() {
            if row.def.head {
                if let Some(first) = row.args.first_mut() {
                    *first = Value::from(nc as u64);
                }
                row.spec = (row.def.parse)(&row.args, &ctx).map_err(|source| ConfigError::Row {
                    file: self.source.clone(),
                    row: index,
                    module: row.def.name.into(),
                    source,
                })?;
            }
        }
        self.nc = nc;
        if let Some(map) = self.yaml.as_mapping_mut() {
            map.insert("nc".into(), (nc as u64).into());
        }
        Ok(self)
    }
}

/// Parses one row; errors carry the module name (or `?`) and the message.
fn parse_row(row: &Value, index: usize, ctx: &RowContext) -> Result<LayerRow, (String, RowError)> {
    let fail = |module: &str, message: String| (module.to_string(), RowError::Invalid(message));
    let items = row
        .as_sequence()
        .filter(|s| s.len() == 4)
        .ok_or_else(|| fail("?", "expected [from, number, module, args]".into()))?;
    let module_name = items[2].as_str().ok_or_else(|| {
        fail(
            "?",
            format!("module must be a name, got {}", show(&items[2])),
        )
    })?;
    let def = blocks::lookup(module_name).ok_or_else(|| {
        fail(
            module_name,
            format!(
                "unknown module `{module_name}` (did you mean `{}`?); supported: {}",
                blocks::closest(module_name),
                BLOCKS.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    let (from, from_list) = match &items[0] {
        Value::Sequence(s) => (
            s.iter()
                .map(|v| {
                    v.as_i64().ok_or_else(|| {
                        fail(
                            module_name,
                            format!("from: `{}` is not a layer index", show(v)),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            true,
        ),
        v => (
            vec![v.as_i64().ok_or_else(|| {
                fail(
                    module_name,
                    format!("from: `{}` is not a layer index", show(v)),
                )
            })?],
            false,
        ),
    };
    if from.is_empty() {
        return Err(fail(
            module_name,
            "from: the list of input layers is empty".into(),
        ));
    }
    for &f in &from {
        let resolved = if f < 0 { index as i64 + f } else { f };
        // -1 is the previous layer (the input image for layer 0); others must be earlier layers.
        if f != -1 && !(0..index as i64).contains(&resolved) {
            return Err(fail(module_name, format!("from: {f} does not name an earlier layer (this is layer {index}; use -1 for the previous one, or 0..{})", index.saturating_sub(1))));
        }
    }
    let number = items[1].as_u64().filter(|n| *n >= 1).ok_or_else(|| {
        fail(
            module_name,
            format!(
                "number: expected a positive integer, got {}",
                show(&items[1])
            ),
        )
    })? as usize;
    let args = items[3]
        .as_sequence()
        .ok_or_else(|| fail(module_name, "args must be a list".into()))?;
    let spec = (def.parse)(args, ctx).map_err(|e| (module_name.to_string(), e))?;
    Ok(LayerRow {
        from,
        from_list,
        number,
        def,
        args: args.clone(),
        spec,
    })
}
