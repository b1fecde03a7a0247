//! Weight matrices as the checkpoint stores them: f32 (also what f16 and bf16 checkpoints widen to),
//! or int8 codes with one scale per row (`groupseg convert --to int8`), which stay int8 in memory —
//! a quarter of the bytes. Where the CPU runs integer products (`super::packed_int8`) an int8
//! weight is packed for them at load; elsewhere it is widened to f32 a block at a time inside the
//! matrix product (`super::linear`). Embedding tables are widened a row at a time by lookups.

use std::sync::Arc;

use candle_core::{CpuStorage, DType, Device, Result, Shape, Storage, Tensor};
use candle_nn::{Init, VarBuilder};

use super::packed::{self, PackedMatrix};
use super::packed_int8::PackedInt8;
use crate::checkpoint::weights::SCALE_SUFFIX;

/// A `(rows, cols)` matrix in int8: `w[r][c] = (codes[r·cols + c] − 128) × scales[r]`.
#[derive(Debug, Clone)]
pub struct Int8Matrix {
    /// A contiguous `u8` CPU tensor, kept as the weights reader made it: taking the codes out as a
    /// `Vec` would copy them, and in the browser the token table's copy (25 MB) stayed in the heap.
    codes: Tensor,
    scales: Vec<f32>,
    rows: usize,
    cols: usize,
}

impl Int8Matrix {
    pub fn new(codes: Vec<u8>, scales: Vec<f32>, rows: usize, cols: usize) -> Result<Self> {
        let len = codes.len();
        Self::from_codes(Tensor::from_vec(codes, len, &Device::Cpu)?, scales, rows, cols)
    }

    /// From the codes as a `u8` tensor of `rows × cols` elements (kept without a copy when it is a
    /// contiguous CPU tensor).
    pub fn from_codes(codes: Tensor, scales: Vec<f32>, rows: usize, cols: usize) -> Result<Self> {
        if codes.dtype() != DType::U8 || codes.elem_count() != rows * cols || scales.len() != rows {
            candle_core::bail!(
                "{} {:?} codes and {} scales do not make a {rows}×{cols} int8 matrix",
                codes.elem_count(),
                codes.dtype(),
                scales.len()
            );
        }
        let codes = codes.flatten_all()?.to_device(&Device::Cpu)?.contiguous()?;
        Ok(Self { codes, scales, rows, cols })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// One scale per row.
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    /// `f` of the codes, row-major (`rows × cols`, each `value / scale + 128`).
    pub fn with_codes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        let (storage, layout) = self.codes.storage_and_layout();
        let Storage::Cpu(CpuStorage::U8(all)) = &*storage else {
            unreachable!("int8 codes are a contiguous u8 CPU tensor (from_codes)");
        };
        f(&all[layout.start_offset()..][..self.rows * self.cols])
    }

    /// Rows `r0..r0 + out.len() / cols`, widened into `out` (row-major).
    #[inline]
    pub fn widen_rows(&self, r0: usize, out: &mut [f32]) {
        self.with_codes(|all| {
            let codes = &all[r0 * self.cols..][..out.len()];
            for ((dst, src), &scale) in out.chunks_exact_mut(self.cols).zip(codes.chunks_exact(self.cols)).zip(&self.scales[r0..]) {
                for (d, &q) in dst.iter_mut().zip(src) {
                    *d = (q as i32 - 128) as f32 * scale;
                }
            }
        })
    }
}

/// A weight matrix `(rows, cols)`: `F32` as a tensor, `Packed` as f32 laid out for the CPU's
/// matrix product (what f32 weights become where [`packed::available`]), `Int8` held as its codes,
/// `PackedInt8` as codes laid out for the integer product (what int8 weights become where the CPU
/// runs integer products: [`PackedInt8::pack`]).
#[derive(Debug, Clone)]
pub enum Matrix {
    F32(Tensor),
    Packed(Arc<PackedMatrix>),
    Int8(Arc<Int8Matrix>),
    PackedInt8(Arc<PackedInt8>),
}

