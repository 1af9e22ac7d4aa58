// lstm_forward.wgsl — LSTM recurrence (forward in time), PyTorch semantics, gate order i,f,g,o.
//
// The input projection is done before this kernel for all steps at once (gemm.wgsl):
//   gx[t,b,:] = x_t W_ihᵀ + b_ih + b_hh                       (4H values, blocks i|f|g|o)
// Per processing step s (time t = s forward, t = T-1-s for the reverse direction):
//   [i|f|g|o] = gx[t,b] + h_{prev} W_hhᵀ ;  i,f,o = σ(·), g = tanh(·)
//   (σ is the gates' activation, sigmoid by default, and tanh the candidate/output one:
//   Params.acts, see gate_act / cand_act in rnn_common.wgsl)
//   c = f⊙c_prev + i⊙g ;  h_raw = o⊙tanh(c) ;  h = h_raw W_hrᵀ (proj_size P > 0) else h_raw
// Recurrent dropout (Keras recurrent_dropout, training; p.rmask ≠ 0): gate block g reads
// h_{prev} ⊙ m_g instead of h_{prev} in its mat-vec (m_g = rmask_at(g, b, ·): Keras draws one
// mask per gate, i,f,c,o, fixed for the whole sequence); c, h and out are unmasked.
// Variable lengths (PyTorch packed semantics): a step with t ≥ len[b] leaves h and c
// unchanged and writes out = 0, so the reverse direction starts at each sequence's own end.
//
// Bindings (group 0):
//   0 p      uniform Params (rnn_common.wgsl, prepended; stride/col = out row stride/column)
//   1 gx     storage rw  f32[T,B,4H]    in: pre-activations; out (train): activated gates
//   2 w_rec  storage r   f32[...]      W_hh (4H×P), W_hr (P×H) when projecting, then W_hhᵀ
//                                       (P×4H, at p.wt_off: the copy the mat-vec reads)
//   3 lens   storage r   u32[B(+...)]   valid length per sequence (T when not packed), then
//                                       the recurrent-dropout masks (rnn_common.wgsl)
//   4 hseq   storage rw  f32[S,B,P]     h state ring, slot = time index (see below)
//   5 cseq   storage rw  f32[S,B,H]     c state ring
//   6 out    storage rw  f32[T,B,out_stride]  output sequence, columns out_col..out_col+P
//   7 hraw   storage rw  f32[T or 1,B,H] o⊙tanh(c) before projection (proj only)
// State slots: the state before time t is at slot (t + dir) % S and the state after it at
// (t + 1 - dir) % S. Training uses S = T+1 (every state kept for backward: slot t holds
// h_{t-1} forward), inference S = 2 (ping-pong). P = out_size (= H without projection).
//
// Entry points:
//   persistent  one workgroup of 256 owns a tile of b_tile sequences and runs n_steps steps;
//               h, c and h_raw of the tile live in workgroup memory (pool, 4000 f32), W_hh is
//               read from storage once per step per workgroup; workgroupBarrier between phases.
//               Needs b_tile·(P + 2H) ≤ 4000. Grid: ceil(B / b_tile) workgroups.
//   step        one step, one invocation per (b, j<H) (64 per workgroup): reads h from the
//               ring in storage, fuses the recurrent mat-vec with the cell update.
//   step_b4     the same step, one invocation per (j, 4 batch rows): each W_hhᵀ load feeds 4
//               rows' sums (registers: 4 vec4 accumulators). For CPU adapters, where every
//               load is a per-lane gather: lavapipe B8 T100 H128 recurrence 54 -> 25 ms.
//               Unmasked only (the launcher takes `step` under recurrent dropout).
//   project     (P > 0 only) one step, one invocation per (b, q<P): h = h_raw W_hrᵀ.
// Limits: persistent needs b_tile·(P + 2H) ≤ 4000 (H ≤ 1333 without projection) and 256
// invocations per workgroup; step/project have none beyond u32 indexing and buffer sizes.
// The host chunks the time loop (n_steps per dispatch) so one invocation stays under
// llvmpipe's 65535-iterations-per-invocation cap; state is carried in hseq/cseq.
// Caveats: sigmoid and tanh are written to be finite for any |x| (tanh argument clamped to
// ±15, where f32 tanh is already ±1). Barriers are only in uniform control flow.

