//! The corpus of bad inputs a new user can give: broken images and label lines, data.yaml
//! and model YAML mistakes, activation specs, weights files and command-line values. Each
//! case runs the real binary and asserts its exit status (never a panic, an abort or a
//! kill), and that the output names the file, line or value at fault.
//!
//! Run with `cargo test --release --test bad_inputs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use image::{Rgb, RgbImage};

mod scratch_support;
use scratch_support::{scratch_dir, Scratch};

const MODELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/models");

/// How a case must end.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Exit {
    /// Status 0: the bad part is warned about and the rest goes on.
    Warns,
    /// Status 1 with an error message.
    Fails,
    /// Status 2: the command line itself was refused (as argparse and clap do).
    Usage,
}

struct Case {
    name: &'static str,
    args: Vec<String>,
    exit: Exit,
    /// What the output (stdout and stderr) must contain.
    expect: Vec<String>,
}

fn case(name: &'static str, args: &[&str], exit: Exit, expect: &[&str]) -> Case {
    Case {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        exit,
        expect: expect.iter().map(|s| s.to_string()).collect(),
    }
}

/// Runs every case and reports all failures at once.
fn run_cases(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in &cases {
        let out = Command::new(env!("CARGO_BIN_EXE_actyolo"))
            .args(&case.args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let want = match case.exit {
            Exit::Warns => 0,
            Exit::Fails => 1,
            Exit::Usage => 2,
        };
        let mut problems = Vec::new();
        // A signal (an abort, a kill for memory) leaves no exit code.
        if out.status.code() != Some(want) {
            problems.push(format!("exit {:?}, expected {want}", out.status));
        }
        if text.contains("panicked") || text.contains("memory allocation") {
            problems.push("panicked or aborted".into());
        }
        for expected in &case.expect {
            if !text.contains(expected.as_str()) {
                problems.push(format!("output lacks `{expected}`"));
            }
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n  args: {:?}\n  output: {}",
                case.name,
                problems.join("; "),
                case.args,
                text.trim()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn scratch(name: &str) -> Scratch {
    scratch_dir(&format!("bad-{name}"))
}

fn s(path: &Path) -> String {
    path.display().to_string()
}

/// A synthetic dataset: 8 training and 4 validation images of 64 px, three classes.
fn synth(dir: &Path) -> PathBuf {
    let out = dir.join("data");
    let status = Command::new(env!("CARGO_BIN_EXE_actyolo"))
        .args([
            "data",
            "synth",
            "--n-train",
            "8",
            "--n-val",
            "4",
            "--imgsz",
            "64",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap()
        .status;
    assert!(status.success());
    out
}

/// A 69-byte PNG whose header claims `width` × `height` pixels.
fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    bytes.extend(13u32.to_be_bytes());
    bytes.extend(&ihdr);
    bytes.extend(crc32(&ihdr).to_be_bytes());
    let idat = b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01".to_vec();
    bytes.extend(((idat.len() - 4) as u32).to_be_bytes());
    bytes.extend(&idat);
    bytes.extend(crc32(&idat).to_be_bytes());
    bytes.extend(0u32.to_be_bytes());
    bytes.extend(b"IEND");
    bytes.extend(crc32(b"IEND").to_be_bytes());
    bytes
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn picture(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x * 7 % 256) as u8, (y * 5 % 256) as u8, 128])
    })
}

/// A JPEG cut in half: no end-of-image marker.
fn truncated_jpeg(path: &Path) {
    picture(64, 48).save(path).unwrap();
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

/// A dataset whose val split holds one of each bad file beside the good images, and its
/// data.yaml.
fn broken_val_set(dir: &Path) -> PathBuf {
    let data = synth(dir);
    let images = data.join("images/val");
    let labels = data.join("labels/val");
    std::fs::write(images.join("garbage.jpg"), b"this is not an image").unwrap();
    std::fs::create_dir_all(images.join("000099.jpg")).unwrap();
    std::fs::write(images.join("bomb.png"), png_header(1_000_000, 1_000_000)).unwrap();
    truncated_jpeg(&images.join("cut.jpg"));
    picture(64, 64).save(images.join("badclass.png")).unwrap();
    std::fs::write(labels.join("badclass.txt"), "7 0.5 0.5 0.2 0.2\n").unwrap();
    picture(5, 5).save(images.join("tiny.png")).unwrap();
    std::os::unix::fs::symlink("loop.jpg", images.join("loop.jpg")).unwrap();
    std::os::unix::fs::symlink("missing-target.png", images.join("dangling.png")).unwrap();
    std::fs::write(images.join("empty.png"), b"").unwrap();
    data.join("data.yaml")
}

#[test]
fn bad_images_and_labels_are_warned_about_by_name_and_skipped() {
    let dir = scratch("images");
    let yaml = broken_val_set(&dir);
    let images = yaml.parent().unwrap().join("images/val");
    let weights = format!("{MODELS}/silu.pt");
    let expect_each = |extra: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = [
            "garbage.jpg: cannot decode",
            "000099.jpg: is a folder",
            "bomb.png: the header claims 1000000x1000000 pixels",
            "cut.jpg: corrupt JPEG",
            "badclass.txt: line 1: class 7 out of range [0, 3)",
            "tiny.png: image size 5x5 is below 10 pixels",
            "loop.jpg: cannot read",
            "dangling.png: cannot read",
            "empty.png: cannot decode",
        ]
        .map(String::from)
        .to_vec();
        all.extend(extra.iter().map(|e| e.to_string()));
        all
    };
    let detect_source = dir.join("detect");
    std::fs::create_dir_all(&detect_source).unwrap();
    std::fs::write(
        detect_source.join("bomb.png"),
        png_header(1_000_000, 1_000_000),
    )
    .unwrap();
    truncated_jpeg(&detect_source.join("cut.jpg"));
    std::fs::create_dir_all(detect_source.join("dir.png")).unwrap();
    std::fs::write(detect_source.join("notes.txt"), "hello").unwrap();
    let mut cases = vec![
        Case {
            name: "val warns about each bad file and counts them",
            args: vec![
                "val".into(),
                "--weights".into(),
                weights.clone(),
                "--data".into(),
                s(&yaml),
                "--imgsz".into(),
                "64".into(),
                "--project".into(),
                s(&dir.join("val")),
            ],
            exit: Exit::Warns,
            expect: expect_each(&["found 5 images", "8 corrupt"]),
        },
        Case {
            name: "data check warns about each bad file",
            args: vec!["data".into(), "check".into(), "--data".into(), s(&yaml)],
            exit: Exit::Warns,
            expect: expect_each(&["val: found 5 images", "8 corrupt"]),
        },
        case(
            "detect skips a decompression bomb, a folder named like an image and a text file, and warns about a truncated JPEG",
            &[
                "detect",
                "--weights",
                &weights,
                "--source",
                &s(&detect_source),
                "--imgsz",
                "64",
                "--project",
                &s(&dir.join("detect-out")),
            ],
            Exit::Warns,
            &[
                "bomb.png: the header claims 1000000x1000000 pixels",
                "cut.jpg: corrupt JPEG",
                "dir.png: is a folder",
                "notes.txt: not a supported image format",
                "image 2/2",
            ],
        ),
        case(
            "detect on a missing source",
            &["detect", "--weights", &weights, "--source", &s(&dir.join("nowhere"))],
            Exit::Fails,
            &["nowhere does not exist"],
        ),
        case(
            "detect on a folder without images",
            &[
                "detect",
                "--weights",
                &weights,
                "--source",
                &s(&dir.join("detect-out")),
                "--project",
                &s(&dir.join("detect-out2")),
            ],
            Exit::Fails,
            &["no images found"],
        ),
    ];
    // One label mistake per file, each named with its line.
    let labels = [
        ("columns", "0 0.5 0.5 0.2\n", "line 1: 4 columns"),
        (
            "number",
            "0 0.5 abc 0.2 0.2\n",
            "line 1: `abc` is not a number",
        ),
        (
            "coordinate",
            "0 0.5 0.5 0.2 0.2\n1 1.5 0.5 0.2 0.2\n",
            "line 2: x 1.5 is outside [0, 1]",
        ),
        (
            "negative",
            "-1 0.5 0.5 0.2 0.2\n",
            "line 1: class -1 out of range",
        ),
        (
            "fraction",
            "1.5 0.5 0.5 0.2 0.2\n",
            "line 1: class 1.5 is not a whole number",
        ),
        (
            "polygon",
            "0 0.1 0.1 0.2 0.2 0.3 0.3 0.4\n",
            "line 1: a polygon label needs",
        ),
    ];
    for (name, text, message) in labels {
        let data = synth(&dir.join(format!("label-{name}")));
        let label = data.join("labels/val/000000.txt");
        std::fs::write(&label, text).unwrap();
        cases.push(Case {
            name: "a bad label line is named with its file and line",
            args: vec![
                "data".into(),
                "check".into(),
                "--data".into(),
                s(&data.join("data.yaml")),
            ],
            exit: Exit::Warns,
            expect: vec![format!("{}: {message}", s(&label)), "1 corrupt".into()],
        });
    }
    let data = synth(&dir.join("label-dir"));
    let label = data.join("labels/val/000001.txt");
    std::fs::remove_file(&label).unwrap();
    std::fs::create_dir_all(&label).unwrap();
    cases.push(Case {
        name: "a label file that is a folder",
        args: vec![
            "data".into(),
            "check".into(),
            "--data".into(),
            s(&data.join("data.yaml")),
        ],
        exit: Exit::Warns,
        expect: vec![format!("{}: cannot read", s(&label))],
    });
    let data = synth(&dir.join("list"));
    let list = data.join("val.txt");
    std::fs::write(&list, "images/val/000000.png\nimages/val/gone.png\n").unwrap();
    let yaml = data.join("list.yaml");
    std::fs::write(
        &yaml,
        "path: .\ntrain: images/train\nval: val.txt\nnames: [circle, rectangle, triangle]\n",
    )
    .unwrap();
    cases.push(Case {
        name: "an image list naming a missing file",
        args: vec!["data".into(), "check".into(), "--data".into(), s(&yaml)],
        exit: Exit::Warns,
        expect: vec!["gone.png: cannot read".into()],
    });
    assert!(images.is_dir());
    run_cases(cases);
}

#[test]
fn data_yaml_mistakes_name_the_file_and_key() {
    let dir = scratch("datayaml");
    let data = synth(&dir);
    let write = |name: &str, text: &str| {
        let path = data.join(name);
        std::fs::write(&path, text).unwrap();
        s(&path)
    };
    let check = |yaml: &str| {
        vec![
            "data".to_string(),
            "check".into(),
            "--data".into(),
            yaml.into(),
        ]
    };
    let good = "path: .\ntrain: images/train\nval: images/val\n";
    let yamls = [
        (
            "not YAML",
            write("a.yaml", "train: [images\n"),
            "not valid YAML",
        ),
        (
            "a list",
            write("b.yaml", "- train\n- val\n"),
            "expected a mapping",
        ),
        (
            "no val",
            write("c.yaml", "train: images/train\nnames: [a]\n"),
            "the `val:` key is missing",
        ),
        (
            "no names",
            write("d.yaml", good),
            "the `names:` key is missing",
        ),
        (
            "nc disagrees",
            write("e.yaml", &format!("{good}nc: 5\nnames: [a, b, c]\n")),
            "`nc: 5` disagrees with the 3 class names",
        ),
        (
            "names with a gap",
            write("f.yaml", &format!("{good}names: {{0: a, 2: b}}\n")),
            "expected 1, found 2",
        ),
        (
            "a missing split",
            write(
                "g.yaml",
                "path: .\ntrain: images/train\nval: images/nowhere\nnames: [a, b, c]\n",
            ),
            "nowhere does not exist",
        ),
        (
            "an empty split",
            write(
                "h.yaml",
                "path: .\ntrain: images/train\nval: labels\nnames: [a, b, c]\n",
            ),
            "no images found",
        ),
        (
            "names not text",
            write("i.yaml", &format!("{good}names: [[1, 2]]\n")),
            "each name must be text",
        ),
    ];
    let mut cases: Vec<Case> = yamls
        .iter()
        .map(|(name, yaml, message)| Case {
            name,
            args: check(yaml),
            exit: Exit::Fails,
            expect: vec![yaml.clone(), message.to_string()],
        })
        .collect();
    cases.push(case(
        "a data.yaml that does not exist",
        &["data", "check", "--data", &s(&dir.join("missing.yaml"))],
        Exit::Fails,
        &["missing.yaml: cannot read"],
    ));
    cases.push(case(
        "a data.yaml that is an image",
        &[
            "data",
            "check",
            "--data",
            &s(&data.join("images/val/000000.png")),
        ],
        Exit::Fails,
        &["000000.png"],
    ));
    run_cases(cases);
}

#[test]
fn model_yaml_mistakes_name_the_layer_row() {
    let dir = scratch("modelyaml");
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/models/yolov5n.yaml"
    ))
    .unwrap();
    let variant = |name: &str, from: &str, to: &str| {
        assert!(base.contains(from), "{from}");
        let path = dir.join(format!("{name}.yaml"));
        std::fs::write(&path, base.replacen(from, to, 1)).unwrap();
        s(&path)
    };
    let info = |cfg: &str| vec!["info".to_string(), "--cfg".into(), cfg.into()];
    let yamls = [
        ("width_multiple 1000", variant("w1000", "width_multiple: 0.25", "width_multiple: 1000"), "`width_multiple` must be a number above 0 and at most 64, got 1000"),
        ("width_multiple 1e400", variant("winf", "width_multiple: 0.25", "width_multiple: 1e400"), "`width_multiple` must be"),
        ("depth_multiple 0", variant("d0", "depth_multiple: 0.33", "depth_multiple: 0"), "`depth_multiple` must be"),
        ("nc 4000000000", variant("nc", "nc: 80", "nc: 4000000000"), "`nc` must be a whole number from 1 to 100000"),
        ("Concat of different sizes", variant("cat", "[[-1, 6], 1, Concat, [1]]", "[[-1, 4], 1, Concat, [1]]"), "layer 12 Concat: Concat joins maps of different sizes at a 256x256 input (layer 11 gives 16x16, layer 4 gives 32x32)"),
        ("from a later layer", variant("from", "[[-1, 6], 1, Concat, [1]]", "[[-1, 20], 1, Concat, [1]]"), "layer 12 Concat: from: 20 does not name an earlier layer"),
        ("unknown module", variant("module", "[-1, 1, SPPF, [1024, 5]]", "[-1, 1, SPFF, [1024, 5]]"), "layer 9 SPFF"),
        ("unknown key", variant("key", "depth_multiple:", "depth_multipel:"), "unknown key `depth_multipel` (did you mean `depth_multiple`?)"),
        ("kernel 0", variant("k0", "[-1, 1, Conv, [128, 3, 2]]", "[-1, 1, Conv, [128, 0, 2]]"), "layer 1 Conv: argument 1 (`k`): expected a positive integer, got 0"),
        ("kernel larger than the map", variant("k99", "[-1, 1, SPPF, [1024, 5]]", "[-1, 1, Conv, [1024, 99, 1, 0]]"), "layer 9 Conv: its output is empty at a 256x256 input"),
        ("activation out of float range", variant("act", "nc: 80", "nc: 80\nactivation: nn.LeakyReLU(1e400)"), "not a finite number"),
        ("upsample by a million", variant("up", "[-1, 1, nn.Upsample, [None, 2, nearest]]", "[-1, 1, nn.Upsample, [None, 1000000, nearest]]"), "layer 11 nn.Upsample: argument 1 (`scale_factor`): expected a scale factor from 1 to 64"),
        ("Detect not last", variant("detect", "[[17, 20, 23], 1, Detect, [nc, anchors]]", "[[17, 20, 23], 1, Detect, [nc, anchors]],\n   [-1, 1, Conv, [16, 1, 1]]"), "Detect must be the last layer"),
        ("odd anchors", variant("anchors", "[10,13, 16,30, 33,23]", "[10,13, 16,30, 33]"), "anchors: level 0: expected w, h pairs, got 5 numbers"),
        ("a row of three", variant("row", "[-1, 1, Conv, [128, 3, 2]]", "[-1, Conv, [128, 3, 2]]"), "expected [from, number, module, args]"),
        ("a channel count of zero", variant("c0", "[-1, 1, Conv, [128, 3, 2]]", "[-1, 1, Conv, [0, 3, 2]]"), "argument 0 (`c2`): expected a positive integer, got 0"),
        ("not YAML", variant("yaml", "backbone:", "backbone: ]["), "not valid YAML"),
    ];
    let mut cases: Vec<Case> = yamls
        .iter()
        .map(|(name, cfg, message)| Case {
            name,
            args: info(cfg),
            exit: Exit::Fails,
            expect: vec![cfg.clone(), message.to_string()],
        })
        .collect();
    cases.push(case(
        "info --nc 4000000000",
        &["info", "--nc", "4000000000"],
        Exit::Usage,
        &["4000000000 is out of range: a model has 1 to 100000 classes"],
    ));
    cases.push(case(
        "a config that is neither a file nor shipped",
        &["info", "--cfg", "yolov5q.yaml"],
        Exit::Fails,
        &["model config `yolov5q.yaml` not found"],
    ));
    cases.push(case(
        "a class count that takes the model past its size limit",
        &["info", "--nc", "100000", "--cfg", "yolov5x6.yaml"],
        Exit::Fails,
        &[
            "yolov5x6.yaml: layer 33 Detect",
            "past 1000000000 values",
            "nc",
        ],
    ));
    run_cases(cases);
}

