//! GPU kernels against the CPU reference on random small shapes (proptest), every recurrence
//! algorithm, forward and backward, with `|gpu - cpu| ≤ 1e-5 + 1e-4·|cpu|` (DESIGN.md §4).

mod common;

use ndarray::Array3;
use proptest::prelude::*;
use wgpu_rnn::{Algorithm, Backend, Lstm, LstmConfig};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

#[derive(Debug, Clone)]
struct Case {
    cfg: LstmConfig,
    t: usize,
    b: usize,
    lengths: Option<Vec<usize>>,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        1usize..7,
        1usize..14,
        1usize..3,
        any::<bool>(),
        1usize..9,
        1usize..5,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_flat_map(
            |(i, h, layers, bidir, t, b, proj, packed, batch_first, seed)| {
                let p = if proj && h > 1 { 1..h } else { 0..1 };
                let lens = proptest::collection::vec(1..=t, b);
                (p, lens).prop_map(move |(p, lens)| {
                    let mut cfg = LstmConfig::new(i, h);
                    cfg.num_layers = layers;
                    cfg.bidirectional = bidir;
                    cfg.proj_size = p;
                    cfg.batch_first = batch_first;
                    Case {
                        cfg,
                        t,
                        b,
                        lengths: packed.then_some(lens),
                        seed,
                    }
                })
            },
        )
}

