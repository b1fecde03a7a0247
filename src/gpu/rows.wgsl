// Row-wise operations, one REDUCE_THREADS-thread workgroup per row, reductions in workgroup memory:
// LayerNorm (biased variance, as PyTorch), softmax and L2 normalisation (both in place).

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(REDUCE_THREADS)
fn layer_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = flat_workgroup(wg);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var s = 0.0;
    for (var i = li; i < p.cols; i += REDUCE_THREADS) {
        s += x[base + i];
    }
    let mean = workgroup_sum(s, li) / f32(p.cols);
    var sq = 0.0;
    for (var i = li; i < p.cols; i += REDUCE_THREADS) {
        let d = x[base + i] - mean;
        sq += d * d;
    }
    let inv = inverseSqrt(workgroup_sum(sq, li) / f32(p.cols) + p.eps);
    for (var i = li; i < p.cols; i += REDUCE_THREADS) {
        y[base + i] = (x[base + i] - mean) * inv * weight[i] + bias[i];
    }
}

@compute @workgroup_size(REDUCE_THREADS)
fn softmax(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = flat_workgroup(wg);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var m = LOWEST;
    for (var i = li; i < p.cols; i += REDUCE_THREADS) {
        m = max(m, x[base + i]);
    }
    let row_max = workgroup_max(m, li);
    var s = 0.0;
    for (var i = li; i < p.cols; i += REDUCE_THREADS) {
        let e = exp(x[base + i] - row_max);
        x[base + i] = e;
        s += e;
    }
    let inv = 1.0 / workgroup_sum(s, li);
    for (var i = li; i < p.cols; i += REDUCE_THREADS) {
        x[base + i] *= inv;
    }
}

// x / ‖x‖ in place (the CPU path's l2_normalize: no epsilon).
@compute @workgroup_size(REDUCE_THREADS)
fn l2_normalize(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = flat_workgroup(wg);
    if (row >= p.rows) {
        return;
    }
    let base = row * p.cols;
    var sq = 0.0;
    for (var i = li; i < p.cols; i += REDUCE_THREADS) {
        sq += x[base + i] * x[base + i];
    }
    let inv = 1.0 / sqrt(workgroup_sum(sq, li));
    for (var i = li; i < p.cols; i += REDUCE_THREADS) {
        x[base + i] *= inv;
    }
}
