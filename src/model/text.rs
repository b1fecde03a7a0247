//! GroupViT's text encoder: CLIP's text transformer (token and position embeddings, pre-norm
//! blocks under a causal mask, a final LayerNorm), pooled at the end-of-text token. Its matrices,
//! the token table (49,408 × 256) included, stay int8 when the checkpoint stores them so; the
//! token table may also stay in the weights file, its rows read as prompts need them.

use std::sync::Arc;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{layer_norm, LayerNorm, VarBuilder};

use super::config::TextConfig;
use super::encoder::EncoderLayer;
use crate::cpu::matrix::Matrix;
use crate::checkpoint::token_rows::TokenRows;
use crate::checkpoint::weights::{Weights, SCALE_SUFFIX};

/// The token table: every row in memory, or left in the weights file with the rows read so far.
#[derive(Debug, Clone)]
pub enum TokenTable {
    Held(Matrix),
    InFile(Arc<TokenRows>),
}

/// `GroupViTTextEmbeddings`: `token_embedding` and `position_embedding` tables.
#[derive(Debug, Clone)]
pub struct TextEmbeddings {
    pub(crate) token_embedding: TokenTable,
    pub(crate) position_embedding: Tensor,
}

impl TextEmbeddings {
    /// With `table_in` (the weights `vb` reads), the token table stays in that file when it is a
    /// safetensors file: only its int8 row scales, if any, are read now.
    pub fn new(vb: VarBuilder, cfg: &TextConfig, table_in: Option<&Weights>) -> Result<Self> {
        let h = cfg.hidden_size;
        let table = vb.pp("token_embedding");
        let location = table_in.and_then(|w| Some((w, w.locate(&format!("{}.weight", table.prefix()))?)));
        let token_embedding = match location {
            Some((file, at)) => {
                file.leave_in_file(&at);
                let scale = format!("weight{SCALE_SUFFIX}");
                let scales = if table.contains_tensor(&scale) { Some(table.get(cfg.vocab_size, &scale)?.to_vec1::<f32>()?) } else { None };
                TokenTable::InFile(Arc::new(TokenRows::new(&at, (cfg.vocab_size, h), scales)?))
            }
            None => TokenTable::Held(Matrix::load_table(&table, (cfg.vocab_size, h), "weight")?),
        };
        Ok(Self {
            token_embedding,
            // Small (77 × 256): read widened to f32, as the weights reader does for any tensor.
            position_embedding: vb.get((cfg.max_position_embeddings, h), "position_embedding.weight")?,
        })
    }

    /// `(rows, len, hidden)` for `ids` of `rows` prompts of `len` tokens each.
    pub fn forward(&self, ids: &[u32], rows: usize, len: usize) -> Result<Tensor> {
        let tokens = match &self.token_embedding {
            TokenTable::Held(m) => m.gather(ids)?,
            TokenTable::InFile(rows) => rows.gather(ids)?,
        };
        let tokens = tokens.reshape((rows, len, ()))?;
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
    /// `table_in`: see [`TextEmbeddings::new`].
    pub fn new(vb: VarBuilder, cfg: &TextConfig, table_in: Option<&Weights>) -> Result<Self> {
        let (h, heads, inter, eps) = (cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.layer_norm_eps);
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| EncoderLayer::new(vb.pp("encoder.layers").pp(i), h, heads, inter, cfg.hidden_act, eps))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            embeddings: TextEmbeddings::new(vb.pp("embeddings"), cfg, table_in)?,
            layers,
            final_layer_norm: layer_norm(h, eps, vb.pp("final_layer_norm"))?,
            eos_token_id: cfg.eos_token_id.unwrap_or(49407),
            context_length: cfg.max_position_embeddings,
        })
    }

    pub fn context_length(&self) -> usize {
        self.context_length
    }

    /// The token table's rows, when the table stayed in the weights file.
    pub fn token_rows(&self) -> Option<&TokenRows> {
        match &self.embeddings.token_embedding {
            TokenTable::InFile(rows) => Some(rows),
            TokenTable::Held(_) => None,
        }
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
            hidden = layer.forward_masked(hidden, &mask)?;
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
