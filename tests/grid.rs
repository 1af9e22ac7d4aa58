//! Algorithm::Grid against the CPU reference, forward and backward, in every mode CI can
//! reach on lavapipe (whose workgroups are never co-resident, DESIGN.md §2): one slice
//! (G = 1, the barrier passes alone), several slices (the first barrier times out and the
//! fallback finishes the run), one step per dispatch (the same step body with dispatch
//! boundaries instead of the barrier), and a barrier forced to fail after a chosen step.
//! Every mode must give the same numbers, bit for bit, and a run must end in bounded time.

mod common;

use std::sync::Mutex;

use ndarray::Array3;
use proptest::prelude::*;
use wgpu_rnn::algorithm::{GridHook, set_grid_test_hook};
use wgpu_rnn::{
    Algorithm, Backend, Error, Gru, GruConfig, Lstm, LstmConfig, Nonlinearity, SimpleRnn,
    SimpleRnnConfig,
};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

/// The hook is process-wide: tests that set it run one at a time.
static HOOK: Mutex<()> = Mutex::new(());

#[derive(Debug, Clone)]
struct Case {
    cell: usize,
    /// LSTM: proj_size (0 none); GRU: reset-before; RNN: relu.
    variant: usize,
    i: usize,
    h: usize,
    layers: usize,
    bidir: bool,
    t: usize,
    b: usize,
    lengths: Option<Vec<usize>>,
    seed: u64,
}

/// Everything a run produces: outputs, then every gradient (sorted by name).
fn run(c: &Case, backend: Backend, algo: Algorithm) -> Vec<(String, Vec<f32>)> {
    let x = common::rand3((c.t, c.b, c.i), c.seed ^ 1, 1.0);
    let d = if c.bidir { 2 } else { 1 };
    let h0 = common::rand3((c.layers * d, c.b, c.h), c.seed ^ 2, 0.5);
    let lens = c.lengths.as_deref();
    let v = |n: &str, a: &Array3<f32>| (n.to_string(), a.iter().copied().collect::<Vec<_>>());
    let mut out = Vec::new();
    let mut push_w = |w: &wgpu_rnn::TensorMap| {
        for (k, a) in w {
            out.push((k.clone(), a.iter().copied().collect()));
        }
    };
    let mut res = Vec::new();
    match c.cell {
        0 => {
            let mut cfg = LstmConfig::new(c.i, c.h);
            cfg.num_layers = c.layers;
            cfg.bidirectional = c.bidir;
            cfg.proj_size = c.variant;
            let mut l = Lstm::new(cfg, backend, c.seed).unwrap();
            l.set_algorithm(algo);
            let p = if c.variant > 0 { c.variant } else { c.h };
            let h0 = common::rand3((c.layers * d, c.b, p), c.seed ^ 2, 0.5);
            let c0 = common::rand3((c.layers * d, c.b, c.h), c.seed ^ 3, 0.5);
            let (o, tr) = l
                .forward_train(x.view(), Some((h0.view(), c0.view())), lens)
                .unwrap();
            let dy = common::rand3(o.out.dim(), c.seed ^ 4, 1.0);
            let g = l.backward(&tr, dy.view(), None).unwrap();
            res.extend([v("out", &o.out), v("h_n", &o.h_n), v("c_n", &o.c_n)]);
            res.extend([v("dx", &g.dx), v("dh0", &g.dh0), v("dc0", &g.dc0)]);
            push_w(&g.weights);
        }
        1 => {
            let mut cfg = GruConfig::new(c.i, c.h);
            cfg.num_layers = c.layers;
            cfg.bidirectional = c.bidir;
            cfg.reset_after = c.variant == 0;
            let mut l = Gru::new(cfg, backend, c.seed).unwrap();
            l.set_algorithm(algo);
            let (o, tr) = l.forward_train(x.view(), Some(h0.view()), lens).unwrap();
            let dy = common::rand3(o.out.dim(), c.seed ^ 4, 1.0);
            let g = l.backward(&tr, dy.view(), None).unwrap();
            res.extend([
                v("out", &o.out),
                v("h_n", &o.h_n),
                v("dx", &g.dx),
                v("dh0", &g.dh0),
            ]);
            push_w(&g.weights);
        }
        _ => {
            let mut cfg = SimpleRnnConfig::new(c.i, c.h);
            cfg.num_layers = c.layers;
            cfg.bidirectional = c.bidir;
            cfg.nonlinearity = if c.variant == 0 {
                Nonlinearity::Tanh
            } else {
                Nonlinearity::Relu
            };
            let mut l = SimpleRnn::new(cfg, backend, c.seed).unwrap();
            l.set_algorithm(algo);
            let (o, tr) = l.forward_train(x.view(), Some(h0.view()), lens).unwrap();
            let dy = common::rand3(o.out.dim(), c.seed ^ 4, 1.0);
            let g = l.backward(&tr, dy.view(), None).unwrap();
            res.extend([
                v("out", &o.out),
                v("h_n", &o.h_n),
                v("dx", &g.dx),
                v("dh0", &g.dh0),
            ]);
            push_w(&g.weights);
        }
    }
    res.extend(out);
    res
}

