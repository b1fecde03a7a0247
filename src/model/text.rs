//! GroupViT's text encoder: CLIP's text transformer (token and position embeddings, pre-norm
//! blocks under a causal mask, a final LayerNorm), pooled at the end-of-text token. Its matrices,
//! the token table (49,408 × 256) included, stay int8 when the checkpoint stores them so.

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{layer_norm, LayerNorm, VarBuilder};

use super::config::TextConfig;
use super::encoder::EncoderLayer;
use super::matrix::Matrix;

/// `GroupViTTextEmbeddings`: `token_embedding` and `position_embedding` tables.
#[derive(Debug, Clone)]
pub struct TextEmbeddings {
    pub(crate) token_embedding: Matrix,
    pub(crate) position_embedding: Tensor,
}

impl TextEmbeddings {
    pub fn new(vb: VarBuilder, cfg: &TextConfig) -> Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            token_embedding: Matrix::load(&vb.pp("token_embedding"), (cfg.vocab_size, h), "weight")?,
            // Small (77 × 256): read widened to f32, as the weights reader does for any tensor.
            position_embedding: vb.get((cfg.max_position_embeddings, h), "position_embedding.weight")?,
        })
    }

    /// `(rows, len, hidden)` for `ids` of `rows` prompts of `len` tokens each.
    pub fn forward(&self, ids: &[u32], rows: usize, len: usize) -> Result<Tensor> {
        let tokens = self.token_embedding.gather(ids)?.reshape((rows, len, ()))?;
        tokens.broadcast_add(&self.position_embedding.narrow(0, 0, len)?.unsqueeze(0)?)
    }
}

/// `GroupViTTextTransformer`.
#[derive(Debug, Clone)]
pub struct TextTransformer {
    pub(crate) embeddings: TextEmbeddings,
    pub(crate) layers: Vec<EncoderLayer>,
    pub(crate) final_layer_norm: LayerNorm,
    eos_token_id: u32,
    context_length: usize,
}

impl TextTransformer {
    pub fn new(vb: VarBuilder, cfg: &TextConfig) -> Result<Self> {
        let (h, heads, inter, eps) = (cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.layer_norm_eps);
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| EncoderLayer::new(vb.pp("encoder.layers").pp(i), h, heads, inter, cfg.hidden_act, eps))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: TextEmbeddings::new(vb.pp("embeddings"), cfg)?,
            layers,
            final_layer_norm: layer_norm(h, eps, vb.pp("final_layer_norm"))?,
            eos_token_id: cfg.eos_token_id.unwrap_or(49407),
            context_length: cfg.max_position_embeddings,
        })
    }

    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// Pooled text features `(T, hidden)` of `input_ids (T, L)`: the final hidden state at the
    /// first end-of-text token (at the largest id for legacy configs whose eos id is 2).
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (rows, len) = input_ids.dims2()?;
        if len > self.context_length {
            candle_core::bail!("a prompt of {len} tokens exceeds the model's {} positions", self.context_length);
        }
        let ids = input_ids.to_dtype(DType::U32)?.to_vec2::<u32>()?;
        let eos: Vec<u32> = ids
            .iter()
            .map(|row| {
                let pos = if self.eos_token_id == 2 {
                    row.iter().enumerate().max_by_key(|&(i, &v)| (v, std::cmp::Reverse(i))).map(|(i, _)| i)
                } else {
                    row.iter().position(|&t| t == self.eos_token_id)
                };
                pos.unwrap_or(0) as u32
            })
            .collect();
        // The mask is causal, so tokens after the last pooled position cannot change the result:
        // trim the padding instead of running it.
        let keep = eos.iter().map(|&p| p as usize + 1).max().unwrap_or(len).min(len);
        let kept: Vec<u32> = ids.iter().flat_map(|row| row[..keep].iter().copied()).collect();
        let mut hidden = self.embeddings.forward(&kept, rows, keep)?;
        let mask = causal_mask(keep, hidden.device())?;
        for layer in &self.layers {
            hidden = layer.forward_masked(&hidden, &mask)?;
        }
        let hidden = self.final_layer_norm.forward(&hidden)?;
        let (_, _, dim) = hidden.dims3()?;
        let flat = hidden.reshape((rows * keep, dim))?;
        let index: Vec<u32> = eos.iter().enumerate().map(|(r, &p)| r as u32 * keep as u32 + p).collect();
        flat.index_select(&Tensor::new(index, hidden.device())?, 0)
    }
}

/// `(len, len)`: 0 where a token may attend (itself and earlier tokens), −∞ after it.
fn causal_mask(len: usize, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..len).flat_map(|i| (0..len).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 })).collect();
    Tensor::from_vec(mask, (len, len), device)
}
