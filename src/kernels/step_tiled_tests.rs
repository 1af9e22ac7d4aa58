//! The tiled Stepwise step (forced on, on any adapter) against the CPU reference: LSTM (with
//! and without projection), GRU reset-after, RNN tanh and relu; forward (training and
//! inference) and backward, `|gpu - cpu| ≤ 1e-5 + 1e-4·|cpu|`. Shapes span two unit tiles
//! and two batch tiles with ragged edges, two layers, both directions and packed lengths.

use std::sync::{Arc, OnceLock};

use ndarray::{Array3, ArrayView, ArrayViewD, Dimension};

use super::*;
use crate::context::Context;
use crate::layers::Backend;
use crate::{Algorithm, Gru, GruConfig, Lstm, LstmConfig, Nonlinearity, SimpleRnn};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

fn gpu() -> Backend {
    static CTX: OnceLock<Arc<Context>> = OnceLock::new();
    let ctx = CTX.get_or_init(|| {
        Arc::new(
            Context::new().expect("GPU tests need an adapter (scripts/test.sh installs lavapipe)"),
        )
    });
    Backend::Gpu(ctx.clone())
}

fn rand3(shape: (usize, usize, usize), seed: u64, scale: f32) -> Array3<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    Array3::from_shape_fn(shape, |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * scale
    })
}

fn close<D: Dimension>(what: &str, got: ArrayViewD<f32>, want: ArrayView<f32, D>) {
    let want = want.into_dyn();
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for ((idx, g), w) in got.indexed_iter().zip(want.iter()) {
        assert!(
            (g - w).abs() <= ATOL + RTOL * w.abs(),
            "{what}: element {:?} is {g}, reference {w}",
            idx.slice()
        );
    }
}

/// B = 35 (two batch tiles, the second with 3 rows), H = 37 (two unit tiles), T = 5.
const T: usize = 5;
const B: usize = 35;
const I: usize = 6;
const H: usize = 37;

fn lengths() -> Vec<usize> {
    (0..B).map(|b| 1 + (b * 7) % T).collect()
}

/// Forward (training and inference) and backward of `gpu` and `cpu` with the tiled step
/// forced on this thread; asserts the tiled kernels ran `tiled_runs` times per layer call.
macro_rules! compare {
    ($gpu:expr, $cpu:expr, $cells:expr, $state:expr, $d:ident => $dstate:expr, $tiled_runs:expr) => {{
        let (gpu, cpu) = (&$gpu, &$cpu);
        let x = rand3((T, B, I), 1, 1.0);
        let lens = lengths();
        force(Some(true));
        let before = used();
        let (og, tg) = gpu
            .forward_train(x.view(), $state, Some(lens.as_slice()))
            .unwrap();
        let inf = gpu
            .forward(x.view(), $state, Some(lens.as_slice()))
            .unwrap();
        let fwd_runs = used() - before;
        let (oc, tc) = cpu
            .forward_train(x.view(), $state, Some(lens.as_slice()))
            .unwrap();
        close("out", og.out.view().into_dyn(), oc.out.view());
        close("h_n", og.h_n.view().into_dyn(), oc.h_n.view());
        close("inference out", inf.out.view().into_dyn(), oc.out.view());
        let dy = rand3(og.out.dim(), 4, 1.0);
        let $d = rand3(og.h_n.dim(), 5, 1.0);
        let before = used();
        let gg = gpu.backward(&tg, dy.view(), $dstate).unwrap();
        let bwd_runs = used() - before;
        force(None);
        let gc = cpu.backward(&tc, dy.view(), $dstate).unwrap();
        close("dx", gg.dx.view().into_dyn(), gc.dx.view());
        close("dh0", gg.dh0.view().into_dyn(), gc.dh0.view());
        for (k, v) in &gc.weights {
            close(k, gg.weights[k].view(), v.view());
        }
        assert_eq!(fwd_runs, 2 * $cells, "tiled forward recordings");
        assert_eq!(bwd_runs, $tiled_runs * $cells, "tiled backward recordings");
        (og, oc, gg, gc)
    }};
}

fn lstm(proj: usize) {
    let mut cfg = LstmConfig::new(I, H);
    cfg.num_layers = 2;
    cfg.bidirectional = true;
    cfg.proj_size = proj;
    let mut gpu_l = Lstm::new(cfg, gpu(), 7).unwrap();
    gpu_l.set_algorithm(Algorithm::Stepwise);
    let cpu_l = Lstm::new(cfg, Backend::Cpu, 7).unwrap();
    let p = if proj > 0 { proj } else { H };
    let h0 = rand3((4, B, p), 2, 0.5);
    let c0 = rand3((4, B, H), 3, 0.5);
    let dyc = rand3((4, B, H), 6, 1.0);
    // The projected LSTM's backward keeps the untiled steps (supported() refuses it).
    let bwd = usize::from(proj == 0);
    let (og, oc, gg, gc) = compare!(
        gpu_l,
        cpu_l,
        4,
        Some((h0.view(), c0.view())),
        dyh => Some((dyh.view(), dyc.view())),
        bwd
    );
    close("c_n", og.c_n.view().into_dyn(), oc.c_n.view());
    close("dc0", gg.dc0.view().into_dyn(), gc.dc0.view());
}

