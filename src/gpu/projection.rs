//! The projection head (`visual_projection`) on the GPU, from its CPU twin: Linear with the
//! BatchNorm folded in, ReLU, Linear.

use super::buffer::GpuTensor;
use super::layers::Linear;
use super::matmul::Epilogue;
use super::recorder::Recorder;
use super::Gpu;
use crate::error::Result;
use crate::model::projection;

pub(crate) struct ProjectionHead {
    fc_in: Linear,
    fc_out: Linear,
}

impl ProjectionHead {
    pub fn from_cpu(gpu: &Gpu, head: &projection::ProjectionHead) -> Result<Self> {
        Ok(Self { fc_in: Linear::from_cpu(gpu, &head.fc_in)?, fc_out: Linear::from_cpu(gpu, &head.fc_out)? })
    }

    pub fn record(&self, r: &mut Recorder, x: &GpuTensor) -> Result<GpuTensor> {
        let h = r.linear(x, &self.fc_in, Epilogue::BiasRelu)?;
        r.linear(&h, &self.fc_out, Epilogue::Bias)
    }
}
