//! Throughput of every pointwise activation on a YOLOv5n P3-sized map (1×64×160×160 f32),
//! against a plain copy of the same tensor as the memory-bandwidth ceiling.
//!
//! `cargo bench --bench activations` prints a markdown table: for each activation at its
//! default parameters, the fused forward (`kernels::pointwise::apply`), forward plus the
//! backward kernel (`PointwiseGrad` on x and dy), and candle's op-by-op composition of
//! the same forward where candle has one. Every figure is the median of `RUNS` timed runs
//! after `WARMUP` untimed ones; bytes count each tensor read or written once.

use std::time::{Duration, Instant};

use actyolo::act::kernels::pointwise::{apply, PointwiseGrad};
use actyolo::act::kernels::CHUNK;
use actyolo::act::pointwise::{Elu, Hardtanh, LeakyRelu, Softplus};
use actyolo::act::{ActSpec, GeluApprox, Pointwise, KINDS};
use candle_core::{Device, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

const SHAPE: (usize, usize, usize, usize) = (1, 64, 160, 160);
const WARMUP: usize = 5;
const RUNS: usize = 51;

/// Median wall time of `op` over `RUNS` back-to-back calls, after `WARMUP` untimed
/// ones; dropping its output is not timed.
fn median_time<T>(mut op: impl FnMut() -> T) -> Duration {
    for _ in 0..WARMUP {
        drop(op());
    }
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let out = op();
            let elapsed = start.elapsed();
            drop(out);
            elapsed
        })
        .collect();
    times.sort();
    times[RUNS / 2]
}

fn gb_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / time.as_secs_f64() / 1e9
}

/// Uniform values in [-6, 6), the same on every run.
fn random_tensor(seed: u64) -> Result<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (n, c, h, w) = SHAPE;
    let values: Vec<f32> = (0..n * c * h * w)
        .map(|_| rng.random_range(-6.0..6.0))
        .collect();
    Tensor::from_vec(values, SHAPE, &Device::Cpu)
}

type Composition = Box<dyn Fn(&Tensor) -> Result<Tensor>>;

/// The same function built from candle's own ops, where candle has them (Softplus
/// without its threshold).
fn candle_composition(pointwise: Pointwise) -> Option<Composition> {
    use candle_nn::ops;
    use Pointwise as P;
    Some(match pointwise {
        P::Relu(_) => Box::new(|x| x.relu()),
        P::LeakyRelu(LeakyRelu { slope }) => Box::new(move |x| ops::leaky_relu(x, slope)),
        P::Hardtanh(Hardtanh { min, max }) => Box::new(move |x| x.clamp(min as f32, max as f32)),
        P::Sigmoid(_) => Box::new(ops::sigmoid),
        P::Hardsigmoid(_) => Box::new(ops::hard_sigmoid),
        P::Tanh(_) => Box::new(|x| x.tanh()),
        P::Silu(_) => Box::new(|x| x.silu()),
        P::Mish(_) => Box::new(ops::mish),
        P::Hardswish(_) => Box::new(|x| x * ops::hard_sigmoid(x)?),
        P::Elu(Elu {
            alpha,
            scale,
            input_scale,
        }) if input_scale == 1.0 && scale == 1.0 => Box::new(move |x| x.elu(alpha)),
        P::Elu(Elu {
            alpha,
            scale,
            input_scale,
        }) if input_scale == 1.0 => Box::new(move |x| ops::selu(x, alpha as f32, scale as f32)),
        P::Gelu(_) => Box::new(|x| x.gelu_erf()),
        P::GeluTanh(_) => Box::new(|x| x.gelu()),
        P::LogSigmoid(_) => Box::new(|x| ops::sigmoid(x)?.log()),
        P::Softplus(Softplus { beta, .. }) if beta == 1.0 => Box::new(|x| (x.exp()? + 1.0)?.log()),
        P::Softsign(_) => Box::new(|x| x / (x.abs()? + 1.0)?),
        P::Tanhshrink(_) => Box::new(|x| x - x.tanh()?),
        _ => return None,
    })
}

