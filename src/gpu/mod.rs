//! The GPU path: one place that opens a wgpu adapter and device (WebGPU in the browser; Vulkan,
//! Metal or DX12 natively), asks for the limits GroupViT needs within what the adapter offers, and
//! says what it got. When no usable GPU is there the error says why, so callers fall back to the CPU.
//! Kernels live beside this file, each with its WGSL.

use wgpu::util::DeviceExt;

pub mod buffer;
pub mod matmul;
pub mod ops;
pub mod profile;
pub mod rows;
pub mod segment;
pub mod vision;

use crate::error::Error;

/// Largest single tensor GroupViT binds: the token embedding (49408 × 256 f32, 48 MiB) and the
/// attention scores of three 448-pixel windows (3 × 6 × 848² f32, 50 MiB).
pub const NEEDED_STORAGE_BINDING: u64 = 64 << 20;
/// Workgroup memory the matmul tiles use (two 64 × 16 f32 tiles).
pub const NEEDED_WORKGROUP_STORAGE: u32 = 8 << 10;

/// What the adapter is, for the user and the logs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub max_storage_buffer_binding_size: u64,
    pub max_compute_workgroup_storage_size: u32,
}

impl AdapterSummary {
    /// Whether the adapter emulates a GPU on the CPU (llvmpipe, SwiftShader, WARP).
    pub fn is_software(&self) -> bool {
        self.device_type == "Cpu"
    }

    /// "llvmpipe (LLVM 15.0.6, 256 bits) through Vulkan, software emulation", for users.
    pub fn describe(&self) -> String {
        // Browsers may hide the adapter's name.
        let name = if self.name.is_empty() { "an unnamed adapter" } else { &self.name };
        let api = if self.backend == "BrowserWebGpu" { "WebGPU" } else { &self.backend };
        let kind = if self.is_software() { ", software emulation" } else { "" };
        format!("{name} through {api}{kind}")
    }
}

/// An open GPU device.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
    /// Whether the device can time kernels (`TIMESTAMP_QUERY`).
    pub timestamps: bool,
    /// While profiling, every dispatch is timed (see [`Gpu::start_profile`]).
    profiler: std::sync::Mutex<Option<profile::Profiler>>,
}

fn unavailable(reason: impl std::fmt::Display) -> Error {
    Error::GpuUnavailable(reason.to_string())
}

impl Gpu {
    /// Opens the best adapter that meets GroupViT's needs. Software adapters (llvmpipe,
    /// SwiftShader, WARP) emulate a GPU on the CPU and are far slower than the CPU path, so they are
    /// refused unless `allow_software` (tests use them as a GPU stand-in).
    pub async fn new(allow_software: bool) -> Result<Self, Error> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(format!("no GPU adapter ({e})")))?;
        let info = adapter.get_info();
        if info.device_type == wgpu::DeviceType::Cpu && !allow_software {
            return Err(unavailable(format!(
                "the only adapter, {}, is software emulation, slower than the CPU path",
                info.name
            )));
        }
        let offered = adapter.limits();
        let binding = offered.max_storage_buffer_binding_size;
        if binding < NEEDED_STORAGE_BINDING {
            return Err(unavailable(format!(
                "{} allows {} MiB per storage buffer; GroupViT needs {} MiB",
                info.name,
                binding >> 20,
                NEEDED_STORAGE_BINDING >> 20
            )));
        }
        if offered.max_compute_workgroup_storage_size < NEEDED_WORKGROUP_STORAGE {
            return Err(unavailable(format!(
                "{} has {} bytes of workgroup memory; the kernels need {}",
                info.name, offered.max_compute_workgroup_storage_size, NEEDED_WORKGROUP_STORAGE
            )));
        }
        // WebGPU's defaults, with the storage sizes raised to what the adapter offers.
        let required_limits = wgpu::Limits {
            max_storage_buffer_binding_size: offered.max_storage_buffer_binding_size,
            max_buffer_size: offered.max_buffer_size,
            max_compute_workgroup_storage_size: offered.max_compute_workgroup_storage_size,
            ..wgpu::Limits::default()
        };
        // Kernel timings for the benchmark, where the adapter can give them.
        let timestamps = adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY);
        let required_features = if timestamps { wgpu::Features::TIMESTAMP_QUERY } else { wgpu::Features::empty() };
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("groupseg"),
                required_limits,
                required_features,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(format!("{} refused a device ({e})", info.name)))?;
        Ok(Self {
            device,
            queue,
            timestamps,
            profiler: std::sync::Mutex::new(None),
            adapter: AdapterSummary {
                name: info.name,
                backend: format!("{:?}", info.backend),
                device_type: format!("{:?}", info.device_type),
                driver: format!("{} {}", info.driver, info.driver_info).trim().to_owned(),
                max_storage_buffer_binding_size: binding,
                max_compute_workgroup_storage_size: offered.max_compute_workgroup_storage_size,
            },
        })
    }

    /// [`Gpu::new`], blocking (native only; the browser must await).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(allow_software: bool) -> Result<Self, Error> {
        pollster::block_on(Self::new(allow_software))
    }
}

