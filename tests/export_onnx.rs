//! ONNX export: every activation and every block, written with the generated ONNX types
//! and run by tract, gives the model's own decoded output (boxes in pixels, objectness,
//! class scores) to within 1e-4 relative (|a − b| ≤ 1e-4·max(1, |b|)); the graph takes
//! other sizes when dynamic; val and detect read ONNX files as weights.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use actyolo::act::zoo::ACTIVATIONS;
use actyolo::act::ActSpec;
use actyolo::detect::{detect, DetectOptions};
use actyolo::eval::val::{run_val, ValOptions, ValReport, ValRun};
use actyolo::eval::NmsOptions;
use actyolo::export::{export, to_onnx, ExportOptions, OnnxModel, OnnxSettings};
use actyolo::model::build::Model;
use actyolo::model::config::ModelConfig;
use actyolo::model::weights::load_model;
use candle_core::{Device, Tensor};

const TOLERANCE: f32 = 1e-4;

/// Two levels of a small Conv stack, so that each activation meets real feature maps.
const SMALL: &str = "
nc: 2
depth_multiple: 1.0
width_multiple: 1.0
anchors:
  - [10,13, 16,30, 33,23]
  - [30,61, 62,45, 59,119]
backbone:
  [[-1, 1, Conv, [8, 3, 2]],
   [-1, 1, Conv, [16, 3, 2]],
   [-1, 1, Conv, [16, 3, 2]],
   [-1, 1, Conv, [16, 3, 2]],
  ]
head:
  [[[2, 3], 1, Detect, [nc, anchors]]]
";

use val_support::{scratch_dir, Scratch};

fn temp_dir(name: &str) -> Scratch {
    scratch_dir(&format!("export-{name}"))
}

