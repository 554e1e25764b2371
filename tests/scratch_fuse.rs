use actyolo::model::weights::load_model;
use candle_core::{Device, Tensor};
#[test]
fn fuse_diff() {
    for w in ["silu-seed0", "hardswish-seed0", "sigmoid-seed0"] {
        let path =
            std::path::PathBuf::from(format!("/tmp/demo/a/runs/{w}/weights/best.safetensors"));
        let (m, _) = load_model(&path, None, None, None).unwrap();
        let (mut f, _) = load_model(&path, None, None, None).unwrap();
        f.fuse().unwrap();
        let x = Tensor::rand(0f32, 1f32, (2, 3, 128, 128), &Device::Cpu).unwrap();
        let a = m.predict(&x).unwrap().0;
        let b = f.predict(&x).unwrap().0;
        let d = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        println!("{w}: fused vs unfused max diff {d}");
    }
}
