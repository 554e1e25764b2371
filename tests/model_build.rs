//! Building YOLOv5 from ultralytics YAML: parameter and GFLOP counts against ultralytics'
//! own summary (yolov5 7.0.14), activation precedence, and YAML errors.

use actyolo::act::ActSpec;
use actyolo::model::build::Model;
use actyolo::model::config::ModelConfig;
use actyolo::util::error::chain;

fn build(name: &str, nc: Option<usize>, act: Option<&str>) -> Model {
    let mut cfg = ModelConfig::load(name).unwrap();
    if let Some(nc) = nc {
        cfg = cfg.with_nc(nc).unwrap();
    }
    let act = act.map(|a| ActSpec::parse(a).unwrap());
    Model::new(&cfg, act.as_ref(), 0, None).unwrap()
}

#[test]
fn parameter_and_gflop_counts_match_ultralytics() {
    // (config, nc, parameters, GFLOPs at 640) from ultralytics' model summary (thop), for
    // the yolov5 7.0.14 package building our shipped YAMLs.
    for (name, nc, params, gflops) in [
        ("yolov5n.yaml", None, 1_872_157, 4.6),
        ("yolov5n", Some(3), 1_767_976, 4.2),
        ("yolov5s.yaml", None, 7_235_389, 16.6),
        ("yolov5s.yaml", Some(3), 7_027_720, 16.0),
        ("yolov5m.yaml", None, 21_190_557, 49.24),
        ("yolov5l.yaml", None, 46_563_709, 109.59),
        ("yolov5x.yaml", None, 86_749_405, 206.32),
        ("yolov5n6.yaml", None, 3_246_940, 4.66),
        ("yolov5s6.yaml", None, 12_626_620, 16.99),
    ] {
        let m = build(name, nc, None);
        assert_eq!(m.num_params(), params, "{name} nc={nc:?}");
        assert!(
            (m.gflops(640) - gflops).abs() < 0.05 + 1e-9,
            "{name} nc={nc:?}: {} GFLOPs",
            m.gflops(640)
        );
    }
}

const TINY: &str = "nc: 2
depth_multiple: 0.33
width_multiple: 0.25
activation: nn.LeakyReLU(0.1)
anchors:
  - [10,13, 16,30, 33,23]
  - [30,61, 62,45, 59,119]
backbone:
  [[-1, 1, Conv, [64, 3, 2]],
   [-1, 1, Conv, [64, 3, 2, None, 1, 1, nn.ReLU()]],
   [-1, 1, Conv, [64, 1, 1, None, 1, 1, False]],
   [-1, 3, C3, [64]],
   [-1, 1, Conv, [128, 3, 2]],
   [-1, 1, SPPF, [128, 5]],
  ]
head:
  [[[3, 5], 1, Detect, [nc, anchors]]]
";

fn act_of(model: &Model, layer: usize) -> String {
    model.layers[layer].blocks[0].activations()[0]
        .spec()
        .to_string()
}

fn tiny(text: &str) -> Result<ModelConfig, String> {
    ModelConfig::from_str(text, "tiny.yaml").map_err(|e| chain(&e))
}

#[test]
fn activation_precedence_override_then_row_then_yaml_then_silu() {
    let cfg = tiny(TINY).unwrap();
    let m = Model::new(&cfg, None, 0, None).unwrap();
    assert_eq!(act_of(&m, 0), "nn.LeakyReLU(negative_slope=0.1)");
    assert_eq!(act_of(&m, 1), "nn.ReLU()");
    assert_eq!(act_of(&m, 2), "nn.Identity()");
    assert_eq!(act_of(&m, 3), "nn.LeakyReLU(negative_slope=0.1)"); // inside C3
    let mish = ActSpec::parse("mish").unwrap();
    let m = Model::new(&cfg, Some(&mish), 0, None).unwrap();
    for layer in [0, 1, 3, 5] {
        assert_eq!(act_of(&m, layer), "nn.Mish()", "layer {layer}");
    }
    assert_eq!(act_of(&m, 2), "nn.Identity()", "act=False stays identity");
    let m = Model::new(
        &tiny(&TINY.replace("activation: nn.LeakyReLU(0.1)\n", "")).unwrap(),
        None,
        0,
        None,
    )
    .unwrap();
    assert_eq!(act_of(&m, 0), "nn.SiLU()");
}

