//! The catalogue of activations: names, PyTorch signatures, formulas and properties.
//! The parser, `acts list` and the plots all read this one table.

use serde::Serialize;

use super::spec::Value;

/// Every activation actyolo knows, without parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActKind {
    Identity,
    Relu,
    Rrelu,
    Hardtanh,
    Relu6,
    Sigmoid,
    Hardsigmoid,
    Tanh,
    Silu,
    Mish,
    Hardswish,
    Elu,
    Celu,
    Selu,
    Glu,
    Gelu,
    Hardshrink,
    LeakyRelu,
    LogSigmoid,
    Softplus,
    Softshrink,
    Prelu,
    Softsign,
    Tanhshrink,
    Softmin,
    Softmax,
    Softmax2d,
    LogSoftmax,
    Frelu,
    AconC,
    MetaAconC,
}

#[derive(Debug, Clone, Copy)]
pub enum ParamType {
    Float,
    Int,
    Bool,
    /// An int dimension, or `None` for PyTorch's implicit choice (1 on NCHW).
    Dim,
    Choice(&'static [&'static str]),
}

#[derive(Debug, Clone, Copy)]
pub enum ParamDefault {
    F(f64),
    I(i64),
    B(bool),
    S(&'static str),
}

impl ParamDefault {
    pub fn to_value(self) -> Value {
        match self {
            ParamDefault::F(v) => Value::Float(v),
            ParamDefault::I(v) => Value::Int(v),
            ParamDefault::B(v) => Value::Bool(v),
            ParamDefault::S(v) => Value::Str(v.to_string()),
        }
    }
}

/// One constructor parameter, in PyTorch's positional order.
#[derive(Debug, Clone, Copy)]
pub struct ParamDef {
    pub name: &'static str,
    pub ty: ParamType,
    pub default: ParamDefault,
}

/// Shape properties at the default (or initial) parameters; `None` where the notion
/// does not apply (channel-wise functions).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Properties {
    pub monotonic: Option<bool>,
    pub bounded_below: Option<bool>,
    pub bounded_above: Option<bool>,
    pub smooth: Option<bool>,
    pub zero_at_zero: Option<bool>,
}

pub struct KindInfo {
    pub kind: ActKind,
    /// The class name, as in `torch.nn` (or ultralytics for FReLU/ACON).
    pub name: &'static str,
    /// True for `torch.nn` classes, written with the `nn.` prefix.
    pub torch: bool,
    pub aliases: &'static [&'static str],
    pub params: &'static [ParamDef],
    pub formula: &'static str,
    pub learnable: bool,
    /// Output element depends only on the same input element (and can be plotted as a curve).
    pub pointwise: bool,
    pub properties: Properties,
}

const fn p(name: &'static str, ty: ParamType, default: ParamDefault) -> ParamDef {
    ParamDef { name, ty, default }
}
const INPLACE: ParamDef = p("inplace", ParamType::Bool, ParamDefault::B(false));
const fn props(m: bool, lo: bool, hi: bool, smooth: bool, zero: bool) -> Properties {
    Properties {
        monotonic: Some(m),
        bounded_below: Some(lo),
        bounded_above: Some(hi),
        smooth: Some(smooth),
        zero_at_zero: Some(zero),
    }
}
/// Softmax-like functions: values in [0, 1] (or <= 0 for LogSoftmax), no curve to speak of.
const fn channelwise(lo: bool, hi: bool) -> Properties {
    Properties {
        monotonic: None,
        bounded_below: Some(lo),
        bounded_above: Some(hi),
        smooth: Some(true),
        zero_at_zero: Some(false),
    }
}

use ParamDefault::{F, I, S};
use ParamType::{Dim, Float, Int};

macro_rules! kind {
    ($kind:ident, $name:literal, torch=$torch:literal, aliases=[$($alias:literal),*], params=[$($param:expr),*],
     $formula:literal, learnable=$learn:literal, pointwise=$pw:literal, $props:expr) => {
        KindInfo {
            kind: ActKind::$kind,
            name: $name,
            torch: $torch,
            aliases: &[$($alias),*],
            params: &[$($param),*],
            formula: $formula,
            learnable: $learn,
            pointwise: $pw,
            properties: $props,
        }
    };
}

