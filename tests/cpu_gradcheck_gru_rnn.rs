//! Checks of the CPU reference GRU and Elman RNN: central finite differences of the loss for
//! every input and parameter entry (f64), packed-sequence semantics, input validation, and
//! agreement with the PyTorch and Keras goldens in `tests/data` (outputs and gradients).

use ndarray::{Array2, Array3, ArrayD, ArrayViewD, Axis, Ix1, Ix2, s};
use wgpu_rnn::Error;
use wgpu_rnn::cpu::{LstmDims, gru::*, rnn::*};

#[path = "support/common.rs"]
mod common_support;
use common_support::*;
#[path = "support/gru_rnn.rs"]
mod support;
use support::*;

#[test]
fn gru_reset_after_two_layers_bidirectional_lengths() {
    let pr = Problem::gru(
        dims(3, 4, 2, true),
        GruMode::ResetAfter,
        3,
        3,
        Some(vec![3, 1, 2]),
        1,
    );
    let g = gradcheck(&pr);
    check_padding(&pr, &g);
}

#[test]
fn gru_reset_before_one_layer() {
    gradcheck(&Problem::gru(
        dims(3, 4, 1, false),
        GruMode::ResetBefore,
        2,
        4,
        None,
        2,
    ));
}

/// ResetBefore has no recurrent bias: its gradient is all zeros, also with lengths and in
/// deeper bidirectional stacks; the other gradients still pass the finite-difference check.
#[test]
fn gru_reset_before_b_hh_gradient_is_zero() {
    let pr = Problem::gru(
        dims(2, 3, 2, true),
        GruMode::ResetBefore,
        3,
        3,
        Some(vec![2, 3, 1]),
        3,
    );
    let g = gradcheck(&pr);
    check_padding(&pr, &g);
    for c in &g.cells {
        assert!(c[3].iter().all(|&v| v == 0.0));
        assert!(c[2].iter().any(|&v| v != 0.0));
    }
}

#[test]
fn rnn_tanh_two_layers_bidirectional_lengths() {
    let pr = Problem::rnn(
        dims(3, 4, 2, true),
        Nonlinearity::Tanh,
        3,
        3,
        Some(vec![3, 1, 2]),
        4,
    );
    let g = gradcheck(&pr);
    check_padding(&pr, &g);
}

/// relu is not differentiable at 0, so the finite-difference check is only valid when no
/// pre-activation is near 0: the first seed whose every |pre| > 1e-3 (with a good share
/// clearly negative, so the zero branch of the derivative is exercised) is used.
#[test]
fn rnn_relu_two_layers_bidirectional_lengths() {
    let lengths = vec![3, 1, 2];
    let pr = (0..200)
        .map(|seed| {
            Problem::rnn(
                dims(3, 4, 2, true),
                Nonlinearity::Relu,
                3,
                3,
                Some(lengths.clone()),
                seed,
            )
        })
        .find(|pr| {
            let Net::Rnn(p) = &pr.net else { unreachable!() };
            let (_, pres) = naive_rnn(p, &pr.x, &pr.h0, &lengths);
            let negative = pres.iter().filter(|&&v| v < -0.05).count();
            pres.iter().all(|v| v.abs() > 1e-3) && negative * 4 >= pres.len()
        })
        .expect("a seed with all relu pre-activations away from 0");
    let g = gradcheck(&pr);
    check_padding(&pr, &g);
}

/// The library RNN agrees with the naive per-sequence loop (both activations, lengths in
/// any order, reverse direction starting at each sequence's own end).
#[test]
fn rnn_matches_naive_loop() {
    for act in [Nonlinearity::Tanh, Nonlinearity::Relu] {
        let lengths = vec![2, 5, 1, 4];
        let pr = Problem::rnn(dims(3, 4, 2, true), act, 4, 5, Some(lengths.clone()), 8);
        let Net::Rnn(p) = &pr.net else { unreachable!() };
        let (naive, _) = naive_rnn(p, &pr.x, &pr.h0, &lengths);
        let (out, _) = pr.net.forward(pr.x.view(), pr.h0.view(), Some(&lengths));
        let err = max_diff(&out, &naive);
        assert!(err < 1e-12, "{act:?}: out differs by {err}");
    }
}

