// grid_forward.wgsl — Grid recurrence, forward in time: LSTM without projection (`lstm`),
// GRU reset-after (`gru`), Elman RNN tanh/relu (`rnn`). Same equations, saved buffers and
// packed-length semantics as lstm_forward.wgsl, gru_forward.wgsl, rnn_forward.wgsl (their
// headers have them); a backward of any algorithm can follow.
//
// Bindings (group 0): 0..7 the forward family of kernels::rec (FwdBufs: gx rw [T,B,G·H],
// w_rec r, lens r [B], hseq rw [S,B,H], cseq rw [S,B,H], out rw [T,B,stride], aux rw), and
//   8 sync  storage rw  atomic<u32>[1]  grid barrier counter (zeroed by the host per call)
// hseq and aux are @coherent (the host runs Grid only with MEMORY_DECORATION_COHERENT): other
// workgroups read them after the grid barrier, and a plain load could be served from a
// stale, non-coherent per-SM cache line (WGSL orders no plain stores across workgroups).
//
// Memory plan: the hidden units are cut into S slices of U; grid workgroup (tile, g) owns
// slice g for one batch tile: its invocation (row ru < G·U, chunk q < C = ceil(H/64)) keeps
// W_hh[gate·H + g·U + u, 64q ..] in 16 vec4 registers for the whole dispatch. h_{t-1} is
// exchanged through the h ring in storage: each step every workgroup loads its tile's h
// into gvec, multiplies, updates its units (c in the c ring), writes h_t, then one grid
// barrier (grid_common.wgsl). Modes (flags): grid (barrier between steps); STEP_MODE (the
// host dispatches one step at a time: dispatch boundaries instead of the barrier, the same
// code); FALLBACK (one workgroup per batch tile runs every slice in turn with the weight
// chunks read from storage, from the first step the grid did not finish, so results equal
// a run that did not fail: same chunks, same dot order).
// Workgroup layout: WG ≥ G·U·C; grid S·tiles workgroups (flattened 2-D), fallback tiles.
// Limits: G·C ≤ WG ≤ max invocations; workgroup memory 16·VB + 4·SB; S·tiles ≤ the host's
// co-residency cap. Barriers only in uniform control flow (mode bits come from the uniform).

const TRAIN: u32 = 1u;
const PROJ: u32 = 2u;
const AUX_PER_T: u32 = 4u;
const RESET_BEFORE: u32 = 16u;
const RELU: u32 = 32u;

@group(0) @binding(1) var<storage, read_write> gx: array<f32>;
@group(0) @binding(2) var<storage, read> w_rec: array<f32>;
@group(0) @binding(3) var<storage, read> lens: array<u32>;
@group(0) @binding(4) @coherent var<storage, read_write> hseq: array<f32>;
@group(0) @binding(5) var<storage, read_write> cseq: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) @coherent var<storage, read_write> aux: array<f32>;
@group(0) @binding(8) var<storage, read_write> sync: array<atomic<u32>>;

// Gate rows per unit: 4 LSTM, 3 GRU, 1 RNN.
fn nrows(kind: u32) -> u32 {
    return select(select(1u, 3u, kind == 1u), 4u, kind == 0u);
}

// Weight chunk of invocation lid for slice gi: row (gate k, unit u) of W_hh.
fn slice_chunk(lid: u32, gi: u32, kind: u32) -> WRow {
    let H = p.hidden;
    let P = p.out_size;
    let U = p._pad2;
    let c = chunks(P);
    let ru = lid / c;
    let q = lid % c;
    let k = ru / U;
    let j = gi * U + ru % U;
    var n = 0u;
    if (k < nrows(kind) && j < H) {
        n = min(CHUNK, P - q * CHUNK);
    }
    return load_wrow((k * H + j) * P + q * CHUNK, n);
}

fn row_sum(bl: u32, ru: u32, rows: u32, c: u32) -> f32 {
    var acc = 0.0;
    for (var q = 0u; q < c; q++) {
        acc += gsb[(bl * rows + ru) * c + q];
    }
    return acc;
}

