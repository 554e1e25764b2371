//! An operator graph as an ONNX `ModelProto`, through the protobuf types `tract-onnx`
//! generates (prost), so no encoding is written by hand.

use tract_onnx::pb;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};

use crate::ops::graph::{Attr, Elements, Graph};

/// One dimension of a graph input or output: fixed, or named and free (`--dynamic`).
#[derive(Debug, Clone, PartialEq)]
pub enum Dim {
    Fixed(usize),
    Named(&'static str),
}

/// A graph input or output: its name and f32 shape.
#[derive(Debug, Clone)]
pub struct Io {
    pub name: String,
    pub shape: Vec<Dim>,
}

/// The ONNX IR version that goes with an opset (as onnx's version table pairs them).
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

fn attribute(name: &str, value: &Attr) -> pb::AttributeProto {
    let mut a = pb::AttributeProto {
        name: name.to_string(),
        ..Default::default()
    };
    let kind = match value {
        Attr::Int(i) => {
            a.i = *i;
            AttributeType::Int
        }
        Attr::Float(f) => {
            a.f = *f;
            AttributeType::Float
        }
        Attr::Ints(v) => {
            a.ints = v.clone();
            AttributeType::Ints
        }
        Attr::Str(s) => {
            a.s = s.as_bytes().to_vec();
            AttributeType::String
        }
    };
    a.r#type = kind as i32;
    a
}

fn value_info(io: &Io) -> pb::ValueInfoProto {
    let dim = io
        .shape
        .iter()
        .map(|d| Dimension {
            denotation: String::new(),
            value: Some(match d {
                Dim::Fixed(n) => dimension::Value::DimValue(*n as i64),
                Dim::Named(s) => dimension::Value::DimParam(s.to_string()),
            }),
        })
        .collect();
    pb::ValueInfoProto {
        name: io.name.clone(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(pb::TensorShapeProto { dim }),
            })),
        }),
        ..Default::default()
    }
}

/// The model: `graph`'s nodes and initializers between `input` and `output`, with
/// `metadata` as `metadata_props`.
pub fn model_proto(
    graph: &Graph,
    input: &Io,
    output: &Io,
    metadata: &[(String, String)],
) -> pb::ModelProto {
    let node = graph
        .nodes()
        .iter()
        .enumerate()
        .map(|(i, n)| pb::NodeProto {
            input: n.inputs.clone(),
            output: n.outputs.clone(),
            name: format!("/{}_{i}", n.op),
            op_type: n.op.to_string(),
            attribute: n.attrs.iter().map(|(k, v)| attribute(k, v)).collect(),
            ..Default::default()
        })
        .collect();
    let initializer = graph
        .initializers()
        .iter()
        .map(|init| {
            let (data_type, raw_data) = match &init.elements {
                Elements::F32(v) => (
                    DataType::Float,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ),
                Elements::I64(v) => (
                    DataType::Int64,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ),
            };
            pb::TensorProto {
                dims: init.dims.iter().map(|&d| d as i64).collect(),
                data_type: data_type as i32,
                name: init.name.clone(),
                raw_data,
                ..Default::default()
            }
        })
        .collect();
    pb::ModelProto {
        ir_version: ir_version(graph.opset()),
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: graph.opset(),
        }],
        producer_name: "actyolo".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(pb::GraphProto {
            node,
            name: "main_graph".into(),
            initializer,
            input: vec![value_info(input)],
            output: vec![value_info(output)],
            ..Default::default()
        }),
        metadata_props: metadata
            .iter()
            .map(|(key, value)| pb::StringStringEntryProto {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        ..Default::default()
    }
}