fn close(what: &str, got: &[(String, Vec<f32>)], want: &[(String, Vec<f32>)]) {
    assert_eq!(got.len(), want.len(), "{what}");
    for ((n, g), (m, w)) in got.iter().zip(want) {
        assert_eq!(n, m);
        assert_eq!(g.len(), w.len(), "{what} {n}");
        for (k, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(
                (a - b).abs() <= ATOL + RTOL * b.abs(),
                "{what} {n}[{k}]: {a} vs reference {b}"
            );
        }
    }
}

/// Grid with `hook` against the CPU reference; returns the GPU results.
fn check(c: &Case, hook: GridHook) -> Vec<(String, Vec<f32>)> {
    set_grid_test_hook(hook);
    let got = run(c, common::gpu(), Algorithm::Grid);
    set_grid_test_hook(GridHook::default());
    close(
        &format!("{hook:?}"),
        &got,
        &run(c, Backend::Cpu, Algorithm::Auto),
    );
    got
}

fn case() -> impl Strategy<Value = Case> {
    (
        (0usize..3, any::<bool>()),
        1usize..6,
        2usize..12,
        1usize..3,
        any::<bool>(),
        2usize..7,
        1usize..4,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_flat_map(|((cell, alt), i, h, layers, bidir, t, b, packed, seed)| {
            // LSTM: a projection size below H; GRU: reset-before; RNN: relu.
            let variant = if !alt {
                0..1
            } else if cell == 0 {
                1..h
            } else {
                1..2
            };
            (variant, proptest::collection::vec(1..=t, b)).prop_map(move |(variant, lens)| Case {
                cell,
                variant,
                i,
                h,
                layers,
                bidir,
                t,
                b,
                lengths: packed.then_some(lens),
                seed,
            })
        })
}

proptest! {
    // relu' jumps at 0 (a pre-activation within rounding of 0 may differ from the CPU's
    // side): a fixed seed keeps CI deterministic, as in gpu_vs_cpu_gru_rnn.rs.
    #![proptest_config(ProptestConfig {
        cases: 12,
        rng_seed: proptest::test_runner::RngSeed::Fixed(20261127),
        ..ProptestConfig::default()
    })]

    /// Several slices: on lavapipe the grid barrier fails and the fallback runs. Same slices
    /// one step per dispatch, and with the barrier forced to fail after a chosen step: every
    /// mode equals the CPU reference and the others bit for bit.
    #[test]
    fn grid_modes_match_cpu_and_each_other(c in case(), fail in 0usize..8) {
        let _g = HOOK.lock().unwrap_or_else(|e| e.into_inner());
        let units = Some(c.h.div_ceil(3));
        let grid = check(&c, GridHook { units_per_slice: units, ..GridHook::default() });
        let step = check(&c, GridHook { units_per_slice: units, step_mode: true, ..GridHook::default() });
        let forced = check(&c, GridHook {
            units_per_slice: units,
            fail_at_barrier: Some(fail % c.t),
            ..GridHook::default()
        });
        prop_assert_eq!(&grid, &step);
        prop_assert_eq!(&grid, &forced);
    }

    /// One slice holding every unit: a grid of one workgroup per batch tile, whose barrier
    /// completes alone. With a barrier forced to fail after a chosen step, the grid runs
    /// the steps before it and the fallback the rest: the same numbers, bit for bit. Also
    /// with the barrier failing in one direction only (bidirectional layers run both in one
    /// dispatch: one direction's grid finishes while the other resumes in the fallback).
    #[test]
    fn one_slice_grid_and_its_forced_fallback_match_cpu(
        c in case(),
        fail in 0usize..8,
        dir in 0usize..2,
    ) {
        let _g = HOOK.lock().unwrap_or_else(|e| e.into_inner());
        let one = Some(c.h);
        let plain = check(&c, GridHook { units_per_slice: one, ..GridHook::default() });
        let forced = check(&c, GridHook {
            units_per_slice: one,
            fail_at_barrier: Some(fail % c.t),
            ..GridHook::default()
        });
        let one_dir = check(&c, GridHook {
            units_per_slice: one,
            fail_at_barrier: Some(fail % c.t),
            fail_direction: Some(dir),
            ..GridHook::default()
        });
        prop_assert_eq!(&plain, &forced);
        prop_assert_eq!(&plain, &one_dir);
    }
}

