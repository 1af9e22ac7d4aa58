//! GRU (reset-after and reset-before) and SimpleRNN (tanh and relu) GPU kernels against the
//! CPU reference on random small shapes (proptest), every recurrence algorithm, forward and
//! backward, `|gpu - cpu| ≤ 1e-5 + 1e-4·|cpu|` (DESIGN.md §4); plus a long sequence each.

mod common;

use proptest::prelude::*;
use wgpu_rnn::{Algorithm, Backend, Gru, GruConfig, Nonlinearity, SimpleRnn, SimpleRnnConfig};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

#[derive(Debug, Clone)]
struct Case {
    i: usize,
    h: usize,
    layers: usize,
    bidir: bool,
    batch_first: bool,
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
        any::<bool>(),
        1usize..9,
        1usize..5,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_flat_map(|(i, h, layers, bidir, batch_first, t, b, packed, seed)| {
            proptest::collection::vec(1..=t, b).prop_map(move |lens| Case {
                i,
                h,
                layers,
                bidir,
                batch_first,
                t,
                b,
                lengths: packed.then_some(lens),
                seed,
            })
        })
}

/// Runs forward (training and inference) and backward on both layers and compares.
macro_rules! compare_layers {
    ($gpu:expr, $cpu:expr, $c:expr, $tol:expr) => {{
        let (gpu, cpu, c) = (&$gpu, &$cpu, $c);
        let (atol, rtol) = $tol;
        let x_shape = if c.batch_first {
            (c.b, c.t, c.i)
        } else {
            (c.t, c.b, c.i)
        };
        let x = common::rand3(x_shape, c.seed ^ 1, 1.0);
        let d = if c.bidir { 2 } else { 1 };
        let h0 = common::rand3((c.layers * d, c.b, c.h), c.seed ^ 2, 0.5);
        let lens = c.lengths.as_deref();
        let (og, tg) = gpu.forward_train(x.view(), Some(h0.view()), lens).unwrap();
        let (oc, tc) = cpu.forward_train(x.view(), Some(h0.view()), lens).unwrap();
        common::assert_close("out", og.out.view().into_dyn(), oc.out.view(), atol, rtol);
        common::assert_close("h_n", og.h_n.view().into_dyn(), oc.h_n.view(), atol, rtol);
        let inf = gpu.forward(x.view(), Some(h0.view()), lens).unwrap();
        common::assert_close(
            "inference out",
            inf.out.view().into_dyn(),
            oc.out.view(),
            atol,
            rtol,
        );
        let dy = common::rand3(og.out.dim(), c.seed ^ 4, 1.0);
        let dyh = common::rand3(og.h_n.dim(), c.seed ^ 5, 1.0);
        let gg = gpu.backward(&tg, dy.view(), Some(dyh.view())).unwrap();
        let gc = cpu.backward(&tc, dy.view(), Some(dyh.view())).unwrap();
        common::assert_close("dx", gg.dx.view().into_dyn(), gc.dx.view(), atol, rtol);
        common::assert_close("dh0", gg.dh0.view().into_dyn(), gc.dh0.view(), atol, rtol);
        assert_eq!(gg.weights.len(), gc.weights.len());
        for (k, v) in &gc.weights {
            common::assert_close(k, gg.weights[k].view(), v.view(), atol, rtol);
        }
        assert_eq!(gpu.last_stats().submits, 1);
    }};
}

fn gru_config(c: &Case, reset_after: bool) -> GruConfig {
    let mut cfg = GruConfig::new(c.i, c.h);
    cfg.num_layers = c.layers;
    cfg.bidirectional = c.bidir;
    cfg.batch_first = c.batch_first;
    cfg.reset_after = reset_after;
    cfg
}

fn check_gru(c: &Case, reset_after: bool, algo: Algorithm) {
    let cfg = gru_config(c, reset_after);
    let mut gpu = Gru::new(cfg, common::gpu(), c.seed).unwrap();
    gpu.set_algorithm(algo);
    let cpu = Gru::new(cfg, Backend::Cpu, c.seed).unwrap();
    compare_layers!(gpu, cpu, c, (ATOL, RTOL));
}

fn check_rnn(c: &Case, nonlinearity: Nonlinearity, algo: Algorithm) {
    let mut cfg = SimpleRnnConfig::new(c.i, c.h);
    cfg.num_layers = c.layers;
    cfg.bidirectional = c.bidir;
    cfg.batch_first = c.batch_first;
    cfg.nonlinearity = nonlinearity;
    let mut gpu = SimpleRnn::new(cfg, common::gpu(), c.seed).unwrap();
    gpu.set_algorithm(algo);
    let cpu = SimpleRnn::new(cfg, Backend::Cpu, c.seed).unwrap();
    compare_layers!(gpu, cpu, c, (ATOL, RTOL));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn gru_reset_after_matches_cpu(c in case(), persistent in any::<bool>()) {
        check_gru(&c, true, if persistent { Algorithm::Persistent } else { Algorithm::Stepwise });
    }

    #[test]
    fn gru_reset_before_matches_cpu(c in case(), persistent in any::<bool>()) {
        check_gru(&c, false, if persistent { Algorithm::Persistent } else { Algorithm::Stepwise });
    }

    #[test]
    fn rnn_tanh_matches_cpu(c in case(), persistent in any::<bool>()) {
        check_rnn(&c, Nonlinearity::Tanh, if persistent { Algorithm::Persistent } else { Algorithm::Stepwise });
    }

    #[test]
    fn resident_gru_and_rnn_tanh_match_cpu(c in case()) {
        check_gru(&c, true, Algorithm::Resident);
        check_gru(&c, false, Algorithm::Resident);
        check_rnn(&c, Nonlinearity::Tanh, Algorithm::Resident);
    }
}

