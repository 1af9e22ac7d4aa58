// gru_forward.wgsl — GRU recurrence (forward in time), gate order r, z, n (PyTorch).
//
// The input projection runs first for all steps (gemm.wgsl), with b_ih and the r, z parts of
// b_hh folded in: gx[t,b,:] = x_t W_ihᵀ + b_ih + [b_hr | b_hz | 0]   (3H values)
// Reset-after (PyTorch nn.GRU, Keras reset_after=True), one phase per step:
//   r = σ(gx_r + h W_hrᵀ)   z = σ(gx_z + h W_hzᵀ)   hn = h W_hnᵀ + b_hn
//   n = tanh(gx_n + r ⊙ hn)   h' = (1 - z) ⊙ n + z ⊙ h
// σ and tanh stand for the gates' and the candidate's activations (Params.acts; sigmoid and
// tanh by default).
// Reset-before (Keras reset_after=False, flag RESET_BEFORE, b_hh = 0), two phases per step:
//   r, z as above;  rh = r ⊙ h  (needs every unit's r before the next mat-vec)
//   n = tanh(gx_n + rh W_hnᵀ)   h' = (1 - z) ⊙ n + z ⊙ h
// Recurrent dropout (Keras recurrent_dropout, training; p.rmask ≠ 0): Keras draws one mask per
// gate (z, r, h) for the whole sequence; here m_r, m_z, m_n = rmask_at(0|1|2, b, ·). The r and z
// mat-vecs read m_r ⊙ h and m_z ⊙ h, the candidate's reads m_n ⊙ h (reset-after: hn =
// (m_n ⊙ h) W_hnᵀ + b_hn; reset-before: rh = r ⊙ m_n ⊙ h). The update h' = (1-z)⊙n + z⊙h
// uses the UNmasked h, as Keras' `h = z * h_tm1 + (1 - z) * hh` does.
// Padded steps (t ≥ len[b]) keep h and write out = 0 (PyTorch packed semantics).
//
// Bindings (group 0):
//   0 p      uniform Params (rnn_common.wgsl; stride/col = out row stride/first column)
//   1 gx     storage rw  f32[T,B,3H]  in: projections; out: r, z (and n when training)
//   2 w_rec  storage r   f32[3H·H + H + H·3H] W_hh (3H×H), b_hn (H), then W_hhᵀ (H×3H at
//                                      p.wt_off: the copy the mat-vecs read, coalesced)
//   3 lens   storage r   u32[B(+...)] valid length per sequence, then the recurrent-dropout masks
//   4 hseq   storage rw  f32[S,B,H]   h state ring (slots as in rnn_common.wgsl)
//   5 unused storage rw  f32[1]       (the LSTM's c ring; keeps one binding layout per family)
//   6 out    storage rw  f32[T,B,stride] output sequence, columns col..col+H
//   7 aux    storage rw  f32[T or 1,B,H] hn (reset-after, training) or rh (reset-before)
// Entry points:
//   persistent  256 invocations own b_tile sequences for n_steps steps; h and a scratch row
//               (new h, or rh) live in workgroup memory: needs b_tile·2H ≤ 4000 (H ≤ 2000).
//               W_hh is read from storage once per step per workgroup.
//   step        reset-after: one step, one invocation per (b, j), fused mat-vec + update.
//   step_rz     reset-before phase 1 per (b, j): r, z into gx, rh into aux.
//   step_n      reset-before phase 2 per (b, j): candidate and update.
// Memory: registers hold one unit's accumulators; workgroup pool (persistent only).
// Limits: see persistent; per-step kernels none beyond u32 indexing. The host chunks n_steps
// under the loop budget (DESIGN.md §5). Barriers only in uniform control flow.

const TRAIN: u32 = 1u;
const AUX_PER_T: u32 = 4u;
const RESET_BEFORE: u32 = 16u;

@group(0) @binding(1) var<storage, read_write> gx: array<f32>;
@group(0) @binding(2) var<storage, read> w_rec: array<f32>;
@group(0) @binding(3) var<storage, read> lens: array<u32>;
@group(0) @binding(4) var<storage, read_write> hseq: array<f32>;
@group(0) @binding(5) var<storage, read_write> unused: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> aux: array<f32>;

fn aux_index(t: u32, b: u32, j: u32) -> u32 {
    let tt = select(0u, t, (p.flags & AUX_PER_T) != 0u);
    return (tt * p.batch + b) * p.hidden + j;
}

fn gx_base(t: u32, b: u32, j: u32) -> u32 {
    return (t * p.batch + b) * 3u * p.hidden + j;
}

