//! Activation specs: what users write in ultralytics YAML and on the command line
//! (`nn.LeakyReLU(0.1)`, `leaky_relu`, `MetaAconC(r=16)`, `True`), parsed into a typed
//! [`ActSpec`] without evaluating anything.

use std::fmt;
use std::sync::Arc;

use super::registry::{ActDef, Args, ParamDef, ParamType, Value};
use super::zoo::{closest, lookup, IDENTITY};
use crate::ops::elementwise::Elementwise;

/// A fully resolved activation: its declaration and every argument, defaults filled in.
#[derive(Clone)]
pub struct ActSpec {
    def: &'static ActDef,
    args: Args,
}

/// A Conv block's `act` argument in ultralytics YAML: `True` means the model's default.
#[derive(Debug, Clone, PartialEq)]
pub enum ActArg {
    Default,
    Spec(ActSpec),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("cannot parse activation spec `{spec}`")]
    Syntax {
        spec: String,
        #[source]
        reason: SyntaxError,
    },
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
    #[error("{activation}: argument `{argument}`")]
    BadValue {
        activation: &'static str,
        argument: &'static str,
        #[source]
        reason: ValueError,
    },
}

/// Why a spec is not written as `name(arguments)`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SyntaxError {
    #[error("it is empty; write e.g. `nn.SiLU()`")]
    Empty,
    #[error(
        "`True` means the model's default activation and is only valid as a Conv `act` argument"
    )]
    DefaultOutsideConv,
    #[error("the argument list must end with `)`")]
    Unclosed,
    #[error("`{0}` is not an activation name")]
    Name(String),
    #[error("a string argument is not closed")]
    UnclosedString,
    #[error("an argument is empty (two commas in a row?)")]
    EmptyArgument,
    #[error("`{0}` is not a keyword")]
    Keyword(String),
    #[error("`{0}` is not a literal (a number, True, False, None or a quoted string); expressions are never evaluated")]
    Literal(String),
}

/// Why a value does not fit its parameter's type.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("{0} is not a finite number (a literal beyond float range?)")]
    NotFinite(Value),
    #[error("expected {expected}, got {} ({value})", value.type_name())]
    Type {
        expected: &'static str,
        value: Value,
    },
    #[error("{value} is not allowed; allowed: {}", allowed.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(", "))]
    NotAllowed {
        value: Value,
        allowed: &'static [&'static str],
    },
}

impl ActSpec {
    /// Parses a spec such as `nn.LeakyReLU(negative_slope=0.1)`, `leaky_relu` or `MetaAconC(r=8)`.
    pub fn parse(text: &str) -> Result<ActSpec, SpecError> {
        match ActArg::parse(text)? {
            ActArg::Spec(spec) => Ok(spec),
            ActArg::Default => Err(SpecError::Syntax {
                spec: text.to_string(),
                reason: SyntaxError::DefaultOutsideConv,
            }),
        }
    }

    /// The activation with every argument at its default.
    pub fn of(def: &'static ActDef) -> ActSpec {
        let args = def
            .params
            .iter()
            .filter(|p| p.name != "inplace")
            .map(|p| p.default.to_value())
            .collect();
        ActSpec {
            def,
            args: Args::new(args),
        }
    }

    /// SiLU, the default activation of YOLO models.
    pub fn silu() -> ActSpec {
        ActSpec::of(&super::zoo::SILU)
    }

    /// The identity (`act=False` in a Conv row).
    pub fn identity() -> ActSpec {
        ActSpec::of(&IDENTITY)
    }

    pub fn def(&self) -> &'static ActDef {
        self.def
    }

    pub fn args(&self) -> &Args {
        &self.args
    }

    pub fn is_identity(&self) -> bool {
        std::ptr::eq(self.def, &IDENTITY)
    }

    /// How many channels the preceding conv must produce per output channel: GLU halves them.
    pub fn channel_factor(&self) -> usize {
        self.def.channel_factor
    }

    /// The elementwise function it computes in inference, when it is one.
    pub fn elementwise(&self) -> Option<Arc<dyn Elementwise>> {
        self.def.elementwise.map(|f| f(&self.args))
    }

    /// Resolves written arguments against the declaration, and checks them.
    fn resolve(def: &'static ActDef, written: &[WrittenArg]) -> Result<ActSpec, SpecError> {
        let args = Args::new(resolve_args(def, written)?);
        (def.check)(&args).map_err(|e| SpecError::BadArgument {
            activation: def.name,
            argument: e.argument.to_string(),
            message: e.message,
        })?;
        Ok(ActSpec { def, args })
    }
}

