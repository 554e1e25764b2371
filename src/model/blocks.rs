//! YOLOv5's building blocks (ultralytics `models/common.py`): Conv, Bottleneck, C3, SPPF,
//! SPP, Focus, Concat and nearest upsampling, and the [`Block`] every layer is (yolov7's
//! own blocks are in blocks_v7.rs). Parameter names follow ultralytics'
//! state_dict, relative to the `VarBuilder` each block is given.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::blocks_v7::{RepConv, Sppcspc};
use crate::act::{ActSpec, Activation};
use crate::ops::conv_bn_layer::{conv_out, ConvBn, ConvShape, Cost};
use crate::ops::maxpool::{max_pool2d, MaxPool2d};
use crate::ops::vars::stable_hash;

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

    pub(crate) fn rng(&self) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed ^ stable_hash(&self.vb.prefix()))
    }
}

/// Conv2d (no bias) + BatchNorm2d + activation; after [`Conv::fuse`], Conv2d with bias + activation.
#[derive(Debug)]
pub struct Conv {
    body: ConvBn,
    act: Activation,
}

impl Conv {
    pub fn new(shape: ConvShape, act: &ActSpec, ctx: &BlockContext) -> Result<Conv> {
        // GLU halves its input, so the convolution makes twice the block's output channels.
        let conv_out = shape.c2 * act.channel_factor();
        let body = ConvBn::new(
            ConvShape {
                c2: conv_out,
                ..shape
            },
            ctx.vb.pp("conv"),
            ctx.vb.pp("bn"),
        )?;
        let act = Activation::new(act, conv_out, ctx.vb.pp("act"), ctx.rng())?;
        Ok(Conv { body, act })
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.act.forward_after(&self.body, x, train)
    }

    /// Folds the BatchNorm into the convolution for inference (and the activation's own,
    /// if it has one).
    pub fn fuse(&mut self) -> Result<()> {
        self.body.fuse()?;
        self.act.fuse()
    }

    pub fn params(&self) -> Vec<Tensor> {
        let mut params = self.body.params();
        params.extend(self.act.params());
        params
    }

    pub fn activation(&self) -> &Activation {
        &self.act
    }

    /// Output size and thop's count for an input of `hw`.
    pub fn cost(&self, hw: (usize, usize), cost: &mut Cost) -> (usize, usize) {
        let out = self.body.cost(hw, cost);
        cost.macs += self.act.macs(out);
        out
    }
}

/// Standard bottleneck: Conv 1×1 then Conv 3×3, with a residual when shapes allow.
#[derive(Debug)]
pub struct Bottleneck {
    cv1: Conv,
    cv2: Conv,
    add: bool,
}

impl Bottleneck {
    pub fn new(
        c1: usize,
        c2: usize,
        shortcut: bool,
        g: usize,
        e: f64,
        act: &ActSpec,
        ctx: &BlockContext,
    ) -> Result<Self> {
        let hidden = (c2 as f64 * e) as usize;
        Ok(Bottleneck {
            cv1: Conv::new(ConvShape::new(c1, hidden, 1, 1), act, &ctx.pp("cv1"))?,
            cv2: Conv::new(
                ConvShape {
                    g,
                    ..ConvShape::new(hidden, c2, 3, 1)
                },
                act,
                &ctx.pp("cv2"),
            )?,
            add: shortcut && c1 == c2,
        })
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = self.cv2.forward(&self.cv1.forward(x, train)?, train)?;
        if self.add {
            x + y
        } else {
            Ok(y)
        }
    }

    fn convs_mut(&mut self) -> Vec<&mut Conv> {
        vec![&mut self.cv1, &mut self.cv2]
    }

    fn convs(&self) -> Vec<&Conv> {
        vec![&self.cv1, &self.cv2]
    }
}

/// CSP bottleneck with 3 convolutions.
#[derive(Debug)]
pub struct C3 {
    cv1: Conv,
    cv2: Conv,
    cv3: Conv,
    m: Vec<Bottleneck>,
}

impl C3 {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c1: usize,
        c2: usize,
        n: usize,
        shortcut: bool,
        g: usize,
        e: f64,
        act: &ActSpec,
        ctx: &BlockContext,
    ) -> Result<Self> {
        let hidden = (c2 as f64 * e) as usize;
        Ok(C3 {
            cv1: Conv::new(ConvShape::new(c1, hidden, 1, 1), act, &ctx.pp("cv1"))?,
            cv2: Conv::new(ConvShape::new(c1, hidden, 1, 1), act, &ctx.pp("cv2"))?,
            cv3: Conv::new(ConvShape::new(2 * hidden, c2, 1, 1), act, &ctx.pp("cv3"))?,
            m: (0..n)
                .map(|j| Bottleneck::new(hidden, hidden, shortcut, g, 1.0, act, &ctx.pp("m").pp(j)))
                .collect::<Result<_>>()?,
        })
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = self.cv1.forward(x, train)?;
        for b in &self.m {
            y = b.forward(&y, train)?;
        }
        self.cv3
            .forward(&Tensor::cat(&[y, self.cv2.forward(x, train)?], 1)?, train)
    }
}

