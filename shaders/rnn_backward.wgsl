// rnn_backward.wgsl — Elman RNN backward through time (BPTT), reversed loop.
//
// R_s is the gradient reaching h after step s from later steps:
//   R_{T-1} = dy_h_n ;  R_{s-1} = dA_s · W_hh if step s is active, else R_s
//   (recurrent dropout, p.rmask ≠ 0: R_{s-1} = m ⊙ (dA_s · W_hh), m = rmask_at(0, b, ·), the
//   forward's mask of h_{s-1}: Keras' `prev_output * rec_dp_mask` before the matmul)
// Active step: da = (R_s + dy_out[t,b]) ⊙ act'(h_t), with tanh' = 1 - h_t², relu' = [h_t > 0]
// (h_t read from the forward's ring). Padded steps: da = 0, dy ignored, R carried.
// Weight, bias and input gradients are GEMMs on dgates (= da) after the loop (host).
//
// Bindings (group 0):
//   0 p       uniform Params (rnn_common.wgsl; stride/col = dy row stride/first column)
//   1 unused  storage r   f32[1]        (the LSTM's saved gates)
//   2 w_rec   storage r   f32[2·H·H]    W_hh (the forward's W_hhᵀ copy follows; unused here)
//   3 lens    storage r   u32[B(+...)]  valid lengths, then the recurrent-dropout mask
//   4 hseq    storage r   f32[T+1,B,H]  h ring of the training forward
//   5 dy      storage r   f32[T,B,stride] upstream output gradient
//   6 dgates  storage rw  f32[T,B,H]    output: da (0 at padded steps)
//   7 state   storage rw  f32[B,H]      R: in dy_h_n, out dh0
//   8 unused2 storage rw  f32[1]
// Entry points:
//   persistent  256 invocations own b_tile sequences for n_steps steps; da of the previous
//               step and R live in workgroup memory: needs b_tile·2H ≤ 4000.
//   fused       one step per dispatch, one invocation per (b, j).
//   recur       FINAL pass: dh0 = da_0 · W_hh (or the carried R).
// Memory: registers per unit; workgroup pool (persistent only).
// Limits: see persistent; per-step kernels none beyond u32 indexing. Steps per dispatch are
// chunked by the host under the loop budget (DESIGN.md §5). Barriers only in uniform flow.

const RELU: u32 = 32u;

@group(0) @binding(1) var<storage, read> unused: array<f32>;
@group(0) @binding(2) var<storage, read> w_rec: array<f32>;
@group(0) @binding(3) var<storage, read> lens: array<u32>;
@group(0) @binding(4) var<storage, read> hseq: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dgates: array<f32>;
@group(0) @binding(7) var<storage, read_write> state: array<f32>;
@group(0) @binding(8) var<storage, read_write> unused2: array<f32>;

// da of unit j at time t given the total dh.
fn grad(t: u32, b: u32, j: u32, dh: f32) -> f32 {
    let h = hseq[(slot_after(t) * p.batch + b) * p.hidden + j];
    return dh * act_grad(select(0u, 1u, (p.flags & RELU) != 0u), h);
}

fn dy_at(t: u32, b: u32, j: u32) -> f32 {
    return dy[(t * p.batch + b) * p.stride + p.col + j];
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
    // pool layout: da of the previous step [bt·H] | R [bt·H]
    let rb = bt * H;

    for (var e = lid; e < bt * H; e += WG) {
        let b = b0 + e / H;
        var r = 0.0;
        var d = 0.0;
        if (b < B) {
            r = state[b * H + e % H];
            if (p.s_begin + 1u < p.t_len) {
                d = dgates[(time_of(p.s_begin + 1u) * B + b) * H + e % H];
            }
        }
        pool[rb + e] = r;
        pool[e] = d;
    }
    workgroupBarrier();

    for (var i = 0u; i < p.n_steps; i++) {
        let s = p.s_begin - i;
        let t = time_of(s);
        for (var e = lid; e < bt * H; e += WG) {
            let bl = e / H;
            let j = e % H;
            let b = b0 + bl;
            if (b < B && s + 1u < p.t_len && time_of(s + 1u) < lens[b]) {
                var acc = 0.0;
                for (var g = 0u; g < H; g++) {
                    acc += pool[bl * H + g] * w_rec[g * H + j];
                }
                pool[rb + e] = acc * rmask_or_one(0u, b, j);
            }
        }
        workgroupBarrier();
        for (var e = lid; e < bt * H; e += WG) {
            let b = b0 + e / H;
            let j = e % H;
            if (b < B) {
                var d = 0.0;
                if (t < lens[b]) {
                    d = grad(t, b, j, pool[rb + e] + dy_at(t, b, j));
                }
                dgates[(t * B + b) * H + j] = d;
                pool[e] = d;
            }
        }
        workgroupBarrier();
    }

    for (var e = lid; e < bt * H; e += WG) {
        let b = b0 + e / H;
        if (b < B) {
            state[b * H + e % H] = pool[rb + e];
        }
    }
}

// R of unit j at the current step: da of the next-processed step times W_hh when it was
// active, else the carried R.
fn recur_value(s_next: u32, b: u32, j: u32) -> f32 {
    let H = p.hidden;
    var r = state[b * H + j];
    if (s_next < p.t_len) {
        let t1 = time_of(s_next);
        if (t1 < lens[b]) {
            let at = (t1 * p.batch + b) * H;
            r = 0.0;
            for (var g = 0u; g < H; g++) {
                r += dgates[at + g] * w_rec[g * H + j];
            }
            r *= rmask_or_one(0u, b, j);
        }
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
    state[e] = r;
    var d = 0.0;
    if (t < lens[b]) {
        d = grad(t, b, j, r + dy_at(t, b, j));
    }
    dgates[(t * p.batch + b) * H + j] = d;
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
    state[e] = recur_value(0u, e / p.hidden, e % p.hidden);
}
