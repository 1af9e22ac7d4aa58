// dropout.wgsl — Keras Dropout in training, on the device: each element is kept with
// probability 1 - rate and scaled by 1 / (1 - rate), or zeroed. The keep decision is a hash of
// (seed, element's mask index), so a recorded step is reproducible from its seed and the
// backward applies exactly the forward's mask without storing it.
//
//   mask index m(i):  i itself (Dropout: an independent draw per element), or, for the
//                     input `dropout` of a recurrent layer, (b, f) of element (b, t, f):
//                     one mask per sequence, the same at every step (Keras)
//   keep(m) = hash(seed, m) ≥ threshold,  threshold = round(rate · 2^32)
//   dropout_apply  i < n: dst[i] = keep(m(i)) ? src[i] · scale : 0
//                  (forward on x, backward on dy: the same expression)
//
// Bindings (group 0):
//   0 p    uniform DropParams (dynamic offset): n, seed_lo, seed_hi, threshold, scale,
//          per_sequence (0/1), t (steps), f (features)
//   1 src  storage r   f32[n]  x (forward) or dy (backward)
//   2 dst  storage rw  f32[n]  y or dx; never aliases src
// Memory: registers only. Workgroup 64; flat grids flattened from a 2-D dispatch.
// Limits: u32 indexing (n < 2^32). No loops. The hash (drop_hash, dropout_hash.wgsl, prepended)
// is a 32-bit integer mix (splitmix32 style), statistically uniform for this use, not
// cryptographic.

struct DropParams {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    threshold: u32,
    scale: f32,
    per_sequence: u32,
    t: u32,
    f: u32,
}

@group(0) @binding(0) var<uniform> p: DropParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

fn keep(m: u32) -> bool {
    return drop_hash(m, p.seed_lo, p.seed_hi) >= p.threshold;
}

@compute @workgroup_size(64, 1, 1)
fn dropout_apply(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (i >= p.n) {
        return;
    }
    var m = i;
    if (p.per_sequence != 0u) {
        // (b, t, f) -> (b, f)
        let f = i % p.f;
        let b = i / (p.f * p.t);
        m = b * p.f + f;
    }
    var v = 0.0;
    if (keep(m)) {
        v = src[i] * p.scale;
    }
    dst[i] = v;
}
