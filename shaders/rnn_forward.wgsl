// rnn_forward.wgsl — Elman RNN recurrence (PyTorch nn.RNN, Keras SimpleRNN), forward in time.
//
// The input projection runs first for all steps (gemm.wgsl), both biases folded in:
//   gx[t,b,:] = x_t W_ihᵀ + b_ih + b_hh            (H values)
//   h' = act(gx[t,b] + h W_hhᵀ),  act = tanh, or relu with flag RELU
// Recurrent dropout (Keras recurrent_dropout, training; p.rmask ≠ 0): the mat-vec reads
// (m ⊙ h) with m = rmask_at(0, b, ·), one mask for the whole sequence (Keras SimpleRNNCell:
// `prev_output * rec_dp_mask` before the matmul); h' and out are unmasked.
// Padded steps (t ≥ len[b]) keep h and write out = 0 (PyTorch packed semantics). Backward
// needs only the h ring (tanh' = 1 - h'², relu' = [h' > 0]), so nothing else is saved.
//
// Bindings (group 0):
//   0 p      uniform Params (rnn_common.wgsl; stride/col = out row stride/first column)
//   1 gx     storage rw  f32[T,B,H]   input projections (read only here)
//   2 w_rec  storage r   f32[2·H·H]   W_hh (row-major), then W_hhᵀ at p.wt_off (read here)
//   3 lens   storage r   u32[B(+...)] valid length per sequence, then the recurrent-dropout mask
//   4 hseq   storage rw  f32[S,B,H]   h state ring (slots as in rnn_common.wgsl)
//   5 unused storage rw  f32[1]       (the LSTM's c ring; one binding layout per family)
//   6 out    storage rw  f32[T,B,stride] output sequence, columns col..col+H
//   7 unused2 storage rw f32[1]       (the LSTM's h_raw)
// Entry points:
//   persistent  256 invocations own b_tile sequences for n_steps steps; h and the new h
//               live in workgroup memory: needs b_tile·2H ≤ 4000 (H ≤ 2000). W_hh is read
//               from storage once per step per workgroup.
//   step        one step, one invocation per (b, j): mat-vec fused with the activation.
// Memory: registers per unit; workgroup pool (persistent only).
// Limits: see persistent; step none beyond u32 indexing. The host chunks n_steps under the
// loop budget (DESIGN.md §5). Barriers only in uniform control flow.

const RELU: u32 = 32u;

@group(0) @binding(1) var<storage, read_write> gx: array<f32>;
@group(0) @binding(2) var<storage, read> w_rec: array<f32>;
@group(0) @binding(3) var<storage, read> lens: array<u32>;
@group(0) @binding(4) var<storage, read_write> hseq: array<f32>;
@group(0) @binding(5) var<storage, read_write> unused: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;
@group(0) @binding(7) var<storage, read_write> unused2: array<f32>;

// tanh, or relu with flag RELU (activation codes of activations.wgsl).
fn rnn_act(a: f32) -> f32 {
    return act(select(0u, 1u, (p.flags & RELU) != 0u), a);
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
    // pool layout: h [bt·H] | new h [bt·H]
    let nh = bt * H;

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
                var a = gx[(t * B + b) * H + j];
                if (masked()) {
                    for (var k = 0u; k < H; k++) {
                        a += pool[bl * H + k] * rmask_at(0u, b, k) * w_rec[p.wt_off + k * H + j];
                    }
                } else {
                    for (var k = 0u; k < H; k++) {
                        a += pool[bl * H + k] * w_rec[p.wt_off + k * H + j];
                    }
                }
                pool[nh + e] = rnn_act(a);
            }
        }
        workgroupBarrier();
        for (var e = lid; e < bt * H; e += WG) {
            let b = b0 + e / H;
            let j = e % H;
            if (b < B) {
                var h = pool[e];
                let o_at = (t * B + b) * p.stride + p.col + j;
                if (t < lens[b]) {
                    h = pool[nh + e];
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
    let h_at = (slot_before(t) * B + b) * H;
    let w_at = (slot_after(t) * B + b) * H + j;
    let o_at = (t * B + b) * p.stride + p.col + j;
    if (t < lens[b]) {
        var a = gx[(t * B + b) * H + j];
        if (masked()) {
            for (var k = 0u; k < H; k++) {
                a += hseq[h_at + k] * rmask_at(0u, b, k) * w_rec[p.wt_off + k * H + j];
            }
        } else {
            for (var k = 0u; k < H; k++) {
                a += hseq[h_at + k] * w_rec[p.wt_off + k * H + j];
            }
        }
        let h = rnn_act(a);
        hseq[w_at] = h;
        out[o_at] = h;
    } else {
        hseq[w_at] = hseq[h_at + j];
        out[o_at] = 0.0;
    }
}
