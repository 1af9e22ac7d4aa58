// seq_mask.wgsl — Keras masking for the recurrent layers on the device, for any mask. Keras
// computes every step and, where the mask is false, keeps the previous state and outputs the
// previous output (or zero with `zero_output_for_mask`, as Bidirectional sets it). A masked
// step therefore leaves the state alone, so the recurrence over the valid steps alone, in
// order, gives the same states: the valid steps are compacted to the front ("packed"), the
// layer runs with packed lengths, and outputs and gradients are mapped back.
//
// Shapes (batch-first): x [B, T, F]; valid u32 [B, T] (1 = the step counts); the tables of
// one layer call, u32 [2·B·T + B]: order[b, k] (the original step of row b's k-th valid step
// in processing order), pos[b, q] (for processing position q: the number of valid steps
// before it, | VALID when q itself is valid), then lens[b] (valid steps). Processing
// position q reads original step t = q, or T-1-q with `reverse` (Keras go_backwards);
// outputs and their gradients are in processing order, inputs in original order.
//
// Entry points:
//   valid_tokens  i < B·T: valid = token id ≠ 0 (u32 tokens read through `src` as bits)
//   valid_values  i < B·T: valid = any feature ≠ mask_value (Keras Masking)
//   tables        b < B:   order, pos, lens of row b (loops T)
//   apply_valid   i < B·T·F: dst = valid ? src : 0 (Masking's output and its gradient)
//   pack          i < B·T·F: packed[b, k, f] = k < L ? x[b, order[b, k], f] : 0
//   unpack_dx     i < B·T·F: dx[b, t, f] = valid ? dx'[b, rank, f] : 0
//   unpack_out    i < B·T·F: out[b, q, f] = y'[b, rank, f] (valid); y'[b, rank-1, f] (masked,
//                 carry, rank > 0); 0 otherwise
//   pack_dy       i < B·T·F: dy'[b, k, f] = dy[b, q_k, f] + (carry) the dy of the masked
//                 positions after q_k up to the next valid one (their output was y'[k])
//
// Bindings (group 0):
//   0 p      uniform MaskParams (dynamic offset): b, t, f, flags (bit 0 reverse, bit 1
//            carry), mask_value
//   1 src    storage r   f32[...]  the tensor read (valid_* read tokens / features)
//   2 aux    storage rw  u32[...]  valid [B·T] (valid_*, tables, apply_valid) or the tables
//                                  (data movers); bound read_write so one layout serves all
//   3 dst    storage rw  f32[...]  the tensor written (tables: the table buffer, as u32 bits)
// Memory: registers only. Workgroup 64; flat grids flattened from a 2-D dispatch.
// Limits: u32 indexing; tables and pack_dy loop up to T per invocation and valid_values F:
// the host keeps them within the loop budget.

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

const VALID: u32 = 0x80000000u;

@group(0) @binding(0) var<uniform> p: MaskParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> aux: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn flat_id(lid: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid;
}

@compute @workgroup_size(64, 1, 1)
fn valid_tokens(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_id(lid, wid, nwg);
    if (i >= p.b * p.t) {
        return;
    }
    aux[i] = select(0u, 1u, bitcast<u32>(src[i]) != 0u);
}

@compute @workgroup_size(64, 1, 1)
fn valid_values(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_id(lid, wid, nwg);
    if (i >= p.b * p.t) {
        return;
    }
    var any = 0u;
    for (var f = 0u; f < p.f; f++) {
        if (src[i * p.f + f] != p.mask_value) {
            any = 1u;
        }
    }
    aux[i] = any;
}

// Processing position q of row b reads original step:
fn step_of(q: u32) -> u32 {
    if ((p.flags & 1u) != 0u) {
        return p.t - 1u - q;
    }
    return q;
}

@compute @workgroup_size(64, 1, 1)
fn tables(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let b = flat_id(lid, wid, nwg);
    if (b >= p.b) {
        return;
    }
    let bt = p.b * p.t;
    var k = 0u;
    for (var q = 0u; q < p.t; q++) {
        let t = step_of(q);
        if (aux[b * p.t + t] != 0u) {
            dst[b * p.t + k] = bitcast<f32>(t);
            dst[bt + b * p.t + q] = bitcast<f32>(k | VALID);
            k += 1u;
        } else {
            dst[bt + b * p.t + q] = bitcast<f32>(k);
        }
    }
    for (var r = k; r < p.t; r++) {
        dst[b * p.t + r] = bitcast<f32>(0u);
    }
    dst[2u * bt + b] = bitcast<f32>(k);
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

@compute @workgroup_size(64, 1, 1)
fn apply_valid(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_id(lid, wid, nwg);
    if (i >= p.b * p.t * p.f) {
        return;
    }
    var v = 0.0;
    if (aux[i / p.f] != 0u) {
        v = src[i];
    }
    dst[i] = v;
}

fn order_at(b: u32, k: u32) -> u32 {
    return aux[b * p.t + k];
}

fn pos_at(b: u32, q: u32) -> u32 {
    return aux[p.b * p.t + b * p.t + q];
}

fn len_of(b: u32) -> u32 {
    return aux[2u * p.b * p.t + b];
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
    var v = 0.0;
    if (s.t < len_of(s.b)) {
        v = src[(s.b * p.t + order_at(s.b, s.t)) * p.f + s.f];
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
    // Original step s.t is processing position step_of(s.t) (the map is an involution).
    let ps = pos_at(s.b, step_of(s.t));
    var v = 0.0;
    if ((ps & VALID) != 0u) {
        v = src[(s.b * p.t + (ps & ~VALID)) * p.f + s.f];
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
    let ps = pos_at(s.b, s.t);
    let rank = ps & ~VALID;
    var v = 0.0;
    if ((ps & VALID) != 0u) {
        v = src[(s.b * p.t + rank) * p.f + s.f];
    } else if (rank > 0u && (p.flags & 2u) != 0u) {
        v = src[(s.b * p.t + rank - 1u) * p.f + s.f];
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
    var v = 0.0;
    if (s.t < len_of(s.b)) {
        // The processing position of the k-th valid step.
        let q = step_of(order_at(s.b, s.t));
        v = src[(s.b * p.t + q) * p.f + s.f];
        if ((p.flags & 2u) != 0u) {
            for (var u = q + 1u; u < p.t; u++) {
                if ((pos_at(s.b, u) & VALID) != 0u) {
                    break;
                }
                v += src[(s.b * p.t + u) * p.f + s.f];
            }
        }
    }
    dst[i] = v;
}
