//! The next-frame model end to end on the GPU: one training step's loss and weight update
//! against a CPU composition of the reference layers, a tiny model learning (loss falls),
//! rollout and checkpoint round trip, and typed errors.

mod common;

use std::sync::Arc;

use ndarray::{Array5, ArrayView5, Ix4, Ix5, s};
use wgpu_rnn::cpu::convlstm::{Activation, Padding};
use wgpu_rnn::data::{self, MovingDigitsConfig};
use wgpu_rnn::models::{ConvLstmLayerSpec, NextFrameConfig, NextFrameModel};
use wgpu_rnn::nn::ConvHeadParams;
use wgpu_rnn::train::{LossKind, OptimizerConfig, cpu_loss};
use wgpu_rnn::{Backend, ConvLstm2d, ConvLstm2dConfig, ConvLstm2dStack, Error, TensorMap};

/// The shared GPU context (fails, never skips, without an adapter).
fn gpu_ctx() -> Arc<wgpu_rnn::Context> {
    match common::gpu() {
        Backend::Gpu(ctx) => ctx,
        Backend::Cpu => unreachable!("common::gpu returns the GPU backend"),
    }
}

fn config(side: usize, layers: &[(usize, usize)], optimizer: OptimizerConfig) -> NextFrameConfig {
    NextFrameConfig {
        rows: side,
        cols: side,
        channels: 1,
        layers: layers
            .iter()
            .map(|&(filters, k)| ConvLstmLayerSpec {
                filters,
                kernel: (k, k),
            })
            .collect(),
        head_kernel: (3, 3),
        head_bias_init: -1.0,
        optimizer,
        seed: 3,
    }
}

/// Bouncing digits at `side`×`side` (generated at 64 and box-downscaled).
fn digits(n: usize, frames: usize, side: usize, seed: u64) -> Array5<f32> {
    let cfg = MovingDigitsConfig {
        frames,
        min_speed: 3.0,
        max_speed: 6.0,
        seed,
        ..MovingDigitsConfig::default()
    };
    let x = data::generate(cfg, n).expect("generator");
    data::downscale(x.view(), 64 / side).expect("downscale")
}

fn split(seq: ArrayView5<f32>) -> (ArrayView5<f32>, ArrayView5<f32>) {
    let t = seq.dim().1;
    (
        seq.slice_move(s![.., ..t - 1, .., .., ..]),
        seq.slice_move(s![.., 1.., .., .., ..]),
    )
}

/// The model's loss and gradients composed from the CPU reference layers (ConvLSTM2D stack on
/// `Backend::Cpu`, the CPU conv head, the CPU BCE-with-logits).
fn cpu_reference(
    w: &TensorMap,
    cfg: &NextFrameConfig,
    x: ArrayView5<f32>,
    y: ArrayView5<f32>,
) -> (f32, TensorMap) {
    let mut layers = Vec::new();
    let mut cin = cfg.channels;
    for (i, l) in cfg.layers.iter().enumerate() {
        let mut c = ConvLstm2dConfig::new(cfg.rows, cfg.cols, cin, l.filters, l.kernel);
        c.padding = Padding::Same;
        c.return_sequences = true;
        let mut t = TensorMap::new();
        for n in ["kernel", "recurrent_kernel", "bias"] {
            t.insert(n.to_string(), w[&format!("conv_lstm2d_{i}.{n}")].clone());
        }
        layers.push(ConvLstm2d::from_keras(c, &t, Backend::Cpu).expect("cpu layer"));
        cin = l.filters;
    }
    let stack = ConvLstm2dStack::new(layers).expect("stack");
    let (out, trace) = stack.forward_train(x).expect("cpu forward");
    let h = out.out.into_dimensionality::<Ix5>().expect("5-d");
    let head = ConvHeadParams::<f32>::from_keras(
        w["head.kernel"]
            .view()
            .into_dimensionality::<Ix4>()
            .expect("4-d"),
        w["head.bias"].view().into_dimensionality().expect("1-d"),
        Activation::Linear,
    )
    .expect("head");
    let logits = head.forward(h.view()).expect("head forward");
    let (loss, dlogits) = cpu_loss(
        LossKind::BinaryCrossEntropy { from_logits: true },
        logits.view().into_dyn(),
        y.into_dyn(),
    )
    .expect("loss");
    let dlogits = dlogits.into_dimensionality::<Ix5>().expect("5-d");
    let hg = head
        .backward(h.view(), logits.view(), dlogits.view())
        .expect("head backward");
    let sg = stack
        .backward(&trace, hg.dx.view().into_dyn())
        .expect("stack backward");
    let mut grads = TensorMap::new();
    for (i, g) in sg.layers.iter().enumerate() {
        for (n, a) in g {
            grads.insert(format!("conv_lstm2d_{i}.{n}"), a.clone());
        }
    }
    grads.insert("head.kernel".into(), hg.kernel.into_dyn());
    grads.insert("head.bias".into(), hg.bias.into_dyn());
    (loss, grads)
}

