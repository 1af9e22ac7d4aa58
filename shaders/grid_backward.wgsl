// grid_backward.wgsl — Grid recurrence, backward through time: LSTM without projection
// (`lstm`), GRU reset-after (`gru`), Elman RNN (`rnn`). Same equations, outputs and
// packed-length semantics as lstm_backward.wgsl, gru_backward.wgsl, rnn_backward.wgsl:
//   LSTM R_{s-1} = dG_s·W_hh;  GRU R_{s-1} = dh z + [da_r|da_z|d_hn]·W_hh;  RNN da_s·W_hh.
// The host runs the cell's FINAL pass (dh0) afterwards and the weight gradients as GEMMs.
//
// Bindings (group 0): 0..8 the backward family of kernels::rec (BwdBufs: gates r, w_rec r
// (W_hhᵀ at p.wt_off), lens r, seq r (c ring LSTM / h ring), dy r, dgates rw [T,B,D·H],
// state rw (R / GRU direct part, then LSTM dc), aux rw (GRU hn)), and
//   9 sync  storage rw  atomic<u32>[1]  grid barrier counter (zeroed by the host per call)
// dgates and aux are @coherent, as hseq/aux in grid_forward.wgsl (other workgroups read them
// after the grid barrier).
//
// Memory plan: slice g of U units; invocation (unit u, chunk q < C = ceil(G·H/64)) keeps
// W_hhᵀ[g·U + u, 64q ..] in 16 vec4 registers. The gate-gradient rows of the step after
// are exchanged through dgates in storage: each step every workgroup loads its tile's
// vector into gvec, computes R for its units, their gate gradients (R, dc in `state`), then
// one grid barrier. Modes as grid_forward.wgsl (grid, STEP_MODE, FALLBACK).
// Workgroup layout: WG ≥ U·C; grid S·tiles workgroups, fallback tiles.
// Limits: C ≤ WG ≤ max invocations, workgroup memory 16·VB + 4·SB (host-checked).

const PROJ: u32 = 2u;
const RESET_BEFORE: u32 = 16u;
const RELU: u32 = 32u;

@group(0) @binding(1) var<storage, read> gates: array<f32>;
@group(0) @binding(2) var<storage, read> w_rec: array<f32>;
@group(0) @binding(3) var<storage, read> lens: array<u32>;
@group(0) @binding(4) var<storage, read> seq: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) @coherent var<storage, read_write> dgates: array<f32>;
@group(0) @binding(7) var<storage, read_write> state: array<f32>;
@group(0) @binding(8) @coherent var<storage, read_write> aux: array<f32>;
@group(0) @binding(9) var<storage, read_write> sync: array<atomic<u32>>;

// Width of the vector W_hhᵀ multiplies (gate rows), and of a dG row.
fn vlen(kind: u32) -> u32 {
    return select(select(1u, 3u, kind == 1u), 4u, kind == 0u) * p.hidden;
}

fn before() -> bool {
    return (p.flags & RESET_BEFORE) != 0u;
}

fn dg_width(kind: u32) -> u32 {
    if (kind == 1u && before()) {
        return 3u * p.hidden;
    }
    return select(1u, 4u, kind != 2u) * p.hidden;
}

// Phases (grid barriers) per step: 2 for LSTM projection and GRU reset-before.
fn phases(kind: u32) -> u32 {
    return select(1u, 2u, (p.flags & (PROJ | RESET_BEFORE)) != 0u && kind != 2u);
}

// Rows of W_hhᵀ the slices share: P for the LSTM (projection), H otherwise.
fn nunits(kind: u32) -> u32 {
    return select(p.hidden, p.out_size, kind == 0u);
}

fn slice_chunk(lid: u32, gi: u32, kind: u32) -> WRow {
    let len = vlen(kind);
    let c = chunks(len);
    let u = lid / c;
    let q = lid % c;
    let j = gi * p._pad2 + u;
    var n = 0u;
    if (u < p._pad2 && j < nunits(kind)) {
        n = min(CHUNK, len - q * CHUNK);
    }
    return load_wrow(p.wt_off + j * len + q * CHUNK, n);
}

fn live_step(s: u32, b: u32) -> bool {
    return s < p.t_len && time_of(s) < lens[b];
}

fn dy_at(t: u32, b: u32, j: u32) -> f32 {
    return dy[(t * p.batch + b) * p.stride + p.col + j];
}

// Element k of batch row b's vector of processing step s (GRU: [da_r|da_z|d_hn]).
fn vec_elem(kind: u32, b: u32, s: u32, ph: u32, k: u32) -> f32 {
    let H = p.hidden;
    if (b >= p.batch || k >= vlen(kind) || s >= p.t_len) {
        return 0.0;
    }
    let col = select(k, k + H, kind == 1u && !before() && k >= 2u * H);
    // Reset-before: [da_r|da_z|0] (phase 0), [0|0|da_n] (phase 1).
    let keep = !(kind == 1u && before()) || ((k < 2u * H) == (ph == 0u));
    if (!keep) {
        return 0.0;
    }
    return dgates[(time_of(s) * p.batch + b) * dg_width(kind) + col];
}

