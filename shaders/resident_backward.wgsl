// resident_backward.wgsl — Resident recurrence, backward through time (reversed loop): LSTM
// (entry `lstm`), GRU (`gru`, reset-after or Keras reset-before), Elman RNN (`rnn`).
// Same equations, outputs and packed-length semantics as lstm_backward.wgsl,
// gru_backward.wgsl and rnn_backward.wgsl (read their headers); in short, per active step
//   LSTM: R_{s-1} = dG_s · W_hh;  dh = R + dy (projection: dh_raw = dh W_hr); dG from dh, dc
//   GRU:  R_{s-1} = dh z (+ d_rh r) + [da_r|da_z|d_hn] · W_hh  (reset-before: [da_r|da_z]·W_rz,
//         d_rh = da_n · W_hn)
//   RNN:  R_{s-1} = da_s · W_hh,  da = (R + dy) act'(h)
// The host runs the FINAL pass (dh0) of the cell's own backward file after this kernel, and
// the weight, bias and input gradients as GEMMs on dgates (DESIGN.md §2).
//
// Bindings (group 0), the backward family of kernels::rec (BwdBufs):
//   0 p       uniform Params (resident_common.wgsl; stride/col = dy row stride/column;
//             wt_off = offset of W_hhᵀ in w_rec)
//   1 gates   storage r   f32[T,B,G·H]  activated gates saved by the training forward
//   2 w_rec   storage r   f32[...]      W_hh, W_hr (LSTM proj), b_hn (GRU), W_hhᵀ at wt_off
//   3 lens    storage r   u32[B]
//   4 seq     storage r   f32[T+1,B,·]  c ring (LSTM) or h ring (GRU, RNN) of the forward
//   5 dy      storage r   f32[T,B,stride] upstream output gradient
//   6 dgates  storage rw  f32[T,B,D·H]  output: pre-activation gate gradients (D = 4 LSTM,
//                                        4 GRU reset-after, 3 reset-before, 1 RNN)
//   7 state   storage rw  f32[...]      R (dy_h_n in, carried out) [+ LSTM dc]; GRU: direct part
//   8 aux     storage rw  f32[T,B,·]    LSTM: total dh per step (projection); GRU: hn or r⊙h
//
// Memory plan: invocation (q, k) = (row q < P of W_hhᵀ, chunk k < C = ceil(G·H/64)) holds
// W_hhᵀ[q, 64k .. 64k+64] in 16 vec4 registers for the whole dispatch. vbuf holds the gate
// gradient vector of each batch row of the tile that the next mat-vec multiplies (C·16 vec4
// per row; GRU reset-before a second block for [0|0|da_n]); sbuf the partial sums
// [b_tile, P, C], then R / direct part [b_tile, P], LSTM dc [b_tile, H], LSTM total dh.
// Staged (STAGED = 1, every backend but Vulkan; resident_common.wgsl): vset writes the
// scalar mirror vstage and vsync copies it into vbuf before each mat-vec, one more barrier
// per mat-vec, so no two invocations store parts of one workgroup vec4.
// Workgroup layout: WG ≥ P·C invocations, one workgroup per batch tile; per step 2 barriers
// (LSTM projection 3, GRU reset-before 4).
// Limits: P·C ≤ max invocations, workgroup memory ≤ the device's (host-checked, Error::Limit).
// Steps per dispatch chunked by the host under the loop budget. Barriers in uniform flow.

const PROJ: u32 = 2u;
const RESET_BEFORE: u32 = 16u;
const RELU: u32 = 32u;

@group(0) @binding(1) var<storage, read> gates: array<f32>;
@group(0) @binding(2) var<storage, read> w_rec: array<f32>;
@group(0) @binding(3) var<storage, read> lens: array<u32>;
@group(0) @binding(4) var<storage, read> seq: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dgates: array<f32>;
@group(0) @binding(7) var<storage, read_write> state: array<f32>;
@group(0) @binding(8) var<storage, read_write> aux: array<f32>;

fn dy_at(t: u32, b: u32, q: u32) -> f32 {
    return dy[(t * p.batch + b) * p.stride + p.col + q];
}

fn tile_base(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * p.b_tile;
}

// Whether processing step s exists and is active for batch row b.
fn live_step(s: u32, b: u32) -> bool {
    return s < p.t_len && time_of(s) < lens[b];
}

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

