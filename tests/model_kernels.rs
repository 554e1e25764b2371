//! The model kernels against candle's plain ops: GEMM convolution with and without bias
//! (forward, input, weight and bias gradients), padded max-pooling, nearest upsampling,
//! the loss's rows-and-column pick, and channel concatenation (exact). Tolerance: 1e-4
//! absolute + relative (f32 sums over up to a few thousand terms in a different order)
//! unless a test says otherwise.

mod tensor_support;

use actyolo::act::ActSpec;
use actyolo::ops::concat;
use actyolo::ops::conv2d::{
    conv2d, conv2d_bias_act, conv2d_bias_act_split, conv2d_bias_max_input, conv2d_with_bias,
    reads_input_parts, Conv2dParams,
};
use actyolo::ops::maxpool::max_pool2d;
use actyolo::ops::norm::{BatchNorm2d, BnConfig};
use actyolo::ops::pick::rows_and_column;
use actyolo::ops::upsample_nearest::upsample_nearest2d;
use candle_core::{Device, Tensor, Var, D};
use std::slice::from_ref;
use tensor_support::pattern as rand;

/// A tensor's elements in order, as f32.
trait Values {
    fn values(&self) -> Vec<f32>;
}

impl Values for Tensor {
    fn values(&self) -> Vec<f32> {
        self.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }
}

/// A tensor's elements as bit patterns, for exact comparisons.
fn bits(t: &Tensor) -> Vec<u32> {
    t.values().iter().map(|v| v.to_bits()).collect()
}

fn conv_params(stride: usize, padding: usize, dilation: usize, groups: usize) -> Conv2dParams {
    Conv2dParams {
        stride,
        padding,
        dilation,
        groups,
    }
}

fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}");
    let a = a.values();
    let b = b.values();
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
            "{what}[{i}]: {x} vs {y}"
        );
    }
}

/// Backpropagates `Σ ours · r` and `Σ plain · r` for one random `r` (seeded by `seed`) and
/// compares the gradients of each `(tensor, name)` in `wrt`.
fn assert_same_gradients(
    ours: &Tensor,
    plain: &Tensor,
    seed: u64,
    wrt: &[(&Tensor, &str)],
    what: &str,
) {
    assert_same_gradients_for(ours, plain, &rand(ours.dims(), seed), wrt, what);
}

/// As [`assert_same_gradients`], for the upstream gradient `up`.
fn assert_same_gradients_for(
    ours: &Tensor,
    plain: &Tensor,
    up: &Tensor,
    wrt: &[(&Tensor, &str)],
    what: &str,
) {
    let g_ours = (ours * up).unwrap().sum_all().unwrap().backward().unwrap();
    let g_plain = (plain * up).unwrap().sum_all().unwrap().backward().unwrap();
    for (t, name) in wrt {
        assert_close(
            g_ours.get(t).unwrap(),
            g_plain.get(t).unwrap(),
            &format!("{what} {name}"),
        );
    }
}

/// (input, weight, stride, padding, dilation, groups)
type ConvCase = ([usize; 4], [usize; 4], usize, usize, usize, usize);

#[test]
fn gemm_conv_equals_candle_conv_forward_and_backward() {
    let cases: [ConvCase; 23] = [
        ([2, 3, 17, 19], [8, 3, 6, 6], 2, 2, 1, 1), // YOLOv5's stem
        ([2, 8, 9, 9], [16, 8, 3, 3], 1, 1, 1, 1),
        ([2, 8, 9, 9], [16, 8, 3, 3], 2, 1, 1, 1),
        ([3, 16, 7, 5], [8, 16, 1, 1], 1, 0, 1, 1), // pointwise: no unfolding
        ([1, 6, 8, 8], [6, 1, 3, 3], 1, 1, 1, 6),   // depthwise (FReLU): direct kernels
        ([3, 5, 13, 11], [5, 1, 3, 3], 1, 1, 1, 5),
        ([2, 4, 9, 10], [4, 1, 5, 5], 1, 2, 1, 4),
        ([1, 2, 3, 1], [2, 1, 5, 5], 1, 2, 1, 2), // a window wider than the plane
        ([2, 4, 9, 9], [4, 1, 3, 3], 2, 1, 1, 4), // strided depthwise: the GEMM route
        // Depthwise rows wide enough for the 16-column blocks, with borders and remainders.
        ([2, 3, 21, 53], [3, 1, 3, 3], 1, 1, 1, 3),
        ([1, 4, 19, 40], [4, 1, 5, 5], 1, 2, 1, 4),
        ([1, 2, 10, 37], [2, 1, 3, 3], 1, 0, 1, 2), // unpadded: the output is narrower
        ([1, 2, 40, 50], [2, 1, 3, 3], 1, 1, 1, 2), // runs of sums ending inside a row
        ([2, 8, 8, 8], [12, 4, 3, 3], 1, 1, 1, 2),
        ([1, 4, 11, 11], [4, 4, 3, 3], 1, 2, 2, 1), // dilated
        ([2, 4, 6, 6], [5, 4, 1, 1], 2, 0, 1, 1),   // strided 1×1
        // Planes large enough to be cut into several row tiles, the last one short.
        ([1, 4, 40, 40], [6, 4, 3, 3], 1, 1, 1, 1),
        ([2, 64, 34, 34], [8, 64, 3, 3], 1, 1, 1, 1),
        ([2, 32, 64, 64], [8, 32, 3, 3], 2, 1, 1, 1),
        ([1, 8, 48, 47], [4, 8, 1, 1], 1, 0, 1, 1),
        // Widening 1×1 convs (fewer unfolded rows than outputs: dW as dY · colsᵀ, not
        // transposed), in several tiles, one of them grouped.
        ([1, 4, 48, 47], [24, 4, 1, 1], 1, 0, 1, 1),
        ([1, 4, 40, 40], [16, 2, 1, 1], 1, 0, 1, 2),
        // A weight gradient of more floats than one task sums across the images.
        ([2, 40, 12, 12], [48, 40, 3, 3], 1, 1, 1, 1),
    ];
    for (i, (xs, ws, s, p, d, g)) in cases.into_iter().enumerate() {
        let x = Var::from_tensor(&rand(&xs, i as u64)).unwrap();
        let w = Var::from_tensor(&rand(&ws, 100 + i as u64)).unwrap();
        let ours = conv2d(x.as_tensor(), w.as_tensor(), conv_params(s, p, d, g)).unwrap();
        let plain = x.as_tensor().conv2d(w.as_tensor(), p, s, d, g).unwrap();
        assert_close(&ours, &plain, &format!("case {i} forward"));
        assert_same_gradients(
            &ours,
            &plain,
            7,
            &[(x.as_tensor(), "dx"), (w.as_tensor(), "dw")],
            &format!("case {i}"),
        );
    }
}

