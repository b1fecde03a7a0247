//! The transformer blocks both towers share (transformers' `GroupViTAttention`, `GroupViTMLP`,
//! `GroupViTEncoderLayer`): the vision stages run them as they are, the text tower with a causal mask.

use candle_core::{Module, Result, Tensor};
use candle_nn::{layer_norm, LayerNorm, VarBuilder};

use crate::cpu::activation::Activation;
use crate::cpu;
use super::linear::Linear;
use crate::cpu::matrix::Matrix;

/// `GroupViTAttention`: multi-head attention; cross-attention when given a context.
#[derive(Debug, Clone)]
pub struct Attention {
    pub(crate) q_proj: Linear,
    pub(crate) k_proj: Linear,
    pub(crate) v_proj: Linear,
    pub(crate) out_proj: Linear,
    pub(crate) num_heads: usize,
    pub(crate) scale: f64,
}

impl Attention {
    pub fn new(vb: VarBuilder, hidden: usize, num_heads: usize) -> Result<Self> {
        let head_dim = hidden / num_heads;
        Ok(Self {
            q_proj: Linear::new(vb.pp("q_proj"), hidden, hidden)?,
            k_proj: Linear::new(vb.pp("k_proj"), hidden, hidden)?,
            v_proj: Linear::new(vb.pp("v_proj"), hidden, hidden)?,
            out_proj: Linear::new(vb.pp("out_proj"), hidden, hidden)?,
            num_heads,
            scale: (head_dim as f64).powf(-0.5),
        })
    }

    /// `xs` attends to `context` (itself when `None`).
    pub fn forward(&self, xs: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        self.attend(xs, context.unwrap_or(xs), None)
    }

    /// `xs` attends to `context`, `mask (Tq, Tk)` added to the scores (−∞ where a token may not
    /// look).
    fn attend(&self, xs: &Tensor, context: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (k, v) = self.keys_values(context)?;
        self.attend_to(xs, &k, &v, mask)
    }

    /// `xs` attends to keys and values already projected; its queries are freed before
    /// `out_proj`'s output is made.
    fn attend_to(&self, xs: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let q = self.q_proj.forward(xs)?;
        let heads = cpu::attention(&q, k, v, self.num_heads, self.scale, mask)?;
        drop(q);
        self.out_proj.forward(&heads)
    }

    /// The keys and values of `context`, in one pass where the weights are packed.
    fn keys_values(&self, context: &Tensor) -> Result<(Tensor, Tensor)> {
        let pair = [(self.k_proj.weight(), self.k_proj.bias()), (self.v_proj.weight(), self.v_proj.bias())];
        Ok(match cpu::linears_side_by_side(context, &pair)? {
            Some(kv) => {
                let d = self.k_proj.weight().dims()?.0;
                (kv.narrow(2, 0, d)?, kv.narrow(2, d, d)?)
            }
            None => (self.k_proj.forward(context)?, self.v_proj.forward(context)?),
        })
    }
}

/// Query rows per block of [`EncoderLayer`] at most: a 448-pixel window's 848 tokens in seven blocks.
const LAYER_ROWS: usize = 128;

/// Whether products with weight `w` are split by blocks of rows. f32 weights held as a tensor
/// (where no packed kernel runs) are repacked by every product, so splitting would repack them once
/// per block: they run whole. Weights packed at load, and int8 weights (kept to save memory;
/// widened a block at a time anyway), are split.
fn split_by_rows(w: &Matrix) -> bool {
    !matches!(w, Matrix::F32(_))
}

/// Rows per block of [`Mlp::forward`]: the text tower's batches of 64 prompts of 77 tokens would
/// hold a 20 MB hidden layer at once, a block of 128 rows holds 0.5 MB.
const MLP_ROWS: usize = 128;

/// `GroupViTMLP`: fc1, activation, fc2.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub(crate) fc1: Linear,
    pub(crate) fc2: Linear,
    pub(crate) act: Activation,
}

