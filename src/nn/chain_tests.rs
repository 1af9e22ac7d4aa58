//! The device-buffer API chained the way a ConvLSTM2D next-frame training step uses it, in ONE
//! recorder and one submit: ConvLSTM forward → head forward → head backward (output gradient
//! from a buffer) → ConvLSTM backward fed the head's input gradient, against the CPU
//! references chained the same way. Lives in the crate because the recorder is crate-private.

use std::sync::{Arc, OnceLock};

use ndarray::{Array, Array4, Array5, Dimension};

use super::{ConvHeadConfig, ConvHeadParams, GpuConvHead, GradTarget, SeqShape, flat};
use crate::algorithm::Algorithm;
use crate::context::Context;
use crate::cpu::{
    Activation, ConvLstmDims, ConvLstmParams, Padding, convlstm_backward, convlstm_forward,
};
use crate::gpu::convlstm::GpuConvLstm;
use crate::kernels::{Recorder, buffers};

/// One context for these tests; fails (never skips) without an adapter.
fn ctx() -> Arc<Context> {
    static CTX: OnceLock<Arc<Context>> = OnceLock::new();
    CTX.get_or_init(|| {
        Arc::new(Context::new().unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}")))
    })
    .clone()
}

fn rand<D: Dimension>(shape: D, seed: u64) -> Array<f32, D> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array::from_shape_simple_fn(shape, || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
    })
}

fn assert_close<D: Dimension>(what: &str, got: &Array<f32, D>, want: &Array<f32, D>, atol: f32) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for ((i, g), w) in got.indexed_iter().zip(want.iter()) {
        let ok = (g - w).abs() <= atol + 1e-4 * w.abs();
        assert!(ok, "{what}{i:?}: gpu {g} vs cpu {w}");
    }
}

/// `add_to`: the head's input gradient is added onto `extra` already in the buffer (as when
/// the ConvLSTM output also feeds another consumer) instead of overwriting it.
fn chain(add_to: bool) {
    let ctx = ctx();
    let (b, t, h, w, f) = (2, 3, 4, 5, 3);
    let mut dims = ConvLstmDims::new(h, w, 2, f, (3, 3));
    dims.padding = Padding::Same;
    let lstm = ConvLstmParams::<f32>::random(dims, 1, 0.5).unwrap();
    let cfg = ConvHeadConfig::new(f, 1, (3, 3), Activation::Sigmoid).unwrap();
    let head = ConvHeadParams::<f32>::random(cfg, 2, 0.5).unwrap();
    let x: Array5<f32> = rand(ndarray::Ix5(b, t, h, w, 2), 3);
    let dy: Array5<f32> = rand(ndarray::Ix5(b, t, h, w, 1), 4);
    let extra: Array5<f32> = rand(ndarray::Ix5(b, t, h, w, f), 5);
    let z4 = Array4::<f32>::zeros((b, h, w, f));

    // CPU: the same chain, f32.
    let fwd = convlstm_forward(&lstm, x.view(), z4.view(), z4.view(), false).unwrap();
    let y = head.forward(fwd.out.view()).unwrap();
    let hg = head.backward(fwd.out.view(), y.view(), dy.view()).unwrap();
    let dy_lstm = if add_to {
        &hg.dx + &extra
    } else {
        hg.dx.clone()
    };
    let lg = convlstm_backward(&lstm, &fwd.tape, dy_lstm.view(), z4.view(), z4.view()).unwrap();

    // GPU: everything recorded into one recorder, one submit.
    let gl = GpuConvLstm::upload(&ctx, &lstm).unwrap();
    let gh = GpuConvHead::new(ctx.clone(), &head).unwrap();
    let xb = buffers::upload(&ctx, "x", &flat(x.view())).unwrap();
    let dyb = buffers::upload(&ctx, "dy", &flat(dy.view())).unwrap();
    let n = gl.state_len(b).unwrap();
    let h0 = buffers::zeros(&ctx, "h0", n).unwrap();
    let c0 = buffers::zeros(&ctx, "c0", n).unwrap();
    let dx_head = buffers::upload(&ctx, "dx head", &flat(extra.view())).unwrap();
    let state = buffers::zeros(&ctx, "state", 2 * n).unwrap();
    let shape = SeqShape {
        batch: b,
        steps: t,
        rows: h,
        cols: w,
    };
    let mut rec = Recorder::new(&ctx);
    let run = gl
        .record_forward(
            &ctx,
            &mut rec,
            &xb,
            (b, t),
            (&h0, &c0),
            Algorithm::Auto,
            true,
        )
        .unwrap();
    let yb = gh.record_forward(&mut rec, &run.out, shape).unwrap();
    let target = if add_to {
        GradTarget::AddTo(&dx_head)
    } else {
        GradTarget::Into(&dx_head)
    };
    let dxb = gh
        .record_backward(&mut rec, (&run.out, &yb, &dyb), shape, target)
        .unwrap();
    let tape = run.tape.as_ref().unwrap();
    let g = gl
        .record_backward(&ctx, &mut rec, tape, &dxb, state)
        .unwrap();
    let stats = rec.submit().unwrap();
    assert_eq!(stats.submits, 1);

    let got = gl.read_grads(&ctx, b, t, &g, stats).unwrap();
    let yg = buffers::read_f32(&ctx, &[(&yb, 0, y.len())])
        .unwrap()
        .remove(0);
    let yg = Array5::from_shape_vec(y.raw_dim(), yg).unwrap();
    assert_close("head y", &yg, &y, 1e-5);
    let hp = gh.params();
    let dk = buffers::read_f32(&ctx, &[(&hp[0].grad, 0, hp[0].len())]).unwrap();
    let dk = Array4::from_shape_vec(hg.kernel.raw_dim(), dk[0].clone()).unwrap();
    assert_close("head dK", &dk, &hg.kernel, 1e-4);
    assert_close("lstm dx", &got.dx, &lg.dx, 1e-5);
    assert_close("lstm dK", &got.kernel, &lg.kernel, 1e-4);
    assert_close(
        "lstm dRK",
        &got.recurrent_kernel,
        &lg.recurrent_kernel,
        1e-4,
    );
    assert_close(
        "lstm db",
        &got.bias.insert_axis(ndarray::Axis(0)),
        &lg.bias.insert_axis(ndarray::Axis(0)),
        1e-4,
    );
    assert!(lg.kernel.iter().any(|v| v.abs() > 1e-3), "gradient ~ 0");
}

#[test]
fn convlstm_head_chain_in_one_submit_matches_cpu() {
    chain(false);
}

#[test]
fn head_input_gradient_accumulates_into_an_existing_buffer() {
    chain(true);
}

#[test]
fn a_too_small_device_buffer_is_a_shape_error() {
    let ctx = ctx();
    let cfg = ConvHeadConfig::new(3, 1, (3, 3), Activation::Sigmoid).unwrap();
    let head =
        GpuConvHead::new(ctx.clone(), &ConvHeadParams::random(cfg, 1, 0.5).unwrap()).unwrap();
    let x = buffers::zeros(&ctx, "x", 20).unwrap();
    let shape = SeqShape {
        batch: 1,
        steps: 2,
        rows: 2,
        cols: 2,
    };
    let mut rec = Recorder::new(&ctx);
    let e = head
        .record_forward(&mut rec, &x, shape)
        .unwrap_err()
        .to_string();
    assert!(e.contains("holds 20 f32s") && e.contains("needs 24"), "{e}");
}
