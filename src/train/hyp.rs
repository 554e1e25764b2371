//! Training hyperparameters: ultralytics' `hyp.*.yaml` files, key for key, and yolov7's,
//! whose two extra keys are `paste_in` (read and ignored) and `loss_ota` (the loss's assignment).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
];

/// The default hyperparameters (YOLOv5's from-scratch, low-augmentation set).
pub const DEFAULT_NAME: &str = "hyp.scratch-low.yaml";

/// YOLOv5's hyperparameters, named as in its `hyp.*.yaml` files. Every key is required
/// (ultralytics indexes them all), and an unknown key is an error, so that a typo cannot
/// silently leave a default in place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hyp {
    /// Initial learning rate.
    pub lr0: f64,
    /// Final learning rate as a fraction of `lr0`.
    pub lrf: f64,
    /// SGD momentum / Adam beta1.
    pub momentum: f64,
    pub weight_decay: f64,
    /// Warmup length in epochs (fractions allowed).
    pub warmup_epochs: f64,
    pub warmup_momentum: f64,
    pub warmup_bias_lr: f64,
    /// Box loss gain.
    #[serde(rename = "box")]
    pub box_gain: f64,
    /// Class loss gain.
    #[serde(rename = "cls")]
    pub cls_gain: f64,
    /// Class BCE positive weight.
    pub cls_pw: f64,
    /// Objectness loss gain.
    #[serde(rename = "obj")]
    pub obj_gain: f64,
    /// Objectness BCE positive weight.
    pub obj_pw: f64,
    pub iou_t: f64,
    /// Largest anchor-to-label size ratio that still matches.
    pub anchor_t: f64,
    /// Anchors per output layer; when set, the model's anchors are re-initialised (ultralytics' `hyp['anchors']`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchors: Option<f64>,
    pub fl_gamma: f64,
    /// Label smoothing epsilon (ultralytics fills it from `--label-smoothing`; 0 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_smoothing: Option<f64>,
    pub hsv_h: f64,
    pub hsv_s: f64,
    pub hsv_v: f64,
    pub degrees: f64,
    pub translate: f64,
    pub scale: f64,
    pub shear: f64,
    pub perspective: f64,
    pub flipud: f64,
    pub fliplr: f64,
    pub mosaic: f64,
    pub mixup: f64,
    pub copy_paste: f64,
    /// yolov7's paste-in augmentation probability: accepted, and ignored (not implemented).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paste_in: Option<f64>,
    /// yolov7's training loss choice: 0 is YOLOv5's loss, 1 yolov7's ComputeLossOTA (see
    /// [`Hyp::uses_ota`]). Absent means 0 here, although yolov7 itself takes an absent key as 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_ota: Option<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum HypError {
    #[error("{file}: cannot read: {error}")]
    Read {
        file: PathBuf,
        error: std::io::Error,
    },
    /// serde's message names the key (`unknown field `lr00`, expected one of ...`, `missing field `lr0``) and the line.
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
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
        let hyp: Hyp = serde_yaml::from_str(text).map_err(|e| HypError::Parse {
            file: source.to_string(),
            message: e.to_string(),
        })?;
        hyp.validate(source)?;
        Ok(hyp)
    }

    /// Messages for keys that are set but that actyolo does not act on.
    pub fn ignored(&self) -> Vec<String> {
        let paste_in = self.paste_in.filter(|p| *p > 0.0);
        paste_in.map(|p| format!("hyp paste_in: {p} (yolov7's paste-in augmentation) is not implemented in actyolo and is ignored")).into_iter().collect()
    }

    /// Whether training uses yolov7's OTA assignment (`loss_ota: 1`); validation always
    /// uses YOLOv5's, as yolov7's train.py does.
    pub fn uses_ota(&self) -> bool {
        self.loss_ota == Some(1)
    }

    /// Rejects values that would make augmentation or the loss meaningless.
    fn validate(&self, source: &str) -> Result<(), HypError> {
        if let Some(other) = self.loss_ota.filter(|v| *v > 1) {
            return Err(HypError::Value {
                file: source.to_string(),
                key: "loss_ota",
                value: other.into(),
                expected: "0 (YOLOv5's loss) or 1 (yolov7's OTA)",
            });
        }
        let probabilities = [
            ("flipud", self.flipud),
            ("fliplr", self.fliplr),
            ("mosaic", self.mosaic),
            ("mixup", self.mixup),
            ("copy_paste", self.copy_paste),
            ("paste_in", self.paste_in.unwrap_or(0.0)),
        ];
        let non_negative = [
            ("lr0", self.lr0),
            ("lrf", self.lrf),
            ("weight_decay", self.weight_decay),
            ("warmup_epochs", self.warmup_epochs),
            ("box", self.box_gain),
            ("cls", self.cls_gain),
            ("obj", self.obj_gain),
            ("hsv_h", self.hsv_h),
            ("hsv_s", self.hsv_s),
            ("hsv_v", self.hsv_v),
            ("degrees", self.degrees),
            ("translate", self.translate),
            ("scale", self.scale),
            ("shear", self.shear),
            ("perspective", self.perspective),
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
        if self.scale >= 1.0 {
            return Err(out_of_range(
                "scale",
                self.scale,
                "must be below 1 (the image is scaled by 1 ± scale)",
            ));
        }
        Ok(())
    }
}
