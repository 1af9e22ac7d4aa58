// merge.wgsl — row-wise ops the Keras layers need around the recurrent kernels:
// Bidirectional's merge of its two directions (concat, sum, mul, ave) and its backward, and
// Dense's softmax over the last axis and its backward.
//
// Shapes: rows N (every axis but the last), width H.
//   merge_forward   i < N·W: concat out[n, :H] = a[n], out[n, H:] = b[n] (W = 2H);
//                   sum a + b; mul a ⊙ b; ave (a + b) / 2 (W = H)
//   merge_backward  i < N·H: da[n, h], db[n, h] from dout (concat: the two halves; sum: dout;
//                   ave: dout / 2)
//   product         i < N·H: dst = a ⊙ b (mul's gradients: dout ⊙ the other direction)
//   softmax_forward n < N:   out[n] = softmax(a[n]) (max-subtracted, f32)
//   softmax_backward n < N:  out[n] = y ⊙ (dy - Σ_j dy_j y_j), y = a (the forward output),
//                   dy = b
//
// Bindings (group 0):
//   0 p     uniform MergeParams (dynamic offset): n (rows), h (width), mode
//           (0 concat, 1 sum, 2 mul, 3 ave)
//   1 a     storage r   f32[N·H]  first direction / softmax input or output
//   2 b     storage r   f32[N·H]  second direction / softmax output gradient
//   3 dst   storage rw  f32[...]  merged output, da, or the softmax result / gradient
//   4 dst2  storage rw  f32[N·H]  db (merge_backward); any other buffer otherwise
// Memory: registers only. Workgroup 64; flat grids flattened from a 2-D dispatch.
// Limits: u32 indexing; the softmax entries loop over H (≤ the loop budget, host-checked).

struct MergeParams {
    n: u32,
    h: u32,
    mode: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: MergeParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst2: array<f32>;

fn flat_id(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid;
}

@compute @workgroup_size(64, 1, 1)
fn merge_forward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_id(lid, wid, nwg);
    if (p.mode == 0u) {
        if (i >= p.n * 2u * p.h) {
            return;
        }
        let n = i / (2u * p.h);
        let j = i % (2u * p.h);
        if (j < p.h) {
            dst[i] = a[n * p.h + j];
        } else {
            dst[i] = b[n * p.h + j - p.h];
        }
        return;
    }
    if (i >= p.n * p.h) {
        return;
    }
    var v = a[i] + b[i];
    if (p.mode == 2u) {
        v = a[i] * b[i];
    } else if (p.mode == 3u) {
        v = 0.5 * (a[i] + b[i]);
    }
    dst[i] = v;
}

// dout is bound as `a` ([N, 2H] for concat, [N, H] otherwise); mul uses `product` twice.
@compute @workgroup_size(64, 1, 1)
fn merge_backward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_id(lid, wid, nwg);
    if (i >= p.n * p.h) {
        return;
    }
    let n = i / p.h;
    let j = i % p.h;
    if (p.mode == 0u) {
        dst[i] = a[n * 2u * p.h + j];
        dst2[i] = a[n * 2u * p.h + p.h + j];
    } else if (p.mode == 3u) {
        dst[i] = 0.5 * a[i];
        dst2[i] = 0.5 * a[i];
    } else {
        dst[i] = a[i];
        dst2[i] = a[i];
    }
}

// dst = a ⊙ b: mul's gradients (dout ⊙ the other direction).
@compute @workgroup_size(64, 1, 1)
fn product(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_id(lid, wid, nwg);
    if (i >= p.n * p.h) {
        return;
    }
    dst[i] = a[i] * b[i];
}

@compute @workgroup_size(64, 1, 1)
fn softmax_forward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = flat_id(lid, wid, nwg);
    if (n >= p.n) {
        return;
    }
    let base = n * p.h;
    var m = a[base];
    for (var j = 1u; j < p.h; j++) {
        m = max(m, a[base + j]);
    }
    var s = 0.0;
    for (var j = 0u; j < p.h; j++) {
        s += exp(a[base + j] - m);
    }
    for (var j = 0u; j < p.h; j++) {
        dst[base + j] = exp(a[base + j] - m) / s;
    }
}

@compute @workgroup_size(64, 1, 1)
fn softmax_backward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = flat_id(lid, wid, nwg);
    if (n >= p.n) {
        return;
    }
    let base = n * p.h;
    var dot = 0.0;
    for (var j = 0u; j < p.h; j++) {
        dot += a[base + j] * b[base + j];
    }
    for (var j = 0u; j < p.h; j++) {
        dst[base + j] = a[base + j] * (b[base + j] - dot);
    }
}
