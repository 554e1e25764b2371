//! YOLOv8 and YOLO11 against ultralytics 8.4.190: the parameter counts and GFLOPs of its
//! summary, and the raw and decoded outputs (unfused and fused, SiLU and ReLU) of yolov8n
//! and yolo11n on the weights of tools/gen_v8_fixtures.py, and a checkpoint its trainer
//! saved, read from `.pt`. Tolerance: a mean error of at most 1e-4, and no error above 1.5
//! times the difference between torch's own fused and unfused outputs of the fixture (its
//! rounding noise; at least 1e-4), and 16 × 32 times that in pixels for the decoded boxes.

mod v8_support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use actyolo::act::ActSpec;
use actyolo::model::build::Model;
use actyolo::model::config::ModelConfig;
use actyolo::model::weights::load_model;
use candle_core::{Device, Tensor};

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models_v8")
        .join(name)
}

fn fixture(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture_path(name), &Device::Cpu).unwrap()
}

/// The largest and the mean |a − b|.
fn errors(a: &Tensor, b: &Tensor) -> (f32, f32) {
    assert_eq!(a.dims(), b.dims());
    let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let diffs = a.iter().zip(&b).map(|(a, b)| (a - b).abs());
    let worst = diffs.clone().fold(0f32, f32::max);
    (worst, diffs.sum::<f32>() / a.len().max(1) as f32)
}

/// How far torch's fused and unfused outputs of the fixture differ: the rounding noise of
/// the network itself (its layers are calibrated to outputs of order one, where a full
/// yolov8n or yolo11n in f32 drifts by parts in 1e5 over its hundred layers).
fn torch_noise(fx: &HashMap<String, Tensor>) -> f32 {
    let joined = |prefix: &str| {
        Tensor::cat(
            &[
                &fx[&format!("{prefix}boxes")],
                &fx[&format!("{prefix}scores")],
            ],
            1,
        )
        .unwrap()
    };
    match fx.contains_key("fused.boxes") {
        true => errors(&joined(""), &joined("fused.")).0,
        false => 0.0,
    }
}