// The r, z, n masks of h_prev[b, k] (recurrent dropout).
fn rmask3(b: u32, k: u32) -> vec3<f32> {
    return vec3<f32>(rmask_at(0u, b, k), rmask_at(1u, b, k), rmask_at(2u, b, k));
}

// Rows j of the r, z, n blocks of W_hh against h of batch row b (from the pool or the ring).
fn rec3_pool(h_at: u32, b: u32, j: u32, blocks: u32) -> vec3<f32> {
    let H = p.hidden;
    var acc = vec3<f32>(0.0);
    if (masked()) {
        for (var k = 0u; k < H; k++) {
            let hk = pool[h_at + k] * rmask3(b, k);
            let wt = p.wt_off + k * 3u * H + j;
            acc.x += hk.x * w_rec[wt];
            acc.y += hk.y * w_rec[wt + H];
            if (blocks == 3u) {
                acc.z += hk.z * w_rec[wt + 2u * H];
            }
        }
        return acc;
    }
    for (var k = 0u; k < H; k++) {
        let hk = pool[h_at + k];
        let wt = p.wt_off + k * 3u * H + j;
        acc.x += hk * w_rec[wt];
        acc.y += hk * w_rec[wt + H];
        if (blocks == 3u) {
            acc.z += hk * w_rec[wt + 2u * H];
        }
    }
    return acc;
}

fn rec3_storage(h_at: u32, b: u32, j: u32, blocks: u32) -> vec3<f32> {
    let H = p.hidden;
    var acc = vec3<f32>(0.0);
    if (masked()) {
        for (var k = 0u; k < H; k++) {
            let hk = hseq[h_at + k] * rmask3(b, k);
            let wt = p.wt_off + k * 3u * H + j;
            acc.x += hk.x * w_rec[wt];
            acc.y += hk.y * w_rec[wt + H];
            if (blocks == 3u) {
                acc.z += hk.z * w_rec[wt + 2u * H];
            }
        }
        return acc;
    }
    for (var k = 0u; k < H; k++) {
        let hk = hseq[h_at + k];
        let wt = p.wt_off + k * 3u * H + j;
        acc.x += hk * w_rec[wt];
        acc.y += hk * w_rec[wt + H];
        if (blocks == 3u) {
            acc.z += hk * w_rec[wt + 2u * H];
        }
    }
    return acc;
}

// Reset-after update of unit j; saves r, z, n and hn when training.
fn cell_after(t: u32, b: u32, j: u32, rec: vec3<f32>, h_prev: f32) -> f32 {
    let H = p.hidden;
    let base = gx_base(t, b, j);
    let r = gate_act(gx[base] + rec.x);
    let z = gate_act(gx[base + H] + rec.y);
    let hn = rec.z + w_rec[3u * H * H + j];
    let n = cand_act(gx[base + 2u * H] + r * hn);
    if ((p.flags & TRAIN) != 0u) {
        gx[base] = r;
        gx[base + H] = z;
        gx[base + 2u * H] = n;
        aux[aux_index(t, b, j)] = hn;
    }
    return (1.0 - z) * n + z * h_prev;
}

// Reset-before phase 1: r and z go to gx (scratch in inference), returns rh = r·h (r·m_n·h
// under recurrent dropout: Keras' `r * h_tm1_h`).
fn gates_rz(t: u32, b: u32, j: u32, rec: vec3<f32>, h_prev: f32) -> f32 {
    let base = gx_base(t, b, j);
    let r = gate_act(gx[base] + rec.x);
    let z = gate_act(gx[base + p.hidden] + rec.y);
    gx[base] = r;
    gx[base + p.hidden] = z;
    return r * h_prev * rmask_or_one(2u, b, j);
}

// Reset-before phase 2: candidate from the rh mat-vec `rec_n`, returns the new h.
fn candidate(t: u32, b: u32, j: u32, rec_n: f32, h_prev: f32) -> f32 {
    let base = gx_base(t, b, j);
    let z = gx[base + p.hidden];
    let n = cand_act(gx[base + 2u * p.hidden] + rec_n);
    if ((p.flags & TRAIN) != 0u) {
        gx[base + 2u * p.hidden] = n;
    }
    return (1.0 - z) * n + z * h_prev;
}

