//! Checks of the CPU reference LSTM against itself and against first principles:
//! central finite differences of `lstm_loss` for every input and parameter entry (f64),
//! packed-sequence semantics, direction semantics, and input validation.

use ndarray::{Array3, ArrayView3, ArrayViewD, Axis, s};
use proptest::prelude::*;
use wgpu_rnn::Error;
use wgpu_rnn::cpu::lstm::*;

#[path = "support/common.rs"]
mod common_support;
use common_support::Rng;
use common_support::*;

fn dims(input: usize, hidden: usize, proj: usize, layers: usize, bidir: bool) -> LstmDims {
    LstmDims {
        input_size: input,
        hidden_size: hidden,
        proj_size: proj,
        num_layers: layers,
        bidirectional: bidir,
    }
}

/// One gradient-check problem: parameters, inputs and the loss weights `dy_*`.
struct Problem {
    p: LstmParams<f64>,
    x: Array3<f64>,
    h0: Array3<f64>,
    c0: Array3<f64>,
    dy_out: Array3<f64>,
    dy_h_n: Array3<f64>,
    dy_c_n: Array3<f64>,
    lengths: Option<Vec<usize>>,
}

impl Problem {
    fn new(d: LstmDims, batch: usize, seq: usize, lengths: Option<Vec<usize>>, seed: u64) -> Self {
        let mut r = Rng(seed ^ 0xABCD);
        let ld = d.num_layers * d.directions();
        let (ho, hs) = (d.out_size(), d.hidden_size);
        Problem {
            p: LstmParams::random(d, seed, 0.5).unwrap(),
            x: r.array3((seq, batch, d.input_size)),
            h0: r.array3((ld, batch, ho)),
            c0: r.array3((ld, batch, hs)),
            dy_out: r.array3((seq, batch, d.directions() * ho)),
            dy_h_n: r.array3((ld, batch, ho)),
            dy_c_n: r.array3((ld, batch, hs)),
            lengths,
        }
    }

    fn forward(
        &self,
        p: &LstmParams<f64>,
        x: &Array3<f64>,
        h0: &Array3<f64>,
        c0: &Array3<f64>,
    ) -> LstmForward<f64> {
        lstm_forward(p, x.view(), h0.view(), c0.view(), self.lengths.as_deref()).unwrap()
    }

    fn loss(
        &self,
        p: &LstmParams<f64>,
        x: &Array3<f64>,
        h0: &Array3<f64>,
        c0: &Array3<f64>,
    ) -> f64 {
        let f = self.forward(p, x, h0, c0);
        lstm_loss(
            &f,
            self.dy_out.view(),
            self.dy_h_n.view(),
            self.dy_c_n.view(),
        )
    }

    fn backward_with(&self, dy_out: ArrayView3<f64>) -> LstmGrads<f64> {
        let f = self.forward(&self.p, &self.x, &self.h0, &self.c0);
        lstm_backward(
            &self.p,
            &f.tape,
            dy_out,
            self.dy_h_n.view(),
            self.dy_c_n.view(),
        )
        .unwrap()
    }
}

/// Mutable flat view of tensor `which` (0 w_ih, 1 w_hh, 2 b_ih, 3 b_hh, 4 w_hr) of a cell.
fn tensor_mut(c: &mut LstmCellParams<f64>, which: usize) -> &mut [f64] {
    match which {
        0 => c.w_ih.as_slice_mut(),
        1 => c.w_hh.as_slice_mut(),
        2 => c.b_ih.as_slice_mut(),
        3 => c.b_hh.as_slice_mut(),
        _ => c.w_hr.as_mut().unwrap().as_slice_mut(),
    }
    .unwrap()
}

fn tensor(c: &LstmCellParams<f64>, which: usize) -> ArrayViewD<'_, f64> {
    match which {
        0 => c.w_ih.view().into_dyn(),
        1 => c.w_hh.view().into_dyn(),
        2 => c.b_ih.view().into_dyn(),
        3 => c.b_hh.view().into_dyn(),
        _ => c.w_hr.as_ref().unwrap().view().into_dyn(),
    }
}

