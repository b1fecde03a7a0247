// C[b] = act(A[b] · op(B[b]) + bias): A is M×K row-major; B is N×K (op = transpose: weights, keys)
// or K×N (values). Each workgroup computes a TILE×TILE tile of C, each thread a 4×4 block held in
// four vec4 registers, stepping through K in slices of TILE_K staged in workgroup memory.
// B_FORMAT (a constant from matmul.rs, one pipeline each) says how B is stored: f32 (`b`), or a
// weight kept as the checkpoint gave it (`b_words`), widened exactly as its slice is staged. The
// one body keeps every loop in the entry point: software adapters ran it slower split into functions.

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;
// A weight (N×K, shared by the batch) in 32-bit words, each holding consecutive values of a row:
// two f16 (B_F16) or four int8 codes (B_INT8); rows start on a word, padded with zeros.
@group(0) @binding(5) var<storage, read> b_words: array<u32>;
// One factor per row of a narrow B, applied to the finished products: int8 rows' scales,
// w[n][k] = (code − 128) × b_scales[n], and for f16 rows a scaling folded into the layer.
@group(0) @binding(6) var<storage, read> b_scales: array<f32>;

// TILE × TILE outputs per workgroup of TILE_THREADS × TILE_THREADS threads (4 × 4 each, held as
// vec4s below), stepping through K in slices of TILE_K (constants from matmul.rs).
const BM: u32 = TILE;
const BN: u32 = TILE;
const BK: u32 = TILE_K;
const THREADS: u32 = TILE_THREADS * TILE_THREADS;

// k-major tiles of vec4s, so a thread reads its 4 consecutive rows (columns) in one load.
var<workgroup> tile_a: array<vec4<f32>, TILE * TILE_K / 4>;
var<workgroup> tile_b: array<vec4<f32>, TILE * TILE_K / 4>;

// erf as a ratio of polynomials (XLA/Eigen's f32 form), the same as the CPU kernels.
fn erf(v: f32) -> f32 {
    let x = clamp(v, -4.0, 4.0);
    let x2 = x * x;
    var num = x2 * -2.72614225801306e-10 + 2.77068142495902e-08;
    num = num * x2 - 2.10102402082508e-06;
    num = num * x2 - 5.69250639462346e-05;
    num = num * x2 - 7.34990630326855e-04;
    num = num * x2 - 2.95459980854025e-03;
    num = num * x2 - 1.60960333262415e-02;
    var den = x2 * -1.45660718464996e-05 - 2.13374055278905e-04;
    den = den * x2 - 1.68282697438203e-03;
    den = den * x2 - 7.37332916720468e-03;
    den = den * x2 - 1.42647390514189e-02;
    return x * num / den;
}

fn finish(v: f32, col: u32) -> f32 {
    if (p.epilogue == EPILOGUE_NONE) {
        return v;
    }
    let x = v + bias[col];
    switch p.epilogue {
        case EPILOGUE_BIAS_GELU_ERF: { return 0.5 * x * (1.0 + erf(x * 0.7071067811865476)); }
        case EPILOGUE_BIAS_QUICK_GELU: { return x / (1.0 + exp(-1.702 * x)); }
        case EPILOGUE_BIAS_RELU: { return max(x, 0.0); }
        default: { return x; }
    }
}

