//! Output parity with PyTorch: models built from the fixtures' YAML, loaded with their
//! weights, give ultralytics' eval-mode Detect outputs (decoded and raw) to
//! |ours - torch| <= 1e-4 + 1e-4 * |torch|. Fixtures: tools/gen_model_fixtures.py.

mod model_support;

use std::collections::HashMap;
use std::path::PathBuf;

use actyolo::model::build::{LoadError, Model};
use actyolo::model::config::ModelConfig;
use candle_core::{Device, Tensor};
use model_support::check_outputs;

pub const ACTIVATIONS: [&str; 6] = ["silu", "relu", "leakyrelu", "hardswish", "mish", "frelu"];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/models"
    ))
    .join(name)
}

fn load(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name), &Device::Cpu).unwrap()
}

#[test]
fn safetensors_weights_give_pytorch_outputs_for_every_activation() {
    for act in ACTIVATIONS {
        let cfg = ModelConfig::from_file(&fixture(&format!("{act}.yaml"))).unwrap();
        let mut model = Model::new(&cfg, None, 0, None).unwrap();
        model
            .load_state_dict(&load(&format!("{act}.safetensors")), true)
            .unwrap_or_else(|e| panic!("{act}: {e}"));
        let expected = load(&format!("{act}.out.safetensors"));
        check_outputs(&model, &expected, "", act);
        model.fuse().unwrap();
        check_outputs(&model, &expected, "", &format!("{act} fused"));
    }
}

#[test]
fn pt_checkpoints_give_pytorch_outputs_for_every_activation() {
    for act in ACTIVATIONS {
        let model =
            actyolo::model::weights::load_model(&fixture(&format!("{act}.pt")), None, None, None)
                .unwrap_or_else(|e| panic!("{act}: {e}"))
                .0;
        assert_eq!(model.names, ["circle", "rectangle", "triangle"]);
        check_outputs(
            &model,
            &load(&format!("{act}.out.safetensors")),
            "",
            &format!("{act}.pt"),
        );
    }
}

#[test]
fn safetensors_round_trip_keeps_weights_yaml_and_names() {
    let dir = std::env::temp_dir().join(format!("actyolo-roundtrip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let original = actyolo::model::weights::load_model(&fixture("frelu.pt"), None, None, None)
        .unwrap()
        .0;
    let path = dir.join("frelu.safetensors");
    actyolo::model::weights::save_safetensors(&original, &path).unwrap();
    let reloaded = actyolo::model::weights::load_model(&path, None, None, None)
        .unwrap()
        .0;
    assert_eq!(reloaded.names, original.names);
    assert_eq!(reloaded.config.yaml, original.config.yaml);
    assert_eq!(reloaded.config.layers, original.config.layers);
    check_outputs(
        &reloaded,
        &load("frelu.out.safetensors"),
        "",
        "frelu round trip",
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn mismatched_weights_are_explained() {
    // FReLU weights into a SiLU model: the FReLU tensors do not belong to it.
    let cfg = ModelConfig::from_file(&fixture("silu.yaml")).unwrap();
    let model = Model::new(&cfg, None, 0, None).unwrap();
    let err = model
        .load_state_dict(&load("frelu.safetensors"), true)
        .unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(&err, LoadError::Unexpected(names) if names.iter().all(|n| n.contains(".act."))),
        "{message}"
    );
    assert!(message.contains("do not belong"), "{message}");
    // SiLU weights into an FReLU model: its FReLU tensors are missing.
    let cfg = ModelConfig::from_file(&fixture("frelu.yaml")).unwrap();
    let err = Model::new(&cfg, None, 0, None)
        .unwrap()
        .load_state_dict(&load("silu.safetensors"), true)
        .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, LoadError::Missing(_)), "{message}");
    assert!(
        message.contains("missing") && message.contains("--act"),
        "{message}"
    );
    // A safetensors file without a YAML needs --cfg.
    let err = actyolo::model::weights::load_model(&fixture("silu.safetensors"), None, None, None)
        .err()
        .unwrap();
    assert!(err.to_string().contains("--cfg"), "{err}");
}
