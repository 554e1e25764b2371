//! Training hyperparameters: ultralytics' `hyp.*.yaml` files, key for key, and yolov7's,
//! whose two extra keys are `paste_in` (read and ignored) and `loss_ota` (the loss's
//! assignment). One file is parsed once into the parts the optimiser, the loss and
//! augmentation each read.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::loss::LossHyp;
use super::optim::OptimHyp;
use crate::data::augment::Augmentation;

/// The hyperparameter files that ship inside the binary, by file name.
pub const SHIPPED: &[(&str, &str)] = &[
    (
        "hyp.scratch-low.yaml",
        include_str!("../../configs/hyps/hyp.scratch-low.yaml"),
    ),
    (
        "hyp.scratch.tiny.yaml",
        include_str!("../../configs/hyps/hyp.scratch.tiny.yaml"),
    ),
    (
        "hyp.scratch.p5.yaml",
        include_str!("../../configs/hyps/hyp.scratch.p5.yaml"),
    ),
    (
        "hyp.v8-default.yaml",
        include_str!("../../configs/hyps/hyp.v8-default.yaml"),
    ),
];

/// The default hyperparameters (YOLOv5's from-scratch, low-augmentation set).
pub const DEFAULT_NAME: &str = "hyp.scratch-low.yaml";

/// The default for anchor-free models (YOLOv8, YOLO11): ultralytics 8's.
pub const DEFAULT_V8_NAME: &str = "hyp.v8-default.yaml";

/// YOLOv5's hyperparameters, named as in its `hyp.*.yaml` files (or ultralytics 8's subset
/// of its default.yaml), parsed once into the part each reader takes: the optimiser's, the
/// loss's and augmentation's. Every key a loss reads is required for the models it trains
/// (ultralytics indexes them all), and an unknown key is an error, so that a typo cannot
/// silently leave a default in place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyp {
    #[serde(flatten)]
    pub optim: OptimHyp,
    #[serde(flatten)]
    pub loss: LossHyp,
    #[serde(flatten)]
    pub augment: Augmentation,
}

#[derive(Debug, thiserror::Error)]
pub enum HypError {
    #[error("{file}: cannot read")]
    Read {
        file: PathBuf,
        #[source]
        error: std::io::Error,
    },
    /// serde's message names the key (`missing field `lr0``) and the line.
    #[error("{file}")]
    Parse {
        file: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("{file}: unknown field `{key}`, expected one of {}", known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", "))]
    UnknownKey {
        file: String,
        key: String,
        known: Vec<String>,
    },
    #[error("{file}: `{key}: {value}` is out of range: {expected}")]
    Value {
        file: String,
        key: &'static str,
        value: f64,
        expected: &'static str,
    },
    #[error(
        "hyperparameters `{name}` not found: it is neither a file nor a shipped set ({})",
        shipped_names()
    )]
    NotFound { name: String },
}

