// Elementwise and layout kernels, one thread per output element.

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// y = x + z, with z repeated every p.repeat elements (a residual when p.repeat = len, a broadcast
// otherwise).
@compute @workgroup_size(THREADS)
fn add(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = flat_thread(gid, THREADS);
    if (i < p.len) {
        y[i] = x[i] + z[i % p.repeat];
    }
}

// x (outer, rows, cols, inner) → y (outer, cols, rows, inner), i indexing y: head split and merge,
// token-mixing transposes.
@compute @workgroup_size(THREADS)
fn transpose(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = flat_thread(gid, THREADS);
    if (i >= p.len) {
        return;
    }
    let e = i % p.inner;
    let rest = i / p.inner;
    let r = rest % p.rows;
    let c = (rest / p.rows) % p.cols;
    let o = rest / (p.rows * p.cols);
    y[i] = x[((o * p.rows + r) * p.cols + c) * p.inner + e];
}