/// Spatial pyramid pooling, fast: three chained k×k max-pools (= SPP with k, 2k-1, 3k-2).
#[derive(Debug)]
pub struct Sppf {
    cv1: Conv,
    cv2: Conv,
    k: usize,
}

impl Sppf {
    pub fn new(c1: usize, c2: usize, k: usize, act: &ActSpec, ctx: &BlockContext) -> Result<Self> {
        let hidden = c1 / 2;
        Ok(Sppf {
            cv1: Conv::new(ConvShape::new(c1, hidden, 1, 1), act, &ctx.pp("cv1"))?,
            cv2: Conv::new(ConvShape::new(hidden * 4, c2, 1, 1), act, &ctx.pp("cv2"))?,
            k,
        })
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.cv1.forward(x, train)?;
        let y1 = max_pool2d(&x, self.k, 1, self.k / 2)?;
        let y2 = max_pool2d(&y1, self.k, 1, self.k / 2)?;
        let y3 = max_pool2d(&y2, self.k, 1, self.k / 2)?;
        self.cv2.forward(&Tensor::cat(&[x, y1, y2, y3], 1)?, train)
    }
}

/// Spatial pyramid pooling with parallel max-pools of several sizes.
#[derive(Debug)]
pub struct Spp {
    cv1: Conv,
    cv2: Conv,
    ks: Vec<usize>,
}

impl Spp {
    pub fn new(
        c1: usize,
        c2: usize,
        ks: &[usize],
        act: &ActSpec,
        ctx: &BlockContext,
    ) -> Result<Self> {
        let hidden = c1 / 2;
        Ok(Spp {
            cv1: Conv::new(ConvShape::new(c1, hidden, 1, 1), act, &ctx.pp("cv1"))?,
            cv2: Conv::new(
                ConvShape::new(hidden * (ks.len() + 1), c2, 1, 1),
                act,
                &ctx.pp("cv2"),
            )?,
            ks: ks.to_vec(),
        })
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.cv1.forward(x, train)?;
        self.cv2.forward(&pyramid(&x, &self.ks)?, train)
    }
}

/// `x` beside its stride-1 'same' max-pools of each size in `ks`, along the channels (SPP's
/// and SPPCSPC's parallel pooling).
pub fn pyramid(x: &Tensor, ks: &[usize]) -> Result<Tensor> {
    let mut parts = vec![x.clone()];
    for &k in ks {
        parts.push(max_pool2d(x, k, 1, k / 2)?);
    }
    Tensor::cat(&parts, 1)
}

/// Space-to-depth (each 2×2 patch into channels), then a Conv.
#[derive(Debug)]
pub struct Focus {
    conv: Conv,
}

impl Focus {
    pub fn new(shape: ConvShape, act: &ActSpec, ctx: &BlockContext) -> Result<Self> {
        Ok(Focus {
            conv: Conv::new(
                ConvShape {
                    c1: shape.c1 * 4,
                    ..shape
                },
                act,
                &ctx.pp("conv"),
            )?,
        })
    }

    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        // x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]
        let patches = x.reshape((n, c, h / 2, 2, w / 2, 2))?;
        let pick = |dy: usize, dx: usize| {
            patches
                .narrow(3, dy, 1)?
                .narrow(5, dx, 1)?
                .reshape((n, c, h / 2, w / 2))
        };
        let y = Tensor::cat(&[pick(0, 0)?, pick(1, 0)?, pick(0, 1)?, pick(1, 1)?], 1)?;
        self.conv.forward(&y, train)
    }
}

/// Every block a YOLOv5 or YOLOv7 layer can be (Detect and IDetect are kept apart, as the
/// model's head).
#[derive(Debug)]
pub enum Block {
    Conv(Conv),
    Bottleneck(Bottleneck),
    C3(C3),
    Sppf(Sppf),
    Spp(Spp),
    Focus(Focus),
    Concat,
    Upsample(usize),
    /// yolov7's MP and SP.
    MaxPool(MaxPool2d),
    /// Boxed: seven Convs would make every Block as large.
    Sppcspc(Box<Sppcspc>),
    RepConv(RepConv),
}

