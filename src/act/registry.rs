//! What an activation is declared with: one [`ActDef`] per activation holds its names, its
//! PyTorch signature with defaults and checks, its formula and properties, and how it
//! computes (an elementwise function the kernels fuse, or a module of its own). The parser,
//! the catalogue, the modules, the kernels and the plots all read these declarations; the
//! list of them is [`crate::act::zoo::ACTIVATIONS`].

use std::fmt;
use std::sync::Arc;

use candle_core::Result;
use candle_nn::VarBuilder;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use candle_core::Tensor;

use super::probe::LearnedSummary;
use crate::ops::elementwise::Elementwise;
use crate::ops::graph::{Graph, GraphError};

/// One activation.
pub struct ActDef {
    /// The class name, as in `torch.nn` (or ultralytics, or the paper, for the others).
    pub name: &'static str,
    /// True for `torch.nn` classes, written with the `nn.` prefix.
    pub torch: bool,
    /// Other names it is found by (compared lower-case, without underscores).
    pub aliases: &'static [&'static str],
    /// Constructor parameters in PyTorch's positional order (`inplace` included where torch
    /// has it: accepted and ignored).
    pub params: &'static [ParamDef],
    pub formula: &'static str,
    pub properties: Properties,
    /// Checks between arguments, beyond each argument's type (max above min, a nonzero
    /// divisor).
    pub check: fn(&Args) -> std::result::Result<(), ArgError>,
    /// Channels the convolution before it makes per output channel (GLU halves its input).
    pub channel_factor: usize,
    /// Has parameters of its own (trained, and exempt from weight decay).
    pub learnable: bool,
    /// Each output element depends only on the same input element (a curve can be drawn).
    pub pointwise: bool,
    /// The elementwise function it computes in inference, when it is one (RReLU: its mean
    /// slope). Kernels apply it fused into the preceding BatchNorm or convolution.
    pub elementwise: Option<ElementwiseFactory>,
    /// Its own module, when it is more than that function: learnable, channel-wise, or
    /// random in training.
    pub module: Option<ModuleFactory>,
    /// Its ONNX form in inference, when it is an elementwise function (modules export
    /// themselves): the opset's operator, or an exact composition where the opset has none.
    pub export: Option<ExportFn>,
}

/// Adds an activation to an ONNX graph: its arguments, the graph and the input's name in,
/// the output's name out.
pub type ExportFn = fn(&Args, &mut Graph, &str) -> std::result::Result<String, GraphError>;

/// Makes an activation's elementwise function from its arguments.
pub type ElementwiseFactory = fn(&Args) -> Arc<dyn Elementwise>;

/// Builds an activation's own module.
pub type ModuleFactory = fn(ModuleInputs) -> Result<Box<dyn ActModule>>;

/// What a module is built from: the arguments, the channels of its input, where its
/// parameters live (ultralytics' names under the layer's `act`), and its random stream.
pub struct ModuleInputs<'a> {
    pub args: &'a Args,
    pub channels: usize,
    pub vb: VarBuilder<'a>,
    pub rng: ChaCha8Rng,
}

/// An activation's arguments, in the order of its declaration's parameters (`inplace`
/// left out).
#[derive(Debug, Clone, PartialEq)]
pub struct Args(Vec<Value>);

impl Args {
    pub fn new(values: Vec<Value>) -> Args {
        Args(values)
    }

    /// Argument `i` as a number (NaN when it is not one).
    pub fn f(&self, i: usize) -> f64 {
        self.0.get(i).map_or(f64::NAN, Value::as_f64)
    }

    /// Argument `i` as an integer (0 when it is not one).
    pub fn i(&self, i: usize) -> i64 {
        self.0.get(i).map_or(0, Value::as_i64)
    }

    /// Argument `i` as text ("" when it is not text).
    pub fn s(&self, i: usize) -> &str {
        self.0.get(i).map_or("", Value::as_str)
    }

    pub fn values(&self) -> &[Value] {
        &self.0
    }
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

impl Value {
    pub fn as_f64(&self) -> f64 {
        match self {
            Value::Float(v) => *v,
            Value::Int(v) => *v as f64,
            _ => f64::NAN,
        }
    }
    pub fn as_i64(&self) -> i64 {
        match self {
            Value::Int(v) => *v,
            _ => 0,
        }
    }
    pub fn as_str(&self) -> &str {
        match self {
            Value::Str(s) => s,
            _ => "",
        }
    }
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Float(_) => "a float",
            Value::Int(_) => "an int",
            Value::Bool(_) => "a bool",
            Value::Str(_) => "a string",
            Value::None => "None",
        }
    }
}