fn check(c: &Case, algo: Algorithm) {
    let d = c.cfg.dims();
    let (ld, p, h) = (d.cell_count(), d.out_size(), d.hidden_size);
    let mut gpu = Lstm::new(c.cfg, common::gpu(), c.seed).unwrap();
    gpu.set_algorithm(algo);
    let cpu = Lstm::new(c.cfg, Backend::Cpu, c.seed).unwrap();
    let x_shape = if c.cfg.batch_first {
        (c.b, c.t, d.input_size)
    } else {
        (c.t, c.b, d.input_size)
    };
    let x = common::rand3(x_shape, c.seed ^ 1, 1.0);
    let h0 = common::rand3((ld, c.b, p), c.seed ^ 2, 0.5);
    let c0 = common::rand3((ld, c.b, h), c.seed ^ 3, 0.5);
    let state = Some((h0.view(), c0.view()));
    let lens = c.lengths.as_deref();
    let (og, tg) = gpu.forward_train(x.view(), state, lens).unwrap();
    let (oc, tc) = cpu.forward_train(x.view(), state, lens).unwrap();
    common::assert_close("out", og.out.view().into_dyn(), oc.out.view(), ATOL, RTOL);
    common::assert_close("h_n", og.h_n.view().into_dyn(), oc.h_n.view(), ATOL, RTOL);
    common::assert_close("c_n", og.c_n.view().into_dyn(), oc.c_n.view(), ATOL, RTOL);
    // Inference forward (state ring of 2 slots) must agree with the training forward.
    let inf = gpu.forward(x.view(), state, lens).unwrap();
    common::assert_close(
        "inference out",
        inf.out.view().into_dyn(),
        oc.out.view(),
        ATOL,
        RTOL,
    );
    common::assert_close(
        "inference h_n",
        inf.h_n.view().into_dyn(),
        oc.h_n.view(),
        ATOL,
        RTOL,
    );

    let dy: Array3<f32> = common::rand3(og.out.dim(), c.seed ^ 4, 1.0);
    let dyh = common::rand3(og.h_n.dim(), c.seed ^ 5, 1.0);
    let dyc = common::rand3(og.c_n.dim(), c.seed ^ 6, 1.0);
    let gg = gpu
        .backward(&tg, dy.view(), Some((dyh.view(), dyc.view())))
        .unwrap();
    let gc = cpu
        .backward(&tc, dy.view(), Some((dyh.view(), dyc.view())))
        .unwrap();
    common::assert_close("dx", gg.dx.view().into_dyn(), gc.dx.view(), ATOL, RTOL);
    common::assert_close("dh0", gg.dh0.view().into_dyn(), gc.dh0.view(), ATOL, RTOL);
    common::assert_close("dc0", gg.dc0.view().into_dyn(), gc.dc0.view(), ATOL, RTOL);
    assert_eq!(gg.weights.len(), gc.weights.len());
    for (k, v) in &gc.weights {
        common::assert_close(k, gg.weights[k].view(), v.view(), ATOL, RTOL);
    }
    // A one-submit forward and backward, whatever the depth (DESIGN.md §2).
    assert_eq!(gpu.last_stats().submits, 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn persistent_matches_cpu(c in case()) {
        check(&c, Algorithm::Persistent);
    }

    #[test]
    fn stepwise_matches_cpu(c in case()) {
        check(&c, Algorithm::Stepwise);
    }

    #[test]
    fn resident_matches_cpu(c in case()) {
        check(&c, Algorithm::Resident);
    }
}

#[test]
fn wide_batch_spans_several_workgroups() {
    // B·H beyond one 64-wide step workgroup and B beyond one persistent tile.
    let mut cfg = LstmConfig::new(5, 40);
    cfg.bidirectional = true;
    let c = Case {
        cfg,
        t: 5,
        b: 33,
        lengths: None,
        seed: 11,
    };
    check(&c, Algorithm::Persistent);
    check(&c, Algorithm::Stepwise);
    check(&c, Algorithm::Resident);
}

#[test]
fn unfused_baseline_matches_cpu() {
    // The benchmark's unfused path must compute the same LSTM, or its timing means nothing.
    let cfg = LstmConfig::new(5, 9);
    let gpu = Lstm::new(cfg, common::gpu(), 4).unwrap();
    let cpu = Lstm::new(cfg, Backend::Cpu, 4).unwrap();
    let x = common::rand3((6, 3, 5), 12, 1.0);
    let got = gpu.forward_unfused_baseline(x.view()).unwrap();
    let want = cpu.forward(x.view(), None, None).unwrap();
    common::assert_close(
        "unfused out",
        got.view().into_dyn(),
        want.out.view(),
        ATOL,
        RTOL,
    );
    // One GEMM for the input projection, then per step 1 GEMM + 12 element-wise ops.
    assert_eq!(gpu.last_stats().dispatches, 1 + 6 * 13);
    assert_eq!(gpu.last_stats().submits, 1);
    let mut two = cfg;
    two.num_layers = 2;
    let e = Lstm::new(two, common::gpu(), 4)
        .unwrap()
        .forward_unfused_baseline(x.view())
        .unwrap_err();
    assert!(e.to_string().contains("unsupported"), "{e}");
}

#[test]
fn unfused_baseline_backward_matches_cpu() {
    // The unfused BPTT (per step one dispatch per element-wise op and one GEMM) must compute
    // the same gradients as the reference for L = ½·Σ out².
    let cfg = LstmConfig::new(5, 7);
    let gpu = Lstm::new(cfg, common::gpu(), 9).unwrap();
    let cpu = Lstm::new(cfg, Backend::Cpu, 9).unwrap();
    let x = common::rand3((5, 3, 5), 21, 1.0);
    let (out, dx, grads) = gpu.forward_backward_unfused_baseline(x.view()).unwrap();
    let (y, trace) = cpu.forward_train(x.view(), None, None).unwrap();
    let want = cpu.backward(&trace, y.out.view(), None).unwrap();
    common::assert_close(
        "unfused out",
        out.view().into_dyn(),
        y.out.view(),
        ATOL,
        RTOL,
    );
    common::assert_close(
        "unfused dx",
        dx.view().into_dyn(),
        want.dx.view(),
        ATOL,
        RTOL,
    );
    for name in ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"] {
        let g = &grads[name];
        assert!(g.iter().any(|v| v.abs() > 1e-3), "{name} is all but zero");
        common::assert_close(name, g.view(), want.weights[name].view(), ATOL, RTOL);
    }
    // Forward (13 per step + 5 saves) and backward (14 per step) in one submit.
    let st = gpu.last_stats();
    assert_eq!(st.submits, 1);
    assert_eq!(st.dispatches, 1 + 5 * (13 + 5) + 5 * 14 + 4);
}

/// The Stepwise forward has two kernels: 4 batch rows per invocation (CPU adapters, so what
/// the other tests here run on lavapipe) and one (b, j) per invocation (GPUs). This binary
/// re-runs itself with `WGPU_RNN_STEP=b1` so the GPU variant is checked on any adapter.
#[test]
fn every_case_also_passes_with_the_unblocked_step_kernel() {
    if std::env::var_os("WGPU_RNN_STEP").is_some() {
        return; // the child run
    }
    let exe = std::env::current_exe().expect("test binary path");
    let out = std::process::Command::new(exe)
        .env("WGPU_RNN_STEP", "b1")
        .output()
        .expect("re-run the test binary");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "WGPU_RNN_STEP=b1 run failed:\n{text}");
    assert!(text.contains("test result: ok"), "{text}");
}
