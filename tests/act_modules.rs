//! The activation modules beyond the golden values: fused kernels against candle's plain
//! composition, RReLU's random training mode, parameter bookkeeping, build errors, and the
//! catalogue's declared properties against a numeric scan.

use actyolo::act::zoo::ACTIVATIONS;
use actyolo::act::{ActSpec, Activation};
use actyolo::ops::vars::SeededVarMap;
use actyolo::ops::{acon, maximum, pointwise, prelu};
use candle_core::{DType, Device, Tensor, Var};

/// Deterministic values in [-6, 6] that avoid the kinks at exact points (0, ±0.5, ±3, 6).
/// A tensor's elements in order, as f32.
trait Values {
    fn values(&self) -> Vec<f32>;
}

impl Values for Tensor {
    fn values(&self) -> Vec<f32> {
        self.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }
}

fn sample(shape: (usize, usize, usize, usize)) -> Tensor {
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let v: Vec<f32> = (0..n)
        .map(|i| ((i as f32 * 0.7548777).fract() - 0.5) * 12.0 + 1e-3)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn max_excess(a: &Tensor, b: &Tensor, tol: f32) -> f32 {
    let a = a.values();
    let b = b.values();
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(&b)
        .map(|(a, b)| (a - b).abs() - tol * (1.0 + b.abs()))
        .fold(f32::MIN, f32::max)
}

fn build(spec: &str, channels: usize) -> (Activation, SeededVarMap) {
    let store = SeededVarMap::new(0);
    let spec = ActSpec::parse(spec).unwrap();
    let act = Activation::new(
        &spec,
        channels,
        store.builder(DType::F32, &Device::Cpu),
        store.rng_for("act"),
    )
    .unwrap();
    (act, store)
}

/// Forward value and input gradient (of sum(y * w) for a fixed w) of a function.
fn value_and_grad(
    f: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
    x: &Tensor,
) -> (Tensor, Tensor) {
    let xv = Var::from_tensor(x).unwrap();
    let y = f(xv.as_tensor()).unwrap();
    let w = sample(y.dims4().unwrap()).affine(0.1, 0.3).unwrap();
    let grads = (&y * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let g = grads.get(xv.as_tensor()).unwrap().clone();
    (y, g)
}

#[test]
fn fused_pointwise_kernels_equal_candle_composition() {
    type Composed = fn(&Tensor) -> candle_core::Result<Tensor>;
    let cases: [(&str, Composed); 8] = [
        ("relu", |x| x.relu()),
        ("sigmoid", |x| candle_nn::ops::sigmoid(x)),
        ("tanh", |x| x.tanh()),
        ("silu", |x| x.silu()),
        ("gelu", |x| x.gelu_erf()),
        ("nn.ELU(0.5)", |x| x.elu(0.5)),
        ("softsign", |x| x / (x.abs()? + 1.0)?),
        ("mish", |x| x * ((x.exp()? + 1.0)?.log()?.tanh()?)),
    ];
    // Non-contiguous input too: the op must make it contiguous, not misread it.
    let x = sample((2, 3, 8, 8));
    let x_t = x.transpose(2, 3).unwrap();
    for (spec, composed) in cases {
        let p = ActSpec::parse(spec).unwrap().elementwise().unwrap();
        for input in [&x, &x_t] {
            let (y_fused, g_fused) = value_and_grad(|x| pointwise::apply(&p, x), input);
            let (y_plain, g_plain) = value_and_grad(composed, input);
            assert!(
                max_excess(&y_fused, &y_plain, 1e-5) <= 0.0,
                "{spec}: forward"
            );
            assert!(
                max_excess(&g_fused, &g_plain, 1e-5) <= 0.0,
                "{spec}: gradient"
            );
        }
    }
}

#[test]
fn prelu_kernel_equals_composition_for_one_and_per_channel_slopes() {
    let x = sample((2, 4, 5, 5));
    for slopes in [vec![0.25f32], vec![0.1, -0.3, 0.5, 2.0]] {
        let w = Var::from_tensor(&Tensor::new(slopes.as_slice(), &Device::Cpu).unwrap()).unwrap();
        let wb = |x: &Tensor| -> candle_core::Result<Tensor> {
            let shape = if slopes.len() == 1 {
                (1, 1, 1, 1)
            } else {
                (1, slopes.len(), 1, 1)
            };
            x.minimum(0.0)?
                .broadcast_mul(&w.as_tensor().reshape(shape)?)?
                + x.relu()?
        };
        let xv = Var::from_tensor(&x).unwrap();
        let weight = sample((2, 4, 5, 5));
        let mut results = vec![];
        for f in [
            &(|x: &Tensor| prelu::apply(x, w.as_tensor()))
                as &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
            &wb,
        ] {
            let y = f(xv.as_tensor()).unwrap();
            let grads = (&y * &weight)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            results.push((
                y,
                grads.get(xv.as_tensor()).unwrap().clone(),
                grads.get(w.as_tensor()).unwrap().clone(),
            ));
        }
        let (a, b) = (&results[0], &results[1]);
        assert!(max_excess(&a.0, &b.0, 1e-5) <= 0.0, "forward");
        assert!(max_excess(&a.1, &b.1, 1e-5) <= 0.0, "input gradient");
        let (ga, gb) = (a.2.to_vec1::<f32>().unwrap(), b.2.to_vec1::<f32>().unwrap());
        for (ga, gb) in ga.iter().zip(&gb) {
            assert!(
                (ga - gb).abs() <= 1e-4 * (1.0 + gb.abs()),
                "slope gradient {ga} vs {gb}"
            );
        }
    }
}

#[test]
fn acon_kernel_equals_composition_for_channel_and_image_betas() {
    // Planes of 300 values: more than one summation block, with a remainder.
    let (n, c) = (2, 3);
    let x = Var::from_tensor(&(sample((n, c, 15, 20)) * 3.0).unwrap()).unwrap();
    let var = |v: Vec<f32>, shape: (usize, usize, usize, usize)| {
        Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
    };
    let p1 = var(vec![1.2, -0.4, 0.7], (1, c, 1, 1));
    let p2 = var(vec![0.1, 0.3, -0.9], (1, c, 1, 1));
    let weight = sample((n, c, 15, 20));
    // ACON-C's β per channel; Meta-ACON-C's per image and channel.
    for beta in [
        var(vec![1.0, 0.5, 2.0], (1, c, 1, 1)),
        var(vec![0.9, 1.1, 0.2, 1.7, 0.6, 3.0], (n, c, 1, 1)),
    ] {
        let plain = |x: &Tensor| -> candle_core::Result<Tensor> {
            let dpx = x.broadcast_mul(&(p1.as_tensor() - p2.as_tensor())?)?;
            let sig = candle_nn::ops::sigmoid(&dpx.broadcast_mul(beta.as_tensor())?)?;
            (dpx * sig)? + x.broadcast_mul(p2.as_tensor())?
        };
        let fused = |x: &Tensor| acon::apply(x, p1.as_tensor(), p2.as_tensor(), beta.as_tensor());
        let mut results = vec![];
        for f in [
            &fused as &dyn Fn(&Tensor) -> candle_core::Result<Tensor>,
            &plain,
        ] {
            let y = f(x.as_tensor()).unwrap();
            let grads = (&y * &weight)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let grad = |v: &Var| grads.get(v.as_tensor()).unwrap().clone();
            results.push([y, grad(&x), grad(&p1), grad(&p2), grad(&beta)]);
        }
        for (what, (ours, theirs)) in ["forward", "dx", "dp1", "dp2", "dbeta"]
            .iter()
            .zip(results[0].iter().zip(&results[1]))
        {
            // Parameter gradients sum 600 or 300 products: 1e-4 relative.
            assert!(
                max_excess(
                    ours,
                    theirs,
                    if what.starts_with("dp") || *what == "dbeta" {
                        1e-4
                    } else {
                        1e-5
                    }
                ) <= 0.0,
                "{what} with β of shape {:?}",
                beta.dims()
            );
        }
    }
}

#[test]
fn relu_passes_nan_through_as_torch_does() {
    // A NaN turned into 0 would hide a diverged layer behind finite outputs.
    let (act, _) = build("relu", 1);
    let x = Tensor::new(&[f32::NAN, -1.0, 2.0], &Device::Cpu)
        .unwrap()
        .reshape((1, 1, 1, 3))
        .unwrap();
    let y = act.forward(&x, false).unwrap().values();
    assert!(y[0].is_nan() && y[1] == 0.0 && y[2] == 2.0, "{y:?}");
}

#[test]
fn maximum_kernel_equals_candle_maximum_ties_included() {
    let a = Var::from_tensor(&sample((2, 3, 10, 9))).unwrap();
    // Every fourth element ties, the rest differ either way.
    let b_values: Vec<f32> = a
        .as_tensor()
        .values()
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if i % 4 == 0 {
                v
            } else {
                v + (i % 3) as f32 - 1.0
            }
        })
        .collect();
    let b = Var::from_tensor(&Tensor::from_vec(b_values, (2, 3, 10, 9), &Device::Cpu).unwrap())
        .unwrap();
    let weight = sample((2, 3, 10, 9));
    let mut results = vec![];
    for ours in [true, false] {
        let y = if ours {
            maximum::apply(a.as_tensor(), b.as_tensor())
        } else {
            a.as_tensor().maximum(b.as_tensor())
        }
        .unwrap();
        let grads = (&y * &weight)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        results.push([
            y,
            grads.get(a.as_tensor()).unwrap().clone(),
            grads.get(b.as_tensor()).unwrap().clone(),
        ]);
    }
    for (what, (ours, theirs)) in ["forward", "da", "db"]
        .iter()
        .zip(results[0].iter().zip(&results[1]))
    {
        assert!(max_excess(ours, theirs, 0.0) <= 0.0, "{what}");
    }
}

