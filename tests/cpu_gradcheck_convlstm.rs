//! Checks of the CPU reference ConvLSTM2D: central finite differences of the loss for every
//! input and parameter entry (f64), agreement with an independent direct-loop forward pass,
//! agreement with the Keras goldens in `tests/data` (outputs and gradients), and input
//! validation.

use ndarray::{Array4, Array5, Axis, Ix1, Ix4, Ix5, s};
use wgpu_rnn::Error;
use wgpu_rnn::cpu::convlstm::*;

#[path = "support/common.rs"]
mod common_support;
use common_support::*;
#[path = "support/convlstm.rs"]
mod support;
use support::*;

fn dims(
    (rows, cols): (usize, usize),
    cin: usize,
    filters: usize,
    kernel: (usize, usize),
    padding: Padding,
) -> ConvLstmDims {
    ConvLstmDims {
        padding,
        ..ConvLstmDims::new(rows, cols, cin, filters, kernel)
    }
}

/// Gradient check plus agreement of the forward pass with the direct-loop version.
fn check(pr: &Problem) -> Naive {
    let f = pr.forward(&pr.p, &pr.x, &pr.h0, &pr.c0);
    let n = naive_forward(pr);
    for (name, a, b) in [
        ("out", f.out.view().into_dyn(), n.out.view().into_dyn()),
        ("h_n", f.h_n.view().into_dyn(), n.h_n.view().into_dyn()),
        ("c_n", f.c_n.view().into_dyn(), n.c_n.view().into_dyn()),
    ] {
        assert_eq!(a.shape(), b.shape(), "{name}: shape");
        let err = max_diff(&a, &b);
        assert!(err < 1e-12, "{name}: differs from the direct loop by {err}");
    }
    gradcheck(pr);
    n
}

#[test]
fn same_k3_stride1() {
    let d = dims((5, 4), 2, 2, (3, 3), Padding::Same);
    assert_eq!(d.out_hw().unwrap(), (5, 4));
    assert_eq!(d.input_padding(), ((1, 1), (1, 1)));
    check(&Problem::new(d, 2, 2, false, 1));
}

#[test]
fn valid_k3() {
    let d = dims((6, 5), 1, 3, (3, 3), Padding::Valid);
    assert_eq!(d.out_hw().unwrap(), (4, 3));
    assert_eq!(d.input_padding(), ((0, 0), (0, 0)));
    check(&Problem::new(d, 1, 3, false, 2));
}

/// 6 rows at stride 2 pad (0, 1): the extra row goes at the bottom (TF rule); 5 columns
/// pad (1, 1).
#[test]
fn same_k3_stride2_asymmetric_padding() {
    let d = ConvLstmDims {
        strides: (2, 2),
        ..dims((6, 5), 2, 2, (3, 3), Padding::Same)
    };
    assert_eq!(d.out_hw().unwrap(), (3, 3));
    assert_eq!(d.input_padding(), ((0, 1), (1, 1)));
    check(&Problem::new(d, 2, 2, false, 3));
}

/// Stride 2 on one axis only, valid: 5 columns -> 2 (the last column is never read).
#[test]
fn valid_k3_stride_2x1() {
    let d = ConvLstmDims {
        strides: (1, 2),
        ..dims((4, 6), 1, 2, (3, 3), Padding::Valid)
    };
    assert_eq!(d.out_hw().unwrap(), (2, 2));
    check(&Problem::new(d, 2, 2, false, 4));
}

#[test]
fn dilation2_valid() {
    let d = ConvLstmDims {
        dilation: (2, 2),
        ..dims((6, 5), 2, 2, (3, 2), Padding::Valid)
    };
    // Dilated kernel 5x3.
    assert_eq!(d.out_hw().unwrap(), (2, 3));
    check(&Problem::new(d, 2, 2, false, 5));
}

