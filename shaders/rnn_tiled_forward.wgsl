// rnn_tiled_forward.wgsl — entry point `step_tiled`: one Stepwise Elman RNN forward step
// (tanh, or relu with flag RELU) for large B·H. Module = activations.wgsl + rnn_common.wgsl +
// rnn_forward.wgsl + step_tiled_forward.wgsl + this file: the mat-vec is st_forward (one
// gate), the update is rnn_forward.wgsl's `step` tail:
//   h' = act(gx[t,b] + h W_hhᵀ); padded steps (t ≥ len[b]) keep h and write out = 0.
//
// Bindings: rnn_forward.wgsl's (1 gx, 2 w_rec, 3 lens, 4 hseq, 5 unused, 6 out, 7 unused2).
// Memory plan: step_tiled_forward.wgsl's (10 KiB of workgroup memory; 4 rows in registers
//   per invocation, one lane of each vec4 used).
// Workgroup layout: 256 invocations, (32 units × 32 batch rows) per workgroup; grid
//   ceil(H/32)·ceil(B/32).
// Limits: those of step_tiled_forward.wgsl.
// Caveats: tested on lavapipe against the CPU reference, not yet timed on a GPU.

@compute @workgroup_size(256, 1, 1)
fn step_tiled(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let tl = st_forward(lid, wid, nwg, 1u);
    let H = p.hidden;
    let B = p.batch;
    let j = tl.j;
    if (!tl.live || j >= H) {
        return;
    }
    let t = time_of(p.s_begin);
    for (var i = 0u; i < 4u; i++) {
        let b = tl.b0 + i;
        if (b < B) {
            let h_at = (slot_before(t) * B + b) * H;
            let w_at = (slot_after(t) * B + b) * H + j;
            let o_at = (t * B + b) * p.stride + p.col + j;
            if (t < lens[b]) {
                let h = rnn_act(gx[(t * B + b) * H + j] + st_row(tl, i).x);
                hseq[w_at] = h;
                out[o_at] = h;
            } else {
                hseq[w_at] = hseq[h_at + j];
                out[o_at] = 0.0;
            }
        }
    }
}
