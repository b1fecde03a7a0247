//! The transformer blocks both towers share (transformers' `GroupViTAttention`, `GroupViTMLP`,
//! `GroupViTEncoderLayer`): the vision stages run them as they are, the text tower with a causal mask.

use candle_core::{Module, Result, Tensor};
use candle_nn::{layer_norm, LayerNorm, VarBuilder};

use super::activation::Activation;
use super::cpu_kernels;
use super::linear::Linear;

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

    /// `xs` attends to `context`, `mask (T, T)` added to the scores (−∞ where a token may not look).
    fn attend(&self, xs: &Tensor, context: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (q, k, v) = if std::ptr::eq(xs, context) {
            // Self-attention: the three projections of the same tokens in one pass, where packed.
            match cpu_kernels::linears_side_by_side(xs, &[(self.q_proj.weight(), self.q_proj.bias()), (self.k_proj.weight(), self.k_proj.bias()), (self.v_proj.weight(), self.v_proj.bias())])? {
                Some(qkv) => {
                    let d = self.q_proj.weight().dims()?.0;
                    (qkv.narrow(2, 0, d)?, qkv.narrow(2, d, d)?, qkv.narrow(2, 2 * d, d)?)
                }
                None => (self.q_proj.forward(xs)?, self.k_proj.forward(xs)?, self.v_proj.forward(xs)?),
            }
        } else {
            let kv = match cpu_kernels::linears_side_by_side(context, &[(self.k_proj.weight(), self.k_proj.bias()), (self.v_proj.weight(), self.v_proj.bias())])? {
                Some(kv) => {
                    let d = self.k_proj.weight().dims()?.0;
                    (kv.narrow(2, 0, d)?, kv.narrow(2, d, d)?)
                }
                None => (self.k_proj.forward(context)?, self.v_proj.forward(context)?),
            };
            (self.q_proj.forward(xs)?, kv.0, kv.1)
        };
        self.out_proj.forward(&cpu_kernels::attention(&q, &k, &v, self.num_heads, self.scale, mask)?)
    }
}

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
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.fc1.forward_act(xs, self.act)?)
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

    /// The block with its self-attention masked (the text tower's causal mask).
    pub fn forward_masked(&self, xs: &Tensor, mask: &Tensor) -> Result<Tensor> {
        self.block(xs, Some(mask))
    }

    fn block(&self, xs: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let normed = cpu_kernels::layer_norm(xs, &self.layer_norm1)?;
        let attended = self.self_attn.attend(&normed, &normed, mask)?;
        let (xs, normed) = cpu_kernels::add_layer_norm(xs, &attended, &self.layer_norm2)?;
        cpu_kernels::add_residual(self.mlp.forward(&normed)?, &xs)
    }
}

impl Module for EncoderLayer {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.block(xs, None)
    }
}
