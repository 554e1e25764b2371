//! CPU kernels for model layers that candle lacks or runs slowly, as custom ops with
//! their own backward, each tested against a plain composition.

pub mod batchnorm;
pub mod conv;
pub mod conv_bn;
pub mod gemm;
pub mod head;
pub mod maxpool;
pub mod upsample;
