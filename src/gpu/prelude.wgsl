// The prelude of every groupseg shader (gpu/mod.rs puts it after the constants Rust gives and
// before the shader's `Params` struct and body).

const LOWEST: f32 = -3.402823e38;

// The flat index of a thread of a dispatch `grid` laid out as (x, y) with at most MAX_WORKGROUPS_X
// workgroups of `threads` along x.
fn flat_thread(gid: vec3<u32>, threads: u32) -> u32 {
    return gid.x + gid.y * MAX_WORKGROUPS_X * threads;
}

// The flat index of a workgroup of such a dispatch (kernels with one workgroup per row).
fn flat_workgroup(wg: vec3<u32>) -> u32 {
    return wg.x + wg.y * MAX_WORKGROUPS_X;
}

// Workgroup-wide reductions over REDUCE_THREADS values (one per thread), for kernels whose
// workgroup has REDUCE_THREADS threads; every thread gets the result.
var<workgroup> scratch: array<f32, REDUCE_THREADS>;

fn workgroup_sum(v: f32, li: u32) -> f32 {
    scratch[li] = v;
    workgroupBarrier();
    for (var s = REDUCE_THREADS / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            scratch[li] += scratch[li + s];
        }
        workgroupBarrier();
    }
    let total = scratch[0];
    workgroupBarrier();
    return total;
}

fn workgroup_max(v: f32, li: u32) -> f32 {
    scratch[li] = v;
    workgroupBarrier();
    for (var s = REDUCE_THREADS / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            scratch[li] = max(scratch[li], scratch[li + s]);
        }
        workgroupBarrier();
    }
    let m = scratch[0];
    workgroupBarrier();
    return m;
}

// One output coordinate's source samples and weights when resizing `in_len` samples to `out_len`,
// as PyTorch's `interpolate(..., mode="bilinear", align_corners=False)`.
struct Tap {
    i0: u32,
    i1: u32,
    w0: f32,
    w1: f32,
}

fn tap(in_len: u32, out_len: u32, d: u32) -> Tap {
    let scale = f32(in_len) / f32(out_len);
    let src = max(scale * (f32(d) + 0.5) - 0.5, 0.0);
    let i0 = min(u32(src), in_len - 1u);
    let i1 = min(i0 + 1u, in_len - 1u);
    let l1 = src - f32(i0);
    return Tap(i0, i1, 1.0 - l1, l1);
}
