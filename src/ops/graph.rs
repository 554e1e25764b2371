//! A model as a graph of ONNX operators, free of any file format: what each block and
//! each activation adds to it is its export hook, and `export` writes the graph as an ONNX
//! file. Values are named by strings, as in ONNX; weights are initializers.

use candle_core::{DType, Tensor};

use super::conv2d::Conv2dParams;

/// A node attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
    Str(&'static str),
}

/// One operator application.
#[derive(Debug, Clone)]
pub struct Node {
    pub op: &'static str,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: Vec<(&'static str, Attr)>,
}

/// A constant's elements.
#[derive(Debug, Clone, PartialEq)]
pub enum Elements {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

/// A named constant (a weight, a shape, a scalar).
#[derive(Debug, Clone)]
pub struct Initializer {
    pub name: String,
    pub dims: Vec<usize>,
    pub elements: Elements,
}

/// Why a part of a model has no ONNX form.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("{what} cannot be exported exactly to ONNX: {reason}")]
    Unsupported { what: String, reason: String },
    #[error("{0} still has its training-time branches; fuse the model before exporting it")]
    Unfused(&'static str),
    #[error("reading a weight")]
    Tensor(#[from] candle_core::Error),
}

/// The nodes and constants written so far, for one opset.
#[derive(Debug)]
pub struct Graph {
    opset: i64,
    nodes: Vec<Node>,
    initializers: Vec<Initializer>,
    next_id: usize,
}

impl Graph {
    pub fn new(opset: i64) -> Graph {
        Graph {
            opset,
            nodes: Vec::new(),
            initializers: Vec::new(),
            next_id: 0,
        }
    }

    /// The operator set version the graph is written for: hooks pick operators by it.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn initializers(&self) -> &[Initializer] {
        &self.initializers
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_{}", self.next_id)
    }

    /// Adds `op` with one output and returns the output's name.
    pub fn op(
        &mut self,
        op: &'static str,
        inputs: &[&str],
        attrs: Vec<(&'static str, Attr)>,
    ) -> String {
        self.op_outputs(op, inputs, attrs, 1).remove(0)
    }

    /// Adds `op` with `outputs` outputs and returns their names.
    pub fn op_outputs(
        &mut self,
        op: &'static str,
        inputs: &[&str],
        attrs: Vec<(&'static str, Attr)>,
        outputs: usize,
    ) -> Vec<String> {
        let outputs: Vec<String> = (0..outputs).map(|_| self.fresh(op)).collect();
        self.nodes.push(Node {
            op,
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.clone(),
            attrs,
        });
        outputs
    }

    /// `op(x)` with no attributes.
    pub fn unary(&mut self, op: &'static str, x: &str) -> String {
        self.op(op, &[x], vec![])
    }

    /// `op(x)` with float attributes (`alpha`, `beta`, `lambd`, ...).
    pub fn unary_with(
        &mut self,
        op: &'static str,
        x: &str,
        attrs: &[(&'static str, f64)],
    ) -> String {
        let attrs = attrs
            .iter()
            .map(|&(name, v)| (name, Attr::Float(v as f32)))
            .collect();
        self.op(op, &[x], attrs)
    }

    /// `Clip(x, min, max)`.
    pub fn clip(&mut self, x: &str, min: f64, max: f64) -> String {
        let (lo, hi) = (self.scalar(min), self.scalar(max));
        self.op("Clip", &[x, &lo, &hi], vec![])
    }

    /// `op(a, b)` with no attributes (Add, Sub, Mul, Div, Max, ...).
    pub fn binary(&mut self, op: &'static str, a: &str, b: &str) -> String {
        self.op(op, &[a, b], vec![])
    }

    /// Renames the value `from` to `name` wherever it appears (to name the graph's output).
    pub fn rename_output(&mut self, from: &str, name: &str) -> String {
        for node in self.nodes.iter_mut().rev() {
            if let Some(out) = node.outputs.iter_mut().find(|o| *o == from) {
                *out = name.to_string();
            }
            for input in &mut node.inputs {
                if input == from {
                    *input = name.to_string();
                }
            }
        }
        name.to_string()
    }

    fn constant(&mut self, dims: Vec<usize>, elements: Elements) -> String {
        let name = self.fresh("const");
        self.initializers.push(Initializer {
            name: name.clone(),
            dims,
            elements,
        });
        name
    }

    /// A weight: the tensor's values as f32, with its shape.
    pub fn tensor(&mut self, t: &Tensor) -> Result<String, GraphError> {
        let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(self.constant(t.dims().to_vec(), Elements::F32(values)))
    }

    /// f32 values of shape `dims`.
    pub fn floats(&mut self, dims: &[usize], values: Vec<f32>) -> String {
        self.constant(dims.to_vec(), Elements::F32(values))
    }

    /// A 0-d f32 constant, broadcast against anything.
    pub fn scalar(&mut self, v: f64) -> String {
        self.constant(vec![], Elements::F32(vec![v as f32]))
    }

    /// A 1-d int64 constant (shapes, axes, split sizes).
    pub fn ints(&mut self, values: &[i64]) -> String {
        self.constant(vec![values.len()], Elements::I64(values.to_vec()))
    }

    /// A 0-d int64 constant.
    pub fn int_scalar(&mut self, v: i64) -> String {
        self.constant(vec![], Elements::I64(vec![v]))
    }

    /// `Conv(x, weight[, bias])` with 'same'-style symmetric padding.
    pub fn conv(
        &mut self,
        x: &str,
        weight: &Tensor,
        bias: Option<&Tensor>,
        attrs: Conv2dParams,
    ) -> Result<String, GraphError> {
        let (_, _, kh, kw) = weight.dims4()?;
        let w = self.tensor(weight)?;
        let b = bias.map(|b| self.tensor(b)).transpose()?;
        let mut inputs = vec![x, w.as_str()];
        if let Some(b) = &b {
            inputs.push(b);
        }
        let (s, p, d) = (
            attrs.stride as i64,
            attrs.padding as i64,
            attrs.dilation as i64,
        );
        Ok(self.op(
            "Conv",
            &inputs,
            vec![
                ("kernel_shape", Attr::Ints(vec![kh as i64, kw as i64])),
                ("strides", Attr::Ints(vec![s, s])),
                ("pads", Attr::Ints(vec![p, p, p, p])),
                ("dilations", Attr::Ints(vec![d, d])),
                ("group", Attr::Int(attrs.groups as i64)),
            ],
        ))
    }

    /// `MaxPool` with a square window, stride and symmetric padding (padding counts as
    /// −∞, as in torch).
    /// Each cell's (column + `offset`, row + `offset`), (ny·nx, 2) in row-major order, from
    /// the shape of the map `x` (bs, c, ny, nx): a detection head's grid, at any input size.
    pub fn grid_cells(&mut self, x: &str, offset: f64) -> String {
        let shape = self.unary("Shape", x);
        let dim = |g: &mut Graph, i: i64| {
            let index = g.int_scalar(i);
            g.op("Gather", &[&shape, &index], vec![("axis", Attr::Int(0))])
        };
        let (ny, nx) = (dim(self, 2), dim(self, 3));
        let cells = self.binary("Mul", &ny, &nx);
        let (zero, one) = (self.int_scalar(0), self.int_scalar(1));
        let cell = self.op("Range", &[&zero, &cells, &one], vec![]);
        let row = self.binary("Div", &cell, &nx);
        let row_start = self.binary("Mul", &row, &nx);
        let column = self.binary("Sub", &cell, &row_start);
        let shift = self.scalar(offset);
        let axes = self.ints(&[1]);
        let offsets: Vec<String> = [column, row]
            .iter()
            .map(|v| {
                let v = self.op("Cast", &[v], vec![("to", Attr::Int(1))]);
                let v = self.binary("Add", &v, &shift);
                self.binary("Unsqueeze", &v, &axes)
            })
            .collect();
        self.concat(&[&offsets[0], &offsets[1]], 1)
    }

    pub fn max_pool(&mut self, x: &str, kernel: usize, stride: usize, padding: usize) -> String {
        let (k, s, p) = (kernel as i64, stride as i64, padding as i64);
        self.op(
            "MaxPool",
            &[x],
            vec![
                ("kernel_shape", Attr::Ints(vec![k, k])),
                ("strides", Attr::Ints(vec![s, s])),
                ("pads", Attr::Ints(vec![p, p, p, p])),
            ],
        )
    }

    /// `Concat` along `axis`.
    pub fn concat<S: AsRef<str>>(&mut self, xs: &[S], axis: i64) -> String {
        let inputs: Vec<&str> = xs.iter().map(AsRef::as_ref).collect();
        self.op("Concat", &inputs, vec![("axis", Attr::Int(axis))])
    }

    /// `x · sigmoid(scale · x)`, or `x · sigmoid(x)` without a scale: SiLU and Swish.
    pub fn swish(&mut self, x: &str, beta: Option<f64>) -> String {
        let gate_input = match beta {
            Some(beta) => {
                let b = self.scalar(beta);
                self.binary("Mul", x, &b)
            }
            None => x.to_string(),
        };
        let gate = self.unary("Sigmoid", &gate_input);
        self.binary("Mul", x, &gate)
    }
}
