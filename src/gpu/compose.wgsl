// From groups to a label per pixel, as `crate::segment` does it on the CPU (NVlabs' inference):
// `rank`:     per window and label, whether the label is in the window's top-k (softmax of the
//             whole-image affinity; ties to the lower index, as a stable sort);
// `affinity`: per window and group, softmax over the allowed labels × softmax over all labels;
// `best`:     per window, the best foreground affinity (caps the background threshold);
// `compose`:  per pixel of one window, the argmax group of the bilinearly resized grouping maps,
//             whose affinity row is added to the photo's class sums (background counted apart);
// `average`:  per pixel, the sums divided by the number of windows covering it;
// `label`:    per output pixel, the class sums resized bilinearly and their argmax.
// Resizing is PyTorch's `interpolate(..., mode="bilinear", align_corners=False)` (the prelude's
// `tap`).

@group(0) @binding(0) var<storage, read> image_logits: array<f32>;
@group(0) @binding(1) var<storage, read> group_logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> allowed: array<u32>;
@group(0) @binding(3) var<storage, read_write> affinity: array<f32>;
@group(0) @binding(4) var<storage, read> maps: array<f32>;
@group(0) @binding(5) var<storage, read_write> sums: array<f32>;
@group(0) @binding(6) var<storage, read_write> counts: array<f32>;
@group(0) @binding(7) var<storage, read_write> labels_out: array<u32>;
@group(0) @binding(8) var<storage, read_write> scores_out: array<f32>;
@group(0) @binding(9) var<uniform> p: Params;
@group(0) @binding(10) var<storage, read_write> window_best: array<f32>;

@compute @workgroup_size(THREADS)
fn rank(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = flat_thread(gid, THREADS);
    let c = p.labels;
    if (i >= p.batch * c) {
        return;
    }
    let base = (i / c) * c;
    let me = i % c;
    var m = LOWEST;
    for (var j = 0u; j < c; j++) {
        m = max(m, image_logits[base + j] * p.scale);
    }
    var s = 0.0;
    for (var j = 0u; j < c; j++) {
        s += exp(image_logits[base + j] * p.scale - m);
    }
    let mine = exp(image_logits[i] * p.scale - m) / s;
    var above = 0u;
    for (var j = 0u; j < c; j++) {
        let other = exp(image_logits[base + j] * p.scale - m) / s;
        if (other > mine || (other == mine && j < me)) {
            above++;
        }
    }
    allowed[i] = select(0u, 1u, above < p.top_k);
}

@compute @workgroup_size(THREADS)
fn affinity_rows(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = flat_thread(gid, THREADS);
    let c = p.labels;
    if (i >= p.batch * p.groups) {
        return;
    }
    let base = i * c;
    let mask = (i / p.groups) * c;
    var m = LOWEST;
    var m_allowed = LOWEST;
    for (var j = 0u; j < c; j++) {
        let v = group_logits[base + j] * p.scale;
        m = max(m, v);
        if (allowed[mask + j] != 0u) {
            m_allowed = max(m_allowed, v);
        }
    }
    var s = 0.0;
    var s_allowed = 0.0;
    for (var j = 0u; j < c; j++) {
        let v = group_logits[base + j] * p.scale;
        s += exp(v - m);
        if (allowed[mask + j] != 0u) {
            s_allowed += exp(v - m_allowed);
        }
    }
    for (var j = 0u; j < c; j++) {
        let v = group_logits[base + j] * p.scale;
        var a = 0.0;
        if (allowed[mask + j] != 0u) {
            a = (exp(v - m_allowed) / s_allowed) * (exp(v - m) / s);
        }
        affinity[base + j] = a;
    }
}

@compute @workgroup_size(THREADS)
fn best(@builtin(global_invocation_id) gid: vec3<u32>) {
    let b = flat_thread(gid, THREADS);
    if (b >= p.batch) {
        return;
    }
    let n = p.groups * p.labels;
    var m = 0.0;
    for (var j = 0u; j < n; j++) {
        m = max(m, affinity[b * n + j]);
    }
    window_best[b] = m;
}

@compute @workgroup_size(THREADS)
fn compose(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = flat_thread(gid, THREADS);
    if (i >= p.win_h * p.win_w) {
        return;
    }
    let y = i / p.win_w;
    let x = i % p.win_w;
    let ty = tap(p.grid_h, p.win_h, y);
    let tx = tap(p.grid_w, p.win_w, x);
    let plane = p.grid_h * p.grid_w;
    let maps_base = p.window * p.groups * plane;
    // The argmax group (the first on ties, like torch.argmax).
    var best_group = 0u;
    var best_v = LOWEST;
    for (var g = 0u; g < p.groups; g++) {
        let r0 = maps_base + g * plane + ty.i0 * p.grid_w;
        let r1 = maps_base + g * plane + ty.i1 * p.grid_w;
        let top = tx.w0 * maps[r0 + tx.i0] + tx.w1 * maps[r0 + tx.i1];
        let bot = tx.w0 * maps[r1 + tx.i0] + tx.w1 * maps[r1 + tx.i1];
        let v = ty.w0 * top + ty.w1 * bot;
        if (g == 0u || v > best_v) {
            best_v = v;
            best_group = g;
        }
    }
    let photo_plane = p.height * p.width;
    let pixel = (p.y0 + y) * p.width + p.x0 + x;
    let row = (p.window * p.groups + best_group) * p.labels;
    var top_score = 0.0;
    for (var j = 0u; j < p.labels; j++) {
        let v = affinity[row + j];
        sums[(j + 1u) * photo_plane + pixel] += v;
        top_score = max(top_score, v);
    }
    if (p.has_background != 0u && top_score < min(p.threshold, window_best[p.window])) {
        sums[pixel] += 1.0;
    }
    counts[pixel] += 1.0;
}

@compute @workgroup_size(THREADS)
fn average(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = flat_thread(gid, THREADS);
    let plane = p.height * p.width;
    if (i >= plane) {
        return;
    }
    let n = counts[i];
    for (var k = 0u; k <= p.labels; k++) {
        sums[k * plane + i] /= n;
    }
}

@compute @workgroup_size(THREADS)
fn label(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = flat_thread(gid, THREADS);
    if (i >= p.out_h * p.out_w) {
        return;
    }
    let ty = tap(p.height, p.out_h, i / p.out_w);
    let tx = tap(p.width, p.out_w, i % p.out_w);
    let plane = p.height * p.width;
    let i00 = ty.i0 * p.width + tx.i0;
    let i01 = ty.i0 * p.width + tx.i1;
    let i10 = ty.i1 * p.width + tx.i0;
    let i11 = ty.i1 * p.width + tx.i1;
    var best_k = 0u;
    var best_v = LOWEST;
    for (var k = 0u; k <= p.labels; k++) {
        let s = k * plane;
        let v = ty.w0 * (tx.w0 * sums[s + i00] + tx.w1 * sums[s + i01])
            + ty.w1 * (tx.w0 * sums[s + i10] + tx.w1 * sums[s + i11]);
        if (k == 0u || v > best_v) {
            best_v = v;
            best_k = k;
        }
    }
    labels_out[i] = best_k;
    scores_out[i] = best_v;
}