impl Mlp {
    pub fn new(vb: VarBuilder, act: Activation, input: usize, hidden: usize, output: usize) -> Result<Self> {
        Ok(Self { fc1: Linear::new(vb.pp("fc1"), input, hidden)?, fc2: Linear::new(vb.pp("fc2"), hidden, output)?, act })
    }
}

impl Module for Mlp {
    /// Over blocks of rows ([`split_by_rows`]): only a block's hidden layer (4× the width) is held
    /// at a time.
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let rows = if split_by_rows(self.fc1.weight()) { MLP_ROWS } else { usize::MAX };
        cpu::by_row_blocks(xs, rows, |rows| self.fc2.forward(&self.fc1.forward_act(rows, self.act)?))
    }
}

/// `GroupViTEncoderLayer`: pre-norm transformer block.
#[derive(Debug, Clone)]
pub struct EncoderLayer {
    pub(crate) self_attn: Attention,
    pub(crate) layer_norm1: LayerNorm,
    pub(crate) mlp: Mlp,
    pub(crate) layer_norm2: LayerNorm,
}

impl EncoderLayer {
    pub fn new(vb: VarBuilder, hidden: usize, heads: usize, intermediate: usize, act: Activation, eps: f64) -> Result<Self> {
        Ok(Self {
            self_attn: Attention::new(vb.pp("self_attn"), hidden, heads)?,
            layer_norm1: layer_norm(hidden, eps, vb.pp("layer_norm1"))?,
            mlp: Mlp::new(vb.pp("mlp"), act, hidden, intermediate, hidden)?,
            layer_norm2: layer_norm(hidden, eps, vb.pp("layer_norm2"))?,
        })
    }

    /// The block over `xs`, taken: longer sequences get the output written over them.
    pub fn forward(&self, xs: Tensor) -> Result<Tensor> {
        self.block(xs, None)
    }

    /// The block with its self-attention masked (the text tower's causal mask).
    pub fn forward_masked(&self, xs: Tensor, mask: &Tensor) -> Result<Tensor> {
        self.block(xs, Some(mask))
    }

    /// Every token's keys and values first; then the rest, which is row by row (queries,
    /// attention, both residuals, the MLP), by blocks of [`LAYER_ROWS`] query rows where
    /// [`split_by_rows`], each block's output written over its input rows. Held at once: the input,
    /// the keys and the values, and one block's intermediates — not the whole sequence's queries,
    /// heads, attention output and hidden layer (a WebAssembly heap keeps its high-water mark for
    /// good).
    fn block(&self, xs: Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        if xs.dim(1)? <= LAYER_ROWS || !split_by_rows(self.mlp.fc1.weight()) {
            let normed = cpu::layer_norm(&xs, &self.layer_norm1)?;
            let (k, v) = self.self_attn.keys_values(&normed)?;
            return self.rows(&xs, normed, &k, &v, mask);
        }
        // The whole sequence normalised is never held: the keys and values are made from each
        // block's rows normalised, and each block of queries normalises its rows again (a pass
        // over 128 rows against the 1.3 MB of a 448 window's sequence).
        let (k, v) = self.keys_values_by_blocks(&xs)?;
        self.by_blocks(xs, &k, &v, mask)
    }