/// Checks every entry of dx, dh0, dc0 and of every parameter gradient of every cell.
fn gradcheck(pr: &Problem, require_nonzero: bool) -> LstmGrads<f64> {
    let g = pr.backward_with(pr.dy_out.view());
    let d = pr.p.dims;

    let n = numeric(pr.x.shape(), |k, e| {
        pr.loss(&pr.p, &moved(&pr.x, k, e), &pr.h0, &pr.c0)
    });
    compare("dx", g.dx.view().into_dyn(), &n, require_nonzero);
    let n = numeric(pr.h0.shape(), |k, e| {
        pr.loss(&pr.p, &pr.x, &moved(&pr.h0, k, e), &pr.c0)
    });
    compare("dh0", g.dh0.view().into_dyn(), &n, require_nonzero);
    let n = numeric(pr.c0.shape(), |k, e| {
        pr.loss(&pr.p, &pr.x, &pr.h0, &moved(&pr.c0, k, e))
    });
    compare("dc0", g.dc0.view().into_dyn(), &n, require_nonzero);

    assert_eq!(g.cells.len(), pr.p.cells.len());
    let names = ["weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"];
    for cell in 0..pr.p.cells.len() {
        assert_eq!(g.cells[cell].w_hr.is_some(), d.proj_size > 0);
        let count = if d.proj_size > 0 { 5 } else { 4 };
        for (which, base) in names.iter().enumerate().take(count) {
            let shape = tensor(&pr.p.cells[cell], which).shape().to_vec();
            let n = numeric(&shape, |k, e| {
                let mut p = pr.p.clone();
                tensor_mut(&mut p.cells[cell], which)[k] += e;
                pr.loss(&p, &pr.x, &pr.h0, &pr.c0)
            });
            compare(
                &pname(&d, cell, base),
                tensor(&g.cells[cell], which),
                &n,
                require_nonzero,
            );
        }
    }
    g
}

#[test]
fn gradcheck_one_layer_unidirectional() {
    gradcheck(&Problem::new(dims(3, 4, 0, 1, false), 2, 3, None, 1), true);
}

#[test]
fn gradcheck_two_layers_bidirectional() {
    gradcheck(&Problem::new(dims(3, 4, 0, 2, true), 2, 3, None, 2), true);
}

#[test]
fn gradcheck_projection_two_layers_bidirectional() {
    gradcheck(&Problem::new(dims(3, 4, 2, 2, true), 2, 3, None, 3), true);
}

#[test]
fn gradcheck_variable_lengths_bidirectional() {
    let lengths = vec![3, 1, 2];
    let pr = Problem::new(dims(3, 4, 0, 2, true), 3, 3, Some(lengths.clone()), 4);
    let g = gradcheck(&pr, true);
    let f = pr.forward(&pr.p, &pr.x, &pr.h0, &pr.c0);

    // Padding is exactly zero in out and dx.
    let dy_junk = padded_junk(&f.out, &g.dx, &pr.dy_out, &lengths);
    // dy_out at padded steps is ignored: every gradient is bit-identical.
    let g2 = pr.backward_with(dy_junk.view());
    assert_eq!(g.dx, g2.dx);
    assert_eq!(g.dh0, g2.dh0);
    assert_eq!(g.dc0, g2.dc0);
    assert_eq!(g.cells, g2.cells);
}

