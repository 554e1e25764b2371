//! The YOLOv7 family: parameter and GFLOP counts, activation precedence, YAML errors, and
//! output parity with PyTorch (|ours - torch| <= 1e-4 + 1e-4·|torch|, unfused and after
//! yolov7's fuse) on the fixtures of tools/gen_v7_fixtures.py, a re-implementation of
//! yolov7's modules (WongKinYiu/yolov7 is not on PyPI).

mod model_support;

use std::collections::HashMap;
use std::path::PathBuf;

use actyolo::act::ActSpec;
use actyolo::model::build::Model;
use actyolo::model::config::ModelConfig;
use actyolo::model::pt::{read_pt, WeightsSource};
use actyolo::model::summary::ModelSummary;
use actyolo::model::weights::load_model;
use actyolo::util::error::chain;
use candle_core::{DType, Device, Tensor};
use model_support::check_outputs;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/models_v7"
    ))
    .join(name)
}

fn load(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name), &Device::Cpu).unwrap()
}

fn shipped(name: &str, nc: usize) -> ModelConfig {
    ModelConfig::load(name).unwrap().with_nc(nc).unwrap()
}

/// Loads `weights` into the model, checks its outputs, fuses it, and checks again.
fn check_parity(
    mut model: Model,
    weights: &HashMap<String, Tensor>,
    expected: &HashMap<String, Tensor>,
    what: &str,
) {
    model
        .load_state_dict(weights, true)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    check_outputs(&model, expected, "", what);
    model.fuse().unwrap();
    check_outputs(&model, expected, "fused.", &format!("{what} fused"));
}

#[test]
fn parameter_and_gflop_counts_match_pytorch() {
    // nc=80, GFLOPs at 640, as yolov7's model_info counts them (thop), for the modules of
    // tools/gen_v7_fixtures.py building our shipped YAMLs (`--summary`). The issue quoted
    // 37,620,125 for yolov7: that is the deploy YAML (Detect), 2,557 implicit parameters
    // fewer than the training YAML's IDetect.
    for (name, params, gflops) in [
        ("yolov7.yaml", 37_622_682, 106.4722),
        ("yolov7x.yaml", 71_347_394, 190.5797),
        ("yolov7-tiny.yaml", 6_228_762, 13.8605),
    ] {
        let m = Model::new(&ModelConfig::load(name).unwrap(), None, 0, None).unwrap();
        assert_eq!(m.num_params(), params, "{name}");
        assert!(
            (m.gflops(640) - gflops).abs() < 1e-3,
            "{name}: {} GFLOPs",
            m.gflops(640)
        );
    }
}

#[test]
fn tiny_runs_its_per_row_leaky_relu_unless_act_overrides_it() {
    let cfg = ModelConfig::load("yolov7-tiny").unwrap();
    let acts = |m: &Model| -> Vec<String> {
        m.layers
            .iter()
            .flat_map(|l| &l.blocks)
            .flat_map(|b| b.activations())
            .map(|a| a.spec().to_string())
            .collect()
    };
    let model = Model::new(&cfg, None, 0, None).unwrap();
    assert_eq!(acts(&model).len(), 55, "one per Conv row");
    assert!(
        acts(&model)
            .iter()
            .all(|a| a == "nn.LeakyReLU(negative_slope=0.1)"),
        "{:?}",
        acts(&model)
    );
    let summary = ModelSummary::of(&model, 640);
    assert_eq!(summary.activation, "nn.LeakyReLU(negative_slope=0.1)");
    assert_eq!(summary.layers[8].module, "MP");
    assert_eq!(summary.layers[77].module, "IDetect");
    let model = Model::new(&cfg, Some(&ActSpec::parse("mish").unwrap()), 0, None).unwrap();
    assert!(acts(&model).iter().all(|a| a == "nn.Mish()"));
    // yolov7: SiLU by default, the YAML's `activation:` in SPPCSPC and RepConv too.
    let text = include_str!("../configs/models/yolov7.yaml")
        .replace("nc: 80", "nc: 80\nactivation: nn.ReLU()");
    let model = Model::new(
        &ModelConfig::from_str(&text, "yolov7-relu.yaml").unwrap(),
        None,
        0,
        None,
    )
    .unwrap();
    assert!(acts(&model).iter().all(|a| a == "nn.ReLU()"));
    assert_eq!(
        acts(&model).len(),
        79 + 7 + 3,
        "Conv rows, SPPCSPC's seven Convs, three RepConvs"
    );
}

#[test]
fn yolov7_tiny_gives_pytorch_outputs_with_leaky_relu_and_with_silu() {
    let weights = load("yolov7-tiny.safetensors");
    assert!(
        weights.values().all(|t| t.dtype() == DType::F16),
        "stored as fp16"
    );
    let cfg = shipped("yolov7-tiny.yaml", 3);
    check_parity(
        Model::new(&cfg, None, 0, None).unwrap(),
        &weights,
        &load("yolov7-tiny.out.safetensors"),
        "yolov7-tiny",
    );
    let silu = Model::new(&cfg, Some(&ActSpec::silu()), 0, None).unwrap();
    check_parity(
        silu,
        &weights,
        &load("yolov7-tiny-silu.out.safetensors"),
        "yolov7-tiny --act silu",
    );
}

