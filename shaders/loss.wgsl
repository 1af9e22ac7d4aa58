// loss.wgsl — training losses: the gradient dL/dpred of every element and the scalar loss,
// reduced deterministically (fixed summation tree, no float atomics) so reruns agree bit-for-bit.
//
// Equations (N = element count, R = rows, C = classes = last axis; mean reduction):
//   kind 0 MSE:   ℓ = (p-y)²                          g = 2(p-y) / N
//   kind 1 MAE:   ℓ = |p-y|                            g = sign(p-y) / N   (sign(0) = 0, as PyTorch)
//   kind 2 BCE on logits x: ℓ = max(x,0) - x·y + ln(1 + e^{-|x|})   g = (σ(x) - y) / N
//   kind 3 BCE on probabilities (Keras 3): q = clamp(p, ε, 1-ε), ℓ = -(y·ln q + (1-y)·ln(1-q)),
//          g = (q - y) / (q(1-q)) / N for ε ≤ p ≤ 1-ε, else 0 (the clamp's gradient);
//          a NaN p stays NaN through the clamp, so ℓ and L are NaN, as on the CPU
//   L = Σ ℓ / N.
//   softmax_xent, per row r: m = max_j x_j, lse = m + ln Σ_j e^{x_j - m}, S = Σ_j y_j,
//          ℓ_r = Σ_j y_j (lse - x_j),  g_j = (e^{x_j - lse}·S - y_j) / R,  L = Σ_r ℓ_r / R
//          (targets are class probabilities or one-hot; S = 1 then, and g = (softmax - y)/R).
// Stages: 1. loss_elementwise or softmax_xent writes grad and one partial sum per workgroup;
//         2. loss_finalize (one workgroup) sums the partials in a fixed order: loss_out[0] = Σ·scale.
//
// Bindings (group 0):
//   0 p         uniform Params (dynamic offset)          sizes, kind, scales, ε
//   1 pred      storage read       f32[N] ([R, C])       predictions / logits (input)
//   2 tgt       storage read       f32[N] ([R, C])       targets (input)
//   3 grad      storage read_write f32[N] ([R, C])       dL/dpred (output; must not alias 1 or 2)
//   4 partials  storage read_write f32[G]                per-workgroup partial sums of ℓ (scratch)
//   5 loss_out  storage read_write f32[1]                the loss L (output)
// loss_finalize uses only 4 and 5 (the others are bound so every entry shares one layout).
//
// Memory plan: values in registers; one 256-entry workgroup array for the tree reductions
// (4 KiB as vec4). Elementwise: each invocation handles 4 elements strided by 256, so a
// workgroup covers 1024 elements and G = ceil(N/1024). softmax_xent: one workgroup per row,
// three strided passes over the row (max; Σe and S; grad and ℓ), G = R.
// Workgroup 256×1×1; grid flattened from 2-D (x + y·num_workgroups.x); surplus workgroups
// clamp to a valid index, take part in every barrier and write nothing.
// Limits: N < 2^32; the launcher keeps 3·ceil(C/256) (softmax) and ceil(G/256) (finalize)
// under the loop budget of DESIGN.md §5. Caveats: f32 throughout; ln(1+e^{-a}) uses the
// log1p correction so small tails keep their relative precision.

struct Params {
    n: u32,
    rows: u32,
    cols: u32,
    kind: u32,
    groups: u32,
    grad_scale: f32,
    loss_scale: f32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> tgt: array<f32>;
@group(0) @binding(3) var<storage, read_write> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;
@group(0) @binding(5) var<storage, read_write> loss_out: array<f32>;

const WG: u32 = 256u;
const PER_THREAD: u32 = 4u;

var<workgroup> red: array<vec4<f32>, 256>;

// Sum over the workgroup, returned to every invocation. Call from uniform control flow only.
fn wg_sum(v: vec4<f32>, lid: u32) -> vec4<f32> {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    let total = red[0];
    // The next call overwrites red[0]; everyone must have read it first.
    workgroupBarrier();
    return total;
}

// Maximum over the workgroup (in .x), returned to every invocation. Uniform control flow only.
fn wg_max(v: f32, lid: u32) -> f32 {
    red[lid] = vec4<f32>(v, 0.0, 0.0, 0.0);
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            red[lid] = vec4<f32>(max(red[lid].x, red[lid + s].x), 0.0, 0.0, 0.0);
        }
        workgroupBarrier();
    }
    let m = red[0].x;
    workgroupBarrier();
    return m;
}

