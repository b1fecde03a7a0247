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

/// The 128-bit integer vectors WebAssembly's integer tiles are written over ([`super::dot`]): 16
/// bytes of codes, eight i16 lanes, four i32 lanes; simd128 in a module built with it, plain arrays
/// elsewhere (the same sums, so that native tests check those tiles exactly).
pub mod int {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    mod imp {
        use core::arch::wasm32::*;
        pub type Bytes = v128;
        pub type Halves = v128;
        pub type Words = v128;
        #[inline(always)]
        pub fn zero() -> Words {
            i32x4_splat(0)
        }
        /// # Safety
        /// `p` must address 16 readable bytes (no alignment needed).
        #[inline(always)]
        pub unsafe fn load(p: *const i8) -> Bytes {
            // SAFETY: the caller keeps this function's contract (its `# Safety`).
            unsafe { v128_load(p as *const v128) }
        }
        /// Four bytes in every 32-bit lane.
        ///
        /// # Safety
        /// `p` must address four readable bytes.
        #[inline(always)]
        pub unsafe fn splat4(p: *const u8) -> Bytes {
            // SAFETY: the caller keeps this function's contract (its `# Safety`).
            unsafe { v128_load32_splat(p as *const u32) }
        }
        /// # Safety
        /// `p` must address four writable i32 (no alignment needed).
        #[inline(always)]
        pub unsafe fn store(p: *mut i32, v: Words) {
            // SAFETY: the caller keeps this function's contract (its `# Safety`).
            unsafe { v128_store(p as *mut v128, v) }
        }
        /// `acc` plus, per 32-bit lane, the four products of `w`'s signed bytes and `x`'s (each
        /// under 128, which makes the relaxed instruction's result the same on every engine).
        #[cfg(target_feature = "relaxed-simd")]
        #[inline(always)]
        pub fn dot_add(w: Bytes, x: Bytes, acc: Words) -> Words {
            i32x4_relaxed_dot_i8x16_i7x16_add(w, x, acc)
        }
        /// Signed bytes 0..8 and 8..16 widened.
        #[inline(always)]
        pub fn widen(w: Bytes) -> [Halves; 2] {
            [i16x8_extend_low_i8x16(w), i16x8_extend_high_i8x16(w)]
        }
        /// Unsigned bytes 0..8 widened.
        #[inline(always)]
        pub fn widen_low_unsigned(x: Bytes) -> Halves {
            i16x8_extend_low_u8x16(x)
        }
        /// `acc` plus the pairwise sums of `a · b`.
        #[inline(always)]
        pub fn dot16_add(a: Halves, b: Halves, acc: Words) -> Words {
            i32x4_add(acc, i32x4_dot_i16x8(a, b))
        }
        /// `[l0 + l1, l2 + l3, h0 + h1, h2 + h3]`.
        #[inline(always)]
        pub fn pair_sums(l: Words, h: Words) -> Words {
            i32x4_add(i32x4_shuffle::<0, 2, 4, 6>(l, h), i32x4_shuffle::<1, 3, 5, 7>(l, h))
        }
    }

    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    mod imp {
        pub type Bytes = [u8; 16];
        pub type Halves = [i16; 8];
        pub type Words = [i32; 4];
        #[inline(always)]
        pub fn zero() -> Words {
            [0; 4]
        }
        /// # Safety
        /// `p` must address 16 readable bytes.
        #[inline(always)]
        pub unsafe fn load(p: *const i8) -> Bytes {
            // SAFETY: the caller keeps this function's contract (its `# Safety`).
            unsafe { std::ptr::read_unaligned(p as *const Bytes) }
        }
        /// # Safety
        /// `p` must address four readable bytes.
        #[inline(always)]
        pub unsafe fn splat4(p: *const u8) -> Bytes {
            // SAFETY: the caller keeps this function's contract (its `# Safety`).
            let four = unsafe { std::ptr::read_unaligned(p as *const [u8; 4]) };
            std::array::from_fn(|i| four[i % 4])
        }
        /// # Safety
        /// `p` must address four writable i32.
        #[inline(always)]
        pub unsafe fn store(p: *mut i32, v: Words) {
            // SAFETY: the caller keeps this function's contract (its `# Safety`).
            unsafe { std::ptr::write_unaligned(p as *mut Words, v) }
        }
        #[inline(always)]
        pub fn dot_add(w: Bytes, x: Bytes, acc: Words) -> Words {
            std::array::from_fn(|l| acc[l] + (0..4).map(|t| w[4 * l + t] as i8 as i32 * x[4 * l + t] as i32).sum::<i32>())
        }
        #[inline(always)]
        pub fn widen(w: Bytes) -> [Halves; 2] {
            [std::array::from_fn(|i| w[i] as i8 as i16), std::array::from_fn(|i| w[8 + i] as i8 as i16)]
        }
        #[inline(always)]
        pub fn widen_low_unsigned(x: Bytes) -> Halves {
            std::array::from_fn(|i| x[i] as i16)
        }
        #[inline(always)]
        pub fn dot16_add(a: Halves, b: Halves, acc: Words) -> Words {
            std::array::from_fn(|l| acc[l] + a[2 * l] as i32 * b[2 * l] as i32 + a[2 * l + 1] as i32 * b[2 * l + 1] as i32)
        }
        #[inline(always)]
        pub fn pair_sums(l: Words, h: Words) -> Words {
            [l[0] + l[1], l[2] + l[3], h[0] + h[1], h[2] + h[3]]
        }
    }

    pub use imp::*;
}
