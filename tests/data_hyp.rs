//! Training hyperparameters: the shipped defaults and the errors for bad files.

mod data_support;

use actyolo::train::hyp::Hyp;
use actyolo::util::error::chain;
use data_support::scratch_dir;

#[test]
fn the_default_is_yolov5_scratch_low() {
    let hyp = Hyp::default();
    let values = [
        hyp.optim.lr0,
        hyp.optim.lrf,
        hyp.optim.momentum,
        hyp.optim.weight_decay,
        hyp.optim.warmup_epochs,
        hyp.optim.warmup_momentum,
        hyp.optim.warmup_bias_lr,
        hyp.loss.box_gain,
        hyp.loss.cls_gain,
        hyp.loss.cls_pw.unwrap(),
        hyp.loss.obj_gain.unwrap(),
        hyp.loss.obj_pw.unwrap(),
        hyp.loss.iou_t.unwrap(),
        hyp.loss.anchor_t.unwrap(),
        hyp.loss.fl_gamma.unwrap(),
        hyp.augment.hsv_h,
        hyp.augment.hsv_s,
        hyp.augment.hsv_v,
        hyp.augment.degrees,
        hyp.augment.translate,
        hyp.augment.scale,
        hyp.augment.shear,
        hyp.augment.perspective,
        hyp.augment.flipud,
        hyp.augment.fliplr,
        hyp.augment.mosaic,
        hyp.augment.mixup,
        hyp.augment.copy_paste,
    ];
    let expected = [
        0.01, 0.01, 0.937, 0.0005, 3.0, 0.8, 0.1, 0.05, 0.5, 1.0, 1.0, 1.0, 0.20, 4.0, 0.0, 0.015,
        0.7, 0.4, 0.0, 0.1, 0.5, 0.0, 0.0, 0.0, 0.5, 1.0, 0.0, 0.0,
    ];
    assert_eq!(values, expected);
    assert_eq!((hyp.loss.anchors, hyp.loss.label_smoothing), (None, None));
    assert_eq!(Hyp::load("hyp.scratch-low").unwrap(), hyp);
    assert_eq!(Hyp::load("hyp.scratch-low.yaml").unwrap(), hyp);
}

fn error_for(name: &str, edit: impl Fn(&str) -> String) -> (String, String) {
    let dir = scratch_dir(name);
    let file = dir.join("hyp.yaml");
    let shipped = include_str!("../configs/hyps/hyp.scratch-low.yaml");
    std::fs::write(&file, edit(shipped)).unwrap();
    let path = file.display().to_string();
    (Hyp::load(&path).map_err(|e| chain(&e)).unwrap_err(), path)
}

#[test]
fn mistakes_name_the_file_and_the_key() {
    let (message, file) = error_for("hyp-unknown", |text| text.replace("lr0:", "lr00:"));
    assert!(
        message.starts_with(&format!(
            "{file}: unknown field `lr00`, expected one of `lr0`"
        )),
        "{message}"
    );
    let (message, file) = error_for("hyp-missing", |text| text.replace("fliplr: 0.5", ""));
    assert!(
        message.starts_with(&format!("{file}: missing field `fliplr`")),
        "{message}"
    );
    let (message, file) = error_for("hyp-range", |text| {
        text.replace("mosaic: 1.0", "mosaic: 1.5")
    });
    assert_eq!(
        message,
        format!("{file}: `mosaic: 1.5` is out of range: a probability must lie in [0, 1]")
    );
}

#[test]
fn optional_keys_and_unknown_names() {
    let dir = scratch_dir("hyp-optional");
    let file = dir.join("hyp.yaml");
    std::fs::write(
        &file,
        format!(
            "{}anchors: 3\nlabel_smoothing: 0.1\n",
            include_str!("../configs/hyps/hyp.scratch-low.yaml")
        ),
    )
    .unwrap();
    let hyp = Hyp::load(file.to_str().unwrap()).unwrap();
    assert_eq!(
        (hyp.loss.anchors, hyp.loss.label_smoothing),
        (Some(3.0), Some(0.1))
    );
    assert_eq!(
        Hyp::load("hyp.scratch-lo").map_err(|e| chain(&e)).unwrap_err(),
        "hyperparameters `hyp.scratch-lo` not found: it is neither a file nor a shipped set (hyp.scratch-low.yaml, hyp.scratch.tiny.yaml, hyp.scratch.p5.yaml, hyp.v8-default.yaml)"
    );
}

#[test]
fn yolov7_sets_load_with_paste_in_ignored_and_ota_selected() {
    let tiny = Hyp::load("hyp.scratch.tiny").unwrap();
    assert_eq!(
        (
            tiny.optim.lrf,
            tiny.augment.mixup,
            tiny.augment.paste_in,
            tiny.loss.loss_ota
        ),
        (0.01, 0.05, Some(0.05), Some(1))
    );
    assert!(tiny.uses_ota() && !Hyp::default().uses_ota());
    assert_eq!(tiny.ignored().len(), 1);
    assert!(
        tiny.ignored()[0].contains("paste_in: 0.05"),
        "{:?}",
        tiny.ignored()
    );
    let p5 = Hyp::load("hyp.scratch.p5.yaml").unwrap();
    assert_eq!(
        (
            p5.optim.lrf,
            p5.loss.cls_gain,
            p5.loss.obj_gain,
            p5.augment.scale,
            p5.augment.mixup,
            p5.augment.paste_in
        ),
        (0.1, 0.3, Some(0.7), 0.9, 0.15, Some(0.15))
    );
    assert!(Hyp::default().ignored().is_empty());
    // ultralytics 8's defaults: its gains, no objectness keys.
    let v8 = Hyp::load("hyp.v8-default.yaml").unwrap();
    assert_eq!(
        (
            v8.loss.box_gain,
            v8.loss.cls_gain,
            v8.loss.dfl,
            v8.loss.obj_gain
        ),
        (7.5, 0.5, Some(1.5), None)
    );
    let missing = actyolo::train::loss::LossGains::from_hyp(&v8.loss).unwrap_err();
    assert!(missing.to_string().contains("`obj`"), "{missing}");
    let missing = Hyp::default().loss.v8_gains().unwrap_err();
    assert!(missing.to_string().contains("`dfl`"), "{missing}");
    let dir = scratch_dir("hyp-ota");
    let file = dir.join("hyp.yaml");
    std::fs::write(
        &file,
        include_str!("../configs/hyps/hyp.scratch.tiny.yaml").replace("loss_ota: 1", "loss_ota: 2"),
    )
    .unwrap();
    let message = Hyp::load(file.to_str().unwrap())
        .map_err(|e| chain(&e))
        .unwrap_err();
    assert!(
        message.starts_with(&file.display().to_string())
            && message.contains("`loss_ota: 2` is out of range"),
        "{message}"
    );
}