pub static KINDS: &[KindInfo] = &[
    kind!(
        Relu,
        "ReLU",
        torch = true,
        aliases = [],
        params = [INPLACE],
        "max(0, x)",
        learnable = false,
        pointwise = true,
        props(true, true, false, false, true)
    ),
    kind!(
        Rrelu,
        "RReLU",
        torch = true,
        aliases = [],
        params = [
            p("lower", Float, F(0.125)),
            p("upper", Float, F(1.0 / 3.0)),
            INPLACE
        ],
        "x if x >= 0 else a*x; train: a ~ U(lower, upper) per element, eval: a = (lower+upper)/2",
        learnable = false,
        pointwise = true,
        props(true, false, false, false, true)
    ),
    kind!(
        Hardtanh,
        "Hardtanh",
        torch = true,
        aliases = [],
        params = [
            p("min_val", Float, F(-1.0)),
            p("max_val", Float, F(1.0)),
            INPLACE
        ],
        "clamp(x, min_val, max_val)",
        learnable = false,
        pointwise = true,
        props(true, true, true, false, true)
    ),
    kind!(
        Relu6,
        "ReLU6",
        torch = true,
        aliases = [],
        params = [INPLACE],
        "min(max(0, x), 6)",
        learnable = false,
        pointwise = true,
        props(true, true, true, false, true)
    ),
    kind!(
        Sigmoid,
        "Sigmoid",
        torch = true,
        aliases = [],
        params = [],
        "1 / (1 + exp(-x))",
        learnable = false,
        pointwise = true,
        props(true, true, true, true, false)
    ),
    kind!(
        Hardsigmoid,
        "Hardsigmoid",
        torch = true,
        aliases = [],
        params = [INPLACE],
        "min(max(x + 3, 0), 6) / 6",
        learnable = false,
        pointwise = true,
        props(true, true, true, false, false)
    ),
    kind!(
        Tanh,
        "Tanh",
        torch = true,
        aliases = [],
        params = [],
        "tanh(x)",
        learnable = false,
        pointwise = true,
        props(true, true, true, true, true)
    ),
    kind!(
        Silu,
        "SiLU",
        torch = true,
        aliases = ["swish"],
        params = [INPLACE],
        "x * sigmoid(x)",
        learnable = false,
        pointwise = true,
        props(false, true, false, true, true)
    ),
    kind!(
        Mish,
        "Mish",
        torch = true,
        aliases = [],
        params = [INPLACE],
        "x * tanh(softplus(x))",
        learnable = false,
        pointwise = true,
        props(false, true, false, true, true)
    ),
    kind!(
        Hardswish,
        "Hardswish",
        torch = true,
        aliases = [],
        params = [INPLACE],
        "x * min(max(x + 3, 0), 6) / 6",
        learnable = false,
        pointwise = true,
        props(false, true, false, false, true)
    ),
    kind!(
        Elu,
        "ELU",
        torch = true,
        aliases = [],
        params = [p("alpha", Float, F(1.0)), INPLACE],
        "x if x > 0 else alpha * (exp(x) - 1)",
        learnable = false,
        pointwise = true,
        props(true, true, false, true, true)
    ),
    kind!(
        Celu,
        "CELU",
        torch = true,
        aliases = [],
        params = [p("alpha", Float, F(1.0)), INPLACE],
        "max(0, x) + min(0, alpha * (exp(x / alpha) - 1))",
        learnable = false,
        pointwise = true,
        props(true, true, false, true, true)
    ),
    kind!(
        Selu,
        "SELU",
        torch = true,
        aliases = [],
        params = [INPLACE],
        "scale * (max(0, x) + min(0, alpha * (exp(x) - 1))), alpha=1.6733, scale=1.0507",
        learnable = false,
        pointwise = true,
        props(true, true, false, false, true)
    ),
    kind!(
        Glu,
        "GLU",
        torch = true,
        aliases = [],
        params = [p("dim", Int, I(1))],
        "a * sigmoid(b), where a, b = the two halves of the input along dim (channels)",
        learnable = false,
        pointwise = false,
        Properties {
            monotonic: None,
            bounded_below: Some(false),
            bounded_above: Some(false),
            smooth: Some(true),
            zero_at_zero: Some(true)
        }
    ),
    kind!(
        Gelu,
        "GELU",
        torch = true,
        aliases = [],
        params = [p(
            "approximate",
            ParamType::Choice(&["none", "tanh"]),
            S("none")
        )],
        "x * Phi(x); tanh: 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))",
        learnable = false,
        pointwise = true,
        props(false, true, false, true, true)
    ),
    kind!(
        Hardshrink,
        "Hardshrink",
        torch = true,
        aliases = [],
        params = [p("lambd", Float, F(0.5))],
        "x if |x| > lambd else 0",
        learnable = false,
        pointwise = true,
        props(true, false, false, false, true)
    ),
    kind!(
        LeakyRelu,
        "LeakyReLU",
        torch = true,
        aliases = [],
        params = [p("negative_slope", Float, F(0.01)), INPLACE],
        "x if x > 0 else negative_slope * x",
        learnable = false,
        pointwise = true,
        props(true, false, false, false, true)
    ),
    kind!(
        LogSigmoid,
        "LogSigmoid",
        torch = true,
        aliases = [],
        params = [],
        "log(1 / (1 + exp(-x)))",
        learnable = false,
        pointwise = true,
        props(true, false, true, true, false)
    ),
    kind!(
        Softplus,
        "Softplus",
        torch = true,
        aliases = [],
        params = [p("beta", Float, F(1.0)), p("threshold", Float, F(20.0))],
        "log(1 + exp(beta * x)) / beta, or x where beta * x > threshold",
        learnable = false,
        pointwise = true,
        props(true, true, false, true, false)
    ),
    kind!(
        Softshrink,
        "Softshrink",
        torch = true,
        aliases = [],
        params = [p("lambd", Float, F(0.5))],
        "x - lambd if x > lambd, x + lambd if x < -lambd, else 0",
        learnable = false,
        pointwise = true,
        props(true, false, false, false, true)
    ),
    kind!(
        Prelu,
        "PReLU",
        torch = true,
        aliases = [],
        params = [p("num_parameters", Int, I(1)), p("init", Float, F(0.25))],
        "x if x > 0 else a * x, with learnable a (one, or one per channel)",
        learnable = true,
        pointwise = true,
        props(true, false, false, false, true)
    ),
    kind!(
        Softsign,
        "Softsign",
        torch = true,
        aliases = [],
        params = [],
        "x / (1 + |x|)",
        learnable = false,
        pointwise = true,
        props(true, true, true, true, true)
    ),
    kind!(
        Tanhshrink,
        "Tanhshrink",
        torch = true,
        aliases = [],
        params = [],
        "x - tanh(x)",
        learnable = false,
        pointwise = true,
        props(true, false, false, true, true)
    ),
    kind!(
        Softmin,
        "Softmin",
        torch = true,
        aliases = [],
        params = [p("dim", Dim, I(1))],
        "exp(-x_i) / sum_j exp(-x_j) over dim (channels)",
        learnable = false,
        pointwise = false,
        channelwise(true, true)
    ),
    kind!(
        Softmax,
        "Softmax",
        torch = true,
        aliases = [],
        params = [p("dim", Dim, I(1))],
        "exp(x_i) / sum_j exp(x_j) over dim (channels)",
        learnable = false,
        pointwise = false,
        channelwise(true, true)
    ),
    kind!(
        Softmax2d,
        "Softmax2d",
        torch = true,
        aliases = [],
        params = [],
        "softmax over the channels of each spatial location",
        learnable = false,
        pointwise = false,
        channelwise(true, true)
    ),
    kind!(
        LogSoftmax,
        "LogSoftmax",
        torch = true,
        aliases = [],
        params = [p("dim", Dim, I(1))],
        "x_i - log(sum_j exp(x_j)) over dim (channels)",
        learnable = false,
        pointwise = false,
        channelwise(false, true)
    ),
    kind!(
        Identity,
        "Identity",
        torch = true,
        aliases = ["none", "linear"],
        params = [],
        "x",
        learnable = false,
        pointwise = true,
        props(true, false, false, true, true)
    ),
    kind!(
        Frelu,
        "FReLU",
        torch = false,
        aliases = ["funnelrelu"],
        params = [p("k", Int, I(3))],
        "max(x, BN(depthwise kxk conv(x))), learnable per channel",
        learnable = true,
        pointwise = false,
        Properties {
            monotonic: None,
            bounded_below: Some(false),
            bounded_above: Some(false),
            smooth: Some(false),
            zero_at_zero: None
        }
    ),
    kind!(
        AconC,
        "AconC",
        torch = false,
        aliases = ["acon"],
        params = [],
        "(p1 - p2) x * sigmoid(beta (p1 - p2) x) + p2 x, learnable p1, p2, beta per channel",
        learnable = true,
        pointwise = false,
        Properties {
            monotonic: None,
            bounded_below: None,
            bounded_above: None,
            smooth: Some(true),
            zero_at_zero: Some(true)
        }
    ),
    kind!(
        MetaAconC,
        "MetaAconC",
        torch = false,
        aliases = ["metaacon"],
        params = [p("r", Int, I(16))],
        "AconC with beta = sigmoid(fc2(fc1(mean_hw(x)))), hidden width max(r, C / r)",
        learnable = true,
        pointwise = false,
        Properties {
            monotonic: None,
            bounded_below: None,
            bounded_above: None,
            smooth: Some(true),
            zero_at_zero: Some(true)
        }
    ),
];