#[test]
fn activation_spec_mistakes_name_the_argument() {
    let cases = vec![
        case(
            "a misspelt name",
            &["acts", "eval", "leaky_rel", "--", "1"],
            Exit::Fails,
            &["unknown activation `leaky_rel`; did you mean LeakyReLU"],
        ),
        case(
            "max below min",
            &["acts", "eval", "nn.Hardtanh(2, 1)", "--", "0"],
            Exit::Fails,
            &["Hardtanh: argument `max_val`: max_val (1) must be greater than min_val (2)"],
        ),
        case(
            "a slope beyond float range",
            &["acts", "eval", "nn.LeakyReLU(1e400)", "--", "0"],
            Exit::Fails,
            &[
                "LeakyReLU: argument `negative_slope`",
                "not a finite number",
            ],
        ),
        case(
            "an expression",
            &["acts", "eval", "nn.ELU(__import__('os'))", "--", "0"],
            Exit::Fails,
            &["is not a literal", "never evaluated"],
        ),
        case(
            "a string for a number",
            &["acts", "eval", "nn.ELU(alpha='x')", "--", "0"],
            Exit::Fails,
            &["ELU: argument `alpha`: expected a number"],
        ),
        case(
            "an unknown keyword",
            &["acts", "eval", "nn.ELU(beta=1)", "--", "0"],
            Exit::Fails,
            &["argument `beta`: unknown keyword"],
        ),
        case(
            "a bad spec for train --act",
            &[
                "train",
                "--data",
                "nowhere.yaml",
                "--act",
                "nn.Softplus(beta=inf)",
            ],
            Exit::Fails,
            &["nowhere.yaml"],
        ),
        case(
            "info --act with an infinite argument",
            &["info", "--act", "nn.CELU(1e999)"],
            Exit::Fails,
            &["--act", "CELU", "not a finite number"],
        ),
        case(
            "compare with an activation listed twice",
            &["compare", "--acts", "silu,silu", "--data", "nowhere.yaml"],
            Exit::Fails,
            &["`silu` is listed twice"],
        ),
    ];
    run_cases(cases);
}

