// rec_dropout.wgsl — Keras `recurrent_dropout` masks on the device (training only).
//
// Keras (keras/src/layers/rnn/{lstm,gru,simple_rnn}.py, dropout_rnn_cell.py) draws, once per
// layer call, one mask per gate block (LSTM 4: i,f,c,o; GRU 3: z,r,h; SimpleRNN 1), each
// (B, units), kept with probability 1 - rate and scaled by 1 / (1 - rate), and multiplies
// h_{t-1} by gate block g's mask where it feeds that block's recurrent mat-vec, at every step.
//   draw         i < n: bits[off + i] = bitcast<u32>(keep(i) ? scale : 0)
//                (keep from dropout_hash.wgsl, mask index i over every layer-direction's
//                [G, B, P] masks, so each layer-direction and gate gets its own draw)
//   masked_rows  i < n = T·rows: dst[i] = src[src_off + i] · mask[i % rows], mask =
//                bitcast<f32>(bits[off + ·]): the rows of H_prev one gate block's masked
//                mat-vec read, for that block's dW_hh = dGᵀ · (m ⊙ H_prev) after the loop
// The masks live after the lengths in the recurrent kernels' `lens` buffer (their binding 3:
// the backward kernels already use all 8 storage bindings), read there by rmask_at
// (rnn_common.wgsl).
//
// Bindings (group 0):
//   0 p     uniform RdParams (dynamic offset): n, off, seed_lo, seed_hi, threshold, scale,
//           rows, src_off
//   1 bits  storage rw  u32[B + L·D·G·B·P]  lengths then masks (f32 bit patterns)
//   2 src   storage r   f32[S, B, P]         masked_rows: the h ring of the training forward
//   3 dst   storage rw  f32[T, B, P]         masked_rows: m ⊙ H_prev (scratch)
// `draw` uses binding 1 only (its pipeline layout has no others).
// Memory: registers only. Workgroup 64, flat grids flattened from a 2-D dispatch.
// Limits: u32 indexing; no loops.

struct RdParams {
    n: u32,
    off: u32,
    seed_lo: u32,
    seed_hi: u32,
    threshold: u32,
    scale: f32,
    rows: u32,
    src_off: u32,
}

@group(0) @binding(0) var<uniform> p: RdParams;
@group(0) @binding(1) var<storage, read_write> bits: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn flat_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid;
}

@compute @workgroup_size(64, 1, 1)
fn draw(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    var v = 0.0;
    if (drop_hash(i, p.seed_lo, p.seed_hi) >= p.threshold) {
        v = p.scale;
    }
    bits[p.off + i] = bitcast<u32>(v);
}

@compute @workgroup_size(64, 1, 1)
fn masked_rows(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    dst[i] = src[p.src_off + i] * bitcast<f32>(bits[p.off + i % p.rows]);
}