/// The device's errors over a stretch of work, caught instead of wgpu's default (a panic).
pub(crate) struct ErrorScopes {
    // Popped in reverse order of pushing.
    scopes: Vec<(wgpu::ErrorScopeGuard, &'static str)>,
}

impl Gpu {
    /// Starts catching validation, out-of-memory and internal errors; see [`ErrorScopes::check`].
    pub(crate) fn catch_errors(&self) -> ErrorScopes {
        let push = |f, what| (self.device.push_error_scope(f), what);
        ErrorScopes {
            scopes: vec![
                push(wgpu::ErrorFilter::Internal, "an internal error"),
                push(wgpu::ErrorFilter::OutOfMemory, "out of memory"),
                push(wgpu::ErrorFilter::Validation, "a validation error"),
            ],
        }
    }
}

impl ErrorScopes {
    /// The first error caught since [`Gpu::catch_errors`], as [`Error::Gpu`].
    pub(crate) async fn check(mut self) -> Result<(), Error> {
        let mut first = None;
        while let Some((scope, what)) = self.scopes.pop() {
            if let Some(e) = scope.pop().await {
                first.get_or_insert_with(|| Error::Gpu(format!("the GPU reported {what}: {e}")));
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// Workgroups along one dispatch dimension at most (WebGPU's default limit).
const MAX_WORKGROUPS_PER_DIMENSION: usize = 65535;

/// Compiles a WGSL module.
pub(crate) fn shader(gpu: &Gpu, label: &str, wgsl: &'static str) -> wgpu::ShaderModule {
    gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(wgsl.into()),
    })
}

/// A size as the `u32` shaders take, or an error naming it.
pub(crate) fn u32_of(v: usize) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::Gpu(format!("size {v} exceeds what a GPU kernel indexes (u32)")))
}

/// Workgroups for one thread per item, `per_group` threads a workgroup (see [`workgroups`]).
pub(crate) fn grid(threads: usize, per_group: usize) -> (u32, u32, u32) {
    workgroups(threads.div_ceil(per_group))
}

/// `count` workgroups laid out as (x, y, 1) with x ≤ 65535; the shaders rebuild the flat index as
/// `x + y · 65535` (times their workgroup size).
pub(crate) fn workgroups(count: usize) -> (u32, u32, u32) {
    let count = count.max(1);
    (count.min(MAX_WORKGROUPS_PER_DIMENSION) as u32, count.div_ceil(MAX_WORKGROUPS_PER_DIMENSION) as u32, 1)
}

/// A compute pipeline and the name its timings are reported under.
pub(crate) struct Kernel {
    pipeline: wgpu::ComputePipeline,
    name: &'static str,
}

/// A compute pipeline for `entry` in `module`, its bind group layout derived from the shader (so it
/// holds only the bindings that entry point uses).
pub(crate) fn pipeline(gpu: &Gpu, module: &wgpu::ShaderModule, entry: &'static str) -> Kernel {
    let pipeline = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    });
    Kernel { pipeline, name: entry }
}

/// A uniform buffer holding a shader's `Params` struct, given field by field as 32-bit words.
pub(crate) fn uniform(gpu: &Gpu, words: &[u32]) -> wgpu::Buffer {
    let bytes: Vec<u8> = words.iter().flat_map(|v| v.to_le_bytes()).collect();
    gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("params"),
        contents: &bytes,
        usage: wgpu::BufferUsages::UNIFORM,
    })
}

/// Binds each buffer at its binding and records one dispatch of `kernel`.
pub(crate) fn dispatch(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    kernel: &Kernel,
    buffers: &[(u32, &wgpu::Buffer)],
    workgroups: (u32, u32, u32),
) {
    dispatch_counted(gpu, encoder, kernel, buffers, workgroups, 0);
}

/// [`dispatch`] of a kernel doing `flops` floating-point operations (for the profile's GFLOP/s).
pub(crate) fn dispatch_counted(
    gpu: &Gpu,
    encoder: &mut wgpu::CommandEncoder,
    kernel: &Kernel,
    buffers: &[(u32, &wgpu::Buffer)],
    workgroups: (u32, u32, u32),
    flops: u64,
) {
    let entries: Vec<wgpu::BindGroupEntry> =
        buffers.iter().map(|&(binding, b)| wgpu::BindGroupEntry { binding, resource: b.as_entire_binding() }).collect();
    let bind = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &kernel.pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    let mut profiler = gpu.profiler.lock().unwrap_or_else(|e| e.into_inner());
    let timestamp_writes = profiler.as_mut().and_then(|p| p.next_pass(kernel.name, flops));
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes });
    pass.set_pipeline(&kernel.pipeline);
    pass.set_bind_group(0, &bind, &[]);
    pass.dispatch_workgroups(workgroups.0, workgroups.1, workgroups.2);
}