/// A 3000-step run with 4 slices: the barrier times out once (bounded spin), the fallback
/// finishes every chunk, and the whole call returns; a watchdog thread turns a hang into a
/// failure instead of a stuck CI job.
#[test]
fn long_grid_run_ends_and_matches_cpu() {
    let _g = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    let c = Case {
        cell: 0,
        variant: 0,
        i: 3,
        h: 16,
        layers: 1,
        bidir: false,
        t: 3000,
        b: 2,
        lengths: None,
        seed: 5,
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let c2 = c.clone();
    std::thread::spawn(move || {
        set_grid_test_hook(GridHook {
            units_per_slice: Some(4),
            ..GridHook::default()
        });
        let got = run(&c2, common::gpu(), Algorithm::Grid);
        set_grid_test_hook(GridHook::default());
        let _ = tx.send(got);
    });
    let got = rx
        .recv_timeout(std::time::Duration::from_secs(600))
        .expect("a Grid run must end (bounded spin + fallback), not hang");
    let want = run(&c, Backend::Cpu, Algorithm::Auto);
    // Weight gradients sum 6000 rows: the f32 error of that many terms.
    for ((n, g), (_, w)) in got.iter().zip(&want) {
        for (a, b) in g.iter().zip(w) {
            assert!((a - b).abs() <= 1e-4 + 1e-4 * b.abs(), "{n}: {a} vs {b}");
        }
    }
}

#[test]
fn more_workgroups_than_planned_co_resident_is_a_limit_error() {
    let _g = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    // 70 slices of one unit each: over the 64 workgroups a grid may use.
    set_grid_test_hook(GridHook {
        units_per_slice: Some(1),
        ..GridHook::default()
    });
    let mut l = SimpleRnn::new(SimpleRnnConfig::new(2, 70), common::gpu(), 1).unwrap();
    l.set_algorithm(Algorithm::Grid);
    let x = common::rand3((2, 1, 2), 1, 1.0);
    let e = l.forward(x.view(), None, None).unwrap_err();
    set_grid_test_hook(GridHook::default());
    assert!(matches!(e, Error::Limit(_)), "{e}");
    assert!(e.to_string().contains("70 slices"), "{e}");
}

/// Hidden sizes past Resident's reach, planned as on any device (16 slices for LSTM H=256):
/// on lavapipe the grid fails at its first barrier and the fallback runs every slice.
#[test]
fn wide_hidden_sizes_match_cpu() {
    let _g = HOOK.lock().unwrap_or_else(|e| e.into_inner());
    set_grid_test_hook(GridHook::default());
    for (cell, h, t) in [(0, 256, 6), (1, 320, 5), (2, 512, 8)] {
        let c = Case {
            cell,
            variant: 0,
            i: 4,
            h,
            layers: 1,
            bidir: false,
            t,
            b: 2,
            lengths: Some(vec![t, t - 2]),
            seed: 9,
        };
        let got = run(&c, common::gpu(), Algorithm::Grid);
        // Sums over up to 4H terms: a little more room than the small-shape rule.
        let want = run(&c, Backend::Cpu, Algorithm::Auto);
        for ((n, g), (_, w)) in got.iter().zip(&want) {
            for (a, b) in g.iter().zip(w) {
                assert!(
                    (a - b).abs() <= 3e-5 + 1e-4 * b.abs(),
                    "H{h} {n}: {a} vs {b}"
                );
            }
        }
    }
}

/// Grid's exchanged state is `@coherent` storage: on a caller's device opened without
/// MEMORY_DECORATION_COHERENT, forcing Grid is a typed error naming the feature, and Auto
/// picks another algorithm whose output matches the CPU.
#[test]
fn without_coherent_storage_grid_is_refused_and_auto_avoids_it() {
    let ctx = common::own_device(|_| {});
    assert!(
        !ctx.device()
            .features()
            .contains(wgpu::Features::MEMORY_DECORATION_COHERENT)
    );
    let x = common::rand3((4, 2, 3), 5, 1.0);
    let mut l = Lstm::new(LstmConfig::new(3, 8), Backend::Gpu(ctx), 2).unwrap();
    l.set_algorithm(Algorithm::Grid);
    let e = l.forward(x.view(), None, None).unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    assert!(e.to_string().contains("MEMORY_DECORATION_COHERENT"), "{e}");
    l.set_algorithm(Algorithm::Auto);
    let got = l.forward(x.view(), None, None).unwrap();
    let cpu = Lstm::new(LstmConfig::new(3, 8), Backend::Cpu, 2).unwrap();
    let want = cpu.forward(x.view(), None, None).unwrap();
    common::assert_close(
        "out",
        got.out.view().into_dyn(),
        want.out.view(),
        ATOL,
        RTOL,
    );
}
