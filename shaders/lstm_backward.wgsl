// lstm_backward.wgsl — LSTM backward through time (BPTT), reversed loop, gate order i,f,g,o.
//
// Processing steps s run from T-1 down to 0 (time t = s forward, T-1-s reverse direction).
// R_s is the gradient reaching the state h after step s from later steps:
//   R_{T-1} = dy_h_n ;  R_{s-1} = dG_s · W_hh   if step s is active, else R_s
//   (recurrent dropout, p.rmask ≠ 0: R_{s-1}[q] = Σ_g m_g[b,q] · (dG_s[g-block] · W_hh[g-block])[q],
//   the forward's per-gate masks of h_{s-1}; see rnn_common.wgsl)
// At step s (active): dh = R_s + dy_out[t,b]  (projection: dh_raw = dh · W_hr, else dh_raw = dh)
//   tc = tanh(c_t);  dc = dc_in + dh_raw⊙o⊙(1-tc²);  dc_out = dc⊙f
//   (for other activations (Params.acts) σ' and tanh' come from the outputs: gate_grad,
//   cand_grad in rnn_common.wgsl)
//   dG = [dc⊙g⊙i(1-i) | dc⊙c_{t-1}⊙f(1-f) | dc⊙i⊙(1-g²) | dh_raw⊙tc⊙o(1-o)]  (pre-activation grads)
// Inactive steps (t ≥ len[b], packed semantics): dG = 0, dy ignored, R and dc pass through.
// After the loop a FINAL `recur` pass gives dh0 = R_{-1}; dc0 is the carried dc.
// Weight, bias and input gradients are NOT accumulated here: the host runs GEMMs on dgates
// after the loop (dW_ih = dGᵀX, dW_hh = dGᵀH_prev, dX = dG W_ih, db = Σ dG, dW_hr = dhtotᵀH_raw).
//
// Bindings (group 0):
//   0 p       uniform Params (rnn_common.wgsl, prepended; stride/col = dy row stride/column)
//   1 gates   storage r   f32[T,B,4H]   activated gates saved by the training forward
//   2 w_rec   storage r   f32[...]      W_hh (4H×P), then W_hr (P×H) when projecting (the
//                                       forward's W_hhᵀ copy follows; unused here)
//   3 lens    storage r   u32[B(+...)]  valid lengths, then the recurrent-dropout masks
//   4 cseq    storage r   f32[T+1,B,H]  c states saved by the forward (slot convention there)
//   5 dy      storage r   f32[T,B,dy_stride] upstream output gradient, columns dy_col..+P
//   6 dgates  storage rw  f32[T,B,4H]   output: pre-activation gate gradients (0 when padded)
//   7 state   storage rw  f32[B·P + B·H] R (in: dy_h_n, out: dh0) then dc (in: dy_c_n, out: dc0)
//   8 dhtot   storage rw  f32[T,B,P]    total dh per step (proj only, 0 when padded)
//
// Entry points:
//   persistent  256 invocations own b_tile sequences for n_steps steps; dG of the previous
//               step, dh, R and dc of the tile live in workgroup memory (pool of 4000 f32):
//               needs b_tile·(4H + 2P + H) ≤ 4000. W_hh read from storage once per step.
//   fused       (no projection) one step, one invocation per (b, j): R, dh and dG together.
//   recur       one step's R and dh per (b, q<P) (projection), or with FINAL the dh0 pass.
//   gates       one step's dG per (b, j<H) from dhtot (projection).
// Limits: persistent needs b_tile·(4H + 2P + H) ≤ 4000 (H ≤ 571 without projection) and 256
// invocations per workgroup; the per-step kernels have none beyond u32 indexing.
// The host chunks steps per dispatch under the loop budget (DESIGN.md §5).
// Caveats: barriers only in uniform control flow; f32 accumulation.

const PROJ: u32 = 2u;
const FINAL: u32 = 8u;

@group(0) @binding(1) var<storage, read> gates: array<f32>;
@group(0) @binding(2) var<storage, read> w_rec: array<f32>;
@group(0) @binding(3) var<storage, read> lens: array<u32>;
@group(0) @binding(4) var<storage, read> cseq: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dgates: array<f32>;
@group(0) @binding(7) var<storage, read_write> state: array<f32>;
@group(0) @binding(8) var<storage, read_write> dhtot: array<f32>;

fn dy_at(t: u32, b: u32, q: u32) -> f32 {
    return dy[(t * p.batch + b) * p.stride + p.col + q];
}

