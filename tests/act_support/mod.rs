//! The activation golden fixtures (tests/fixtures/activations.*, made by
//! tools/gen_act_fixtures.py) and the check of one case against them, shared by the
//! kernels' test and the device path's.
//! Tolerance: |ours - torch| <= 1e-5 + 1e-5 * |torch|, elementwise, in f32; parameter
//! gradients (sums over the whole input, through a GEMM whose f32 summation order
//! differs between its AVX2 and AVX-512 kernels) get 1e-5 + 1e-4 * |torch|.

use std::collections::HashMap;

use actyolo::act::{ActSpec, Activation};
use actyolo::ops::vars::SeededVarMap;
use candle_core::{DType, Device, Tensor, Var};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-5;
const RTOL_PARAM_GRAD: f32 = 1e-4;

#[derive(serde::Deserialize)]
pub struct Manifest {
    pub cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
pub struct Case {
    pub id: String,
    pub spec: String,
    train: bool,
    channels: usize,
    params: Vec<String>,
    state: Vec<String>,
}

pub fn fixtures() -> (Manifest, HashMap<String, Tensor>) {
    // Where the test was built, or, for a test binary carried to another machine (the GPU
    // check), the repository it runs in.
    let built = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let dir = if std::path::Path::new(built).is_dir() {
        built
    } else {
        "tests/fixtures"
    };
    let manifest =
        std::fs::read_to_string(format!("{dir}/activations.json")).expect("fixture manifest");
    let tensors =
        candle_core::safetensors::load(format!("{dir}/activations.safetensors"), &Device::Cpu)
            .expect("fixture tensors");
    (
        serde_json::from_str(&manifest).expect("manifest json"),
        tensors,
    )
}

/// The largest violation of the tolerance, as (excess, ours, torch), or None when within it.
fn worst(ours: &Tensor, torch: &Tensor, rtol: f32) -> Result<Option<(f32, f32, f32)>, String> {
    if ours.dims() != torch.dims() {
        return Err(format!(
            "shape {:?} vs torch {:?}",
            ours.dims(),
            torch.dims()
        ));
    }
    let a = ours
        .flatten_all()
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let b = torch.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut worst = None;
    for (&a, &b) in a.iter().zip(&b) {
        let excess = (a - b).abs() - (ATOL + rtol * b.abs());
        let failing = excess > 0.0 || a.is_nan() != b.is_nan();
        if failing && worst.is_none_or(|(e, _, _)| excess > e) {
            worst = Some((excess, a, b));
        }
    }
    Ok(worst)
}

/// Every golden case computed on `device`; panics listing all mismatches.
pub fn assert_every_case_matches(device: &Device) {
    let (manifest, tensors) = fixtures();
    assert!(manifest.cases.len() > 100, "fixture lists too few cases");
    let failures: Vec<String> = manifest
        .cases
        .iter()
        .flat_map(|c| check_case(c, &tensors, device))
        .collect();
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The mismatches of one case, computed on `device`.
pub fn check_case(case: &Case, t: &HashMap<String, Tensor>, device: &Device) -> Vec<String> {
    let get = |k: &str| {
        t.get(&format!("{}/{k}", case.id))
            .unwrap_or_else(|| panic!("fixture {}/{k}", case.id))
            .to_device(device)
            .unwrap()
    };
    let spec = ActSpec::parse(&case.spec).unwrap_or_else(|e| panic!("{}: {e}", case.id));
    let store = SeededVarMap::new(0);
    let act = Activation::new(
        &spec,
        case.channels,
        store.builder(DType::F32, device),
        store.rng_for("act"),
    )
    .unwrap_or_else(|e| panic!("{}: {e}", case.id));
    let mut vars = store.var_map().clone();
    for name in &case.state {
        vars.set_one(name, get(&format!("state/{name}")))
            .unwrap_or_else(|e| panic!("{}: set {name}: {e}", case.id));
    }
    let x = Var::from_tensor(&get("x")).unwrap();
    let y = act.forward(x.as_tensor(), case.train).unwrap();
    let mut compared: Vec<(String, Tensor, Tensor)> = vec![("y".into(), y.clone(), get("y"))];
    for (label, root) in [
        ("ones", y.sum_all().unwrap()),
        ("rand", (&y * get("gy")).unwrap().sum_all().unwrap()),
    ] {
        let grads = root.backward().unwrap();
        compared.push((
            format!("gx_{label}"),
            grads.get(x.as_tensor()).expect("dx").clone(),
            get(&format!("gx_{label}")),
        ));
        let data = vars.data().lock().unwrap();
        for name in &case.params {
            let var = data
                .get(name)
                .unwrap_or_else(|| panic!("{}: no parameter {name}", case.id));
            let g = grads
                .get(var.as_tensor())
                .cloned()
                .unwrap_or_else(|| var.as_tensor().zeros_like().unwrap());
            compared.push((
                format!("gparam_{label}/{name}"),
                g,
                get(&format!("gparam_{label}/{name}")),
            ));
        }
    }
    if case.train {
        let data = vars.data().lock().unwrap();
        for name in case.state.iter().filter(|n| n.contains("running")) {
            compared.push((
                format!("state_after/{name}"),
                data[name].as_tensor().clone(),
                get(&format!("state_after/{name}")),
            ));
        }
    }
    compared
        .into_iter()
        .filter_map(|(what, ours, torch)| {
            match worst(
                &ours,
                &torch,
                if what.starts_with("gparam") {
                    RTOL_PARAM_GRAD
                } else {
                    RTOL
                },
            ) {
                Ok(None) => None,
                Ok(Some((excess, a, b))) => Some(format!(
                    "{} [{}] {what}: ours {a} vs torch {b} (beyond tolerance by {excess:e})",
                    case.id, case.spec
                )),
                Err(e) => Some(format!("{} [{}] {what}: {e}", case.id, case.spec)),
            }
        })
        .collect()
}
