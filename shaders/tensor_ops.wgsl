// tensor_ops.wgsl — layout moves on device tensors, so layers chain without host copies:
// the (B, T, F) ↔ (T, B, F) reorder of sequences (with optional time reversal, Keras
// go_backwards), and a gather that derives one parameter layout from another (the
// recurrent kernels' transposed W_hh and folded biases from the trainable tensors, Keras
// kernels from the canonical PyTorch layout and back).
//
// Entry points (i < n, flat index over dst):
//   seq_reorder  dst[i] = src[src_index(i)]: dst element (t, b, f) in dst's layout
//                (time-major [T, B, F] or batch-first [B, T, F]), read from src's layout at
//                time t, or T-1-t when reversing.
//   gather_acc   dst[dst_off + i] = (acc ? dst[dst_off + i] : 0) + src[j], where
//                j = idx[i] (mode 0), src_off + i (mode 1, a plain copy/add), or the
//                transpose of a rows×cols row-major matrix at src_off (mode 2:
//                i = c·rows + r reads src[src_off + r·cols + c]).
//
// Bindings (group 0):
//   0 p    uniform OpsParams (dynamic offset)
//   1 src  storage r   f32[...]  the source tensor
//   2 idx  storage r   u32[n]    gather indices (mode 0); any u32 buffer otherwise
//   3 dst  storage rw  f32[...]  the destination; never aliases src (WebGPU forbids a
//                                writable alias within a dispatch)
// Memory: registers only, one element per invocation.
// Workgroup 64 invocations; grid ceil(n / 64) workgroups, flattened from a 2-D dispatch
// (x + y·num_workgroups.x) when above the per-dimension limit.
// Limits: u32 indexing (every index < 2^32, checked by the host). No loops.

struct OpsParams {
    n: u32,
    // seq_reorder: t, b, f; gather_acc: dst_off, src_off, rows
    a: u32,
    b: u32,
    c: u32,
    // seq_reorder: bit 0 src batch-first, bit 1 dst batch-first, bit 2 reverse time;
    // gather_acc: bits 0-1 mode, bit 2 accumulate
    flags: u32,
    // gather_acc mode 2: cols
    d: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: OpsParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> idx: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn flat_index(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid;
}

@compute @workgroup_size(64, 1, 1)
fn seq_reorder(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(lid, wid, nwg);
    if (i >= p.n) {
        return;
    }
    let t_len = p.a;
    let b_len = p.b;
    let f_len = p.c;
    let f = i % f_len;
    let row = i / f_len;
    var t: u32;
    var b: u32;
    if ((p.flags & 2u) != 0u) {
        b = row / t_len;
        t = row % t_len;
    } else {
        t = row / b_len;
        b = row % b_len;
    }
    var ts = t;
    if ((p.flags & 4u) != 0u) {
        ts = t_len - 1u - t;
    }
    var j: u32;
    if ((p.flags & 1u) != 0u) {
        j = (b * t_len + ts) * f_len + f;
    } else {
        j = (ts * b_len + b) * f_len + f;
    }
    dst[i] = src[j];
}

@compute @workgroup_size(64, 1, 1)
fn gather_acc(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(lid, wid, nwg);
    if (i >= p.n) {
        return;
    }
    let mode = p.flags & 3u;
    var j: u32;
    if (mode == 0u) {
        j = idx[i];
    } else if (mode == 1u) {
        j = p.b + i;
    } else {
        let r = i % p.c;
        let c = i / p.c;
        j = p.b + r * p.d + c;
    }
    var v = src[j];
    if ((p.flags & 4u) != 0u) {
        v = dst[p.a + i] + v;
    }
    dst[p.a + i] = v;
}
