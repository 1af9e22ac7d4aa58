// resident_forward.wgsl — Resident recurrence, forward in time: LSTM (entry `lstm`), GRU
// (`gru`, reset-after or Keras reset-before) and Elman RNN (`rnn`, tanh or relu).
// Same equations, saved buffers and packed-length semantics as lstm_forward.wgsl,
// gru_forward.wgsl and rnn_forward.wgsl (read their headers): a backward of any algorithm can
// follow this forward. gx = x W_ihᵀ + folded biases comes from the GEMM before this kernel.
//   LSTM: [i|f|g|o] = gx + h W_hhᵀ; c = f c + i g; h_raw = o tanh(c); h = h_raw W_hrᵀ or h_raw
//   GRU:  r, z = σ(gx + h W_hᵀ); after: n = tanh(gx_n + r (h W_hnᵀ + b_hn)); before:
//         n = tanh(gx_n + (r h) W_hnᵀ); h' = (1-z) n + z h
//   RNN:  h' = act(gx + h W_hhᵀ)
//
// Bindings (group 0), the forward family of kernels::rec (FwdBufs):
//   0 p      uniform Params (resident_common.wgsl; stride/col = out row stride/first column)
//   1 gx     storage rw  f32[T,B,G·H]  in: pre-activations; out (train): activated gates
//   2 w_rec  storage r   f32[...]      W_hh (G·H × P) at 0, then W_hr (LSTM, P×H) or b_hn (GRU)
//   3 lens   storage r   u32[B]        valid length per sequence
//   4 hseq   storage rw  f32[S,B,P]    h ring (slot convention of rnn_common.wgsl)
//   5 cseq   storage rw  f32[S,B,H]    c ring (LSTM; a 1-element dummy otherwise)
//   6 out    storage rw  f32[T,B,stride] output, columns col..col+P
//   7 aux    storage rw  f32[T or 1,B,H] LSTM h_raw (projection), GRU hn / r⊙h (training)
//
// Memory plan: invocation (r, q) = (weight row r < G·H, chunk q < C = ceil(P/64)) holds
// W_hh[r, 64q .. 64q+64] in 16 vec4 registers (resident_regs.wgsl) for the whole dispatch:
// W_hh is read from memory once per dispatch, not once per step. vbuf holds h of the batch
// tile (C·16 vec4 per row, zero past P; GRU reset-before: a second such block for r⊙h). sbuf
// holds the partial sums [b_tile, G·H, C], then the LSTM's c [b_tile, H] and h_raw
// [b_tile, H]. W_hr (projection) is read from storage in a third phase.
// Staged (STAGED = 1, every backend but Vulkan; resident_common.wgsl): vset writes the
// scalar mirror vstage and vsync copies it into vbuf before each mat-vec, one more barrier
// per mat-vec, so no two invocations store parts of one workgroup vec4.
// Workgroup layout: WG ≥ G·H·C invocations (override), one workgroup per batch tile of b_tile
// rows; per step 2 barriers (LSTM projection 3, GRU reset-before 4).
// Limits: G·H·C ≤ max invocations and the workgroup memory above ≤ the device's (host checks
// and returns Error::Limit naming both). The host chunks n_steps under the loop budget.
// Caveats: barriers only in uniform control flow (`proj`, `before` come from the uniform).

const TRAIN: u32 = 1u;
const PROJ: u32 = 2u;
const AUX_PER_T: u32 = 4u;
const RESET_BEFORE: u32 = 16u;
const RELU: u32 = 32u;

@group(0) @binding(1) var<storage, read_write> gx: array<f32>;
@group(0) @binding(2) var<storage, read> w_rec: array<f32>;
@group(0) @binding(3) var<storage, read> lens: array<u32>;
@group(0) @binding(4) var<storage, read_write> hseq: array<f32>;
@group(0) @binding(5) var<storage, read_write> cseq: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> aux: array<f32>;

fn aux_index(t: u32, b: u32, j: u32) -> u32 {
    let tt = select(0u, t, (p.flags & AUX_PER_T) != 0u);
    return (tt * p.batch + b) * p.hidden + j;
}

fn tile_base(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * p.b_tile;
}

// The weight chunk of invocation lid: row lid / C, floats 64·(lid % C).. of a row of `len`;
// all zero for invocations past `rows` rows.
fn my_chunk(lid: u32, rows: u32, len: u32, row_base: u32) -> WRow {
    let c = chunks(len);
    let r = lid / c;
    let q = lid % c;
    var n = 0u;
    if (r < rows) {
        n = min(CHUNK, len - q * CHUNK);
    }
    return load_wrow(row_base + r * len + q * CHUNK, n);
}

