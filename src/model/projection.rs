//! The projection heads (`visual_projection`, `text_projection`): Linear, BatchNorm1d, ReLU, Linear.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::cpu::activation::Activation;
use super::linear::Linear;
use crate::cpu::matrix::Matrix;

const BATCH_NORM_EPS: f64 = 1e-5;

/// `nn.Sequential(Linear, BatchNorm1d, ReLU, Linear)` with checkpoint names `0`, `1`, `3`.
/// At inference BatchNorm is an affine map, so it is folded into the first Linear at load time.
#[derive(Debug, Clone)]
pub struct ProjectionHead {
    pub(crate) fc_in: Linear,
    pub(crate) fc_out: Linear,
}

impl ProjectionHead {
    pub fn new(vb: VarBuilder, input: usize, intermediate: usize, output: usize) -> Result<Self> {
        let l0 = vb.pp("0");
        let w0 = Matrix::load(&l0, (intermediate, input), "weight")?;
        let b0 = l0.get(intermediate, "bias")?;
        let bn = vb.pp("1");
        let gamma = bn.get(intermediate, "weight")?;
        let beta = bn.get(intermediate, "bias")?;
        let mean = bn.get(intermediate, "running_mean")?;
        let var = bn.get(intermediate, "running_var")?;
        let scale = (gamma / (var + BATCH_NORM_EPS)?.sqrt()?)?;
        let shift = (beta - (&mean * &scale)?)?;
        let weight = w0.scale_rows(&scale)?;
        let bias = ((b0 * &scale)? + shift)?;
        Ok(Self { fc_in: Linear::from_parts(weight, bias), fc_out: Linear::new(vb.pp("3"), intermediate, output)? })
    }
}

impl Module for ProjectionHead {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.fc_out.forward(&self.fc_in.forward_act(xs, Activation::Relu)?)
    }
}