#[test]
fn rrelu_training_draws_slopes_in_range_and_backpropagates_them() {
    let (act, _) = build("nn.RReLU(0.1, 0.3)", 4);
    let x = Var::from_tensor(&sample((2, 4, 6, 6))).unwrap();
    let y = act.forward(x.as_tensor(), true).unwrap();
    let g = y
        .sum_all()
        .unwrap()
        .backward()
        .unwrap()
        .get(x.as_tensor())
        .unwrap()
        .values();
    let xs = x.as_tensor().values();
    let ys = y.values();
    let mut slopes = vec![];
    for ((&x, &y), &g) in xs.iter().zip(&ys).zip(&g) {
        if x > 0.0 {
            assert_eq!((y, g), (x, 1.0));
        } else {
            let slope = y / x;
            assert!((0.1 - 1e-6..=0.3 + 1e-6).contains(&slope), "slope {slope}");
            assert!((g - slope).abs() < 1e-5, "gradient {g} vs slope {slope}");
            slopes.push(slope);
        }
    }
    let mean = slopes.iter().sum::<f32>() / slopes.len() as f32;
    assert!(
        (mean - 0.2).abs() < 0.02,
        "slopes should be uniform on [0.1, 0.3], mean {mean}"
    );
    // A second call draws new slopes; a fresh module with the same seed repeats the first.
    let again = act.forward(x.as_tensor(), true).unwrap().values();
    assert_ne!(again, ys);
    let (fresh, _) = build("nn.RReLU(0.1, 0.3)", 4);
    assert_eq!(fresh.forward(x.as_tensor(), true).unwrap().values(), ys);
    // Eval mode: the mean slope.
    let eval = act
        .forward(&Tensor::new(&[-1f32, 2.0], &Device::Cpu).unwrap(), false)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(eval, vec![-0.2, 2.0]);
}

