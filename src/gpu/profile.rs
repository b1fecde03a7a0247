//! Per-kernel GPU timings from timestamp queries, for the benchmark: every dispatch recorded while
//! a profile is on gets its own pair of timestamps, reported per kernel with the matmul's GFLOP/s.

use super::{Gpu, PassLog, QUERIES};
use crate::error::{Error, Result};

/// One kernel's share of a profiled run.
#[derive(Debug, Clone)]
pub struct KernelTime {
    pub name: &'static str,
    pub dispatches: usize,
    pub ms: f64,
    pub flops: u64,
}

impl KernelTime {
    /// Achieved GFLOP/s, for kernels that count their work.
    pub fn gflops(&self) -> Option<f64> {
        (self.flops > 0 && self.ms > 0.0).then(|| self.flops as f64 / (self.ms * 1e6))
    }
}

impl Gpu {
    /// Starts timing every dispatch (needs `TIMESTAMP_QUERY`; see [`Gpu::timestamps`]).
    pub fn start_profile(&self) -> Result<()> {
        if !self.timestamps {
            return Err(Error::GpuUnavailable(format!("{} cannot time kernels (no timestamp queries)", self.adapter.name)));
        }
        let set = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("kernel timings"),
            ty: wgpu::QueryType::Timestamp,
            count: QUERIES,
        });
        *self.profiler.lock().unwrap_or_else(|e| e.into_inner()) = Some(PassLog { set, passes: Vec::new() });
        Ok(())
    }

    /// Stops timing and reports each kernel's total time, slowest first (call after the profiled
    /// work was submitted).
    pub async fn finish_profile(&self) -> Result<Vec<KernelTime>> {
        let Some(p) = self.profiler.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Err(Error::Gpu("no profile was started".into()));
        };
        let n = (p.passes.len() * 2) as u32;
        if n == 0 {
            return Ok(Vec::new());
        }
        let bytes = u64::from(n) * 8;
        let usage = wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC;
        let resolved =
            self.device.create_buffer(&wgpu::BufferDescriptor { label: None, size: bytes, usage, mapped_at_creation: false });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.resolve_query_set(&p.set, 0..n, &resolved, 0);
        self.queue.submit([encoder.finish()]);
        let bytes = super::buffer::read_buffer(self, &resolved, n as usize * 2).await?;
        let ticks: Vec<u64> = bytes.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).collect();
        let period_ns = f64::from(self.queue.get_timestamp_period());
        let mut out: Vec<KernelTime> = Vec::new();
        for (i, &(name, flops)) in p.passes.iter().enumerate() {
            let ms = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period_ns / 1e6;
            match out.iter_mut().find(|k| k.name == name) {
                Some(k) => {
                    k.dispatches += 1;
                    k.ms += ms;
                    k.flops += flops;
                }
                None => out.push(KernelTime { name, dispatches: 1, ms, flops }),
            }
        }
        out.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        Ok(out)
    }
}
