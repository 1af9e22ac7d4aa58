// gru_backward.wgsl — GRU backward through time (BPTT), reversed loop, gate order r, z, n.
//
// Saved by the training forward: r, z, n (gates), hn = h W_hnᵀ + b_hn (reset-after) or
// rh = r ⊙ h (reset-before) in aux, and every h in the state ring.
// At an active step with total gradient dh = R + dy_out[t,b]:
//   dn = dh(1-z)   dz = dh(h_prev - n)   da_n = dn(1-n²)   da_z = dz·z(1-z)
//   (other activations (Params.acts): n(1-n²), z(1-z) become cand_grad(n), gate_grad(z))
//   reset-after:  d_hn = da_n·r   da_r = da_n·hn·r(1-r)
//                 R_prev = dh·z + [da_r|da_z|d_hn] · W_hh            (dG row = [da_r|da_z|da_n|d_hn])
//   reset-before: d_rh = da_n · W_hn (all units)   da_r = d_rh·h_prev·r(1-r)
//                 R_prev = dh·z + d_rh·r + [da_r|da_z] · W_hr,hz      (dG row = [da_r|da_z|da_n])
// Recurrent dropout (p.rmask ≠ 0; masks m_r, m_z, m_n as in gru_forward.wgsl): each block's
// dG·W term is multiplied by its mask of h_prev (R_prev = dh·z + m_r⊙(da_r·W_hr) +
// m_z⊙(da_z·W_hz) + m_n⊙(d_hn·W_hn) reset-after); reset-before's rh = r⊙m_n⊙h gives
// da_r = d_rh·m_n·h_prev·σ'(r) and the direct part dh·z + d_rh·r·m_n. The z path dh·z and
// dz = dh(h_prev - n) use the unmasked h_prev, as the forward's update does.
// The per-unit "direct" part (dh·z, plus d_rh·r) is kept in `state`; since dG is 0 at padded
// steps (t ≥ len[b]), R = state + dG_next·W holds there too, with state = R carried through.
// Weight, bias and input gradients are GEMMs on dgates after the loop (host).
//
// Bindings (group 0):
//   0 p       uniform Params (rnn_common.wgsl; stride/col = dy row stride/first column)
//   1 gates   storage r   f32[T,B,3H]   r, z, n saved by the forward
//   2 w_rec   storage r   f32[...]      W_hh (3H×H) then b_hn (the forward's W_hhᵀ copy follows)
//   3 lens    storage r   u32[B(+...)]  valid lengths, then the recurrent-dropout masks
//   4 hseq    storage r   f32[T+1,B,H]  h ring of the training forward
//   5 dy      storage r   f32[T,B,stride] upstream output gradient
//   6 dgates  storage rw  f32[T,B,G·H]  output, G = 4 reset-after, 3 reset-before
//   7 state   storage rw  f32[B,H]      in: dy_h_n; between steps: the direct part; out: dh0
//   8 aux     storage rw  f32[T,B,H]    hn or rh from the forward (read only here)
// Entry points:
//   persistent  256 invocations own b_tile sequences for n_steps steps; the previous step's
//               dG rows, the state and da_n live in workgroup memory:
//               needs b_tile·(G + 2)·H ≤ 4000 (H ≤ 666 reset-after, 800 reset-before).
//   fused       reset-after, one step per dispatch, one invocation per (b, j).
//   phase_a     reset-before, one step: z and n gradients, dh kept in state.
//   phase_b     reset-before, one step: r gradient (needs every da_n of the row).
//   recur       FINAL pass: dh0 = state + dG_0·W.
// Memory: registers per unit; workgroup pool (persistent only).
// Limits: see persistent; per-step kernels none beyond u32 indexing. Steps per dispatch are
// chunked by the host under the loop budget (DESIGN.md §5). Barriers only in uniform flow.

const RESET_BEFORE: u32 = 16u;
const FINAL: u32 = 8u;

@group(0) @binding(1) var<storage, read> gates: array<f32>;
@group(0) @binding(2) var<storage, read> w_rec: array<f32>;
@group(0) @binding(3) var<storage, read> lens: array<u32>;
@group(0) @binding(4) var<storage, read> hseq: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dgates: array<f32>;
@group(0) @binding(7) var<storage, read_write> state: array<f32>;
@group(0) @binding(8) var<storage, read_write> aux: array<f32>;

fn before() -> bool {
    return (p.flags & RESET_BEFORE) != 0u;
}

// Width of one dG row.
fn dg_width() -> u32 {
    return select(4u, 3u, before()) * p.hidden;
}

fn dg_at(t: u32, b: u32) -> u32 {
    return (t * p.batch + b) * dg_width();
}

fn gate_at(t: u32, b: u32, j: u32) -> u32 {
    return (t * p.batch + b) * 3u * p.hidden + j;
}

fn h_prev(t: u32, b: u32, j: u32) -> f32 {
    return hseq[(slot_before(t) * p.batch + b) * p.hidden + j];
}

fn dy_at(t: u32, b: u32, j: u32) -> f32 {
    return dy[(t * p.batch + b) * p.stride + p.col + j];
}