/// One trained run of one epoch (64 px), shared by the tests that need real checkpoints.
fn trained_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = scratch("trained").keep_until_exit();
        let data = synth(&dir);
        let out = Command::new(env!("CARGO_BIN_EXE_actyolo"))
            .args([
                "train",
                "--imgsz",
                "64",
                "--batch",
                "8",
                "--epochs",
                "1",
                "--workers",
                "1",
            ])
            .arg("--data")
            .arg(data.join("data.yaml"))
            .arg("--project")
            .arg(dir.join("runs"))
            .args(["--name", "run"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir.join("runs/run")
    })
}

/// The synthetic dataset [`trained_run`] trained on.
fn trained_data() -> PathBuf {
    trained_run()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("data")
}

/// `source`'s tensors rewritten by `change`, saved with `names` as the class names.
fn rewrite_weights(
    source: &Path,
    target: &Path,
    change: impl Fn(&str, Tensor) -> Tensor,
    names: Option<&str>,
) {
    let bytes = std::fs::read(source).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
    if let Some(names) = names {
        meta.insert("names".into(), names.into());
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    let changed: HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(k, v)| (k.clone(), change(&k, v)))
        .collect();
    let mut sorted: Vec<(&String, &Tensor)> = changed.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let out = safetensors::serialize(sorted.into_iter().map(|(k, t)| (k.as_str(), t)), Some(meta))
        .unwrap();
    std::fs::write(target, out).unwrap();
}