#[test]
fn yolov7_gives_pytorch_outputs() {
    // The shipped yolov7.yaml at a quarter of its widths: every module and connection as
    // in yolov7, at 2.3M parameters instead of 37M, so that the fixture stays small.
    let mut cfg = shipped("yolov7.yaml", 3);
    cfg.width_multiple = 0.25;
    check_parity(
        Model::new(&cfg, None, 0, None).unwrap(),
        &load("yolov7-w25.safetensors"),
        &load("yolov7-w25.out.safetensors"),
        "yolov7 width 0.25",
    );
}

#[test]
fn yolov7_checkpoints_load_with_their_yaml_names_and_ema() {
    // A train.py checkpoint pickled with yolov7's classes (models.yolo.Model, models.common.RepConv, ...).
    let ckpt = read_pt(&fixture("mini.pt")).unwrap();
    assert_eq!(ckpt.source, WeightsSource::Ema);
    assert_eq!(ckpt.names, ["circle", "rectangle", "triangle"]);
    assert_eq!(ckpt.nc, Some(3));
    let expected = load("mini.safetensors");
    let mut names: Vec<&String> = ckpt.tensors.keys().collect();
    let mut expected_names: Vec<&String> = expected.keys().collect();
    names.sort();
    expected_names.sort();
    assert_eq!(names, expected_names);
    for (name, want) in &expected {
        let got = ckpt.tensors[name]
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(
            got,
            want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "{name}"
        );
    }
    for name in [
        "model.1.rbr_identity.running_var",
        "model.11.rbr_1x1.0.weight",
        "model.12.ia.1.implicit",
        "model.12.anchor_grid",
    ] {
        assert!(ckpt.tensors.contains_key(name), "{name}");
    }
    // Its yaml builds the model, `anchor_grid` (derived from the anchors) is left aside, and
    // the outputs, unfused and fused (a RepConv with an identity branch among them), are torch's.
    let outputs = load("mini.out.safetensors");
    let mut model = load_model(&fixture("mini.pt"), None, None, None).unwrap().0;
    check_outputs(&model, &outputs, "", "mini.pt");
    model.fuse().unwrap();
    check_outputs(&model, &outputs, "fused.", "mini.pt fused");
}

#[test]
fn v7_yaml_mistakes_name_the_row_and_argument() {
    let yaml = |row: &str| {
        format!("nc: 3\ndepth_multiple: 1.0\nwidth_multiple: 1.0\nanchors: [[10,13, 16,30, 33,23]]\nbackbone:\n  [[-1, 1, Conv, [16, 3, 2]],\n   {row}]\nhead:\n  [[[1], 1, IDetect, [nc, anchors]]]\n")
    };
    let cases: [(&str, &[&str]); 6] = [
        (
            "[-1, 1, RepConv, [16, 5, 1]]",
            &["layer 1 RepConv", "argument 1 (`k`)", "3×3 only"],
        ),
        (
            "[-1, 1, RepConv, [16, 3, 1, 0]]",
            &["layer 1 RepConv", "argument 3 (`p`)"],
        ),
        (
            "[-1, 1, RepConv, [16, 3, 1, None, 1, True, True]]",
            &["layer 1 RepConv", "`deploy`", "fuse"],
        ),
        (
            "[-1, 1, SPPCSPC, [16, False, 1, 0.5, [5, nine]]]",
            &["layer 1 SPPCSPC", "argument 4 (`k`)", "kernel sizes"],
        ),
        (
            "[-1, 1, Conv, [16, 3, 1, None, 1, nn.LeakyReLUX(0.1)]]",
            &[
                "layer 1 Conv",
                "argument 5 (`act`)",
                "unknown activation",
                "LeakyReLU",
            ],
        ),
        (
            "[-1, 1, MPP, []]",
            &["layer 1", "unknown module `MPP`", "MP"],
        ),
    ];
    for (row, expected) in cases {
        let err = ModelConfig::from_str(&yaml(row), "v7.yaml")
            .map_err(|e| chain(&e))
            .unwrap_err();
        for part in expected {
            assert!(err.contains(part), "{row}: `{err}` lacks `{part}`");
        }
    }
    let cfg = ModelConfig::from_str(&yaml("[-1, 1, RepConv, [16, 3, 1]]"), "v7.yaml").unwrap();
    let err = Model::new(&cfg, Some(&ActSpec::parse("nn.GLU()").unwrap()), 0, None)
        .map_err(|e| chain(&e))
        .unwrap_err();
    assert!(
        err.contains("layer 1 RepConv") && err.contains("identity branch"),
        "{err}"
    );
}
