// Pixel-adaptive mask refinement, as `crate::refine` does it on the CPU, after `compose.wgsl`'s
// averaged class sums:
// `area`:     per refinement cell, each label's mean score over the cell's pixels of the resized
//             photo (adaptive average pooling), cell-major;
// `affinity`: per cell, the softmax weights of its neighbours (`offsets`, clamped at the borders)
//             from the guide's colours;
// `step`:     one PAMR pass: each cell's scores become its neighbours' weighted by the affinity;
// `label`:    per output pixel, the background's score (the threshold capped by the best
//             group–label affinity of any window) and the refined scores resized bilinearly, and
//             their argmax.
// Loops run in the CPU's order, so the sums round alike.

@group(0) @binding(0) var<storage, read> sums: array<f32>;
@group(0) @binding(1) var<storage, read_write> scores: array<f32>;
@group(0) @binding(2) var<storage, read> guide: array<f32>;
@group(0) @binding(3) var<storage, read> offsets: array<f32>;
@group(0) @binding(4) var<storage, read_write> weights: array<f32>;
@group(0) @binding(5) var<storage, read> src: array<f32>;
@group(0) @binding(6) var<storage, read> window_best: array<f32>;
@group(0) @binding(7) var<storage, read_write> labels_out: array<u32>;
@group(0) @binding(8) var<storage, read_write> scores_out: array<f32>;
@group(0) @binding(9) var<uniform> p: Params;

// The flat index of neighbour `o` of cell (y, x), clamped at the borders.
fn neighbour(y: u32, x: u32, o: u32) -> u32 {
    let ny = clamp(i32(y) + i32(offsets[2u * o]), 0, i32(p.cells_h) - 1);
    let nx = clamp(i32(x) + i32(offsets[2u * o + 1u]), 0, i32(p.cells_w) - 1);
    return u32(ny) * p.cells_w + u32(nx);
}

@compute @workgroup_size(THREADS)
fn area(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = flat_thread(gid, THREADS);
    if (i >= p.cells_h * p.cells_w) {
        return;
    }
    let y = i / p.cells_w;
    let x = i % p.cells_w;
    let y0 = y * p.height / p.cells_h;
    let y1 = ((y + 1u) * p.height + p.cells_h - 1u) / p.cells_h;
    let x0 = x * p.width / p.cells_w;
    let x1 = ((x + 1u) * p.width + p.cells_w - 1u) / p.cells_w;
    let plane = p.height * p.width;
    let n = f32((y1 - y0) * (x1 - x0));
    for (var k = 0u; k < p.labels; k++) {
        let base = (k + 1u) * plane;
        var sum = 0.0;
        for (var yy = y0; yy < y1; yy++) {
            var row = 0.0;
            for (var xx = x0; xx < x1; xx++) {
                row += sums[base + yy * p.width + xx];
            }
            sum += row;
        }
        scores[i * p.labels + k] = sum / n;
    }
}

@compute @workgroup_size(THREADS)
fn affinity(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = flat_thread(gid, THREADS);
    let cells = p.cells_h * p.cells_w;
    if (i >= cells) {
        return;
    }
    let y = i / p.cells_w;
    let x = i % p.cells_w;
    var logits: array<f32, MAX_NEIGHBOURS>;
    for (var o = 0u; o < p.neighbours; o++) {
        logits[o] = 0.0;
    }
    let dilations = f32(p.neighbours / 8u);
    let samples = p.neighbours / 8u * 9u;
    for (var c = 0u; c < 3u; c++) {
        let base = c * cells;
        let v = guide[base + i];
        var sum = v * dilations;
        for (var o = 0u; o < p.neighbours; o++) {
            sum += guide[base + neighbour(y, x, o)];
        }
        let mean = sum / f32(samples);
        var sq = (v - mean) * (v - mean) * dilations;
        for (var o = 0u; o < p.neighbours; o++) {
            let d = guide[base + neighbour(y, x, o)] - mean;
            sq += d * d;
        }
        let unit = 1e-8 + 0.1 * sqrt(sq / f32(samples - 1u));
        for (var o = 0u; o < p.neighbours; o++) {
            logits[o] -= abs(v - guide[base + neighbour(y, x, o)]) / unit / 3.0;
        }
    }
    var m = LOWEST;
    for (var o = 0u; o < p.neighbours; o++) {
        m = max(m, logits[o]);
    }
    var total = 0.0;
    for (var o = 0u; o < p.neighbours; o++) {
        logits[o] = exp(logits[o] - m);
        total += logits[o];
    }
    for (var o = 0u; o < p.neighbours; o++) {
        weights[i * p.neighbours + o] = logits[o] / total;
    }
}

@compute @workgroup_size(THREADS)
fn step(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = flat_thread(gid, THREADS);
    if (i >= p.cells_h * p.cells_w) {
        return;
    }
    let y = i / p.cells_w;
    let x = i % p.cells_w;
    for (var k = 0u; k < p.labels; k++) {
        var acc = 0.0;
        for (var o = 0u; o < p.neighbours; o++) {
            acc += weights[i * p.neighbours + o] * src[neighbour(y, x, o) * p.labels + k];
        }
        scores[i * p.labels + k] = acc;
    }
}

@compute @workgroup_size(THREADS)
fn label(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = flat_thread(gid, THREADS);
    if (i >= p.out_h * p.out_w) {
        return;
    }
    var background = 0.0;
    if (p.has_background != 0u) {
        var best = 0.0;
        for (var b = 0u; b < p.batch; b++) {
            best = max(best, window_best[b]);
        }
        background = min(p.threshold, best);
    }
    let ty = tap(p.cells_h, p.out_h, i / p.out_w);
    let tx = tap(p.cells_w, p.out_w, i % p.out_w);
    let c00 = (ty.i0 * p.cells_w + tx.i0) * p.labels;
    let c01 = (ty.i0 * p.cells_w + tx.i1) * p.labels;
    let c10 = (ty.i1 * p.cells_w + tx.i0) * p.labels;
    let c11 = (ty.i1 * p.cells_w + tx.i1) * p.labels;
    var best_k = 0u;
    var best_v = ty.w0 * (tx.w0 * background + tx.w1 * background) + ty.w1 * (tx.w0 * background + tx.w1 * background);
    for (var k = 0u; k < p.labels; k++) {
        let v = ty.w0 * (tx.w0 * src[c00 + k] + tx.w1 * src[c01 + k]) + ty.w1 * (tx.w0 * src[c10 + k] + tx.w1 * src[c11 + k]);
        if (v > best_v) {
            best_v = v;
            best_k = k + 1u;
        }
    }
    labels_out[i] = best_k;
    scores_out[i] = best_v;
}
