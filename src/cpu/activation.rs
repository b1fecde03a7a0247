//! The activations GroupViT checkpoints name (transformers' `ACT2FN` keys). In the model they run
//! fused after a matmul (`super::linear`); `forward` is the plain form for anything else.

use candle_core::{Result, Tensor};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Activation {
    /// Exact GELU (erf), transformers' "gelu".
    #[serde(rename = "gelu")]
    Gelu,
    /// x * sigmoid(1.702 x), as in CLIP's text tower.
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// The tanh approximation.
    #[serde(alias = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluTanh,
    #[serde(rename = "relu")]
    Relu,
}

impl Activation {
    pub fn forward(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Gelu => xs.gelu_erf(),
            Activation::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
            Activation::GeluTanh => xs.gelu(),
            Activation::Relu => xs.relu(),
        }
    }
}
