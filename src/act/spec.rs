//! Activation specs: what users write in ultralytics YAML and on the command line
//! (`nn.LeakyReLU(0.1)`, `leaky_relu`, `MetaAconC(r=16)`, `True`), parsed into a typed
//! [`ActSpec`] without evaluating anything.

use std::fmt;

use super::catalog::{ActKind, ParamDef, ParamType};

/// How GELU is computed, as `torch.nn.GELU(approximate=...)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeluApprox {
    None,
    Tanh,
}

/// A fully resolved activation: the kind plus every parameter, defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub enum ActSpec {
    Identity,
    Relu,
    Rrelu {
        lower: f64,
        upper: f64,
    },
    Hardtanh {
        min_val: f64,
        max_val: f64,
    },
    Relu6,
    Sigmoid,
    Hardsigmoid,
    Tanh,
    Silu,
    Mish,
    Hardswish,
    Elu {
        alpha: f64,
    },
    Celu {
        alpha: f64,
    },
    Selu,
    /// Gated linear unit over `dim` (the channel dimension in a Conv block).
    Glu {
        dim: i64,
    },
    Gelu {
        approximate: GeluApprox,
    },
    Hardshrink {
        lambd: f64,
    },
    LeakyRelu {
        negative_slope: f64,
    },
    LogSigmoid,
    Softplus {
        beta: f64,
        threshold: f64,
    },
    Softshrink {
        lambd: f64,
    },
    /// `num_parameters` = 1 (one slope per layer), the layer's channel count, or -1
    /// (one slope per channel of whichever layer it is built in).
    Prelu {
        num_parameters: i64,
        init: f64,
    },
    Softsign,
    Tanhshrink,
    Softmin {
        dim: i64,
    },
    Softmax {
        dim: i64,
    },
    Softmax2d,
    LogSoftmax {
        dim: i64,
    },
    Frelu {
        k: i64,
    },
    AconC,
    MetaAconC {
        r: i64,
    },
}

/// A Conv block's `act` argument in ultralytics YAML: `True` means the model's default.
#[derive(Debug, Clone, PartialEq)]
pub enum ActArg {
    Default,
    Spec(ActSpec),
}

/// A literal in a spec's argument list.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Float(f64),
    Int(i64),
    Bool(bool),
    Str(String),
    None,
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // `{:?}` prints floats the way Python's repr does: 0.1, 1.0, 1e-20.
            Value::Float(v) => write!(f, "{v:?}"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{}", if *v { "True" } else { "False" }),
            Value::Str(s) => write!(f, "'{s}'"),
            Value::None => write!(f, "None"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("cannot parse activation spec `{spec}`: {reason}")]
    Syntax { spec: String, reason: String },
    #[error("unknown activation `{name}`; did you mean {}? (`actyolo acts list` shows them all)", .suggestions.join(", "))]
    UnknownName {
        name: String,
        suggestions: Vec<String>,
    },
    #[error("{activation}: argument `{argument}`: {message}")]
    BadArgument {
        activation: &'static str,
        argument: String,
        message: String,
    },
}

impl ActSpec {
    /// Parses a spec such as `nn.LeakyReLU(negative_slope=0.1)`, `leaky_relu` or `MetaAconC(r=8)`.
    pub fn parse(text: &str) -> Result<ActSpec, SpecError> {
        match ActArg::parse(text)? {
            ActArg::Spec(spec) => Ok(spec),
            ActArg::Default => Err(SpecError::Syntax {
                spec: text.to_string(),
                reason: "`True` means the model's default activation and is only valid as a Conv `act` argument".into(),
            }),
        }
    }

