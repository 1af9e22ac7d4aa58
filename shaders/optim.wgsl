// optim.wgsl — optimizer updates of one parameter tensor, in place, with optional global-norm
// gradient clipping computed on the device (no host read-back between the norm and the update).
//
// Equations (PyTorch semantics; g = grad·s, s = clip scale or 1, then g += wd·w):
//   clipping (torch.nn.utils.clip_grad_norm_): n = sqrt(Σ over ALL params' grads of g²),
//            s = min(1, max_norm / (n + 1e-6))
//   kind 0 SGD:  b = μ·b + g (b starts at 0, so b₁ = g);  d = g + μ·b (nesterov) or b;
//                w -= lr·d  (μ = 0: w -= lr·g, no state)
//   kind 1 Adam: m = β₁m + (1-β₁)g;  v = β₂v + (1-β₂)g²;
//                w -= step_size · m / (sqrt(v)/sqrt(1-β₂ᵗ) + ε),  step_size = lr/(1-β₁ᵗ)
//                (the host computes step_size and sqrt(1-β₂ᵗ) from the step count t in f64)
//   kind 2 RMSprop: v = αv + (1-α)g²;  a = sqrt(v) + ε;
//                μ > 0: b = μ·b + g/a, w -= lr·b;   μ = 0: w -= lr·g/a
// Entry points, recorded in this order for one step:
//   grad_sumsq     per param: partial Σg² of each 1024-element block into clip[4 + off + block]
//   clip_finalize  one workgroup: sums all partials in a fixed order, clip[0] = s, clip[1] = n
//   optim_update   per param: the update above, reading s from clip[0] when use_clip = 1
//
// Bindings (group 0):
//   0 p      uniform Params (dynamic offset)     len, kind, hyper-parameters, partial range
//   1 param  storage read_write f32[len]         parameter w (updated in place)
//   2 grad   storage read       f32[len]         its gradient (never modified)
//   3 state  storage read_write f32[k·len]       SGD: [b]; Adam: [m | v]; RMSprop: [v | b];
//                                                zero-initialised; a dummy when k = 0
//   4 clip   storage read_write f32[4 + P]       [s, n, -, -, partials of every param ...]
// Every entry binds all four so one layout serves them (clip_finalize uses only clip).
//
// Memory plan: registers only for the update (one element per invocation); a 256-entry
// workgroup array (1 KiB) for the two tree reductions. Deterministic: fixed tree, no atomics.
// Workgroup 256×1×1; grid flattened from 2-D (x + y·num_workgroups.x): optim_update
// ceil(len/256) workgroups, grad_sumsq ceil(len/1024), clip_finalize 1.
// Limits: len < 2^32; the launcher keeps ceil(P/256) (clip_finalize's loop) under the loop
// budget of DESIGN.md §5. Caveats: f32 accumulation of Σg² (relative error ~1e-6 of the norm);
// a non-finite norm gives a NaN scale, as PyTorch does without error_if_nonfinite.

struct Params {
    len: u32,
    kind: u32,
    nesterov: u32,
    use_clip: u32,
    lr: f32,
    // SGD: momentum μ; Adam: β₁; RMSprop: momentum μ.
    beta1: f32,
    // Adam: β₂; RMSprop: α.
    beta2: f32,
    eps: f32,
    step_size: f32,
    bc2_sqrt: f32,
    weight_decay: f32,
    max_norm: f32,
    partial_off: u32,
    partial_count: u32,
    has_momentum: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> state: array<f32>;
@group(0) @binding(4) var<storage, read_write> clip: array<f32>;

const WG: u32 = 256u;
const PER_THREAD: u32 = 4u;
// clip[0] = scale, clip[1] = norm; partial sums start here.
const CLIP_HEAD: u32 = 4u;

var<workgroup> red: array<f32, 256>;

// Sum over the workgroup, returned to every invocation. Call from uniform control flow only.
fn wg_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid < s) {
            red[lid] = red[lid] + red[lid + s];
        }
        workgroupBarrier();
    }
    return red[0];
}

@compute @workgroup_size(256, 1, 1)
fn grad_sumsq(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let flat = wid.y * nwg.x + wid.x;
    var acc = 0.0;
    for (var k = 0u; k < PER_THREAD; k = k + 1u) {
        let i = flat * (WG * PER_THREAD) + k * WG + lid;
        if (flat < p.partial_count && i < p.len) {
            let g = grad[i];
            acc = acc + g * g;
        }
    }
    let total = wg_sum(acc, lid);
    if (lid == 0u && flat < p.partial_count) {
        clip[CLIP_HEAD + p.partial_off + flat] = total;
    }
}

@compute @workgroup_size(256, 1, 1)
fn clip_finalize(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.partial_count; i = i + WG) {
        acc = acc + clip[CLIP_HEAD + i];
    }
    let total = wg_sum(acc, lid);
    if (lid == 0u) {
        let norm = sqrt(total);
        clip[0] = min(1.0, p.max_norm / (norm + 1e-6));
        clip[1] = norm;
    }
}

@compute @workgroup_size(256, 1, 1)
fn optim_update(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = (wid.y * nwg.x + wid.x) * WG + lid;
    // No barriers below, so surplus invocations may leave early.
    if (i >= p.len) {
        return;
    }
    let w = param[i];
    var g = grad[i];
    if (p.use_clip == 1u) {
        g = g * clip[0];
    }
    g = g + p.weight_decay * w;
    switch p.kind {
        case 0u: {
            var d = g;
            if (p.has_momentum == 1u) {
                let b = p.beta1 * state[i] + g;
                state[i] = b;
                d = select(b, g + p.beta1 * b, p.nesterov == 1u);
            }
            param[i] = w - p.lr * d;
        }
        case 1u: {
            let m = p.beta1 * state[i] + (1.0 - p.beta1) * g;
            let v = p.beta2 * state[p.len + i] + (1.0 - p.beta2) * g * g;
            state[i] = m;
            state[p.len + i] = v;
            param[i] = w - p.step_size * m / (sqrt(v) / p.bc2_sqrt + p.eps);
        }
        default: {
            let v = p.beta2 * state[i] + (1.0 - p.beta2) * g * g;
            state[i] = v;
            let a = sqrt(v) + p.eps;
            if (p.has_momentum == 1u) {
                let b = p.beta1 * state[p.len + i] + g / a;
                state[p.len + i] = b;
                param[i] = w - p.lr * b;
            } else {
                param[i] = w - p.lr * g / a;
            }
        }
    }
}