#[test]
fn conv_with_bias_equals_candle_conv_plus_broadcast_bias() {
    // Detect's 1×1 head, and a strided, grouped 3×3.
    let cases = [
        ([2, 8, 5, 6], [21, 8, 1, 1], conv_params(1, 0, 1, 1)),
        ([2, 6, 7, 7], [4, 3, 3, 3], conv_params(2, 1, 1, 2)),
    ];
    for (i, (xs, ws, params)) in cases.into_iter().enumerate() {
        let x = Var::from_tensor(&rand(&xs, 40 + i as u64)).unwrap();
        let w = Var::from_tensor(&rand(&ws, 50 + i as u64)).unwrap();
        let b = Var::from_tensor(&rand(&[ws[0]], 60 + i as u64)).unwrap();
        let ours = conv2d_with_bias(x.as_tensor(), w.as_tensor(), b.as_tensor(), params).unwrap();
        let plain = x
            .as_tensor()
            .conv2d(
                w.as_tensor(),
                params.padding,
                params.stride,
                1,
                params.groups,
            )
            .unwrap();
        let plain = plain
            .broadcast_add(&b.as_tensor().reshape((1, ws[0], 1, 1)).unwrap())
            .unwrap();
        assert_close(&ours, &plain, &format!("case {i} forward"));
        assert_same_gradients(
            &ours,
            &plain,
            70 + i as u64,
            &[
                (x.as_tensor(), "dx"),
                (w.as_tensor(), "dw"),
                (b.as_tensor(), "dbias"),
            ],
            &format!("case {i}"),
        );
    }
}