#[test]
fn learnable_activations_own_per_layer_parameters_under_ultralytics_names() {
    let count = |spec: &str, c: usize| -> (usize, Vec<String>) {
        let (act, store) = build(spec, c);
        let n = act.params().iter().map(|t| t.elem_count()).sum();
        let mut names: Vec<String> = store
            .var_map()
            .data()
            .lock()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        names.sort();
        (n, names)
    };
    assert_eq!(count("nn.PReLU()", 32), (1, vec!["weight".into()]));
    assert_eq!(count("nn.PReLU(num_parameters=-1)", 32).0, 32);
    assert_eq!(count("nn.PReLU(num_parameters=32)", 32).0, 32);
    let (n, names) = count("FReLU", 32);
    assert_eq!(n, 32 * 9 + 2 * 32);
    assert_eq!(
        names,
        [
            "bn.bias",
            "bn.running_mean",
            "bn.running_var",
            "bn.weight",
            "conv.weight"
        ]
    );
    assert_eq!(
        count("AconC", 32),
        (3 * 32, vec!["beta".into(), "p1".into(), "p2".into()])
    );
    // hidden width max(r, C / r): 16 for C = 32, r = 16; 8 for C = 64, r = 8.
    assert_eq!(
        count("MetaAconC", 32).0,
        2 * 32 + (16 * 32 + 16) + (32 * 16 + 32)
    );
    assert_eq!(
        count("MetaAconC(r=8)", 64).0,
        2 * 64 + (8 * 64 + 8) + (64 * 8 + 64)
    );
    assert_eq!(count("silu", 32), (0, vec![]));
    // Two layers built from one spec do not share parameters.
    let (a, _) = build("nn.PReLU()", 8);
    let (b, _) = build("nn.PReLU()", 8);
    assert_ne!(a.params()[0].id(), b.params()[0].id());
}