#[test]
fn learnable_and_channel_changing_activations_are_built_per_layer() {
    let cfg = tiny(TINY).unwrap();
    let silu = Model::new(&cfg, Some(&ActSpec::silu()), 0, None)
        .unwrap()
        .num_params();
    let prelu = Model::new(&cfg, Some(&ActSpec::parse("nn.PReLU()").unwrap()), 0, None).unwrap();
    // One slope per Conv that runs PReLU (every Conv but the act=False one).
    let convs: usize = prelu
        .layers
        .iter()
        .flat_map(|l| &l.blocks)
        .map(|b| b.activations().len())
        .sum();
    assert_eq!(prelu.num_params(), silu + convs - 1);
    // GLU: each Conv makes twice its channels, and the block still outputs c2.
    let glu = Model::new(&cfg, Some(&ActSpec::parse("nn.GLU()").unwrap()), 0, None).unwrap();
    assert!(glu.num_params() > silu);
    let x = candle_core::Tensor::zeros(
        (1, 3, 64, 64),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let (z, _) = glu.predict(&x).unwrap();
    assert_eq!(z.dims(), &[1, 3 * (16 * 16 + 8 * 8), 7]); // levels at strides 4 and 8
}

#[test]
fn yaml_mistakes_name_the_row_and_what_is_wrong() {
    let cases: [(&str, &str, &[&str]); 10] = [
        (
            "[-1, 1, SPPF, [128, 5]]",
            "[-1, 1, SPPFF, [128, 5]]",
            &["layer 5", "unknown module `SPPFF`", "SPPF"],
        ),
        (
            "[-1, 1, SPPF, [128, 5]]",
            "[-1, 1, SPPF, [128, 5, 7]]",
            &["layer 5 SPPF", "takes 1 to 2 arguments"],
        ),
        (
            "[-1, 1, Conv, [128, 3, 2]]",
            "[-1, 1, Conv, [128, 3, 2, None, 1, 1, True, 9]]",
            &["layer 4 Conv", "arguments"],
        ),
        (
            "[-1, 1, Conv, [128, 3, 2]]",
            "[9, 1, Conv, [128, 3, 2]]",
            &["layer 4 Conv", "from: 9"],
        ),
        (
            "[-1, 1, Conv, [128, 3, 2]]",
            "[-7, 1, Conv, [128, 3, 2]]",
            &["layer 4 Conv", "from: -7"],
        ),
        (
            "[-1, 1, Conv, [128, 3, 2]]",
            "[-1, 1, Conv, [128, 3, 2, None, 1, 1, nn.Relu6x()]]",
            &["layer 4 Conv", "unknown activation `Relu6x`", "ReLU6"],
        ),
        (
            "[-1, 1, Conv, [128, 3, 2]]",
            "[-1, 1, Conv, [128, three, 2]]",
            &["layer 4 Conv", "`k`", "positive integer"],
        ),
        (
            "activation: nn.LeakyReLU(0.1)",
            "activation: nn.LeakyReLU(slope=0.1)",
            &["tiny.yaml", "activation", "slope"],
        ),
        (
            "activation: nn.LeakyReLU(0.1)",
            "activaton: nn.LeakyReLU(0.1)",
            &["unknown key `activaton`", "activation"],
        ),
        (
            // Detect with [nc] alone is the anchor-free head; IDetect needs its anchors.
            "[[[3, 5], 1, Detect, [nc, anchors]]]",
            "[[[3, 5], 1, IDetect, [nc]]]",
            &["layer 6 IDetect", "takes 2 arguments"],
        ),
    ];
    for (from, to, expected) in cases {
        assert!(TINY.contains(from), "{from}");
        let text = TINY.replace(from, to);
        let err = match tiny(&text) {
            Err(e) => e,
            Ok(cfg) => Model::new(&cfg, None, 0, None)
                .err()
                .map(|e| chain(&e))
                .unwrap_or_else(|| panic!("{to}: accepted")),
        };
        for part in expected {
            assert!(err.contains(part), "{to}: `{err}` lacks `{part}`");
        }
    }
    let err = tiny(&TINY.replace(
        "[-1, 1, SPPF, [128, 5]],\n  ]\nhead:",
        "[-1, 1, SPPF, [128, 5]],\n   [[3, 5], 1, Detect, [nc, anchors]],\n  ]\nhead:",
    ))
    .map(|c| {
        Model::new(&c, None, 0, None)
            .err()
            .map(|e| chain(&e))
            .unwrap()
    });
    assert!(err.unwrap().contains("Detect must be the last layer"));
    assert!(ModelConfig::load("yolov9000.yaml")
        .map_err(|e| chain(&e))
        .unwrap_err()
        .contains("yolov5n.yaml"));
    assert!(tiny("nc: 2\n").unwrap_err().contains("missing key"));
    assert!(tiny("nc: [oops").unwrap_err().contains("not valid YAML"));
}
