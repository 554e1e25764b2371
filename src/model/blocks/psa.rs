//! YOLO11's C2PSA: C2f's split with position-sensitive attention blocks (PSABlock:
//! multi-head self-attention over the map's cells, then a 1×1 feed-forward, each with a
//! residual) on the second half. The Convs written `act=False` in ultralytics stay without
//! an activation whatever the YAML or `--act` chooses: they are structure.

use std::sync::Arc;

use candle_core::{Result, Tensor, D};

use crate::act::ActSpec;
use crate::model::block::{Block, BlockContext};
use crate::model::conv::Conv;
use crate::model::layer::{BlockDef, Built, LayerInputs, LayerSpec};
use crate::model::yaml_args::{RowArgs, RowError};
use crate::ops::conv_bn_layer::{ConvShape, Cost};
use crate::ops::graph::{Attr, Graph, GraphError};

pub static C2PSA: BlockDef = BlockDef {
    name: "C2PSA",
    parse: |values, _| {
        let a = RowArgs::new(values, &["c2", "e"], 1)?;
        Ok(Arc::new(C2psaRow {
            c2: a.c2()?,
            e: a.f64_or(1, 0.5)?,
        }))
    },
    head: false,
};

#[derive(Debug)]
struct C2psaRow {
    c2: usize,
    e: f64,
}

impl LayerSpec for C2psaRow {
    fn build(&self, layer: &LayerInputs) -> std::result::Result<Built, RowError> {
        let (c1, c2, n) = (layer.c1(), layer.width(self.c2), layer.n);
        if c1 != c2 {
            return Err(RowError::Invalid(format!(
                "C2PSA keeps its width: its input has {c1} channels and its output {c2}; \
                 give it the previous layer's width"
            )));
        }
        let hidden = (c1 as f64 * self.e) as usize;
        // Attention splits the hidden channels into heads of 64 (one below 128).
        let heads = (hidden / 64).max(1);
        if hidden == 0 || !hidden.is_multiple_of(heads) || hidden / heads < 2 {
            return Err(RowError::Invalid(format!(
                "C2PSA's hidden width {hidden} (e={} of {c1}) must split into {heads} attention \
                 heads of at least 2 channels",
                self.e
            )));
        }
        let ctx = &layer.ctx;
        let act = layer.default_act;
        let block = C2psa {
            cv1: Conv::new(ConvShape::new(c1, 2 * hidden, 1, 1), act, &ctx.pp("cv1"))?,
            cv2: Conv::new(ConvShape::new(2 * hidden, c1, 1, 1), act, &ctx.pp("cv2"))?,
            m: (0..n)
                .map(|j| PsaBlock::new(hidden, heads, act, &ctx.pp("m").pp(j)))
                .collect::<candle_core::Result<_>>()?,
            c: hidden,
        };
        Ok(Built::Layer {
            blocks: vec![Box::new(block)],
            c2,
            args: format!("[{c1}, {c2}, {n}]"),
        })
    }
}

/// C2PSA: split, attention blocks on the second half, concatenate, mix.
#[derive(Debug)]
struct C2psa {
    cv1: Conv,
    cv2: Conv,
    m: Vec<PsaBlock>,
    c: usize,
}

impl Block for C2psa {
    fn forward_t(&self, xs: &[Tensor], train: bool) -> Result<Tensor> {
        let y = self.cv1.forward(&xs[0], train)?;
        let mut b = y.narrow(1, self.c, self.c)?;
        for block in &self.m {
            b = block.forward(&b, train)?;
        }
        let a = y.narrow(1, 0, self.c)?;
        self.cv2.forward_joined(&[a, b], train)
    }

    fn cost(&self, hws: &[(usize, usize)], _c_in: usize, cost: &mut Cost) -> (usize, usize) {
        let hw = self.cv1.conv_cost(hws[0], cost);
        for block in &self.m {
            block.psa_cost(hw, cost);
        }
        self.cv2.conv_cost(hw, cost)
    }

