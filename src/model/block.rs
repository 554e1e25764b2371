//! What every layer of a model is: a [`Block`] (forward, parameters, cost, fuse), with the
//! context blocks are built in and YOLOv5's width and depth rules.

use std::fmt::Debug;

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::act::Activation;
use crate::ops::concat;
use crate::ops::conv_bn_layer::Cost;
use crate::ops::graph::{Graph, GraphError};
use crate::ops::vars::stable_hash;

/// One layer (or one repeat of it).
pub trait Block: Debug + Send + Sync {
    /// The output from the layer's inputs, one per `from` entry.
    fn forward_t(&self, xs: &[Tensor], train: bool) -> Result<Tensor>;

    /// `forward_t` of one input given as its channel parts, which a Concat would join. At
    /// inference a block whose first convolutions are 1×1 reads the parts in place, and the
    /// concatenation is never written; by default the parts are joined first.
    fn forward_parts(&self, parts: &[Tensor], train: bool) -> Result<Tensor> {
        self.forward_t(&[concat::channels(parts)?], train)
    }

    /// Whether the output is the inputs joined along the channels (Concat): at inference
    /// the model hands the next layer the parts instead (see [`Block::forward_parts`]).
    fn joins_inputs(&self) -> bool {
        false
    }

    /// Output size for inputs of `hws` (one per input) with `c_in` channels in the first,
    /// adding thop's count to `cost`.
    fn cost(&self, hws: &[(usize, usize)], c_in: usize, cost: &mut Cost) -> (usize, usize);

    /// The blocks it is made of: a composite's parameters, fusing and activations are
    /// theirs.
    fn children(&self) -> Vec<&dyn Block> {
        Vec::new()
    }

    fn children_mut(&mut self) -> Vec<&mut dyn Block> {
        Vec::new()
    }

    /// Every learnable parameter (BatchNorm running statistics excluded).
    fn params(&self) -> Vec<Tensor> {
        self.children()
            .into_iter()
            .flat_map(|b| b.params())
            .collect()
    }

    /// Folds BatchNorms (and whatever else folds) into convolutions for inference.
    fn fuse(&mut self) -> Result<()> {
        self.children_mut().into_iter().try_for_each(|b| b.fuse())
    }

    /// Adds its inference form to an ONNX graph, applied to `xs` (one per `from` entry);
    /// returns the output's name. The model is fused first.
    fn export(&self, g: &mut Graph, xs: &[String]) -> std::result::Result<String, GraphError>;

    /// The activations inside, for the summary.
    fn activations(&self) -> Vec<&Activation> {
        self.children()
            .into_iter()
            .flat_map(|b| b.activations())
            .collect()
    }
}

/// Where a block's parameters come from, and what it needs beyond them.
#[derive(Clone)]
pub struct BlockContext<'a> {
    pub vb: VarBuilder<'a>,
    /// Seeds each activation's private random stream (RReLU), by parameter path, so the
    /// stream does not depend on the order in which layers are built.
    pub seed: u64,
}

impl<'a> BlockContext<'a> {
    pub fn pp(&self, name: impl ToString) -> Self {
        BlockContext {
            vb: self.vb.pp(name),
            seed: self.seed,
        }
    }

    pub fn rng(&self) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed ^ stable_hash(&self.vb.prefix()))
    }
}

/// Width rule: `make_divisible(c · width, 8)`.
pub fn scale_width(c: usize, width: f64) -> usize {
    // Saturating: an absurd width becomes a size the variable store refuses, not an overflow.
    (((c as f64 * width) / 8.0).ceil() as usize).saturating_mul(8)
}

/// Depth rule: `max(round(n · depth), 1)` for n > 1, with Python's round-half-to-even.
pub fn scale_depth(n: usize, depth: f64) -> usize {
    if n > 1 {
        ((n as f64 * depth).round_ties_even() as usize).max(1)
    } else {
        n
    }
}
