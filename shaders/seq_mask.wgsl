// seq_mask.wgsl — Keras masking for the recurrent layers on the device, for masks that are
// one contiguous valid span per sequence (pre- or post-padding). The valid steps of each
// row are moved to the front ("packed"), the recurrent layer runs with packed lengths, and
// the outputs are moved back: Keras carries the state through masked steps, so the state
// after the sequence is the packed final state, and a masked step's output is the previous
// output (carry) or zero (`zero_output_for_mask`, as Bidirectional sets it).
//
// Shapes (batch-first): x [B, T, F]; spans u32 [B, 2] = (s, e), the valid steps s ≤ t < e
// (s = e = 0 when nothing is valid); lens u32 [B] = e - s; packed [B, T, F].
// In processing order (reverse = Keras go_backwards: the sequence is read last step first)
// row b's valid steps sit at p .. p + L with p = s (forward) or T - e (reverse); packed step
// k reads x[b, s + k] (forward) or x[b, e - 1 - k] (reverse).
//
// Entry points:
//   spans_tokens  b < B: (s, e) of the non-zero tokens of row b (u32 tokens [B, T], read
//                 through `src` reinterpreted with bitcast), lens[b] = e - s
//   spans_values  b < B: (s, e) of the steps with any feature ≠ mask_value (Keras Masking)
//   pack          i < B·T·F: packed[b, k, f] = k < L ? x[b, src_t(k), f] : 0
//   unpack_dx     i < B·T·F: dx[b, t, f] = packed step k with src_t(k) = t, else 0
//   unpack_out    i < B·T·F: out[b, t, f] (processing order) = y'[b, t - p, f] inside the
//                 span; y'[b, L-1, f] after it when carry (and L > 0); 0 otherwise
//   pack_dy       i < B·T·F: dy'[b, k, f] = dy[b, p + k, f] for k < L, plus (carry, k = L-1)
//                 Σ_{t ≥ p + L} dy[b, t, f]; 0 for k ≥ L
//
// Bindings (group 0):
//   0 p      uniform MaskParams (dynamic offset): b, t, f, flags (bit 0 reverse, bit 1
//            carry), mask_value
//   1 src    storage r   f32[...]   the tensor read (tokens as u32 bits for spans_tokens)
//   2 spans  storage rw  u32[B·2 + B]  (s, e) per row, then lens; read-only use in the
//            data movers (bound read_write so one layout serves every entry)
//   3 dst    storage rw  f32[B·T·F]  the tensor written
// Memory: registers only. Workgroup 64; flat grids flattened from a 2-D dispatch.
// Limits: u32 indexing; spans_* loop T steps (× F for spans_values) and pack_dy loops T
// steps per invocation: the host keeps T·F within the loop budget on software adapters.

struct MaskParams {
    b: u32,
    t: u32,
    f: u32,
    flags: u32,
    mask_value: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: MaskParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> spans: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn flat_id(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid;
}

fn write_span(b: u32, s: u32, e: u32) {
    spans[2u * b] = s;
    spans[2u * b + 1u] = e;
    spans[2u * p.b + b] = e - s;
}

@compute @workgroup_size(64, 1, 1)
fn spans_tokens(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let b = flat_id(lid, wid, nwg);
    if (b >= p.b) {
        return;
    }
    var s = p.t;
    var e = 0u;
    for (var t = 0u; t < p.t; t++) {
        if (bitcast<u32>(src[b * p.t + t]) != 0u) {
            s = min(s, t);
            e = t + 1u;
        }
    }
    if (e == 0u) {
        s = 0u;
    }
    write_span(b, s, e);
}

@compute @workgroup_size(64, 1, 1)
fn spans_values(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let b = flat_id(lid, wid, nwg);
    if (b >= p.b) {
        return;
    }
    var s = p.t;
    var e = 0u;
    for (var t = 0u; t < p.t; t++) {
        var any = false;
        for (var f = 0u; f < p.f; f++) {
            // A NaN feature is "not equal" to the mask value, as in Keras.
            if (src[(b * p.t + t) * p.f + f] != p.mask_value) {
                any = true;
            }
        }
        if (any) {
            s = min(s, t);
            e = t + 1u;
        }
    }
    if (e == 0u) {
        s = 0u;
    }
    write_span(b, s, e);
}

struct Site {
    b: u32,
    t: u32,
    f: u32,
}

fn site(i: u32) -> Site {
    let f = i % p.f;
    let row = i / p.f;
    return Site(row / p.t, row % p.t, f);
}

// The original step a packed step k of row b reads.
fn source_step(b: u32, k: u32) -> u32 {
    if ((p.flags & 1u) != 0u) {
        return spans[2u * b + 1u] - 1u - k;
    }
    return spans[2u * b] + k;
}

// Where row b's valid steps start in processing order.
fn start_in_order(b: u32) -> u32 {
    if ((p.flags & 1u) != 0u) {
        return p.t - spans[2u * b + 1u];
    }
    return spans[2u * b];
}

@compute @workgroup_size(64, 1, 1)
fn pack(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_id(lid, wid, nwg);
    if (i >= p.b * p.t * p.f) {
        return;
    }
    let s = site(i);
    let len = spans[2u * p.b + s.b];
    var v = 0.0;
    if (s.t < len) {
        v = src[(s.b * p.t + source_step(s.b, s.t)) * p.f + s.f];
    }
    dst[i] = v;
}

@compute @workgroup_size(64, 1, 1)
fn unpack_dx(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_id(lid, wid, nwg);
    if (i >= p.b * p.t * p.f) {
        return;
    }
    let s = site(i);
    let lo = spans[2u * s.b];
    let hi = spans[2u * s.b + 1u];
    var v = 0.0;
    if (s.t >= lo && s.t < hi) {
        var k = s.t - lo;
        if ((p.flags & 1u) != 0u) {
            k = hi - 1u - s.t;
        }
        v = src[(s.b * p.t + k) * p.f + s.f];
    }
    dst[i] = v;
}

@compute @workgroup_size(64, 1, 1)
fn unpack_out(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_id(lid, wid, nwg);
    if (i >= p.b * p.t * p.f) {
        return;
    }
    let s = site(i);
    let start = start_in_order(s.b);
    let len = spans[2u * p.b + s.b];
    var v = 0.0;
    if (s.t >= start && s.t < start + len) {
        v = src[(s.b * p.t + s.t - start) * p.f + s.f];
    } else if (s.t >= start + len && len > 0u && (p.flags & 2u) != 0u) {
        v = src[(s.b * p.t + len - 1u) * p.f + s.f];
    }
    dst[i] = v;
}

@compute @workgroup_size(64, 1, 1)
fn pack_dy(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_id(lid, wid, nwg);
    if (i >= p.b * p.t * p.f) {
        return;
    }
    let s = site(i);
    let start = start_in_order(s.b);
    let len = spans[2u * p.b + s.b];
    var v = 0.0;
    if (s.t < len) {
        v = src[(s.b * p.t + start + s.t) * p.f + s.f];
        if (s.t + 1u == len && (p.flags & 2u) != 0u) {
            for (var u = start + len; u < p.t; u++) {
                v += src[(s.b * p.t + u) * p.f + s.f];
            }
        }
    }
    dst[i] = v;
}
