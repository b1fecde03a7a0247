//! GroupViT's text encoder. It is CLIP's text transformer (same maths, same parameter names), so
//! candle-transformers' implementation does the work; GroupViT only differs in pooling.

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::clip::text_model::{
    Activation as ClipActivation, ClipTextConfig, ClipTextTransformer,
};

use super::config::{Activation, TextConfig};

/// `GroupViTTextTransformer`.
#[derive(Debug, Clone)]
pub struct TextTransformer {
    inner: ClipTextTransformer,
    eos_token_id: u32,
    context_length: usize,
}

impl TextTransformer {
    pub fn new(vb: VarBuilder, cfg: &TextConfig) -> Result<Self> {
        // candle's CLIP text model is built for quick-GELU and LayerNorm eps 1e-5; a checkpoint
        // that differs would silently compute something else, so refuse it.
        if cfg.hidden_act != Activation::QuickGelu || (cfg.layer_norm_eps - 1e-5).abs() > 1e-12 {
            candle_core::bail!(
                "text_config needs hidden_act \"quick_gelu\" and layer_norm_eps 1e-5 (got {:?}, {})",
                cfg.hidden_act,
                cfg.layer_norm_eps
            );
        }
        let clip = ClipTextConfig {
            vocab_size: cfg.vocab_size,
            embed_dim: cfg.hidden_size,
            activation: ClipActivation::QuickGelu,
            intermediate_size: cfg.intermediate_size,
            max_position_embeddings: cfg.max_position_embeddings,
            pad_with: None,
            num_hidden_layers: cfg.num_hidden_layers,
            num_attention_heads: cfg.num_attention_heads,
            projection_dim: 0,
        };
        Ok(Self {
            inner: ClipTextTransformer::new(vb, &clip)?,
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
        let input_ids = input_ids.narrow(1, 0, keep)?;
        let hidden = self.inner.forward_with_mask(&input_ids, usize::MAX)?;
        let (_, _, dim) = hidden.dims3()?;
        let flat = hidden.reshape((rows * keep, dim))?;
        let index: Vec<u32> = eos.iter().enumerate().map(|(r, &p)| r as u32 * keep as u32 + p).collect();
        flat.index_select(&Tensor::new(index, hidden.device())?, 0)
    }
}
