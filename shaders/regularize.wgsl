// regularize.wgsl — Keras' L1/L2 weight regularizers inside a device training step: adds the
// penalty's gradient to a weight's gradient in place and leaves one partial sum of the penalty
// per workgroup, which the host reads back with the step's losses and sums in f64.
//
// Equations (one weight tensor w of n elements, its gradient g, factors l1, l2):
//   penalty  Σ_i l1·|w_i| + l2·w_i²
//   g_i += l1·sign(w_i) + 2·l2·w_i        (sign(0) = 0, as Keras' gradient of |w|)
//   partials[off + k] = Σ of the penalty over workgroup k's 256 elements (fixed tree order)
//
// Bindings (group 0):
//   0 p         uniform RegParams (dynamic offset)   n, off, groups, l1, l2
//   1 w         storage read       f32[n]            the weight (input)
//   2 g         storage read_write f32[n]            its gradient (updated in place)
//   3 partials  storage read_write f32[off + groups] penalty partial sums (output)
//
// Memory plan: one element per invocation in registers; a 256-float workgroup array for the
// tree reduction. Workgroup 256×1×1; grid flattened from 2-D; surplus workgroups take part in
// every barrier and write nothing. Limits: n < 2^32; no loops but the 8-level reduction.

struct RegParams {
    n: u32,
    off: u32,
    groups: u32,
    l1: f32,
    l2: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: RegParams;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;

var<workgroup> red: array<f32, 256>;

@compute @workgroup_size(256, 1, 1)
fn regularize(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let k = wid.y * nwg.x + wid.x;
    let i = k * 256u + lid;
    var pen = 0.0;
    if (i < p.n) {
        let v = w[i];
        var s = 0.0;
        if (v > 0.0) {
            s = 1.0;
        } else if (v < 0.0) {
            s = -1.0;
        }
        pen = p.l1 * abs(v) + p.l2 * v * v;
        g[i] = g[i] + p.l1 * s + 2.0 * p.l2 * v;
    }
    red[lid] = pen;
    workgroupBarrier();
    for (var h = 128u; h > 0u; h = h >> 1u) {
        if (lid < h) {
            red[lid] = red[lid] + red[lid + h];
        }
        workgroupBarrier();
    }
    if (lid == 0u && k < p.groups) {
        partials[p.off + k] = red[0];
    }
}
