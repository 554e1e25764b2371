//! The `actyolo acts` subcommands as a user runs them.

use std::process::Command;

fn actyolo(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_actyolo"))
        .args(args)
        .output()
        .expect("run actyolo");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn list_json_has_all_32_with_specs_and_properties() {
    let (ok, stdout, _) = actyolo(&["acts", "list", "--json"]);
    assert!(ok);
    let list: Vec<serde_json::Value> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(list.len(), 32);
    let leaky = list.iter().find(|e| e["name"] == "LeakyReLU").unwrap();
    assert_eq!(leaky["spec"], "nn.LeakyReLU(negative_slope=0.01)");
    assert_eq!(leaky["params"][0]["name"], "negative_slope");
    assert_eq!(leaky["properties"]["monotonic"], true);
    let prelu = list.iter().find(|e| e["name"] == "PReLU").unwrap();
    assert_eq!(prelu["learnable"], true);
    let (ok, table, _) = actyolo(&["acts", "list"]);
    assert!(ok && table.contains("MetaAconC(r=16)") && table.contains("32 activations"));
}

#[test]
fn eval_prints_values_and_gradients() {
    // ELU(0.5): y = 0.5 (e^x - 1) for x <= 0, with dy/dx = 0.5 e^x (0.5 at 0, torch's convention).
    let (ok, stdout, stderr) = actyolo(&[
        "acts",
        "eval",
        "nn.ELU(0.5)",
        "--json",
        "--",
        "-3",
        "-1",
        "0",
        "2",
    ]);
    assert!(ok, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["spec"], "nn.ELU(alpha=0.5)");
    let get = |k: &str| {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("x"), [-3.0, -1.0, 0.0, 2.0]);
    let expected_y = [
        0.5 * ((-3f64).exp() - 1.0),
        0.5 * ((-1f64).exp() - 1.0),
        0.0,
        2.0,
    ];
    let expected_d = [0.5 * (-3f64).exp(), 0.5 * (-1f64).exp(), 0.5, 1.0];
    for (a, b) in get("y")
        .iter()
        .zip(expected_y)
        .chain(get("dydx").iter().zip(expected_d))
    {
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
    }
    let (ok, table, _) = actyolo(&["acts", "eval", "relu", "--", "-1", "2"]);
    assert!(ok && table.contains("dy/dx"), "{table}");
}

#[test]
fn eval_softmax_treats_the_points_as_one_channel_vector() {
    let (ok, stdout, _) = actyolo(&[
        "acts", "eval", "softmax", "--json", "--", "0", "0", "0", "0",
    ]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for y in v["y"].as_array().unwrap() {
        assert!((y.as_f64().unwrap() - 0.25).abs() < 1e-7);
    }
}

#[test]
fn user_mistakes_are_clear_errors() {
    let (ok, _, stderr) = actyolo(&["acts", "eval", "leaky_rel", "--", "1"]);
    assert!(!ok);
    assert!(
        stderr.contains("unknown activation `leaky_rel`") && stderr.contains("LeakyReLU"),
        "{stderr}"
    );
    let (ok, _, stderr) = actyolo(&["acts", "eval", "nn.Hardtanh(2, 1)", "--", "1"]);
    assert!(!ok && stderr.contains("max_val"), "{stderr}");
    let (ok, _, stderr) = actyolo(&["acts", "plot", "--range", "3,1"]);
    assert!(!ok && stderr.contains("--range"), "{stderr}");
    let (ok, _, stderr) = actyolo(&["acts", "eval", "glu", "--", "1", "2", "3"]);
    assert!(!ok && stderr.contains("even"), "{stderr}");
}