// h[k] of batch row b (from_aux: r⊙h of aux row tt); 0 past P and past B.
fn h_elem(b: u32, slot: u32, k: u32, from_aux: bool, tt: u32) -> f32 {
    let P = p.out_size;
    if (b >= p.batch || k >= P) {
        return 0.0;
    }
    if (from_aux) {
        return aux[(tt * p.batch + b) * P + k];
    }
    return hseq[(slot * p.batch + b) * P + k];
}

// gvec ← h of the tile (from_aux: r⊙h of time t from aux, GRU reset-before phase 1), one
// whole vec4 per store (WGSL lets a component store touch the whole vector).
fn load_h(lid: u32, b0: u32, slot: u32, from_aux: bool, t: u32) {
    let vrow = chunks(p.out_size) * KC;
    let tt = select(0u, t, (p.flags & AUX_PER_T) != 0u);
    for (var e = lid; e < p.b_tile * vrow; e += WG) {
        let b = b0 + e / vrow;
        let k = (e % vrow) * 4u;
        gvec[e] = vec4<f32>(
            h_elem(b, slot, k, from_aux, tt),
            h_elem(b, slot, k + 1u, from_aux, tt),
            h_elem(b, slot, k + 2u, from_aux, tt),
            h_elem(b, slot, k + 3u, from_aux, tt),
        );
    }
}

// Phases (grid barriers) per step: 2 for LSTM projection and GRU reset-before.
fn phases(kind: u32) -> u32 {
    return select(1u, 2u, (p.flags & (PROJ | RESET_BEFORE)) != 0u && kind != 2u);
}

// The update of unit j of batch row b at time t from the row sums; returns the new h.
fn update(kind: u32, t: u32, b: u32, bl: u32, j: u32, u: u32, rows: u32, c: u32) -> f32 {
    let H = p.hidden;
    let U = p._pad2;
    let B = p.batch;
    let train = (p.flags & TRAIN) != 0u;
    let hp = vget(chunks(p.out_size) * KC, bl, j);
    let tt = select(0u, t, (p.flags & AUX_PER_T) != 0u);
    if (kind == 0u) {
        let base = (t * B + b) * 4u * H + j;
        let ig = sigmoid(gx[base] + row_sum(bl, u, rows, c));
        let fg = sigmoid(gx[base + H] + row_sum(bl, U + u, rows, c));
        let gg = tanh_s(gx[base + 2u * H] + row_sum(bl, 2u * U + u, rows, c));
        let og = sigmoid(gx[base + 3u * H] + row_sum(bl, 3u * U + u, rows, c));
        if (train) {
            gx[base] = ig;
            gx[base + H] = fg;
            gx[base + 2u * H] = gg;
            gx[base + 3u * H] = og;
        }
        let cv = fg * cseq[(slot_before(t) * B + b) * H + j] + ig * gg;
        cseq[(slot_after(t) * B + b) * H + j] = cv;
        let hr = og * tanh_s(cv);
        if ((p.flags & PROJ) != 0u) {
            aux[(tt * B + b) * H + j] = hr;
        }
        return hr;
    }
    if (kind == 1u && (p.flags & RESET_BEFORE) != 0u) {
        let base = (t * B + b) * 3u * H + j;
        let r = sigmoid(gx[base] + row_sum(bl, u, rows, c));
        let z = sigmoid(gx[base + H] + row_sum(bl, U + u, rows, c));
        gx[base] = r;
        gx[base + H] = z;
        aux[(tt * B + b) * H + j] = r * hp;
        return 0.0;
    }
    if (kind == 1u) {
        let base = (t * B + b) * 3u * H + j;
        let r = sigmoid(gx[base] + row_sum(bl, u, rows, c));
        let z = sigmoid(gx[base + H] + row_sum(bl, U + u, rows, c));
        let hn = row_sum(bl, 2u * U + u, rows, c) + w_rec[3u * H * H + j];
        let n = tanh_s(gx[base + 2u * H] + r * hn);
        if (train) {
            gx[base] = r;
            gx[base + H] = z;
            gx[base + 2u * H] = n;
            aux[(tt * B + b) * H + j] = hn;
        }
        return (1.0 - z) * n + z * hp;
    }
    return act(select(0u, 1u, (p.flags & RELU) != 0u), gx[(t * B + b) * H + j] + row_sum(bl, u, rows, c));
}