#[test]
fn impossible_builds_are_errors_not_panics() {
    let store = SeededVarMap::new(0);
    let vb = || store.builder(DType::F32, &Device::Cpu);
    let rng = || store.rng_for("act");
    let err = Activation::new(
        &ActSpec::parse("nn.PReLU(num_parameters=16)").unwrap(),
        32,
        vb(),
        rng(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("32 channels"), "{err}");
    let err = Activation::new(&ActSpec::parse("nn.GLU()").unwrap(), 5, vb(), rng()).unwrap_err();
    assert!(err.to_string().contains("even"), "{err}");
}

#[test]
fn glu_halves_the_channels() {
    let (act, _) = build("nn.GLU()", 6);
    let y = act.forward(&sample((2, 6, 3, 3)), false).unwrap();
    assert_eq!(y.dims(), &[2, 3, 3, 3]);
    assert_eq!(ActSpec::parse("nn.GLU()").unwrap().channel_factor(), 2);
}

/// The properties `acts list` declares, checked on f(x) and f'(x) in f64 over [-50, 50].
#[test]
fn declared_properties_hold_numerically() {
    let grid: Vec<f64> = (-50_000..=50_000).map(|i| i as f64 / 1000.0).collect();
    for &info in ACTIVATIONS {
        let Some(p) = ActSpec::of(info).elementwise() else {
            continue;
        };
        let props = info.properties;
        let ys: Vec<f64> = grid.iter().map(|&x| p.value(x)).collect();
        let monotonic = ys.windows(2).all(|w| w[1] >= w[0] - 1e-12);
        let zero = p.value(0.0).abs() < 1e-12;
        let bounded_below = p.value(-1e6) > -100.0 && ys.iter().all(|&y| y > -100.0);
        let bounded_above = p.value(1e6) < 100.0 && ys.iter().all(|&y| y < 100.0);
        // C1: no jump in the derivative anywhere on the grid (kinks sit on grid points).
        let smooth = grid
            .iter()
            .all(|&x| (p.derivative(x + 1e-9) - p.derivative(x - 1e-9)).abs() < 1e-3);
        let observed = [monotonic, zero, bounded_below, bounded_above, smooth];
        let declared = [
            props.monotonic,
            props.zero_at_zero,
            props.bounded_below,
            props.bounded_above,
            props.smooth,
        ]
        .map(|d| {
            d.unwrap_or_else(|| panic!("{}: pointwise, so every property applies", info.name))
        });
        assert_eq!(
            observed, declared,
            "{}: [monotonic, zero_at_zero, bounded_below, bounded_above, smooth]",
            info.name
        );
        // f' is the derivative of f: central differences away from the kinks.
        for &x in &[-4.1, -2.2, -0.7, 0.3, 1.3, 2.6, 4.7] {
            let numeric = (p.value(x + 1e-6) - p.value(x - 1e-6)) / 2e-6;
            assert!(
                (numeric - p.derivative(x)).abs() < 1e-5 * (1.0 + numeric.abs()),
                "{}: f'({x}) = {} vs numeric {numeric}",
                info.name,
                p.derivative(x)
            );
        }
    }
}