#[test]
fn dilation2_same() {
    let d = ConvLstmDims {
        dilation: (2, 1),
        ..dims((5, 4), 1, 2, (3, 3), Padding::Same)
    };
    assert_eq!(d.input_padding(), ((2, 2), (1, 1)));
    check(&Problem::new(d, 1, 3, false, 6));
}

/// Non-square kernel (1, 3) and an even kernel (2, 3), whose "same" recurrent convolution
/// pads (0, 1): the extra row again goes after.
#[test]
fn non_square_and_even_kernels() {
    let d = dims((4, 5), 2, 2, (1, 3), Padding::Same);
    assert_eq!(d.input_padding(), ((0, 0), (1, 1)));
    check(&Problem::new(d, 2, 2, false, 7));
    let d = dims((4, 5), 1, 3, (2, 3), Padding::Same);
    assert_eq!(d.input_padding(), ((0, 1), (1, 1)));
    check(&Problem::new(d, 1, 2, false, 8));
}

/// go_backwards: steps consume x[:, T-1] .. x[:, 0], out stays in processing order, and the
/// gradient of x comes back in input time order.
#[test]
fn go_backwards() {
    let d = dims((4, 4), 2, 2, (3, 3), Padding::Same);
    let pr = Problem::new(d, 2, 3, true, 9);
    check(&pr);
    // Equivalent to a forward run over the time-reversed input.
    let mut rev = Problem::new(d, 2, 3, false, 9);
    rev.x.invert_axis(Axis(1));
    let (a, b) = (
        pr.forward(&pr.p, &pr.x, &pr.h0, &pr.c0),
        rev.forward(&rev.p, &rev.x, &rev.h0, &rev.c0),
    );
    assert_eq!(a.out, b.out);
    assert_eq!(a.h_n, a.out.index_axis(Axis(1), 2));
    let mut dx = rev.backward().dx;
    dx.invert_axis(Axis(1));
    let da = pr.backward().dx;
    assert!(da.iter().zip(dx.iter()).all(|(u, v)| (u - v).abs() < 1e-14));
}

/// activation relu, recurrent_activation hard_sigmoid: piecewise linear, so the seed is
/// chosen such that no pre-activation lies within 1e-3 of a kink (0 for relu, ±3 for
/// hard_sigmoid), and large weights so both sides of every kink are visited.
#[test]
fn relu_with_hard_sigmoid() {
    let d = ConvLstmDims {
        activation: Activation::Relu,
        recurrent_activation: Activation::HardSigmoid,
        ..dims((4, 4), 2, 3, (3, 3), Padding::Same)
    };
    // Seed 6 at scale 1: nearest kink 1.0e-2 away (found by scanning seeds 0..400).
    let mut pr = Problem::new(d, 2, 3, false, 6);
    pr.p = ConvLstmParams::random(d, 6, 1.0).unwrap();
    // A cell that is exactly 0 got there through saturated gates (f = 0 and i = 0 or
    // relu(zc) = 0), so it stays 0 under any small perturbation: no kink is crossed.
    let margin = |n: &Naive| {
        let a = n.act_inputs.iter().filter(|v| **v != 0.0).map(|v| v.abs());
        let r = n.rec_inputs.iter().map(|v| (v.abs() - 3.0).abs());
        a.chain(r).fold(f64::INFINITY, f64::min)
    };
    let n = naive_forward(&pr);
    assert!(margin(&n) > 1e-3, "margin {} to a kink", margin(&n));
    let (neg, sat) = (
        n.act_inputs.iter().filter(|v| **v < 0.0).count(),
        n.rec_inputs.iter().filter(|v| v.abs() > 3.0).count(),
    );
    assert!(
        neg > 0 && sat > 0,
        "relu inactive {neg}, hard_sigmoid saturated {sat}"
    );
    check(&pr);
}

#[test]
fn linear_and_sigmoid_activations() {
    let d = ConvLstmDims {
        activation: Activation::Linear,
        recurrent_activation: Activation::Sigmoid,
        ..dims((3, 4), 1, 2, (3, 3), Padding::Same)
    };
    check(&Problem::new(d, 1, 2, false, 11));
}