/// Pseudo-random images in [0, 1].
fn images(shape: (usize, usize, usize, usize), seed: u64) -> Tensor {
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let values: Vec<f32> = (0..n)
        .map(|i| ((i as f64 * 0.618 + seed as f64 * 0.37).sin() * 0.5 + 0.5) as f32)
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// BatchNorm statistics away from their initial (0, 1), so that folding them matters.
fn settle_batch_norms(model: &Model) {
    for seed in 0..3 {
        model.forward(&images((2, 3, 64, 64), seed), true).unwrap();
    }
}

/// The worst excess over the tolerance, with its index, or None when all are within.
fn compare(ours: &Tensor, onnx: &Tensor) -> Option<(usize, f32, f32)> {
    assert_eq!(ours.dims(), onnx.dims());
    let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = onnx.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    a.iter()
        .zip(&b)
        .enumerate()
        .find(|(_, (x, y))| {
            // Written so that a NaN on either side fails.
            let within = (*x - *y).abs() <= TOLERANCE * y.abs().max(1.0);
            !within
        })
        .map(|(i, (x, y))| (i, *x, *y))
}

/// Exports the fused model, runs the file with tract on `x`, and compares with the
/// model's own prediction.
fn check(model: &mut Model, settings: OnnxSettings, xs: &[&Tensor], what: &str) {
    model.fuse().unwrap();
    let file = to_onnx(model, &settings).unwrap_or_else(|e| panic!("{what}: {e}"));
    // A folder per check: the tests run in parallel, and each removes its own.
    static CHECKS: AtomicUsize = AtomicUsize::new(0);
    let dir = temp_dir(&format!("check-{}", CHECKS.fetch_add(1, Ordering::Relaxed)));
    let path = dir.join(format!(
        "{}.onnx",
        what.replace(['/', ' ', '(', ')', '=', ','], "_")
    ));
    std::fs::write(&path, &file.bytes).unwrap();
    let onnx = OnnxModel::load(&path).unwrap_or_else(|e| panic!("{what}: {e}"));
    for x in xs {
        let ours = model.predict(x).unwrap().0;
        let theirs = onnx.predict(x).unwrap_or_else(|e| panic!("{what}: {e:?}"));
        if let Some((i, a, b)) = compare(&ours, &theirs) {
            panic!("{what} at {:?}: element {i}: ours {a}, ONNX {b}", x.dims());
        }
    }
    assert_eq!(onnx.names, model.names, "{what}: names from the metadata");
    assert_eq!(
        onnx.stride,
        model.max_stride(),
        "{what}: stride from the metadata"
    );
}

fn fixed(size: usize, opset: i64) -> OnnxSettings {
    OnnxSettings {
        imgsz: (size, size),
        batch: 2,
        dynamic: false,
        opset,
    }
}

fn sized(imgsz: (usize, usize)) -> OnnxSettings {
    OnnxSettings {
        imgsz,
        ..fixed(0, 17)
    }
}

fn small_model(act: &ActSpec) -> Model {
    let config = ModelConfig::from_str(SMALL, "small.yaml").unwrap();
    let model = Model::new(&config, Some(act), 7, None).unwrap();
    settle_batch_norms(&model);
    model
}

#[test]
fn every_activation_exports_and_tract_gives_the_same_output() {
    let x = images((2, 3, 64, 64), 11);
    for &def in ACTIVATIONS {
        let spec = ActSpec::of(def);
        check(
            &mut small_model(&spec),
            fixed(64, 17),
            &[&x],
            &spec.to_string(),
        );
    }
    // Arguments away from the defaults, and the operators of later opsets (Mish from 18,
    // Gelu from 20).
    for (text, opset) in [
        ("nn.GELU(approximate='tanh')", 17),
        ("nn.GELU(approximate='tanh')", 20),
        ("nn.GELU()", 20),
        ("nn.Mish()", 18),
        ("nn.Softplus(beta=2.0, threshold=1.0)", 17),
        ("nn.LeakyReLU(0.2)", 17),
        ("nn.Hardtanh(-2.0, 0.5)", 17),
        ("nn.ELU(alpha=0.5)", 17),
        ("nn.CELU(alpha=2.0)", 17),
        ("nn.Softshrink(0.3)", 17),
        ("nn.Hardshrink(0.3)", 17),
        ("nn.RReLU(0.1, 0.3)", 17),
        ("nn.PReLU(num_parameters=-1)", 17),
        ("nn.Softmax(dim=-3)", 17),
        ("FReLU(k=5)", 17),
        ("MetaAconC(r=4)", 17),
        ("SwishBeta(beta=1.5)", 21),
    ] {
        let spec = ActSpec::parse(text).unwrap();
        check(
            &mut small_model(&spec),
            fixed(64, opset),
            &[&x],
            &format!("{text} opset {opset}"),
        );
    }
}

fn fixture(dir: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name)
}

#[test]
fn yolov5_and_yolov7_models_export_with_every_block() {
    let x = images((2, 3, 128, 96), 3);
    // YOLOv5 (C3, SPPF, Upsample, Concat) with PyTorch's weights, and yolov5n afresh.
    let (mut v5, _) = load_model(&fixture("models", "silu.pt"), None, None, None).unwrap();
    check(&mut v5, sized((128, 96)), &[&x], "yolov5 silu.pt");
    let config = ModelConfig::load("yolov5n.yaml").unwrap();
    let mut v5n = Model::new(&config, None, 1, None).unwrap();
    settle_batch_norms(&v5n);
    check(&mut v5n, sized((128, 96)), &[&x], "yolov5n");
    // yolov7 at test width (RepConv, IDetect, SPPCSPC, MP) and yolov7-tiny (LeakyReLU).
    let (mut mini, _) = load_model(&fixture("models_v7", "mini.pt"), None, None, None).unwrap();
    check(&mut mini, sized((128, 96)), &[&x], "yolov7 mini.pt");
    let tiny_cfg = ModelConfig::load("yolov7-tiny.yaml")
        .unwrap()
        .with_nc(3)
        .unwrap();
    let (mut tiny, _) = load_model(
        &fixture("models_v7", "yolov7-tiny.safetensors"),
        Some(&tiny_cfg),
        None,
        None,
    )
    .unwrap();
    check(&mut tiny, sized((128, 96)), &[&x], "yolov7-tiny");
}