// dG_next · W_hh for unit j of batch row b, with dG_next read from storage (row at `at`).
fn rec_storage(at: u32, b: u32, j: u32) -> f32 {
    let H = p.hidden;
    var acc = 0.0;
    if (masked()) {
        var ar = 0.0;
        var az = 0.0;
        for (var g = 0u; g < H; g++) {
            ar += dgates[at + g] * w_rec[g * H + j];
        }
        for (var g = H; g < 2u * H; g++) {
            az += dgates[at + g] * w_rec[g * H + j];
        }
        acc = ar * rmask_at(0u, b, j) + az * rmask_at(1u, b, j);
        if (!before()) {
            var an = 0.0;
            for (var i = 0u; i < H; i++) {
                an += dgates[at + 3u * H + i] * w_rec[(2u * H + i) * H + j];
            }
            acc += an * rmask_at(2u, b, j);
        }
        return acc;
    }
    for (var g = 0u; g < 2u * H; g++) {
        acc += dgates[at + g] * w_rec[g * H + j];
    }
    if (!before()) {
        for (var i = 0u; i < H; i++) {
            acc += dgates[at + 3u * H + i] * w_rec[(2u * H + i) * H + j];
        }
    }
    return acc;
}

// Same with dG_next in the workgroup pool.
fn rec_pool(at: u32, b: u32, j: u32) -> f32 {
    let H = p.hidden;
    var acc = 0.0;
    if (masked()) {
        var ar = 0.0;
        var az = 0.0;
        for (var g = 0u; g < H; g++) {
            ar += pool[at + g] * w_rec[g * H + j];
        }
        for (var g = H; g < 2u * H; g++) {
            az += pool[at + g] * w_rec[g * H + j];
        }
        acc = ar * rmask_at(0u, b, j) + az * rmask_at(1u, b, j);
        if (!before()) {
            var an = 0.0;
            for (var i = 0u; i < H; i++) {
                an += pool[at + 3u * H + i] * w_rec[(2u * H + i) * H + j];
            }
            acc += an * rmask_at(2u, b, j);
        }
        return acc;
    }
    for (var g = 0u; g < 2u * H; g++) {
        acc += pool[at + g] * w_rec[g * H + j];
    }
    if (!before()) {
        for (var i = 0u; i < H; i++) {
            acc += pool[at + 3u * H + i] * w_rec[(2u * H + i) * H + j];
        }
    }
    return acc;
}

// Reset-after: all four gradients of unit j; returns the direct part dh·z.
fn grad_after(t: u32, b: u32, j: u32, dh: f32) -> vec4<f32> {
    let H = p.hidden;
    let gb = gate_at(t, b, j);
    let r = gates[gb];
    let z = gates[gb + H];
    let n = gates[gb + 2u * H];
    let hn = aux[(t * p.batch + b) * H + j];
    let dz = dh * (h_prev(t, b, j) - n);
    let da_n = dh * (1.0 - z) * cand_grad(n);
    let da_r = da_n * hn * gate_grad(r);
    let d_hn = da_n * r;
    let at = dg_at(t, b) + j;
    dgates[at] = da_r;
    dgates[at + H] = dz * gate_grad(z);
    dgates[at + 2u * H] = da_n;
    dgates[at + 3u * H] = d_hn;
    return vec4<f32>(da_r, dz * gate_grad(z), da_n, dh * z);
}

// Reset-before phase A: z and n gradients of unit j (dG columns H+j, 2H+j); returns da_n.
fn grad_zn(t: u32, b: u32, j: u32, dh: f32) -> f32 {
    let H = p.hidden;
    let gb = gate_at(t, b, j);
    let z = gates[gb + H];
    let n = gates[gb + 2u * H];
    let dz = dh * (h_prev(t, b, j) - n);
    let da_n = dh * (1.0 - z) * cand_grad(n);
    let at = dg_at(t, b) + j;
    dgates[at + H] = dz * gate_grad(z);
    dgates[at + 2u * H] = da_n;
    return da_n;
}

// Reset-before phase B: r gradient of unit k from d_rh; returns (da_r, new direct part).
fn grad_r(t: u32, b: u32, k: u32, d_rh: f32, dh: f32) -> vec2<f32> {
    let H = p.hidden;
    let gb = gate_at(t, b, k);
    let r = gates[gb];
    let z = gates[gb + H];
    let m = rmask_or_one(2u, b, k);
    let da_r = d_rh * m * h_prev(t, b, k) * gate_grad(r);
    dgates[dg_at(t, b) + k] = da_r;
    return vec2<f32>(da_r, dh * z + d_rh * r * m);
}

fn zero_row(t: u32, b: u32, j: u32) {
    let at = dg_at(t, b) + j;
    for (var g = 0u; g < dg_width(); g += p.hidden) {
        dgates[at + g] = 0.0;
    }
}