#[test]
fn weights_files_are_recognised_or_refused_by_name() {
    let run = trained_run();
    let dir = scratch("weights");
    let data = trained_data().join("data.yaml");
    let last = run.join("weights/last.safetensors");
    let state = run.join("weights/last.state.safetensors");
    let nan = dir.join("nan.safetensors");
    rewrite_weights(
        &last,
        &nan,
        |name, t| {
            if name == "model.2.cv1.conv.weight" {
                (t * f64::NAN).unwrap()
            } else {
                t
            }
        },
        None,
    );
    let misnamed = dir.join("names.safetensors");
    rewrite_weights(&last, &misnamed, |_, t| t, Some(r#"["a","b","c","d","e"]"#));
    let bytes = std::fs::read(&last).unwrap();
    std::fs::write(dir.join("cut.safetensors"), &bytes[..bytes.len() / 3]).unwrap();
    std::fs::write(dir.join("text.pt"), "not a checkpoint").unwrap();
    std::fs::write(dir.join("model.engine"), "engine").unwrap();
    std::fs::write(dir.join("model.onnx"), "onnx").unwrap();
    let image = dir.join("one.png");
    picture(64, 64).save(&image).unwrap();
    let val = |weights: &Path| {
        vec![
            "val".to_string(),
            "--weights".into(),
            s(weights),
            "--data".into(),
            s(&data),
            "--imgsz".into(),
            "64".into(),
            "--project".into(),
            s(&dir.join("val")),
        ]
    };
    let detect = |weights: &Path| {
        vec![
            "detect".to_string(),
            "--weights".into(),
            s(weights),
            "--source".into(),
            s(&image),
            "--imgsz".into(),
            "64".into(),
            "--project".into(),
            s(&dir.join("detect")),
        ]
    };
    let cases = vec![
        Case {
            name: "val on the resume state uses its EMA weights",
            args: val(&state),
            exit: Exit::Warns,
            expect: vec![
                "is a training run's resume state; using its EMA weights".into(),
                "all".into(),
            ],
        },
        Case {
            name: "detect on the resume state uses its EMA weights",
            args: detect(&state),
            exit: Exit::Warns,
            expect: vec!["using its EMA weights".into(), "image 1/1".into()],
        },
        Case {
            name: "val refuses non-finite weights, naming the tensor",
            args: val(&nan),
            exit: Exit::Fails,
            expect: vec![s(&nan), "tensor `model.2.cv1.conv.weight` holds NaN".into()],
        },
        Case {
            name: "detect refuses non-finite weights",
            args: detect(&nan),
            exit: Exit::Fails,
            expect: vec!["tensor `model.2.cv1.conv.weight` holds NaN".into()],
        },
        Case {
            name: "class names that do not fit nc are a warning",
            args: detect(&misnamed),
            exit: Exit::Warns,
            expect: vec!["5 class names for a model of 3 classes; using the class numbers".into()],
        },
        Case {
            name: "a truncated safetensors file",
            args: val(&dir.join("cut.safetensors")),
            exit: Exit::Fails,
            expect: vec!["cut.safetensors".into()],
        },
        Case {
            name: "a text file named .pt",
            args: val(&dir.join("text.pt")),
            exit: Exit::Fails,
            expect: vec!["text.pt".into()],
        },
        Case {
            name: "an unsupported weights format",
            args: val(&dir.join("model.engine")),
            exit: Exit::Fails,
            expect: vec!["model.engine: unsupported weights format".into()],
        },
        Case {
            name: "exporting an ONNX file",
            args: vec![
                "export".into(),
                "--weights".into(),
                s(&dir.join("model.onnx")),
            ],
            exit: Exit::Fails,
            expect: vec!["model.onnx: an ONNX export runs in val and detect only".into()],
        },
        Case {
            name: "missing weights",
            args: detect(&dir.join("none.pt")),
            exit: Exit::Fails,
            expect: vec!["none.pt does not exist".into()],
        },
        Case {
            name: "safetensors without a model YAML and no --cfg",
            args: detect(Path::new(&format!("{MODELS}/silu.safetensors"))),
            exit: Exit::Fails,
            expect: vec![
                "silu.safetensors: the file carries no model YAML".into(),
                "--cfg".into(),
            ],
        },
        Case {
            name: "weights of another nc",
            args: {
                let mut args = val(&last);
                args[4] = s(&dir.join("nc.yaml"));
                std::fs::write(
                    dir.join("nc.yaml"),
                    format!(
                        "path: {}\ntrain: images/train\nval: images/val\nnames: [a, b]\n",
                        s(data.parent().unwrap())
                    ),
                )
                .unwrap();
                args
            },
            exit: Exit::Fails,
            expect: vec![
                "last.safetensors has 3 classes but".into(),
                "nc.yaml has 2".into(),
            ],
        },
        Case {
            name: "train --weights that fit nothing",
            args: vec![
                "train".into(),
                "--data".into(),
                s(&data),
                "--imgsz".into(),
                "64".into(),
                "--epochs".into(),
                "1".into(),
                "--cfg".into(),
                "yolov7-tiny.yaml".into(),
                "--weights".into(),
                s(&last),
                "--project".into(),
                s(&dir.join("t")),
            ],
            exit: Exit::Fails,
            expect: vec![
                "--weights".into(),
                "last.safetensors: none of its".into(),
                "fits this model".into(),
            ],
        },
    ];
    run_cases(cases);
}

#[test]
fn command_line_values_are_range_checked() {
    let run = trained_run();
    let dir = scratch("cli");
    let data = trained_data().join("data.yaml");
    let weights = format!("{MODELS}/silu.pt");
    let image = dir.join("one.png");
    picture(64, 64).save(&image).unwrap();
    let data = s(&data);
    let project = s(&dir.join("p"));
    let train = |extra: &[&str]| {
        let mut args: Vec<String> = [
            "train",
            "--data",
            &data,
            "--batch",
            "8",
            "--epochs",
            "1",
            "--workers",
            "1",
            "--project",
            &project,
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let mut cases = vec![
        case(
            "--imgsz -1",
            &[
                "detect",
                "--weights",
                &weights,
                "--source",
                &s(&image),
                "--imgsz",
                "-1",
            ],
            Exit::Usage,
            &["invalid value '-1' for '--imgsz", "-1 is out of range"],
        ),
        case(
            "--conf -0.5",
            &[
                "detect",
                "--weights",
                &weights,
                "--source",
                &s(&image),
                "--conf",
                "-0.5",
            ],
            Exit::Usage,
            &[
                "invalid value '-0.5' for '--conf",
                "give a number from 0 to 1",
            ],
        ),
        case(
            "--iou 2",
            &["val", "--weights", &weights, "--data", &data, "--iou", "2"],
            Exit::Usage,
            &["invalid value '2' for '--iou"],
        ),
        case(
            "--batch 0",
            &[
                "val",
                "--weights",
                &weights,
                "--data",
                &data,
                "--batch",
                "0",
            ],
            Exit::Usage,
            &["invalid value '0' for '--batch"],
        ),
        case(
            "--epochs -3",
            &["train", "--data", &data, "--epochs", "-3"],
            Exit::Usage,
            &["invalid value '-3' for '--epochs"],
        ),
        // A GPU in a build without CUDA says how to build one; each command takes --device.
        case(
            "--device 0 without CUDA (train)",
            &["train", "--data", &data, "--device", "0"],
            Exit::Usage,
            &["invalid value '0' for '--device", "--features cuda"],
        ),
        case(
            "--device cuda:0 without CUDA (val)",
            &[
                "val",
                "--weights",
                &weights,
                "--data",
                &data,
                "--device",
                "cuda:0",
            ],
            Exit::Usage,
            &["invalid value 'cuda:0' for '--device", "--features cuda"],
        ),
        case(
            "--device 0 without CUDA (detect)",
            &[
                "detect",
                "--weights",
                &weights,
                "--source",
                &s(&image),
                "--device",
                "0",
            ],
            Exit::Usage,
            &["--features cuda"],
        ),
        case(
            "--device 0 without CUDA (export)",
            &["export", "--weights", &weights, "--device", "0"],
            Exit::Usage,
            &["--features cuda"],
        ),
        case(
            "--device 0 without CUDA (compare)",
            &["compare", "--data", &data, "--device", "0"],
            Exit::Usage,
            &["--features cuda"],
        ),
        case(
            "--device 0,1",
            &["train", "--data", &data, "--device", "0,1"],
            Exit::Usage,
            &["several GPUs at once are not supported"],
        ),
        case(
            "--device gpu",
            &[
                "val",
                "--weights",
                &weights,
                "--data",
                &data,
                "--device",
                "gpu",
            ],
            Exit::Usage,
            &[
                "\"gpu\" is unknown",
                "give cpu, a GPU index such as 0, or cuda:0",
            ],
        ),
        case(
            "--imgsz abc",
            &[
                "val",
                "--weights",
                &weights,
                "--data",
                &data,
                "--imgsz",
                "abc",
            ],
            Exit::Usage,
            &["`abc` is not a whole number"],
        ),
        case(
            "--imgsz beyond the limit",
            &[
                "detect",
                "--weights",
                &weights,
                "--source",
                &s(&image),
                "--imgsz",
                "20000",
            ],
            Exit::Fails,
            &["--imgsz 20000: must be between 1 and 16384"],
        ),
        case(
            // About 1 TiB of feature maps: refused on any machine.
            "--imgsz whose maps do not fit in memory",
            &[
                "val",
                "--weights",
                &weights,
                "--data",
                &data,
                "--imgsz",
                "16384",
                "--batch",
                "32",
                "--project",
                &project,
            ],
            Exit::Fails,
            &[
                "--imgsz 16384 with batch 32 needs about",
                "GiB",
                "use a smaller --imgsz or --batch",
            ],
        ),
        case(
            "val --imgsz 33 is rounded with a warning",
            &[
                "val",
                "--weights",
                &weights,
                "--data",
                &data,
                "--imgsz",
                "33",
                "--project",
                &project,
            ],
            Exit::Warns,
            &["--imgsz 33 must be multiple of max stride 32, updating to 64"],
        ),
        case(
            "detect --imgsz 33 is rounded with a warning",
            &[
                "detect",
                "--weights",
                &weights,
                "--source",
                &s(&image),
                "--imgsz",
                "33",
                "--project",
                &project,
            ],
            Exit::Warns,
            &["--imgsz 33 must be a multiple of max stride 32, updating to 64"],
        ),
        case(
            "val --project in a folder that cannot be written",
            &[
                "val",
                "--weights",
                &weights,
                "--data",
                &data,
                "--imgsz",
                "64",
                "--project",
                "/proc/actyolo",
                "--save-json",
            ],
            Exit::Fails,
            &["/proc/actyolo/exp"],
        ),
        case(
            "detect --project in a folder that cannot be written",
            &[
                "detect",
                "--weights",
                &weights,
                "--source",
                &s(&image),
                "--imgsz",
                "64",
                "--project",
                "/proc/actyolo",
            ],
            Exit::Fails,
            &["/proc/actyolo/exp"],
        ),
        case(
            "train without --data",
            &["train"],
            Exit::Fails,
            &["--data is required"],
        ),
        case(
            "train --hyp with a mistyped key",
            &[
                "train",
                "--data",
                &data,
                "--hyp",
                &s(&{
                    let hyp = dir.join("hyp.yaml");
                    let text = std::fs::read_to_string(concat!(
                        env!("CARGO_MANIFEST_DIR"),
                        "/configs/hyps/hyp.scratch-low.yaml"
                    ))
                    .unwrap();
                    std::fs::write(&hyp, text.replace("lrf:", "lrff:")).unwrap();
                    hyp
                }),
            ],
            Exit::Fails,
            &["hyp.yaml", "lrff"],
        ),
        case(
            "data synth with an unknown shape",
            &[
                "data",
                "synth",
                "--out",
                &s(&dir.join("synth")),
                "--classes",
                "circel",
            ],
            Exit::Fails,
            &["unknown shape `circel`"],
        ),
        case(
            "compare --seeds with a negative seed",
            &["compare", "--seeds", "-1", "--data", &data],
            Exit::Usage,
            &["invalid value '-1' for '--seeds"],
        ),
    ];
    cases.push(Case {
        name: "train --imgsz 33 is rounded with a warning, then --freeze 999 is refused",
        args: train(&["--imgsz", "33", "--freeze", "999"]),
        exit: Exit::Fails,
        expect: vec![
            "--imgsz 33 must be multiple of max stride 32, updating to 64".into(),
            "--freeze: 999 would freeze layers 0 to 998, but the model's layers are 0 to 24".into(),
        ],
    });
    cases.push(Case {
        name: "--freeze naming a missing layer",
        args: train(&["--imgsz", "64", "--freeze", "3", "40"]),
        exit: Exit::Fails,
        expect: vec!["--freeze: layer 40 does not exist".into()],
    });
    // --amp on the CPU: said, then the run goes on in FP32 (here to the freeze error).
    cases.push(Case {
        name: "--amp on the CPU",
        args: train(&["--imgsz", "64", "--amp", "--freeze", "3", "40"]),
        exit: Exit::Fails,
        expect: vec![
            "--amp: mixed precision runs on a GPU; on the CPU this run trains in FP32".into(),
            "--freeze: layer 40 does not exist".into(),
        ],
    });
    let missing = dir.join("missing-run");
    let run_text = s(run);
    cases.extend([
        case(
            "--resume of a folder that does not exist",
            &["train", "--resume", &s(&missing)],
            Exit::Fails,
            &["missing-run: no such run folder or file"],
        ),
        case(
            "--resume alone with no runs",
            &["train", "--resume", "--project", &s(&dir.join("empty"))],
            Exit::Fails,
            &["no run with a checkpoint under"],
        ),
        case(
            "--resume with other settings",
            &[
                "train", "--resume", &run_text, "--batch", "4", "--imgsz", "96",
            ],
            Exit::Fails,
            &["--batch, --imgsz cannot change"],
        ),
        case(
            "--resume of a finished run",
            &["train", "--resume", &run_text],
            Exit::Warns,
            &[
                "has finished its 1 epochs: nothing left to train",
                "--epochs",
            ],
        ),
        case(
            "--resume with fewer epochs",
            &["train", "--resume", &run_text, "--epochs", "1"],
            Exit::Fails,
            &["--epochs 1:", "has already trained 1 epochs"],
        ),
        case(
            "--resume of a folder without checkpoint",
            &["train", "--resume", &s(&dir)],
            Exit::Fails,
            &["nothing to resume: no checkpoint"],
        ),
    ]);
    run_cases(cases);
}

/// A valid ONNX file that is no detector: `y = Relu(x)` on (1, 4).
fn relu_onnx(path: &Path) {
    use prost::Message;
    use tract_onnx::pb;
    let tensor = |name: &str| pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            denotation: String::new(),
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: [1, 4]
                        .into_iter()
                        .map(|d| pb::tensor_shape_proto::Dimension {
                            denotation: String::new(),
                            value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(d)),
                        })
                        .collect(),
                }),
            })),
        }),
        ..Default::default()
    };
    let model = pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(pb::GraphProto {
            node: vec![pb::NodeProto {
                input: vec!["x".into()],
                output: vec!["y".into()],
                op_type: "Relu".into(),
                ..Default::default()
            }],
            input: vec![tensor("x")],
            output: vec![tensor("y")],
            ..Default::default()
        }),
        ..Default::default()
    };
    std::fs::write(path, model.encode_to_vec()).unwrap();
}