struct CellGrad {
    dg: vec4<f32>,
    dc: f32,
}

// Gradients of one (t, b, j) cell given the total dh_raw and the incoming dc.
fn cell_grad(t: u32, b: u32, j: u32, dh: f32, dc_in: f32) -> CellGrad {
    let H = p.hidden;
    let base = (t * p.batch + b) * 4u * H + j;
    let i = gates[base];
    let f = gates[base + H];
    let g = gates[base + 2u * H];
    let o = gates[base + 3u * H];
    let c = cseq[(slot_after(t) * p.batch + b) * H + j];
    let c_prev = cseq[(slot_before(t) * p.batch + b) * H + j];
    let tc = cand_act(c);
    let dc = dc_in + dh * o * cand_grad(tc);
    var r: CellGrad;
    r.dg = vec4<f32>(
        dc * g * gate_grad(i),
        dc * c_prev * gate_grad(f),
        dc * i * cand_grad(g),
        dh * tc * gate_grad(o)
    );
    r.dc = dc * f;
    return r;
}

fn write_dgates(t: u32, b: u32, j: u32, dg: vec4<f32>) {
    let H = p.hidden;
    let base = (t * p.batch + b) * 4u * H + j;
    dgates[base] = dg.x;
    dgates[base + H] = dg.y;
    dgates[base + 2u * H] = dg.z;
    dgates[base + 3u * H] = dg.w;
}

// Column q of W_hh against one dG row held in storage.
fn recur_storage(t1: u32, b: u32, q: u32) -> f32 {
    let G = 4u * p.hidden;
    let at = (t1 * p.batch + b) * G;
    var acc = 0.0;
    if (masked()) {
        let H = p.hidden;
        for (var gb = 0u; gb < 4u; gb++) {
            var part = 0.0;
            for (var j = gb * H; j < (gb + 1u) * H; j++) {
                part += dgates[at + j] * w_rec[j * p.out_size + q];
            }
            acc += part * rmask_at(gb, b, q);
        }
        return acc;
    }
    for (var g = 0u; g < G; g++) {
        acc += dgates[at + g] * w_rec[g * p.out_size + q];
    }
    return acc;
}

