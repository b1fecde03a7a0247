//! The CPU compute wing, beside `crate::gpu`: the kernels GroupViT's forward runs on candle tensors
//! where candle's own are slow for it, the weight matrices as they are kept (f32 packed into panels,
//! or int8 with per-row scales) and the matrix products over them. From the bottom: `math` (scalar
//! and row math), `arch` (the one place that names a target: vector kernels and which run here),
//! `pool` (rayon's pool), `sgemm`, `packed` and `packed_int8` (the products: f32, and integer
//! for int8 weights), then the layers' operations:
//! `matmul`, `linear`, `norm`, `attention`. Each takes f32 tensors on the CPU ([`ours`]) and hands
//! anything else to candle's ops.

pub mod activation;
mod arch;
pub mod attention;
pub mod linear;
pub mod math;
pub mod matmul;
pub mod matrix;
pub mod norm;
pub mod packed;
pub mod packed_int8;
pub mod pool;
mod sgemm;

use candle_core::{CpuStorage, DType, Device, Layout, Result, Tensor};

pub use attention::attention;
pub use linear::{by_row_blocks, linear, linears_side_by_side};
pub use matmul::matmul;
pub use norm::{add_layer_norm, layer_norm};
pub(crate) use norm::add_residual;
pub use pool::on_pool;

/// Whether the wing's kernels take these tensors: f32 in CPU memory (candle's ops run the rest).
fn ours(tensors: &[&Tensor]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32 && matches!(t.device(), Device::Cpu))
}

/// [`ours`], and laid out contiguously (kernels that write in place or read whole rows).
fn ours_contiguous(tensors: &[&Tensor]) -> bool {
    ours(tensors) && tensors.iter().all(|t| t.is_contiguous())
}

/// An op's f32 input as one slice, or why the op cannot take it.
fn contiguous_f32<'a>(op: &str, storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else { candle_core::bail!("{op} takes f32") };
    let Some((start, end)) = layout.contiguous_offsets() else { candle_core::bail!("{op} takes contiguous input") };
    Ok(&data[start..end])
}