/// PyTorch packs each sequence on its own: running a batch entry alone, truncated to its
/// length, must give the same out, h_n and c_n as the padded batch (any length order).
#[test]
fn packed_batch_matches_sequences_run_alone() {
    for proj in [0, 2] {
        let lengths = [2usize, 5, 1, 4];
        let pr = Problem::new(dims(3, 4, proj, 2, true), 4, 5, Some(lengths.to_vec()), 7);
        let f = pr.forward(&pr.p, &pr.x, &pr.h0, &pr.c0);
        for (b, &len) in lengths.iter().enumerate() {
            let x = pr.x.slice(s![..len, b..b + 1, ..]);
            let h0 = pr.h0.slice(s![.., b..b + 1, ..]);
            let c0 = pr.c0.slice(s![.., b..b + 1, ..]);
            let one = lstm_forward(&pr.p, x, h0, c0, None).unwrap();
            let close = |a: ArrayViewD<f64>, e: ArrayViewD<f64>, what: &str| {
                let err = max_diff(&a, &e);
                assert!(
                    err < 1e-12,
                    "proj {proj}, batch {b}: {what} differs by {err}"
                );
            };
            close(
                f.out.slice(s![..len, b, ..]).into_dyn(),
                one.out.index_axis(Axis(1), 0).into_dyn(),
                "out",
            );
            close(
                f.h_n.slice(s![.., b, ..]).into_dyn(),
                one.h_n.index_axis(Axis(1), 0).into_dyn(),
                "h_n",
            );
            close(
                f.c_n.slice(s![.., b, ..]).into_dyn(),
                one.c_n.index_axis(Axis(1), 0).into_dyn(),
                "c_n",
            );
        }
    }
}

/// The reverse direction is the forward recurrence on time-flipped input, written back at
/// the original time index; its h_n is the state after t = 0.
#[test]
fn reverse_direction_is_forward_on_flipped_time() {
    let d = dims(3, 4, 0, 1, true);
    let pr = Problem::new(d, 2, 4, None, 11);
    let f = pr.forward(&pr.p, &pr.x, &pr.h0, &pr.c0);
    let uni = LstmParams {
        dims: LstmDims {
            bidirectional: false,
            ..d
        },
        cells: vec![pr.p.cells[1].clone()],
    };
    let xr = pr.x.slice(s![..;-1, .., ..]);
    let r = lstm_forward(
        &uni,
        xr,
        pr.h0.slice(s![1..2, .., ..]),
        pr.c0.slice(s![1..2, .., ..]),
        None,
    )
    .unwrap();
    let rev_half = f.out.slice(s![.., .., 4..]);
    let flipped = r.out.slice(s![..;-1, .., ..]);
    let err = max_diff(rev_half, flipped);
    assert!(err < 1e-12, "reverse half differs by {err}");
    assert!(max_diff(f.h_n.slice(s![1, .., ..]), r.h_n.slice(s![0, .., ..])) < 1e-12);
    // And h_n of the reverse direction is its output at t = 0.
    assert_eq!(f.h_n.slice(s![1, .., ..]), f.out.slice(s![0, .., 4..]));
}

/// One step of a 1x1 LSTM written out by hand, pinning the gate order i, f, g, o.
#[test]
fn scalar_step_matches_hand_computation() {
    let d = dims(1, 1, 0, 1, false);
    let mut p = LstmParams::<f64>::zeros(d).unwrap();
    let c = &mut p.cells[0];
    c.w_ih.assign(&ndarray::arr2(&[[0.1], [0.2], [0.3], [0.4]]));
    c.w_hh
        .assign(&ndarray::arr2(&[[-0.5], [0.6], [-0.7], [0.8]]));
    c.b_ih.assign(&ndarray::arr1(&[0.01, 0.02, 0.03, 0.04]));
    c.b_hh.assign(&ndarray::arr1(&[0.05, -0.06, 0.07, -0.08]));
    let (x, h0, c0) = (1.5, 0.25, -0.75);
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let i = sig(0.1 * x - 0.5 * h0 + 0.06);
    let fg = sig(0.2 * x + 0.6 * h0 - 0.04);
    let g = (0.3 * x - 0.7 * h0 + 0.10).tanh();
    let o = sig(0.4 * x + 0.8 * h0 - 0.04);
    let c1 = fg * c0 + i * g;
    let h1 = o * c1.tanh();
    let a = |v: f64| Array3::from_elem((1, 1, 1), v);
    let f = lstm_forward(&p, a(x).view(), a(h0).view(), a(c0).view(), None).unwrap();
    assert!((f.out[[0, 0, 0]] - h1).abs() < 1e-15);
    assert!((f.h_n[[0, 0, 0]] - h1).abs() < 1e-15);
    assert!((f.c_n[[0, 0, 0]] - c1).abs() < 1e-15);
}