/// The model's eval outputs on the fixture's images against ultralytics': the raw logits
/// (`boxes` (bs, 4·16, N) and `scores` (bs, nc, N), cells of all levels in order) and the
/// decoded `y` (bs, 4 + nc, N), which our decode gives as (bs, N, 5 + nc) with an
/// objectness of 1.
fn check_outputs(model: &Model, fx: &HashMap<String, Tensor>, prefix: &str, what: &str) {
    let noise = torch_noise(fx).max(1e-4);
    let (decoded, raw) = model.predict(&fx["images"]).unwrap();
    let bs = fx["images"].dim(0).unwrap();
    let rows: Vec<Tensor> = raw
        .iter()
        .map(|r| {
            let (bs, na, ny, nx, no) = r.dims5().unwrap();
            r.reshape((bs, na * ny * nx, no)).unwrap()
        })
        .collect();
    let ours = Tensor::cat(&rows, 1).unwrap();
    let theirs = Tensor::cat(
        &[
            &fx[&format!("{prefix}boxes")],
            &fx[&format!("{prefix}scores")],
        ],
        1,
    )
    .unwrap()
    .transpose(1, 2)
    .unwrap()
    .contiguous()
    .unwrap();
    let (worst, mean) = errors(&ours, &theirs);
    assert!(
        worst <= 1.5 * noise && mean <= 1e-4,
        "{what}: raw outputs off by {worst} at most (torch's own noise {noise}), {mean} on average"
    );

    let y = fx[&format!("{prefix}y")]
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap();
    let n = y.dim(1).unwrap();
    assert_eq!(
        decoded.dims(),
        &[bs, n, y.dim(2).unwrap() + 1],
        "{what}: decoded shape"
    );
    // Boxes are in pixels: a side's expected bin moves by at most reg_max (16) times a
    // logit's error, and a bin is up to a stride (32 px) wide.
    let boxes = decoded.narrow(2, 0, 4).unwrap().contiguous().unwrap();
    let (worst, _) = errors(&boxes, &y.narrow(2, 0, 4).unwrap().contiguous().unwrap());
    assert!(
        worst <= 16.0 * 32.0 * 1.5 * noise,
        "{what}: decoded boxes off by {worst} px"
    );
    let classes = decoded
        .narrow(2, 5, y.dim(2).unwrap() - 4)
        .unwrap()
        .contiguous()
        .unwrap();
    let theirs = y
        .narrow(2, 4, y.dim(2).unwrap() - 4)
        .unwrap()
        .contiguous()
        .unwrap();
    let (worst, _) = errors(&classes, &theirs);
    assert!(
        worst <= 1.5 * noise,
        "{what}: decoded class scores off by {worst}"
    );
    let objectness: Vec<f32> = decoded
        .narrow(2, 4, 1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert!(objectness.iter().all(|&o| o == 1.0), "{what}: objectness");
}

#[test]
fn parameters_and_gflops_match_ultralytics_summary() {
    // ultralytics 8.4.190's DetectionModel(cfg): sum of parameters() and get_flops(model,
    // 640) with ultralytics-thop 2.2.3. Its thop counts nearest upsampling as free, where
    // yolov5's counts an operation per output element (which is kept here, as YOLOv5's
    // summary prints it): under 0.01 GFLOPs at 640.
    for (cfg, params, gflops) in [
        ("yolov8n.yaml", 3_157_200, 8.8550912),
        ("yolov8s.yaml", 11_166_560, 28.8119296),
        ("yolo11n.yaml", 2_624_080, 6.6733184),
        ("yolo11s.yaml", 9_458_752, 21.8363392),
        ("yolo11m.yaml", 20_114_688, 68.643072),
    ] {
        let model = Model::new(&ModelConfig::load(cfg).unwrap(), None, 0, None).unwrap();
        assert_eq!(model.num_params(), params, "{cfg}: parameters");
        let ours = model.gflops(640);
        assert!(
            (ours - gflops).abs() < 0.01,
            "{cfg}: {ours} GFLOPs against {gflops}"
        );
    }
}

#[test]
fn scales_come_from_the_name() {
    for (name, scale, width) in [
        ("yolov8n.yaml", "n", 0.25),
        ("yolov8x", "x", 1.25),
        ("yolo11m.yaml", "m", 1.0),
    ] {
        let config = ModelConfig::load(name).unwrap();
        assert_eq!(config.scale.as_deref(), Some(scale), "{name}");
        assert_eq!(config.width_multiple, width, "{name}");
        // Checkpoints keep it: the YAML they carry rebuilds the same scale.
        let again = ModelConfig::from_yaml(config.yaml.clone(), "best.pt").unwrap();
        assert_eq!(again.scale.as_deref(), Some(scale), "{name} from its yaml");
    }
    // The plain file reads at its first scale, as ultralytics does.
    assert_eq!(
        ModelConfig::load("yolo11.yaml").unwrap().scale.as_deref(),
        Some("n")
    );
    let missing = ModelConfig::load("yolov9n.yaml").unwrap_err().to_string();
    assert!(
        missing.contains("yolov9n.yaml") && missing.contains("yolo11.yaml"),
        "{missing}"
    );
}

#[test]
fn yaml_errors_name_the_scale_and_the_row() {
    let yaml = |body: &str| {
        format!("nc: 3\n{body}\nbackbone:\n  - [-1, 1, Conv, [64, 3, 2]]\n  - [-1, 1, C2PSA, [128]]\nhead:\n  - [[1], 1, Detect, [nc]]\n")
    };
    let no_such = ModelConfig::from_str(&yaml("scales:\n  n: [0.5, 0.25, 1024]"), "mine-x.yaml");
    assert!(
        no_such.is_ok(),
        "no scale in the name 'mine-x': the first is taken"
    );
    let bad = ModelConfig::from_str(&yaml("scales:\n  n: [0.5, 0.25]"), "a.yaml").unwrap_err();
    assert!(
        format!("{bad}").contains("[depth, width, max_channels]"),
        "{bad}"
    );
    let wrong = ModelConfig::from_str(&yaml("scales:\n  n: [0.5, 0.25, 1024]\nscale: s"), "a.yaml")
        .unwrap_err();
    assert!(format!("{wrong}").contains("no scale `s`"), "{wrong}");
    // C2PSA keeps its width: 16 channels in, 32 out.
    let config = ModelConfig::from_str(&yaml("scales:\n  n: [0.5, 0.25, 1024]"), "a.yaml").unwrap();
    let err = Model::new(&config, None, 0, None).unwrap_err();
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        chain.contains("layer 1 C2PSA") && chain.contains("keeps its width"),
        "{chain}"
    );
    // An anchor-based row needs the anchors key.
    let anchored = "nc: 3\ndepth_multiple: 1\nwidth_multiple: 1\nbackbone:\n  - [-1, 1, Conv, [16, 3, 2]]\nhead:\n  - [[0], 1, Detect, [nc, anchors]]\n";
    let err = ModelConfig::from_str(anchored, "b.yaml").unwrap_err();
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(chain.contains("no `anchors:` key"), "{chain}");
}

fn parity(cfg: &str, act: &str, relu_from: Option<&str>) {
    let fx = fixture(&format!(
        "{}-{act}.out.safetensors",
        cfg.trim_end_matches(".yaml")
    ));
    let mut config = ModelConfig::load(cfg).unwrap();
    let relu = ActSpec::parse("nn.ReLU()").unwrap();
    let override_act = match relu_from {
        Some("yaml") => {
            config.activation = Some(relu);
            None
        }
        Some(_) => Some(relu),
        None => None,
    };
    let mut model = Model::new(&config, override_act.as_ref(), 0, None).unwrap();
    v8_support::load_generated(&model, &fx);
    check_outputs(&model, &fx, "", &format!("{cfg} {act}"));
    model.fuse().unwrap();
    check_outputs(&model, &fx, "fused.", &format!("{cfg} {act} fused"));
}

#[test]
fn yolov8n_silu_matches_ultralytics() {
    parity("yolov8n.yaml", "silu", None);
}

#[test]
fn yolov8n_relu_matches_ultralytics() {
    parity("yolov8n.yaml", "relu", Some("--act"));
}

#[test]
fn yolo11n_silu_matches_ultralytics() {
    parity("yolo11n.yaml", "silu", None);
}

#[test]
fn yolo11n_relu_matches_ultralytics() {
    parity("yolo11n.yaml", "relu", Some("yaml"));
}

#[test]
fn ultralytics_checkpoint_loads_with_its_scale_and_names() {
    let (model, notes) = load_model(&fixture_path("tiny.pt"), None, None, None).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(model.names, ["circle", "rectangle", "triangle"]);
    assert_eq!(model.config.scale.as_deref(), Some("n"));
    assert_eq!(model.config.width_multiple, 0.0625);
    let fx = fixture("tiny.out.safetensors");
    check_outputs(&model, &fx, "", "tiny.pt (the EMA, fp16 weights)");
}
