//! Reading a YAML row's arguments as ultralytics' `parse_model` does: positional, with
//! PyTorch-like defaults, `None` for "not given", and the model-level names `nc` and
//! `anchors`; each mistake names the argument and what is allowed.

use serde_yaml::Value;

use crate::act::{ActArg, ActSpec};

/// The largest class count a model may have (ultralytics has none; the largest public
/// detection vocabularies have a few thousand classes).
pub const MAX_NC: usize = 100_000;

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
        Ok(RowArgs { values, names })
    }

    pub fn get(&self, i: usize) -> Option<&Value> {
        self.values.get(i).filter(|v| !is_none(v))
    }

    pub fn bad(&self, i: usize, expected: &str) -> String {
        format!(
            "argument {} (`{}`): expected {expected}, got {}",
            i,
            self.names[i],
            show(&self.values[i])
        )
    }

    pub fn usize_or(&self, i: usize, default: usize) -> Result<usize, String> {
        match self.get(i) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .filter(|n| *n >= 1 || self.names[i] == "p")
                .map(|n| n as usize)
                .ok_or_else(|| self.bad(i, "a positive integer")),
        }
    }

    pub fn opt_usize(&self, i: usize) -> Result<Option<usize>, String> {
        match self.get(i) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.bad(i, "an integer or None")),
        }
    }

    pub fn bool_or(&self, i: usize, default: bool) -> Result<bool, String> {
        match self.get(i) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.bad(i, "True or False")),
        }
    }

    pub fn f64_or(&self, i: usize, default: f64) -> Result<f64, String> {
        match self.get(i) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.bad(i, "a number")),
        }
    }

    pub fn usize_list_or(&self, i: usize, default: &[usize]) -> Result<Vec<usize>, String> {
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

    pub fn act(&self, i: usize) -> Result<ActArg, String> {
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

    pub fn c2(&self) -> Result<usize, String> {
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

/// `anchors:` is a list of per-level `[w, h, w, h, ...]` lists, or an anchor count per
/// level (placeholders that AutoAnchor replaces; the level count then comes from Detect).
pub fn parse_anchors(v: &Value) -> Result<Vec<Vec<(f64, f64)>>, String> {
    if let Some(count) = v.as_u64() {
        if count == 0 {
            return Err("an anchor count must be at least 1".into());
        }
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
