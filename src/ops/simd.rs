//! What makes the kernels' inner loops fast: compiled for the widest vector unit, and
//! sums in independent lanes.

/// Elements per rayon task: large enough to amortise scheduling, small enough to
/// split a P3-sized map across both cores.
pub const CHUNK: usize = 1 << 14;

/// Runs `body` compiled for the widest vector unit this CPU has. The portable x86-64
/// build assumes only SSE2 (4 f32 lanes); loops inlined into `body` are vectorised again
/// here for AVX2 (8) and AVX-512 (16). The arithmetic is the same on every path, so are
/// the results. Write the loop in `body` as a `for` loop: an iterator's `for_each` may stay
/// a call to a function compiled without the features (GELU's ran 4 lanes wide so).
#[inline(always)]
pub fn widest_simd<T>(body: impl FnOnce() -> T) -> T {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features `avx512` is compiled for.
            return unsafe { avx512(body) };
        }
        if is_x86_feature_detected!("avx2") {
            // SAFETY: as above, for `avx2`.
            return unsafe { avx2(body) };
        }
    }
    body()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn avx512<T>(body: impl FnOnce() -> T) -> T {
    body()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn avx2<T>(body: impl FnOnce() -> T) -> T {
    body()
}

/// Elements per block, and f32 lanes (one AVX-512 register) that [`lane_sums`] adds.
const LANES: usize = 16;
const BLOCK: usize = 256;

/// The K sums Σ f(x_i, y_i)[k] over paired slices (call it inside [`widest_simd`]). A
/// single running sum is one long chain of dependent adds (latency-bound, never
/// vectorised); here 16 independent f32 lanes cover at most 16 elements each of a block
/// of 256, and the blocks' lanes are added in f64.
#[inline(always)]
pub fn lane_sums<const K: usize>(
    x: &[f32],
    y: &[f32],
    f: impl Fn(f32, f32) -> [f32; K] + Copy,
) -> [f64; K] {
    let mut total = [0f64; K];
    for (xb, yb) in x.chunks(BLOCK).zip(y.chunks(BLOCK)) {
        let mut lanes = [[0f32; LANES]; K];
        let (mut xs, mut ys) = (xb.chunks_exact(LANES), yb.chunks_exact(LANES));
        for (xv, yv) in xs.by_ref().zip(ys.by_ref()) {
            for j in 0..LANES {
                let v = f(xv[j], yv[j]);
                for k in 0..K {
                    lanes[k][j] += v[k];
                }
            }
        }
        for (j, (&xv, &yv)) in xs.remainder().iter().zip(ys.remainder()).enumerate() {
            let v = f(xv, yv);
            for k in 0..K {
                lanes[k][j] += v[k];
            }
        }
        for k in 0..K {
            total[k] += lanes[k].iter().map(|&v| v as f64).sum::<f64>();
        }
    }
    total
}
