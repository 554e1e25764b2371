//! The model YAML, exactly as YOLOv5 v7.0's and yolov7's `parse_model` read it, parsed into
//! typed rows. Nothing is evaluated: the few names they `eval` (`nc`, `anchors`, `None`,
//! activation specs) are resolved here by name.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

use crate::act::{ActArg, ActSpec};

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
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRow {
    pub from: Vec<i64>,
    /// Whether `from` was written as a list (Concat, Detect take several inputs).
    pub from_list: bool,
    pub number: usize,
    pub module: ModuleRow,
}

/// The modules YOLOv5 and YOLOv7 models use, with their arguments resolved (widths before
/// scaling).
#[derive(Debug, Clone, PartialEq)]
pub enum ModuleRow {
    /// YOLOv5's `Conv(c1, c2, k, s, p, g, d, act)`, or yolov7's `Conv(c1, c2, k, s, p, g, act)`
    /// (then `d` is 1).
    Conv {
        c2: usize,
        k: usize,
        s: usize,
        p: Option<usize>,
        g: usize,
        d: usize,
        act: ActArg,
    },
    Bottleneck {
        c2: usize,
        shortcut: bool,
        g: usize,
        e: f64,
    },
    C3 {
        c2: usize,
        shortcut: bool,
        g: usize,
        e: f64,
    },
    Sppf {
        c2: usize,
        k: usize,
    },
    Spp {
        c2: usize,
        k: Vec<usize>,
    },
    Focus {
        c2: usize,
        k: usize,
        s: usize,
        p: Option<usize>,
        g: usize,
        act: ActArg,
    },
    Concat {
        dim: i64,
    },
    Upsample {
        scale: usize,
    },
    /// yolov7's `MP(k)`: k×k max-pooling with stride k.
    Mp {
        k: usize,
    },
    /// yolov7's `SP(k, s)`: k×k max-pooling with stride s and padding k // 2.
    Sp {
        k: usize,
        s: usize,
    },
    /// yolov7's `SPPCSPC(c1, c2, n, shortcut, g, e, k)`; n, shortcut and g are read but, as
    /// in yolov7, unused.
    Sppcspc {
        c2: usize,
        e: f64,
        k: Vec<usize>,
    },
    /// yolov7's `RepConv(c1, c2, k=3, s, p, g, act)`, in its training form.
    RepConv {
        c2: usize,
        s: usize,
        g: usize,
        act: ActArg,
    },
    Detect {
        kind: DetectKind,
        nc: usize,
        anchors: Vec<Vec<(f64, f64)>>,
    },
}

/// Which head a `Detect` row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DetectKind {
    /// YOLOv5's Detect.
    Detect,
    /// yolov7's IDetect: Detect with implicit knowledge (ImplicitA/ImplicitM) around each conv.
    IDetect,
}

/// The module names a row may use, for messages.
pub const MODULES: &[&str] = &[
    "Conv",
    "Bottleneck",
    "C3",
    "SPPF",
    "SPP",
    "Focus",
    "Concat",
    "nn.Upsample",
    "Detect",
    "MP",
    "SP",
    "SPPCSPC",
    "RepConv",
    "IDetect",
];

/// The largest class count a model may have (ultralytics has none; the largest public
/// detection vocabularies have a few thousand classes).
pub const MAX_NC: usize = 100_000;