#[test]
fn f32_forward_and_backward_match_f64() {
    let pr = Problem::new(dims(3, 4, 2, 2, true), 3, 4, Some(vec![4, 2, 3]), 5);
    let p32 = pr.p.cast::<f32>();
    assert_eq!(p32, LstmParams::<f32>::random(pr.p.dims, 5, 0.5).unwrap());
    let c = |a: &Array3<f64>| a.mapv(|v| v as f32);
    let lens = pr.lengths.as_deref();
    let f32f = lstm_forward(
        &p32,
        c(&pr.x).view(),
        c(&pr.h0).view(),
        c(&pr.c0).view(),
        lens,
    )
    .unwrap();
    let g32 = lstm_backward(
        &p32,
        &f32f.tape,
        c(&pr.dy_out).view(),
        c(&pr.dy_h_n).view(),
        c(&pr.dy_c_n).view(),
    )
    .unwrap();
    let f64f = pr.forward(&pr.p, &pr.x, &pr.h0, &pr.c0);
    let g64 = pr.backward_with(pr.dy_out.view());
    let close = |a: &Array3<f32>, b: &Array3<f64>| {
        a.iter()
            .zip(b)
            .all(|(&u, &v)| (f64::from(u) - v).abs() < 1e-5)
    };
    assert!(
        close(&f32f.out, &f64f.out) && close(&f32f.h_n, &f64f.h_n) && close(&f32f.c_n, &f64f.c_n)
    );
    assert!(close(&g32.dx, &g64.dx) && close(&g32.dh0, &g64.dh0) && close(&g32.dc0, &g64.dc0));
    let w32 = g32.cells[3].w_hh.mapv(f64::from);
    assert!(max_diff(&w32, &g64.cells[3].w_hh) < 1e-5);
}

#[test]
fn random_params_are_deterministic_and_in_range() {
    let d = dims(3, 4, 2, 2, true);
    let a = LstmParams::<f64>::random(d, 42, 0.3).unwrap();
    assert_eq!(a, LstmParams::random(d, 42, 0.3).unwrap());
    assert_ne!(a, LstmParams::random(d, 43, 0.3).unwrap());
    assert!(a.cells.iter().all(|c| {
        c.w_ih
            .iter()
            .chain(c.w_hr.as_ref().unwrap())
            .all(|v| v.abs() <= 0.3)
    }));
    a.validate().unwrap();
    assert!(matches!(
        LstmParams::<f64>::random(d, 1, f64::NAN),
        Err(Error::Config(_))
    ));
}

fn err_msg<T>(r: wgpu_rnn::Result<T>) -> (String, bool, bool) {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            let (shape, config) = (matches!(e, Error::Shape(_)), matches!(e, Error::Config(_)));
            (e.to_string(), shape, config)
        }
    }
}