fn golden(case: &str) {
    let g = Golden::load(case);
    let padding = match g.str("padding") {
        "same" => Padding::Same,
        "valid" => Padding::Valid,
        other => panic!("padding {other}"),
    };
    assert!(g.flag("use_bias"), "use_bias=false is not modelled");
    assert_eq!(g.str("data_format"), "channels_last");
    let d = ConvLstmDims {
        rows: g.usize("rows"),
        cols: g.usize("cols"),
        in_channels: g.usize("in_channels"),
        filters: g.usize("filters"),
        kernel: g.pair("kernel_size"),
        strides: g.pair("strides"),
        padding,
        dilation: g.pair("dilation_rate"),
        activation: Activation::from_keras(g.str("activation")).unwrap(),
        recurrent_activation: Activation::from_keras(g.str("recurrent_activation")).unwrap(),
    };
    assert_eq!(
        d.out_hw().unwrap(),
        (g.usize("out_rows"), g.usize("out_cols"))
    );
    let p = ConvLstmParams {
        dims: d,
        kernel: g.arr::<Ix4>("kernel"),
        recurrent_kernel: g.arr::<Ix4>("recurrent_kernel"),
        bias: g.arr::<Ix1>("bias"),
    };
    let (x, h0, c0) = (g.arr::<Ix5>("x"), g.arr::<Ix4>("h0"), g.arr::<Ix4>("c0"));
    let gb = g.flag("go_backwards");
    let f = convlstm_forward(&p, x.view(), h0.view(), c0.view(), gb).unwrap();
    let seq = x.dim().1;
    let dy = g.get("dy_out");
    // return_sequences=False: out and dy_out are the last step only.
    let dy_out = if g.flag("return_sequences") {
        g.arr::<Ix5>("dy_out")
    } else {
        let mut full = Array5::zeros(f.out.raw_dim());
        let last = dy.clone().into_dimensionality::<Ix4>().unwrap();
        full.slice_mut(s![.., seq - 1, .., .., ..]).assign(&last);
        full
    };
    if g.flag("return_sequences") {
        g.check("out", f.out.view().into_dyn(), OUT_TOL);
    } else {
        g.check(
            "out",
            f.out.index_axis(Axis(1), seq - 1).into_dyn(),
            OUT_TOL,
        );
    }
    g.check("h_n", f.h_n.view().into_dyn(), OUT_TOL);
    g.check("c_n", f.c_n.view().into_dyn(), OUT_TOL);
    let (dh, dc) = (g.arr::<Ix4>("dy_h_n"), g.arr::<Ix4>("dy_c_n"));
    let gr = convlstm_backward(&p, &f.tape, dy_out.view(), dh.view(), dc.view()).unwrap();
    g.check("grad_x", gr.dx.view().into_dyn(), GRAD_TOL);
    g.check("grad_h0", gr.dh0.view().into_dyn(), GRAD_TOL);
    g.check("grad_c0", gr.dc0.view().into_dyn(), GRAD_TOL);
    g.check("grad_kernel", gr.kernel.view().into_dyn(), GRAD_TOL);
    g.check(
        "grad_recurrent_kernel",
        gr.recurrent_kernel.view().into_dyn(),
        GRAD_TOL,
    );
    g.check("grad_bias", gr.bias.view().into_dyn(), GRAD_TOL);

    // Negative control: a spatially flipped kernel (convolution instead of
    // cross-correlation) must be rejected by the same comparison.
    let mut flipped = p.clone();
    flipped.kernel.invert_axis(Axis(0));
    flipped.kernel.invert_axis(Axis(1));
    flipped.recurrent_kernel.invert_axis(Axis(0));
    flipped.recurrent_kernel.invert_axis(Axis(1));
    let f = convlstm_forward(&flipped, x.view(), h0.view(), c0.view(), gb).unwrap();
    let (err, ref_max) = g.err("h_n", f.h_n.view().into_dyn());
    assert!(
        err > 100.0 * OUT_TOL * ref_max.max(1.0),
        "flipped kernel not rejected: {err}"
    );
}

