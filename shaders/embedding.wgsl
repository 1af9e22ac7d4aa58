// embedding.wgsl — Keras/PyTorch Embedding on the device: the forward gather of table rows
// by token id, a deterministic backward (a counting sort of the positions by token, then
// each table row sums its positions' gradients in position order, so the result does not
// depend on scheduling), and the `mask_zero` lengths the recurrent layers consume.
//
// Shapes: tokens u32 [N] (N = B·T, batch-first (B, T)); table f32 [V, D]; out f32 [N, D].
// Token ids ≥ V read as zero rows in forward and are skipped in backward (the host API
// checks ids it uploads itself; ids made on the device are the caller's to keep in range).
//
// Entry points:
//   embed_forward  i < N·D:  out[i] = table[tok[i / D]·D + i % D]
//   embed_count    n < N:    work[tok[n]] += 1 (atomic u32: counts are order-free)
//   embed_scan     one workgroup: work[V + v] = Σ_{u<v} work[u] (exclusive prefix; each of
//                  the 256 invocations scans a contiguous chunk, then the chunk sums are
//                  scanned in workgroup memory)
//   embed_place    v < V:    the positions n with tok[n] = v, ascending, into
//                  work[2V + off[v] ..] (one invocation walks all N positions for a token
//                  that occurs; tokens that do not occur return at once)
//   embed_grad     i < V·D:  grad[i] = Σ_k dy[work[2V + off[v] + k]·D + d], k < count[v],
//                  v = i / D, d = i % D; zero for tokens that do not occur
//   mask_lengths   b < B:    lens[b] = 1 + the last t with tok[b·T + t] ≠ 0 (0 if none):
//                  post-padded sequences as packed lengths
//
// Bindings (group 0):
//   0 p     uniform EmbParams (dynamic offset): n (N), v (V), d (D), t (T), b (B)
//   1 tok   storage r   u32[N]           token ids
//   2 src   storage r   f32[V·D]/[N·D]   table (forward) or dy (grad)
//   3 work  storage rw  atomic<u32>[2V + N]  counts, offsets, sorted positions; or lens[B]
//   4 dst   storage rw  f32[N·D]/[V·D]   out (forward) or the table gradient (grad)
// Memory: registers, plus 256 u32 of workgroup memory in embed_scan.
// Workgroup 64 invocations (256 for embed_scan, one workgroup); flat grids flattened from a
// 2-D dispatch. Limits: u32 indexing; embed_place loops N times and embed_grad count[v]
// times per invocation, embed_scan V/256 times: on llvmpipe (65535 iterations per
// invocation) the host refuses N above the loop budget.

struct EmbParams {
    n: u32,
    v: u32,
    d: u32,
    t: u32,
    b: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: EmbParams;
@group(0) @binding(1) var<storage, read> tok: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> work: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

var<workgroup> chunk_sums: array<u32, 256>;

fn flat_id(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid;
}

@compute @workgroup_size(64, 1, 1)
fn embed_forward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_id(lid, wid, nwg);
    if (i >= p.n * p.d) {
        return;
    }
    let v = tok[i / p.d];
    var x = 0.0;
    if (v < p.v) {
        x = src[v * p.d + i % p.d];
    }
    dst[i] = x;
}

@compute @workgroup_size(64, 1, 1)
fn embed_count(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = flat_id(lid, wid, nwg);
    if (n >= p.n) {
        return;
    }
    let v = tok[n];
    if (v < p.v) {
        atomicAdd(&work[v], 1u);
    }
}

@compute @workgroup_size(256, 1, 1)
fn embed_scan(@builtin(local_invocation_index) lid: u32) {
    let per = (p.v + 255u) / 256u;
    let lo = min(lid * per, p.v);
    let hi = min(lo + per, p.v);
    var s = 0u;
    for (var u = lo; u < hi; u++) {
        s += atomicLoad(&work[u]);
    }
    chunk_sums[lid] = s;
    workgroupBarrier();
    if (lid == 0u) {
        var run = 0u;
        for (var k = 0u; k < 256u; k++) {
            let c = chunk_sums[k];
            chunk_sums[k] = run;
            run += c;
        }
    }
    workgroupBarrier();
    var run = chunk_sums[lid];
    for (var u = lo; u < hi; u++) {
        atomicStore(&work[p.v + u], run);
        run += atomicLoad(&work[u]);
    }
}

@compute @workgroup_size(64, 1, 1)
fn embed_place(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let v = flat_id(lid, wid, nwg);
    if (v >= p.v) {
        return;
    }
    if (atomicLoad(&work[v]) == 0u) {
        return;
    }
    var at = 2u * p.v + atomicLoad(&work[p.v + v]);
    for (var n = 0u; n < p.n; n++) {
        if (tok[n] == v) {
            atomicStore(&work[at], n);
            at += 1u;
        }
    }
}

@compute @workgroup_size(64, 1, 1)
fn embed_grad(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_id(lid, wid, nwg);
    if (i >= p.v * p.d) {
        return;
    }
    let v = i / p.d;
    let d = i % p.d;
    let count = atomicLoad(&work[v]);
    let start = 2u * p.v + atomicLoad(&work[p.v + v]);
    var s = 0.0;
    for (var k = 0u; k < count; k++) {
        let n = atomicLoad(&work[start + k]);
        s += src[n * p.d + d];
    }
    dst[i] = s;
}

@compute @workgroup_size(64, 1, 1)
fn mask_lengths(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let b = flat_id(lid, wid, nwg);
    if (b >= p.b) {
        return;
    }
    var len = 0u;
    for (var t = 0u; t < p.t; t++) {
        if (tok[b * p.t + t] != 0u) {
            len = t + 1u;
        }
    }
    atomicStore(&work[b], len);
}