fn matvec(w: WRow, lid: u32, len: u32, rows: u32, vb: u32) {
    let c = chunks(len);
    let r = lid / c;
    let q = lid % c;
    if (r < rows) {
        let vrow = c * KC;
        for (var bl = 0u; bl < p.b_tile; bl++) {
            sbuf[(bl * rows + r) * c + q] = dot_wrow(w, vb + bl * vrow + q * KC);
        }
    }
}

fn row_sum(bl: u32, r: u32, rows: u32, c: u32) -> f32 {
    var acc = 0.0;
    for (var q = 0u; q < c; q++) {
        acc += sbuf[(bl * rows + r) * c + q];
    }
    return acc;
}

// Element k of the vector load_dg builds for batch row b (see there).
fn dg_elem(b: u32, s: u32, k: u32, width: u32, dg_w: u32, mode: u32) -> f32 {
    let H = p.hidden;
    if (b >= p.batch || k >= width || s >= p.t_len) {
        return 0.0;
    }
    // mode 2: GRU reset-before, vector [da_r|da_z|0]
    if (mode == 2u && k >= 2u * H) {
        return 0.0;
    }
    var col = k;
    // mode 1: GRU reset-after, vector [da_r|da_z|d_hn] from row [da_r|da_z|da_n|d_hn]
    if (mode == 1u && k >= 2u * H) {
        col = k + H;
    }
    return dgates[(time_of(s) * p.batch + b) * dg_w + col];
}

// vbuf block `vb` ← the dG row of processing step s (columns picked by `mode`).
// `width` floats per vector; zero past it, past B, and when step s does not exist. One
// whole vec4 per store (no two invocations share a vec4, as load_h in the forward).
fn load_dg(lid: u32, b0: u32, s: u32, width: u32, dg_w: u32, mode: u32, vb: u32) {
    let vrow = chunks(width) * KC;
    for (var e = lid; e < p.b_tile * vrow; e += WG) {
        let b = b0 + e / vrow;
        let k = (e % vrow) * 4u;
        vput(vb + e, vec4<f32>(
            dg_elem(b, s, k, width, dg_w, mode),
            dg_elem(b, s, k + 1u, width, dg_w, mode),
            dg_elem(b, s, k + 2u, width, dg_w, mode),
            dg_elem(b, s, k + 3u, width, dg_w, mode),
        ));
    }
}

struct CellGrad {
    dg: vec4<f32>,
    dc: f32,
}