#[test]
fn fused_inference_conv_equals_conv_bias_then_activation() {
    // One image cut into several tiles, a batch of small ones, and a pointwise conv.
    let cases = [
        ([1, 8, 44, 40], [16, 8, 3, 3], conv_params(1, 1, 1, 1)),
        ([3, 6, 9, 9], [4, 3, 3, 3], conv_params(2, 1, 1, 2)),
        ([1, 16, 50, 30], [8, 16, 1, 1], conv_params(1, 0, 1, 1)),
        // The unfolding-free kernel's cases: bands of rows (several per image here), the
        // last one short; a channel count that leaves a partial block of 8; odd sizes at
        // stride 2; YOLOv5's 6×6 stem; a strided 1×1; an input read in place whose
        // positions are no multiple of the 48 per tile; output rows narrower than a vector.
        ([2, 16, 70, 66], [24, 16, 3, 3], conv_params(1, 1, 1, 1)),
        ([1, 8, 67, 45], [21, 8, 3, 3], conv_params(2, 1, 1, 1)),
        ([1, 3, 130, 98], [16, 3, 6, 6], conv_params(2, 2, 1, 1)),
        ([2, 12, 15, 17], [10, 12, 1, 1], conv_params(2, 0, 1, 1)),
        ([3, 24, 13, 11], [19, 24, 1, 1], conv_params(1, 0, 1, 1)),
        ([1, 128, 5, 7], [40, 128, 3, 3], conv_params(1, 1, 1, 1)),
        ([1, 5, 9, 9], [8, 5, 5, 5], conv_params(1, 0, 1, 1)),
        // Padded: a 5×5 reaches two rows and columns into the padding; planes narrower and
        // shorter than the padding's reach, so one vector spans several rows.
        ([2, 4, 19, 23], [8, 4, 5, 5], conv_params(1, 2, 1, 1)),
        ([2, 4, 3, 2], [8, 4, 3, 3], conv_params(1, 1, 1, 1)),
        ([1, 3, 2, 3], [5, 3, 5, 5], conv_params(1, 2, 1, 1)),
        // Depthwise (YOLO11's DWConv): the activation on each run of sums.
        ([1, 6, 30, 50], [6, 1, 3, 3], conv_params(1, 1, 1, 6)),
    ];
    let acts = [None, Some("silu"), Some("relu")];
    for (i, (xs, ws, params)) in cases.into_iter().enumerate() {
        let (x, w, b) = (
            rand(&xs, 80 + i as u64),
            rand(&ws, 90 + i as u64),
            rand(&[ws[0]], 95 + i as u64),
        );
        let plain = x
            .conv2d(&w, params.padding, params.stride, 1, params.groups)
            .unwrap();
        let plain = plain
            .broadcast_add(&b.reshape((1, ws[0], 1, 1)).unwrap())
            .unwrap();
        for act in acts {
            let f = act.map(|s| ActSpec::parse(s).unwrap().elementwise().unwrap());
            let fused = conv2d_bias_act(from_ref(&x), &w, &b, params, f.as_ref(), None).unwrap();
            let expected = match act {
                None => plain.clone(),
                Some("silu") => candle_nn::ops::silu(&plain).unwrap(),
                Some(_) => plain.relu().unwrap(),
            };
            assert_close(&fused, &expected, &format!("case {i} {act:?}"));
            // A residual (Bottleneck's shortcut) added as the tiles are stored: bit for bit
            // the output above plus it, on each route (unfolding-free, GEMM, depthwise).
            let r = rand(fused.dims(), 97 + i as u64);
            let plus = conv2d_bias_act(from_ref(&x), &w, &b, params, f.as_ref(), Some(&r)).unwrap();
            let expected = (&r + &fused).unwrap();
            assert_eq!(
                bits(&plus),
                bits(&expected),
                "case {i} {act:?} with a residual"
            );
        }
    }
    // With a weight that needs a gradient it is the differentiable composition.
    let (x, w) = (
        rand(&[1, 3, 8, 8], 1),
        Var::from_tensor(&rand(&[4, 3, 3, 3], 2)).unwrap(),
    );
    let params = conv_params(1, 1, 1, 1);
    let y = conv2d_bias_act(
        from_ref(&x),
        w.as_tensor(),
        &rand(&[4], 3),
        params,
        ActSpec::silu().elementwise().as_ref(),
        None,
    )
    .unwrap();
    assert!(y
        .sum_all()
        .unwrap()
        .backward()
        .unwrap()
        .get(w.as_tensor())
        .is_some());
}

#[test]
fn conv_of_input_parts_equals_conv_of_their_concatenation_bit_for_bit() {
    // (part shapes, weight shape, params): pointwise convs, which read the parts where they
    // lie (SPPF's four parts, C3's two, a batch), and a 3×3 and a strided 1×1, which join
    // them first.
    let cases = [
        (
            vec![
                [1, 8, 20, 20],
                [1, 8, 20, 20],
                [1, 8, 20, 20],
                [1, 8, 20, 20],
            ],
            [16, 32, 1, 1],
            conv_params(1, 0, 1, 1),
        ),
        (
            vec![[2, 5, 13, 11], [2, 3, 13, 11], [2, 9, 13, 11]],
            [19, 17, 1, 1],
            conv_params(1, 0, 1, 1),
        ),
        (
            vec![[1, 6, 15, 17], [1, 10, 15, 17]],
            [12, 16, 3, 3],
            conv_params(1, 1, 1, 1),
        ),
        (
            vec![[1, 4, 12, 12], [1, 4, 12, 12]],
            [8, 8, 1, 1],
            conv_params(2, 0, 1, 1),
        ),
    ];
    let silu = ActSpec::silu().elementwise();
    for (i, (part_shapes, ws, params)) in cases.into_iter().enumerate() {
        let parts: Vec<Tensor> = part_shapes
            .iter()
            .enumerate()
            .map(|(j, dims)| rand(dims, 200 + 10 * i as u64 + j as u64))
            .collect();
        let (w, b) = (rand(&ws, 300 + i as u64), rand(&[ws[0]], 310 + i as u64));
        let joined = Tensor::cat(&parts, 1).unwrap();
        let expected =
            conv2d_bias_act(from_ref(&joined), &w, &b, params, silu.as_ref(), None).unwrap();
        let ours = conv2d_bias_act(&parts, &w, &b, params, silu.as_ref(), None).unwrap();
        assert_eq!(bits(&ours), bits(&expected), "case {i}");
        // With a residual added as the tiles are stored, and no activation.
        let r = rand(expected.dims(), 320 + i as u64);
        let expected = conv2d_bias_act(from_ref(&joined), &w, &b, params, None, Some(&r)).unwrap();
        let ours = conv2d_bias_act(&parts, &w, &b, params, None, Some(&r)).unwrap();
        assert_eq!(bits(&ours), bits(&expected), "case {i} with a residual");
    }
    // A part that is a view of another tensor's channels (C2f's halves of a batch: not
    // contiguous), beside a whole one.
    let whole = rand(&[2, 12, 9, 10], 330);
    let parts = [whole.narrow(1, 4, 6).unwrap(), rand(&[2, 3, 9, 10], 331)];
    let (w, b) = (rand(&[7, 9, 1, 1], 332), rand(&[7], 333));
    let params = conv_params(1, 0, 1, 1);
    let joined = Tensor::cat(&parts, 1).unwrap();
    assert_eq!(
        bits(&conv2d_bias_act(&parts, &w, &b, params, silu.as_ref(), None).unwrap()),
        bits(&conv2d_bias_act(from_ref(&joined), &w, &b, params, silu.as_ref(), None).unwrap()),
        "a view as a part"
    );
    // Parts that do not join (another plane) are refused, naming the shapes.
    let parts = [rand(&[1, 4, 8, 8], 334), rand(&[1, 4, 8, 9], 335)];
    let (w, b) = (rand(&[4, 8, 1, 1], 336), rand(&[4], 337));
    let err = conv2d_bias_act(&parts, &w, &b, params, None, None).unwrap_err();
    assert!(err.to_string().contains("[1, 4, 8, 9]"), "{err}");
    // A part that needs a gradient: the composition over the concatenation, which passes
    // it on.
    let tracked = Var::from_tensor(&rand(&[1, 4, 8, 8], 338)).unwrap();
    let parts = [rand(&[1, 4, 8, 8], 339), tracked.as_tensor().clone()];
    let y = conv2d_bias_act(&parts, &w, &b, params, silu.as_ref(), None).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(tracked.as_tensor()).is_some());
}

