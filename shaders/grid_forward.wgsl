// grid_forward.wgsl — Grid recurrence, forward in time: LSTM without projection (`lstm`),
// GRU reset-after (`gru`), Elman RNN tanh/relu (`rnn`). Same equations, saved buffers and
// packed-length semantics as lstm_forward.wgsl, gru_forward.wgsl, rnn_forward.wgsl (their
// headers have them); a backward of any algorithm can follow.
//
// Bindings (group 0): 0..7 the forward family of kernels::rec (FwdBufs: gx rw [T,B,G·H],
// w_rec r, lens r [B], hseq rw [S,B,H], cseq rw [S,B,H], out rw [T,B,stride], aux rw), and
//   8 sync  storage rw  atomic<u32>[1]  grid barrier counter (zeroed by the host per call)
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
const AUX_PER_T: u32 = 4u;
const RELU: u32 = 32u;

@group(0) @binding(1) var<storage, read_write> gx: array<f32>;
@group(0) @binding(2) var<storage, read> w_rec: array<f32>;
@group(0) @binding(3) var<storage, read> lens: array<u32>;
@group(0) @binding(4) var<storage, read_write> hseq: array<f32>;
@group(0) @binding(5) var<storage, read_write> cseq: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> aux: array<f32>;
@group(0) @binding(8) var<storage, read_write> sync: array<atomic<u32>>;

// Gate rows per unit: 4 LSTM, 3 GRU, 1 RNN.
fn nrows(kind: u32) -> u32 {
    return select(select(1u, 3u, kind == 1u), 4u, kind == 0u);
}

// Weight chunk of invocation lid for slice gi: row (gate k, unit u) of W_hh.
fn slice_chunk(lid: u32, gi: u32, kind: u32) -> WRow {
    let H = p.hidden;
    let U = p._pad2;
    let c = chunks(H);
    let ru = lid / c;
    let q = lid % c;
    let k = ru / U;
    let j = gi * U + ru % U;
    var n = 0u;
    if (k < nrows(kind) && j < H) {
        n = min(CHUNK, H - q * CHUNK);
    }
    return load_wrow((k * H + j) * H + q * CHUNK, n);
}

fn row_sum(bl: u32, ru: u32, rows: u32, c: u32) -> f32 {
    var acc = 0.0;
    for (var q = 0u; q < c; q++) {
        acc += gsb[(bl * rows + ru) * c + q];
    }
    return acc;
}

fn load_h(lid: u32, b0: u32, slot: u32) {
    let H = p.hidden;
    let vrow = chunks(H) * KC;
    for (var e = lid; e < p.b_tile * vrow * 4u; e += WG) {
        let b = b0 + e / (vrow * 4u);
        let k = e % (vrow * 4u);
        var v = 0.0;
        if (b < p.batch && k < H) {
            v = hseq[(slot * p.batch + b) * H + k];
        }
        gvec[e / 4u][e % 4u] = v;
    }
}

// The update of unit j of batch row b at time t from the row sums; returns the new h.
fn update(kind: u32, t: u32, b: u32, bl: u32, j: u32, u: u32, rows: u32, c: u32) -> f32 {
    let H = p.hidden;
    let U = p._pad2;
    let B = p.batch;
    let train = (p.flags & TRAIN) != 0u;
    let hp = vget(chunks(H) * KC, bl, j);
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
        return og * tanh_s(cv);
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
            let tt = select(0u, t, (p.flags & AUX_PER_T) != 0u);
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
    let c = chunks(H);
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
                hseq[(ws * B + b) * H + j] = h;
                out[o_at] = h;
            } else {
                hseq[(ws * B + b) * H + j] = hseq[(rs * B + b) * H + j];
                out[o_at] = 0.0;
                if (kind == 0u) {
                    cseq[(ws * B + b) * H + j] = cseq[(rs * B + b) * H + j];
                }
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
    var s0 = p.s_begin;
    if (fb) {
        if (lid == 0u) {
            wg_ok = steps_done(S * tiles);
        }
        s0 = max(s0, workgroupUniformLoad(&wg_ok));
    } else if (!step_mode) {
        if (grid_failed(lid, p.s_begin, S * tiles)) {
            return;
        }
    }
    for (var i = 0u; i < p.n_steps; i++) {
        let s = p.s_begin + i;
        if (s >= s0) {
            let t = time_of(s);
            load_h(lid, b0, slot_before(t));
            workgroupBarrier();
            for (var gi = g0; gi < g1; gi++) {
                var w = wreg;
                if (fb) {
                    w = slice_chunk(lid, gi, kind);
                }
                slice_step(kind, lid, w, gi, t, b0);
            }
            if (!fb && !step_mode) {
                if (!grid_sync(lid, s, S * tiles)) {
                    return;
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
