// Temporary probe: time of a yolov5n forward+backward at batch 8, 320.
use actyolo::model::{build::Model, config::ModelConfig};
use candle_core::{DType, Device, Tensor};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let cfg = ModelConfig::load("yolov5n")?.with_nc(3);
    let model = Model::new(&cfg, None, 0)?;
    let x = Tensor::rand(0f32, 1f32, (8, 3, 320, 320), &Device::Cpu)?;
    for i in 0..3 {
        let t = Instant::now();
        let raw = model.forward(&x, true)?;
        let t_fwd = t.elapsed();
        let loss = raw.iter().map(|r| r.sqr().unwrap().mean_all().unwrap()).fold(Tensor::new(0f32, &Device::Cpu)?, |a, b| (a + b).unwrap());
        let grads = loss.backward()?;
        println!("iter {i}: forward {:?}, total {:?}, {} grads", t_fwd, t.elapsed(), model.params().iter().filter(|p| grads.get(p).is_some()).count());
    }
    let _ = DType::F32;
    let t = Instant::now();
    let x1 = Tensor::rand(0f32, 1f32, (1, 3, 640, 640), &Device::Cpu)?;
    let mut fused = Model::new(&cfg, None, 0)?; fused.fuse()?;
    for _ in 0..3 { let t = Instant::now(); fused.predict(&x1)?; println!("infer 640: {:?}", t.elapsed()); }
    let _ = t;
    Ok(())
}
