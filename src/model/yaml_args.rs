//! Reading a YAML row's arguments as ultralytics' `parse_model` does: positional, with
//! PyTorch-like defaults, `None` for "not given", and the model-level names `nc` and
//! `anchors`; each mistake names the argument and what is allowed.

use serde_yaml::Value;

use crate::act::{ActArg, ActSpec, SpecError};

/// The largest class count a model may have (ultralytics has none; the largest public
/// detection vocabularies have a few thousand classes).
pub const MAX_NC: usize = 100_000;

/// What is wrong with a row of the model YAML (the config names the file and the row).
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    #[error("takes {takes} argument{} ({}), got {got}", if names.len() == 1 { "" } else { "s" }, names.join(", "))]
    Count {
        takes: String,
        names: &'static [&'static str],
        got: usize,
    },
    #[error("argument {index} (`{name}`): expected {expected}, got {got}")]
    Argument {
        index: usize,
        name: &'static str,
        expected: String,
        got: String,
    },
    #[error("argument {index} (`act`)")]
    Activation {
        index: usize,
        #[source]
        source: SpecError,
    },
    #[error("argument {index} (`anchors`)")]
    Anchors {
        index: usize,
        #[source]
        source: AnchorError,
    },
    /// A row that is well formed but does not fit the model (wording of its own).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

/// What a row may refer to by name.
pub struct RowContext<'a> {
    pub nc: usize,
    pub anchors: &'a [Vec<(f64, f64)>],
}

/// Reads positional arguments with PyTorch-like defaults and typed errors.
pub struct RowArgs<'a> {
    values: &'a [Value],
    /// Parameter names in order, for messages and the argument count check.
    names: &'static [&'static str],
}

impl<'a> RowArgs<'a> {
    pub fn new(
        values: &'a [Value],
        names: &'static [&'static str],
        required: usize,
    ) -> Result<Self, RowError> {
        if values.len() < required || values.len() > names.len() {
            return Err(RowError::Count {
                takes: if required == names.len() {
                    format!("{required}")
                } else {
                    format!("{required} to {}", names.len())
                },
                names,
                got: values.len(),
            });
        }
        Ok(RowArgs { values, names })
    }

    pub fn get(&self, i: usize) -> Option<&Value> {
        self.values.get(i).filter(|v| !is_none(v))
    }

    pub fn bad(&self, i: usize, expected: &str) -> RowError {
        RowError::Argument {
            index: i,
            name: self.names[i],
            expected: expected.to_string(),
            got: show(&self.values[i]),
        }
    }

    pub fn usize_or(&self, i: usize, default: usize) -> Result<usize, RowError> {
        match self.get(i) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .filter(|n| *n >= 1 || self.names[i] == "p")
                .map(|n| n as usize)
                .ok_or_else(|| self.bad(i, "a positive integer")),
        }
    }

    pub fn opt_usize(&self, i: usize) -> Result<Option<usize>, RowError> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.bad(i, "an integer or None")),
        }
    }

    pub fn bool_or(&self, i: usize, default: bool) -> Result<bool, RowError> {
        match self.get(i) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.bad(i, "True or False")),
        }
    }

    pub fn f64_or(&self, i: usize, default: f64) -> Result<f64, RowError> {
        match self.get(i) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.bad(i, "a number")),
        }
    }

    pub fn usize_list_or(&self, i: usize, default: &[usize]) -> Result<Vec<usize>, RowError> {
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

    pub fn act(&self, i: usize) -> Result<ActArg, RowError> {
        match self.values.get(i) {
            None => Ok(ActArg::Default),
            Some(Value::Bool(true)) => Ok(ActArg::Default),
            Some(Value::Bool(false)) => Ok(ActArg::Spec(ActSpec::identity())),
            Some(Value::String(s)) => {
                ActArg::parse(s).map_err(|source| RowError::Activation { index: i, source })
            }
            Some(_) => Err(self.bad(
                i,
                "True, False or an activation spec such as nn.LeakyReLU(0.1)",
            )),
        }
    }

    pub fn c2(&self) -> Result<usize, RowError> {
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
pub fn show(value: &Value) -> String {
    serde_yaml::to_string(value).map_or_else(|_| format!("{value:?}"), |s| s.trim().to_string())
}

pub fn is_none(v: &Value) -> bool {
    matches!(v, Value::Null) || v.as_str() == Some("None")
}

/// What is wrong with an `anchors:` value.
#[derive(Debug, thiserror::Error)]
pub enum AnchorError {
    #[error("an anchor count must be at least 1")]
    ZeroCount,
    #[error("expected a list of [w, h, ...] lists per level, or an anchor count")]
    NotLevels,
    #[error("level {level}: expected a list of numbers")]
    LevelNotList { level: usize },
    #[error("level {level}: `{value}` is not a number")]
    NotNumber { level: usize, value: String },
    #[error("level {level}: expected w, h pairs, got {count} numbers")]
    OddCount { level: usize, count: usize },
    #[error("every level needs the same, non-zero number of anchors")]
    Uneven,
}

/// `anchors:` is a list of per-level `[w, h, w, h, ...]` lists, or an anchor count per
/// level (placeholders that AutoAnchor replaces; the level count then comes from Detect).
pub fn parse_anchors(v: &Value) -> Result<Vec<Vec<(f64, f64)>>, AnchorError> {
    if let Some(count) = v.as_u64() {
        if count == 0 {
            return Err(AnchorError::ZeroCount);
        }
        // As parse_model: [list(range(count * 2))] per level; three levels unless Detect says.
        let placeholder: Vec<(f64, f64)> = (0..count)
            .map(|i| ((2 * i) as f64, (2 * i + 1) as f64))
            .collect();
        return Ok(vec![placeholder; 3]);
    }
    let levels = v.as_sequence().ok_or(AnchorError::NotLevels)?;
    let mut out = Vec::new();
    for (level, row) in levels.iter().enumerate() {
        let values: Vec<f64> = row
            .as_sequence()
            .ok_or(AnchorError::LevelNotList { level })?
            .iter()
            .map(|x| {
                x.as_f64().ok_or_else(|| AnchorError::NotNumber {
                    level,
                    value: show(x),
                })
            })
            .collect::<Result<_, _>>()?;
        if values.is_empty() || !values.len().is_multiple_of(2) {
            return Err(AnchorError::OddCount {
                level,
                count: values.len(),
            });
        }
        out.push(values.chunks(2).map(|p| (p[0], p[1])).collect());
    }
    let na = out.first().map_or(0, Vec::len);
    if na == 0 || out.iter().any(|l| l.len() != na) {
        return Err(AnchorError::Uneven);
    }
    Ok(out)
}