// One step of slice gi for the batch tile at b0 (h of the tile already in gvec).
fn slice_step(kind: u32, lid: u32, w: WRow, gi: u32, t: u32, b0: u32) {
    let H = p.hidden;
    let U = p._pad2;
    let B = p.batch;
    let two = phases(kind) == 2u;
    let c = chunks(p.out_size);
    let vrow = c * KC;
    let rows = nrows(kind) * U;
    let ru = lid / c;
    let q = lid % c;
    if (ru < rows) {
        for (var bl = 0u; bl < p.b_tile; bl++) {
            gsb[(bl * rows + ru) * c + q] = dot_wrow(w, bl * vrow + q * KC);
        }
    }
    workgroupBarrier();
    let rs = slot_before(t);
    let ws = slot_after(t);
    for (var e = lid; e < p.b_tile * U; e += WG) {
        let bl = e / U;
        let u = e % U;
        let j = gi * U + u;
        let b = b0 + bl;
        if (b < B && j < H) {
            let o_at = (t * B + b) * p.stride + p.col + j;
            if (t < lens[b]) {
                let h = update(kind, t, b, bl, j, u, rows, c);
                if (!two) {
                    hseq[(ws * B + b) * H + j] = h;
                    out[o_at] = h;
                }
            } else {
                if (!two) {
                    hseq[(ws * B + b) * H + j] = hseq[(rs * B + b) * H + j];
                    out[o_at] = 0.0;
                }
                if (kind == 0u) {
                    cseq[(ws * B + b) * H + j] = cseq[(rs * B + b) * H + j];
                }
            }
        }
    }
    workgroupBarrier();
}

// Phase 1 of a two-phase step for slice gi. LSTM projection: outputs q of the slice's
// share of P, h = W_hr h_raw (h_raw of every unit from aux). GRU reset-before: the
// candidate from (r⊙h) W_hnᵀ (r⊙h of every unit is in gvec) and the new h.
fn slice_phase1(kind: u32, lid: u32, w: WRow, gi: u32, t: u32, b0: u32) {
    let H = p.hidden;
    let P = p.out_size;
    let B = p.batch;
    let S = p._pad1;
    let rs = slot_before(t);
    let ws = slot_after(t);
    let tt = select(0u, t, (p.flags & AUX_PER_T) != 0u);
    if (kind == 0u) {
        let uq = (P + S - 1u) / S;
        for (var e = lid; e < p.b_tile * uq; e += WG) {
            let bl = e / uq;
            let q = gi * uq + e % uq;
            let b = b0 + bl;
            if (b < B && q < P) {
                let o_at = (t * B + b) * p.stride + p.col + q;
                if (t < lens[b]) {
                    var acc = 0.0;
                    let wr = 4u * H * P + q * H;
                    for (var j = 0u; j < H; j++) {
                        acc += w_rec[wr + j] * aux[(tt * B + b) * H + j];
                    }
                    hseq[(ws * B + b) * P + q] = acc;
                    out[o_at] = acc;
                } else {
                    hseq[(ws * B + b) * P + q] = hseq[(rs * B + b) * P + q];
                    out[o_at] = 0.0;
                }
            }
        }
        workgroupBarrier();
        return;
    }
    let U = p._pad2;
    let c = chunks(H);
    let vrow = c * KC;
    let rows = 3u * U;
    let ru = lid / c;
    let q = lid % c;
    if (ru < rows) {
        for (var bl = 0u; bl < p.b_tile; bl++) {
            gsb[(bl * rows + ru) * c + q] = dot_wrow(w, bl * vrow + q * KC);
        }
    }
    workgroupBarrier();
    for (var e = lid; e < p.b_tile * U; e += WG) {
        let bl = e / U;
        let u = e % U;
        let j = gi * U + u;
        let b = b0 + bl;
        if (b < B && j < H) {
            let o_at = (t * B + b) * p.stride + p.col + j;
            let hp = hseq[(rs * B + b) * H + j];
            if (t < lens[b]) {
                let base = (t * B + b) * 3u * H + j;
                let z = gx[base + H];
                let n = tanh_s(gx[base + 2u * H] + row_sum(bl, 2u * U + u, rows, c));
                if ((p.flags & TRAIN) != 0u) {
                    gx[base + 2u * H] = n;
                }
                let h = (1.0 - z) * n + z * hp;
                hseq[(ws * B + b) * H + j] = h;
                out[o_at] = h;
            } else {
                hseq[(ws * B + b) * H + j] = hp;
                out[o_at] = 0.0;
            }
        }
    }
    workgroupBarrier();
}

