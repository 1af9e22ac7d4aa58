// rnn_common.wgsl — prelude shared by the LSTM, GRU and RNN kernels (prepended by the
// launcher: the module the GPU compiles is activations.wgsl, this file, then the cell's file).
//
// What it provides:
//   Params        the recurrence parameter block (uniform, group 0 binding 0, dynamic offset)
//   time_of(s)    time index of processing step s: s forward, T-1-s reverse (dir = 1)
//   slot_before/slot_after(t)  state-ring slots holding the state before/after time t:
//                 (t + dir) % S and (t + 1 - dir) % S. With S = T+1 (training) slot t holds
//                 the state before time t in the forward direction; S = 2 is a ping-pong.
//   flat_id       flattened invocation index of a 64-wide 1-D kernel over a 2-D grid
//                 (grids above 65535 workgroups are split by the launcher).
//   rmask_at(g, b, k)  recurrent dropout (Keras recurrent_dropout, training only): the mask
//                 multiplying h_{t-1}[b, k] where it feeds gate block g's recurrent mat-vec
//                 (0 or 1/(1-rate), the same at every step). Stored as f32 bit patterns after
//                 the lengths in `lens` (binding 3 of every cell file), from u32 offset
//                 p.rmask, laid out [G, B, P] (gate blocks in the kernels' order). p.rmask = 0
//                 means no mask: the kernels then take their unmasked loops.
//   WG, pool      the persistent kernels' workgroup size (256) and their workgroup memory:
//                 POOL = 4000 f32 (16 000 bytes, under WebGPU's default 16 KiB limit); each
//                 cell carves it into per-batch-row regions (see its header)
// Bindings: only `p` (group 0, binding 0); every storage binding belongs to the cell file
// (rmask_at reads the cell file's `lens`).
// Memory: the pool above. Limits: Rust's kernels::rec::POOL_FLOATS and PERSISTENT_WG must
// equal POOL and WG; the Params layout must match `kernels::rec::Params` (20 × u32 = 80 bytes).

struct Params {
    t_len: u32,     // T
    batch: u32,     // B
    hidden: u32,    // H
    out_size: u32,  // P: projection size, or H
    dir: u32,       // 0 forward, 1 reverse
    s_begin: u32,   // first processing step of this dispatch (backward: the highest)
    n_steps: u32,   // steps in this dispatch
    slots: u32,     // S: state-ring length
    stride: u32,    // row stride of the output (forward) or of dy (backward)
    col: u32,       // first column of this direction in that row
    b_tile: u32,    // persistent kernels: batch rows per workgroup
    flags: u32,     // cell-specific bits
    wt_off: u32,    // offset in w_rec of W_hhᵀ (P × G·H), the forward kernels' copy whose
                    // loads are contiguous across neighbouring units (coalesced / vectorised)
    _pad1: u32,     // Grid (grid_common.wgsl): slices S, units per slice U, test hook
    _pad2: u32,
    _pad3: u32,
    acts: u32,      // activation codes (activations.wgsl): bits 0-7 the candidate and output
                    // activation (tanh), bits 8-15 the gates' (sigmoid)
    rmask: u32,     // recurrent dropout (training; Persistent and Stepwise only): offset in
                    // `lens` (u32) of this layer-direction's masks f32[G,B,P]; 0 = none
    _pad5: u32,
    _pad6: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

const WG: u32 = 256u;
const POOL: u32 = 4000u;
var<workgroup> pool: array<f32, POOL>;

// The layer's activations (Keras `activation`, `recurrent_activation`) and their derivatives
// from the OUTPUT, as the backward kernels have it.
fn cand_act(x: f32) -> f32 {
    return act(p.acts & 255u, x);
}

fn gate_act(x: f32) -> f32 {
    return act((p.acts >> 8u) & 255u, x);
}

fn cand_grad(y: f32) -> f32 {
    return act_grad(p.acts & 255u, y);
}

fn gate_grad(y: f32) -> f32 {
    return act_grad((p.acts >> 8u) & 255u, y);
}

fn time_of(s: u32) -> u32 {
    return select(s, p.t_len - 1u - s, p.dir == 1u);
}

fn slot_before(t: u32) -> u32 {
    return (t + p.dir) % p.slots;
}

fn slot_after(t: u32) -> u32 {
    return (t + 1u - p.dir) % p.slots;
}

fn flat_id(gid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (gid.y * nwg.x + gid.x) * 64u + lid;
}

fn masked() -> bool {
    return p.rmask != 0u;
}

fn rmask_at(g: u32, b: u32, k: u32) -> f32 {
    return bitcast<f32>(lens[p.rmask + (g * p.batch + b) * p.out_size + k]);
}

fn rmask_or_one(g: u32, b: u32, k: u32) -> f32 {
    if (masked()) {
        return rmask_at(g, b, k);
    }
    return 1.0;
}