@compute @workgroup_size(TILE_THREADS, TILE_THREADS)
fn matmul(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let row0 = wg.y * BM;
    let col0 = wg.x * BN;
    let a_base = wg.z * p.a_batch_stride;
    let b_base = wg.z * p.b_batch_stride;
    let c_base = wg.z * p.c_batch_stride;

    // One vec4 per row of the thread's 4 × 4 block: vector FMAs, and no array indexed at run time
    // (which software adapters keep in memory rather than registers).
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        // The workgroup's threads stage TILE × TILE_K values of each operand; neighbouring threads
        // read neighbouring addresses. A: 4 values each.
        for (var s = 0u; s < 4u; s++) {
            let idx = li + s * THREADS;
            let r = idx / BK;
            let kk = idx % BK;
            let gr = row0 + r;
            let gk = k0 + kk;
            var va = 0.0;
            if (gr < p.m && gk < p.k) {
                va = a[a_base + gr * p.k + gk];
            }
            tile_a[kk * (BM / 4u) + r / 4u][r % 4u] = va;
        }
        if (B_FORMAT == B_F32) {
            // 4 values each, either layout.
            for (var s = 0u; s < 4u; s++) {
                let idx = li + s * THREADS;
                var vb = 0.0;
                if (p.b_transposed == 1u) {
                    let n = idx / BK;
                    let kk = idx % BK;
                    let gn = col0 + n;
                    let gk = k0 + kk;
                    if (gn < p.n && gk < p.k) {
                        vb = b[b_base + gn * p.k + gk];
                    }
                    tile_b[kk * (BN / 4u) + n / 4u][n % 4u] = vb;
                } else {
                    let n = idx % BN;
                    let kb = idx / BN;
                    let gn = col0 + n;
                    let gkb = k0 + kb;
                    if (gn < p.n && gkb < p.k) {
                        vb = b[b_base + gkb * p.n + gn];
                    }
                    tile_b[kb * (BN / 4u) + n / 4u][n % 4u] = vb;
                }
            }
        } else if (B_FORMAT == B_F16) {
            // TILE × TILE_K / 2 words, 2 each.
            let row_words = (p.k + 1u) / 2u;
            for (var s = 0u; s < 2u; s++) {
                let idx = li + s * THREADS;
                let n = idx / (BK / 2u);
                let kw = idx % (BK / 2u);
                let gn = col0 + n;
                let gw = k0 / 2u + kw;
                var v = vec2<f32>(0.0);
                if (gn < p.n && gw < row_words) {
                    v = unpack2x16float(b_words[gn * row_words + gw]);
                }
                tile_b[(kw * 2u) * (BN / 4u) + n / 4u][n % 4u] = v.x;
                tile_b[(kw * 2u + 1u) * (BN / 4u) + n / 4u][n % 4u] = v.y;
            }
        } else {
            // TILE × TILE_K / 4 words, one each; a code widens exactly to code − 128 (the row's
            // scale is applied to the finished products).
            let row_words = (p.k + 3u) / 4u;
            let n = li / (BK / 4u);
            let kw = li % (BK / 4u);
            let gn = col0 + n;
            let gw = k0 / 4u + kw;
            var v = vec4<f32>(0.0);
            if (gn < p.n && gw < row_words) {
                let w = b_words[gn * row_words + gw];
                v = vec4<f32>(vec4<u32>(w & 0xffu, (w >> 8u) & 0xffu, (w >> 16u) & 0xffu, w >> 24u)) - vec4<f32>(128.0);
            }
            tile_b[(kw * 4u) * (BN / 4u) + n / 4u][n % 4u] = v.x;
            tile_b[(kw * 4u + 1u) * (BN / 4u) + n / 4u][n % 4u] = v.y;
            tile_b[(kw * 4u + 2u) * (BN / 4u) + n / 4u][n % 4u] = v.z;
            tile_b[(kw * 4u + 3u) * (BN / 4u) + n / 4u][n % 4u] = v.w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let av = tile_a[kk * (BM / 4u) + lid.y];
            let bv = tile_b[kk * (BN / 4u) + lid.x];
            acc0 = fma(vec4<f32>(av.x), bv, acc0);
            acc1 = fma(vec4<f32>(av.y), bv, acc1);
            acc2 = fma(vec4<f32>(av.z), bv, acc2);
            acc3 = fma(vec4<f32>(av.w), bv, acc3);
        }
        workgroupBarrier();
    }

    if (B_FORMAT != B_F32) {
        var f = vec4<f32>(0.0);
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x * 4u + j;
            if (col < p.n) {
                f[j] = b_scales[col];
            }
        }
        acc0 *= f;
        acc1 *= f;
        acc2 *= f;
        acc3 *= f;
    }

    let rows = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + lid.y * 4u + i;
        if (row >= p.m) {
            continue;
        }
        for (var j = 0u; j < 4u; j++) {
            let col = col0 + lid.x * 4u + j;
            if (col < p.n) {
                c[c_base + row * p.n + col] = finish(rows[i][j], col);
            }
        }
    }
}