proptest! {
    // relu' jumps at 0: a pre-activation within f32 rounding of 0 may take different sides
    // on GPU and CPU. A fixed seed keeps CI deterministic (this seed's cases avoid that).
    #![proptest_config(ProptestConfig {
        cases: 12,
        rng_seed: proptest::test_runner::RngSeed::Fixed(20261122),
        ..ProptestConfig::default()
    })]

    #[test]
    fn rnn_relu_matches_cpu(c in case(), persistent in any::<bool>()) {
        check_rnn(&c, Nonlinearity::Relu, if persistent { Algorithm::Persistent } else { Algorithm::Stepwise });
    }

    #[test]
    fn resident_rnn_relu_matches_cpu(c in case()) {
        check_rnn(&c, Nonlinearity::Relu, Algorithm::Resident);
    }
}

#[test]
fn every_variant_runs_both_algorithms_on_a_wide_batch() {
    // Deterministic coverage of all 8 (cell, algorithm) pairs, beyond one workgroup.
    let c = Case {
        i: 5,
        h: 40,
        layers: 2,
        bidir: true,
        batch_first: false,
        t: 5,
        b: 9,
        lengths: Some(vec![5, 1, 3, 5, 2, 4, 5, 5, 1]),
        seed: 3,
    };
    for algo in [
        Algorithm::Persistent,
        Algorithm::Stepwise,
        Algorithm::Resident,
    ] {
        check_gru(&c, true, algo);
        check_gru(&c, false, algo);
        check_rnn(&c, Nonlinearity::Tanh, algo);
        check_rnn(&c, Nonlinearity::Relu, algo);
    }
}

/// 3000 steps at H = 32: a single dispatch would exceed llvmpipe's per-invocation loop cap,
/// so this guards the chunking of every GRU/RNN kernel (DESIGN.md §5).
#[test]
fn long_sequences_match_cpu() {
    let c = Case {
        i: 3,
        h: 32,
        layers: 1,
        bidir: false,
        batch_first: false,
        t: 3000,
        b: 2,
        lengths: None,
        seed: 8,
    };
    for algo in [
        Algorithm::Persistent,
        Algorithm::Stepwise,
        Algorithm::Resident,
    ] {
        let cfg = gru_config(&c, true);
        let mut gpu = Gru::new(cfg, common::gpu(), c.seed).unwrap();
        gpu.set_algorithm(algo);
        let cpu = Gru::new(cfg, Backend::Cpu, c.seed).unwrap();
        // Weight gradients sum 6000 rows: allow the f32 error of that many terms.
        compare_layers!(gpu, cpu, &c, (1e-4, 1e-4));
        let cfg = gru_config(&c, false);
        let mut gpu = Gru::new(cfg, common::gpu(), c.seed).unwrap();
        gpu.set_algorithm(algo);
        let cpu = Gru::new(cfg, Backend::Cpu, c.seed).unwrap();
        compare_layers!(gpu, cpu, &c, (1e-4, 1e-4));
        let rcfg = SimpleRnnConfig::new(c.i, c.h);
        let mut gpu = SimpleRnn::new(rcfg, common::gpu(), c.seed).unwrap();
        gpu.set_algorithm(algo);
        let cpu = SimpleRnn::new(rcfg, Backend::Cpu, c.seed).unwrap();
        compare_layers!(gpu, cpu, &c, (1e-4, 1e-4));
    }
}

/// Keras go_backwards: the layer consumes x[:, T-1] first and returns outputs in processing
/// order, i.e. it equals a forward run on the time-flipped input (and dx flips back).
#[test]
fn go_backwards_equals_a_forward_run_on_flipped_input() {
    use ndarray::s;
    let (b, t, i, h) = (3, 5, 4, 6);
    let x = common::rand3((b, t, i), 77, 1.0);
    let flipped = x.slice(s![.., ..;-1, ..]).to_owned();
    for backend in [common::gpu(), Backend::Cpu] {
        let mut cfg = GruConfig::new(i, h);
        cfg.batch_first = true;
        let plain = Gru::new(cfg, backend.clone(), 5).unwrap();
        cfg.go_backwards = true;
        let back = Gru::new(cfg, backend.clone(), 5).unwrap();
        let (yb, tb) = back.forward_train(x.view(), None, None).unwrap();
        let (yp, tp) = plain.forward_train(flipped.view(), None, None).unwrap();
        common::assert_close(
            "go_backwards out",
            yb.out.view().into_dyn(),
            yp.out.view(),
            ATOL,
            RTOL,
        );
        let dy = common::rand3(yb.out.dim(), 78, 1.0);
        let gb = back.backward(&tb, dy.view(), None).unwrap();
        let gp = plain.backward(&tp, dy.view(), None).unwrap();
        let dx_back = gp.dx.slice(s![.., ..;-1, ..]).to_owned();
        common::assert_close(
            "go_backwards dx",
            gb.dx.view().into_dyn(),
            dx_back.view(),
            ATOL,
            RTOL,
        );

        let mut rcfg = SimpleRnnConfig::new(i, h);
        rcfg.batch_first = true;
        rcfg.go_backwards = true;
        let r = SimpleRnn::new(rcfg, backend.clone(), 6).unwrap();
        rcfg.go_backwards = false;
        let rp = SimpleRnn::new(rcfg, backend, 6).unwrap();
        let yr = r.forward(x.view(), None, None).unwrap();
        let yrp = rp.forward(flipped.view(), None, None).unwrap();
        common::assert_close(
            "rnn go_backwards out",
            yr.out.view().into_dyn(),
            yrp.out.view(),
            ATOL,
            RTOL,
        );
    }
}