@compute @workgroup_size(256, 1, 1)
fn persistent(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let H = p.hidden;
    let B = p.batch;
    let bt = p.b_tile;
    let b0 = (wid.y * nwg.x + wid.x) * bt;
    let before = (p.flags & RESET_BEFORE) != 0u;
    let train = (p.flags & TRAIN) != 0u;
    // pool layout: h [bt·H] | scratch [bt·H] (new h for reset-after, rh for reset-before)
    let sc = bt * H;

    let rs0 = slot_before(time_of(p.s_begin));
    for (var e = lid; e < bt * H; e += WG) {
        let b = b0 + e / H;
        var v = 0.0;
        if (b < B) {
            v = hseq[(rs0 * B + b) * H + e % H];
        }
        pool[e] = v;
    }
    workgroupBarrier();

    for (var i = 0u; i < p.n_steps; i++) {
        let t = time_of(p.s_begin + i);
        let ws = slot_after(t);
        for (var e = lid; e < bt * H; e += WG) {
            let bl = e / H;
            let j = e % H;
            let b = b0 + bl;
            if (b < B && t < lens[b]) {
                let hp = pool[e];
                if (before) {
                    let rh = gates_rz(t, b, j, rec3_pool(bl * H, b, j, 2u), hp);
                    pool[sc + e] = rh;
                    if (train) {
                        aux[aux_index(t, b, j)] = rh;
                    }
                } else {
                    pool[sc + e] = cell_after(t, b, j, rec3_pool(bl * H, b, j, 3u), hp);
                }
            }
        }
        workgroupBarrier();
        // Phase 2 reads only the scratch rows, so each unit may overwrite its own h.
        for (var e = lid; e < bt * H; e += WG) {
            let bl = e / H;
            let j = e % H;
            let b = b0 + bl;
            if (b < B) {
                var h = pool[e];
                let o_at = (t * B + b) * p.stride + p.col + j;
                if (t < lens[b]) {
                    if (before) {
                        var acc = 0.0;
                        let w_at = p.wt_off + 2u * H + j;
                        for (var k = 0u; k < H; k++) {
                            acc += pool[sc + bl * H + k] * w_rec[w_at + k * 3u * H];
                        }
                        h = candidate(t, b, j, acc, h);
                    } else {
                        h = pool[sc + e];
                    }
                    pool[e] = h;
                    out[o_at] = h;
                } else {
                    out[o_at] = 0.0;
                }
                hseq[(ws * B + b) * H + j] = h;
            }
        }
        workgroupBarrier();
    }
}

// Writes the new h (or carries the old one through a padded step).
fn finish(t: u32, b: u32, j: u32, live: bool, h_new: f32) {
    let B = p.batch;
    let H = p.hidden;
    let ws = slot_after(t);
    let o_at = (t * B + b) * p.stride + p.col + j;
    if (live) {
        hseq[(ws * B + b) * H + j] = h_new;
        out[o_at] = h_new;
    } else {
        hseq[(ws * B + b) * H + j] = hseq[(slot_before(t) * B + b) * H + j];
        out[o_at] = 0.0;
    }
}

@compute @workgroup_size(64, 1, 1)
fn step(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let H = p.hidden;
    let e = flat_id(wid, lid, nwg);
    if (e >= p.batch * H) {
        return;
    }
    let b = e / H;
    let j = e % H;
    let t = time_of(p.s_begin);
    let live = t < lens[b];
    var h = 0.0;
    if (live) {
        let h_at = (slot_before(t) * p.batch + b) * H;
        h = cell_after(t, b, j, rec3_storage(h_at, b, j, 3u), hseq[h_at + j]);
    }
    finish(t, b, j, live, h);
}

@compute @workgroup_size(64, 1, 1)
fn step_rz(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let H = p.hidden;
    let e = flat_id(wid, lid, nwg);
    if (e >= p.batch * H) {
        return;
    }
    let b = e / H;
    let j = e % H;
    let t = time_of(p.s_begin);
    if (t < lens[b]) {
        let h_at = (slot_before(t) * p.batch + b) * H;
        aux[aux_index(t, b, j)] = gates_rz(t, b, j, rec3_storage(h_at, b, j, 2u), hseq[h_at + j]);
    }
}

@compute @workgroup_size(64, 1, 1)
fn step_n(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let H = p.hidden;
    let e = flat_id(wid, lid, nwg);
    if (e >= p.batch * H) {
        return;
    }
    let b = e / H;
    let j = e % H;
    let t = time_of(p.s_begin);
    let live = t < lens[b];
    var h = 0.0;
    if (live) {
        var acc = 0.0;
        let w_at = p.wt_off + 2u * H + j;
        for (var k = 0u; k < H; k++) {
            acc += aux[aux_index(t, b, k)] * w_rec[w_at + k * 3u * H];
        }
        let h_at = (slot_before(t) * p.batch + b) * H;
        h = candidate(t, b, j, acc, hseq[h_at + j]);
    }
    finish(t, b, j, live, h);
}