#[test]
fn tiled_lstm_step_matches_cpu() {
    lstm(0);
}

#[test]
fn tiled_lstm_forward_with_projection_matches_cpu() {
    lstm(20);
}

#[test]
fn tiled_gru_reset_after_step_matches_cpu() {
    let mut cfg = GruConfig::new(I, H);
    cfg.num_layers = 2;
    cfg.bidirectional = true;
    let mut gpu_l = Gru::new(cfg, gpu(), 8).unwrap();
    gpu_l.set_algorithm(Algorithm::Stepwise);
    let cpu_l = Gru::new(cfg, Backend::Cpu, 8).unwrap();
    let h0 = rand3((4, B, H), 2, 0.5);
    compare!(
        gpu_l,
        cpu_l,
        4,
        Some(h0.view()),
        dyh => Some(dyh.view()),
        1
    );
}

#[test]
fn tiled_rnn_tanh_and_relu_steps_match_cpu() {
    for nl in [Nonlinearity::Tanh, Nonlinearity::Relu] {
        let mut cfg = crate::SimpleRnnConfig::new(I, H);
        cfg.num_layers = 2;
        cfg.bidirectional = true;
        cfg.nonlinearity = nl;
        let mut gpu_l = SimpleRnn::new(cfg, gpu(), 9).unwrap();
        gpu_l.set_algorithm(Algorithm::Stepwise);
        let cpu_l = SimpleRnn::new(cfg, Backend::Cpu, 9).unwrap();
        let h0 = rand3((4, B, H), 2, 0.5);
        compare!(
            gpu_l,
            cpu_l,
            4,
            Some(h0.view()),
            dyh => Some(dyh.view()),
            1
        );
    }
}

#[test]
fn unsupported_cases_are_typed_errors_and_fall_back() {
    let s = RecShape {
        t: 3,
        b: 64,
        h: 512,
        p: 256,
        proj: true,
        dir: 0,
        acts: super::super::rec::DEFAULT_ACTS,
        rmask: 0,
    };
    let gru_before = TiledCell::Gru { reset_before: true };
    assert!(matches!(
        supported(gru_before, &s, false),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        supported(TiledCell::Lstm, &s, true),
        Err(Error::Unsupported(_))
    ));
    assert!(supported(TiledCell::Lstm, &s, false).is_ok());
    // Recurrent-dropout masks are refused (the untiled step applies them).
    let masked = RecShape { rmask: 4, ..s };
    assert!(matches!(
        supported(TiledCell::Lstm, &masked, false),
        Err(Error::Unsupported(_))
    ));
    // Forced on, an unsupported case records the untiled kernel (None), a supported one the
    // tiled kernel over ceil(H/32)·ceil(B/32) workgroups.
    let Backend::Gpu(ctx) = gpu() else {
        unreachable!()
    };
    let rec = Recorder::new(&ctx);
    force(Some(true));
    let refused = backward(&rec, TiledCell::Lstm, &s).unwrap();
    let taken = forward(&rec, TiledCell::Lstm, &s).unwrap();
    force(Some(false));
    let off = forward(&rec, TiledCell::Lstm, &s).unwrap();
    force(None);
    assert!(refused.is_none());
    assert_eq!(taken.map(|t| t.1), Some(16 * 2));
    assert!(off.is_none());
}

#[test]
fn the_rule_takes_the_tile_for_large_batches_on_gpus_only() {
    let s = |b, h| RecShape {
        t: 3,
        b,
        h,
        p: h,
        proj: false,
        dir: 0,
        acts: super::super::rec::DEFAULT_ACTS,
        rmask: 0,
    };
    for software in [false, true] {
        // By rule: GPUs only, B ≥ 32 and B·H ≥ 16384.
        assert_eq!(rule(None, None, software, &s(256, 512)), !software);
        assert_eq!(rule(None, None, software, &s(64, 256)), !software);
        assert!(
            !rule(None, None, software, &s(16, 4096)),
            "a batch under one tile"
        );
        assert!(!rule(None, None, software, &s(64, 128)), "B·H under 16384");
        // WGPU_RNN_STEP overrides the rule, a per-thread forcing overrides both.
        assert!(rule(None, Some("tiled"), software, &s(1, 1)));
        assert!(!rule(None, Some("b4"), software, &s(256, 512)));
        assert!(!rule(Some(false), Some("tiled"), software, &s(256, 512)));
        assert!(rule(Some(true), Some("b1"), software, &s(1, 1)));
    }
}