    fn export(&self, g: &mut Graph, xs: &[String]) -> std::result::Result<String, GraphError> {
        let y = self.cv1.export_on(g, &xs[0])?;
        let c = self.c as i64;
        let sizes = g.ints(&[c, c]);
        let halves = g.op_outputs("Split", &[&y, &sizes], vec![("axis", Attr::Int(1))], 2);
        let mut b = halves[1].clone();
        for block in &self.m {
            b = block.export_on(g, &b)?;
        }
        let cat = g.concat(&[&halves[0], &b], 1);
        self.cv2.export_on(g, &cat)
    }

    fn children(&self) -> Vec<&dyn Block> {
        let mut blocks: Vec<&dyn Block> = vec![&self.cv1, &self.cv2];
        blocks.extend(self.m.iter().map(|b| b as &dyn Block));
        blocks
    }

    fn children_mut(&mut self) -> Vec<&mut dyn Block> {
        let mut blocks: Vec<&mut dyn Block> = vec![&mut self.cv1, &mut self.cv2];
        blocks.extend(self.m.iter_mut().map(|b| b as &mut dyn Block));
        blocks
    }
}

/// Attention then a feed-forward pair of 1×1 Convs (the second without activation), each
/// added to its input.
#[derive(Debug)]
struct PsaBlock {
    attn: Attention,
    ffn: [Conv; 2],
}

impl PsaBlock {
    fn new(c: usize, heads: usize, act: &ActSpec, ctx: &BlockContext) -> Result<Self> {
        let ffn = ctx.pp("ffn");
        Ok(PsaBlock {
            attn: Attention::new(c, heads, &ctx.pp("attn"))?,
            ffn: [
                Conv::new(ConvShape::new(c, 2 * c, 1, 1), act, &ffn.pp(0))?,
                Conv::new(
                    ConvShape::new(2 * c, c, 1, 1),
                    &ActSpec::identity(),
                    &ffn.pp(1),
                )?,
            ],
        })
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = (x + self.attn.forward(x, train)?)?;
        let f = self.ffn[1].forward(&self.ffn[0].forward(&x, train)?, train)?;
        x + f
    }

    fn psa_cost(&self, hw: (usize, usize), cost: &mut Cost) {
        self.attn.attention_cost(hw, cost);
        self.ffn[1].conv_cost(self.ffn[0].conv_cost(hw, cost), cost);
    }

    fn export_on(&self, g: &mut Graph, x: &str) -> std::result::Result<String, GraphError> {
        let a = self.attn.export_on(g, x)?;
        let x = g.binary("Add", x, &a);
        let f = self.ffn[0].export_on(g, &x)?;
        let f = self.ffn[1].export_on(g, &f)?;
        Ok(g.binary("Add", &x, &f))
    }
}

impl Block for PsaBlock {
    fn forward_t(&self, xs: &[Tensor], train: bool) -> Result<Tensor> {
        self.forward(&xs[0], train)
    }

    fn cost(&self, hws: &[(usize, usize)], _c_in: usize, cost: &mut Cost) -> (usize, usize) {
        self.psa_cost(hws[0], cost);
        hws[0]
    }

    fn export(&self, g: &mut Graph, xs: &[String]) -> std::result::Result<String, GraphError> {
        self.export_on(g, &xs[0])
    }

    fn children(&self) -> Vec<&dyn Block> {
        vec![
            &self.attn.qkv,
            &self.attn.proj,
            &self.attn.pe,
            &self.ffn[0],
            &self.ffn[1],
        ]
    }

    fn children_mut(&mut self) -> Vec<&mut dyn Block> {
        let [f0, f1] = &mut self.ffn;
        let Attention { qkv, proj, pe, .. } = &mut self.attn;
        vec![qkv, proj, pe, f0, f1]
    }
}

/// Multi-head self-attention over the cells: q, k (each `key_dim` = half a head) and v
/// (a head) per head from one 1×1 Conv; softmax(qᵀk / √key_dim) weighs v; a depthwise
/// 3×3 Conv of v adds the positions; a 1×1 Conv projects. No activations.
#[derive(Debug)]
struct Attention {
    qkv: Conv,
    proj: Conv,
    pe: Conv,
    heads: usize,
    key_dim: usize,
    head_dim: usize,
}