impl Block {
    pub fn forward(&self, xs: &[Tensor], train: bool) -> Result<Tensor> {
        let x = &xs[0];
        match self {
            Block::Conv(m) => m.forward(x, train),
            Block::Bottleneck(m) => m.forward(x, train),
            Block::C3(m) => m.forward(x, train),
            Block::Sppf(m) => m.forward(x, train),
            Block::Spp(m) => m.forward(x, train),
            Block::Focus(m) => m.forward(x, train),
            Block::Concat => Tensor::cat(xs, 1),
            Block::Upsample(s) => crate::ops::upsample_nearest::upsample_nearest2d(x, *s),
            Block::MaxPool(p) => max_pool2d(x, p.kernel, p.stride, p.padding),
            Block::Sppcspc(m) => m.forward(x, train),
            Block::RepConv(m) => m.forward(x, train),
        }
    }

    /// Every learnable parameter (BatchNorm running statistics excluded).
    pub fn params(&self) -> Vec<Tensor> {
        match self {
            Block::RepConv(m) => m.params(),
            _ => self.convs().into_iter().flat_map(Conv::params).collect(),
        }
    }

    /// The activation of every Conv inside, and of a RepConv.
    pub fn activations(&self) -> Vec<&Activation> {
        match self {
            Block::RepConv(m) => vec![m.activation()],
            _ => self.convs().into_iter().map(Conv::activation).collect(),
        }
    }

    /// Folds BatchNorms (and a RepConv's branches) into convolutions for inference.
    pub fn fuse(&mut self) -> Result<()> {
        match self {
            Block::RepConv(m) => m.fuse(),
            _ => self.convs_mut().into_iter().try_for_each(Conv::fuse),
        }
    }

    /// Every Conv inside, in state_dict order (a RepConv's branches are not Convs).
    pub fn convs(&self) -> Vec<&Conv> {
        match self {
            Block::Conv(m) => vec![m],
            Block::Bottleneck(m) => m.convs(),
            Block::C3(m) => [&m.cv1, &m.cv2, &m.cv3]
                .into_iter()
                .chain(m.m.iter().flat_map(Bottleneck::convs))
                .collect(),
            Block::Sppf(m) => vec![&m.cv1, &m.cv2],
            Block::Spp(m) => vec![&m.cv1, &m.cv2],
            Block::Focus(m) => vec![&m.conv],
            Block::Sppcspc(m) => m.convs(),
            Block::Concat | Block::Upsample(_) | Block::MaxPool(_) | Block::RepConv(_) => vec![],
        }
    }

    fn convs_mut(&mut self) -> Vec<&mut Conv> {
        match self {
            Block::Conv(m) => vec![m],
            Block::Bottleneck(m) => m.convs_mut(),
            Block::C3(m) => {
                let mut v = vec![&mut m.cv1, &mut m.cv2, &mut m.cv3];
                v.extend(m.m.iter_mut().flat_map(Bottleneck::convs_mut));
                v
            }
            Block::Sppf(m) => vec![&mut m.cv1, &mut m.cv2],
            Block::Spp(m) => vec![&mut m.cv1, &mut m.cv2],
            Block::Focus(m) => vec![&mut m.conv],
            Block::Sppcspc(m) => m.convs_mut(),
            Block::Concat | Block::Upsample(_) | Block::MaxPool(_) | Block::RepConv(_) => vec![],
        }
    }

    /// Output size for inputs of `hws` (one per input) with `c_in` channels in the first,
    /// adding thop's count to `cost`.
    pub fn cost(&self, hws: &[(usize, usize)], c_in: usize, cost: &mut Cost) -> (usize, usize) {
        let hw = hws[0];
        match self {
            Block::Conv(m) => m.cost(hw, cost),
            Block::Bottleneck(m) => m.cv2.cost(m.cv1.cost(hw, cost), cost),
            Block::C3(m) => {
                m.cv2.cost(hw, cost);
                let inner =
                    m.m.iter()
                        .flat_map(Bottleneck::convs)
                        .fold(m.cv1.cost(hw, cost), |hw, c| c.cost(hw, cost));
                m.cv3.cost(inner, cost)
            }
            Block::Sppf(m) => m.cv2.cost(m.cv1.cost(hw, cost), cost),
            Block::Spp(m) => m.cv2.cost(m.cv1.cost(hw, cost), cost),
            Block::Focus(m) => m.conv.cost((hw.0 / 2, hw.1 / 2), cost),
            Block::Concat => hw,
            Block::Upsample(s) => {
                let out = (hw.0 * s, hw.1 * s);
                cost.macs += c_in as f64 * (out.0 * out.1) as f64;
                out
            }
            // thop counts no operations for max-pooling.
            Block::MaxPool(p) => (
                conv_out(hw.0, p.kernel, p.stride, p.padding, 1),
                conv_out(hw.1, p.kernel, p.stride, p.padding, 1),
            ),
            Block::Sppcspc(m) => m.cost(hw, cost),
            Block::RepConv(m) => m.cost(hw, cost),
        }
    }
}
