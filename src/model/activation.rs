//! The activations GroupViT checkpoints name (transformers' `ACT2FN` keys).

use candle_core::{Result, Tensor};
use serde::Deserialize;

use super::cpu_kernels::gelu_erf;

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
            Activation::Gelu => gelu_erf(xs),
            Activation::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
            Activation::GeluTanh => xs.gelu(),
            Activation::Relu => xs.relu(),
        }
    }
}