@compute @workgroup_size(256, 1, 1)
fn persistent(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let H = p.hidden;
    let B = p.batch;
    let G = dg_width();
    let bt = p.b_tile;
    let b0 = (wid.y * nwg.x + wid.x) * bt;
    let bef = before();
    // pool layout: dG of the previous step [bt·G] | state [bt·H] | da_n [bt·H]
    let st = bt * G;
    let dan = st + bt * H;

    for (var e = lid; e < bt * H; e += WG) {
        let b = b0 + e / H;
        var v = 0.0;
        if (b < B) {
            v = state[b * H + e % H];
        }
        pool[st + e] = v;
    }
    for (var e = lid; e < bt * G; e += WG) {
        let b = b0 + e / G;
        var v = 0.0;
        if (b < B && p.s_begin + 1u < p.t_len) {
            v = dgates[dg_at(time_of(p.s_begin + 1u), b) + e % G];
        }
        pool[e] = v;
    }
    workgroupBarrier();

    for (var i = 0u; i < p.n_steps; i++) {
        let t = time_of(p.s_begin - i);
        // Phase A: R = direct part + dG_next·W for every (b, j).
        for (var e = lid; e < bt * H; e += WG) {
            let bl = e / H;
            let j = e % H;
            let b = b0 + bl;
            if (b < B) {
                let r = pool[st + e] + rec_pool(bl * G, b, j);
                pool[st + e] = r;
                if (bef) {
                    var d = 0.0;
                    if (t < lens[b]) {
                        let dh = r + dy_at(t, b, j);
                        d = grad_zn(t, b, j, dh);
                        pool[st + e] = dh;
                    } else {
                        zero_row(t, b, j);
                    }
                    pool[dan + e] = d;
                }
            }
        }
        workgroupBarrier();
        // Phase B: the remaining gradients; dG of this step replaces the pool rows.
        for (var e = lid; e < bt * H; e += WG) {
            let bl = e / H;
            let j = e % H;
            let b = b0 + bl;
            if (b < B) {
                let at = bl * G + j;
                if (t < lens[b]) {
                    if (bef) {
                        var d_rh = 0.0;
                        for (var k = 0u; k < H; k++) {
                            d_rh += pool[dan + bl * H + k] * w_rec[(2u * H + k) * H + j];
                        }
                        let rr = grad_r(t, b, j, d_rh, pool[st + e]);
                        pool[st + e] = rr.y;
                        pool[at] = rr.x;
                        pool[at + H] = dgates[dg_at(t, b) + H + j];
                        pool[at + 2u * H] = pool[dan + e];
                    } else {
                        let g = grad_after(t, b, j, pool[st + e] + dy_at(t, b, j));
                        pool[at] = g.x;
                        pool[at + H] = g.y;
                        pool[at + 2u * H] = g.z;
                        pool[at + 3u * H] = dgates[dg_at(t, b) + 3u * H + j];
                        pool[st + e] = g.w;
                    }
                } else {
                    if (!bef) {
                        zero_row(t, b, j);
                    }
                    for (var g = 0u; g < G; g += H) {
                        pool[at + g] = 0.0;
                    }
                }
            }
        }
        workgroupBarrier();
    }

    for (var e = lid; e < bt * H; e += WG) {
        let b = b0 + e / H;
        if (b < B) {
            state[b * H + e % H] = pool[st + e];
        }
    }
}

// R for unit j at the current step s: direct part + dG of step s+1 (0 when s = T-1).
fn recur_value(s_next: u32, b: u32, j: u32) -> f32 {
    var r = state[b * p.hidden + j];
    if (s_next < p.t_len) {
        r += rec_storage(dg_at(time_of(s_next), b), b, j);
    }
    return r;
}

@compute @workgroup_size(64, 1, 1)
fn fused(
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
    let r = recur_value(p.s_begin + 1u, b, j);
    if (t < lens[b]) {
        state[e] = grad_after(t, b, j, r + dy_at(t, b, j)).w;
    } else {
        zero_row(t, b, j);
        state[e] = r;
    }
}

@compute @workgroup_size(64, 1, 1)
fn phase_a(
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
    let r = recur_value(p.s_begin + 1u, b, j);
    if (t < lens[b]) {
        let dh = r + dy_at(t, b, j);
        grad_zn(t, b, j, dh);
        state[e] = dh;
    } else {
        zero_row(t, b, j);
        state[e] = r;
    }
}

@compute @workgroup_size(64, 1, 1)
fn phase_b(
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
    let k = e % H;
    let t = time_of(p.s_begin);
    if (t < lens[b]) {
        let at = dg_at(t, b) + 2u * H;
        var d_rh = 0.0;
        for (var j = 0u; j < H; j++) {
            d_rh += dgates[at + j] * w_rec[(2u * H + j) * H + k];
        }
        state[e] = grad_r(t, b, k, d_rh, state[e]).y;
    }
}

@compute @workgroup_size(64, 1, 1)
fn recur(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let e = flat_id(wid, lid, nwg);
    if (e >= p.batch * p.hidden) {
        return;
    }
    // FINAL: dh0 = direct part + dG of step 0 · W.
    state[e] = recur_value(0u, e / p.hidden, e % p.hidden);
}