/// PyTorch packs each sequence on its own: running a batch entry alone, truncated to its
/// length, gives the same out and h_n as the padded batch.
#[test]
fn packed_batch_matches_sequences_run_alone() {
    let lengths = [2usize, 5, 1, 4];
    let d = dims(3, 4, 2, true);
    for pr in [
        Problem::gru(d, GruMode::ResetAfter, 4, 5, Some(lengths.to_vec()), 7),
        Problem::gru(d, GruMode::ResetBefore, 4, 5, Some(lengths.to_vec()), 7),
        Problem::rnn(d, Nonlinearity::Tanh, 4, 5, Some(lengths.to_vec()), 7),
    ] {
        let (out, h_n) = pr.net.forward(pr.x.view(), pr.h0.view(), Some(&lengths));
        for (b, &len) in lengths.iter().enumerate() {
            let x = pr.x.slice(s![..len, b..b + 1, ..]);
            let (o1, h1) = pr.net.forward(x, pr.h0.slice(s![.., b..b + 1, ..]), None);
            let diff = |a: ArrayViewD<f64>, e: ArrayViewD<f64>| max_diff(&a, &e);
            let e_out = diff(
                out.slice(s![..len, b, ..]).into_dyn(),
                o1.index_axis(Axis(1), 0).into_dyn(),
            );
            let e_h = diff(
                h_n.slice(s![.., b, ..]).into_dyn(),
                h1.index_axis(Axis(1), 0).into_dyn(),
            );
            assert!(
                e_out < 1e-12 && e_h < 1e-12,
                "batch {b}: out {e_out}, h_n {e_h}"
            );
        }
    }
}

#[test]
fn f32_matches_f64_and_random_is_deterministic() {
    let d = dims(3, 4, 2, true);
    let p = GruParams::<f64>::random(d, GruMode::ResetAfter, 5, 0.5).unwrap();
    assert_eq!(
        p.cast::<f32>(),
        GruParams::<f32>::random(d, GruMode::ResetAfter, 5, 0.5).unwrap()
    );
    assert_ne!(
        p,
        GruParams::random(d, GruMode::ResetAfter, 6, 0.5).unwrap()
    );
    let pb = GruParams::<f64>::random(d, GruMode::ResetBefore, 5, 0.5).unwrap();
    assert!(pb.cells.iter().all(|c| c.b_hh.iter().all(|&v| v == 0.0)));
    let r = RnnParams::<f64>::random(d, Nonlinearity::Tanh, 5, 0.3).unwrap();
    assert!(
        r.cells
            .iter()
            .all(|c| c.w_hh.iter().all(|v| v.abs() <= 0.3))
    );
    assert_eq!(
        r.cast::<f32>(),
        RnnParams::<f32>::random(d, Nonlinearity::Tanh, 5, 0.3).unwrap()
    );

    let pr = Problem::new(Net::Gru(p.clone()), 3, 4, Some(vec![4, 2, 3]), 5);
    let c = |a: &Array3<f64>| a.mapv(|v| v as f32);
    let lens = pr.lengths.as_deref();
    let f32f = gru_forward(&p.cast::<f32>(), c(&pr.x).view(), c(&pr.h0).view(), lens).unwrap();
    let g32 = gru_backward(
        &p.cast::<f32>(),
        &f32f.tape,
        c(&pr.dy_out).view(),
        c(&pr.dy_h_n).view(),
    )
    .unwrap();
    let (out, h_n) = pr.net.forward(pr.x.view(), pr.h0.view(), lens);
    let g64 = pr.grads_with(pr.dy_out.view());
    let close = |a: &Array3<f32>, b: &Array3<f64>| {
        a.iter()
            .zip(b)
            .all(|(&u, &v)| (f64::from(u) - v).abs() < 1e-5)
    };
    assert!(close(&f32f.out, &out) && close(&f32f.h_n, &h_n));
    assert!(close(&g32.dx, &g64.dx) && close(&g32.dh0, &g64.dh0));
    assert_eq!(f32f.tape.lengths(), &[4, 2, 3]);
    assert_eq!(
        (f32f.tape.seq_len(), f32f.tape.batch(), f32f.tape.dims()),
        (4, 3, d)
    );
}

