//! ultralytics 8's detection loss against tools/gen_v8_loss_fixtures.py (v8DetectionLoss of
//! ultralytics 8.4.190): the three loss items, the total, and its gradient with respect to
//! every raw logit, on three images with overlapping, tiny and edge boxes and an empty image.
//! Tolerances: items and total within 1e-4 relative; gradients within 1e-5 + 1e-3·|torch|
//! elementwise (the assigner's CIoU, softmax and sums round differently in the last bits).

use actyolo::train::loss::V8Gains;
use actyolo::train::loss_v8::V8Loss;
use candle_core::{Device, Tensor, Var};

const SIZES: [(usize, usize); 3] = [(8, 12), (4, 6), (2, 3)];
const STRIDES: [f64; 3] = [8.0, 16.0, 32.0];

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn loss_and_gradients_match_ultralytics() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/loss/v8.safetensors");
    let fx = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let (boxes, scores) = (&fx["boxes"], &fx["scores"]);
    let (bs, nc) = (boxes.dim(0).unwrap(), scores.dim(1).unwrap());
    // (bs, 4·16 + nc, A) → (bs, A, no): the raw maps' values, one variable for all levels.
    let joined = Tensor::cat(&[boxes, scores], 1)
        .unwrap()
        .transpose(1, 2)
        .unwrap()
        .contiguous()
        .unwrap();
    let no = joined.dim(2).unwrap();
    let var = Var::from_tensor(&joined).unwrap();
    let mut first = 0;
    let preds: Vec<Tensor> = SIZES
        .iter()
        .map(|&(ny, nx)| {
            let level = var.as_tensor().narrow(1, first, ny * nx).unwrap();
            first += ny * nx;
            level.reshape((bs, 1, ny, nx, no)).unwrap()
        })
        .collect();
    let gains = V8Gains {
        box_gain: 7.5,
        cls_gain: 0.5,
        dfl_gain: 1.5,
    };
    let loss = V8Loss::new(nc, 16, &STRIDES, gains);
    let (total, items) = loss.compute(&preds, &fx["targets"]).unwrap();

    let want = values(&fx["items"]);
    for (name, (got, want)) in ["box", "cls", "dfl"].iter().zip(items.iter().zip(&want)) {
        assert!(
            (got - want).abs() <= 1e-4 * want.abs(),
            "{name} loss: {got} against {want}"
        );
    }
    let (got, want) = (total.to_scalar::<f32>().unwrap(), values(&fx["total"])[0]);
    assert!(
        (got - want).abs() <= 1e-4 * want.abs(),
        "total: {got} against {want}"
    );

    let grads = total.backward().unwrap();
    let grad = grads.get(var.as_tensor()).unwrap();
    let want = Tensor::cat(&[&fx["grad.boxes"], &fx["grad.scores"]], 1)
        .unwrap()
        .transpose(1, 2)
        .unwrap();
    let (got, want) = (values(grad), values(&want.contiguous().unwrap()));
    let worst = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs() - (1e-5 + 1e-3 * w.abs()))
        .fold(f32::MIN, f32::max);
    assert!(worst <= 0.0, "gradient off by {worst} beyond the tolerance");
    assert!(
        want.iter().any(|w| w.abs() > 1e-3),
        "the fixture's gradient is not trivial"
    );
}
