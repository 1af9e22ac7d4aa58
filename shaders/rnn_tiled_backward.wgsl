// rnn_tiled_backward.wgsl — entry point `fused_tiled`: one reversed Stepwise Elman RNN step
// (tanh or relu) for large B·H. Module = activations.wgsl + rnn_common.wgsl +
// rnn_backward.wgsl + step_tiled_backward.wgsl + this file. Per (b, j), as rnn_backward.wgsl's
// `fused`:
//   R = da_{s+1}[b] · W_hh[:, j] when step s+1 exists and was active for b, else the carried R
//   da = (R + dy_out[t,b,j]) ⊙ act'(h_t) on active steps, 0 on padded ones
// with the mat-vec from sb_backward (K = H).
//
// Bindings: rnn_backward.wgsl's (1 unused, 2 w_rec, 3 lens, 4 hseq, 5 dy, 6 dgates, 7 state,
//   8 unused2).
// Memory plan: step_tiled_backward.wgsl's (8 KiB of workgroup memory; R of 4 batch rows in one
//   vec4 register).
// Workgroup layout: 256 invocations, (32 units × 32 batch rows) per workgroup; grid
//   ceil(H/32)·ceil(B/32).
// Limits: those of step_tiled_backward.wgsl.
// Caveats: tested on lavapipe against the CPU reference, not yet timed on a GPU.

fn rnn_tiled_bwd_one(b: u32, j: u32, rec: f32) {
    let e = b * p.hidden + j;
    let t = time_of(p.s_begin);
    let s_next = p.s_begin + 1u;
    var r = state[e];
    if (s_next < p.t_len) {
        if (time_of(s_next) < lens[b]) {
            r = rec;
        }
    }
    state[e] = r;
    var d = 0.0;
    if (t < lens[b]) {
        d = grad(t, b, j, r + dy_at(t, b, j));
    }
    dgates[(t * p.batch + b) * p.hidden + j] = d;
}

@compute @workgroup_size(256, 1, 1)
fn fused_tiled(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let H = p.hidden;
    let tl = sb_backward(lid, wid, nwg, H, H, H);
    if (!tl.live || tl.j >= H) {
        return;
    }
    for (var i = 0u; i < 4u; i++) {
        if (tl.b0 + i < p.batch) {
            rnn_tiled_bwd_one(tl.b0 + i, tl.j, tl.rec[i]);
        }
    }
}