    pub fn kind(&self) -> ActKind {
        use ActSpec as S;
        match self {
            S::Identity => ActKind::Identity,
            S::Relu => ActKind::Relu,
            S::Rrelu { .. } => ActKind::Rrelu,
            S::Hardtanh { .. } => ActKind::Hardtanh,
            S::Relu6 => ActKind::Relu6,
            S::Sigmoid => ActKind::Sigmoid,
            S::Hardsigmoid => ActKind::Hardsigmoid,
            S::Tanh => ActKind::Tanh,
            S::Silu => ActKind::Silu,
            S::Mish => ActKind::Mish,
            S::Hardswish => ActKind::Hardswish,
            S::Elu { .. } => ActKind::Elu,
            S::Celu { .. } => ActKind::Celu,
            S::Selu => ActKind::Selu,
            S::Glu { .. } => ActKind::Glu,
            S::Gelu { .. } => ActKind::Gelu,
            S::Hardshrink { .. } => ActKind::Hardshrink,
            S::LeakyRelu { .. } => ActKind::LeakyRelu,
            S::LogSigmoid => ActKind::LogSigmoid,
            S::Softplus { .. } => ActKind::Softplus,
            S::Softshrink { .. } => ActKind::Softshrink,
            S::Prelu { .. } => ActKind::Prelu,
            S::Softsign => ActKind::Softsign,
            S::Tanhshrink => ActKind::Tanhshrink,
            S::Softmin { .. } => ActKind::Softmin,
            S::Softmax { .. } => ActKind::Softmax,
            S::Softmax2d => ActKind::Softmax2d,
            S::LogSoftmax { .. } => ActKind::LogSoftmax,
            S::Frelu { .. } => ActKind::Frelu,
            S::AconC => ActKind::AconC,
            S::MetaAconC { .. } => ActKind::MetaAconC,
        }
    }

    /// How many channels the preceding conv must produce per output channel: GLU halves them.
    pub fn channel_factor(&self) -> usize {
        match self {
            ActSpec::Glu { .. } => 2,
            _ => 1,
        }
    }

    /// The parameter values in the order of the kind's [`ParamDef`] table (excluding `inplace`).
    fn values(&self) -> Vec<Value> {
        use ActSpec as S;
        use Value::{Float as F, Int as I};
        match self {
            S::Rrelu { lower, upper } => vec![F(*lower), F(*upper)],
            S::Hardtanh { min_val, max_val } => vec![F(*min_val), F(*max_val)],
            S::Elu { alpha } | S::Celu { alpha } => vec![F(*alpha)],
            S::Glu { dim } | S::Softmin { dim } | S::Softmax { dim } | S::LogSoftmax { dim } => {
                vec![I(*dim)]
            }
            S::Gelu { approximate } => vec![Value::Str(
                match approximate {
                    GeluApprox::None => "none",
                    GeluApprox::Tanh => "tanh",
                }
                .into(),
            )],
            S::Hardshrink { lambd } | S::Softshrink { lambd } => vec![F(*lambd)],
            S::LeakyRelu { negative_slope } => vec![F(*negative_slope)],
            S::Softplus { beta, threshold } => vec![F(*beta), F(*threshold)],
            S::Prelu {
                num_parameters,
                init,
            } => vec![I(*num_parameters), F(*init)],
            S::Frelu { k } => vec![I(*k)],
            S::MetaAconC { r } => vec![I(*r)],
            _ => vec![],
        }
    }