impl PartialEq for ActSpec {
    fn eq(&self, other: &ActSpec) -> bool {
        std::ptr::eq(self.def, other.def) && self.args == other.args
    }
}

impl fmt::Debug for ActSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
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
        let def = self.def;
        let prefix = if def.torch { "nn." } else { "" };
        let args: Vec<String> = def
            .params
            .iter()
            .filter(|p| p.name != "inplace")
            .zip(self.args.values())
            .map(|(p, v)| format!("{}={}", p.name, v))
            .collect();
        write!(f, "{prefix}{}({})", def.name, args.join(", "))
    }
}

impl ActArg {
    /// Parses a Conv `act` argument: `True`, `False` (identity) or any activation spec.
    pub fn parse(text: &str) -> Result<ActArg, SpecError> {
        let syntax = |reason: SyntaxError| SpecError::Syntax {
            spec: text.to_string(),
            reason,
        };
        let trimmed = text.trim();
        match trimmed {
            "True" | "true" => return Ok(ActArg::Default),
            "False" | "false" => return Ok(ActArg::Spec(ActSpec::identity())),
            "" => return Err(syntax(SyntaxError::Empty)),
            _ => {}
        }
        let (head, args_text) = match trimmed.find('(') {
            Some(open) => {
                let Some(inner) = trimmed[open + 1..].strip_suffix(')') else {
                    return Err(syntax(SyntaxError::Unclosed));
                };
                (&trimmed[..open], Some(inner))
            }
            None => (trimmed, None),
        };
        let name = strip_prefix_ignore_case(strip_prefix_ignore_case(head.trim(), "torch."), "nn.");
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(syntax(SyntaxError::Name(head.trim().to_string())));
        }
        let def = lookup(name).ok_or_else(|| SpecError::UnknownName {
            name: name.to_string(),
            suggestions: closest(name, 3),
        })?;
        let args = match args_text {
            Some(inner) => split_args(inner).map_err(syntax)?,
            None => vec![],
        };
        ActSpec::resolve(def, &args).map(ActArg::Spec)
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
fn split_args(inner: &str) -> Result<Vec<WrittenArg>, SyntaxError> {
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
        return Err(SyntaxError::UnclosedString);
    }
    parts.push(current);
    if parts.len() == 1 && parts[0].trim().is_empty() {
        return Ok(vec![]);
    }
    let mut args = Vec::new();
    for part in parts {
        let part = part.trim();
        if part.is_empty() {
            return Err(SyntaxError::EmptyArgument);
        }
        let (keyword, literal) = match part.split_once('=') {
            Some((k, v)) if !k.contains(['\'', '"']) => {
                let k = k.trim();
                if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(SyntaxError::Keyword(k.to_string()));
                }
                (Some(k.to_string()), v.trim())
            }
            _ => (None, part),
        };
        let value =
            parse_literal(literal).ok_or_else(|| SyntaxError::Literal(literal.to_string()))?;
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

/// Matches written arguments to the declaration's parameters, PyTorch-style, and checks
/// their types.
fn resolve_args(info: &'static ActDef, args: &[WrittenArg]) -> Result<Vec<Value>, SpecError> {
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
        let value = check_type(param, &arg.value).map_err(|reason| SpecError::BadValue {
            activation: info.name,
            argument: param.name,
            reason,
        })?;
        slots[index] = Some(value);
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

fn check_type(param: &ParamDef, value: &Value) -> Result<Value, ValueError> {
    let wrong = |expected: &'static str| ValueError::Type {
        expected,
        value: value.clone(),
    };
    match (param.ty, value) {
        // A literal such as 1e400 reads as infinity, which no activation argument can be.
        (ParamType::Float, Value::Float(v)) if !v.is_finite() => {
            Err(ValueError::NotFinite(value.clone()))
        }
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
        (ParamType::Choice(allowed), _) => Err(ValueError::NotAllowed {
            value: value.clone(),
            allowed,
        }),
    }
}