// σ(x) with exp only of non-positive arguments (no overflow for large |x|).
fn sigmoid(x: f32) -> f32 {
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

// ln(1 + e^{-a}) for a ≥ 0, accurate when e^{-a} is tiny (the classic log1p correction).
fn log1p_exp_neg(a: f32) -> f32 {
    let e = exp(-a);
    let u = 1.0 + e;
    if (u == 1.0) {
        return e;
    }
    return log(u) * (e / (u - 1.0));
}

// Returns (ℓ, unscaled gradient) of one element.
fn pointwise(x: f32, y: f32) -> vec2<f32> {
    switch p.kind {
        case 0u: {
            let d = x - y;
            return vec2<f32>(d * d, 2.0 * d);
        }
        case 1u: {
            let d = x - y;
            return vec2<f32>(abs(d), sign(d));
        }
        case 2u: {
            let l = max(x, 0.0) - x * y + log1p_exp_neg(abs(x));
            return vec2<f32>(l, sigmoid(x) - y);
        }
        default: {
            // A NaN prediction stays NaN (clamp may return a bound for NaN); tested on the bits.
            let nan = (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
            let q = select(clamp(x, p.eps, 1.0 - p.eps), x, nan);
            let l = -(y * log(q) + (1.0 - y) * log(1.0 - q));
            let inside = x >= p.eps && x <= 1.0 - p.eps;
            return vec2<f32>(l, select(0.0, (q - y) / (q * (1.0 - q)), inside));
        }
    }
}

@compute @workgroup_size(256, 1, 1)
fn loss_elementwise(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let flat = wid.y * nwg.x + wid.x;
    var acc = 0.0;
    for (var k = 0u; k < PER_THREAD; k = k + 1u) {
        let i = flat * (WG * PER_THREAD) + k * WG + lid;
        if (flat < p.groups && i < p.n) {
            let r = pointwise(pred[i], tgt[i]);
            grad[i] = r.y * p.grad_scale;
            acc = acc + r.x;
        }
    }
    let total = wg_sum(vec4<f32>(acc, 0.0, 0.0, 0.0), lid);
    if (lid == 0u && flat < p.groups) {
        partials[flat] = total.x;
    }
}

@compute @workgroup_size(256, 1, 1)
fn softmax_xent(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let flat = wid.y * nwg.x + wid.x;
    let live = flat < p.rows;
    let base = min(flat, p.rows - 1u) * p.cols;
    var m = -3.4028235e38;
    for (var j = lid; j < p.cols; j = j + WG) {
        m = max(m, pred[base + j]);
    }
    m = wg_max(m, lid);
    var acc = vec4<f32>(0.0);
    for (var j = lid; j < p.cols; j = j + WG) {
        acc.x = acc.x + exp(pred[base + j] - m);
        acc.y = acc.y + tgt[base + j];
    }
    acc = wg_sum(acc, lid);
    let lse = m + log(acc.x);
    let s = acc.y;
    var l = 0.0;
    for (var j = lid; j < p.cols; j = j + WG) {
        let x = pred[base + j];
        let y = tgt[base + j];
        l = l + y * (lse - x);
        if (live) {
            grad[base + j] = (exp(x - lse) * s - y) * p.grad_scale;
        }
    }
    let total = wg_sum(vec4<f32>(l, 0.0, 0.0, 0.0), lid);
    if (lid == 0u && live) {
        partials[flat] = total.x;
    }
}

@compute @workgroup_size(256, 1, 1)
fn loss_finalize(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.groups; i = i + WG) {
        acc = acc + partials[i];
    }
    let total = wg_sum(vec4<f32>(acc, 0.0, 0.0, 0.0), lid);
    if (lid == 0u) {
        loss_out[0] = total.x * p.loss_scale;
    }
}