    /// Builds the typed spec from arguments resolved against the kind's table, and checks them.
    fn from_values(kind: ActKind, v: &[Value]) -> Result<ActSpec, SpecError> {
        use ActSpec as S;
        let name = kind.info().name;
        let bad = |argument: &str, message: String| SpecError::BadArgument {
            activation: name,
            argument: argument.to_string(),
            message,
        };
        let f = |i: usize| v[i].as_f64();
        let i = |i: usize| v[i].as_i64();
        let channel_dim = |dim: i64| {
            if (-4..=3).contains(&dim) {
                Ok(dim)
            } else {
                Err(bad("dim", format!("{dim} is not a dimension of an NCHW tensor; allowed: -4..=3 (1 is the channel dimension)")))
            }
        };
        Ok(match kind {
            ActKind::Identity => S::Identity,
            ActKind::Relu => S::Relu,
            ActKind::Rrelu => {
                let (lower, upper) = (f(0), f(1));
                if lower > upper {
                    return Err(bad(
                        "lower",
                        format!("lower ({lower}) must not exceed upper ({upper})"),
                    ));
                }
                S::Rrelu { lower, upper }
            }
            ActKind::Hardtanh => {
                let (min_val, max_val) = (f(0), f(1));
                if max_val <= min_val {
                    return Err(bad(
                        "max_val",
                        format!("max_val ({max_val}) must be greater than min_val ({min_val})"),
                    ));
                }
                S::Hardtanh { min_val, max_val }
            }
            ActKind::Relu6 => S::Relu6,
            ActKind::Sigmoid => S::Sigmoid,
            ActKind::Hardsigmoid => S::Hardsigmoid,
            ActKind::Tanh => S::Tanh,
            ActKind::Silu => S::Silu,
            ActKind::Mish => S::Mish,
            ActKind::Hardswish => S::Hardswish,
            ActKind::Elu => S::Elu { alpha: f(0) },
            ActKind::Celu => {
                let alpha = f(0);
                if alpha == 0.0 {
                    return Err(bad("alpha", "must not be 0 (CELU divides by alpha)".into()));
                }
                S::Celu { alpha }
            }
            ActKind::Selu => S::Selu,
            ActKind::Glu => {
                let dim = i(0);
                if dim != 1 && dim != -3 {
                    return Err(bad("dim", format!("{dim}: in a Conv block GLU gates the channel dimension; allowed: 1 or -3")));
                }
                S::Glu { dim }
            }
            ActKind::Gelu => S::Gelu {
                approximate: match v[0].as_str() {
                    "tanh" => GeluApprox::Tanh,
                    _ => GeluApprox::None,
                },
            },
            ActKind::Hardshrink => S::Hardshrink { lambd: f(0) },
            ActKind::LeakyRelu => S::LeakyRelu {
                negative_slope: f(0),
            },
            ActKind::LogSigmoid => S::LogSigmoid,
            ActKind::Softplus => {
                let (beta, threshold) = (f(0), f(1));
                if beta == 0.0 {
                    return Err(bad(
                        "beta",
                        "must not be 0 (Softplus divides by beta)".into(),
                    ));
                }
                S::Softplus { beta, threshold }
            }
            ActKind::Softshrink => {
                let lambd = f(0);
                if lambd < 0.0 {
                    return Err(bad("lambd", format!("{lambd}: must be >= 0")));
                }
                S::Softshrink { lambd }
            }
            ActKind::Prelu => {
                let num_parameters = i(0);
                if num_parameters == 0 || num_parameters < -1 {
                    return Err(bad("num_parameters", format!("{num_parameters}: allowed: 1 (one slope), the layer's channel count, or -1 (one slope per channel of each layer)")));
                }
                S::Prelu {
                    num_parameters,
                    init: f(1),
                }
            }
            ActKind::Softsign => S::Softsign,
            ActKind::Tanhshrink => S::Tanhshrink,
            ActKind::Softmin => S::Softmin {
                dim: channel_dim(i(0))?,
            },
            ActKind::Softmax => S::Softmax {
                dim: channel_dim(i(0))?,
            },
            ActKind::Softmax2d => S::Softmax2d,
            ActKind::LogSoftmax => S::LogSoftmax {
                dim: channel_dim(i(0))?,
            },
            ActKind::Frelu => {
                let k = i(0);
                if k < 1 || k % 2 == 0 {
                    return Err(bad(
                        "k",
                        format!(
                            "{k}: the depthwise kernel size must be odd and >= 1 (3 in the paper)"
                        ),
                    ));
                }
                S::Frelu { k }
            }
            ActKind::AconC => S::AconC,
            ActKind::MetaAconC => {
                let r = i(0);
                if r < 1 {
                    return Err(bad("r", format!("{r}: the reduction ratio must be >= 1")));
                }
                S::MetaAconC { r }
            }
        })
    }
}

/// Parses a comma-separated list of specs (see [`split_list`]).
pub fn parse_list(text: &str) -> Result<Vec<ActSpec>, SpecError> {
    split_list(text).into_iter().map(ActSpec::parse).collect()
}

/// Splits a comma-separated list of specs only at top-level commas, so that
/// `silu,nn.Hardtanh(-2, 2),relu` is three specs; each is trimmed.
pub fn split_list(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => depth = depth.saturating_sub(1),
            (None, ',') if depth == 0 => {
                parts.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(text[start..].trim());
    parts
}

impl fmt::Display for ActSpec {
    /// The canonical spec with every parameter, e.g. `nn.LeakyReLU(negative_slope=0.01)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = self.kind().info();
        let prefix = if info.torch { "nn." } else { "" };
        let args: Vec<String> = info
            .params
            .iter()
            .filter(|p| p.name != "inplace")
            .zip(self.values())
            .map(|(p, v)| format!("{}={}", p.name, v))
            .collect();
        write!(f, "{prefix}{}({})", info.name, args.join(", "))
    }
}

