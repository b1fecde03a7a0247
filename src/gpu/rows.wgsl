// Row-wise operations, one 256-thread workgroup per row, reductions in workgroup memory:
// LayerNorm (biased variance, as PyTorch), softmax and L2 normalisation (both in place).

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    _pad: u32,
}

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

const THREADS: u32 = 256u;
var<workgroup> scratch: array<f32, 256>;

fn sum_all(v: f32, li: u32) -> f32 {
    scratch[li] = v;
    workgroupBarrier();
    for (var s = THREADS / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            scratch[li] += scratch[li + s];
        }
        workgroupBarrier();
    }
    let total = scratch[0];
    workgroupBarrier();
    return total;
}

fn max_all(v: f32, li: u32) -> f32 {
    scratch[li] = v;
    workgroupBarrier();
    for (var s = THREADS / 2u; s > 0u; s >>= 1u) {
        if (li < s) {
            scratch[li] = max(scratch[li], scratch[li + s]);
        }
        workgroupBarrier();
    }
    let m = scratch[0];
    workgroupBarrier();
    return m;
}

// Rows beyond 65535 go on along the second dispatch dimension.
fn row_of(wg: vec3<u32>) -> u32 {
    return wg.x + wg.y * 65535u;
}

@compute @workgroup_size(256)
fn layer_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = row_of(wg);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var s = 0.0;
    for (var i = li; i < p.cols; i += THREADS) {
        s += x[base + i];
    }
    let mean = sum_all(s, li) / f32(p.cols);
    var sq = 0.0;
    for (var i = li; i < p.cols; i += THREADS) {
        let d = x[base + i] - mean;
        sq += d * d;
    }
    let inv = inverseSqrt(sum_all(sq, li) / f32(p.cols) + p.eps);
    for (var i = li; i < p.cols; i += THREADS) {
        y[base + i] = (x[base + i] - mean) * inv * weight[i] + bias[i];
    }
}

@compute @workgroup_size(256)
fn softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = row_of(wg);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var m = -3.402823e38;
    for (var i = li; i < p.cols; i += THREADS) {
        m = max(m, x[base + i]);
    }
    let row_max = max_all(m, li);
    var s = 0.0;
    for (var i = li; i < p.cols; i += THREADS) {
        let e = exp(x[base + i] - row_max);
        x[base + i] = e;
        s += e;
    }
    let inv = 1.0 / sum_all(s, li);
    for (var i = li; i < p.cols; i += THREADS) {
        x[base + i] *= inv;
    }
}

// x / ‖x‖ in place (the CPU path's l2_normalize: no epsilon).
@compute @workgroup_size(256)
fn l2_normalize(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = row_of(wg);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var sq = 0.0;
    for (var i = li; i < p.cols; i += THREADS) {
        sq += x[base + i] * x[base + i];
    }
    let inv = 1.0 / sqrt(sum_all(sq, li));
    for (var i = li; i < p.cols; i += THREADS) {
        x[base + i] *= inv;
    }
}
