// gru_tiled_backward.wgsl — entry point `fused_tiled`: one reversed Stepwise GRU step
// (reset-after) for large B·H. Module = activations.wgsl + rnn_common.wgsl + gru_backward.wgsl
// + step_tiled_backward.wgsl + this file. Per (b, j), as gru_backward.wgsl's `fused`:
//   R = state[b, j] (the direct part dh·z of step s+1, or dy_h_n) + dG_{s+1}[b] · W_hh[:, j]
//   over the r, z blocks and the d_hn block (dG columns 0..2H and 3H..4H against W_hh rows
//   0..3H: sb_backward with K = 3H, gap = 2H, width 4H)
//   active step: grad_after (gru_backward.wgsl) writes dG, state = dh·z; padded: zero_row,
//   state = R.
//
// Bindings: gru_backward.wgsl's (1 gates, 2 w_rec, 3 lens, 4 hseq, 5 dy, 6 dgates, 7 state,
//   8 aux).
// Memory plan: step_tiled_backward.wgsl's (8 KiB of workgroup memory; R of 4 batch rows in one
//   vec4 register).
// Workgroup layout: 256 invocations, (32 units × 32 batch rows) per workgroup; grid
//   ceil(H/32)·ceil(B/32).
// Limits: those of step_tiled_backward.wgsl; reset-before is not tiled (the launcher keeps
//   its two-phase kernels).
// Caveats: tested on lavapipe against the CPU reference, not yet timed on a GPU.

fn gru_tiled_bwd_one(b: u32, j: u32, rec: f32) {
    let e = b * p.hidden + j;
    let t = time_of(p.s_begin);
    let r = state[e] + rec;
    if (t < lens[b]) {
        state[e] = grad_after(t, b, j, r + dy_at(t, b, j)).w;
    } else {
        zero_row(t, b, j);
        state[e] = r;
    }
}

@compute @workgroup_size(256, 1, 1)
fn fused_tiled(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let H = p.hidden;
    let tl = sb_backward(lid, wid, nwg, 3u * H, 2u * H, 4u * H);
    if (!tl.live || tl.j >= H) {
        return;
    }
    for (var i = 0u; i < 4u; i++) {
        if (tl.b0 + i < p.batch) {
            gru_tiled_bwd_one(tl.b0 + i, tl.j, tl.rec[i]);
        }
    }
}