impl Value {
    fn as_f64(&self) -> f64 {
        match self {
            Value::Float(v) => *v,
            Value::Int(v) => *v as f64,
            _ => f64::NAN,
        }
    }
    fn as_i64(&self) -> i64 {
        match self {
            Value::Int(v) => *v,
            _ => 0,
        }
    }
    fn as_str(&self) -> &str {
        match self {
            Value::Str(s) => s,
            _ => "",
        }
    }
    fn type_name(&self) -> &'static str {
        match self {
            Value::Float(_) => "a float",
            Value::Int(_) => "an int",
            Value::Bool(_) => "a bool",
            Value::Str(_) => "a string",
            Value::None => "None",
        }
    }
}

impl ActArg {
    /// Parses a Conv `act` argument: `True`, `False` (identity) or any activation spec.
    pub fn parse(text: &str) -> Result<ActArg, SpecError> {
        let syntax = |reason: String| SpecError::Syntax {
            spec: text.to_string(),
            reason,
        };
        let trimmed = text.trim();
        match trimmed {
            "True" | "true" => return Ok(ActArg::Default),
            "False" | "false" => return Ok(ActArg::Spec(ActSpec::Identity)),
            "" => return Err(syntax("it is empty; write e.g. `nn.SiLU()`".into())),
            _ => {}
        }
        let (head, args_text) = match trimmed.find('(') {
            Some(open) => {
                let Some(inner) = trimmed[open + 1..].strip_suffix(')') else {
                    return Err(syntax("the argument list must end with `)`".into()));
                };
                (&trimmed[..open], Some(inner))
            }
            None => (trimmed, None),
        };
        let name = strip_prefix_ignore_case(strip_prefix_ignore_case(head.trim(), "torch."), "nn.");
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(syntax(format!(
                "`{}` is not an activation name",
                head.trim()
            )));
        }
        let kind = ActKind::lookup(name).ok_or_else(|| SpecError::UnknownName {
            name: name.to_string(),
            suggestions: ActKind::closest(name, 3),
        })?;
        let args = match args_text {
            Some(inner) => split_args(inner).map_err(syntax)?,
            None => vec![],
        };
        let values = resolve_args(kind, &args)?;
        ActSpec::from_values(kind, &values).map(ActArg::Spec)
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> &'a str {
    match text.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => &text[prefix.len()..],
        _ => text,
    }
}

/// One written argument: `0.1` or `negative_slope=0.1`.
struct WrittenArg {
    keyword: Option<String>,
    value: Value,
}

/// Splits `0.1, inplace=True` into literals; strings may hold commas.
fn split_args(inner: &str) -> Result<Vec<WrittenArg>, String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for c in inner.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c);
            }
            (None, '\'' | '"') => {
                quote = Some(c);
                current.push(c);
            }
            (None, ',') => parts.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    if quote.is_some() {
        return Err("a string argument is not closed".into());
    }
    parts.push(current);
    if parts.len() == 1 && parts[0].trim().is_empty() {
        return Ok(vec![]);
    }
    let mut args = Vec::new();
    for part in parts {
        let part = part.trim();
        if part.is_empty() {
            return Err("an argument is empty (two commas in a row?)".into());
        }
        let (keyword, literal) = match part.split_once('=') {
            Some((k, v)) if !k.contains(['\'', '"']) => {
                let k = k.trim();
                if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("`{k}` is not a keyword"));
                }
                (Some(k.to_string()), v.trim())
            }
            _ => (None, part),
        };
        let value = parse_literal(literal).ok_or_else(|| {
            format!("`{literal}` is not a literal (a number, True, False, None or a quoted string); expressions are never evaluated")
        })?;
        args.push(WrittenArg { keyword, value });
    }
    Ok(args)
}

