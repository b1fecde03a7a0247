//! The CPU compute wing, beside `crate::gpu`: the kernels GroupViT's forward runs on candle tensors
//! (fused linear layers, layer norms, attention, softmax), the weight matrices as they are kept
//! (f32 packed into panels, or int8 with per-row scales) and the matrix products over them.

pub mod activation;
pub mod kernels;
pub mod matrix;
pub mod packed;
// The wasm matmul kernel; natively only its tests run it (gemm's x86 kernels are faster there).
#[cfg_attr(not(all(target_arch = "wasm32", target_feature = "simd128")), allow(dead_code))]
mod sgemm;
