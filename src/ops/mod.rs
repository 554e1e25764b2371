//! Tensor ops and CPU kernels that candle lacks or runs slowly, as custom ops with their
//! own backward (each tested against the plain candle composition), and the modules and
//! parameter store both activations and models build on.

pub mod acon;
#[cfg(target_arch = "x86_64")]
pub mod act_avx512;
pub mod batchnorm;
pub mod boxes;
pub mod concat;
pub mod conv2d;
pub mod conv2d_bn;
pub mod conv_bn_layer;
pub mod device;
pub mod elementwise;
pub mod fake_quant;
pub mod fastmath;
pub mod gemm;
pub mod graph;
pub mod head_conv;
pub mod maximum;
pub mod maxpool;
pub mod norm;
pub mod pick;
pub mod pointwise;
pub mod portable;
pub mod prelu;
pub mod scalar;
pub mod simd;
pub mod storage;
pub mod upsample_nearest;
pub mod vars;
pub mod window;