/// Lower-case, underscores removed: `leaky_relu`, `LeakyReLU` and `leakyrelu` are one name.
fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

impl ActKind {
    pub fn info(self) -> &'static KindInfo {
        KINDS
            .iter()
            .find(|k| k.kind == self)
            .expect("every ActKind has a row in KINDS")
    }

    pub fn all() -> impl Iterator<Item = &'static KindInfo> {
        KINDS.iter()
    }

    /// Finds a kind by any of its names, case-insensitively.
    pub fn lookup(name: &str) -> Option<ActKind> {
        let wanted = normalize(name);
        KINDS
            .iter()
            .find(|k| normalize(k.name) == wanted || k.aliases.contains(&wanted.as_str()))
            .map(|k| k.kind)
    }

    /// The `n` known names closest to `name`, for "did you mean" messages.
    pub fn closest(name: &str, n: usize) -> Vec<String> {
        let wanted = normalize(name);
        let mut scored: Vec<(f64, &str)> = KINDS
            .iter()
            .map(|k| (strsim::jaro_winkler(&wanted, &normalize(k.name)), k.name))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored
            .into_iter()
            .take(n)
            .map(|(_, s)| s.to_string())
            .collect()
    }
}

/// One row of `acts list`: an activation at its defaults, with everything a user may ask.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogEntry {
    pub name: &'static str,
    /// The full spec with every default, e.g. `nn.LeakyReLU(negative_slope=0.01)`.
    pub spec: String,
    pub formula: &'static str,
    pub params: Vec<ParamEntry>,
    pub learnable: bool,
    pub pointwise: bool,
    pub properties: Properties,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParamEntry {
    pub name: &'static str,
    pub default: String,
}

