//! A per-stage wall-clock profile of the training step (`cargo bench --bench perf --
//! --profile`). Kernels open a [`span`] for their stage; while profiling is off that is
//! one relaxed atomic load and nothing is recorded.
//!
//! Time is exclusive: a span opened inside another pauses the outer one on the same
//! thread, so nested stages never count twice (FReLU's BatchNorm inside its activation
//! counts as BatchNorm; what an outer "other forward" span keeps is what no kernel
//! claimed). Spans measure the wall time of the thread that drives the step: open them
//! around parallel loops, never inside them, or each worker would add its own share.

use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where a training step spends its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    ConvForward,
    /// The input gradient of a convolution (skipped for the input image).
    ConvBackwardInput,
    /// The weight gradient, with the reads of the op's inputs out of candle's storage.
    ConvBackwardWeight,
    /// BatchNorm forward, with the activation when it is fused into the same kernel.
    BatchNormForward,
    BatchNormBackward,
    /// An activation module applied on its own (not fused into BatchNorm).
    ActivationForward,
    /// The backward kernels of pointwise activations and PReLU (the loss's sigmoids, a
    /// few thousand elements, land here too).
    ActivationBackward,
    /// Max-pooling and nearest upsampling, forward.
    PoolUpsampleForward,
    PoolUpsampleBackward,
    /// The loss's forward pass (its backward runs inside the backward pass).
    Loss,
    Optimizer,
    /// The rest of the model's forward pass: concat, the Detect head's reshapes, candle's
    /// generic ops.
    OtherForward,
    /// The rest of the backward pass: candle's generic op gradients and its gradient sums.
    OtherBackward,
}

impl Stage {
    pub const ALL: [Stage; 13] = [
        Stage::ConvForward,
        Stage::ConvBackwardInput,
        Stage::ConvBackwardWeight,
        Stage::BatchNormForward,
        Stage::BatchNormBackward,
        Stage::ActivationForward,
        Stage::ActivationBackward,
        Stage::PoolUpsampleForward,
        Stage::PoolUpsampleBackward,
        Stage::Loss,
        Stage::Optimizer,
        Stage::OtherForward,
        Stage::OtherBackward,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Stage::ConvForward => "conv forward",
            Stage::ConvBackwardInput => "conv backward-input",
            Stage::ConvBackwardWeight => "conv backward-weight",
            Stage::BatchNormForward => "BN forward (+ fused act)",
            Stage::BatchNormBackward => "BN backward (+ fused act)",
            Stage::ActivationForward => "activation forward",
            Stage::ActivationBackward => "activation backward",
            Stage::PoolUpsampleForward => "max-pool/upsample forward",
            Stage::PoolUpsampleBackward => "max-pool/upsample backward",
            Stage::Loss => "loss (forward)",
            Stage::Optimizer => "optimizer",
            Stage::OtherForward => "other forward ops",
            Stage::OtherBackward => "other backward ops",
        }
    }
}

const STAGES: usize = Stage::ALL.len();

static ENABLED: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; STAGES] = [const { AtomicU64::new(0) }; STAGES];
static CALLS: [AtomicU64; STAGES] = [const { AtomicU64::new(0) }; STAGES];

thread_local! {
    /// The innermost open span on this thread, and since when it has been counting.
    static OPEN: Cell<Option<(Stage, Instant)>> = const { Cell::new(None) };
}

/// Turns recording on or off for every thread.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Zeroes every stage's counters.
pub fn reset() {
    for counter in NANOS.iter().chain(&CALLS) {
        counter.store(0, Ordering::Relaxed);
    }
}

/// The time and span count recorded per stage since the last [`reset`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StageTimes {
    nanos: [u64; STAGES],
    calls: [u64; STAGES],
}

impl StageTimes {
    pub fn time(&self, stage: Stage) -> Duration {
        Duration::from_nanos(self.nanos[stage as usize])
    }

    pub fn calls(&self, stage: Stage) -> u64 {
        self.calls[stage as usize]
    }

    pub fn total(&self) -> Duration {
        Duration::from_nanos(self.nanos.iter().sum())
    }
}

pub fn snapshot() -> StageTimes {
    StageTimes {
        nanos: NANOS.each_ref().map(|c| c.load(Ordering::Relaxed)),
        calls: CALLS.each_ref().map(|c| c.load(Ordering::Relaxed)),
    }
}

/// Measures `stage` until dropped (`let _t = profile::span(Stage::ConvForward);`).
#[must_use = "a span measures until it is dropped"]
pub struct Span {
    armed: bool,
    /// The span this one paused, resumed on drop.
    parent: Option<Stage>,
    /// Spans belong to the thread-local stack of the thread that opened them.
    _not_send: PhantomData<*const ()>,
}

#[inline]
pub fn span(stage: Stage) -> Span {
    if ENABLED.load(Ordering::Relaxed) {
        open(stage)
    } else {
        Span {
            armed: false,
            parent: None,
            _not_send: PhantomData,
        }
    }
}

fn add(stage: Stage, elapsed: Duration) {
    NANOS[stage as usize].fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
}

#[cold]
fn open(stage: Stage) -> Span {
    let now = Instant::now();
    let parent = OPEN.with(|open| {
        let parent = open.get().map(|(outer, since)| {
            add(outer, now - since);
            outer
        });
        open.set(Some((stage, now)));
        parent
    });
    CALLS[stage as usize].fetch_add(1, Ordering::Relaxed);
    Span {
        armed: true,
        parent,
        _not_send: PhantomData,
    }
}

impl Span {
    #[cold]
    fn close(&self) {
        let now = Instant::now();
        OPEN.with(|open| {
            if let Some((stage, since)) = open.get() {
                add(stage, now - since);
            }
            open.set(self.parent.map(|outer| (outer, now)));
        });
    }
}

impl Drop for Span {
    #[inline]
    fn drop(&mut self) {
        if self.armed {
            self.close();
        }
    }
}