#[test]
fn yolov8_and_yolo11_export_in_ultralytics_layout() {
    let x = images((2, 3, 128, 96), 5);
    // The ultralytics checkpoint (yolo11 at width 1/16: C3k2, C2PSA, the depthwise head)
    // and yolov8n afresh (C2f), both anchor-free: the file gives (B, 4 + nc, N).
    let (mut v11, _) = load_model(&fixture("models_v8", "tiny.pt"), None, None, None).unwrap();
    check(&mut v11, sized((128, 96)), &[&x], "yolo11 tiny.pt");
    let file = to_onnx(&v11, &sized((128, 96))).unwrap();
    let dims: Vec<String> = file.output.shape.iter().map(|d| format!("{d:?}")).collect();
    assert_eq!(
        dims,
        ["Fixed(2)", "Fixed(7)", "Fixed(252)"],
        "(B, 4 + nc, N)"
    );
    let config = ModelConfig::load("yolov8n.yaml")
        .unwrap()
        .with_nc(3)
        .unwrap();
    let mut v8n = Model::new(&config, None, 1, None).unwrap();
    settle_batch_norms(&v8n);
    check(&mut v8n, sized((128, 96)), &[&x], "yolov8n");
}

#[test]
fn a_dynamic_export_runs_at_other_sizes_and_batches() {
    let config = ModelConfig::load("yolov5n.yaml").unwrap();
    let mut model = Model::new(&config, None, 2, None).unwrap();
    settle_batch_norms(&model);
    let settings = OnnxSettings {
        imgsz: (64, 64),
        batch: 1,
        dynamic: true,
        opset: 17,
    };
    let xs = [images((1, 3, 64, 96), 5), images((3, 3, 160, 128), 6)];
    check(&mut model, settings, &[&xs[0], &xs[1]], "yolov5n dynamic");
}

#[test]
fn a_static_export_refuses_another_input_shape() {
    let mut model = small_model(&ActSpec::silu());
    model.fuse().unwrap();
    let file = to_onnx(&model, &fixed(64, 17)).unwrap();
    let dir = temp_dir("static");
    let path = dir.join("small.onnx");
    std::fs::write(&path, &file.bytes).unwrap();
    let onnx = OnnxModel::load(&path).unwrap();
    assert_eq!(onnx.fixed_input(), Some((2, 64, 64)));
    // Another batch size runs in the graph's batches (the last padded); another image
    // size is refused.
    let three = images((3, 3, 64, 64), 1);
    let ours = model.predict(&three).unwrap().0;
    assert!(compare(&ours, &onnx.predict(&three).unwrap()).is_none());
    let message = onnx
        .predict(&images((2, 3, 32, 32), 0))
        .unwrap_err()
        .to_string();
    assert!(message.contains("(2, 3, 64, 64)"), "{message}");
}

mod val_support;

/// Exports the val_rect fixture's `.pt` (a yolov5n trained here) into `dir`.
fn export_fixture(dir: &Path, dynamic: bool) -> PathBuf {
    let out = dir.join(if dynamic {
        "dynamic.onnx"
    } else {
        "static.onnx"
    });
    let summary = export(&ExportOptions {
        weights: Path::new(val_support::FIXTURE).join("model.pt"),
        cfg: None,
        imgsz: vec![256],
        batch: 1,
        dynamic,
        opset: 17,
        half: false,
        out: Some(out.clone()),
        device: Device::Cpu,
    })
    .unwrap();
    assert_eq!(summary.path, out);
    out
}