impl Matrix {
    /// The weight `name` of `vb`, flattened to `(shape[0], rest)` (convolution kernels become
    /// matrices over flattened patches), laid out for the products this CPU runs; kept in int8 when
    /// the checkpoint stores it so.
    pub fn load(vb: &VarBuilder, shape: impl Into<Shape>, name: &str) -> Result<Self> {
        match Self::load_table(vb, shape, name)? {
            Self::Int8(q) => Ok(match q.with_codes(|codes| PackedInt8::pack(codes, q.scales.clone(), q.rows, q.cols)) {
                Some(p) => Self::PackedInt8(Arc::new(p)),
                None => Self::Int8(q),
            }),
            Self::F32(w) if packed::available() && matches!(w.device(), Device::Cpu) => {
                let (rows, cols) = w.dims2()?;
                // Packed from the tensor's own storage, not a copy of it.
                let (storage, layout) = w.storage_and_layout();
                let Storage::Cpu(CpuStorage::F32(values)) = &*storage else {
                    unreachable!("a contiguous f32 CPU tensor (load_table)");
                };
                Ok(Self::Packed(Arc::new(PackedMatrix::pack(&values[layout.start_offset()..][..rows * cols], rows, cols))))
            }
            other => Ok(other),
        }
    }

    /// As [`load`](Self::load), for a table read by rows ([`gather`](Self::gather)): kept in rows
    /// as stored, f32 or int8 (packing the token table would hold it twice while it is packed).
    pub fn load_table(vb: &VarBuilder, shape: impl Into<Shape>, name: &str) -> Result<Self> {
        let shape: Shape = shape.into();
        let dims = shape.dims();
        let rows = dims.first().copied().unwrap_or(1);
        let cols = shape.elem_count() / rows.max(1);
        if !vb.contains_tensor(&format!("{name}{SCALE_SUFFIX}")) {
            return Ok(Self::F32(vb.get(shape, name)?.reshape((rows, cols))?.to_dtype(DType::F32)?.contiguous()?));
        }
        // Asked for u8, the weights reader hands out the stored codes rather than widening them.
        let codes = vb.get_with_hints_dtype(shape, name, Init::Const(0.0), DType::U8)?;
        let scales = vb.get(rows, &format!("{name}{SCALE_SUFFIX}"))?.to_vec1::<f32>()?;
        Ok(Self::Int8(Arc::new(Int8Matrix::from_codes(codes, scales, rows, cols)?)))
    }

    /// `(rows, cols)`.
    pub fn dims(&self) -> Result<(usize, usize)> {
        match self {
            Self::F32(t) => t.dims2(),
            Self::Packed(p) => Ok((p.rows(), p.cols())),
            Self::Int8(q) => Ok((q.rows, q.cols)),
            Self::PackedInt8(q) => Ok((q.rows(), q.cols())),
        }
    }

    /// The matrix in f32 (for the GPU upload, which computes in f32; transient on the CPU).
    pub fn to_f32(&self) -> Result<Tensor> {
        match self {
            Self::F32(t) => Ok(t.clone()),
            Self::Packed(p) => p.to_tensor(),
            Self::Int8(q) => {
                let mut out = vec![0f32; q.rows * q.cols];
                q.widen_rows(0, &mut out);
                Tensor::from_vec(out, (q.rows, q.cols), &Device::Cpu)
            }
            Self::PackedInt8(q) => {
                let mut out = vec![0f32; q.rows() * q.cols()];
                out.chunks_exact_mut(q.cols().max(1)).enumerate().for_each(|(r, row)| q.row_into(r, row));
                Tensor::from_vec(out, (q.rows(), q.cols()), &Device::Cpu)
            }
        }
    }