#[test]
fn export_options_and_onnx_weights_are_checked() {
    let run = trained_run();
    let dir = scratch("onnx");
    let data = trained_data().join("data.yaml");
    let best = run.join("weights/best.safetensors");
    let exported = dir.join("best.onnx");
    let garbage = dir.join("garbage.onnx");
    std::fs::write(&garbage, b"not a protobuf \xff\xff\xff").unwrap();
    let relu = dir.join("relu.onnx");
    relu_onnx(&relu);
    let images = run
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("data/images/val");
    let (best, exported, garbage, relu, data, images) = (
        s(&best),
        s(&exported),
        s(&garbage),
        s(&relu),
        s(&data),
        s(&images),
    );
    let cases = vec![
        case(
            "export missing weights",
            &["export", "--weights", "nowhere.safetensors"],
            Exit::Fails,
            &["nowhere.safetensors", "does not exist"],
        ),
        case(
            "export --half",
            &["export", "--weights", &best, "--half"],
            Exit::Fails,
            &["--half", "GPU"],
        ),
        case(
            "export --opset 12",
            &["export", "--weights", &best, "--opset", "12"],
            Exit::Fails,
            &["--opset 12", "14..=21"],
        ),
        case(
            "export three sizes",
            &["export", "--weights", &best, "--imgsz", "64", "64", "64"],
            Exit::Fails,
            &["--imgsz takes one size (square) or two (height width)"],
        ),
        case(
            "export --batch 0",
            &["export", "--weights", &best, "--batch", "0"],
            Exit::Usage,
            &["--batch"],
        ),
        case(
            "export --format tflite",
            &["export", "--weights", &best, "--format", "tflite"],
            Exit::Usage,
            &["tflite"],
        ),
        case(
            "export into a missing folder",
            &[
                "export",
                "--weights",
                &best,
                "--out",
                "/nonexistent/dir/m.onnx",
            ],
            Exit::Fails,
            &["/nonexistent/dir"],
        ),
        case(
            "export --imgsz 33",
            &[
                "export",
                "--weights",
                &best,
                "--imgsz",
                "33",
                "--out",
                &exported,
            ],
            Exit::Warns,
            &[
                "must be multiple of max stride 32, updating to 64",
                "export success",
            ],
        ),
        case(
            "val of the export",
            &[
                "val",
                "--weights",
                &exported,
                "--data",
                &data,
                "--imgsz",
                "64",
            ],
            Exit::Warns,
            &["Forcing square inference (1, 3, 64, 64)", "all"],
        ),
        case(
            "detect with the export",
            &[
                "detect",
                "--weights",
                &exported,
                "--source",
                &images,
                "--project",
                &s(&dir.join("detect")),
            ],
            Exit::Warns,
            &["letterboxed to 64x64", "Results saved to"],
        ),
        case(
            "val of a garbage .onnx",
            &["val", "--weights", &garbage, "--data", &data],
            Exit::Fails,
            &["garbage.onnx", "not an ONNX model"],
        ),
        case(
            "detect with a garbage .onnx",
            &["detect", "--weights", &garbage, "--source", &images],
            Exit::Fails,
            &["garbage.onnx", "not an ONNX model"],
        ),
        case(
            "val of an ONNX file that is no detector",
            &["val", "--weights", &relu, "--data", &data],
            Exit::Fails,
            &["relu.onnx", "input `x` is (1, 4)", "a YOLO export has"],
        ),
        case(
            "val --int8 of an ONNX file",
            &["val", "--weights", &exported, "--data", &data, "--int8"],
            Exit::Fails,
            &["best.onnx", "--int8", "pass the .safetensors or .pt"],
        ),
        case(
            "val --int8 --calib-images 0",
            &[
                "val",
                "--weights",
                &best,
                "--data",
                &data,
                "--int8",
                "--calib-images",
                "0",
            ],
            Exit::Usage,
            &["--calib-images", "0 is out of range"],
        ),
        case(
            "val --int8 --calib-percentile 40",
            &[
                "val",
                "--weights",
                &best,
                "--data",
                &data,
                "--int8",
                "--calib",
                "percentile",
                "--calib-percentile",
                "40",
            ],
            Exit::Usage,
            &["--calib-percentile", "40 is out of range", "99.99"],
        ),
        case(
            "val --int8 with percentile calibration",
            &[
                "val",
                "--weights",
                &best,
                "--data",
                &data,
                "--imgsz",
                "64",
                "--int8",
                "--calib",
                "percentile",
                "--project",
                &s(dir.join("int8").as_path()),
            ],
            Exit::Warns,
            &["INT8 simulation:", "Percentile(99.99)", "all"],
        ),
    ];
    run_cases(cases);
}