/// Every pointwise, non-learnable activation at its defaults, plus GELU's tanh form.
fn activations() -> Vec<(String, Pointwise)> {
    let gelu_tanh = ActSpec::Gelu {
        approximate: GeluApprox::Tanh,
    };
    KINDS
        .iter()
        .filter(|k| k.pointwise && !k.learnable)
        .map(|k| (k.name.to_string(), k.kind.default_spec()))
        .chain([("GELU tanh".to_string(), gelu_tanh)])
        .map(|(name, spec)| {
            (
                name,
                Pointwise::from_spec(&spec).expect("a pointwise kind has a fused kernel"),
            )
        })
        .collect()
}

/// `cargo bench --bench activations [-- NAME]`: NAME keeps the activations whose name
/// contains it.
fn main() -> Result<()> {
    let filter = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .unwrap_or_default();
    let (x, dy) = (&random_tensor(0)?, &random_tensor(1)?);
    let tensor_bytes = x.elem_count() * std::mem::size_of::<f32>();
    let (fwd_bytes, fwd_bwd_bytes) = (2 * tensor_bytes, 5 * tensor_bytes);
    let xs = x.flatten_all()?.to_vec1::<f32>()?;
    let mut preallocated = vec![0f32; xs.len()];
    let activations: Vec<_> = activations()
        .into_iter()
        .filter(|(name, ..)| name.contains(&filter))
        .collect();

    // The ceiling is the copy that works like the kernels: on all threads in CHUNK-sized
    // pieces, into a freshly allocated output that is not zeroed first.
    let copies = [
        (
            "rayon `par_iter().with_min_len(CHUNK).copied().collect()` (allocates): the ceiling",
            median_time(|| {
                xs.par_iter()
                    .with_min_len(CHUNK)
                    .copied()
                    .collect::<Vec<f32>>()
            }),
        ),
        (
            "candle `x.copy()` (memcpy on one thread, allocates)",
            median_time(|| x.copy().unwrap()),
        ),
        (
            "`copy_from_slice` into a preallocated buffer (one thread)",
            median_time(|| preallocated.copy_from_slice(&xs)),
        ),
    ];
    let copy_gb_s = gb_per_s(fwd_bytes, copies[0].1);
    println!(
        "x: {SHAPE:?} f32, {:.2} MB; {} rayon threads; median of {RUNS} runs\n",
        tensor_bytes as f64 / 1e6,
        rayon::current_num_threads()
    );
    println!("| copy | GB/s |\n|---|---:|");
    for (name, time) in copies {
        println!("| {name} | {:.1} |", gb_per_s(fwd_bytes, time));
    }
    println!();

    let rows: Vec<String> = activations
        .into_iter()
        .map(|(name, pointwise)| {
            let fwd = gb_per_s(fwd_bytes, median_time(|| apply(pointwise, x).unwrap()));
            // The forward output is dropped before the backward, which does not read it:
            // with both alive, glibc hands their 13 MB back to the OS after every run and
            // the next run times page faults rather than the kernels.
            let fwd_bwd = gb_per_s(
                fwd_bwd_bytes,
                median_time(|| {
                    drop(apply(pointwise, x).unwrap());
                    x.apply_op2_no_bwd(dy, &PointwiseGrad(pointwise)).unwrap()
                }),
            );
            let candle = candle_composition(pointwise).map_or("-".to_string(), |compose| {
                format!(
                    "{:.1}",
                    gb_per_s(fwd_bytes, median_time(|| compose(x).unwrap()))
                )
            });
            format!(
                "| {name} | {fwd:.1} | {:.0}% | {fwd_bwd:.1} | {candle} |",
                100.0 * fwd / copy_gb_s
            )
        })
        .collect();
    println!(
        "| activation | fwd GB/s | fwd % of copy | fwd+bwd GB/s | candle-composition fwd GB/s |"
    );
    println!("|---|---:|---:|---:|---:|");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}
