//! The model YAML, exactly as YOLOv5 v7.0's, yolov7's and ultralytics 8's `parse_model`
//! read it, parsed into typed rows. Nothing is evaluated: the few names they `eval` (`nc`,
//! `anchors`, `None`, activation specs) are resolved here by name. YOLOv8 and YOLO11 files
//! carry `scales` instead of the two multiples; the scale comes from the name asked for
//! (`yolov8n.yaml` is `yolov8.yaml` at scale n), as ultralytics reads it.

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
    /// The widest a layer may be before the width multiple (a scale's third number;
    /// unbounded for files without `scales`).
    pub max_channels: usize,
    /// The scale chosen from `scales` (`n`, `s`, ...), when the file has them.
    pub scale: Option<String>,
    /// Anchors per detection level, as (w, h) pairs in pixels (none for anchor-free heads).
    pub anchors: Vec<Vec<(f64, f64)>>,
    /// Bins per box side of an anchor-free head's distribution (`reg_max`, default 16).
    pub reg_max: usize,
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
    "scales",
    "scale",
    "anchors",
    "reg_max",
    "backbone",
    "head",
    "activation",
    "ch",
    "channels",
    "yaml_file",
];

/// The largest `reg_max` (ultralytics uses 16; 1 means plain box regression).
const MAX_REG_MAX: u64 = 64;

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
    (
        "yolov8.yaml",
        include_str!("../../configs/models/yolov8.yaml"),
    ),
    (
        "yolo11.yaml",
        include_str!("../../configs/models/yolo11.yaml"),
    ),
];

/// The scale letter in a model name, as ultralytics' `guess_model_scale` finds it:
/// `yolov8n.yaml` → n, `yolo11s` → s.
fn scale_in_name(name: &str) -> Option<String> {
    let stem = Path::new(name).file_stem()?.to_str()?;
    let rest = stem.strip_prefix("yolo")?;
    let rest = rest.strip_prefix("e-").unwrap_or(rest);
    let rest = rest.strip_prefix('v').unwrap_or(rest);
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let letter = rest[digits..].chars().next()?;
    (digits > 0 && "nslmx".contains(letter)).then(|| letter.to_string())
}

/// The file a scaled name reads, as ultralytics' `yaml_model_load` unifies it:
/// `yolov8n.yaml` → `yolov8.yaml`, `yolo11x-custom.yaml` → `yolo11-custom.yaml`.
fn unified_name(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    // The last digit followed by a scale letter and then anything that is not empty.
    (1..bytes.len().saturating_sub(1))
        .rev()
        .find(|&i| bytes[i - 1].is_ascii_digit() && b"nslmx".contains(&bytes[i]))
        .map(|i| format!("{}{}", &name[..i], &name[i + 1..]))
}