/// The largest nearest-upsampling factor (YOLO models use 2).
const MAX_UPSAMPLE: usize = 64;

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
    #[error("{file}: {message}")]
    File { file: String, message: String },
    #[error("{file}: layer {row} {module}: {message}")]
    Row {
        file: String,
        row: usize,
        module: String,
        message: String,
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
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            file: source.clone(),
            message: format!("cannot read: {e}"),
        })?;
        Self::from_str(&text, &source)
    }

    pub fn from_str(text: &str, source: &str) -> Result<ModelConfig, ConfigError> {
        let yaml: Value = serde_yaml::from_str(text).map_err(|e| ConfigError::File {
            file: source.into(),
            message: format!("not valid YAML: {e}"),
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
                Some(ActSpec::parse(s).map_err(|e| file_err(format!("activation: {e}")))?)
            }
            Some(other) => {
                return Err(file_err(format!(
                    "activation: expected a spec such as nn.SiLU(), got {}",
                    show(other)
                )))
            }
        };
        let anchors =
            parse_anchors(get("anchors")?).map_err(|m| file_err(format!("anchors: {m}")))?;
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
                layers.push(parse_row(row, index, &ctx).map_err(|(module, message)| {
                    ConfigError::Row {
                        file: source.into(),
                        row: index,
                        module,
                        message,
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

    /// The same config with `nc` classes (as `--nc` or a dataset overrides it).
    pub fn with_nc(mut self, nc: usize) -> ModelConfig {
        for row in &mut self.layers {
            if let ModuleRow::Detect { nc: n, .. } = &mut row.module {
                *n = nc;
            }
        }
        self.nc = nc;
        if let Some(map) = self.yaml.as_mapping_mut() {
            map.insert("nc".into(), (nc as u64).into());
        }
        self
    }
}

/// `anchors:` is a list of per-level `[w, h, w, h, ...]` lists, or an anchor count per
/// level (placeholders that AutoAnchor replaces; the level count then comes from Detect).
fn parse_anchors(v: &Value) -> Result<Vec<Vec<(f64, f64)>>, String> {
    if let Some(count) = v.as_u64() {
        // As parse_model: [list(range(count * 2))] per level; three levels unless Detect says.
        let placeholder: Vec<(f64, f64)> = (0..count)
            .map(|i| ((2 * i) as f64, (2 * i + 1) as f64))
            .collect();
        return Ok(vec![placeholder; 3]);
    }
    let levels = v
        .as_sequence()
        .ok_or("expected a list of [w, h, ...] lists per level, or an anchor count")?;
    let mut out = Vec::new();
    for (i, level) in levels.iter().enumerate() {
        let values: Vec<f64> = level
            .as_sequence()
            .ok_or(format!("level {i}: expected a list of numbers"))?
            .iter()
            .map(|x| {
                x.as_f64()
                    .ok_or(format!("level {i}: `{}` is not a number", show(x)))
            })
            .collect::<Result<_, _>>()?;
        if values.is_empty() || values.len() % 2 != 0 {
            return Err(format!(
                "level {i}: expected w, h pairs, got {} numbers",
                values.len()
            ));
        }
        out.push(values.chunks(2).map(|p| (p[0], p[1])).collect());
    }
    let na = out.first().map_or(0, Vec::len);
    if na == 0 || out.iter().any(|l| l.len() != na) {
        return Err("every level needs the same, non-zero number of anchors".into());
    }
    Ok(out)
}

struct RowContext<'a> {
    nc: usize,
    anchors: &'a [Vec<(f64, f64)>],
}

/// Parses one row; errors carry the module name (or `?`) and the message.
fn parse_row(row: &Value, index: usize, ctx: &RowContext) -> Result<LayerRow, (String, String)> {
    let fail = |module: &str, message: String| (module.to_string(), message);
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
    let module = parse_module(module_name, args, ctx).map_err(|m| fail(module_name, m))?;
    Ok(LayerRow {
        from,
        from_list,
        number,
        module,
    })
}

/// Reads positional arguments with PyTorch-like defaults and typed errors.
struct Args<'a> {
    values: &'a [Value],
    /// Parameter names in order, for messages and the argument count check.
    names: &'static [&'static str],
}

impl<'a> Args<'a> {
    fn new(
        values: &'a [Value],
        names: &'static [&'static str],
        required: usize,
    ) -> Result<Self, String> {
        if values.len() < required || values.len() > names.len() {
            return Err(format!(
                "takes {} argument{} ({}), got {}",
                if required == names.len() {
                    format!("{required}")
                } else {
                    format!("{required} to {}", names.len())
                },
                if names.len() == 1 { "" } else { "s" },
                names.join(", "),
                values.len()
            ));
        }
        Ok(Args { values, names })
    }

    fn get(&self, i: usize) -> Option<&Value> {
        self.values.get(i).filter(|v| !is_none(v))
    }

    fn bad(&self, i: usize, expected: &str) -> String {
        format!(
            "argument {} (`{}`): expected {expected}, got {}",
            i,
            self.names[i],
            show(&self.values[i])
        )
    }

    fn usize_or(&self, i: usize, default: usize) -> Result<usize, String> {
        match self.get(i) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .filter(|n| *n >= 1 || self.names[i] == "p")
                .map(|n| n as usize)
                .ok_or_else(|| self.bad(i, "a positive integer")),
        }
    }

    fn opt_usize(&self, i: usize) -> Result<Option<usize>, String> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.bad(i, "an integer or None")),
        }
    }

    fn bool_or(&self, i: usize, default: bool) -> Result<bool, String> {
        match self.get(i) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.bad(i, "True or False")),
        }
    }

    fn f64_or(&self, i: usize, default: f64) -> Result<f64, String> {
        match self.get(i) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.bad(i, "a number")),
        }
    }

    fn usize_list_or(&self, i: usize, default: &[usize]) -> Result<Vec<usize>, String> {
        match self.get(i) {
            None => Ok(default.to_vec()),
            Some(v) => v
                .as_sequence()
                .and_then(|s| {
                    s.iter()
                        .map(|x| x.as_u64().filter(|n| *n >= 1).map(|n| n as usize))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| self.bad(i, "a list of kernel sizes")),
        }
    }

    fn act(&self, i: usize) -> Result<ActArg, String> {
        match self.values.get(i) {
            None => Ok(ActArg::Default),
            Some(Value::Bool(true)) => Ok(ActArg::Default),
            Some(Value::Bool(false)) => Ok(ActArg::Spec(ActSpec::identity())),
            Some(Value::String(s)) => {
                ActArg::parse(s).map_err(|e| format!("argument {i} (`act`): {e}"))
            }
            Some(_) => Err(self.bad(
                i,
                "True, False or an activation spec such as nn.LeakyReLU(0.1)",
            )),
        }
    }

    fn c2(&self) -> Result<usize, String> {
        self.usize_or(0, 0).and_then(|c| {
            if c == 0 {
                Err(self.bad(0, "a positive channel count"))
            } else {
                Ok(c)
            }
        })
    }
}