const TRAIN: u32 = 1u;
const PROJ: u32 = 2u;
const HRAW_PER_T: u32 = 4u;

@group(0) @binding(1) var<storage, read_write> gx: array<f32>;
@group(0) @binding(2) var<storage, read> w_rec: array<f32>;
@group(0) @binding(3) var<storage, read> lens: array<u32>;
@group(0) @binding(4) var<storage, read_write> hseq: array<f32>;
@group(0) @binding(5) var<storage, read_write> cseq: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> hraw: array<f32>;

fn hraw_index(t: u32, b: u32, j: u32) -> u32 {
    let tt = select(0u, t, (p.flags & HRAW_PER_T) != 0u);
    return (tt * p.batch + b) * p.hidden + j;
}

// Gate pre-activations from gx plus a recurrent part `rec`; applies the cell update, saves
// activations when training, returns (c_new, h_raw).
fn cell(t: u32, b: u32, j: u32, rec: vec4<f32>, c_prev: f32) -> vec2<f32> {
    let h4 = 4u * p.hidden;
    let base = (t * p.batch + b) * h4 + j;
    let i = gate_act(gx[base] + rec.x);
    let f = gate_act(gx[base + p.hidden] + rec.y);
    let g = cand_act(gx[base + 2u * p.hidden] + rec.z);
    let o = gate_act(gx[base + 3u * p.hidden] + rec.w);
    if ((p.flags & TRAIN) != 0u) {
        gx[base] = i;
        gx[base + p.hidden] = f;
        gx[base + 2u * p.hidden] = g;
        gx[base + 3u * p.hidden] = o;
    }
    let c = f * c_prev + i * g;
    return vec2<f32>(c, o * cand_act(c));
}

// The four gate masks of h_prev[b, k] (recurrent dropout).
fn rmask4(b: u32, k: u32) -> vec4<f32> {
    return vec4<f32>(rmask_at(0u, b, k), rmask_at(1u, b, k), rmask_at(2u, b, k), rmask_at(3u, b, k));
}

// Row j of each gate block of W_hh times h (of batch row b), with h read from the pool.
fn recur_pool(h_at: u32, b: u32, j: u32) -> vec4<f32> {
    let P = p.out_size;
    let H = p.hidden;
    var acc = vec4<f32>(0.0);
    if (masked()) {
        for (var k = 0u; k < P; k++) {
            let hk = pool[h_at + k] * rmask4(b, k);
            let wt = p.wt_off + k * 4u * H + j;
            acc += hk * vec4<f32>(w_rec[wt], w_rec[wt + H], w_rec[wt + 2u * H], w_rec[wt + 3u * H]);
        }
        return acc;
    }
    for (var k = 0u; k < P; k++) {
        let hk = pool[h_at + k];
        let wt = p.wt_off + k * 4u * H + j;
        acc += hk * vec4<f32>(w_rec[wt], w_rec[wt + H], w_rec[wt + 2u * H], w_rec[wt + 3u * H]);
    }
    return acc;
}

// Same with h read from the state ring in storage.
fn recur_storage(h_at: u32, b: u32, j: u32) -> vec4<f32> {
    let P = p.out_size;
    let H = p.hidden;
    var acc = vec4<f32>(0.0);
    if (masked()) {
        for (var k = 0u; k < P; k++) {
            let hk = hseq[h_at + k] * rmask4(b, k);
            let wt = p.wt_off + k * 4u * H + j;
            acc += hk * vec4<f32>(w_rec[wt], w_rec[wt + H], w_rec[wt + 2u * H], w_rec[wt + 3u * H]);
        }
        return acc;
    }
    for (var k = 0u; k < P; k++) {
        let hk = hseq[h_at + k];
        let wt = p.wt_off + k * 4u * H + j;
        acc += hk * vec4<f32>(w_rec[wt], w_rec[wt + H], w_rec[wt + 2u * H], w_rec[wt + 3u * H]);
    }
    return acc;
}

