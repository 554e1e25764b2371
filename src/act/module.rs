//! The activation of one layer: the elementwise function its declaration names (applied
//! fused into the layer's kernels where possible), or the module it builds.

use std::sync::Arc;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use rand_chacha::ChaCha8Rng;

use super::probe;
use super::registry::{ActModule, ModuleInputs};
use super::spec::ActSpec;
use crate::ops::conv2d::plus_residual;
use crate::ops::conv_bn_layer::ConvBn;
use crate::ops::elementwise::Elementwise;
use crate::ops::graph::{Graph, GraphError};
use crate::ops::pointwise;
use crate::util::profile::{self, Stage};

/// An activation module, built for one layer.
#[derive(Debug)]
pub struct Activation {
    spec: ActSpec,
    inner: Inner,
    /// The layer it belongs to (its parameter path without `.act`), for the diagnostics.
    module: String,
}

#[derive(Debug)]
enum Inner {
    Elementwise(Arc<dyn Elementwise>),
    Module(Box<dyn ActModule>),
}

impl Activation {
    /// Builds the activation for a layer whose activation input has `channels` channels
    /// (for GLU that is twice the output). Parameters are created or loaded through `vb`
    /// under the ultralytics names (`weight` for PReLU, `conv.weight`/`bn.*` for FReLU,
    /// `p1`/`p2`/`beta` and `fc1.*`/`fc2.*` for ACON). `rng` seeds RReLU's noise.
    pub fn new(spec: &ActSpec, channels: usize, vb: VarBuilder, rng: ChaCha8Rng) -> Result<Self> {
        let def = spec.def();
        let prefix = vb.prefix();
        let module = prefix.strip_suffix(".act").unwrap_or(&prefix).to_string();
        let inner = match (def.module, spec.elementwise()) {
            (Some(build), _) => Inner::Module(build(ModuleInputs {
                args: spec.args(),
                channels,
                vb,
                rng,
            })?),
            (None, Some(f)) => Inner::Elementwise(f),
            (None, None) => {
                candle_core::bail!("{spec}: declared with neither a function nor a module")
            }
        };
        Ok(Activation {
            spec: spec.clone(),
            inner,
            module,
        })
    }

    pub fn spec(&self) -> &ActSpec {
        &self.spec
    }

    /// The learnable parameters (exempt from weight decay).
    pub fn params(&self) -> Vec<Tensor> {
        match &self.inner {
            Inner::Elementwise(_) => Vec::new(),
            Inner::Module(m) => m.params(),
        }
    }

    /// Multiply-accumulates of the activation's own layers (FReLU's depthwise conv and
    /// BatchNorm, Meta-ACON's 1×1 convs) on planes of `hw`, counted as thop counts them.
    pub fn macs(&self, hw: (usize, usize)) -> f64 {
        match &self.inner {
            Inner::Elementwise(_) => 0.0,
            Inner::Module(m) => m.macs(hw),
        }
    }

    /// Folds the BatchNorm of an activation that has one (FReLU's funnel) into its
    /// convolution, for inference.
    pub fn fuse(&mut self) -> Result<()> {
        match &mut self.inner {
            Inner::Elementwise(_) => Ok(()),
            Inner::Module(m) => m.fuse(),
        }
    }

    /// The elementwise function this activation computes in this mode, when it has no
    /// parameters and no randomness: kernels such as BatchNorm can then apply it fused.
    pub fn fusable(&self, train: bool) -> Option<Arc<dyn Elementwise>> {
        match &self.inner {
            Inner::Elementwise(f) => Some(f.clone()),
            Inner::Module(m) => m.fusable(train),
        }
    }

    /// `body` (a Conv's convolution and BatchNorm) of `xs` (its input, as the parts a
    /// concatenation along the channels would join), then this activation: inside the
    /// BatchNorm's kernel when the activation is elementwise; then plus `residual` (a
    /// shortcut) when given: inside the convolution's kernel once fused.
    /// Inside [`probe::capture`], inference runs unfused and records its diagnostics.
    pub fn forward_after(
        &self,
        body: &ConvBn,
        xs: &[Tensor],
        residual: Option<&Tensor>,
        train: bool,
    ) -> Result<Tensor> {
        if !train && probe::is_capturing() {
            let y = self.probe(&body.forward(xs, false, None, None)?)?;
            return plus_residual(y, residual);
        }
        match self.fusable(train) {
            Some(f) => body.forward(xs, train, Some(&f), residual),
            None => plus_residual(
                self.forward(&body.forward(xs, train, None, None)?, train)?,
                residual,
            ),
        }
    }

    /// Adds the activation's inference form to an ONNX graph, applied to `x`.
    pub fn export(&self, graph: &mut Graph, x: &str) -> std::result::Result<String, GraphError> {
        match (&self.inner, self.spec.def().export) {
            (Inner::Module(m), _) => m.export(graph, x),
            (Inner::Elementwise(_), Some(export)) => export(self.spec.args(), graph, x),
            (Inner::Elementwise(_), None) => Err(GraphError::Unsupported {
                what: self.spec.to_string(),
                reason: "it has no ONNX lowering".into(),
            }),
        }
    }

    /// Applies the activation in inference to the pre-activation `z` and records it.
    fn probe(&self, z: &Tensor) -> Result<Tensor> {
        let y = self.forward(z, false)?;
        let learned = match &self.inner {
            Inner::Elementwise(_) => Vec::new(),
            Inner::Module(m) => m.learned(z)?,
        };
        let f = self.fusable(false);
        probe::record(probe::measure(
            &self.module,
            &self.spec.to_string(),
            f.as_deref(),
            z,
            &y,
            learned,
        )?);
        Ok(y)
    }

    /// Applies the activation; `train` selects RReLU's random slopes and FReLU's batch statistics.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let _t = profile::span(Stage::ActivationForward);
        match &self.inner {
            Inner::Elementwise(f) => pointwise::apply(f, x),
            Inner::Module(m) => m.forward(x, train),
        }
    }
}

impl candle_nn::ModuleT for Activation {
    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward(x, train)
    }
}