// Same with the dG row (of batch row b) in the workgroup pool.
fn recur_pool(at: u32, b: u32, q: u32) -> f32 {
    let G = 4u * p.hidden;
    var acc = 0.0;
    if (masked()) {
        let H = p.hidden;
        for (var gb = 0u; gb < 4u; gb++) {
            var part = 0.0;
            for (var j = gb * H; j < (gb + 1u) * H; j++) {
                part += pool[at + j] * w_rec[j * p.out_size + q];
            }
            acc += part * rmask_at(gb, b, q);
        }
        return acc;
    }
    for (var g = 0u; g < G; g++) {
        acc += pool[at + g] * w_rec[g * p.out_size + q];
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
    let G = 4u * H;
    let bt = p.b_tile;
    let b0 = (wid.y * nwg.x + wid.x) * bt;
    let proj = (p.flags & PROJ) != 0u;
    // pool layout: dG [bt·4H] | dh [bt·P] | R [bt·P] | dc [bt·H]
    let dg_base = 0u;
    let tot_base = bt * G;
    let r_base = tot_base + bt * P;
    let dc_base = r_base + bt * P;

    for (var e = lid; e < bt * P; e += WG) {
        let b = b0 + e / P;
        var v = 0.0;
        if (b < B) {
            v = state[b * P + e % P];
        }
        pool[r_base + e] = v;
    }
    for (var e = lid; e < bt * H; e += WG) {
        let b = b0 + e / H;
        var v = 0.0;
        if (b < B) {
            v = state[B * P + b * H + e % H];
        }
        pool[dc_base + e] = v;
    }
    if (p.s_begin + 1u < p.t_len) {
        let t1 = time_of(p.s_begin + 1u);
        for (var e = lid; e < bt * G; e += WG) {
            let b = b0 + e / G;
            var v = 0.0;
            if (b < B) {
                v = dgates[(t1 * B + b) * G + e % G];
            }
            pool[dg_base + e] = v;
        }
    }
    workgroupBarrier();

    for (var i = 0u; i < p.n_steps; i++) {
        let s = p.s_begin - i;
        let t = time_of(s);
        // Phase A: R_s and the total dh for every (b, q).
        for (var e = lid; e < bt * P; e += WG) {
            let bl = e / P;
            let q = e % P;
            let b = b0 + bl;
            if (b < B) {
                var r = pool[r_base + e];
                if (s + 1u < p.t_len) {
                    if (time_of(s + 1u) < lens[b]) {
                        r = recur_pool(dg_base + bl * G, b, q);
                    }
                }
                pool[r_base + e] = r;
                var tot = 0.0;
                if (t < lens[b]) {
                    tot = r + dy_at(t, b, q);
                }
                pool[tot_base + e] = tot;
                if (proj) {
                    dhtot[(t * B + b) * P + q] = tot;
                }
            }
        }
        workgroupBarrier();
        // Phase B: gate gradients for every (b, j); they replace dG of step s+1 in the pool.
        for (var e = lid; e < bt * H; e += WG) {
            let bl = e / H;
            let j = e % H;
            let b = b0 + bl;
            if (b < B) {
                var dg = vec4<f32>(0.0);
                if (t < lens[b]) {
                    var dh = 0.0;
                    if (proj) {
                        let wr = 4u * H * P + j;
                        for (var q = 0u; q < P; q++) {
                            dh += w_rec[wr + q * H] * pool[tot_base + bl * P + q];
                        }
                    } else {
                        dh = pool[tot_base + bl * P + j];
                    }
                    let cg = cell_grad(t, b, j, dh, pool[dc_base + e]);
                    pool[dc_base + e] = cg.dc;
                    dg = cg.dg;
                }
                write_dgates(t, b, j, dg);
                let at = dg_base + bl * G + j;
                pool[at] = dg.x;
                pool[at + H] = dg.y;
                pool[at + 2u * H] = dg.z;
                pool[at + 3u * H] = dg.w;
            }
        }
        workgroupBarrier();
    }

    for (var e = lid; e < bt * P; e += WG) {
        let b = b0 + e / P;
        if (b < B) {
            state[b * P + e % P] = pool[r_base + e];
        }
    }
    for (var e = lid; e < bt * H; e += WG) {
        let b = b0 + e / H;
        if (b < B) {
            state[B * P + b * H + e % H] = pool[dc_base + e];
        }
    }
}

// R for (b, q) at the current step: from dG of the next-processed step when it was active.
fn recur_value(s_next: u32, b: u32, q: u32) -> f32 {
    var r = state[b * p.out_size + q];
    if (s_next < p.t_len) {
        let t1 = time_of(s_next);
        if (t1 < lens[b]) {
            r = recur_storage(t1, b, q);
        }
    }
    return r;
}

@compute @workgroup_size(64, 1, 1)
fn recur(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let P = p.out_size;
    let B = p.batch;
    let e = flat_id(wid, lid, nwg);
    if (e >= B * P) {
        return;
    }
    let b = e / P;
    let q = e % P;
    let final_pass = (p.flags & FINAL) != 0u;
    let s_next = select(p.s_begin + 1u, 0u, final_pass);
    let r = recur_value(s_next, b, q);
    state[b * P + q] = r;
    if (!final_pass) {
        let t = time_of(p.s_begin);
        var tot = 0.0;
        if (t < lens[b]) {
            tot = r + dy_at(t, b, q);
        }
        dhtot[(t * B + b) * P + q] = tot;
    }
}

@compute @workgroup_size(64, 1, 1)
fn gates_step(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let H = p.hidden;
    let P = p.out_size;
    let B = p.batch;
    let e = flat_id(wid, lid, nwg);
    if (e >= B * H) {
        return;
    }
    let b = e / H;
    let j = e % H;
    let t = time_of(p.s_begin);
    var dg = vec4<f32>(0.0);
    if (t < lens[b]) {
        var dh = 0.0;
        let wr = 4u * H * P + j;
        for (var q = 0u; q < P; q++) {
            dh += w_rec[wr + q * H] * dhtot[(t * B + b) * P + q];
        }
        let dc_at = B * P + b * H + j;
        let cg = cell_grad(t, b, j, dh, state[dc_at]);
        state[dc_at] = cg.dc;
        dg = cg.dg;
    }
    write_dgates(t, b, j, dg);
}

@compute @workgroup_size(64, 1, 1)
fn fused(
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
    let r = recur_value(p.s_begin + 1u, b, j);
    state[b * H + j] = r;
    var dg = vec4<f32>(0.0);
    if (t < lens[b]) {
        let dc_at = B * H + b * H + j;
        let cg = cell_grad(t, b, j, r + dy_at(t, b, j), state[dc_at]);
        state[dc_at] = cg.dc;
        dg = cg.dg;
    }
    write_dgates(t, b, j, dg);
}