@compute @workgroup_size(256, 1, 1)
fn persistent(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let H = p.hidden;
    let P = p.out_size;
    let B = p.batch;
    let bt = p.b_tile;
    let b0 = (wid.y * nwg.x + wid.x) * bt;
    let proj = (p.flags & PROJ) != 0u;
    let train = (p.flags & TRAIN) != 0u;
    // pool layout: h [bt·P] | c [bt·H] | h_raw [bt·H]
    let h_base = 0u;
    let c_base = bt * P;
    let r_base = c_base + bt * H;

    let rs0 = slot_before(time_of(p.s_begin));
    for (var e = lid; e < bt * P; e += WG) {
        let b = b0 + e / P;
        var v = 0.0;
        if (b < B) {
            v = hseq[(rs0 * B + b) * P + e % P];
        }
        pool[h_base + e] = v;
    }
    for (var e = lid; e < bt * H; e += WG) {
        let b = b0 + e / H;
        var v = 0.0;
        if (b < B) {
            v = cseq[(rs0 * B + b) * H + e % H];
        }
        pool[c_base + e] = v;
    }
    workgroupBarrier();

    for (var i = 0u; i < p.n_steps; i++) {
        let t = time_of(p.s_begin + i);
        let ws = slot_after(t);
        // Phase 1: gates and cell update for every (b, j) of the tile.
        for (var e = lid; e < bt * H; e += WG) {
            let bl = e / H;
            let j = e % H;
            let b = b0 + bl;
            if (b < B) {
                var c = pool[c_base + e];
                if (t < lens[b]) {
                    let r = cell(t, b, j, recur_pool(h_base + bl * P, b, j), c);
                    c = r.x;
                    pool[c_base + e] = c;
                    pool[r_base + e] = r.y;
                    if (proj && train) {
                        hraw[hraw_index(t, b, j)] = r.y;
                    }
                }
                cseq[(ws * B + b) * H + j] = c;
            }
        }
        workgroupBarrier();
        // Phase 2: the new h (projected when P > 0) replaces the old one in the pool.
        for (var e = lid; e < bt * P; e += WG) {
            let bl = e / P;
            let q = e % P;
            let b = b0 + bl;
            if (b < B) {
                var h = pool[h_base + e];
                let o_at = (t * B + b) * p.stride + p.col + q;
                if (t < lens[b]) {
                    if (proj) {
                        var acc = 0.0;
                        let wr = 4u * H * P + q * H;
                        for (var j = 0u; j < H; j++) {
                            acc += w_rec[wr + j] * pool[r_base + bl * H + j];
                        }
                        h = acc;
                    } else {
                        h = pool[r_base + bl * H + q];
                    }
                    pool[h_base + e] = h;
                    out[o_at] = h;
                } else {
                    out[o_at] = 0.0;
                }
                hseq[(ws * B + b) * P + q] = h;
            }
        }
        workgroupBarrier();
    }
}

// Everything a Stepwise step does for one (b, j) once the recurrent sums `rec` are known.
fn finish_step(b: u32, j: u32, t: u32, rs: u32, ws: u32, rec: vec4<f32>) {
    let H = p.hidden;
    let P = p.out_size;
    let B = p.batch;
    let proj = (p.flags & PROJ) != 0u;
    let c_prev = cseq[(rs * B + b) * H + j];
    var c = c_prev;
    if (t < lens[b]) {
        let r = cell(t, b, j, rec, c_prev);
        c = r.x;
        if (proj) {
            hraw[hraw_index(t, b, j)] = r.y;
        } else {
            hseq[(ws * B + b) * P + j] = r.y;
            out[(t * B + b) * p.stride + p.col + j] = r.y;
        }
    } else if (!proj) {
        hseq[(ws * B + b) * P + j] = hseq[(rs * B + b) * P + j];
        out[(t * B + b) * p.stride + p.col + j] = 0.0;
    }
    cseq[(ws * B + b) * H + j] = c;
}

