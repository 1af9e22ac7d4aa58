// lstm_tiled_backward.wgsl — entry point `fused_tiled`: one reversed Stepwise LSTM step
// (no projection) for large B·H. Module = activations.wgsl + rnn_common.wgsl +
// lstm_backward.wgsl + step_tiled_backward.wgsl + this file. Per (b, j), as lstm_backward.wgsl's
// `fused`:
//   R = dG_{s+1}[b] · W_hh[:, j] when step s+1 exists and was active for b, else the carried R
//   dh = R + dy_out[t,b,j];  dG (i,f,g,o) and dc from cell_grad (lstm_backward.wgsl)
// with the mat-vec from sb_backward (K = 4H, gate blocks contiguous).
//
// Bindings: lstm_backward.wgsl's (1 gates, 2 w_rec, 3 lens, 4 cseq, 5 dy, 6 dgates, 7 state,
//   8 dhtot unused here).
// Memory plan: step_tiled_backward.wgsl's (8 KiB of workgroup memory; R of 4 batch rows in one
//   vec4 register); gates, c, dy, state go through storage as in `fused`.
// Workgroup layout: 256 invocations, (32 units × 32 batch rows) per workgroup, each invocation
//   one unit's 4 gate gradients for 4 batch rows; grid ceil(H/32)·ceil(B/32).
// Limits: those of step_tiled_backward.wgsl (no projection).
// Caveats: tested on lavapipe against the CPU reference, not yet timed on a GPU.

fn lstm_tiled_bwd_one(b: u32, j: u32, rec: f32) {
    let H = p.hidden;
    let B = p.batch;
    let t = time_of(p.s_begin);
    let s_next = p.s_begin + 1u;
    var r = state[b * H + j];
    if (s_next < p.t_len) {
        if (time_of(s_next) < lens[b]) {
            r = rec;
        }
    }
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

@compute @workgroup_size(256, 1, 1)
fn fused_tiled(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let H4 = 4u * p.hidden;
    let tl = sb_backward(lid, wid, nwg, H4, H4, H4);
    if (!tl.live || tl.j >= p.hidden) {
        return;
    }
    for (var i = 0u; i < 4u; i++) {
        if (tl.b0 + i < p.batch) {
            lstm_tiled_bwd_one(tl.b0 + i, tl.j, tl.rec[i]);
        }
    }
}
