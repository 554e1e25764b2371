//! ONNX models run as weights, with tract (pure Rust): the file's graph, checked to be a
//! YOLO detector (images (B, 3, H, W) in; (B, N, 5 + nc) out as YOLOv5 exports, or
//! (B, 4 + nc, N) as ultralytics 8 does), and its `stride` and `names` metadata, as
//! yolov5's `DetectMultiBackend` reads them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tract_onnx::pb;
use tract_onnx::pb::tensor_shape_proto::dimension;
use tract_onnx::prelude::tvec;
use tract_onnx::prelude::{
    Datum, Framework, InferenceFact, InferenceModel, InferenceModelExt, IntoTValue,
    Tensor as TractTensor, TypedRunnableModel,
};
use tract_onnx::tract_core::model::IntoRunnable;

use super::metadata::parse_names;

/// Why an ONNX file cannot be run as a detector.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("{}: cannot read", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not an ONNX model", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: prost::DecodeError,
    },
    #[error("{}: {what}; a YOLO export has one input `images` (B, 3, H, W) and one output (B, N, 5 + classes) or (B, 4 + classes, N)", path.display())]
    NotYolo { path: PathBuf, what: String },
    #[error("{}: metadata `{key}`: {reason}", path.display())]
    Metadata {
        path: PathBuf,
        key: &'static str,
        reason: String,
    },
    #[error("{}: the graph takes input {expected}, given {given:?}", path.display())]
    InputShape {
        path: PathBuf,
        expected: String,
        given: Vec<usize>,
    },
    #[error("{}: tract cannot run the graph", path.display())]
    Runtime {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// A dimension of the graph's input or output: fixed, or free (named in the file).
type Dims = Vec<Option<usize>>;

/// An ONNX detector, with one optimised plan per input shape it has run at.
pub struct OnnxModel {
    path: PathBuf,
    model: InferenceModel,
    /// (B, 3, H, W); `None` where the graph leaves the size free (`--dynamic`).
    input: Dims,
    pub names: Vec<String>,
    /// The model's largest stride (metadata `stride`; 32 without it, as yolov5).
    pub stride: usize,
    /// Whether the output is ultralytics 8's (B, 4 + nc, N), an anchor-free head's.
    pub anchor_free: bool,
    plans: Mutex<HashMap<Vec<usize>, Arc<TypedRunnableModel>>>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("path", &self.path)
            .field("input", &self.input)
            .field("names", &self.names)
            .field("stride", &self.stride)
            .finish()
    }
}

fn dims(info: &pb::ValueInfoProto) -> Option<Dims> {
    let Some(pb::type_proto::Value::TensorType(t)) = info.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    Some(
        t.shape
            .as_ref()?
            .dim
            .iter()
            .map(|d| match d.value {
                Some(dimension::Value::DimValue(v)) if v > 0 => Some(v as usize),
                _ => None,
            })
            .collect(),
    )
}

fn show(dims: &Dims) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| d.map_or("?".to_string(), |v| v.to_string()))
        .collect();
    format!("({})", parts.join(", "))
}

