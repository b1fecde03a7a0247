//! The 4-lane f32 vector the WebAssembly kernels are written over: simd128 in a module built with
//! it (fused multiply-adds with relaxed SIMD), plain arrays elsewhere, so that native tests check
//! the same kernels.

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod imp {
    use core::arch::wasm32::*;
    pub type V = v128;
    #[inline(always)]
    pub fn zero() -> V {
        f32x4_splat(0.0)
    }
    /// # Safety
    /// `p` must address four readable floats (no alignment needed).
    #[inline(always)]
    pub unsafe fn load(p: *const f32) -> V {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            v128_load(p as *const v128)
        }
    }
    /// # Safety
    /// `p` must address one readable float.
    #[inline(always)]
    pub unsafe fn splat(p: *const f32) -> V {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            v128_load32_splat(p as *const u32)
        }
    }
    /// # Safety
    /// `p` must address four writable floats (no alignment needed).
    #[inline(always)]
    pub unsafe fn store(p: *mut f32, v: V) {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            v128_store(p as *mut v128, v)
        }
    }
    /// Relaxed SIMD's fused multiply-add where the build has it: one `vfmadd231ps` in V8 on a
    /// machine with FMA instead of a multiply and an add (a 448-pixel segmentation 16 % faster).
    #[cfg(target_feature = "relaxed-simd")]
    #[inline(always)]
    pub fn mul_add(acc: V, a: V, b: V) -> V {
        f32x4_relaxed_madd(a, b, acc)
    }
    #[cfg(not(target_feature = "relaxed-simd"))]
    #[inline(always)]
    pub fn mul_add(acc: V, a: V, b: V) -> V {
        f32x4_add(acc, f32x4_mul(a, b))
    }
    #[inline(always)]
    pub fn add(a: V, b: V) -> V {
        f32x4_add(a, b)
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod imp {
    pub type V = [f32; 4];
    #[inline(always)]
    pub fn zero() -> V {
        [0.0; 4]
    }
    /// # Safety
    /// `p` must address four readable floats (no alignment needed).
    #[inline(always)]
    pub unsafe fn load(p: *const f32) -> V {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            std::ptr::read_unaligned(p as *const V)
        }
    }
    /// # Safety
    /// `p` must address one readable float.
    #[inline(always)]
    pub unsafe fn splat(p: *const f32) -> V {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            [*p; 4]
        }
    }
    /// # Safety
    /// `p` must address four writable floats (no alignment needed).
    #[inline(always)]
    pub unsafe fn store(p: *mut f32, v: V) {
        // SAFETY: the caller keeps this function's contract (its `# Safety`).
        unsafe {
            std::ptr::write_unaligned(p as *mut V, v)
        }
    }
    #[inline(always)]
    pub fn mul_add(acc: V, a: V, b: V) -> V {
        std::array::from_fn(|i| acc[i] + a[i] * b[i])
    }
    #[inline(always)]
    pub fn add(a: V, b: V) -> V {
        std::array::from_fn(|i| a[i] + b[i])
    }
}

pub use imp::*;