@compute @workgroup_size(64, 1, 1)
fn step(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let H = p.hidden;
    let B = p.batch;
    let e = flat_id(wid, lid, nwg);
    if (e >= B * H) {
        return;
    }
    let b = e / H;
    let j = e % H;
    let t = time_of(p.s_begin);
    let rs = slot_before(t);
    var rec = vec4<f32>(0.0);
    if (t < lens[b]) {
        rec = recur_storage((rs * B + b) * p.out_size, b, j);
    }
    finish_step(b, j, t, rs, slot_after(t), rec);
}

// step for CPU adapters: one invocation per (j, 4 batch rows) so each W_hhᵀ load feeds 4
// rows (on llvmpipe every load is a per-lane gather, so loads per FMA set the speed). Rows
// past B read row B-1 (clamped, in bounds) and are not written.
@compute @workgroup_size(64, 1, 1)
fn step_b4(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let H = p.hidden;
    let P = p.out_size;
    let B = p.batch;
    let e = flat_id(wid, lid, nwg);
    if (e >= ((B + 3u) / 4u) * H) {
        return;
    }
    let b0 = (e / H) * 4u;
    let j = e % H;
    let t = time_of(p.s_begin);
    let rs = slot_before(t);
    let h0 = (rs * B + b0) * P;
    let h1 = (rs * B + min(b0 + 1u, B - 1u)) * P;
    let h2 = (rs * B + min(b0 + 2u, B - 1u)) * P;
    let h3 = (rs * B + min(b0 + 3u, B - 1u)) * P;
    var a0 = vec4<f32>(0.0);
    var a1 = vec4<f32>(0.0);
    var a2 = vec4<f32>(0.0);
    var a3 = vec4<f32>(0.0);
    for (var k = 0u; k < P; k++) {
        let wt = p.wt_off + k * 4u * H + j;
        let w = vec4<f32>(w_rec[wt], w_rec[wt + H], w_rec[wt + 2u * H], w_rec[wt + 3u * H]);
        a0 += hseq[h0 + k] * w;
        a1 += hseq[h1 + k] * w;
        a2 += hseq[h2 + k] * w;
        a3 += hseq[h3 + k] * w;
    }
    let ws = slot_after(t);
    finish_step(b0, j, t, rs, ws, a0);
    if (b0 + 1u < B) {
        finish_step(b0 + 1u, j, t, rs, ws, a1);
    }
    if (b0 + 2u < B) {
        finish_step(b0 + 2u, j, t, rs, ws, a2);
    }
    if (b0 + 3u < B) {
        finish_step(b0 + 3u, j, t, rs, ws, a3);
    }
}

@compute @workgroup_size(64, 1, 1)
fn project(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let H = p.hidden;
    let P = p.out_size;
    let B = p.batch;
    let e = flat_id(wid, lid, nwg);
    if (e >= B * P) {
        return;
    }
    let b = e / P;
    let q = e % P;
    let t = time_of(p.s_begin);
    let rs = slot_before(t);
    let ws = slot_after(t);
    let o_at = (t * B + b) * p.stride + p.col + q;
    if (t < lens[b]) {
        var acc = 0.0;
        let wr = 4u * H * P + q * H;
        for (var j = 0u; j < H; j++) {
            acc += w_rec[wr + j] * hraw[hraw_index(t, b, j)];
        }
        hseq[(ws * B + b) * P + q] = acc;
        out[o_at] = acc;
    } else {
        hseq[(ws * B + b) * P + q] = hseq[(rs * B + b) * P + q];
        out[o_at] = 0.0;
    }
}
