// nn_act.wgsl — the element-wise activation of the feed-forward layers (Dense, TimeDistributed
// Dense, the per-frame convolution head), forward and backward. `activations.wgsl` is
// prepended, so the codes and the numerically safe sigmoid/tanh are the ones the recurrent
// cells use: 0 tanh, 1 relu, 2 sigmoid, 3 hard_sigmoid, 4 linear.
//
// Entry points (i < n, flat index over a contiguous f32 tensor):
//   act_forward    dst[i] = act(kind, dst[i])                 in place on the GEMM/conv output
//   act_backward   dst[i] = a[i] · act_grad(kind, b[i])       dz = dy ⊙ act'(·), from the saved
//                  OUTPUT y (every supported activation's derivative is a function of y)
//
// Bindings (group 0):
//   0 p    uniform ActParams (dynamic offset)  n, kind
//   1 a    storage r   f32[n]   dy (act_backward); unused by act_forward (any other buffer)
//   2 b    storage r   f32[n]   y, the forward output (act_backward); unused by act_forward
//   3 dst  storage rw  f32[n]   activations in place (forward) / dz (backward); never aliases
//                               a or b (WebGPU forbids a writable alias within a dispatch)
// Memory: registers only, one element per invocation.
// Workgroup 64 invocations; grid ceil(n / 64) workgroups, flattened from a 2-D dispatch
// (x + y·num_workgroups.x) when above the per-dimension limit.
// Limits: u32 indexing (n < 2^32); no loops, so no loop budget. Caveats: f32 only.

struct ActParams {
    n: u32,
    kind: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: ActParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(64, 1, 1)
fn act_forward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (i < p.n) {
        dst[i] = act(p.kind, dst[i]);
    }
}

@compute @workgroup_size(64, 1, 1)
fn act_backward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (i < p.n) {
        dst[i] = a[i] * act_grad(p.kind, b[i]);
    }
}