// gvec ← the vector of processing step s for the tile.
fn load_vec(kind: u32, lid: u32, b0: u32, s: u32, ph: u32) {
    let vrow = chunks(vlen(kind)) * KC;
    // One whole vec4 per store (WGSL lets a component store touch the whole vector).
    for (var e = lid; e < p.b_tile * vrow; e += WG) {
        let b = b0 + e / vrow;
        let k = (e % vrow) * 4u;
        gvec[e] = vec4<f32>(
            vec_elem(kind, b, s, ph, k),
            vec_elem(kind, b, s, ph, k + 1u),
            vec_elem(kind, b, s, ph, k + 2u),
            vec_elem(kind, b, s, ph, k + 3u),
        );
    }
}

fn row_sum(bl: u32, u: u32, c: u32) -> f32 {
    var acc = 0.0;
    for (var q = 0u; q < c; q++) {
        acc += gsb[(bl * p._pad2 + u) * c + q];
    }
    return acc;
}

// Gate gradients of unit j, batch row b, at processing step s.
fn unit_grad(kind: u32, s: u32, b: u32, bl: u32, j: u32, u: u32, c: u32) {
    let H = p.hidden;
    let B = p.batch;
    let t = time_of(s);
    let dw = dg_width(kind);
    let at = (t * B + b) * dw + j;
    let live = t < lens[b];
    if (kind == 1u && before()) {
        let r_tot = state[b * H + j] + row_sum(bl, u, c);
        if (live) {
            let dh = r_tot + dy_at(t, b, j);
            let gb = (t * B + b) * 3u * H + j;
            let z = gates[gb + H];
            let n = gates[gb + 2u * H];
            let hp = seq[(slot_before(t) * B + b) * H + j];
            dgates[at + H] = dh * (hp - n) * z * (1.0 - z);
            dgates[at + 2u * H] = dh * (1.0 - z) * (1.0 - n * n);
            state[b * H + j] = dh;
        } else {
            for (var g = 0u; g < dw; g += H) {
                dgates[at + g] = 0.0;
            }
            state[b * H + j] = r_tot;
        }
        return;
    }
    if (kind == 1u) {
        let r_tot = state[b * H + j] + row_sum(bl, u, c);
        if (live) {
            let dh = r_tot + dy_at(t, b, j);
            let gb = (t * B + b) * 3u * H + j;
            let r = gates[gb];
            let z = gates[gb + H];
            let n = gates[gb + 2u * H];
            let hp = seq[(slot_before(t) * B + b) * H + j];
            let da_n = dh * (1.0 - z) * (1.0 - n * n);
            dgates[at] = da_n * aux[(t * B + b) * H + j] * r * (1.0 - r);
            dgates[at + H] = dh * (hp - n) * z * (1.0 - z);
            dgates[at + 2u * H] = da_n;
            dgates[at + 3u * H] = da_n * r;
            state[b * H + j] = dh * z;
        } else {
            for (var g = 0u; g < dw; g += H) {
                dgates[at + g] = 0.0;
            }
            state[b * H + j] = r_tot;
        }
        return;
    }
    let P = p.out_size;
    var r = state[b * P + j];
    if (live_step(s + 1u, b)) {
        r = row_sum(bl, u, c);
    }
    state[b * P + j] = r;
    if (kind == 0u && (p.flags & PROJ) != 0u) {
        // Phase 0 of the projection: the total dh per output j (< P); phase 1 does the rest.
        var tot = 0.0;
        if (live) {
            tot = r + dy_at(t, b, j);
        }
        aux[(t * B + b) * P + j] = tot;
        return;
    }
    if (kind == 2u) {
        var d = 0.0;
        if (live) {
            let h = seq[(slot_after(t) * B + b) * H + j];
            d = (r + dy_at(t, b, j)) * act_grad(select(0u, 1u, (p.flags & RELU) != 0u), h);
        }
        dgates[at] = d;
        return;
    }
    lstm_grad(t, b, j, r + dy_at(t, b, j));
}

// LSTM gate gradients of unit j from its total dh_raw (dc carried in state after R).
fn lstm_grad(t: u32, b: u32, j: u32, dh: f32) {
    let H = p.hidden;
    let B = p.batch;
    let at = (t * B + b) * 4u * H + j;
    let dcat = B * p.out_size + b * H + j;
    var dg = vec4<f32>(0.0);
    if (t < lens[b]) {
        let base = (t * B + b) * 4u * H + j;
        let i = gates[base];
        let f = gates[base + H];
        let g = gates[base + 2u * H];
        let o = gates[base + 3u * H];
        let cc = seq[(slot_after(t) * B + b) * H + j];
        let c_prev = seq[(slot_before(t) * B + b) * H + j];
        let tc = tanh_s(cc);
        let dc = state[dcat] + dh * o * (1.0 - tc * tc);
        dg = vec4<f32>(
            dc * g * i * (1.0 - i),
            dc * c_prev * f * (1.0 - f),
            dc * i * (1.0 - g * g),
            dh * tc * o * (1.0 - o)
        );
        state[dcat] = dc * f;
    }
    dgates[at] = dg.x;
    dgates[at + H] = dg.y;
    dgates[at + 2u * H] = dg.z;
    dgates[at + 3u * H] = dg.w;
}

