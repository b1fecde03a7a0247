//! `nn.Linear` with the checkpoint's `weight (out, in)` and `bias (out)`, whose bias and optional
//! activation run fused in one pass over the matmul output (see `crate::cpu::linear`). The weight
//! stays as stored: f32, or int8 codes (`crate::cpu::matrix`).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::cpu::activation::Activation;
use crate::cpu;
use crate::cpu::matrix::Matrix;

#[derive(Debug, Clone)]
pub struct Linear {
    pub(crate) weight: Matrix,
    pub(crate) bias: Tensor,
}

impl Linear {
    pub fn new(vb: VarBuilder, input: usize, output: usize) -> Result<Self> {
        Ok(Self { weight: Matrix::load(&vb, (output, input), "weight")?, bias: vb.get(output, "bias")? })
    }

    pub fn from_parts(weight: Matrix, bias: Tensor) -> Self {
        Self { weight, bias }
    }

    /// `(out, in)`.
    pub fn weight(&self) -> &Matrix {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// `act(x @ weightᵀ + bias)`.
    pub fn forward_act(&self, xs: &Tensor, act: Activation) -> Result<Tensor> {
        cpu::linear(xs, &self.weight, &self.bias, Some(act))
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        cpu::linear(xs, &self.weight, &self.bias, None)
    }
}
