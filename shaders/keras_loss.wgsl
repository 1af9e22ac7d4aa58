// keras_loss.wgsl — a Keras loss on the device, row by row, for training steps that read back
// nothing but the per-row losses: dL/dpred of every element and the weighted loss of every row.
// The host sums the R row losses in f64 (they arrive in the step's one read-back).
//
// Equations (R rows = every axis but the last, C = classes/features = last axis, w_r = the row's
// weight: 1/R, or 1/valid at the rows a Keras mask keeps and 0 at the others):
//   pointwise kinds, per element: kind 0 MSE  ℓ = (p-y)²,  d = 2(p-y)
//                                 kind 1 MAE  ℓ = |p-y|,   d = sign(p-y)   (sign(0) = 0)
//                                 kind 2 BCE on logits x: ℓ = max(x,0) - x·y + ln(1 + e^{-|x|}),
//                                        d = σ(x) - y
//                                 kind 3 BCE on probabilities: q = clamp(p, ε, 1-ε),
//                                        ℓ = -(y ln q + (1-y) ln(1-q)),
//                                        d = (q-y)/(q(1-q)) inside [ε, 1-ε], else 0
//     row_loss[r] = w_r · Σ_j ℓ_j / C,   grad = w_r · d / C       (Keras: mean over the last axis)
//   kind 4 categorical cross-entropy on logits x: lse = m + ln Σ e^{x_j - m}, S = Σ y_j,
//     row_loss[r] = w_r · Σ_j y_j (lse - x_j),   grad_j = w_r · (e^{x_j - lse}·S - y_j)
//   kind 5 categorical cross-entropy on probabilities p (Keras: p / Σp, clipped):
//     s = Σ p, q_j = clamp(p_j / s, ε, 1-ε), dq_j = -y_j / q_j inside the clip range else 0,
//     row_loss[r] = -w_r · Σ_j y_j ln q_j,   grad_j = w_r · (dq_j / s - Σ_k dq_k p_k / s²)
//   Sparse targets arrive one-hot (the host expands class ids).
//
// Bindings (group 0):
//   0 p         uniform LossParams (dynamic offset)   rows, cols, kind, ε
//   1 pred      storage read       f32[R·C]           predictions (probabilities or logits)
//   2 tgt       storage read       f32[R·C]           targets (one-hot for class ids)
//   3 wt        storage read       f32[R]             per-row weights w_r
//   4 grad      storage read_write f32[R·C]           dL/dpred (output; aliases nothing)
//   5 row_loss  storage read_write f32[R]             w_r · ℓ_r (output)
//
// Memory plan: registers only; one invocation per row, two passes over its C elements at most.
// Workgroup 64×1×1; grid flattened from 2-D (x + y·num_workgroups.x); surplus invocations exit.
// Limits: R·C < 2^32; the launcher keeps 3·C under the loop budget of DESIGN.md §5.
// Caveats: f32 throughout (the host sums rows in f64); ln(1+e^{-a}) keeps small tails exact.

struct LossParams {
    rows: u32,
    cols: u32,
    kind: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: LossParams;
@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> tgt: array<f32>;
@group(0) @binding(3) var<storage, read> wt: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad: array<f32>;
@group(0) @binding(5) var<storage, read_write> row_loss: array<f32>;

// ln(1 + e^{-a}) for a ≥ 0, with the log1p correction when e^{-a} is tiny.
fn softplus_neg(a: f32) -> f32 {
    let e = exp(-a);
    if (e < 1e-4) {
        return e * (1.0 - 0.5 * e);
    }
    return log(1.0 + e);
}

fn sgn(v: f32) -> f32 {
    if (v > 0.0) {
        return 1.0;
    }
    if (v < 0.0) {
        return -1.0;
    }
    return 0.0;
}

@compute @workgroup_size(64, 1, 1)
fn keras_loss(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let r = (wid.y * nwg.x + wid.x) * 64u + lid;
    if (r >= p.rows) {
        return;
    }
    let c = p.cols;
    let base = r * c;
    let w = wt[r];
    let eps = p.eps;
    if (p.kind <= 3u) {
        let scale = w / f32(c);
        var acc = 0.0;
        for (var j = 0u; j < c; j++) {
            let x = pred[base + j];
            let y = tgt[base + j];
            var l = 0.0;
            var d = 0.0;
            switch (p.kind) {
                case 0u: {
                    l = (x - y) * (x - y);
                    d = 2.0 * (x - y);
                }
                case 1u: {
                    l = abs(x - y);
                    d = sgn(x - y);
                }
                case 2u: {
                    l = max(x, 0.0) - x * y + softplus_neg(abs(x));
                    d = 1.0 / (1.0 + exp(-x)) - y;
                }
                default: {
                    let q = clamp(x, eps, 1.0 - eps);
                    l = -(y * log(q) + (1.0 - y) * log(1.0 - q));
                    if (x >= eps && x <= 1.0 - eps) {
                        d = (q - y) / (q * (1.0 - q));
                    }
                }
            }
            acc += l;
            grad[base + j] = d * scale;
        }
        row_loss[r] = acc * scale;
        return;
    }
    if (p.kind == 4u) {
        var m = pred[base];
        for (var j = 1u; j < c; j++) {
            m = max(m, pred[base + j]);
        }
        var se = 0.0;
        var ts = 0.0;
        for (var j = 0u; j < c; j++) {
            se += exp(pred[base + j] - m);
            ts += tgt[base + j];
        }
        let lse = m + log(se);
        var l = 0.0;
        for (var j = 0u; j < c; j++) {
            let x = pred[base + j];
            let y = tgt[base + j];
            l += y * (lse - x);
            grad[base + j] = w * (exp(x - lse) * ts - y);
        }
        row_loss[r] = w * l;
        return;
    }
    // kind 5: probabilities.
    var s = 0.0;
    for (var j = 0u; j < c; j++) {
        s += pred[base + j];
    }
    var l = 0.0;
    var dot = 0.0;
    for (var j = 0u; j < c; j++) {
        let x = pred[base + j];
        let y = tgt[base + j];
        let u = x / s;
        let q = clamp(u, eps, 1.0 - eps);
        l -= y * log(q);
        if (u >= eps && u <= 1.0 - eps) {
            dot += (-y / q) * x;
        }
    }
    for (var j = 0u; j < c; j++) {
        let x = pred[base + j];
        let u = x / s;
        let q = clamp(u, eps, 1.0 - eps);
        var dq = 0.0;
        if (u >= eps && u <= 1.0 - eps) {
            dq = -tgt[base + j] / q;
        }
        grad[base + j] = w * (dq / s - dot / (s * s));
    }
    row_loss[r] = w * l;
}