fn val(weights: PathBuf, data: &Path) -> ValReport {
    let run = ValRun {
        weights,
        data: data.join("data.yaml"),
        imgsz: 256,
        batch: 32,
        workers: 2,
        options: ValOptions::default(),
        int8: None,
        device: Device::Cpu,
    };
    run_val(&run, &mut |_| {}).unwrap()
}

#[test]
fn val_of_an_onnx_export_equals_val_of_its_weights() {
    let dir = temp_dir("val");
    let data = val_support::dataset_copy("onnx");
    let native = val(Path::new(val_support::FIXTURE).join("model.pt"), &data);
    // Dynamic: the same rectangular batches as the weights, so the same table to 0.001.
    let dynamic = val(export_fixture(&dir, true), &data);
    let (a, b) = (&native.outcome.metrics, &dynamic.outcome.metrics);
    for (name, ours, onnx) in [
        ("P", a.mp, b.mp),
        ("R", a.mr, b.mr),
        ("mAP50", a.map50, b.map50),
        ("mAP50-95", a.map, b.map),
    ] {
        assert!(
            (ours - onnx).abs() <= 0.001,
            "{name}: weights {ours:.5}, ONNX {onnx:.5}"
        );
    }
    // Fixed size: square batches, as val.py runs an ONNX file; its table is val.py's
    // without rectangles (the fixture's `square_for_information`), to val.py's 0.002.
    let square = val(export_fixture(&dir, false), &data);
    let want = &val_support::expected()["square_for_information"]["all"];
    let m = &square.outcome.metrics;
    for (name, ours, key) in [
        ("P", m.mp, "p"),
        ("R", m.mr, "r"),
        ("mAP50", m.map50, "map50"),
        ("mAP50-95", m.map, "map50_95"),
    ] {
        let theirs = want[key].as_f64().unwrap();
        assert!(
            (ours - theirs).abs() <= 0.002,
            "{name}: ONNX square {ours:.5}, val.py {theirs:.5}"
        );
    }
}

fn detect_labels(weights: PathBuf, source: &Path, project: &Path) -> Vec<(String, String)> {
    let options = DetectOptions {
        weights,
        source: source.display().to_string(),
        cfg: None,
        imgsz: 256,
        nms: NmsOptions::default(),
        family_iou: false,
        save_txt: true,
        save_conf: true,
        save_json: false,
        project: project.to_path_buf(),
        name: "exp".into(),
        exist_ok: false,
        device: Device::Cpu,
    };
    let summary = detect(&options, &mut |_| {}).unwrap();
    let mut labels: Vec<(String, String)> = std::fs::read_dir(summary.save_dir.join("labels"))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    labels.sort();
    labels
}

#[test]
fn detect_with_an_onnx_export_writes_the_same_labels() {
    let dir = temp_dir("detect");
    let source = Path::new(val_support::FIXTURE).join("images/val");
    let native = detect_labels(
        Path::new(val_support::FIXTURE).join("model.pt"),
        &source,
        &dir.join("native"),
    );
    let onnx = detect_labels(export_fixture(&dir, true), &source, &dir.join("onnx"));
    assert!(native.len() > 30, "labels for most of the 44 images");
    // The same files and lines: class and box to the letter, the confidence (written with
    // 6 significant digits) to 1e-5.
    let names =
        |labels: &[(String, String)]| labels.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&native), names(&onnx));
    for ((file, ours), (_, theirs)) in native.iter().zip(&onnx) {
        assert_eq!(ours.lines().count(), theirs.lines().count(), "{file}");
        for (a, b) in ours.lines().zip(theirs.lines()) {
            let (box_a, conf_a) = a.rsplit_once(' ').unwrap();
            let (box_b, conf_b) = b.rsplit_once(' ').unwrap();
            let (conf_a, conf_b): (f64, f64) = (conf_a.parse().unwrap(), conf_b.parse().unwrap());
            assert_eq!(box_a, box_b, "{file}");
            assert!((conf_a - conf_b).abs() <= 1e-5, "{file}: {a} vs {b}");
        }
    }
}