#[test]
fn bad_inputs_give_typed_errors() {
    // Dims.
    let (m, _, cfg) = err_msg(LstmParams::<f64>::zeros(dims(3, 4, 4, 1, false)));
    assert!(
        cfg && m.contains("proj_size 4") && m.contains("hidden_size 4"),
        "{m}"
    );
    let (m, _, cfg) = err_msg(LstmParams::<f64>::zeros(dims(3, 4, 0, 0, false)));
    assert!(cfg && m.contains("num_layers"), "{m}");
    let (m, _, cfg) = err_msg(LstmParams::<f64>::zeros(dims(0, 4, 0, 1, false)));
    assert!(cfg && m.contains("input_size"), "{m}");

    // Parameter shapes, named like PyTorch.
    let d = dims(3, 4, 2, 2, true);
    let mut p = LstmParams::<f64>::zeros(d).unwrap();
    p.cells[3].w_hh = ndarray::Array2::zeros((16, 4));
    let (m, shape, _) = err_msg(p.validate());
    assert!(
        shape
            && m.contains("weight_hh_l1_reverse")
            && m.contains("[16, 2]")
            && m.contains("[16, 4]"),
        "{m}"
    );
    let mut p = LstmParams::<f64>::zeros(d).unwrap();
    p.cells[0].w_hr = None;
    assert!(err_msg(p.validate()).0.contains("weight_hr_l0"));

    // Forward inputs.
    let p = LstmParams::<f64>::zeros(d).unwrap();
    let (x, h0, c0) = (
        Array3::zeros((3, 2, 3)),
        Array3::zeros((4, 2, 2)),
        Array3::zeros((4, 2, 4)),
    );
    let fwd = |x: &Array3<f64>, h0: &Array3<f64>, c0: &Array3<f64>, l: Option<&[usize]>| {
        lstm_forward(&p, x.view(), h0.view(), c0.view(), l)
    };
    assert!(fwd(&x, &h0, &c0, Some(&[3, 1])).is_ok());
    let (m, shape, _) = err_msg(fwd(&Array3::zeros((3, 2, 5)), &h0, &c0, None));
    assert!(
        shape && m.contains('5') && m.contains("input_size is 3"),
        "{m}"
    );
    assert!(err_msg(fwd(&Array3::zeros((0, 2, 3)), &h0, &c0, None)).1);
    assert!(err_msg(fwd(&Array3::zeros((3, 0, 3)), &h0, &c0, None)).1);
    let (m, shape, _) = err_msg(fwd(&x, &Array3::zeros((4, 2, 4)), &c0, None));
    assert!(shape && m.contains("h0"), "{m}");
    assert!(
        err_msg(fwd(&x, &h0, &Array3::zeros((2, 2, 4)), None))
            .0
            .contains("c0")
    );
    let (m, _, cfg) = err_msg(fwd(&x, &h0, &c0, Some(&[3, 4])));
    assert!(
        cfg && m.contains("lengths[1] = 4") && m.contains("1..=3"),
        "{m}"
    );
    let (m, _, cfg) = err_msg(fwd(&x, &h0, &c0, Some(&[0, 1])));
    assert!(cfg && m.contains("lengths[0] = 0"), "{m}");
    let (m, _, cfg) = err_msg(fwd(&x, &h0, &c0, Some(&[3])));
    assert!(cfg && m.contains("batch size is 2"), "{m}");

    // Backward inputs.
    let f = fwd(&x, &h0, &c0, None).unwrap();
    let (dyo, dyh, dyc) = (
        Array3::zeros((3, 2, 4)),
        Array3::zeros((4, 2, 2)),
        Array3::zeros((4, 2, 4)),
    );
    assert!(lstm_backward(&p, &f.tape, dyo.view(), dyh.view(), dyc.view()).is_ok());
    let (m, shape, _) = err_msg(lstm_backward(
        &p,
        &f.tape,
        Array3::zeros((3, 2, 2)).view(),
        dyh.view(),
        dyc.view(),
    ));
    assert!(shape && m.contains("dy_out"), "{m}");
    assert!(
        err_msg(lstm_backward(
            &p,
            &f.tape,
            dyo.view(),
            dyc.view(),
            dyc.view()
        ))
        .0
        .contains("dy_h_n")
    );
    let other = LstmParams::<f64>::zeros(dims(3, 4, 0, 2, true)).unwrap();
    assert!(
        err_msg(lstm_backward(
            &other,
            &f.tape,
            dyo.view(),
            dyh.view(),
            dyc.view()
        ))
        .2
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Gradient check over random small configurations, including projection and lengths.
    #[test]
    fn gradcheck_random_configs(
        input in 1usize..4, hidden in 1usize..4, proj_pick in 0usize..3, layers in 1usize..3,
        bidir: bool, batch in 1usize..4, seq in 1usize..4, lens_seed: u64, seed: u64,
    ) {
        let proj = proj_pick % hidden; // 0 or some value below hidden
        let mut r = Rng(lens_seed);
        let lengths = (0..batch).map(|_| 1 + ((r.next() + 1.0) * 0.5 * seq as f64) as usize % seq).collect();
        let pr = Problem::new(dims(input, hidden, proj, layers, bidir), batch, seq, Some(lengths), seed);
        gradcheck(&pr, false);
    }
}
