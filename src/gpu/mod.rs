//! The GPU path: one place that opens a wgpu adapter and device (WebGPU in the browser; Vulkan,
//! Metal or DX12 natively), asks for the limits GroupViT needs within what the adapter offers, and
//! says what it got. When no usable GPU is there the error says why, so callers fall back to the CPU.
//!
//! Kernels live beside their Rust (`matmul`, `rows`, `ops`, `compose`), each shader compiled after
//! one prelude (`prelude.wgsl`) and the constants and `Params` struct Rust hands it, so the two
//! sides cannot disagree on a layout. `layers`, `vision` and `projection` are GroupViT's modules
//! built from their CPU twins in `crate::model`; `recorder` records kernels into one command
//! buffer; `compose` is the segmentation composition; `encoder` is the image encoder a segmenter
//! runs.

use std::sync::atomic::{AtomicUsize, Ordering};

use wgpu::util::DeviceExt;

pub mod buffer;
pub mod compose;
pub mod encoder;
pub mod layers;
pub mod matmul;
pub mod ops;
pub mod profile;
pub mod projection;
pub mod recorder;
pub mod refine;
pub mod rows;
pub mod vision;

use crate::error::Error;

/// Largest single tensor GroupViT binds: the token embedding (49408 × 256 f32, 48 MiB) and the
/// attention scores of three 448-pixel windows (3 × 6 × 848² f32, 50 MiB).
pub const NEEDED_STORAGE_BINDING: u64 = 64 << 20;
/// Workgroup memory the matmul tiles use (two 64 × 16 f32 tiles).
pub const NEEDED_WORKGROUP_STORAGE: u32 = 8 << 10;

/// What the adapter is, for the user and the logs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    profiler: std::sync::Mutex<Option<PassLog>>,
    /// Bytes uploaded so far (see [`Gpu::uploaded_bytes`]).
    uploaded: AtomicUsize,
}

fn unavailable(reason: impl std::fmt::Display) -> Error {
    Error::GpuUnavailable(reason.to_string())
}