fn run(kind: u32, lid: u32, wid: vec3<u32>, nwg: vec3<u32>) {
    let S = p._pad1;
    let fb = fallback_mode();
    let step_mode = (p.flags & STEP_MODE) != 0u;
    let f = flat_wid(wid, nwg);
    let tiles = (p.batch + p.b_tile - 1u) / p.b_tile;
    let tile = select(f / S, f, fb);
    let g0 = select(f % S, 0u, fb);
    let g1 = select(g0 + 1u, S, fb);
    let b0 = tile * p.b_tile;
    let wreg = slice_chunk(lid, g0, kind);
    let np = phases(kind);
    // Barriers are counted per phase: barrier s·np + ph follows phase ph of step s.
    var first = p.s_begin * np;
    if (fb) {
        if (lid == 0u) {
            wg_ok = steps_done(S * tiles);
        }
        first = max(first, workgroupUniformLoad(&wg_ok));
    } else if (!step_mode) {
        if (grid_failed(lid, first, S * tiles)) {
            return;
        }
    }
    for (var i = 0u; i < p.n_steps; i++) {
        let s = p.s_begin + i;
        let t = time_of(s);
        for (var ph = 0u; ph < np; ph++) {
            let bidx = s * np + ph;
            // Step mode runs one phase per dispatch when _pad3 names it (phase + 1).
            let skip = step_mode && p._pad3 != 0u && p._pad3 != ph + 1u;
            if (bidx >= first && !skip) {
                // Fallback: one workgroup runs every slice, so the h (dG) it reads next was
                // stored by its own other invocations; workgroupBarrier orders workgroup
                // memory only, storageBarrier makes those stores visible.
                if (fb) {
                    storageBarrier();
                }
                if (ph == 0u || kind == 1u) {
                    load_h(lid, b0, slot_before(t), ph == 1u, t);
                    workgroupBarrier();
                }
                for (var gi = g0; gi < g1; gi++) {
                    var w = wreg;
                    if (fb) {
                        w = slice_chunk(lid, gi, kind);
                    }
                    if (ph == 0u) {
                        slice_step(kind, lid, w, gi, t, b0);
                    } else {
                        slice_phase1(kind, lid, w, gi, t, b0);
                    }
                }
                if (!fb && !step_mode) {
                    if (!grid_sync(lid, bidx, S * tiles)) {
                        return;
                    }
                }
            }
        }
    }
}

@compute @workgroup_size(WG, 1, 1)
fn lstm(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    run(0u, lid, wid, nwg);
}

@compute @workgroup_size(WG, 1, 1)
fn gru(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    run(1u, lid, wid, nwg);
}

@compute @workgroup_size(WG, 1, 1)
fn rnn(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    run(2u, lid, wid, nwg);
}