impl ActKind {
    /// The spec with every parameter at its default.
    pub fn default_spec(self) -> super::ActSpec {
        super::ActSpec::parse(self.info().name).expect("a kind's own name parses without arguments")
    }
}

/// Every activation, in catalogue order.
pub fn catalogue() -> Vec<CatalogEntry> {
    KINDS
        .iter()
        .map(|k| CatalogEntry {
            name: k.name,
            spec: k.kind.default_spec().to_string(),
            formula: k.formula,
            params: k
                .params
                .iter()
                .filter(|p| p.name != "inplace")
                .map(|p| ParamEntry {
                    name: p.name,
                    default: p.default.to_value().to_string(),
                })
                .collect(),
            learnable: k.learnable,
            pointwise: k.pointwise,
            properties: k.properties,
        })
        .collect()
}

/// `acts list` as an aligned text table.
pub fn render_table(entries: &[CatalogEntry]) -> String {
    let mark = |p: Option<bool>| match p {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    };
    let spec_width = entries.iter().map(|e| e.spec.len()).max().unwrap_or(0);
    let mut out = format!(
        "{:<spec_width$}  {:<9} {:<9} {:<5} {:<5} {:<6} {:<6}  formula\n",
        "spec", "learnable", "monotonic", "lower", "upper", "smooth", "f(0)=0"
    );
    for e in entries {
        let p = e.properties;
        out += &format!(
            "{:<spec_width$}  {:<9} {:<9} {:<5} {:<5} {:<6} {:<6}  {}\n",
            e.spec,
            if e.learnable { "yes" } else { "no" },
            mark(p.monotonic),
            mark(p.bounded_below),
            mark(p.bounded_above),
            mark(p.smooth),
            mark(p.zero_at_zero),
            e.formula
        );
    }
    out += &format!(
        "{} activations; lower/upper: bounded below/above at the default parameters\n",
        entries.len()
    );
    out
}