fn shipped_names() -> String {
    SHIPPED
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every key a hyperparameter file may have: the shipped default's, and the optional ones.
fn known_keys() -> Vec<String> {
    let (_, text) = SHIPPED[0];
    let mut keys: Vec<String> = serde_yaml::from_str::<serde_yaml::Mapping>(text)
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    keys.extend(["anchors", "label_smoothing", "paste_in", "loss_ota", "dfl"].map(String::from));
    keys
}

impl Default for Hyp {
    fn default() -> Self {
        let (name, text) = SHIPPED[0];
        // The shipped file is checked by the tests; failing here would be a build defect.
        Self::from_str(text, name).unwrap_or_else(|e| panic!("shipped {name} is invalid: {e}"))
    }
}

impl Hyp {
    /// Loads `name`: a path to a YAML file, or the name of a shipped set
    /// (`hyp.scratch-low.yaml` or `hyp.scratch-low`). A file on disk wins over a shipped name.
    pub fn load(name: &str) -> Result<Hyp, HypError> {
        let path = Path::new(name);
        if path.is_file() {
            return Self::from_file(path);
        }
        let wanted = if name.ends_with(".yaml") || name.ends_with(".yml") {
            name.to_string()
        } else {
            format!("{name}.yaml")
        };
        match SHIPPED.iter().find(|(shipped, _)| *shipped == wanted) {
            Some((shipped, text)) => Self::from_str(text, shipped),
            None => Err(HypError::NotFound {
                name: name.to_string(),
            }),
        }
    }

    pub fn from_file(path: &Path) -> Result<Hyp, HypError> {
        let text = std::fs::read_to_string(path).map_err(|error| HypError::Read {
            file: path.to_path_buf(),
            error,
        })?;
        Self::from_str(&text, &path.display().to_string())
    }

    /// Parses YAML text; `source` names it in errors.
    pub fn from_str(text: &str, source: &str) -> Result<Hyp, HypError> {
        let parse_error = |e: serde_yaml::Error| HypError::Parse {
            file: source.to_string(),
            source: e,
        };
        // The three parts each take the keys they know, so a key none of them knows is
        // looked for first: a typo, reported as the one mistake it is.
        let written: serde_yaml::Mapping = serde_yaml::from_str(text).map_err(parse_error)?;
        let known = known_keys();
        if let Some(key) = written
            .keys()
            .filter_map(|k| k.as_str())
            .find(|key| !known.iter().any(|k| k == key))
        {
            return Err(HypError::UnknownKey {
                file: source.to_string(),
                key: key.to_string(),
                known,
            });
        }
        let hyp: Hyp = serde_yaml::from_str(text).map_err(parse_error)?;
        hyp.validate(source)?;
        Ok(hyp)
    }

    /// Messages for keys that are set but that actyolo does not act on.
    pub fn ignored(&self) -> Vec<String> {
        let paste_in = self.augment.paste_in.filter(|p| *p > 0.0);
        paste_in.map(|p| format!("hyp paste_in: {p} (yolov7's paste-in augmentation) is not implemented in actyolo and is ignored")).into_iter().collect()
    }

    /// Whether training uses yolov7's OTA assignment (`loss_ota: 1`); validation always
    /// uses YOLOv5's, as yolov7's train.py does.
    pub fn uses_ota(&self) -> bool {
        self.loss.loss_ota == Some(1)
    }

    /// Rejects values that would make augmentation or the loss meaningless.
    fn validate(&self, source: &str) -> Result<(), HypError> {
        let (o, l, a) = (&self.optim, &self.loss, &self.augment);
        if let Some(other) = l.loss_ota.filter(|v| *v > 1) {
            return Err(HypError::Value {
                file: source.to_string(),
                key: "loss_ota",
                value: other.into(),
                expected: "0 (YOLOv5's loss) or 1 (yolov7's OTA)",
            });
        }
        let probabilities = [
            ("flipud", a.flipud),
            ("fliplr", a.fliplr),
            ("mosaic", a.mosaic),
            ("mixup", a.mixup),
            ("copy_paste", a.copy_paste),
            ("paste_in", a.paste_in.unwrap_or(0.0)),
        ];
        let non_negative = [
            ("lr0", o.lr0),
            ("lrf", o.lrf),
            ("weight_decay", o.weight_decay),
            ("warmup_epochs", o.warmup_epochs),
            ("box", l.box_gain),
            ("cls", l.cls_gain),
            ("obj", l.obj_gain.unwrap_or(0.0)),
            ("dfl", l.dfl.unwrap_or(0.0)),
            ("hsv_h", a.hsv_h),
            ("hsv_s", a.hsv_s),
            ("hsv_v", a.hsv_v),
            ("degrees", a.degrees),
            ("translate", a.translate),
            ("scale", a.scale),
            ("shear", a.shear),
            ("perspective", a.perspective),
        ];
        let out_of_range = |key, value, expected| HypError::Value {
            file: source.to_string(),
            key,
            value,
            expected,
        };
        if let Some(&(key, value)) = probabilities.iter().find(|(_, v)| !(0.0..=1.0).contains(v)) {
            return Err(out_of_range(key, value, "a probability must lie in [0, 1]"));
        }
        if let Some(&(key, value)) = non_negative
            .iter()
            .find(|(_, v)| !(*v >= 0.0 && v.is_finite()))
        {
            return Err(out_of_range(key, value, "must be a finite number >= 0"));
        }
        if a.scale >= 1.0 {
            return Err(out_of_range(
                "scale",
                a.scale,
                "must be below 1 (the image is scaled by 1 ± scale)",
            ));
        }
        Ok(())
    }
}