#[test]
fn golden_same_k3() {
    golden("keras_convlstm2d_same_k3");
}

#[test]
fn golden_same_k3_s2() {
    golden("keras_convlstm2d_same_k3_s2");
}

#[test]
fn golden_same_k5_s1() {
    golden("keras_convlstm2d_same_k5_s1");
}

#[test]
fn golden_valid_k3() {
    golden("keras_convlstm2d_valid_k3");
}

/// The GPU-sized problem in f32 (B2, T10, 32x32x1, F16, 3x3) runs quickly and agrees with
/// the f64 reference to f32 precision.
#[test]
fn f32_gpu_sized_problem_matches_f64() {
    let d = dims((32, 32), 1, 16, (3, 3), Padding::Same);
    let pr = Problem::new(d, 2, 10, false, 12);
    let start = std::time::Instant::now();
    let p32 = pr.p.cast::<f32>();
    let c = |a: &Array5<f64>| a.mapv(|v| v as f32);
    let c4 = |a: &Array4<f64>| a.mapv(|v| v as f32);
    let f = convlstm_forward(
        &p32,
        c(&pr.x).view(),
        c4(&pr.h0).view(),
        c4(&pr.c0).view(),
        false,
    )
    .unwrap();
    let g = convlstm_backward(
        &p32,
        &f.tape,
        c(&pr.dy_out).view(),
        c4(&pr.dy_h_n).view(),
        c4(&pr.dy_c_n).view(),
    )
    .unwrap();
    eprintln!("f32 forward+backward: {:?}", start.elapsed());
    let g64 = pr.backward();
    let rel = |a: &Array4<f32>, b: &Array4<f64>| {
        let m = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        a.iter()
            .zip(b)
            .map(|(u, v)| (f64::from(*u) - v).abs())
            .fold(0.0, f64::max)
            / m
    };
    assert!(rel(&g.kernel, &g64.kernel) < 1e-4);
    assert!(rel(&g.recurrent_kernel, &g64.recurrent_kernel) < 1e-4);
    assert!(rel(&g.dh0, &g64.dh0) < 1e-4);
}

#[test]
fn bad_dims_are_config_errors() {
    let base = dims((6, 5), 2, 2, (3, 3), Padding::Valid);
    let cfg = |d: ConvLstmDims| match ConvLstmParams::<f64>::zeros(d) {
        Err(Error::Config(m)) => m,
        other => panic!("expected Error::Config, got {other:?}"),
    };
    // Kernel 7 > 6 rows; dilated kernel (3-1)*3+1 = 7 > 5 cols.
    let m = cfg(ConvLstmDims {
        kernel: (7, 3),
        ..base
    });
    assert!(m.contains('7') && m.contains("6 rows"), "{m}");
    let m = cfg(ConvLstmDims {
        dilation: (1, 3),
        ..base
    });
    assert!(m.contains("spans 7 cols") && m.contains("only 5"), "{m}");
    assert!(matches!(base.out_hw(), Ok((4, 3))));
    // "same" fits any kernel.
    assert!(
        ConvLstmDims {
            kernel: (7, 7),
            padding: Padding::Same,
            ..base
        }
        .validate()
        .is_ok()
    );
    let m = cfg(ConvLstmDims {
        strides: (2, 1),
        dilation: (1, 2),
        padding: Padding::Same,
        ..base
    });
    assert!(
        m.contains("strides (2, 1)") && m.contains("dilation_rate (1, 2)"),
        "{m}"
    );
    let m = cfg(ConvLstmDims { filters: 0, ..base });
    assert!(m.contains("filters is 0"), "{m}");
    let m = cfg(ConvLstmDims {
        strides: (1, 0),
        ..base
    });
    assert!(m.contains("stride width is 0"), "{m}");
    assert!(
        matches!(Activation::from_keras("swish"), Err(Error::Config(m)) if m.contains("swish"))
    );
    assert!(matches!(
        ConvLstmParams::<f64>::random(base, 1, -1.0),
        Err(Error::Config(_))
    ));
}