impl Attention {
    fn new(dim: usize, heads: usize, ctx: &BlockContext) -> Result<Self> {
        let head_dim = dim / heads;
        let key_dim = head_dim / 2;
        let none = ActSpec::identity();
        let qkv_out = dim + 2 * key_dim * heads;
        Ok(Attention {
            qkv: Conv::new(ConvShape::new(dim, qkv_out, 1, 1), &none, &ctx.pp("qkv"))?,
            proj: Conv::new(ConvShape::new(dim, dim, 1, 1), &none, &ctx.pp("proj"))?,
            pe: Conv::new(
                ConvShape {
                    g: dim,
                    ..ConvShape::new(dim, dim, 3, 1)
                },
                &none,
                &ctx.pp("pe"),
            )?,
            heads,
            key_dim,
            head_dim,
        })
    }

    fn scale(&self) -> f64 {
        (self.key_dim as f64).powf(-0.5)
    }

    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let (kd, hd) = (self.key_dim, self.head_dim);
        let qkv = self
            .qkv
            .forward(x, train)?
            .reshape((b, self.heads, 2 * kd + hd, h * w))?;
        let q = qkv.narrow(2, 0, kd)?;
        let k = qkv.narrow(2, kd, kd)?;
        let v = qkv.narrow(2, 2 * kd, hd)?.contiguous()?;
        // (cells × cells) weights per head; the maximum is a constant shift, held out of
        // the gradient.
        let logits = (q.transpose(2, 3)?.contiguous()? * self.scale())?.matmul(&k.contiguous()?)?;
        let max = logits.max_keepdim(D::Minus1)?.detach();
        let e = logits.broadcast_sub(&max)?.exp()?;
        let attn = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
        let y = v
            .matmul(&attn.transpose(2, 3)?.contiguous()?)?
            .reshape((b, c, h, w))?;
        let y = (y + self.pe.forward(&v.reshape((b, c, h, w))?, train)?)?;
        self.proj.forward(&y, train)
    }

    /// The Convs, and the two matrix products per head (qᵀk and v·attnᵀ, cells² ×
    /// (key_dim + head_dim) multiply-adds), which ultralytics' thop counts too.
    fn attention_cost(&self, hw: (usize, usize), cost: &mut Cost) {
        self.qkv.conv_cost(hw, cost);
        self.pe.conv_cost(hw, cost);
        self.proj.conv_cost(hw, cost);
        let cells = (hw.0 * hw.1) as f64;
        cost.macs += (self.heads * (self.key_dim + self.head_dim)) as f64 * cells * cells;
    }

    fn export_on(&self, g: &mut Graph, x: &str) -> std::result::Result<String, GraphError> {
        let (kd, hd) = (self.key_dim as i64, self.head_dim as i64);
        let qkv = self.qkv.export_on(g, x)?;
        let heads_shape = g.ints(&[0, self.heads as i64, 2 * kd + hd, -1]);
        let qkv = g.binary("Reshape", &qkv, &heads_shape);
        let sizes = g.ints(&[kd, kd, hd]);
        let parts = g.op_outputs("Split", &[&qkv, &sizes], vec![("axis", Attr::Int(2))], 3);
        let swap = || vec![("perm", Attr::Ints(vec![0, 1, 3, 2]))];
        let scale = g.scalar(self.scale());
        let q = g.binary("Mul", &parts[0], &scale);
        let qt = g.op("Transpose", &[&q], swap());
        let logits = g.binary("MatMul", &qt, &parts[1]);
        let attn = g.op("Softmax", &[&logits], vec![("axis", Attr::Int(-1))]);
        let attn_t = g.op("Transpose", &[&attn], swap());
        let y = g.binary("MatMul", &parts[2], &attn_t);
        let map_shape = g.unary("Shape", x);
        let y = g.binary("Reshape", &y, &map_shape);
        let v = g.binary("Reshape", &parts[2], &map_shape);
        let pe = self.pe.export_on(g, &v)?;
        let y = g.binary("Add", &y, &pe);
        self.proj.export_on(g, &y)
    }
}
