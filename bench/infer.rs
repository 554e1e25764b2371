//! Inference latency of yolov5n (nc=80, fused, batch 1) at 640 and 320: actyolo, and in
//! the same run PyTorch eager and onnxruntime when the reference Python environment
//! exists. Run: `cargo bench --bench infer` (set ACTYOLO_PYTHON to another interpreter;
//! the environment is made as ../shared/REFERENCE.md says:
//! `python3 -m venv /tmp/ref && /tmp/ref/bin/pip install torch "yolov5==7.0.*" onnx onnxruntime "setuptools<81"`).

use std::process::Command;
use std::time::Instant;

use actyolo::model::build::Model;
use actyolo::model::config::ModelConfig;
use candle_core::{Device, Tensor};

const RUNS: usize = 20;

fn median_ms(mut f: impl FnMut()) -> (f64, f64, f64) {
    f(); // warm-up
    let mut times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    (times[RUNS / 2], times[0], times[RUNS - 1])
}

fn main() -> anyhow::Result<()> {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let mut model = Model::new(&ModelConfig::load("yolov5n.yaml")?, None, 0)?;
    model.fuse()?;
    let mut rows = Vec::new();
    for size in [640usize, 320] {
        let x = Tensor::rand(0f32, 1f32, (1, 3, size, size), &Device::Cpu)?;
        let (med, min, max) = median_ms(|| {
            model.predict(&x).expect("inference");
        });
        rows.push((size, med, min, max));
    }
    let python = std::env::var("ACTYOLO_PYTHON").unwrap_or_else(|_| "/tmp/ref/bin/python".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/torch_infer.py");
    let peers: Vec<(String, usize, f64)> = match Command::new(&python).arg(script).env("RUNS", RUNS.to_string()).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let p: Vec<&str> = l.split_whitespace().collect();
                Some((p.first()?.to_string(), p.get(1)?.parse().ok()?, p.get(2)?.parse().ok()?))
            })
            .collect(),
        _ => {
            eprintln!("(no PyTorch/onnxruntime: {python} not usable; Rust numbers only)");
            vec![]
        }
    };
    println!("| imgsz | actyolo median (min-max) ms | torch eager ms | onnxruntime ms | actyolo / torch | actyolo / onnxruntime |");
    println!("|---|---|---|---|---|---|");
    for (size, med, min, max) in rows {
        let peer = |name: &str| peers.iter().find(|(n, s, _)| n == name && *s == size).map(|p| p.2);
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let ratio = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}x", med / v));
        println!("| {size} | {med:.1} ({min:.1}-{max:.1}) | {} | {} | {} | {} |", fmt(peer("torch")), fmt(peer("onnxruntime")), ratio(peer("torch")), ratio(peer("onnxruntime")));
    }
    Ok(())
}