    /// Every token's keys and values `(B, T, D)` each, made [`LAYER_ROWS`] rows at a time.
    fn keys_values_by_blocks(&self, xs: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, t, d) = xs.dims3()?;
        // Rows are independent here: the batch's sequences one after another.
        let flat = xs.reshape((1, b * t, d))?;
        let (k, v) = (flat.zeros_like()?, flat.zeros_like()?);
        for r0 in (0..b * t).step_by(LAYER_ROWS) {
            let rows = flat.narrow(1, r0, LAYER_ROWS.min(b * t - r0))?;
            let (kb, vb) = self.self_attn.keys_values(&cpu::layer_norm(&rows, &self.layer_norm1)?)?;
            k.slice_set(&kb.contiguous()?, 1, r0)?;
            v.slice_set(&vb.contiguous()?, 1, r0)?;
        }
        Ok((k.reshape((b, t, d))?, v.reshape((b, t, d))?))
    }

    /// [`EncoderLayer::rows`] over blocks of rows, written over `xs`.
    fn by_blocks(&self, xs: Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, t, d) = xs.dims3()?;
        let xs = xs.contiguous()?;
        // The same storage as `xs`: a block's rows are written back into it once computed, and
        // only later blocks' rows are read after that.
        let flat = xs.reshape((b * t, d))?;
        // Blocks of even size: 260 tokens (a 224-pixel input) as 87 + 87 + 86, not 128 + 128 + 4.
        let per = t.div_ceil(t.div_ceil(LAYER_ROWS));
        for bi in 0..b {
            let (k, v) = (k.narrow(0, bi, 1)?, v.narrow(0, bi, 1)?);
            for r0 in (0..t).step_by(per) {
                let n = per.min(t - r0);
                let mask = mask.map(|m| m.narrow(0, r0, n)).transpose()?;
                let part = xs.narrow(0, bi, 1)?.narrow(1, r0, n)?;
                let out = self.rows(&part, cpu::layer_norm(&part, &self.layer_norm1)?, &k, &v, mask.as_ref())?;
                flat.slice_set(&out.reshape((n, d))?.contiguous()?, 0, bi * t + r0)?;
            }
        }
        Ok(xs)
    }

    /// The block's output for rows `xs` of the input (`normed`: their first LayerNorm, freed once
    /// attended), attending to every token's keys and values.
    fn rows(&self, xs: &Tensor, normed: Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let attended = self.self_attn.attend_to(&normed, k, v, mask)?;
        drop(normed);
        let (sum, normed) = cpu::add_layer_norm(xs, &attended, &self.layer_norm2)?;
        drop(attended);
        cpu::add_residual(self.mlp.forward(&normed)?, &sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::with_random_vars;
    use candle_core::Device;

    /// Longer than one block of rows, two sequences, with and without a causal mask: the blocks
    /// give what the whole sequence at once does.
    #[test]
    fn a_layer_by_blocks_of_rows_is_the_layer_at_once() -> Result<()> {
        let dev = Device::Cpu;
        let (layer, _) = with_random_vars(|vb| EncoderLayer::new(vb, 32, 4, 64, Activation::Gelu, 1e-5))?;
        let t = 2 * LAYER_ROWS + 37;
        let xs = Tensor::randn(0f32, 1.0, (2, t, 32), &dev)?;
        let causal: Vec<f32> = (0..t * t).map(|i| if i % t > i / t { f32::NEG_INFINITY } else { 0.0 }).collect();
        let causal = Tensor::from_vec(causal, (t, t), &dev)?;
        for mask in [None, Some(&causal)] {
            let normed = cpu::layer_norm(&xs, &layer.layer_norm1)?;
            let (k, v) = layer.self_attn.keys_values(&normed)?;
            let diff = |a: &Tensor, b: &Tensor| -> Result<f32> { (a - b)?.abs()?.max_all()?.to_scalar::<f32>() };
            let (kb, vb) = layer.keys_values_by_blocks(&xs)?;
            assert!(diff(&kb, &k)? < 1e-5 && diff(&vb, &v)? < 1e-5, "keys and values by blocks differ");
            let whole = layer.rows(&xs, normed, &k, &v, mask)?;
            let blocks = layer.by_blocks(xs.copy()?, &kb, &vb, mask)?;
            let diff = diff(&blocks, &whole)?;
            assert!(diff < 1e-5, "mask {}: max |diff| {diff:e}", mask.is_some());
        }
        Ok(())
    }
}