fn slice_step(kind: u32, lid: u32, w: WRow, gi: u32, s: u32, b0: u32) {
    let U = p._pad2;
    let c = chunks(vlen(kind));
    let vrow = c * KC;
    let u = lid / c;
    let q = lid % c;
    if (u < U) {
        for (var bl = 0u; bl < p.b_tile; bl++) {
            gsb[(bl * U + u) * c + q] = dot_wrow(w, bl * vrow + q * KC);
        }
    }
    workgroupBarrier();
    for (var e = lid; e < p.b_tile * U; e += WG) {
        let bl = e / U;
        let uu = e % U;
        let j = gi * U + uu;
        let b = b0 + bl;
        if (b < p.batch && j < nunits(kind)) {
            unit_grad(kind, s, b, bl, j, uu, c);
        }
    }
    workgroupBarrier();
}

// Phase 1 of a two-phase step for slice gi. LSTM projection: units j of the slice's share
// of H, dh_raw = Σ_q W_hr[q, j]·dhtot_q, then the gate gradients. GRU reset-before: d_rh
// from [0|0|da_n]·W_hhᵀ (gvec), da_r and the direct part dh·z + d_rh·r.
fn slice_phase1(kind: u32, lid: u32, w: WRow, gi: u32, s: u32, b0: u32) {
    let H = p.hidden;
    let P = p.out_size;
    let B = p.batch;
    let t = time_of(s);
    if (kind == 0u) {
        let uj = (H + p._pad1 - 1u) / p._pad1;
        for (var e = lid; e < p.b_tile * uj; e += WG) {
            let bl = e / uj;
            let j = gi * uj + e % uj;
            let b = b0 + bl;
            if (b < B && j < H) {
                var dh = 0.0;
                if (t < lens[b]) {
                    let wr = 4u * H * P + j;
                    for (var q = 0u; q < P; q++) {
                        dh += w_rec[wr + q * H] * aux[(t * B + b) * P + q];
                    }
                }
                lstm_grad(t, b, j, dh);
            }
        }
        workgroupBarrier();
        return;
    }
    let U = p._pad2;
    let c = chunks(3u * H);
    let vrow = c * KC;
    let u = lid / c;
    let q = lid % c;
    if (u < U) {
        for (var bl = 0u; bl < p.b_tile; bl++) {
            gsb[(bl * U + u) * c + q] = dot_wrow(w, bl * vrow + q * KC);
        }
    }
    workgroupBarrier();
    for (var e = lid; e < p.b_tile * U; e += WG) {
        let bl = e / U;
        let uu = e % U;
        let k = gi * U + uu;
        let b = b0 + bl;
        if (b < B && k < H && t < lens[b]) {
            let d_rh = row_sum(bl, uu, c);
            let gb = (t * B + b) * 3u * H + k;
            let r = gates[gb];
            let z = gates[gb + H];
            let hp = seq[(slot_before(t) * B + b) * H + k];
            dgates[(t * B + b) * 3u * H + k] = d_rh * hp * r * (1.0 - r);
            state[b * H + k] = state[b * H + k] * z + d_rh * r;
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
    // Processing steps are counted from the last time step (index T-1-s); barrier
    // idx·np + ph follows phase ph of processing step idx.
    var first = (p.t_len - 1u - p.s_begin) * np;
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
        let s = p.s_begin - i;
        let idx = p.t_len - 1u - s;
        for (var ph = 0u; ph < np; ph++) {
            let bidx = idx * np + ph;
            let skip = step_mode && p._pad3 != 0u && p._pad3 != ph + 1u;
            if (bidx >= first && !skip) {
                // Fallback: one workgroup runs every slice, so the h (dG) it reads next was
                // stored by its own other invocations; workgroupBarrier orders workgroup
                // memory only, storageBarrier makes those stores visible.
                if (fb) {
                    storageBarrier();
                }
                if (ph == 0u || kind == 1u) {
                    load_vec(kind, lid, b0, select(s + 1u, s, ph == 1u), ph);
                    workgroupBarrier();
                }
                for (var gi = g0; gi < g1; gi++) {
                    var w = wreg;
                    if (fb) {
                        w = slice_chunk(lid, gi, kind);
                    }
                    if (ph == 0u) {
                        slice_step(kind, lid, w, gi, s, b0);
                    } else {
                        slice_phase1(kind, lid, w, gi, s, b0);
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
