// The grouping block's assignment, on raw group–token scores (B, G, N):
// `columns`: per image token, softmax over groups (the soft map kept for segmentation) and the
//            one-hot of the argmax group (first on ties, like torch.argmax);
// `rows`:    per group, the one-hot divided by the group's token count + assign_eps.

@group(0) @binding(0) var<storage, read> raw: array<f32>;
@group(0) @binding(1) var<storage, read_write> soft: array<f32>;
@group(0) @binding(2) var<storage, read_write> hard: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(THREADS)
fn columns(@builtin(global_invocation_id) gid: vec3<u32>) {
    let col = flat_thread(gid, THREADS);
    if (col >= p.batch * p.tokens) {
        return;
    }
    let b = col / p.tokens;
    let n = col % p.tokens;
    let base = b * p.groups * p.tokens + n;
    var best = 0u;
    var m = raw[base];
    for (var g = 1u; g < p.groups; g++) {
        let v = raw[base + g * p.tokens];
        if (v > m) {
            m = v;
            best = g;
        }
    }
    var s = 0.0;
    for (var g = 0u; g < p.groups; g++) {
        s += exp(raw[base + g * p.tokens] - m);
    }
    for (var g = 0u; g < p.groups; g++) {
        let i = base + g * p.tokens;
        soft[i] = exp(raw[i] - m) / s;
        hard[i] = select(0.0, 1.0, g == best);
    }
}

@compute @workgroup_size(REDUCE_THREADS)
fn rows(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row = flat_workgroup(wg);
    if (row >= p.batch * p.groups) {
        return;
    }
    let base = row * p.tokens;
    var s = 0.0;
    for (var i = li; i < p.tokens; i += REDUCE_THREADS) {
        s += hard[base + i];
    }
    let inv = 1.0 / (workgroup_sum(s, li) + p.eps);
    for (var i = li; i < p.tokens; i += REDUCE_THREADS) {
        hard[base + i] *= inv;
    }
}