/// Why no adapter came, in one plain sentence: wgpu's own error lists every backend it was built
/// without, which tells a person nothing.
fn no_adapter_reason() -> String {
    #[cfg(web)]
    {
        let navigator = js_sys::Reflect::get(&js_sys::global(), &"navigator".into()).ok();
        let gpu = navigator.and_then(|n| js_sys::Reflect::get(&n, &"gpu".into()).ok());
        if gpu.is_some_and(|g| !g.is_undefined()) {
            "WebGPU offered no adapter (no usable GPU, or WebGPU is blocked in this browser)".into()
        } else {
            "this browser has no WebGPU".into()
        }
    }
    #[cfg(native)]
    {
        "no Vulkan, Metal or DirectX 12 driver here offers a GPU".into()
    }
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
            .map_err(|_| unavailable(no_adapter_reason()))?;
        let info = adapter.get_info();
        // Browsers may hide the adapter's name.
        let name = if info.name.is_empty() { "unnamed" } else { &info.name };
        if info.device_type == wgpu::DeviceType::Cpu && !allow_software {
            return Err(unavailable(format!("the only adapter, {name}, is software emulation, slower than the CPU path")));
        }
        let offered = adapter.limits();
        let binding = offered.max_storage_buffer_binding_size;
        if binding < NEEDED_STORAGE_BINDING {
            return Err(unavailable(format!(
                "{} allows {} MiB per storage buffer; GroupViT needs {} MiB",
                name,
                binding >> 20,
                NEEDED_STORAGE_BINDING >> 20
            )));
        }
        if offered.max_compute_workgroup_storage_size < NEEDED_WORKGROUP_STORAGE {
            return Err(unavailable(format!(
                "{} has {} bytes of workgroup memory; the kernels need {}",
                name, offered.max_compute_workgroup_storage_size, NEEDED_WORKGROUP_STORAGE
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
            .map_err(|e| unavailable(format!("{} refused a device ({e})", name)))?;
        Ok(Self {
            device,
            queue,
            timestamps,
            profiler: std::sync::Mutex::new(None),
            uploaded: AtomicUsize::new(0),
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

    /// Bytes uploaded to the device so far: read around an upload, the size of what it put there.
    pub fn uploaded_bytes(&self) -> usize {
        self.uploaded.load(Ordering::Relaxed)
    }

    pub(crate) fn count_upload(&self, bytes: usize) {
        self.uploaded.fetch_add(bytes, Ordering::Relaxed);
    }

    /// [`Gpu::new`], blocking (native only; the browser must await).
    #[cfg(native)]
    pub fn new_blocking(allow_software: bool) -> Result<Self, Error> {
        pollster::block_on(Self::new(allow_software))
    }
}

/// Timestamps one query set holds (wgpu's maximum per set): 2048 dispatches.
pub(crate) const QUERIES: u32 = 4096;

/// The dispatches timed while a profile is on (`profile` reads it out).
pub(crate) struct PassLog {
    pub(crate) set: wgpu::QuerySet,
    /// Kernel name and floating-point operations of each timed dispatch, in order.
    pub(crate) passes: Vec<(&'static str, u64)>,
}

impl PassLog {
    /// Timestamp writes for the next pass, while the query set has room.
    pub(crate) fn next_pass(&mut self, name: &'static str, flops: u64) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        let i = self.passes.len() as u32 * 2;
        if i + 2 > QUERIES {
            return None;
        }
        self.passes.push((name, flops));
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: Some(i),
            end_of_pass_write_index: Some(i + 1),
        })
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

/// Workgroups along one dispatch dimension at most (WebGPU's default limit). Larger dispatches
/// go on along y; the prelude's `flat_thread` and `flat_workgroup` undo the split.
pub(crate) const MAX_WORKGROUPS_X: usize = 65535;

/// Threads of the workgroups that reduce a row together (the prelude's `workgroup_sum`).
pub(crate) const REDUCE_THREADS: u32 = 256;

/// The WGSL every shader starts with.
const PRELUDE: &str = include_str!("prelude.wgsl");

/// A shader's `Params` uniform: a `#[repr(C)]` Rust struct of 32-bit fields whose WGSL declaration
/// is generated from it, so the host and the shader share one layout.
pub(crate) trait ShaderParams: bytemuck::Pod {
    /// `struct Params { … }` in WGSL.
    const WGSL: &'static str;
}

/// Declares a [`ShaderParams`] struct (u32 and f32 fields only; its size must be a multiple of 16
/// bytes, as uniforms are).
macro_rules! shader_params {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident: $ty:ident),* $(,)? }) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Debug, Default, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
        pub(crate) struct $name {
            $($(#[$fdoc])* pub $field: $ty),*
        }
        impl $crate::gpu::ShaderParams for $name {
            const WGSL: &'static str =
                concat!("struct Params {\n", $("    ", stringify!($field), ": ", stringify!($ty), ",\n",)* "}\n");
        }
        const _: () = assert!(std::mem::size_of::<$name>() % 16 == 0, "uniforms are sized in 16-byte steps");
    };
}
pub(crate) use shader_params;

/// Compiles a WGSL module: the dispatch constants and those Rust gives it (`const NAME: u32 = v;`),
/// the prelude, its `Params` struct, then `body`.
pub(crate) fn shader<P: ShaderParams>(gpu: &Gpu, label: &str, constants: &[(&str, u32)], body: &str) -> wgpu::ShaderModule {
    let mut source =
        format!("const MAX_WORKGROUPS_X: u32 = {MAX_WORKGROUPS_X}u;\nconst REDUCE_THREADS: u32 = {REDUCE_THREADS}u;\n");
    for (name, value) in constants {
        source.push_str(&format!("const {name}: u32 = {value}u;\n"));
    }
    source.push_str(PRELUDE);
    source.push_str(P::WGSL);
    source.push_str(body);
    gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    })
}

/// A size as the `u32` shaders take, or an error naming it.
pub(crate) fn u32_of(v: usize) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::Gpu(format!("size {v} exceeds what a GPU kernel indexes (u32)")))
}

/// Workgroups for one thread per item, `per_group` threads a workgroup (see [`workgroups`]).
pub(crate) fn grid(threads: usize, per_group: u32) -> (u32, u32, u32) {
    workgroups(threads.div_ceil(per_group as usize))
}

/// `count` workgroups laid out as (x, y, 1) with x ≤ [`MAX_WORKGROUPS_X`].
pub(crate) fn workgroups(count: usize) -> (u32, u32, u32) {
    let count = count.max(1);
    (count.min(MAX_WORKGROUPS_X) as u32, count.div_ceil(MAX_WORKGROUPS_X) as u32, 1)
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

/// A uniform buffer holding a shader's `Params`.
pub(crate) fn uniform<P: ShaderParams>(gpu: &Gpu, params: &P) -> wgpu::Buffer {
    gpu.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("params"),
        contents: bytemuck::bytes_of(params),
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