#[test]
fn stacked_convs_with_split_output_equal_each_conv_bit_for_bit() {
    // (input parts, each conv's output channels): C3's cv1 and cv2 of one image, and of a
    // batch in two parts, with channel blocks of 8 that straddle the convs.
    let cases = [
        (vec![[1, 32, 20, 20]], vec![16, 16]),
        (vec![[3, 5, 13, 11], [3, 9, 13, 11]], vec![5, 11, 4]),
    ];
    let silu = ActSpec::silu().elementwise();
    let params = conv_params(1, 0, 1, 1);
    for (i, (part_shapes, splits)) in cases.into_iter().enumerate() {
        let seed = 400 + 10 * i as u64;
        let parts: Vec<Tensor> = part_shapes
            .iter()
            .enumerate()
            .map(|(j, dims)| rand(dims, seed + j as u64))
            .collect();
        let c: usize = part_shapes.iter().map(|dims| dims[1]).sum();
        let co: usize = splits.iter().sum();
        let (w, b) = (rand(&[co, c, 1, 1], seed + 5), rand(&[co], seed + 6));
        let split = conv2d_bias_act_split(&parts, &w, &b, params, silu.as_ref(), &splits);
        let Some(ours) = split.unwrap() else {
            // Only the unfolding-free kernel (AVX-512) computes them as one; elsewhere the
            // caller runs the convs one by one.
            assert!(
                !reads_input_parts(&Device::Cpu),
                "case {i}: None on this CPU"
            );
            continue;
        };
        assert_eq!(ours.len(), splits.len(), "case {i}");
        let mut first = 0;
        for (j, (y, &channels)) in ours.iter().zip(&splits).enumerate() {
            let (wj, bj) = (
                w.narrow(0, first, channels).unwrap(),
                b.narrow(0, first, channels).unwrap(),
            );
            let expected = conv2d_bias_act(&parts, &wj, &bj, params, silu.as_ref(), None).unwrap();
            assert_eq!(y.dims(), expected.dims(), "case {i}, conv {j}");
            assert_eq!(bits(y), bits(&expected), "case {i}, conv {j}");
            first += channels;
        }
    }
    // A 3×3 conv does not read its input once for several: None, and the caller runs them.
    let x = rand(&[1, 4, 8, 8], 430);
    let (w, b) = (rand(&[6, 4, 3, 3], 431), rand(&[6], 432));
    let split = conv2d_bias_act_split(from_ref(&x), &w, &b, conv_params(1, 1, 1, 1), None, &[3, 3]);
    assert!(split.unwrap().is_none());
}

#[test]
fn fused_frelu_equals_depthwise_conv_bias_then_maximum() {
    // FReLU's funnels: 3×3 and 5×5 depthwise, same size; narrow and wide planes, small and
    // large ones.
    let cases = [
        ([2, 5, 23, 41], [5, 1, 3, 3], conv_params(1, 1, 1, 5)),
        ([1, 3, 9, 70], [3, 1, 5, 5], conv_params(1, 2, 1, 3)),
        ([1, 2, 4, 5], [2, 1, 3, 3], conv_params(1, 1, 1, 2)),
        ([2, 3, 37, 61], [3, 1, 3, 3], conv_params(1, 1, 1, 3)), // several runs of sums
    ];
    for (i, (xs, ws, params)) in cases.into_iter().enumerate() {
        let (x, w, b) = (
            rand(&xs, 70 + i as u64),
            rand(&ws, 75 + i as u64),
            rand(&[ws[0]], 78 + i as u64),
        );
        let funnel = x
            .conv2d(&w, params.padding, params.stride, 1, params.groups)
            .unwrap()
            .broadcast_add(&b.reshape((1, ws[0], 1, 1)).unwrap())
            .unwrap();
        let plain = x.maximum(&funnel).unwrap();
        let fused = conv2d_bias_max_input(&x, &w, &b, params)
            .unwrap()
            .expect("a depthwise same-size conv is fused");
        assert_close(&fused, &plain, &format!("case {i}"));
    }
    // torch's max: a NaN input stays NaN (candle's maximum would pick the other side).
    let mut values = rand(&[1, 2, 6, 20], 5).values();
    values[37] = f32::NAN;
    let x = Tensor::from_vec(values, (1, 2, 6, 20), &Device::Cpu).unwrap();
    let (w, b) = (rand(&[2, 1, 3, 3], 6), rand(&[2], 7));
    let fused = conv2d_bias_max_input(&x, &w, &b, conv_params(1, 1, 1, 2))
        .unwrap()
        .unwrap();
    assert!(fused.values()[37].is_nan());
    // Not fused: a strided or dense conv, or a weight that needs a gradient.
    let x = rand(&[1, 4, 8, 8], 8);
    let strided = conv2d_bias_max_input(
        &x,
        &rand(&[4, 1, 3, 3], 9),
        &b.repeat(2).unwrap(),
        conv_params(2, 1, 1, 4),
    );
    assert!(strided.unwrap().is_none());
    let dense = conv2d_bias_max_input(
        &x,
        &rand(&[4, 4, 3, 3], 9),
        &b.repeat(2).unwrap(),
        conv_params(1, 1, 1, 1),
    );
    assert!(dense.unwrap().is_none());
    let w = Var::from_tensor(&rand(&[4, 1, 3, 3], 9)).unwrap();
    let tracked = conv2d_bias_max_input(
        &x,
        w.as_tensor(),
        &b.repeat(2).unwrap(),
        conv_params(1, 1, 1, 4),
    );
    assert!(tracked.unwrap().is_none());
}

