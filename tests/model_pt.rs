//! The `.pt` checkpoint reader against the fixtures of tools/gen_model_fixtures.py (train.py
//! checkpoints) and tools/gen_pt_variants.py (torch.save(model), state_dicts, strided views).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use actyolo::model::pt::{read_pt, PtCheckpoint, WeightsSource};
use candle_core::{DType, Device, Tensor};
use serde_yaml::Value;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

const ACTIVATIONS: &[&str] = &["silu", "relu", "leakyrelu", "hardswish", "mish", "frelu"];
const NAMES: &[&str] = &["circle", "rectangle", "triangle"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/models")
        .join(name)
}

fn read(path: &Path) -> PtCheckpoint {
    read_pt(path).unwrap_or_else(|e| panic!("{e}"))
}

fn values(tensor: &Tensor) -> Vec<f32> {
    tensor
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Exactly the tensors of `expected` (a safetensors file), by name, shape and value.
fn assert_tensors(got: &HashMap<String, Tensor>, expected: &Path, context: &str) {
    let expected = candle_core::safetensors::load(expected, &Device::Cpu).unwrap();
    let mut got_names: Vec<&String> = got.keys().collect();
    let mut expected_names: Vec<&String> = expected.keys().collect();
    got_names.sort();
    expected_names.sort();
    assert_eq!(got_names, expected_names, "{context}: tensor names");
    for (name, want) in &expected {
        let tensor = &got[name];
        assert_eq!(tensor.dims(), want.dims(), "{context}: shape of {name}");
        assert_eq!(values(tensor), values(want), "{context}: values of {name}");
    }
}

/// The yaml equals the YAML file, key order included (Mapping's == ignores the order).
fn assert_yaml(got: &Value, expected: &Path, context: &str) {
    let want: Value = serde_yaml::from_str(&std::fs::read_to_string(expected).unwrap()).unwrap();
    assert_eq!(got, &want, "{context}: yaml");
    let keys = |v: &Value| {
        v.as_mapping()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
    };
    assert_eq!(keys(got), keys(&want), "{context}: yaml key order");
}

#[test]
fn reads_every_train_py_checkpoint() {
    for act in ACTIVATIONS {
        let ckpt = read(&fixture(&format!("{act}.pt")));
        // For silu, 'model' holds decoys (+0.5): equal values prove the EMA was taken.
        assert_tensors(&ckpt.tensors, &fixture(&format!("{act}.safetensors")), act);
        assert!(
            ckpt.tensors.values().all(|t| t.dtype() == DType::F16),
            "{act}: fp16 as stored"
        );
        assert_yaml(&ckpt.yaml, &fixture(&format!("{act}.yaml")), act);
        assert_eq!(ckpt.names, NAMES, "{act}");
        assert_eq!(ckpt.nc, Some(3), "{act}");
        let source = if *act == "silu" {
            WeightsSource::Ema
        } else {
            WeightsSource::Model
        };
        assert_eq!(ckpt.source, source, "{act}");
        assert_eq!(ckpt.epoch, Some(-1), "{act}");
    }
}

#[test]
fn reads_a_whole_model_file() {
    let ckpt = read(&fixture("pt_variants/whole_model.pt"));
    // Leaves out the non-persistent buffer `model.0.scratch`, as the state_dict does.
    assert_tensors(
        &ckpt.tensors,
        &fixture("pt_variants/whole_model.safetensors"),
        "whole_model",
    );
    assert_yaml(
        &ckpt.yaml,
        &fixture("pt_variants/whole_model.yaml"),
        "whole_model",
    );
    assert_eq!(ckpt.names, NAMES, "names from an {{index: name}} dict");
    assert_eq!(ckpt.nc, Some(3));
    assert_eq!(ckpt.source, WeightsSource::Model);
    assert_eq!(ckpt.epoch, None);
}

#[test]
fn reads_a_plain_state_dict() {
    let ckpt = read(&fixture("pt_variants/state_dict.pt"));
    assert_tensors(
        &ckpt.tensors,
        &fixture("pt_variants/state_dict.safetensors"),
        "state_dict",
    );
    assert_eq!(ckpt.yaml, Value::Null);
    assert!(ckpt.names.is_empty());
    assert_eq!(ckpt.nc, None);
    assert_eq!(ckpt.source, WeightsSource::Model);
}

#[test]
fn reads_strided_views_under_a_state_dict_key() {
    let ckpt = read(&fixture("pt_variants/views.pt"));
    assert_tensors(
        &ckpt.tensors,
        &fixture("pt_variants/views.safetensors"),
        "views",
    );
    assert!(ckpt.tensors.values().all(|t| t.dtype() == DType::F32));
    assert_eq!(ckpt.epoch, Some(7));
}

/// A file under the temp dir, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> Self {
        let path =
            std::env::temp_dir().join(format!("actyolo-model-pt-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        TempFile(path)
    }

    /// A zip archive of `entries` (name, contents), stored as torch stores them.
    fn zip(name: &str, entries: &[(&str, &[u8])]) -> Self {
        let mut writer = ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (entry, contents) in entries {
            writer
                .start_file(
                    *entry,
                    SimpleFileOptions::default().compression_method(CompressionMethod::Stored),
                )
                .unwrap();
            writer.write_all(contents).unwrap();
        }
        Self::new(name, &writer.finish().unwrap().into_inner())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `read_pt` fails with a message that names the file and contains `says`.
fn assert_error(file: &TempFile, says: &str) {
    let message = read_pt(&file.0)
        .expect_err("a bad file must give an error")
        .to_string();
    assert!(
        message.contains(&file.0.display().to_string()),
        "names the file: {message}"
    );
    assert!(message.contains(says), "says {says:?}: {message}");
}

fn relu_data_pkl() -> Vec<u8> {
    let file = std::fs::File::open(fixture("relu.pt")).unwrap();
    let mut archive = zip::ZipArchive::new(file).unwrap();
    let mut pickle = Vec::new();
    std::io::Read::read_to_end(&mut archive.by_name("relu/data.pkl").unwrap(), &mut pickle)
        .unwrap();
    pickle
}

#[test]
fn rejects_a_file_that_is_not_a_zip_archive() {
    assert_error(
        &TempFile::new("onnx.pt", b"\x08\x07\x12\x07pytorch not a zip archive"),
        "not a readable zip archive",
    );
}

#[test]
fn rejects_a_truncated_checkpoint() {
    let bytes = std::fs::read(fixture("relu.pt")).unwrap();
    assert_error(
        &TempFile::new("truncated.pt", &bytes[..bytes.len() / 2]),
        "not a readable zip archive",
    );
}

#[test]
fn rejects_a_zip_without_data_pkl() {
    assert_error(
        &TempFile::zip("no-pickle.pt", &[("archive/version", b"3\n")]),
        "no data.pkl",
    );
}

#[test]
fn rejects_a_checkpoint_without_its_storages() {
    let pickle = relu_data_pkl();
    let file = TempFile::zip("no-storages.pt", &[("relu/data.pkl", &pickle)]);
    assert_error(&file, "storage entry relu/data/");
}

#[test]
fn rejects_a_torchscript_export() {
    let file = TempFile::zip(
        "script.pt",
        &[
            ("m/data.pkl", b"\x80\x02}."),
            ("m/constants.pkl", b"\x80\x02)."),
            ("m/code/m.py", b""),
        ],
    );
    assert_error(&file, "TorchScript");
}

#[test]
fn rejects_a_damaged_pickle() {
    let pickle = relu_data_pkl();
    let file = TempFile::zip(
        "damaged.pt",
        &[("relu/data.pkl", &pickle[..pickle.len() / 3])],
    );
    assert_error(&file, "cannot unpickle relu/data.pkl");
}

#[test]
fn rejects_a_pickle_without_weights() {
    let file = TempFile::zip(
        "no-weights.pt",
        &[(
            "x/data.pkl",
            b"\x80\x02}q\x00X\x05\x00\x00\x00epochq\x01K\x03s.",
        )],
    );
    assert_error(&file, "no 'model' or 'ema' entry");
}
