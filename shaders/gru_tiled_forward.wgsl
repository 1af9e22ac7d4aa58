// gru_tiled_forward.wgsl — entry point `step_tiled`: one Stepwise GRU forward step
// (reset-after, PyTorch nn.GRU / Keras reset_after=True) for large B·H. Module =
// activations.wgsl + rnn_common.wgsl + gru_forward.wgsl + step_tiled_forward.wgsl + this file:
// the mat-vec is st_forward (3 gates r, z, n per unit), the update is gru_forward.wgsl's
// cell_after + finish, so the equations
//   r = σ(gx_r + h W_hrᵀ)  z = σ(gx_z + h W_hzᵀ)  n = tanh(gx_n + r ⊙ (h W_hnᵀ + b_hn))
//   h' = (1 - z) ⊙ n + z ⊙ h
// and the packed-sequence rule are exactly those of gru_forward.wgsl's `step`.
//
// Bindings: gru_forward.wgsl's (1 gx, 2 w_rec, 3 lens, 4 hseq, 5 unused, 6 out, 7 aux).
// Memory plan: step_tiled_forward.wgsl's (10 KiB of workgroup memory; 4 rows × 3 gates in
//   registers per invocation).
// Workgroup layout: 256 invocations, (32 units × 32 batch rows) per workgroup; grid
//   ceil(H/32)·ceil(B/32).
// Limits: those of step_tiled_forward.wgsl. Reset-before (two phases per step) is not tiled:
//   the launcher keeps the untiled kernels for it.
// Caveats: tested on lavapipe against the CPU reference, not yet timed on a GPU.

@compute @workgroup_size(256, 1, 1)
fn step_tiled(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let tl = st_forward(lid, wid, nwg, 3u);
    let H = p.hidden;
    if (!tl.live || tl.j >= H) {
        return;
    }
    let t = time_of(p.s_begin);
    for (var i = 0u; i < 4u; i++) {
        let b = tl.b0 + i;
        if (b < p.batch) {
            let live = t < lens[b];
            var h = 0.0;
            if (live) {
                let h_at = (slot_before(t) * p.batch + b) * H;
                h = cell_after(t, b, tl.j, st_row(tl, i).xyz, hseq[h_at + tl.j]);
            }
            finish(t, b, tl.j, live, h);
        }
    }
}