#[test]
fn detect_head_conv_equals_conv_reshape_permute() {
    use actyolo::ops::head_conv::head_conv;
    // Three anchors of 7 outputs; planes of 1100 cells span several forward tiles.
    let (na, no) = (3, 7);
    for (i, xs) in [[2, 5, 4, 6], [1, 8, 44, 25]].into_iter().enumerate() {
        let x = Var::from_tensor(&rand(&xs, 300 + i as u64)).unwrap();
        let w = Var::from_tensor(&rand(&[na * no, xs[1], 1, 1], 310 + i as u64)).unwrap();
        let b = Var::from_tensor(&rand(&[na * no], 320 + i as u64)).unwrap();
        let ours = head_conv(x.as_tensor(), w.as_tensor(), b.as_tensor(), na).unwrap();
        let params = conv_params(1, 0, 1, 1);
        let plain = conv2d_with_bias(x.as_tensor(), w.as_tensor(), b.as_tensor(), params).unwrap();
        let plain = plain
            .reshape((xs[0], na, no, xs[2], xs[3]))
            .unwrap()
            .permute((0, 1, 3, 4, 2))
            .unwrap()
            .contiguous()
            .unwrap();
        assert_close(&ours, &plain, &format!("case {i} forward"));
        let wrt = [
            (x.as_tensor(), "dx"),
            (w.as_tensor(), "dw"),
            (b.as_tensor(), "dbias"),
        ];
        assert_same_gradients(&ours, &plain, 330 + i as u64, &wrt, &format!("case {i}"));
        // The loss's gradient: the objectness output (4) in every cell, the other outputs
        // only in a few cells (every 37th); the backward's sparse route.
        let dense = rand(ours.dims(), 340 + i as u64).values();
        let sparse: Vec<f32> = dense
            .chunks_exact(no)
            .enumerate()
            .flat_map(|(row, values)| {
                let cell = row % (xs[2] * xs[3]);
                values.iter().enumerate().map(
                    move |(o, &v)| {
                        if o == 4 || cell % 37 == 3 {
                            v
                        } else {
                            0.0
                        }
                    },
                )
            })
            .collect();
        let up = Tensor::from_vec(sparse, ours.dims(), &Device::Cpu).unwrap();
        assert_same_gradients_for(&ours, &plain, &up, &wrt, &format!("case {i}, sparse"));
    }
}

#[test]
fn no_input_gradient_for_a_constant_input() {
    let x = rand(&[1, 3, 8, 8], 1);
    let w = Var::from_tensor(&rand(&[4, 3, 3, 3], 2)).unwrap();
    let y = conv2d(&x, w.as_tensor(), conv_params(1, 1, 1, 1)).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert!(grads.get(&x).is_none());
    assert!(grads.get(w.as_tensor()).is_some());
}

/// Max-pool (kernel, stride, padding): SPPF's k5 s1 p2, SPPCSPC's k13 s1 p6, a strided
/// padded window and yolov7's MP (k2 s2).
const POOLINGS: [(usize, usize, usize); 4] = [(5, 1, 2), (13, 1, 6), (3, 2, 1), (2, 2, 0)];