/// One SGD step with lr = 1 moves every weight by exactly minus its gradient: the GPU step's
/// loss and weight change equal the CPU composition's loss and gradients.
#[test]
fn one_training_step_matches_the_cpu_composition() {
    let ctx = gpu_ctx();
    let cfg = config(8, &[(4, 3), (3, 3)], OptimizerConfig::sgd(1.0, 0.0, false));
    let mut model = NextFrameModel::new(ctx, cfg.clone()).expect("model");
    let seq = digits(2, 5, 8, 11);
    let (x, y) = split(seq.view());
    let w0 = model.weights().expect("weights");
    let (loss_cpu, g_cpu) = cpu_reference(&w0, &cfg, x, y);
    let loss_gpu = model.train_step(x, y).expect("train step");
    assert!(
        (loss_gpu - loss_cpu).abs() <= 1e-5 + 1e-4 * loss_cpu.abs(),
        "loss {loss_gpu} vs {loss_cpu}"
    );
    let w1 = model.weights().expect("weights");
    assert_eq!(
        g_cpu.len(),
        w0.len(),
        "{:?}",
        g_cpu.keys().collect::<Vec<_>>()
    );
    for (name, g) in &g_cpu {
        let step = &w0[name] - &w1[name];
        let scale = g.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(scale > 1e-6, "{name}: the CPU gradient is zero");
        for (a, b) in step.iter().zip(g.iter()) {
            assert!(
                (a - b).abs() <= 2e-5 + 1e-3 * scale,
                "{name}: GPU step {a} vs CPU gradient {b} (max |g| {scale})"
            );
        }
    }
}

/// A tiny model trained with Adam on a fixed batch of bouncing digits: the loss falls by a
/// clear margin and the held-out predictions beat predicting an empty frame.
#[test]
fn a_tiny_model_learns() {
    let ctx = gpu_ctx();
    let mut model =
        NextFrameModel::new(ctx, config(8, &[(6, 3)], OptimizerConfig::adam(1e-2))).expect("model");
    let seq = digits(4, 6, 8, 5);
    let (x, y) = split(seq.view());
    let first = model.train_step(x, y).expect("step");
    let mut last = first;
    for _ in 0..40 {
        last = model.train_step(x, y).expect("step");
    }
    assert!(last < 0.7 * first, "loss {first} -> {last}");
    assert_eq!(model.steps(), 41);
    let pred = model.predict(x).expect("predict");
    assert_eq!(pred.dim(), x.dim());
    assert!(
        pred.iter().all(|p| (0.0..=1.0).contains(p)),
        "sigmoid range"
    );
    let mse: f32 = pred
        .iter()
        .zip(y.iter())
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f32>();
    let blank: f32 = y.iter().map(|b| b * b).sum::<f32>();
    assert!(mse < blank, "model SSE {mse} vs empty-frame SSE {blank}");
}

/// Rollout appends its own predictions: step k of a rollout equals the last frame predicted
/// from the context extended by the previous k steps; a checkpoint round trip restores weights.
#[test]
fn rollout_and_checkpoint_round_trip() {
    let ctx = gpu_ctx();
    let cfg = config(8, &[(4, 3)], OptimizerConfig::adam(1e-2));
    let mut model = NextFrameModel::new(ctx.clone(), cfg.clone()).expect("model");
    let seq = digits(2, 6, 8, 9);
    let (x, y) = split(seq.view());
    model.train_step(x, y).expect("step");
    let context = seq.slice(s![.., ..3, .., .., ..]);
    let roll = model.rollout(context, 2).expect("rollout");
    assert_eq!(roll.dim(), (2, 2, 8, 8, 1));
    let p1 = model.predict(context).expect("predict");
    let first = p1.slice(s![.., 2..3, .., .., ..]);
    assert!(
        first
            .iter()
            .zip(roll.slice(s![.., 0..1, .., .., ..]))
            .all(|(a, b)| (a - b).abs() < 1e-6)
    );
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-next-frame-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join("w.safetensors");
    model.save(&path).expect("save");
    let mut other = NextFrameModel::new(
        ctx.clone(),
        NextFrameConfig {
            seed: 99,
            ..cfg.clone()
        },
    )
    .expect("model");
    assert_ne!(
        other.weights().unwrap()["head.kernel"],
        model.weights().unwrap()["head.kernel"]
    );
    other.load(&path).expect("load");
    assert_eq!(other.weights().unwrap(), model.weights().unwrap());
    // A checkpoint of another architecture is refused by name.
    let mut wide =
        NextFrameModel::new(ctx, config(8, &[(5, 3)], OptimizerConfig::adam(1e-2))).expect("model");
    let e = wide.load(&path).unwrap_err();
    assert!(matches!(e, Error::Shape(_) | Error::Weights(_)), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_shapes_and_configs_are_typed_errors() {
    let ctx = gpu_ctx();
    let e = NextFrameModel::new(ctx.clone(), config(8, &[], OptimizerConfig::adam(1e-3)))
        .err()
        .expect("no layers");
    assert!(e.to_string().contains("at least one"), "{e}");
    let mut model =
        NextFrameModel::new(ctx, config(8, &[(4, 3)], OptimizerConfig::adam(1e-3))).expect("model");
    let x = Array5::<f32>::zeros((1, 3, 6, 8, 1));
    let e = model.train_step(x.view(), x.view()).unwrap_err();
    assert!(e.to_string().contains("[1, 3, 6, 8, 1]"), "{e}");
    let x = Array5::<f32>::zeros((1, 3, 8, 8, 1));
    let y = Array5::<f32>::zeros((1, 2, 8, 8, 1));
    assert!(matches!(
        model.train_step(x.view(), y.view()),
        Err(Error::Shape(_))
    ));
}
