//! The GPU path: one place that opens a wgpu adapter and device (WebGPU in the browser; Vulkan,
//! Metal or DX12 natively), asks for the limits GroupViT needs within what the adapter offers, and
//! says what it got. When no usable GPU is there the error says why, so callers fall back to the CPU.
//! Kernels live beside this file, each with its WGSL.

pub mod buffer;
pub mod matmul;
pub mod ops;
pub mod rows;
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

/// An open GPU device.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter: AdapterSummary,
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
        let binding = u64::from(offered.max_storage_buffer_binding_size);
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
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("groupseg"),
                required_limits,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(format!("{} refused a device ({e})", info.name)))?;
        Ok(Self {
            device,
            queue,
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
