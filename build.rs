//! Names for the two platforms the crate is built for, as wgpu names them: `web` (WebAssembly in a
//! browser) and `native`. Code asks which platform it runs on by these; only the CPU wing's `arch`
//! asks which CPU.
fn main() {
    cfg_aliases::cfg_aliases! {
        web: { target_arch = "wasm32" },
        native: { not(target_arch = "wasm32") },
    }
}
