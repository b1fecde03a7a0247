// Elementwise and layout kernels, one thread per output element.

struct Params {
    len: u32,
    // add: length of the repeated operand; transpose: the (outer, r, c, inner) sizes.
    a: u32,
    b: u32,
    c: u32,
    d: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

fn index(gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * 65535u * 256u;
}

// y = x + z, with z repeated every p.a elements (a residual when p.a = len, a broadcast otherwise).
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i < p.len) {
        y[i] = x[i] + z[i % p.a];
    }
}

// x (outer, r, c, inner) → y (outer, c, r, inner), i indexing y: head split and merge,
// token-mixing transposes.
@compute @workgroup_size(256)
fn transpose(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = index(gid);
    if (i >= p.len) {
        return;
    }
    let r = p.b;
    let c = p.c;
    let inner = p.d;
    let e = i % inner;
    let rest = i / inner;
    let ro = rest % r;
    let co = (rest / r) % c;
    let o = rest / (r * c);
    y[i] = x[((o * r + ro) * c + co) * inner + e];
}