fn parse_literal(text: &str) -> Option<Value> {
    match text {
        "True" => return Some(Value::Bool(true)),
        "False" => return Some(Value::Bool(false)),
        "None" => return Some(Value::None),
        _ => {}
    }
    for q in ['\'', '"'] {
        if let Some(s) = text.strip_prefix(q).and_then(|t| t.strip_suffix(q)) {
            return Some(Value::Str(s.to_string()));
        }
    }
    if let Ok(v) = text.parse::<i64>() {
        return Some(Value::Int(v));
    }
    // Only plain decimal literals: Rust would also accept `inf`/`nan`, Python would not.
    let numeric = text
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    if numeric {
        if let Ok(v) = text.parse::<f64>() {
            return Some(Value::Float(v));
        }
    }
    None
}

/// Matches written arguments to the kind's parameters, PyTorch-style, and checks their types.
fn resolve_args(kind: ActKind, args: &[WrittenArg]) -> Result<Vec<Value>, SpecError> {
    let info = kind.info();
    let bad = |argument: &str, message: String| SpecError::BadArgument {
        activation: info.name,
        argument: argument.to_string(),
        message,
    };
    let params = info.params;
    let mut slots: Vec<Option<Value>> = vec![None; params.len()];
    let mut seen_keyword = false;
    for (position, arg) in args.iter().enumerate() {
        let index = match &arg.keyword {
            Some(k) => {
                seen_keyword = true;
                params.iter().position(|p| p.name == k).ok_or_else(|| {
                    bad(
                        k,
                        format!(
                            "unknown keyword; {} takes {}",
                            info.name,
                            describe_params(params)
                        ),
                    )
                })?
            }
            None if seen_keyword => {
                return Err(bad(
                    &format!("#{}", position + 1),
                    "a positional argument follows a keyword argument".into(),
                ));
            }
            None if position >= params.len() => {
                return Err(bad(
                    &format!("#{}", position + 1),
                    format!(
                        "too many arguments; {} takes {}",
                        info.name,
                        describe_params(params)
                    ),
                ));
            }
            None => position,
        };
        let param = &params[index];
        if slots[index].is_some() {
            return Err(bad(param.name, "given more than once".into()));
        }
        slots[index] = Some(check_type(param, &arg.value).map_err(|m| bad(param.name, m))?);
    }
    Ok(params
        .iter()
        .zip(slots)
        .filter(|(p, _)| p.name != "inplace")
        .map(|(p, v)| v.unwrap_or_else(|| p.default.to_value()))
        .collect())
}

fn describe_params(params: &[ParamDef]) -> String {
    if params.is_empty() {
        return "no arguments".into();
    }
    params
        .iter()
        .map(|p| format!("{}={}", p.name, p.default.to_value()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_type(param: &ParamDef, value: &Value) -> Result<Value, String> {
    let wrong =
        |expected: &str| format!("expected {expected}, got {} ({value})", value.type_name());
    match (param.ty, value) {
        // A literal such as 1e400 reads as infinity, which no activation argument can be.
        (ParamType::Float, Value::Float(v)) if !v.is_finite() => Err(format!(
            "{value} is not a finite number (a literal beyond float range?)"
        )),
        (ParamType::Float, Value::Float(_)) => Ok(value.clone()),
        (ParamType::Float, Value::Int(v)) => Ok(Value::Float(*v as f64)),
        (ParamType::Float, _) => Err(wrong("a number")),
        (ParamType::Int, Value::Int(_)) => Ok(value.clone()),
        (ParamType::Int, _) => Err(wrong("an int")),
        // `dim=None` is PyTorch's implicit dim, which is 1 for a 4-D tensor.
        (ParamType::Dim, Value::Int(_)) => Ok(value.clone()),
        (ParamType::Dim, Value::None) => Ok(Value::Int(1)),
        (ParamType::Dim, _) => Err(wrong("an int or None")),
        (ParamType::Bool, Value::Bool(_)) => Ok(value.clone()),
        (ParamType::Bool, _) => Err(wrong("True or False")),
        (ParamType::Choice(allowed), Value::Str(s)) if allowed.contains(&s.as_str()) => {
            Ok(value.clone())
        }
        (ParamType::Choice(allowed), _) => Err(format!(
            "{value} is not allowed; allowed: {}",
            allowed
                .iter()
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}