/// A YAML value as it would be written in the file.
fn show(value: &Value) -> String {
    serde_yaml::to_string(value).map_or_else(|_| format!("{value:?}"), |s| s.trim().to_string())
}

fn is_none(v: &Value) -> bool {
    matches!(v, Value::Null) || v.as_str() == Some("None")
}

fn parse_module(name: &str, values: &[Value], ctx: &RowContext) -> Result<ModuleRow, String> {
    let module = match name {
        // yolov7's Conv has no dilation: True, False or a spec in the sixth place is its `act`.
        "Conv" if matches!(values.get(5), Some(Value::Bool(_) | Value::String(_))) => {
            let a = Args::new(values, &["c2", "k", "s", "p", "g", "act"], 1)?;
            ModuleRow::Conv {
                c2: a.c2()?,
                k: a.usize_or(1, 1)?,
                s: a.usize_or(2, 1)?,
                p: a.opt_usize(3)?,
                g: a.usize_or(4, 1)?,
                d: 1,
                act: a.act(5)?,
            }
        }
        "Conv" => {
            let a = Args::new(values, &["c2", "k", "s", "p", "g", "d", "act"], 1)?;
            ModuleRow::Conv {
                c2: a.c2()?,
                k: a.usize_or(1, 1)?,
                s: a.usize_or(2, 1)?,
                p: a.opt_usize(3)?,
                g: a.usize_or(4, 1)?,
                d: a.usize_or(5, 1)?,
                act: a.act(6)?,
            }
        }
        "Bottleneck" | "C3" => {
            let a = Args::new(values, &["c2", "shortcut", "g", "e"], 1)?;
            let (c2, shortcut, g, e) = (
                a.c2()?,
                a.bool_or(1, true)?,
                a.usize_or(2, 1)?,
                a.f64_or(3, 0.5)?,
            );
            if name == "C3" {
                ModuleRow::C3 { c2, shortcut, g, e }
            } else {
                ModuleRow::Bottleneck { c2, shortcut, g, e }
            }
        }
        "SPPF" => {
            let a = Args::new(values, &["c2", "k"], 1)?;
            ModuleRow::Sppf {
                c2: a.c2()?,
                k: a.usize_or(1, 5)?,
            }
        }
        "SPP" => {
            let a = Args::new(values, &["c2", "k"], 1)?;
            ModuleRow::Spp {
                c2: a.c2()?,
                k: a.usize_list_or(1, &[5, 9, 13])?,
            }
        }
        "MP" => {
            let a = Args::new(values, &["k"], 0)?;
            ModuleRow::Mp {
                k: a.usize_or(0, 2)?,
            }
        }
        "SP" => {
            let a = Args::new(values, &["k", "s"], 0)?;
            ModuleRow::Sp {
                k: a.usize_or(0, 3)?,
                s: a.usize_or(1, 1)?,
            }
        }
        "SPPCSPC" => {
            let a = Args::new(values, &["c2", "shortcut", "g", "e", "k"], 1)?;
            // yolov7 passes shortcut and g on but never reads them; a mistyped one is still a mistake.
            a.bool_or(1, false)?;
            a.usize_or(2, 1)?;
            ModuleRow::Sppcspc {
                c2: a.c2()?,
                e: a.f64_or(3, 0.5)?,
                k: a.usize_list_or(4, &[5, 9, 13])?,
            }
        }
        "RepConv" => {
            let a = Args::new(values, &["c2", "k", "s", "p", "g", "act", "deploy"], 1)?;
            if a.usize_or(1, 3)? != 3 {
                return Err(a.bad(1, "3 (yolov7's RepConv is 3×3 only)"));
            }
            if a.opt_usize(3)?.is_some_and(|p| p != 1) {
                return Err(a.bad(3, "None or 1 (yolov7's RepConv pads by 1)"));
            }
            if a.bool_or(6, false)? {
                return Err(a.bad(6, "False: actyolo builds the training form, and `fuse` makes the deploy form for inference"));
            }
            ModuleRow::RepConv {
                c2: a.c2()?,
                s: a.usize_or(2, 1)?,
                g: a.usize_or(4, 1)?,
                act: a.act(5)?,
            }
        }
        "Focus" => {
            let a = Args::new(values, &["c2", "k", "s", "p", "g", "act"], 1)?;
            ModuleRow::Focus {
                c2: a.c2()?,
                k: a.usize_or(1, 1)?,
                s: a.usize_or(2, 1)?,
                p: a.opt_usize(3)?,
                g: a.usize_or(4, 1)?,
                act: a.act(5)?,
            }
        }
        "Concat" => {
            let a = Args::new(values, &["dimension"], 0)?;
            let dim = match a.get(0) {
                None => 1,
                Some(v) => v.as_i64().ok_or_else(|| a.bad(0, "an integer"))?,
            };
            if dim != 1 && dim != -3 {
                return Err(format!("argument 0 (`dimension`): only the channel dimension (1) is supported, got {dim}"));
            }
            ModuleRow::Concat { dim }
        }
        "nn.Upsample" => {
            let a = Args::new(values, &["size", "scale_factor", "mode"], 0)?;
            if a.get(0).is_some() {
                return Err(
                    "argument 0 (`size`): only None (scale by scale_factor) is supported".into(),
                );
            }
            let scale = a.usize_or(1, 2)?;
            if scale > MAX_UPSAMPLE {
                return Err(a.bad(1, &format!("a scale factor from 1 to {MAX_UPSAMPLE}")));
            }
            match a.get(2).map(|v| v.as_str()) {
                None | Some(Some("nearest")) => {}
                Some(_) => {
                    return Err(format!(
                        "argument 2 (`mode`): only 'nearest' is supported, got {}",
                        show(&values[2])
                    ))
                }
            }
            ModuleRow::Upsample { scale }
        }
        "Detect" | "IDetect" => {
            let a = Args::new(values, &["nc", "anchors"], 2)?;
            let nc = match &values[0] {
                Value::String(s) if s == "nc" => ctx.nc,
                v => v
                    .as_u64()
                    .filter(|n| (1..=MAX_NC as u64).contains(n))
                    .ok_or_else(|| a.bad(0, &format!("nc or a whole number from 1 to {MAX_NC}")))?
                    as usize,
            };
            let anchors = match &values[1] {
                Value::String(s) if s == "anchors" => ctx.anchors.to_vec(),
                v => parse_anchors(v).map_err(|m| format!("argument 1 (`anchors`): {m}"))?,
            };
            let kind = if name == "IDetect" {
                DetectKind::IDetect
            } else {
                DetectKind::Detect
            };
            ModuleRow::Detect { kind, nc, anchors }
        }
        _ => {
            let closest = MODULES
                .iter()
                .max_by(|a, b| {
                    strsim::jaro_winkler(name, a).total_cmp(&strsim::jaro_winkler(name, b))
                })
                .copied()
                .unwrap_or("Conv");
            return Err(format!(
                "unknown module `{name}` (did you mean `{closest}`?); supported: {}",
                MODULES.join(", ")
            ));
        }
    };
    Ok(module)
}
