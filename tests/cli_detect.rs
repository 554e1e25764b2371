//! `actyolo detect` end to end on generated images with the tiny random-weight fixture
//! model: what it writes, what it prints, and how it treats files it cannot use.

use std::path::{Path, PathBuf};
use std::process::Command;

use image::{Rgb, RgbImage};
use serde_json::Value;

const WEIGHTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/models/silu.pt");

struct Output {
    success: bool,
    stdout: String,
    stderr: String,
}

fn actyolo(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_actyolo"))
        .args(args)
        .output()
        .unwrap();
    Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// A fresh scratch folder per test.
fn scratch(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("actyolo-cli-detect-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A grey image with a red and a blue block.
fn picture(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        if (width / 5..width / 2).contains(&x) && (height / 4..height / 2).contains(&y) {
            Rgb([220, 40, 40])
        } else if (width * 3 / 5..width * 9 / 10).contains(&x)
            && (height / 2..height * 4 / 5).contains(&y)
        {
            Rgb([40, 60, 200])
        } else {
            Rgb([200, 200, 200])
        }
    })
}

/// Three images (two with numeric stems), a corrupt PNG and a text file.
fn sources(dir: &Path) -> PathBuf {
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    picture(320, 240).save(images.join("1.png")).unwrap();
    picture(200, 300).save(images.join("002.jpg")).unwrap();
    picture(150, 100).save(images.join("scene.png")).unwrap();
    std::fs::write(
        images.join("corrupt.png"),
        b"\x89PNG\r\n\x1a\n this is not really a png",
    )
    .unwrap();
    std::fs::write(images.join("notes.txt"), "not an image").unwrap();
    images
}

fn numbers(line: &str) -> Vec<f64> {
    line.split(' ').map(|v| v.parse().unwrap()).collect()
}

#[test]
fn detect_writes_images_labels_and_json() {
    let dir = scratch("full");
    let images = sources(&dir);
    let project = dir.join("runs");
    let args = [
        "detect",
        "--weights",
        WEIGHTS,
        "--source",
        images.to_str().unwrap(),
        "--conf",
        "0.001",
        "--save-txt",
        "--save-conf",
        "--save-json",
        "--project",
        project.to_str().unwrap(),
        "--name",
        "t",
    ];
    let out = actyolo(&args);
    assert!(
        out.success,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let log = format!("{}{}", out.stdout, out.stderr);
    assert!(!log.contains("panicked"), "{log}");

    // The corrupt file and the text file are reported and skipped; the 4 image files count.
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("corrupt.png") && l.contains("cannot decode")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("notes.txt") && l.contains("not a supported image format")),
        "{}",
        out.stderr
    );
    for name in ["1.png", "002.jpg", "scene.png"] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.contains(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no line for {name}:\n{}", out.stdout));
        assert!(
            line.starts_with("image ") && line.contains("/4 ") && line.ends_with("ms"),
            "{line}"
        );
    }
    // 320x240 letterboxes to 640x480 (stride-multiple padding only).
    assert!(out.stdout.contains("1.png: 480x640 "), "{}", out.stdout);
    assert!(
        out.stdout.contains("Speed: ")
            && out.stdout.contains("per image at shape (1, 3, 640, 640)"),
        "{}",
        out.stdout
    );
    let save_dir = project.join("t");
    assert!(
        out.stdout
            .contains(&format!("Results saved to {}", save_dir.display())),
        "{}",
        out.stdout
    );

    // Annotated images at their original sizes; nothing for the skipped files.
    for (name, size) in [
        ("1.png", (320, 240)),
        ("002.jpg", (200, 300)),
        ("scene.png", (150, 100)),
    ] {
        assert_eq!(
            image::image_dimensions(save_dir.join(name)).unwrap(),
            size,
            "{name}"
        );
    }
    assert!(!save_dir.join("corrupt.png").exists());

    // labels/<stem>.txt: class, 4 normalised coordinates, confidence.
    for stem in ["1", "002", "scene"] {
        let text =
            std::fs::read_to_string(save_dir.join("labels").join(format!("{stem}.txt"))).unwrap();
        assert!(!text.is_empty(), "{stem}: no boxes at conf 0.001");
        for line in text.lines() {
            let v = numbers(line);
            assert_eq!(v.len(), 6, "{stem}: {line}");
            assert!(
                v[0] == v[0].round() && (0.0..3.0).contains(&v[0]),
                "{stem}: class in {line}"
            );
            assert!(
                v[1..5].iter().all(|c| (0.0..=1.0).contains(c)),
                "{stem}: coordinates in {line}"
            );
            assert!(v[5] > 0.001 && v[5] <= 1.0, "{stem}: confidence in {line}");
        }
    }

    // predictions.json: COCO results, numeric stems as int ids.
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(save_dir.join("predictions.json")).unwrap())
            .unwrap();
    let entries = json.as_array().unwrap();
    assert!(!entries.is_empty());
    for e in entries {
        let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 4, "{e}");
        assert!(e["category_id"].as_u64().unwrap() < 3, "{e}");
        assert_eq!(e["bbox"].as_array().unwrap().len(), 4, "{e}");
        assert!(e["score"].as_f64().unwrap() > 0.0, "{e}");
    }
    let ids: Vec<&Value> = entries.iter().map(|e| &e["image_id"]).collect();
    assert!(
        ids.contains(&&Value::from(1))
            && ids.contains(&&Value::from(2))
            && ids.contains(&&Value::from("scene")),
        "{ids:?}"
    );
    assert!(
        ids.iter()
            .all(|id| id.is_u64() || id.as_str() == Some("scene")),
        "{ids:?}"
    );

    // The same name again gets the next folder.
    let single = images.join("scene.png");
    let again = actyolo(&[
        "detect",
        "--weights",
        WEIGHTS,
        "--source",
        single.to_str().unwrap(),
        "--project",
        project.to_str().unwrap(),
        "--name",
        "t",
        "--imgsz",
        "320",
    ]);
    assert!(again.success, "{}", again.stderr);
    assert!(project.join("t2").join("scene.png").is_file());
    assert!(again.stdout.contains("image 1/1 "), "{}", again.stdout);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn missing_inputs_are_clear_errors() {
    let dir = scratch("errors");
    let project = dir.join("runs");
    let images = sources(&dir);
    let missing = dir.join("nowhere");
    let run = |weights: &str, source: &str| {
        actyolo(&[
            "detect",
            "--weights",
            weights,
            "--source",
            source,
            "--project",
            project.to_str().unwrap(),
        ])
    };

    let cases = [
        (
            run(WEIGHTS, missing.to_str().unwrap()),
            ["does not exist", "nowhere"],
        ),
        (
            run(
                missing.join("w.pt").to_str().unwrap(),
                images.to_str().unwrap(),
            ),
            ["weights file", "w.pt"],
        ),
        (
            run(WEIGHTS, images.join("notes.txt").to_str().unwrap()),
            ["no images found", "notes.txt"],
        ),
    ];
    for (out, expected) in &cases {
        assert!(
            !out.success && !out.stderr.contains("panicked"),
            "{}",
            out.stderr
        );
        assert!(
            expected.iter().all(|e| out.stderr.contains(e)),
            "expected {expected:?} in:\n{}",
            out.stderr
        );
    }
    // Nothing was written for runs that failed.
    assert!(!project.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
