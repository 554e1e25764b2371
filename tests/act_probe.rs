//! The activation diagnostics against PyTorch (`tools/gen_diagnostics_fixtures.py`): dead
//! channels, saturated outputs, the limits they use and the pre-activation moments; and
//! the probe of a whole model, which records every Conv and leaves the outputs unchanged.

use candle_core::{Device, Tensor};
use serde::Deserialize;

use actyolo::act::probe::{capture, limits, measure};
use actyolo::act::ActSpec;
use actyolo::model::build::Model;
use actyolo::model::config::ModelConfig;
use actyolo::ops::pointwise;

#[derive(Deserialize)]
struct Fixture {
    shape: Vec<usize>,
    z: Vec<f32>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    act: String,
    lower: Option<f64>,
    upper: Option<f64>,
    dead: f64,
    saturated: f64,
    mean: f64,
    std: f64,
}

fn fixture() -> Fixture {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/diagnostics.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * b.abs().max(1.0)
}

#[test]
fn diagnostics_match_pytorch() {
    let f = fixture();
    let z = Tensor::from_vec(f.z.clone(), f.shape.as_slice(), &Device::Cpu).unwrap();
    for case in &f.cases {
        let spec = ActSpec::parse(&case.act).unwrap();
        let function = spec.elementwise().unwrap();
        let (lower, upper) = limits(&*function);
        // Limits to 1e-9: they are function values far out, in f64.
        for (ours, torch) in [(lower, case.lower), (upper, case.upper)] {
            match (ours, torch) {
                (Some(a), Some(b)) => assert!(close(a, b, 1e-9), "{}: limit {a} vs {b}", case.act),
                (a, b) => assert_eq!(
                    a.is_some(),
                    b.is_some(),
                    "{}: limit {a:?} vs {b:?}",
                    case.act
                ),
            }
        }
        let y = pointwise::apply(&function, &z).unwrap();
        let probe = measure("model.0", &case.act, Some(&*function), &z, &y, Vec::new()).unwrap();
        // Counts are exact (fractions of 6 channels and 300 outputs); moments to 1e-6 (the
        // probe sums in f32 lanes, then f64).
        assert!(
            close(probe.dead_fraction, case.dead, 1e-6),
            "{}: dead {} vs {}",
            case.act,
            probe.dead_fraction,
            case.dead
        );
        assert!(
            close(probe.saturated_fraction, case.saturated, 1e-6),
            "{}: saturated {} vs {}",
            case.act,
            probe.saturated_fraction,
            case.saturated
        );
        assert!(close(probe.preact_mean, case.mean, 1e-6));
        assert!(close(probe.preact_std, case.std, 1e-6));
        assert_eq!(probe.channels, 6);
    }
}

#[test]
fn the_probe_records_every_conv_in_order_and_changes_no_output() {
    let config = ModelConfig::load("yolov5n.yaml").unwrap();
    for act in ["relu", "nn.PReLU()", "MetaAconC"] {
        let spec = ActSpec::parse(act).unwrap();
        let model = Model::new(&config, Some(&spec), 3, None).unwrap();
        let x = Tensor::rand(0f32, 1f32, (2, 3, 64, 64), &Device::Cpu).unwrap();
        let plain = model.forward(&x, false).unwrap();
        let (probed, probes) = capture(|| model.forward(&x, false));
        let probed = probed.unwrap();
        // The probe runs the activation unfused: the same numbers to rounding.
        let diff = plain
            .iter()
            .zip(&probed)
            .map(|(a, b)| {
                (a - b)
                    .unwrap()
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            })
            .fold(0f32, f32::max);
        assert!(diff < 1e-4, "{act}: outputs differ by {diff}");
        assert_eq!(probes.len(), 57, "{act}");
        assert_eq!(probes[0].module, "model.0");
        assert_eq!(probes[1].module, "model.1");
        assert_eq!(probes[2].module, "model.2.cv1");
        for p in &probes {
            assert!((0.0..=1.0).contains(&p.dead_fraction));
            match act {
                "relu" => assert!(p.learned.is_empty()),
                "nn.PReLU()" => {
                    // Initialised at 0.25, as torch.
                    assert_eq!(p.learned.len(), 1);
                    assert_eq!((p.learned[0].min, p.learned[0].max), (0.25, 0.25));
                }
                _ => {
                    let names: Vec<&str> = p.learned.iter().map(|l| l.name).collect();
                    assert_eq!(names, ["p1", "p2", "beta"]);
                    // Meta-ACON's β is a sigmoid of the input.
                    assert!(p.learned[2].min > 0.0 && p.learned[2].max < 1.0);
                }
            }
        }
        // Outside a capture nothing is recorded.
        let (_, again) = capture(|| ());
        assert!(again.is_empty());
    }
}