// Partial sums of rows [r_from, r_to) for every batch row of the tile: invocation (r, q)
// multiplies its chunk with vector block `vb` (vec4 offset) of each batch row.
fn matvec(w: WRow, lid: u32, len: u32, r_from: u32, r_to: u32, rows: u32, vb: u32) {
    let c = chunks(len);
    let r = lid / c;
    let q = lid % c;
    if (r >= r_from && r < r_to) {
        let vrow = c * KC;
        for (var bl = 0u; bl < p.b_tile; bl++) {
            sbuf[(bl * rows + r) * c + q] = dot_wrow(w, vb + bl * vrow + q * KC);
        }
    }
}

// Σ over chunks of row r's partial sums for batch row bl.
fn row_sum(bl: u32, r: u32, rows: u32, c: u32) -> f32 {
    var acc = 0.0;
    for (var q = 0u; q < c; q++) {
        acc += sbuf[(bl * rows + r) * c + q];
    }
    return acc;
}

// h[k] of batch row b at ring slot `slot`; 0 past P and past B.
fn h_elem(b: u32, slot: u32, k: u32) -> f32 {
    if (b < p.batch && k < p.out_size) {
        return hseq[(slot * p.batch + b) * p.out_size + k];
    }
    return 0.0;
}

// Loads h of the tile into vbuf block `vb`, one whole vec4 per store: WGSL lets a store to
// one component access the whole vector, so no two invocations may share a vec4.
fn load_h(lid: u32, b0: u32, slot: u32, vb: u32) {
    let vrow = chunks(p.out_size) * KC;
    for (var e = lid; e < p.b_tile * vrow; e += WG) {
        let b = b0 + e / vrow;
        let k = (e % vrow) * 4u;
        vput(vb + e, vec4<f32>(
            h_elem(b, slot, k),
            h_elem(b, slot, k + 1u),
            h_elem(b, slot, k + 2u),
            h_elem(b, slot, k + 3u),
        ));
    }
}