#[test]
fn padded_max_pool_equals_composition() {
    // The plain composition: pad with -inf, then candle's unpadded pooling (forward);
    // its backward needs kernel == stride, so the gradient is checked by hand: each
    // output's gradient lands on the first maximum of its window.
    let x = Var::from_tensor(&rand(&[2, 3, 7, 6], 3)).unwrap();
    let neg = |dims: &[usize]| Tensor::full(f32::NEG_INFINITY, dims, &Device::Cpu).unwrap();
    // Every pooling of `POOLINGS` on planes larger and smaller than the window, and one
    // wider than a vector.
    for input in [
        x.as_tensor().clone(),
        rand(&[1, 2, 2, 3], 4),
        rand(&[1, 3, 20, 23], 5),
    ] {
        let (n, c, h, w) = input.dims4().unwrap();
        for (k, s, p) in POOLINGS {
            if h + 2 * p < k || w + 2 * p < k {
                continue;
            }
            let ours = max_pool2d(&input, k, s, p).unwrap();
            let padded =
                Tensor::cat(&[neg(&[n, c, h, p]), input.clone(), neg(&[n, c, h, p])], 3).unwrap();
            let padded = Tensor::cat(
                &[
                    neg(&[n, c, p, w + 2 * p]),
                    padded,
                    neg(&[n, c, p, w + 2 * p]),
                ],
                2,
            )
            .unwrap();
            let plain = padded.max_pool2d_with_stride(k, s).unwrap();
            assert_close(
                &ours,
                &plain,
                &format!("max-pool forward {h}×{w} k{k} s{s} p{p}"),
            );
        }
    }
    // A NaN wins its windows, as in torch.
    let mut values = vec![0f32; 25];
    values[12] = f32::NAN;
    let pooled = max_pool2d(
        &Tensor::from_vec(values, (1, 1, 5, 5), &Device::Cpu).unwrap(),
        3,
        1,
        1,
    )
    .unwrap();
    let nans = pooled.values().iter().filter(|v| v.is_nan()).count();
    assert_eq!(nans, 9, "the 3×3 windows around the NaN");
    // The gradient, each output's weighted by a distinct factor so that a misrouted one
    // shows: on random values, on values of four levels (ties everywhere: the first
    // maximum in scan order takes it), and with NaNs (the window's last NaN takes it).
    let levels = rand(&[1, 2, 9, 8], 6)
        .affine(2.0, 2.0)
        .unwrap()
        .floor()
        .unwrap();
    let mut with_nans = rand(&[1, 1, 6, 7], 7).values();
    with_nans[9] = f32::NAN;
    with_nans[11] = f32::NAN;
    let with_nans = Tensor::from_vec(with_nans, (1, 1, 6, 7), &Device::Cpu).unwrap();
    for input in [x.as_tensor().clone(), levels, with_nans] {
        let (n, c, h, w) = input.dims4().unwrap();
        let xs = input.values();
        let x = Var::from_tensor(&input).unwrap();
        for (k, s, p) in POOLINGS {
            if h + 2 * p < k || w + 2 * p < k {
                continue;
            }
            let pooled = max_pool2d(x.as_tensor(), k, s, p).unwrap();
            let weights = rand(pooled.dims(), 8);
            let grads = (&pooled * &weights)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let dx = grads.get(x.as_tensor()).unwrap().values();
            let (_, _, oh, ow) = pooled.dims4().unwrap();
            let weights = weights.values();
            let mut expected = vec![0f32; xs.len()];
            for plane in 0..n * c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let (y0, x0) = (
                            (oy * s) as isize - p as isize,
                            (ox * s) as isize - p as isize,
                        );
                        let mut best = (f32::NEG_INFINITY, None);
                        for y in y0.max(0)..(y0 + k as isize).min(h as isize) {
                            for xx in x0.max(0)..(x0 + k as isize).min(w as isize) {
                                let i = plane * h * w + (y as usize) * w + xx as usize;
                                // torch's rule: a greater value or any NaN takes the window.
                                if xs[i] > best.0 || xs[i].is_nan() || best.1.is_none() {
                                    best = (xs[i], Some(i));
                                }
                            }
                        }
                        expected[best.1.unwrap()] += weights[(plane * oh + oy) * ow + ox];
                    }
                }
            }
            assert_eq!(dx, expected, "max-pool gradient {h}×{w} k{k} s{s} p{p}");
        }
    }
}