impl ModelConfig {
    /// Loads `name`: a path to a YAML file, or the name of a shipped config
    /// (`yolov5n.yaml` or `yolov5n`; `yolov8n.yaml` is `yolov8.yaml` at scale n). A file on
    /// disk wins over a shipped name.
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
        let shipped = |file: &str| SHIPPED.iter().find(|(n, _)| *n == file);
        let found = shipped(&wanted).or_else(|| unified_name(&wanted).and_then(|u| shipped(&u)));
        match found {
            // Read under the name asked for, which carries the scale.
            Some((_, text)) => Self::from_str(text, &wanted),
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

    /// From YAML text read from `source`, whose name gives the scale when it has one
    /// (`yolov8n.yaml`), over the file's own `scale` key, as ultralytics reads files.
    pub fn from_str(text: &str, source: &str) -> Result<ModelConfig, ConfigError> {
        let mut yaml: Value = serde_yaml::from_str(text).map_err(|e| ConfigError::Yaml {
            file: source.into(),
            source: e,
        })?;
        if let (Some(scale), Some(map)) = (scale_in_name(source), yaml.as_mapping_mut()) {
            if map.contains_key("scales") {
                map.insert("scale".into(), scale.into());
            }
        }
        Self::from_yaml(yaml, source)
    }

    /// From an already parsed YAML value (e.g. the `yaml` a checkpoint carries, whose
    /// `scale` key says which scale it was built at).
    pub fn from_yaml(yaml: Value, source: &str) -> Result<ModelConfig, ConfigError> {
        let file_err = |message: String| ConfigError::File {
            file: source.into(),
            message,
        };
        let map = yaml.as_mapping().ok_or_else(|| file_err("expected a mapping with nc, depth_multiple, width_multiple (or scales), anchors, backbone, head".into()))?;
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
        let ch = match map.get("ch").or_else(|| map.get("channels")) {
            Some(v) => v
                .as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| file_err("`ch` must be a positive integer".into()))?
                as usize,
            None => 3,
        };
        let reg_max = match map.get("reg_max") {
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=MAX_REG_MAX).contains(n))
                .ok_or_else(|| {
                    file_err(format!(
                        "`reg_max` must be a whole number from 1 to {MAX_REG_MAX}, got {}",
                        show(v)
                    ))
                })? as usize,
            None => 16,
        };
        let (depth_multiple, width_multiple, max_channels, scale) = match map.get("scales") {
            Some(scales) => {
                let (scale, [depth, width, max_channels]) = pick_scale(scales, map, source)
                    .map_err(|message| file_err(format!("scales: {message}")))?;
                (depth, width, max_channels as usize, Some(scale))
            }
            None => (
                number("depth_multiple")?,
                number("width_multiple")?,
                usize::MAX,
                None,
            ),
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
        // Anchor-free heads (YOLOv8, YOLO11) have none; a row that names them says so.
        let anchors = match map.get("anchors") {
            Some(v) => parse_anchors(v).map_err(|e| ConfigError::Anchors {
                file: source.into(),
                source: e,
            })?,
            None => Vec::new(),
        };
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
        let mut yaml = yaml;
        if let (Some(scale), Some(map)) = (&scale, yaml.as_mapping_mut()) {
            // Kept with the weights, so a checkpoint rebuilds the same scale.
            map.insert("scale".into(), scale.as_str().into());
        }
        Ok(ModelConfig {
            source: source.to_string(),
            nc,
            depth_multiple,
            width_multiple,
            max_channels,
            scale,
            anchors,
            reg_max,
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

/// The scale a file with `scales` is read at, and its `[depth, width, max_channels]`: its
/// `scale` key, else the one the source's name gives, else the first (as ultralytics).
fn pick_scale(
    scales: &Value,
    map: &serde_yaml::Mapping,
    source: &str,
) -> Result<(String, [f64; 3]), String> {
    let scales = scales
        .as_mapping()
        .filter(|m| !m.is_empty())
        .ok_or("expected a mapping such as `n: [0.33, 0.25, 1024]`")?;
    let names: Vec<&str> = scales.keys().filter_map(Value::as_str).collect();
    let scale = map
        .get("scale")
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| scale_in_name(source))
        .or_else(|| names.first().map(|s| s.to_string()))
        .ok_or("scale names must be letters such as n, s, m, l, x")?;
    let row = scales.get(scale.as_str()).ok_or_else(|| {
        format!(
            "no scale `{scale}`: the file has {} (the scale comes from the name, such as \
             yolov8n.yaml for n, or the `scale` key)",
            names.join(", ")
        )
    })?;
    let numbers: Vec<f64> = row
        .as_sequence()
        .map(|s| s.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    match numbers[..] {
        [depth, width, max_channels]
            if [depth, width].iter().all(|v| *v > 0.0 && *v <= MAX_MULTIPLE)
                && max_channels >= 1.0
                && max_channels <= u32::MAX as f64 =>
        {
            Ok((scale, [depth, width, max_channels.floor()]))
        }
        _ => Err(format!(
            "`{scale}` must be [depth, width, max_channels]: depth and width above 0 and at most {MAX_MULTIPLE}, max_channels a positive number; got {}",
            show(row)
        )),
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