@compute @workgroup_size(WG, 1, 1)
fn lstm(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let H = p.hidden;
    let P = p.out_size;
    let B = p.batch;
    let bt = p.b_tile;
    let rows = 4u * H;
    let c = chunks(P);
    let vrow = c * KC;
    let b0 = tile_base(wid, nwg);
    let proj = (p.flags & PROJ) != 0u;
    let train = (p.flags & TRAIN) != 0u;
    // sbuf: partials [bt·4H·C] | c [bt·H] | h_raw [bt·H]
    let cb = bt * rows * c;
    let rb = cb + bt * H;
    let w = my_chunk(lid, rows, P, 0u);

    let rs0 = slot_before(time_of(p.s_begin));
    load_h(lid, b0, rs0, 0u);
    for (var e = lid; e < bt * H; e += WG) {
        let b = b0 + e / H;
        var v = 0.0;
        if (b < B) {
            v = cseq[(rs0 * B + b) * H + e % H];
        }
        sbuf[cb + e] = v;
    }
    workgroupBarrier();

    for (var i = 0u; i < p.n_steps; i++) {
        let t = time_of(p.s_begin + i);
        let ws = slot_after(t);
        vsync(lid);
        matvec(w, lid, P, 0u, rows, rows, 0u);
        workgroupBarrier();
        for (var e = lid; e < bt * H; e += WG) {
            let bl = e / H;
            let j = e % H;
            let b = b0 + bl;
            if (b < B) {
                var cv = sbuf[cb + e];
                if (t < lens[b]) {
                    let base = (t * B + b) * rows + j;
                    let ig = sigmoid(gx[base] + row_sum(bl, j, rows, c));
                    let fg = sigmoid(gx[base + H] + row_sum(bl, H + j, rows, c));
                    let gg = tanh_s(gx[base + 2u * H] + row_sum(bl, 2u * H + j, rows, c));
                    let og = sigmoid(gx[base + 3u * H] + row_sum(bl, 3u * H + j, rows, c));
                    if (train) {
                        gx[base] = ig;
                        gx[base + H] = fg;
                        gx[base + 2u * H] = gg;
                        gx[base + 3u * H] = og;
                    }
                    cv = fg * cv + ig * gg;
                    let hr = og * tanh_s(cv);
                    sbuf[cb + e] = cv;
                    if (proj) {
                        sbuf[rb + e] = hr;
                        if (train) {
                            aux[aux_index(t, b, j)] = hr;
                        }
                    } else {
                        vset(0u, vrow, bl, j, hr);
                        out[(t * B + b) * p.stride + p.col + j] = hr;
                        hseq[(ws * B + b) * P + j] = hr;
                    }
                } else if (!proj) {
                    out[(t * B + b) * p.stride + p.col + j] = 0.0;
                    hseq[(ws * B + b) * P + j] = vget(0u, vrow, bl, j);
                }
                cseq[(ws * B + b) * H + j] = cv;
            }
        }
        workgroupBarrier();
        if (proj) {
            for (var e = lid; e < bt * P; e += WG) {
                let bl = e / P;
                let q = e % P;
                let b = b0 + bl;
                if (b < B) {
                    var h = vget(0u, vrow, bl, q);
                    let o_at = (t * B + b) * p.stride + p.col + q;
                    if (t < lens[b]) {
                        var acc = 0.0;
                        let wr = 4u * H * P + q * H;
                        for (var j = 0u; j < H; j++) {
                            acc += w_rec[wr + j] * sbuf[rb + bl * H + j];
                        }
                        h = acc;
                        vset(0u, vrow, bl, q, h);
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
}

@compute @workgroup_size(WG, 1, 1)
fn gru(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let H = p.hidden;
    let B = p.batch;
    let bt = p.b_tile;
    let rows = 3u * H;
    let c = chunks(H);
    let vrow = c * KC;
    let b0 = tile_base(wid, nwg);
    let before = (p.flags & RESET_BEFORE) != 0u;
    let train = (p.flags & TRAIN) != 0u;
    // vbuf: h [bt·vrow] | r⊙h [bt·vrow] (reset-before).  sbuf: partials [bt·3H·C]
    let rhb = bt * vrow;
    let w = my_chunk(lid, rows, H, 0u);

    load_h(lid, b0, slot_before(time_of(p.s_begin)), 0u);
    if (before) {
        vzero(lid, rhb, 2u * rhb);
    }
    workgroupBarrier();

    for (var i = 0u; i < p.n_steps; i++) {
        let t = time_of(p.s_begin + i);
        let ws = slot_after(t);
        vsync(lid);
        matvec(w, lid, H, 0u, select(rows, 2u * H, before), rows, 0u);
        workgroupBarrier();
        for (var e = lid; e < bt * H; e += WG) {
            let bl = e / H;
            let j = e % H;
            let b = b0 + bl;
            if (b < B && t < lens[b]) {
                let base = (t * B + b) * rows + j;
                let hp = vget(0u, vrow, bl, j);
                let r = sigmoid(gx[base] + row_sum(bl, j, rows, c));
                let z = sigmoid(gx[base + H] + row_sum(bl, H + j, rows, c));
                if (before) {
                    gx[base] = r;
                    gx[base + H] = z;
                    vset(rhb, vrow, bl, j, r * hp);
                    if (train) {
                        aux[aux_index(t, b, j)] = r * hp;
                    }
                } else {
                    let hn = row_sum(bl, 2u * H + j, rows, c) + w_rec[3u * H * H + j];
                    let n = tanh_s(gx[base + 2u * H] + r * hn);
                    if (train) {
                        gx[base] = r;
                        gx[base + H] = z;
                        gx[base + 2u * H] = n;
                        aux[aux_index(t, b, j)] = hn;
                    }
                    let h = (1.0 - z) * n + z * hp;
                    vset(0u, vrow, bl, j, h);
                    out[(t * B + b) * p.stride + p.col + j] = h;
                    hseq[(ws * B + b) * H + j] = h;
                }
            } else if (b < B && !before) {
                out[(t * B + b) * p.stride + p.col + j] = 0.0;
                hseq[(ws * B + b) * H + j] = vget(0u, vrow, bl, j);
            }
        }
        workgroupBarrier();
        if (before) {
            vsync(lid);
            matvec(w, lid, H, 2u * H, rows, rows, rhb);
            workgroupBarrier();
            for (var e = lid; e < bt * H; e += WG) {
                let bl = e / H;
                let j = e % H;
                let b = b0 + bl;
                if (b < B) {
                    var h = vget(0u, vrow, bl, j);
                    let o_at = (t * B + b) * p.stride + p.col + j;
                    if (t < lens[b]) {
                        let base = (t * B + b) * rows + j;
                        let z = gx[base + H];
                        let n = tanh_s(gx[base + 2u * H] + row_sum(bl, 2u * H + j, rows, c));
                        if (train) {
                            gx[base + 2u * H] = n;
                        }
                        h = (1.0 - z) * n + z * h;
                        vset(0u, vrow, bl, j, h);
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
}

@compute @workgroup_size(WG, 1, 1)
fn rnn(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let H = p.hidden;
    let B = p.batch;
    let bt = p.b_tile;
    let c = chunks(H);
    let vrow = c * KC;
    let b0 = tile_base(wid, nwg);
    let kind = select(0u, 1u, (p.flags & RELU) != 0u);
    let w = my_chunk(lid, H, H, 0u);

    load_h(lid, b0, slot_before(time_of(p.s_begin)), 0u);
    workgroupBarrier();

    for (var i = 0u; i < p.n_steps; i++) {
        let t = time_of(p.s_begin + i);
        let ws = slot_after(t);
        vsync(lid);
        matvec(w, lid, H, 0u, H, H, 0u);
        workgroupBarrier();
        for (var e = lid; e < bt * H; e += WG) {
            let bl = e / H;
            let j = e % H;
            let b = b0 + bl;
            if (b < B) {
                var h = vget(0u, vrow, bl, j);
                let o_at = (t * B + b) * p.stride + p.col + j;
                if (t < lens[b]) {
                    h = act(kind, gx[(t * B + b) * H + j] + row_sum(bl, j, H, c));
                    vset(0u, vrow, bl, j, h);
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