/// BatchNorm in training as candle composes it: batch mean and biased variance.
fn batch_norm_plain(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Tensor {
    let c = w.elem_count();
    let mean = x.mean_keepdim((0, 2, 3)).unwrap();
    let centred = x.broadcast_sub(&mean).unwrap();
    let var = centred.sqr().unwrap().mean_keepdim((0, 2, 3)).unwrap();
    let inv = (var + eps).unwrap().sqrt().unwrap().recip().unwrap();
    centred
        .broadcast_mul(&inv)
        .unwrap()
        .broadcast_mul(&w.reshape((1, c, 1, 1)).unwrap())
        .unwrap()
        .broadcast_add(&b.reshape((1, c, 1, 1)).unwrap())
        .unwrap()
}

#[test]
fn fused_batch_norm_activation_equals_composition_in_training() {
    use actyolo::act::ActSpec;
    use actyolo::ops::batchnorm::batch_norm_act;
    // Planes shorter than a summation block of 256 values, and longer (with a remainder).
    let cases = [
        (None, [3, 5, 6, 7]),
        (Some("silu"), [3, 5, 6, 7]),
        (Some("silu"), [2, 5, 20, 19]),
        (Some("nn.LeakyReLU(0.1)"), [3, 5, 6, 7]),
        (Some("mish"), [2, 5, 20, 19]),
        (Some("hardswish"), [3, 5, 6, 7]),
    ];
    for (spec, shape) in cases {
        let p = spec.map(|s| ActSpec::parse(s).unwrap().elementwise().unwrap());
        let x = Var::from_tensor(&(rand(&shape, 11) * 2.0).unwrap()).unwrap();
        let w = Var::from_tensor(&(rand(&[5], 12) + 1.0).unwrap()).unwrap();
        let b = Var::from_tensor(&rand(&[5], 13)).unwrap();
        let (ours, stats) = batch_norm_act(
            x.as_tensor(),
            w.as_tensor(),
            b.as_tensor(),
            1e-3,
            None,
            p.clone(),
        )
        .unwrap();
        let bn = batch_norm_plain(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-3);
        let plain = match &p {
            Some(p) => actyolo::ops::pointwise::apply(p, &bn).unwrap(),
            None => bn,
        };
        assert_close(&ours, &plain, &format!("{spec:?} forward"));
        let mean = x.as_tensor().mean_keepdim((0, 2, 3)).unwrap().values();
        for (a, b) in stats.mean.iter().zip(&mean) {
            assert!((a - b).abs() < 1e-5, "{spec:?} batch mean");
        }
        assert_same_gradients(
            &ours,
            &plain,
            14,
            &[
                (x.as_tensor(), "dx"),
                (w.as_tensor(), "dweight"),
                (b.as_tensor(), "dbias"),
            ],
            &format!("{spec:?}"),
        );
    }
}

#[test]
fn conv_batch_norm_activation_op_equals_the_composition_in_training() {
    use actyolo::ops::conv2d_bn::conv_batch_norm_act;
    // A 3×3 conv with a fused SiLU, a strided one with LeakyReLU, and a pointwise one
    // with no activation (as before an unfused activation module).
    let cases = [
        (
            [2, 4, 12, 11],
            [6, 4, 3, 3],
            conv_params(1, 1, 1, 1),
            Some("silu"),
        ),
        (
            [3, 4, 9, 9],
            [8, 4, 3, 3],
            conv_params(2, 1, 1, 1),
            Some("nn.LeakyReLU(0.1)"),
        ),
        ([2, 6, 7, 5], [5, 6, 1, 1], conv_params(1, 0, 1, 1), None),
    ];
    for (i, (xs, ws, params, spec)) in cases.into_iter().enumerate() {
        let act = spec.map(|s| ActSpec::parse(s).unwrap().elementwise().unwrap());
        let seed = 200 + 10 * i as u64;
        let x = Var::from_tensor(&rand(&xs, seed)).unwrap();
        let w = Var::from_tensor(&rand(&ws, seed + 1)).unwrap();
        let gamma = Var::from_tensor(&(rand(&[ws[0]], seed + 2) + 1.0).unwrap()).unwrap();
        let beta = Var::from_tensor(&rand(&[ws[0]], seed + 3)).unwrap();
        let bn_params = Tensor::cat(&[gamma.as_tensor(), beta.as_tensor()], 0).unwrap();
        let (ours, stats) = conv_batch_norm_act(
            x.as_tensor(),
            w.as_tensor(),
            params,
            &bn_params,
            1e-3,
            act.clone(),
        )
        .unwrap();
        let conv = x
            .as_tensor()
            .conv2d(w.as_tensor(), params.padding, params.stride, 1, 1)
            .unwrap();
        let bn = batch_norm_plain(&conv, gamma.as_tensor(), beta.as_tensor(), 1e-3);
        let plain = act.as_ref().map_or(bn.clone(), |p| {
            actyolo::ops::pointwise::apply(p, &bn).unwrap()
        });
        assert_close(&ours, &plain, &format!("case {i} forward"));
        let mean = conv.mean_keepdim((0, 2, 3)).unwrap().values();
        let var = conv
            .broadcast_sub(&conv.mean_keepdim((0, 2, 3)).unwrap())
            .unwrap()
            .sqr()
            .unwrap()
            .mean_keepdim((0, 2, 3))
            .unwrap();
        let var = var.values();
        for c in 0..ws[0] {
            assert!(
                (stats.mean[c] - mean[c]).abs() < 1e-5
                    && (stats.var[c] - var[c]).abs() < 1e-5 * (1.0 + var[c]),
                "case {i} batch statistics of channel {c}"
            );
        }
        assert_same_gradients(
            &ours,
            &plain,
            seed + 4,
            &[
                (x.as_tensor(), "dx"),
                (w.as_tensor(), "dw"),
                (gamma.as_tensor(), "dgamma"),
                (beta.as_tensor(), "dbeta"),
            ],
            &format!("case {i}"),
        );
    }
}

#[test]
fn nearest_upsample_equals_candle_forward_and_backward() {
    for (i, (dims, scale)) in [([2, 3, 5, 7], 2), ([1, 4, 3, 3], 3), ([2, 2, 4, 6], 1)]
        .into_iter()
        .enumerate()
    {
        let x = Var::from_tensor(&rand(&dims, 20 + i as u64)).unwrap();
        let ours = upsample_nearest2d(x.as_tensor(), scale).unwrap();
        let plain = x
            .as_tensor()
            .upsample_nearest2d(dims[2] * scale, dims[3] * scale)
            .unwrap();
        assert_eq!(ours.dims(), plain.dims(), "case {i}");
        assert_eq!(ours.values(), plain.values(), "case {i} forward");
        let up = rand(ours.dims(), 30 + i as u64);
        let g_ours = (&ours * &up)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g_plain = (&plain * &up)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (a, b) = (
            g_ours.get(x.as_tensor()).unwrap().values(),
            g_plain.get(x.as_tensor()).unwrap().values(),
        );
        for (j, (a, b)) in a.iter().zip(&b).enumerate() {
            // Relative to the value, or absolute below 1 (sums of s² terms in another order).
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "case {i} dx[{j}]: {a} vs {b}"
            );
        }
    }
}