    /// Row `r` times `factor[r]` (BatchNorm folded into the Linear before it): for int8 only the
    /// scales change.
    pub fn scale_rows(self, factor: &Tensor) -> Result<Self> {
        let factors = |rows: usize| -> Result<Vec<f32>> {
            let f = factor.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            if f.len() != rows {
                candle_core::bail!("{} row factors for a matrix of {rows} rows", f.len());
            }
            Ok(f)
        };
        // Freshly loaded, packed values and codes have no other owner: they move rather than copy.
        match self {
            Self::F32(t) => Ok(Self::F32(t.broadcast_mul(&factor.unsqueeze(1)?)?)),
            Self::Packed(p) => {
                let f = factors(p.rows())?;
                let mut p = Arc::unwrap_or_clone(p);
                p.scale_rows(&f);
                Ok(Self::Packed(Arc::new(p)))
            }
            Self::Int8(q) => {
                let f = factors(q.rows)?;
                let mut q = Arc::unwrap_or_clone(q);
                q.scales.iter_mut().zip(&f).for_each(|(s, f)| *s *= f);
                Ok(Self::Int8(Arc::new(q)))
            }
            Self::PackedInt8(q) => {
                let f = factors(q.rows())?;
                let mut q = Arc::unwrap_or_clone(q);
                q.scale_rows(&f);
                Ok(Self::PackedInt8(Arc::new(q)))
            }
        }
    }

    /// Rows `ids` as `(ids.len(), cols)` f32: an embedding lookup. An id past the last row is an error.
    pub fn gather(&self, ids: &[u32]) -> Result<Tensor> {
        let (rows, cols) = self.dims()?;
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= rows) {
            candle_core::bail!("token id {bad} is outside the embedding table's {rows} rows");
        }
        // Each kept form widens one row into an output row.
        let widened = |row: &dyn Fn(usize, &mut [f32])| {
            let mut out = vec![0f32; ids.len() * cols];
            for (dst, &id) in out.chunks_exact_mut(cols).zip(ids) {
                row(id as usize, dst);
            }
            Tensor::from_vec(out, (ids.len(), cols), &Device::Cpu)
        };
        match self {
            Self::F32(t) => t.index_select(&Tensor::new(ids, t.device())?, 0),
            Self::Packed(p) => widened(&|r, dst| p.row_into(r, dst)),
            Self::Int8(q) => widened(&|r, dst| q.widen_rows(r, dst)),
            Self::PackedInt8(q) => widened(&|r, dst| q.row_into(r, dst)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int8(rows: usize, cols: usize) -> (Matrix, Tensor) {
        let codes: Vec<u8> = (0..rows * cols).map(|i| ((i * 37 + 11) % 255) as u8 + 1).collect();
        let scales: Vec<f32> = (0..rows).map(|r| 0.01 * (r + 1) as f32).collect();
        let want: Vec<f32> = codes.iter().enumerate().map(|(i, &q)| (q as f32 - 128.0) * scales[i / cols]).collect();
        let m = Matrix::Int8(Arc::new(Int8Matrix::new(codes, scales, rows, cols).unwrap()));
        (m, Tensor::from_vec(want, (rows, cols), &Device::Cpu).unwrap())
    }

    #[test]
    fn int8_widens_gathers_and_scales_rows_as_its_f32_value() -> Result<()> {
        let (m, want) = int8(5, 7);
        assert_eq!(m.to_f32()?.to_vec2::<f32>()?, want.to_vec2::<f32>()?);
        let rows = m.gather(&[4, 0, 4])?.to_vec2::<f32>()?;
        let w = want.to_vec2::<f32>()?;
        assert_eq!(rows, vec![w[4].clone(), w[0].clone(), w[4].clone()]);
        assert!(m.gather(&[5]).is_err());
        let f = Tensor::new(&[1f32, -2.0, 0.5, 3.0, 0.0], &Device::Cpu)?;
        let scaled = m.clone().scale_rows(&f)?.to_f32()?;
        let d = (scaled - want.broadcast_mul(&f.unsqueeze(1)?)?)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(d < 1e-6);
        Ok(())
    }
}
