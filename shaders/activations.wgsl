// activations.wgsl — prelude of every module with activations (prepended by the launcher before
// rnn_common.wgsl, the ConvLSTM files or nn_act.wgsl): numerically safe activations.
//
//   sigmoid(x)     logistic, finite for any finite or infinite x (exp of a non-positive
//                  argument only)
//   tanh_s(x)      tanh with its argument clamped to ±15 (f32 tanh is ±1 there), so backends
//                  that build tanh from exp never overflow
//   act(kind, x)   Keras activation by code: 0 tanh, 1 relu, 2 sigmoid, 3 hard_sigmoid
//                  (Keras 3: relu6(x + 3) / 6), 4 linear
//   act_grad(kind, y)  its derivative written in terms of the OUTPUT y = act(kind, x), so
//                  backward kernels need only the saved activations (relu: [y > 0];
//                  hard_sigmoid: 1/6 where 0 < y < 1)
// Non-finite values (the crate's policy, README "What is supported"): every activation maps
// NaN to NaN and ±inf to its limit (tanh ±1, sigmoid 1/0, relu inf/0), exactly as the CPU
// reference (src/cpu/real.rs) does. max/min/clamp may return the non-NaN operand on some
// backends (IEEE maxNum), so NaN is tested on the bits (`is_nan`, which no fast-math rule can
// fold away) and passed through before any clamp.
// Bindings: none. Memory: none. Limits: none. Codes must match `ActivationCode` in Rust.

fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn sigmoid(x: f32) -> f32 {
    if (is_nan(x)) {
        return x;
    }
    if (x >= 0.0) {
        return 1.0 / (1.0 + exp(-x));
    }
    let e = exp(x);
    return e / (1.0 + e);
}

fn tanh_s(x: f32) -> f32 {
    return select(tanh(clamp(x, -15.0, 15.0)), x, is_nan(x));
}

fn act(kind: u32, x: f32) -> f32 {
    switch kind {
        case 1u: { return select(max(x, 0.0), x, is_nan(x)); }
        case 2u: { return sigmoid(x); }
        case 3u: { return select(clamp(x + 3.0, 0.0, 6.0) / 6.0, x, is_nan(x)); }
        case 4u: { return x; }
        default: { return tanh_s(x); }
    }
}

fn act_grad(kind: u32, y: f32) -> f32 {
    switch kind {
        case 1u: { return select(0.0, 1.0, y > 0.0); }
        case 2u: { return y * (1.0 - y); }
        case 3u: { return select(0.0, 1.0 / 6.0, y > 0.0 && y < 1.0); }
        case 4u: { return 1.0; }
        default: { return 1.0 - y * y; }
    }
}