#[test]
fn rows_and_column_equal_index_select_and_narrow_forward_and_backward() {
    // (dims, rows, column): a Detect level's maps with a row picked twice (two positives in
    // one cell and anchor) and the first and last rows; no rows; a plain matrix.
    let cases: [(&[usize], &[usize], usize); 3] = [
        (&[2, 3, 4, 5, 7], &[0, 17, 17, 119, 40], 4),
        (&[1, 3, 2, 2, 85], &[], 4),
        (&[6, 9], &[5, 0, 5], 0),
    ];
    for (i, (dims, rows, column)) in cases.into_iter().enumerate() {
        let what = format!("case {i}");
        let x = Var::from_tensor(&rand(dims, 40 + i as u64)).unwrap();
        let (picked, objectness) = rows_and_column(x.as_tensor(), rows, column).unwrap();
        let no = dims[dims.len() - 1];
        let index: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let plain_picked = x
            .as_tensor()
            .reshape(((), no))
            .unwrap()
            .index_select(&Tensor::new(index, &Device::Cpu).unwrap(), 0)
            .unwrap();
        let plain_objectness = x
            .as_tensor()
            .narrow(D::Minus1, column, 1)
            .unwrap()
            .squeeze(D::Minus1)
            .unwrap();
        assert_eq!(picked.dims(), plain_picked.dims(), "{what}");
        assert_eq!(objectness.dims(), plain_objectness.dims(), "{what}");
        assert_eq!(bits(&picked), bits(&plain_picked), "{what} rows");
        assert_eq!(bits(&objectness), bits(&plain_objectness), "{what} column");
        let (up_rows, up_column) = (
            rand(picked.dims(), 50 + i as u64),
            rand(objectness.dims(), 60 + i as u64),
        );
        let loss = |rows: &Tensor, column: &Tensor| {
            let rows = (rows * &up_rows).unwrap().sum_all().unwrap();
            (rows + (column * &up_column).unwrap().sum_all().unwrap()).unwrap()
        };
        let ours = loss(&picked, &objectness).backward().unwrap();
        let plain = loss(&plain_picked, &plain_objectness).backward().unwrap();
        let (a, b) = (
            ours.get(x.as_tensor()).unwrap().values(),
            plain.get(x.as_tensor()).unwrap().values(),
        );
        assert_eq!(a.len(), b.len(), "{what}");
        for (j, (a, b)) in a.iter().zip(&b).enumerate() {
            // Up to three terms (a row picked twice, and the column) summed in another order.
            assert!(
                (a - b).abs() <= 1e-6 * b.abs().max(1.0),
                "{what} dx[{j}]: {a} vs {b}"
            );
        }
    }
}

#[test]
fn a_folded_batch_norm_gives_constants_so_that_inference_runs_fused() {
    // The running statistics are variables: a fold that kept them in the graph made the
    // fused weights look trainable, and every Conv of a fused model ran the unfused
    // composition (convolution, then the activation as a pass of its own).
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu);
    let bn = BatchNorm2d::new(4, BnConfig::YOLO, vb).unwrap();
    let weight = Var::from_tensor(&rand(&[4, 3, 3, 3], 5)).unwrap();
    let (w, b) = bn.fold(weight.as_tensor()).unwrap();
    assert!(!w.track_op() && !b.track_op());
}

#[test]
fn channel_concat_equals_candle_cat_bit_for_bit() {
    // A batch of three with planes of different depths (SPPF's four, C3's two); planes
    // smaller and larger than one task's share; a plane with no positions.
    let cases: [&[[usize; 4]]; 4] = [
        &[[3, 4, 5, 7], [3, 1, 5, 7], [3, 6, 5, 7], [3, 2, 5, 7]],
        &[[1, 16, 80, 80], [1, 16, 80, 80]],
        &[[2, 3, 130, 129], [2, 5, 130, 129]],
        &[[2, 3, 0, 4], [2, 1, 0, 4]],
    ];
    for (i, dims) in cases.into_iter().enumerate() {
        let xs: Vec<Tensor> = dims
            .iter()
            .enumerate()
            .map(|(j, d)| rand(d, 10 * i as u64 + j as u64))
            .collect();
        let ours = concat::channels(&xs).unwrap();
        let plain = Tensor::cat(&xs, 1).unwrap();
        assert_eq!(ours.dims(), plain.dims(), "case {i}");
        assert_eq!(bits(&ours), bits(&plain), "case {i}");
    }
    // Inputs that record a backward, or are not contiguous, take candle's path: the
    // gradient reaches each input, and a transposed view joins as its values.
    let a = Var::from_tensor(&rand(&[1, 2, 3, 3], 1)).unwrap();
    let b = rand(&[1, 3, 3, 3], 2);
    let y = concat::channels(&[a.as_tensor(), &b]).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(grads.get(a.as_tensor()).unwrap().values(), vec![1.0; 18]);
    let t = rand(&[1, 2, 3, 3], 3).transpose(2, 3).unwrap();
    let y = concat::channels(&[&t, &b]).unwrap();
    assert_eq!(y.values(), Tensor::cat(&[&t, &b], 1).unwrap().values());
    // Shapes that do not join get candle's error.
    assert!(concat::channels(&[&b, &rand(&[1, 3, 4, 3], 4)]).is_err());
}
