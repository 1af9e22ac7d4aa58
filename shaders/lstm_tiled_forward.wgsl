// lstm_tiled_forward.wgsl — entry point `step_tiled`: one Stepwise LSTM forward step for large
// B·H. Module = activations.wgsl + rnn_common.wgsl + lstm_forward.wgsl + step_tiled_forward.wgsl
// + this file: the mat-vec is step_tiled_forward.wgsl's st_forward (4 gates per unit), the
// cell update is lstm_forward.wgsl's finish_step, so the equations, gate order i,f,g,o,
// activations (Params.acts), packed-sequence rule and projection (h_raw to binding 7, the
// `project` entry runs after) are exactly those of lstm_forward.wgsl's `step`.
//
// Bindings: lstm_forward.wgsl's (1 gx, 2 w_rec, 3 lens, 4 hseq, 5 cseq, 6 out, 7 hraw).
// Memory plan: step_tiled_forward.wgsl's (10 KiB of workgroup memory; 4 rows × 4 gates in
//   registers per invocation); gx, c and the outputs go through storage as in `step`.
// Workgroup layout: 256 invocations, (32 units × 32 batch rows) per workgroup, each
//   invocation one unit's 4 gates for 4 batch rows; grid ceil(H/32)·ceil(B/32).
// Limits: those of step_tiled_forward.wgsl; any H, P, B within u32 indexing.
// Caveats: chosen by src/kernels/step_tiled.rs (large B·H on GPUs, or forced); tested on
//   lavapipe against the CPU reference, not yet timed on a GPU.

@compute @workgroup_size(256, 1, 1)
fn step_tiled(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let tl = st_forward(lid, wid, nwg, 4u);
    if (!tl.live || tl.j >= p.hidden) {
        return;
    }
    let t = time_of(p.s_begin);
    let rs = slot_before(t);
    let ws = slot_after(t);
    for (var i = 0u; i < 4u; i++) {
        let b = tl.b0 + i;
        if (b < p.batch) {
            finish_step(b, tl.j, t, rs, ws, st_row(tl, i));
        }
    }
}