#[test]
fn bad_shapes_are_shape_errors() {
    let d = dims((5, 4), 2, 3, (3, 3), Padding::Same);
    let pr = Problem::new(d, 2, 2, false, 13);
    let shape_err = |r: Result<ConvLstmForward<f64>, Error>| match r {
        Err(Error::Shape(m)) => m,
        other => panic!("expected Error::Shape, got {:?}", other.map(|_| ())),
    };
    let run = |p: &ConvLstmParams<f64>, x: &Array5<f64>, h0: &Array4<f64>, c0: &Array4<f64>| {
        convlstm_forward(p, x.view(), h0.view(), c0.view(), false)
    };
    // Cin mismatch.
    let x3 = Array5::zeros((2, 2, 5, 4, 3));
    let m = shape_err(run(&pr.p, &x3, &pr.h0, &pr.c0));
    assert!(
        m.contains("3 channels") && m.contains("in_channels is 2"),
        "{m}"
    );
    // Frame size mismatch; empty batch.
    let m = shape_err(run(&pr.p, &Array5::zeros((2, 2, 4, 4, 2)), &pr.h0, &pr.c0));
    assert!(m.contains("4x4 frames") && m.contains("5x4"), "{m}");
    let m = shape_err(run(&pr.p, &Array5::zeros((0, 2, 5, 4, 2)), &pr.h0, &pr.c0));
    assert!(m.contains("at least 1"), "{m}");
    // Wrong state shapes.
    let m = shape_err(run(&pr.p, &pr.x, &Array4::zeros((2, 5, 4, 2)), &pr.c0));
    assert!(m.contains("h0") && m.contains("[2, 5, 4, 3]"), "{m}");
    let m = shape_err(run(&pr.p, &pr.x, &pr.h0, &Array4::zeros((1, 5, 4, 3))));
    assert!(m.contains("c0") && m.contains("[1, 5, 4, 3]"), "{m}");
    // Parameter shapes.
    let mut p = pr.p.clone();
    p.kernel = Array4::zeros((3, 3, 1, 12));
    let m = shape_err(run(&p, &pr.x, &pr.h0, &pr.c0));
    assert!(m.contains("kernel") && m.contains("[3, 3, 2, 12]"), "{m}");
    let mut p = pr.p.clone();
    p.bias = ndarray::Array1::zeros(8);
    assert!(shape_err(run(&p, &pr.x, &pr.h0, &pr.c0)).contains("bias"));

    // Backward: wrong dy shapes, and params that do not match the tape.
    let f = pr.forward(&pr.p, &pr.x, &pr.h0, &pr.c0);
    let r = convlstm_backward(
        &pr.p,
        &f.tape,
        pr.dy_out.slice(s![.., ..1, .., .., ..]),
        pr.dy_h_n.view(),
        pr.dy_c_n.view(),
    );
    assert!(matches!(r, Err(Error::Shape(m)) if m.contains("dy_out")));
    let r = convlstm_backward(
        &pr.p,
        &f.tape,
        pr.dy_out.view(),
        pr.dy_h_n.view(),
        pr.dy_c_n.slice(s![.., .., ..2, ..]),
    );
    assert!(matches!(r, Err(Error::Shape(m)) if m.contains("dy_c_n")));
    let other = ConvLstmParams::<f64>::zeros(ConvLstmDims { filters: 2, ..d }).unwrap();
    let r = convlstm_backward(
        &other,
        &f.tape,
        pr.dy_out.view(),
        pr.dy_h_n.view(),
        pr.dy_c_n.view(),
    );
    assert!(matches!(r, Err(Error::Config(_))));
}
