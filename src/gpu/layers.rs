//! The building blocks of every GPU module, uploaded from their CPU twins: `Linear` (one matmul
//! with its bias and activation fused) and `LayerNorm`.

use super::buffer::{GpuMatrix, GpuTensor};
use super::matmul::Epilogue;
use super::Gpu;
use crate::error::{Error, Result};
use crate::model::config::Activation;
use crate::model::linear;

/// `nn.Linear` on the GPU: `weight (out, in)`, held as narrow as the checkpoint gave it, and
/// `bias (out)`.
pub(crate) struct Linear {
    pub weight: GpuMatrix,
    pub bias: GpuTensor,
    pub input: usize,
    pub output: usize,
}

impl Linear {
    pub fn from_cpu(gpu: &Gpu, l: &linear::Linear) -> Result<Self> {
        Self::scaled_from_cpu(gpu, l, 1.0)
    }

    /// The layer times `scale` (attention folds its query scaling in here).
    pub fn scaled_from_cpu(gpu: &Gpu, l: &linear::Linear, scale: f64) -> Result<Self> {
        let (output, input) = l.weight.dims()?;
        let weight = GpuMatrix::upload(gpu, &l.weight, scale as f32)?;
        let bias = if scale == 1.0 { l.bias.clone() } else { (&l.bias * scale)? };
        Ok(Self { weight, bias: GpuTensor::from_tensor(gpu, &bias)?, input, output })
    }
}

/// `nn.LayerNorm` on the GPU.
pub(crate) struct LayerNorm {
    pub weight: GpuTensor,
    pub bias: GpuTensor,
    pub eps: f32,
}

impl LayerNorm {
    pub fn from_cpu(gpu: &Gpu, ln: &candle_nn::LayerNorm) -> Result<Self> {
        let bias = ln.bias().ok_or_else(|| Error::Weights("a LayerNorm without a bias".into()))?;
        Ok(Self {
            weight: GpuTensor::from_tensor(gpu, ln.weight())?,
            bias: GpuTensor::from_tensor(gpu, bias)?,
            eps: ln.eps() as f32,
        })
    }
}

/// The matmul epilogue that applies `act` after the bias.
pub(crate) fn epilogue_of(act: Activation) -> Result<Epilogue> {
    match act {
        Activation::Gelu => Ok(Epilogue::BiasGeluErf),
        Activation::QuickGelu => Ok(Epilogue::BiasQuickGelu),
        Activation::Relu => Ok(Epilogue::BiasRelu),
        Activation::GeluTanh => Err(Error::Config("the GPU path has no tanh-GELU yet".into())),
    }
}
