//! A token table left in its weights file: rows are read as prompts need them and kept as stored.
//! A prompt uses a few of CLIP's 49,408 tokens, so a page that reads the rows from the browser's
//! copy of the file (Cache Storage keeps it on disk) holds a few hundred rows instead of the whole
//! table (12.6 MB in int8 for the published checkpoints).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Mutex;

use candle_core::{DType, Device, Result, Tensor};
use safetensors::Dtype;

use super::weights::TensorLocation;

/// How each row is stored in the file.
#[derive(Debug, Clone)]
enum RowFormat {
    /// f32, f16 or bf16, widened as the weights reader widens any tensor.
    Float(DType),
    /// Codes `q` standing for `(q − 128) × scale` of their row (`crate::checkpoint::convert`), widened
    /// as a held int8 table's.
    Int8 { scales: Vec<f32> },
}

impl RowFormat {
    fn bytes_per_value(&self) -> usize {
        match self {
            Self::Float(dtype) => dtype.size_in_bytes(),
            Self::Int8 { .. } => 1,
        }
    }
}

/// The rows read so far of a `(rows, cols)` table stored at a place in a weights file.
#[derive(Debug)]
pub struct TokenRows {
    rows: usize,
    cols: usize,
    /// Where row 0 starts in the file.
    start: usize,
    format: RowFormat,
    read: Mutex<HashMap<u32, Box<[u8]>>>,
}

impl TokenRows {
    /// The table at `location`, `(rows, cols)`, with its int8 row `scales` when it is stored as codes.
    pub fn new(location: &TensorLocation, (rows, cols): (usize, usize), scales: Option<Vec<f32>>) -> Result<Self> {
        if location.shape != [rows, cols] {
            candle_core::bail!("the token table has shape {:?}, the model expects [{rows}, {cols}]", location.shape);
        }
        let format = match (location.dtype, scales) {
            (Dtype::F32, None) => RowFormat::Float(DType::F32),
            (Dtype::F16, None) => RowFormat::Float(DType::F16),
            (Dtype::BF16, None) => RowFormat::Float(DType::BF16),
            (Dtype::U8, Some(scales)) if scales.len() == rows => RowFormat::Int8 { scales },
            (dtype, scales) => candle_core::bail!(
                "a token table of {dtype:?}{} cannot be read a row at a time",
                scales.map(|s| format!(" with {} row scales", s.len())).unwrap_or_default()
            ),
        };
        if location.len != rows * cols * format.bytes_per_value() {
            candle_core::bail!("the token table's {} bytes do not hold {rows} × {cols} values", location.len);
        }
        Ok(Self { rows, cols, start: location.start, format, read: Mutex::new(HashMap::new()) })
    }

    fn row_bytes(&self) -> usize {
        self.cols * self.format.bytes_per_value()
    }

    fn check(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().find(|&&i| i as usize >= self.rows) {
            Some(bad) => candle_core::bail!("token id {bad} is outside the embedding table's {} rows", self.rows),
            None => Ok(()),
        }
    }

    /// The distinct ids among `ids` whose rows have not been read, in order.
    pub fn missing(&self, ids: &[u32]) -> Result<Vec<u32>> {
        self.check(ids)?;
        let read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        let mut missing: Vec<u32> = ids.iter().copied().filter(|id| !read.contains_key(id)).collect();
        missing.sort_unstable();
        missing.dedup();
        Ok(missing)
    }

    /// Where row `id` lies in the file.
    pub fn file_range(&self, id: u32) -> Range<usize> {
        let at = self.start + id as usize * self.row_bytes();
        at..at + self.row_bytes()
    }

    /// Keeps row `id`'s stored bytes, as read from [`file_range`](Self::file_range).
    pub fn insert(&self, id: u32, bytes: Vec<u8>) -> Result<()> {
        self.check(&[id])?;
        if bytes.len() != self.row_bytes() {
            candle_core::bail!("token row {id}: {} bytes read, {} expected", bytes.len(), self.row_bytes());
        }
        self.read.lock().unwrap_or_else(|e| e.into_inner()).insert(id, bytes.into_boxed_slice());
        Ok(())
    }

    /// Bytes of the whole table in the file.
    pub fn table_bytes(&self) -> usize {
        self.rows * self.row_bytes()
    }

    /// Bytes of the rows held.
    pub fn held_bytes(&self) -> usize {
        self.read.lock().unwrap_or_else(|e| e.into_inner()).len() * self.row_bytes()
    }

    /// Rows `ids` as `(ids.len(), cols)` f32; every one must have been read.
    pub fn gather(&self, ids: &[u32]) -> Result<Tensor> {
        self.check(ids)?;
        // The rows as stored, in order, then widened by what widens a whole table.
        let read = self.read.lock().unwrap_or_else(|e| e.into_inner());
        let mut raw = Vec::with_capacity(ids.len() * self.row_bytes());
        for id in ids {
            let Some(row) = read.get(id) else {
                candle_core::bail!("token row {id} has not been read from the weights file");
            };
            raw.extend_from_slice(row);
        }
        match &self.format {
            RowFormat::Float(dtype) => Tensor::from_raw_buffer(&raw, *dtype, &[ids.len(), self.cols], &Device::Cpu)?.to_dtype(DType::F32),
            RowFormat::Int8 { scales } => {
                let scales: Vec<f32> = ids.iter().map(|&id| scales[id as usize]).collect();
                let codes = Tensor::from_vec(raw, (ids.len(), self.cols), &Device::Cpu)?;
                super::weights::dequantize_rows(&codes, &Tensor::from_vec(scales, ids.len(), &Device::Cpu)?)
            }
        }
    }
}
