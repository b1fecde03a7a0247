//! `nn.Linear` with the checkpoint's `weight (out, in)` and `bias (out)`, whose bias and optional
//! activation run fused in one pass over the matmul output (see `cpu_kernels::linear`).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::activation::Activation;
use super::cpu_kernels;

#[derive(Debug, Clone)]
pub struct Linear {
    pub(crate) weight: Tensor,
    pub(crate) bias: Tensor,
}

impl Linear {
    pub fn new(vb: VarBuilder, input: usize, output: usize) -> Result<Self> {
        Ok(Self { weight: vb.get((output, input), "weight")?, bias: vb.get(output, "bias")? })
    }

    pub fn from_parts(weight: Tensor, bias: Tensor) -> Self {
        Self { weight, bias }
    }

    /// `(out, in)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// `act(x @ weightᵀ + bias)`.
    pub fn forward_act(&self, xs: &Tensor, act: Activation) -> Result<Tensor> {
        cpu_kernels::linear(xs, &self.weight, &self.bias, Some(act))
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        cpu_kernels::linear(xs, &self.weight, &self.bias, None)
    }
}