fn err_of<T>(r: wgpu_rnn::Result<T>) -> Error {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

#[test]
fn bad_inputs_give_typed_errors() {
    let d = dims(3, 4, 2, true);
    let e = err_of(GruParams::<f64>::zeros(
        LstmDims { proj_size: 2, ..d },
        GruMode::ResetAfter,
    ));
    assert!(
        matches!(&e, Error::Config(m) if m.contains("proj_size is 2")),
        "{e}"
    );
    assert!(matches!(
        err_of(RnnParams::<f64>::zeros(
            LstmDims { num_layers: 0, ..d },
            Nonlinearity::Tanh
        )),
        Error::Config(_)
    ));
    assert!(matches!(
        err_of(RnnParams::<f64>::random(d, Nonlinearity::Relu, 1, -1.0)),
        Error::Config(_)
    ));

    let mut p = GruParams::<f64>::zeros(d, GruMode::ResetAfter).unwrap();
    p.cells[3].w_hh = Array2::zeros((12, 3));
    let e = err_of(p.validate());
    assert!(
        matches!(&e, Error::Shape(m) if m.contains("weight_hh_l1_reverse") && m.contains("[12, 4]")),
        "{e}"
    );
    let mut p = RnnParams::<f64>::zeros(d, Nonlinearity::Tanh).unwrap();
    p.cells[2].w_ih = Array2::zeros((4, 3));
    let e = err_of(p.validate());
    assert!(
        matches!(&e, Error::Shape(m) if m.contains("weight_ih_l1") && m.contains("[4, 8]")),
        "{e}"
    );
    p.cells.pop();
    assert!(matches!(err_of(p.validate()), Error::Shape(_)));
    let mut p = GruParams::<f64>::zeros(d, GruMode::ResetBefore).unwrap();
    p.cells[1].b_hh[0] = 0.5;
    let e = err_of(p.validate());
    assert!(
        matches!(&e, Error::Config(m) if m.contains("bias_hh_l0_reverse")),
        "{e}"
    );

    let p = GruParams::<f64>::zeros(d, GruMode::ResetAfter).unwrap();
    let (x, h0) = (
        Array3::<f64>::zeros((3, 2, 3)),
        Array3::<f64>::zeros((4, 2, 4)),
    );
    let fwd = |x: &Array3<f64>, h0: &Array3<f64>, l: Option<&[usize]>| {
        gru_forward(&p, x.view(), h0.view(), l)
    };
    assert!(fwd(&x, &h0, Some(&[3, 1])).is_ok());
    let e = err_of(fwd(&Array3::zeros((3, 2, 5)), &h0, None));
    assert!(
        matches!(&e, Error::Shape(m) if m.contains("input_size is 3")),
        "{e}"
    );
    assert!(matches!(
        err_of(fwd(&Array3::zeros((0, 2, 3)), &h0, None)),
        Error::Shape(_)
    ));
    assert!(matches!(
        err_of(fwd(&Array3::zeros((3, 0, 3)), &h0, None)),
        Error::Shape(_)
    ));
    let e = err_of(fwd(&x, &Array3::zeros((4, 2, 3)), None));
    assert!(matches!(&e, Error::Shape(m) if m.contains("h0")), "{e}");
    let e = err_of(fwd(&x, &h0, Some(&[3, 4])));
    assert!(
        matches!(&e, Error::Config(m) if m.contains("lengths[1] = 4") && m.contains("1..=3")),
        "{e}"
    );
    assert!(matches!(
        err_of(fwd(&x, &h0, Some(&[0, 1]))),
        Error::Config(_)
    ));
    assert!(matches!(err_of(fwd(&x, &h0, Some(&[3]))), Error::Config(_)));

    let f = fwd(&x, &h0, None).unwrap();
    let (dyo, dyh) = (
        Array3::<f64>::zeros((3, 2, 8)),
        Array3::<f64>::zeros((4, 2, 4)),
    );
    assert!(gru_backward(&p, &f.tape, dyo.view(), dyh.view()).is_ok());
    let e = err_of(gru_backward(&p, &f.tape, dyh.view(), dyh.view()));
    assert!(matches!(&e, Error::Shape(m) if m.contains("dy_out")), "{e}");
    let e = err_of(gru_backward(&p, &f.tape, dyo.view(), dyo.view()));
    assert!(matches!(&e, Error::Shape(m) if m.contains("dy_h_n")), "{e}");
    let other = GruParams::<f64>::zeros(dims(3, 4, 1, true), GruMode::ResetAfter).unwrap();
    assert!(matches!(
        err_of(gru_backward(&other, &f.tape, dyo.view(), dyh.view())),
        Error::Config(_)
    ));

    let r = RnnParams::<f64>::zeros(d, Nonlinearity::Relu).unwrap();
    let e = err_of(rnn_forward(&r, x.view(), h0.view(), Some(&[1, 9])));
    assert!(
        matches!(&e, Error::Config(m) if m.contains("lengths[1] = 9")),
        "{e}"
    );
    let f = rnn_forward(&r, x.view(), h0.view(), None).unwrap();
    assert!(matches!(
        err_of(rnn_backward(&r, &f.tape, dyo.view(), dyo.view())),
        Error::Shape(_)
    ));
}

/// PyTorch goldens map one-to-one: state_dict names and `(T, B, ·)` layouts are ours.
fn torch_golden(case: &str) {
    let g = Golden::load(case);
    let d = LstmDims {
        input_size: g.usize("input_size"),
        hidden_size: g.usize("hidden_size"),
        proj_size: g.usize("proj_size"),
        num_layers: g.usize("num_layers"),
        bidirectional: g.flag("bidirectional"),
    };
    let sfx = |cell: usize| {
        format!(
            "l{}{}",
            cell / d.directions(),
            if cell % d.directions() == 1 {
                "_reverse"
            } else {
                ""
            }
        )
    };
    let names = |cell: usize| NAMES.map(|n| format!("{n}_{}", sfx(cell)));
    let mut net = match g.config["cell"].as_str().unwrap() {
        "gru" => Net::Gru(GruParams::zeros(d, GruMode::ResetAfter).unwrap()),
        "rnn_tanh" => Net::Rnn(RnnParams::zeros(d, Nonlinearity::Tanh).unwrap()),
        other => panic!("unexpected cell {other}"),
    };
    for cell in 0..d.cell_count() {
        for (which, name) in names(cell).iter().enumerate() {
            for (k, &v) in g.get(name).iter().enumerate() {
                *net.entry_mut(cell, which, k) = v;
            }
        }
    }
    assert!(g.config["lengths"].is_null());
    let (x, h0) = (g.a3("x"), g.a3("h0"));
    let (out, h_n) = net.forward(x.view(), h0.view(), None);
    g.check("out", out.view().into_dyn(), OUT_TOL);
    g.check("h_n", h_n.view().into_dyn(), OUT_TOL);
    let (dy_out, dy_h_n) = (g.a3("dy_out"), g.a3("dy_h_n"));
    let gr = net.grads(x.view(), h0.view(), None, [dy_out.view(), dy_h_n.view()]);
    g.check("grad_x", gr.dx.view().into_dyn(), GRAD_TOL);
    g.check("grad_h0", gr.dh0.view().into_dyn(), GRAD_TOL);
    for (cell, cg) in gr.cells.iter().enumerate() {
        for (which, name) in names(cell).iter().enumerate() {
            g.check(&format!("grad_{name}"), cg[which].view(), GRAD_TOL);
        }
    }
}

#[test]
fn golden_torch_gru_small() {
    torch_golden("torch_gru_small");
}

#[test]
fn golden_torch_gru_bidir_2layer() {
    torch_golden("torch_gru_bidir_2layer");
}

#[test]
fn golden_torch_rnn_tanh_2layer() {
    torch_golden("torch_rnn_tanh_2layer");
}

/// Swaps the first two blocks of `units` along `axis`: Keras z,r,h ↔ PyTorch r,z,n (the
/// permutation is its own inverse, so it converts both ways).
fn swap_zr(a: ArrayViewD<f64>, axis: usize, units: usize) -> ArrayD<f64> {
    let mut o = a.to_owned();
    let ax = Axis(axis);
    o.slice_axis_mut(ax, (0..units).into())
        .assign(&a.slice_axis(ax, (units..2 * units).into()));
    o.slice_axis_mut(ax, (units..2 * units).into())
        .assign(&a.slice_axis(ax, (0..units).into()));
    o
}

/// Keras GRU → our ResetAfter/ResetBefore GRU:
/// `w_ih = swap_zr(kernelᵀ)`, `w_hh = swap_zr(recurrent_kernelᵀ)` (row blocks);
/// reset_after: `b_ih = swap_zr(bias[0])`, `b_hh = swap_zr(bias[1])`; reset_before:
/// `b_ih = swap_zr(bias)`, `b_hh = 0`. Keras is batch-major: `x (B, T, I)` → `(T, B, I)`
/// (time-flipped with go_backwards; Keras returns outputs in processing order, which is our
/// time order on the flipped input), `h0 (B, U)` → `(1, B, U)`.
fn keras_gru_golden(case: &str) {
    let g = Golden::load(case);
    let (units, after, back) = (
        g.usize("units"),
        g.flag("reset_after"),
        g.flag("go_backwards"),
    );
    let d = dims(g.usize("input_size"), units, 1, false);
    let mode = if after {
        GruMode::ResetAfter
    } else {
        GruMode::ResetBefore
    };
    let mut p = GruParams::<f64>::zeros(d, mode).unwrap();
    let to_rows = |k: &str| {
        swap_zr(g.a2(k).t().into_dyn(), 0, units)
            .into_dimensionality::<Ix2>()
            .unwrap()
    };
    let c = &mut p.cells[0];
    c.w_ih = to_rows("kernel");
    c.w_hh = to_rows("recurrent_kernel");
    let bias = g.get("bias");
    let vec = |b: ArrayViewD<f64>| swap_zr(b, 0, units).into_dimensionality::<Ix1>().unwrap();
    if after {
        c.b_ih = vec(bias.index_axis(Axis(0), 0));
        c.b_hh = vec(bias.index_axis(Axis(0), 1));
    } else {
        c.b_ih = vec(bias.view());
    }

    // (B, T, ·) → (T, B, ·), flipping time for go_backwards.
    let to_tb = |a: Array3<f64>| {
        let a = a.permuted_axes([1, 0, 2]);
        if back {
            a.slice(s![..;-1, .., ..]).to_owned()
        } else {
            a.to_owned()
        }
    };
    let x = to_tb(g.a3("x"));
    let state = |k: &str| g.a2(k).insert_axis(Axis(0));
    let net = Net::Gru(p);
    let (out, h_n) = net.forward(x.view(), state("h0").view(), None);
    // Outputs are in processing order: only the batch/time transpose, no flip.
    g.check(
        "out",
        out.view().permuted_axes([1, 0, 2]).into_dyn(),
        OUT_TOL,
    );
    g.check("h_n", h_n.index_axis(Axis(0), 0).into_dyn(), OUT_TOL);

    let dy_out = g.a3("dy_out").permuted_axes([1, 0, 2]).to_owned();
    let gr = net.grads(
        x.view(),
        state("h0").view(),
        None,
        [dy_out.view(), state("dy_h_n").view()],
    );
    let dx = to_tb(gr.dx.permuted_axes([1, 0, 2]).to_owned()); // flip is its own inverse
    g.check(
        "grad_x",
        dx.view().permuted_axes([1, 0, 2]).into_dyn(),
        GRAD_TOL,
    );
    g.check(
        "grad_h0",
        gr.dh0.index_axis(Axis(0), 0).into_dyn(),
        GRAD_TOL,
    );
    // Back to Keras layout: kernel = swap_zr(w_ih)ᵀ, bias rows likewise.
    let [dw_ih, dw_hh, db_ih, db_hh] = &gr.cells[0];
    let to_cols = |w: &ArrayD<f64>| swap_zr(w.view(), 0, units).reversed_axes();
    g.check("grad_kernel", to_cols(dw_ih).view(), GRAD_TOL);
    g.check("grad_recurrent_kernel", to_cols(dw_hh).view(), GRAD_TOL);
    let gb = if after {
        ndarray::stack(
            Axis(0),
            &[
                swap_zr(db_ih.view(), 0, units).view(),
                swap_zr(db_hh.view(), 0, units).view(),
            ],
        )
        .unwrap()
    } else {
        assert!(db_hh.iter().all(|&v| v == 0.0));
        swap_zr(db_ih.view(), 0, units)
    };
    g.check("grad_bias", gb.view(), GRAD_TOL);
}

#[test]
fn golden_keras_gru_reset_after() {
    keras_gru_golden("keras_gru_reset_after");
}

#[test]
fn golden_keras_gru_reset_before() {
    keras_gru_golden("keras_gru_reset_before");
}

#[test]
fn golden_keras_gru_medium_reset_after() {
    keras_gru_golden("keras_gru_medium_reset_after");
}

/// The reverse direction is the forward recurrence on time-flipped input, written back at
/// the original time index, and its h_n is the state after t = 0. (This is also how a Keras
/// `go_backwards=True` layer maps: forward on the flipped input, outputs left in that order.)
#[test]
fn reverse_direction_is_forward_on_flipped_time() {
    let d = dims(3, 4, 1, true);
    for pr in [
        Problem::gru(d, GruMode::ResetAfter, 2, 4, None, 11),
        Problem::gru(d, GruMode::ResetBefore, 2, 4, None, 11),
        Problem::rnn(d, Nonlinearity::Tanh, 2, 4, None, 11),
    ] {
        let (out, h_n) = pr.net.forward(pr.x.view(), pr.h0.view(), None);
        let uni = LstmDims {
            bidirectional: false,
            ..d
        };
        let rev = match &pr.net {
            Net::Gru(p) => Net::Gru(GruParams {
                dims: uni,
                mode: p.mode,
                cells: vec![p.cells[1].clone()],
            }),
            Net::Rnn(p) => Net::Rnn(RnnParams {
                dims: uni,
                nonlinearity: p.nonlinearity,
                cells: vec![p.cells[1].clone()],
            }),
        };
        let xr = pr.x.slice(s![..;-1, .., ..]);
        let (o1, h1) = rev.forward(xr, pr.h0.slice(s![1..2, .., ..]), None);
        let diff = |a: ArrayViewD<f64>, e: ArrayViewD<f64>| max_diff(&a, &e);
        let rev_half = out.slice(s![.., .., 4..]);
        assert!(diff(rev_half.into_dyn(), o1.slice(s![..;-1, .., ..]).into_dyn()) < 1e-12);
        assert!(
            diff(
                h_n.slice(s![1, .., ..]).into_dyn(),
                h1.slice(s![0, .., ..]).into_dyn()
            ) < 1e-12
        );
        assert_eq!(h_n.slice(s![1, .., ..]), out.slice(s![0, .., 4..]));
    }
}
