// unfused.wgsl — element-wise kernels for the UNFUSED baseline LSTM (benchmarks only): one
// dispatch per operation per time step, the way ONNX Runtime's WebGPU LSTM runs, so the fused
// kernels' gain is measured rather than assumed. Not used by the layers.
//
// Each entry computes, for i < n with row r = i / width and column j = i % width,
//   dst[d_off + r·d_rs + j] = op(a[a_off + r·a_rs + j], b[b_off + r·b_rs + j])
// so gate blocks of a [B, 4H] row (offset q·H, row stride 4H) are operands without copies.
//   add: a + b   mul: a·b   sigmoid: σ(a)   tanh: tanh(a)   copy: a
//   dsig: a·b·(1 - b)   (b = σ(z): the gradient through a sigmoid, from its output)
//   dtanh: a·(1 - b²)    (b = tanh(z))
// The backward baseline (BPTT) issues these per step like an autograd engine would.
//
// Bindings (group 0):
//   0 p    uniform Params (dynamic offset)
//   1 a    storage r   f32[]   first operand
//   2 b    storage r   f32[]   second operand (ignored by sigmoid, tanh, copy)
//   3 dst  storage rw  f32[]   result (never aliases a or b: WebGPU forbids it in one dispatch)
// Memory: registers only; 64 invocations per workgroup, one element each, flattened 2-D grid.
// Limits: u32 indexing. Caveats: deliberately naive (this is the baseline).

struct Params {
    n: u32,
    width: u32,
    a_off: u32,
    a_rs: u32,
    b_off: u32,
    b_rs: u32,
    d_off: u32,
    d_rs: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn index(wid: vec3<u32>, lid: u32, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 64u + lid;
}

fn at(i: u32, off: u32, rs: u32) -> u32 {
    return off + (i / p.width) * rs + i % p.width;
}

@compute @workgroup_size(64, 1, 1)
fn add(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(wid, lid, nwg);
    if (i < p.n) {
        dst[at(i, p.d_off, p.d_rs)] = a[at(i, p.a_off, p.a_rs)] + b[at(i, p.b_off, p.b_rs)];
    }
}

@compute @workgroup_size(64, 1, 1)
fn mul(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(wid, lid, nwg);
    if (i < p.n) {
        dst[at(i, p.d_off, p.d_rs)] = a[at(i, p.a_off, p.a_rs)] * b[at(i, p.b_off, p.b_rs)];
    }
}

@compute @workgroup_size(64, 1, 1)
fn sigmoid(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(wid, lid, nwg);
    if (i < p.n) {
        let x = a[at(i, p.a_off, p.a_rs)];
        let s = select(exp(x) / (1.0 + exp(x)), 1.0 / (1.0 + exp(-x)), x >= 0.0);
        // NaN stays NaN, as in the fused kernels (activations.wgsl); tested on the bits.
        dst[at(i, p.d_off, p.d_rs)] = select(s, x, (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u);
    }
}

@compute @workgroup_size(64, 1, 1)
fn tanh_op(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(wid, lid, nwg);
    if (i < p.n) {
        let x = a[at(i, p.a_off, p.a_rs)];
        let nan = (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
        dst[at(i, p.d_off, p.d_rs)] = select(tanh(clamp(x, -15.0, 15.0)), x, nan);
    }
}

@compute @workgroup_size(64, 1, 1)
fn copy(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(wid, lid, nwg);
    if (i < p.n) {
        dst[at(i, p.d_off, p.d_rs)] = a[at(i, p.a_off, p.a_rs)];
    }
}

@compute @workgroup_size(64, 1, 1)
fn dsig(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(wid, lid, nwg);
    if (i < p.n) {
        let y = b[at(i, p.b_off, p.b_rs)];
        dst[at(i, p.d_off, p.d_rs)] = a[at(i, p.a_off, p.a_rs)] * y * (1.0 - y);
    }
}

@compute @workgroup_size(64, 1, 1)
fn dtanh(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = index(wid, lid, nwg);
    if (i < p.n) {
        let y = b[at(i, p.b_off, p.b_rs)];
        dst[at(i, p.d_off, p.d_rs)] = a[at(i, p.a_off, p.a_rs)] * (1.0 - y * y);
    }
}