/// An activation that is more than an elementwise function: learnable, channel-wise, or
/// random in training.
pub trait ActModule: std::fmt::Debug + Send + Sync {
    /// Applies it; `train` selects random slopes and batch statistics where it has them.
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor>;

    /// Its learnable parameters (exempt from weight decay); BatchNorm running statistics
    /// are buffers and not included.
    fn params(&self) -> Vec<Tensor> {
        Vec::new()
    }

    /// Multiply-accumulates of its own layers on planes of `hw`, counted as thop counts.
    fn macs(&self, _hw: (usize, usize)) -> f64 {
        0.0
    }

    /// Folds what it can for inference (a BatchNorm into its convolution).
    fn fuse(&mut self) -> Result<()> {
        Ok(())
    }

    /// The elementwise function it is in this mode, if it is one then.
    fn fusable(&self, _train: bool) -> Option<Arc<dyn Elementwise>> {
        None
    }

    /// What it has learned, summarised for the diagnostics, on the input `x` (Meta-ACON's β
    /// depends on it).
    fn learned(&self, _x: &Tensor) -> Result<Vec<LearnedSummary>> {
        Ok(Vec::new())
    }

    /// Adds its inference form to an ONNX graph, applied to `x`; returns the output.
    fn export(&self, graph: &mut Graph, x: &str) -> std::result::Result<String, GraphError>;
}

/// An argument that fails a declaration's check.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgError {
    pub argument: &'static str,
    pub message: String,
}

impl ArgError {
    pub fn new(argument: &'static str, message: impl Into<String>) -> ArgError {
        ArgError {
            argument,
            message: message.into(),
        }
    }
}

/// No checks beyond the arguments' types.
pub fn no_check(_: &Args) -> std::result::Result<(), ArgError> {
    Ok(())
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

/// One constructor parameter.
#[derive(Debug, Clone, Copy)]
pub struct ParamDef {
    pub name: &'static str,
    pub ty: ParamType,
    pub default: ParamDefault,
}

pub const fn param(name: &'static str, ty: ParamType, default: ParamDefault) -> ParamDef {
    ParamDef { name, ty, default }
}

/// torch's `inplace=False`, accepted and ignored.
pub const INPLACE: ParamDef = param("inplace", ParamType::Bool, ParamDefault::B(false));

/// Shape properties at the default (or initial) parameters; `None` where the notion does
/// not apply (channel-wise functions).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Properties {
    pub monotonic: Option<bool>,
    pub bounded_below: Option<bool>,
    pub bounded_above: Option<bool>,
    pub smooth: Option<bool>,
    pub zero_at_zero: Option<bool>,
}

/// Properties of a function with a curve: monotonic, bounded below, bounded above, smooth,
/// zero at zero.
pub const fn props(m: bool, lo: bool, hi: bool, smooth: bool, zero: bool) -> Properties {
    Properties {
        monotonic: Some(m),
        bounded_below: Some(lo),
        bounded_above: Some(hi),
        smooth: Some(smooth),
        zero_at_zero: Some(zero),
    }
}

/// Softmax-like functions: values in [0, 1] (or <= 0 for LogSoftmax), no curve to speak of.
pub const fn channelwise(lo: bool, hi: bool) -> Properties {
    Properties {
        monotonic: None,
        bounded_below: Some(lo),
        bounded_above: Some(hi),
        smooth: Some(true),
        zero_at_zero: Some(false),
    }
}

/// A declaration for the common case: a parameter-free elementwise function (checks,
/// channels, module and flags at their defaults), filled in with `..ELEMENTWISE`.
pub const ELEMENTWISE: ActDef = ActDef {
    name: "",
    torch: true,
    aliases: &[],
    params: &[],
    formula: "",
    properties: props(false, false, false, false, false),
    check: no_check,
    channel_factor: 1,
    learnable: false,
    pointwise: true,
    elementwise: None,
    module: None,
    export: None,
};