impl OnnxModel {
    /// Reads and checks the file; the class count comes from the output's last dimension,
    /// the names from the metadata (their numbers without it).
    pub fn load(path: &Path) -> Result<OnnxModel, OnnxError> {
        let bytes = std::fs::read(path).map_err(|source| OnnxError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut proto =
            <pb::ModelProto as prost::Message>::decode(bytes.as_slice()).map_err(|source| {
                OnnxError::Decode {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        let not_yolo = |what: String| OnnxError::NotYolo {
            path: path.to_path_buf(),
            what,
        };
        let graph = proto
            .graph
            .as_ref()
            .ok_or_else(|| not_yolo("the file holds no graph".into()))?;
        let initializers: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<&pb::ValueInfoProto> = graph
            .input
            .iter()
            .filter(|i| !initializers.contains(&i.name.as_str()))
            .collect();
        let [input] = inputs.as_slice() else {
            return Err(not_yolo(format!("it has {} inputs", inputs.len())));
        };
        let [output] = graph.output.as_slice() else {
            return Err(not_yolo(format!("it has {} outputs", graph.output.len())));
        };
        let input_dims = dims(input)
            .ok_or_else(|| not_yolo(format!("input `{}` is not a tensor", input.name)))?;
        if input_dims.len() != 4 || input_dims[1].is_some_and(|c| c != 3) {
            return Err(not_yolo(format!(
                "input `{}` is {}",
                input.name,
                show(&input_dims)
            )));
        }
        let output_dims = dims(output)
            .ok_or_else(|| not_yolo(format!("output `{}` is not a tensor", output.name)))?;
        let meta: HashMap<&str, &str> = proto
            .metadata_props
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
            .collect();
        let names = match meta.get("names") {
            Some(text) => Some(parse_names(text).map_err(|reason| OnnxError::Metadata {
                path: path.to_path_buf(),
                key: "names",
                reason,
            })?),
            None => None,
        };
        // YOLOv5's (B, N, 5 + nc) or ultralytics 8's (B, 4 + nc, N); the names decide
        // when both dimensions are fixed.
        let named = |nc: usize| names.as_ref().is_none_or(|n| n.len() == nc);
        let (nc, anchor_free) = match output_dims.as_slice() {
            [_, _, Some(no)] if *no > 5 && named(no - 5) => (no - 5, false),
            [_, Some(per_box), _] if *per_box > 4 && named(per_box - 4) => (per_box - 4, true),
            [_, _, Some(no)] if *no > 5 => (no - 5, false),
            _ => {
                return Err(not_yolo(format!(
                    "output `{}` is {}",
                    output.name,
                    show(&output_dims)
                )))
            }
        };
        let names = names.unwrap_or_else(|| (0..nc).map(|i| format!("class{i}")).collect());
        if names.len() != nc {
            return Err(OnnxError::Metadata {
                path: path.to_path_buf(),
                key: "names",
                reason: format!("{} names for an output of {nc} classes", names.len()),
            });
        }
        let stride = match meta.get("stride") {
            Some(text) => text
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|s| (1..=4096).contains(s))
                .ok_or_else(|| OnnxError::Metadata {
                    path: path.to_path_buf(),
                    key: "stride",
                    reason: format!("`{text}` is not a stride"),
                })?,
            None => 32,
        };
        // Shapes recorded for inner values are hints (onnxruntime's quantizer writes them with
        // the symbolic batch of one run); the plan infers them from the input instead.
        if let Some(graph) = proto.graph.as_mut() {
            graph.value_info.clear();
        }
        let model = tract_onnx::onnx()
            .model_for_proto_model(&proto)
            .map_err(|e| OnnxError::Runtime {
                path: path.to_path_buf(),
                source: e.into(),
            })?;
        Ok(OnnxModel {
            path: path.to_path_buf(),
            model,
            input: input_dims,
            names,
            stride,
            anchor_free,
            plans: Mutex::new(HashMap::new()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn nc(&self) -> usize {
        self.names.len()
    }

    /// (B, H, W) when the graph fixes them all (a static export).
    pub fn fixed_input(&self) -> Option<(usize, usize, usize)> {
        match self.input[..] {
            [Some(b), _, Some(h), Some(w)] => Some((b, h, w)),
            _ => None,
        }
    }

    /// The fixed batch size, if the graph has one.
    pub fn fixed_batch(&self) -> Option<usize> {
        self.input[0]
    }

    fn plan(&self, shape: &[usize]) -> Result<Arc<TypedRunnableModel>, OnnxError> {
        let fits = shape.len() == 4
            && self
                .input
                .iter()
                .zip(shape)
                .all(|(want, &got)| want.is_none_or(|w| w == got));
        if !fits {
            return Err(OnnxError::InputShape {
                path: self.path.clone(),
                expected: show(&self.input),
                given: shape.to_vec(),
            });
        }
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(plan) = plans.get(shape) {
            return Ok(plan.clone());
        }
        let runtime = |e: tract_onnx::prelude::TractError| OnnxError::Runtime {
            path: self.path.clone(),
            source: e.into(),
        };
        let plan = self
            .model
            .clone()
            .with_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(runtime)?;
        plans.insert(shape.to_vec(), plan.clone());
        Ok(plan)
    }

    /// Runs the graph on `images` (B, 3, H, W), f32 in [0, 1]: (B, N, 5 + nc) (an
    /// anchor-free model's boxes with an objectness of 1). A graph
    /// with a fixed batch runs them in its batches, the last one padded with zeros.
    pub fn predict(&self, images: &candle_core::Tensor) -> Result<candle_core::Tensor, OnnxError> {
        let n = images.dims().first().copied().unwrap_or(0);
        let Some(batch) = self.fixed_batch().filter(|&b| b != n) else {
            return self.run(images);
        };
        let runtime = |e: candle_core::Error| OnnxError::Runtime {
            path: self.path.clone(),
            source: e.into(),
        };
        let mut outputs = Vec::with_capacity(n.div_ceil(batch));
        for start in (0..n).step_by(batch) {
            let len = batch.min(n - start);
            let mut chunk = images.narrow(0, start, len).map_err(runtime)?;
            if len < batch {
                let mut padding = chunk.dims().to_vec();
                padding[0] = batch - len;
                let zeros = candle_core::Tensor::zeros(padding, chunk.dtype(), chunk.device())
                    .map_err(runtime)?;
                chunk = candle_core::Tensor::cat(&[&chunk, &zeros], 0).map_err(runtime)?;
            }
            outputs.push(self.run(&chunk)?.narrow(0, 0, len).map_err(runtime)?);
        }
        candle_core::Tensor::cat(&outputs, 0).map_err(runtime)
    }

    fn run(&self, images: &candle_core::Tensor) -> Result<candle_core::Tensor, OnnxError> {
        let runtime = |e: Box<dyn std::error::Error + Send + Sync>| OnnxError::Runtime {
            path: self.path.clone(),
            source: e,
        };
        let shape = images.dims().to_vec();
        let plan = self.plan(&shape)?;
        let data = images
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| runtime(e.into()))?;
        let input = TractTensor::from_shape(&shape, &data).map_err(|e| runtime(e.into()))?;
        let outputs = plan
            .run(tvec!(input.into_tvalue()))
            .map_err(|e| runtime(e.into()))?;
        let output = outputs[0]
            .to_plain_array_view::<f32>()
            .map_err(|e| runtime(e.into()))?;
        let out_shape = output.shape().to_vec();
        let nc = self.nc();
        let fits = out_shape.len() == 3 && out_shape[0] == shape[0];
        let values: Vec<f32> = output.iter().copied().collect();
        match out_shape[..] {
            // YOLOv5's layout: (bs, N, 5 + nc).
            [_, _, per_box] if fits && per_box == nc + 5 => {
                candle_core::Tensor::from_vec(values, out_shape, &candle_core::Device::Cpu)
                    .map_err(|e| runtime(e.into()))
            }
            // ultralytics 8's: (bs, 4 + nc, N), no objectness: read as YOLOv5's with an
            // objectness of 1, which its NMS multiplies by the class scores.
            [bs, per_box, n] if fits && per_box == nc + 4 => {
                let mut rows = vec![0f32; bs * n * (nc + 5)];
                for b in 0..bs {
                    let src = &values[b * per_box * n..][..per_box * n];
                    for i in 0..n {
                        let row = &mut rows[(b * n + i) * (nc + 5)..][..nc + 5];
                        row[4] = 1.0;
                        for (k, v) in src.iter().skip(i).step_by(n).enumerate() {
                            row[if k < 4 { k } else { k + 1 }] = *v;
                        }
                    }
                }
                candle_core::Tensor::from_vec(rows, (bs, n, nc + 5), &candle_core::Device::Cpu)
                    .map_err(|e| runtime(e.into()))
            }
            _ => Err(OnnxError::NotYolo {
                path: self.path.clone(),
                what: format!(
                    "its output for input {shape:?} is {out_shape:?}, neither (batch, boxes, 5 + {nc}) nor (batch, 4 + {nc}, boxes)"
                ),
            }),
        }
    }
}