fn lstm_cell_grad(t: u32, b: u32, j: u32, dh: f32, dc_in: f32) -> CellGrad {
    let H = p.hidden;
    let base = (t * p.batch + b) * 4u * H + j;
    let i = gates[base];
    let f = gates[base + H];
    let g = gates[base + 2u * H];
    let o = gates[base + 3u * H];
    let c = seq[(slot_after(t) * p.batch + b) * H + j];
    let c_prev = seq[(slot_before(t) * p.batch + b) * H + j];
    let tc = tanh_s(c);
    let dc = dc_in + dh * o * (1.0 - tc * tc);
    var r: CellGrad;
    r.dg = vec4<f32>(
        dc * g * i * (1.0 - i),
        dc * c_prev * f * (1.0 - f),
        dc * i * (1.0 - g * g),
        dh * tc * o * (1.0 - o)
    );
    r.dc = dc * f;
    return r;
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
    let G = 4u * H;
    let bt = p.b_tile;
    let c = chunks(G);
    let vrow = c * KC;
    let b0 = tile_base(wid, nwg);
    let proj = (p.flags & PROJ) != 0u;
    // sbuf: partials [bt·P·C] | R [bt·P] | dc [bt·H] | total dh [bt·P]
    let rb = bt * P * c;
    let dcb = rb + bt * P;
    let tb = dcb + bt * H;
    let w = my_chunk(lid, P, G, p.wt_off);

    for (var e = lid; e < bt * P; e += WG) {
        let b = b0 + e / P;
        var v = 0.0;
        if (b < B) {
            v = state[b * P + e % P];
        }
        sbuf[rb + e] = v;
    }
    for (var e = lid; e < bt * H; e += WG) {
        let b = b0 + e / H;
        var v = 0.0;
        if (b < B) {
            v = state[B * P + b * H + e % H];
        }
        sbuf[dcb + e] = v;
    }
    load_dg(lid, b0, p.s_begin + 1u, G, G, 0u, 0u);
    workgroupBarrier();

    for (var i = 0u; i < p.n_steps; i++) {
        let s = p.s_begin - i;
        let t = time_of(s);
        vsync(lid);
        matvec(w, lid, G, P, 0u);
        workgroupBarrier();
        // R_s and the total dh per (b, q); without projection the gate gradients follow.
        for (var e = lid; e < bt * P; e += WG) {
            let bl = e / P;
            let q = e % P;
            let b = b0 + bl;
            if (b < B) {
                var r = sbuf[rb + e];
                if (live_step(s + 1u, b)) {
                    r = row_sum(bl, q, P, c);
                }
                sbuf[rb + e] = r;
                var tot = 0.0;
                if (t < lens[b]) {
                    tot = r + dy_at(t, b, q);
                }
                if (proj) {
                    sbuf[tb + e] = tot;
                    aux[(t * B + b) * P + q] = tot;
                } else {
                    var dg = vec4<f32>(0.0);
                    if (t < lens[b]) {
                        let cg = lstm_cell_grad(t, b, q, tot, sbuf[dcb + bl * H + q]);
                        sbuf[dcb + bl * H + q] = cg.dc;
                        dg = cg.dg;
                    }
                    let at = (t * B + b) * G + q;
                    dgates[at] = dg.x;
                    dgates[at + H] = dg.y;
                    dgates[at + 2u * H] = dg.z;
                    dgates[at + 3u * H] = dg.w;
                    vset(0u, vrow, bl, q, dg.x);
                    vset(0u, vrow, bl, H + q, dg.y);
                    vset(0u, vrow, bl, 2u * H + q, dg.z);
                    vset(0u, vrow, bl, 3u * H + q, dg.w);
                }
            }
        }
        workgroupBarrier();
        if (proj) {
            for (var e = lid; e < bt * H; e += WG) {
                let bl = e / H;
                let j = e % H;
                let b = b0 + bl;
                if (b < B) {
                    var dg = vec4<f32>(0.0);
                    if (t < lens[b]) {
                        var dh = 0.0;
                        let wr = 4u * H * P + j;
                        for (var q = 0u; q < P; q++) {
                            dh += w_rec[wr + q * H] * sbuf[tb + bl * P + q];
                        }
                        let cg = lstm_cell_grad(t, b, j, dh, sbuf[dcb + e]);
                        sbuf[dcb + e] = cg.dc;
                        dg = cg.dg;
                    }
                    let at = (t * B + b) * G + j;
                    dgates[at] = dg.x;
                    dgates[at + H] = dg.y;
                    dgates[at + 2u * H] = dg.z;
                    dgates[at + 3u * H] = dg.w;
                    vset(0u, vrow, bl, j, dg.x);
                    vset(0u, vrow, bl, H + j, dg.y);
                    vset(0u, vrow, bl, 2u * H + j, dg.z);
                    vset(0u, vrow, bl, 3u * H + j, dg.w);
                }
            }
            workgroupBarrier();
        }
    }

    for (var e = lid; e < bt * P; e += WG) {
        let b = b0 + e / P;
        if (b < B) {
            state[b * P + e % P] = sbuf[rb + e];
        }
    }
    for (var e = lid; e < bt * H; e += WG) {
        let b = b0 + e / H;
        if (b < B) {
            state[B * P + b * H + e % H] = sbuf[dcb + e];
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
    let before = (p.flags & RESET_BEFORE) != 0u;
    let dw = select(4u, 3u, before) * H;
    let G = 3u * H;
    let c = chunks(G);
    let vrow = c * KC;
    let b0 = tile_base(wid, nwg);
    // vbuf: [da_r|da_z|d_hn] or [da_r|da_z|0] [bt·vrow] | [0|0|da_n] (reset-before)
    // sbuf: partials [bt·H·C] | direct part [bt·H]
    let v2 = bt * vrow;
    let db = bt * H * c;
    let w = my_chunk(lid, H, G, p.wt_off);

    for (var e = lid; e < bt * H; e += WG) {
        let b = b0 + e / H;
        var v = 0.0;
        if (b < B) {
            v = state[b * H + e % H];
        }
        sbuf[db + e] = v;
    }
    load_dg(lid, b0, p.s_begin + 1u, G, dw, select(1u, 2u, before), 0u);
    if (before) {
        vzero(lid, v2, 2u * v2);
    }
    workgroupBarrier();

    for (var i = 0u; i < p.n_steps; i++) {
        let t = time_of(p.s_begin - i);
        vsync(lid);
        matvec(w, lid, G, H, 0u);
        workgroupBarrier();
        for (var e = lid; e < bt * H; e += WG) {
            let bl = e / H;
            let j = e % H;
            let b = b0 + bl;
            if (b < B) {
                let r_tot = sbuf[db + e] + row_sum(bl, j, H, c);
                let at = (t * B + b) * dw + j;
                if (t < lens[b]) {
                    let dh = r_tot + dy_at(t, b, j);
                    let gb = (t * B + b) * G + j;
                    let r = gates[gb];
                    let z = gates[gb + H];
                    let n = gates[gb + 2u * H];
                    let hp = seq[(slot_before(t) * B + b) * H + j];
                    let dz = dh * (hp - n);
                    let da_z = dz * z * (1.0 - z);
                    let da_n = dh * (1.0 - z) * (1.0 - n * n);
                    dgates[at + H] = da_z;
                    dgates[at + 2u * H] = da_n;
                    if (before) {
                        vset(v2, vrow, bl, 2u * H + j, da_n);
                        sbuf[db + e] = dh;
                    } else {
                        let hn = aux[(t * B + b) * H + j];
                        let da_r = da_n * hn * r * (1.0 - r);
                        let d_hn = da_n * r;
                        dgates[at] = da_r;
                        dgates[at + 3u * H] = d_hn;
                        vset(0u, vrow, bl, j, da_r);
                        vset(0u, vrow, bl, H + j, da_z);
                        vset(0u, vrow, bl, 2u * H + j, d_hn);
                        sbuf[db + e] = dh * z;
                    }
                } else {
                    for (var g = 0u; g < dw; g += H) {
                        dgates[at + g] = 0.0;
                    }
                    vset(0u, vrow, bl, j, 0.0);
                    vset(0u, vrow, bl, H + j, 0.0);
                    if (before) {
                        vset(v2, vrow, bl, 2u * H + j, 0.0);
                    } else {
                        vset(0u, vrow, bl, 2u * H + j, 0.0);
                    }
                    sbuf[db + e] = r_tot;
                }
            }
        }
        workgroupBarrier();
        if (before) {
            vsync(lid);
            matvec(w, lid, G, H, v2);
            workgroupBarrier();
            for (var e = lid; e < bt * H; e += WG) {
                let bl = e / H;
                let k = e % H;
                let b = b0 + bl;
                if (b < B && t < lens[b]) {
                    let d_rh = row_sum(bl, k, H, c);
                    let gb = (t * B + b) * G + k;
                    let r = gates[gb];
                    let z = gates[gb + H];
                    let hp = seq[(slot_before(t) * B + b) * H + k];
                    let da_r = d_rh * hp * r * (1.0 - r);
                    let at = (t * B + b) * dw + k;
                    dgates[at] = da_r;
                    let dh = sbuf[db + e];
                    sbuf[db + e] = dh * z + d_rh * r;
                    vset(0u, vrow, bl, k, da_r);
                    vset(0u, vrow, bl, H + k, dgates[at + H]);
                }
            }
            workgroupBarrier();
        }
    }

    for (var e = lid; e < bt * H; e += WG) {
        let b = b0 + e / H;
        if (b < B) {
            state[b * H + e % H] = sbuf[db + e];
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
    // sbuf: partials [bt·H·C] | R [bt·H]
    let rb = bt * H * c;
    let w = my_chunk(lid, H, H, p.wt_off);

    for (var e = lid; e < bt * H; e += WG) {
        let b = b0 + e / H;
        var v = 0.0;
        if (b < B) {
            v = state[b * H + e % H];
        }
        sbuf[rb + e] = v;
    }
    load_dg(lid, b0, p.s_begin + 1u, H, H, 0u, 0u);
    workgroupBarrier();

    for (var i = 0u; i < p.n_steps; i++) {
        let s = p.s_begin - i;
        let t = time_of(s);
        vsync(lid);
        matvec(w, lid, H, H, 0u);
        workgroupBarrier();
        for (var e = lid; e < bt * H; e += WG) {
            let bl = e / H;
            let j = e % H;
            let b = b0 + bl;
            if (b < B) {
                var r = sbuf[rb + e];
                if (live_step(s + 1u, b)) {
                    r = row_sum(bl, j, H, c);
                }
                sbuf[rb + e] = r;
                var d = 0.0;
                if (t < lens[b]) {
                    let h = seq[(slot_after(t) * B + b) * H + j];
                    d = (r + dy_at(t, b, j)) * act_grad(kind, h);
                }
                dgates[(t * B + b) * H + j] = d;
                vset(0u, vrow, bl, j, d);
            }
        }
        workgroupBarrier();
    }

    for (var e = lid; e < bt * H; e += WG) {
        let b = b0 + e / H;
        if (b < B) {
            state[b * H + e % H] = sbuf[rb + e];
        }
    }
}
