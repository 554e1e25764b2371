//! Throughput of every pointwise activation on a YOLOv5n P3-sized map (1×64×160×160 f32),
//! against a plain copy of the same tensor as the memory-bandwidth ceiling.
//!
//! `cargo bench --bench activations` prints a markdown table: for each activation at its
//! default parameters, the fused forward (`ops::pointwise::apply`), forward plus the
//! backward kernel (`PointwiseGrad` on x and dy), and candle's op-by-op composition of
//! the same forward where candle has one. Every figure is the median of `RUNS` timed runs
//! after `WARMUP` untimed ones; bytes count each tensor read or written once.

use std::time::{Duration, Instant};

use actyolo::act::zoo::ACTIVATIONS;
use actyolo::act::ActSpec;
use actyolo::ops::pointwise::{apply, PointwiseGrad};
use actyolo::ops::simd::CHUNK;
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
fn candle_composition(spec: &ActSpec) -> Option<Composition> {
    use candle_nn::ops;
    let a = spec.args();
    let (f0, f1) = (a.f(0), a.f(1));
    Some(match spec.def().name {
        "ReLU" => Box::new(|x| x.relu()),
        "LeakyReLU" => Box::new(move |x| ops::leaky_relu(x, f0)),
        "Hardtanh" => Box::new(move |x| x.clamp(f0 as f32, f1 as f32)),
        "ReLU6" => Box::new(|x| x.clamp(0f32, 6f32)),
        "Sigmoid" => Box::new(ops::sigmoid),
        "Hardsigmoid" => Box::new(ops::hard_sigmoid),
        "Tanh" => Box::new(|x| x.tanh()),
        "SiLU" => Box::new(|x| x.silu()),
        "Mish" => Box::new(ops::mish),
        "Hardswish" => Box::new(|x| x * ops::hard_sigmoid(x)?),
        "ELU" => Box::new(move |x| x.elu(f0)),
        "SELU" => Box::new(|x| ops::selu(x, 1.673_263_2, 1.050_701)),
        "GELU" if a.s(0) == "tanh" => Box::new(|x| x.gelu()),
        "GELU" => Box::new(|x| x.gelu_erf()),
        "LogSigmoid" => Box::new(|x| ops::sigmoid(x)?.log()),
        "Softplus" if f0 == 1.0 => Box::new(|x| (x.exp()? + 1.0)?.log()),
        "Softsign" => Box::new(|x| x / (x.abs()? + 1.0)?),
        "Tanhshrink" => Box::new(|x| x - x.tanh()?),
        _ => return None,
    })
}

/// Every elementwise, non-learnable activation at its defaults, plus GELU's tanh form.
fn activations() -> Vec<(String, ActSpec)> {
    ACTIVATIONS
        .iter()
        .filter(|d| d.pointwise && !d.learnable)
        .map(|&d| (d.name.to_string(), ActSpec::of(d)))
        .chain(
            ActSpec::parse("nn.GELU(approximate='tanh')")
                .ok()
                .map(|spec| ("GELU tanh".to_string(), spec)),
        )
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
        .map(|(name, spec)| {
            let f = spec
                .elementwise()
                .expect("a pointwise declaration names its function");
            let fwd = gb_per_s(fwd_bytes, median_time(|| apply(&f, x).unwrap()));
            // The forward output is dropped before the backward, which does not read it:
            // with both alive, glibc hands their 13 MB back to the OS after every run and
            // the next run times page faults rather than the kernels.
            let fwd_bwd = gb_per_s(
                fwd_bwd_bytes,
                median_time(|| {
                    drop(apply(&f, x).unwrap());
                    x.apply_op2_no_bwd(dy, &PointwiseGrad(f.clone())).unwrap()
                }),
            );
            let candle = candle_composition(&spec).map_or("-".to_string(), |compose| {
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
