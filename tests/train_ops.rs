//! Training pieces on the GPU against the CPU reference and against hand-computed values:
//! every loss (value and gradient), its gradient against f64 finite differences, BCE at
//! extreme logits, one step of every optimizer, several steps GPU vs CPU, global-norm
//! clipping on both sides of the threshold, a whole step in one submit, and checkpoints.

#[path = "support/train.rs"]
mod support;

use ndarray::IxDyn;
use support::*;
use wgpu_rnn::Error;
use wgpu_rnn::train::checkpoint::{self, NamedBuffer};
use wgpu_rnn::train::*;

const ELEMENTWISE: [LossKind; 4] = [
    LossKind::Mse,
    LossKind::Mae,
    LossKind::BinaryCrossEntropy { from_logits: true },
    LossKind::BinaryCrossEntropy { from_logits: false },
];

/// Predictions and targets in the domain of `kind` (probabilities for BCE on probabilities,
/// probability rows for softmax), with |pred - target| ≥ 0.1 for MSE/MAE so no gradient
/// sits at a kink or at zero.
fn data(kind: LossKind, shape: &[usize], seed: u64) -> (Vec<f64>, Vec<f64>) {
    let n: usize = shape.iter().product();
    let mut r = Rng(seed);
    match kind {
        LossKind::Mse | LossKind::Mae => {
            let p = r.vec(n, -2.0, 2.0);
            let t = p
                .iter()
                .map(|&x| {
                    let off = r.vec(1, 0.1, 1.0)[0];
                    if r.next() < 0.0 { x - off } else { x + off }
                })
                .collect();
            (p, t)
        }
        LossKind::BinaryCrossEntropy { from_logits } => {
            let p = if from_logits {
                r.vec(n, -4.0, 4.0)
            } else {
                r.vec(n, 0.05, 0.95)
            };
            (p, r.vec(n, 0.0, 1.0))
        }
        LossKind::SoftmaxCrossEntropy => {
            let cols = *shape.last().unwrap();
            let p = r.vec(n, -3.0, 3.0);
            let mut t = r.vec(n, 0.05, 1.0);
            for row in t.chunks_mut(cols) {
                let s: f64 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= s);
            }
            (p, t)
        }
    }
}

fn cpu_f32(kind: LossKind, shape: &[usize], p: &[f32], t: &[f32]) -> (f32, Vec<f32>) {
    let (l, g) = cpu_loss(kind, arr(shape, p).view(), arr(shape, t).view()).unwrap();
    (l, g.iter().copied().collect())
}

#[test]
fn every_loss_on_gpu_matches_the_cpu_reference() {
    // 1000 and 2500 are not multiples of the 256-invocation workgroup; 2500 and 4099 need
    // several 1024-element workgroups; [300, 5] needs 300 softmax workgroups, [3, 300]
    // rows longer than a workgroup.
    let elementwise: [&[usize]; 6] = [&[1], &[7], &[3, 5], &[1000], &[2500], &[4099]];
    let softmax: [&[usize]; 5] = [&[1, 3], &[4, 10], &[3, 300], &[300, 5], &[2, 3, 7]];
    let cases = ELEMENTWISE
        .iter()
        .flat_map(|k| elementwise.iter().map(move |s| (*k, *s)))
        .chain(softmax.iter().map(|s| (LossKind::SoftmaxCrossEntropy, *s)));
    for (i, (kind, shape)) in cases.enumerate() {
        let (p, t) = data(kind, shape, 100 + i as u64);
        let (p, t) = (f32s(&p), f32s(&t));
        let (gl, gg) = gpu_loss(kind, shape, &p, &t);
        let (cl, cg) = cpu_f32(kind, shape, &p, &t);
        let what = format!("{kind:?} {shape:?}");
        assert!(cl.is_finite() && cl > 0.0, "{what}: reference loss {cl}");
        assert_close(&format!("{what} loss"), &[gl], &[cl], 1e-5, 1e-4);
        // Gradients carry 1/N: the absolute tolerance scales with the tensor.
        let atol = 1e-5 * max_abs(&cg, 0.0);
        assert_close(&format!("{what} grad"), &gg, &cg, atol, 1e-4);
        // The reduction is deterministic: a rerun gives the same bits.
        if shape == [2500] || shape == [300, 5] {
            assert_eq!(
                gpu_loss(kind, shape, &p, &t).0.to_bits(),
                gl.to_bits(),
                "{what}"
            );
        }
    }
}

#[test]
fn every_loss_gradient_matches_f64_finite_differences() {
    const EPS: f64 = 1e-6;
    let cases = ELEMENTWISE
        .iter()
        .map(|k| (*k, vec![3, 4]))
        .chain([(LossKind::SoftmaxCrossEntropy, vec![3, 5])]);
    for (kind, shape) in cases {
        let (p, t) = data(kind, &shape, 7);
        let loss = |p: &[f64]| {
            cpu_loss(kind, arr(&shape, p).view(), arr(&shape, &t).view())
                .unwrap()
                .0
        };
        let (_, analytic) = cpu_loss(kind, arr(&shape, &p).view(), arr(&shape, &t).view()).unwrap();
        for (k, a) in analytic.iter().enumerate() {
            let (mut up, mut down) = (p.clone(), p.clone());
            up[k] += EPS;
            down[k] -= EPS;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * EPS);
            // Lower bound: the data keeps every true gradient clearly away from zero, so an
            // analytic gradient that is zero (or tiny) fails the relative check below.
            assert!(
                numeric.abs() > 1e-4,
                "{kind:?} [{k}]: numeric {numeric} too small"
            );
            assert!(
                (a - numeric).abs() <= 1e-6 * numeric.abs(),
                "{kind:?} [{k}]: analytic {a}, numeric {numeric}"
            );
        }
    }
}

#[test]
fn bce_is_stable_and_exact_at_extreme_inputs() {
    // Logits ±100: the naive ln σ(x) overflows; the stable form gives per-element losses
    // max(x,0) - x·y + ln(1 + e^-100) = 0, 0, 100, 100 (e^-100 ≈ 4e-44 vanishes in f32).
    let x = [100.0f32, -100.0, 100.0, -100.0];
    let y = [1.0f32, 0.0, 0.0, 1.0];
    let kind = LossKind::BinaryCrossEntropy { from_logits: true };
    let want_grad = [0.0f32, 0.0, 0.25, -0.25]; // (σ(x) - y)/4
    for (l, g) in [gpu_loss(kind, &[4], &x, &y), cpu_f32(kind, &[4], &x, &y)] {
        assert!(l.is_finite());
        assert_close("bce ±100 loss", &[l], &[50.0], 1e-6, 1e-6);
        assert_close("bce ±100 grad", &g, &want_grad, 1e-7, 0.0);
    }
    // Moderate logits against the textbook formula -(y ln σ + (1-y) ln(1-σ)) in f64.
    let x = [-15.0f64, -3.0, 0.0, 0.5, 8.0, 15.0];
    let y = [0.3f64, 1.0, 0.5, 0.0, 0.9, 0.2];
    let want = x
        .iter()
        .zip(&y)
        .map(|(&x, &y)| {
            let s = 1.0 / (1.0 + (-x).exp());
            -(y * s.ln() + (1.0 - y) * (1.0 - s).ln())
        })
        .sum::<f64>()
        / 6.0;
    let (l, _) = gpu_loss(kind, &[6], &f32s(&x), &f32s(&y));
    assert_close("bce moderate logits", &[l], &[want as f32], 1e-6, 1e-6);
    // Probabilities 0 and 1 are clamped to [1e-7, 1 - 1e-7] (Keras): finite, -ln(1e-7) each
    // for the wrong answers, zero gradient outside the clamp range.
    let kind = LossKind::BinaryCrossEntropy { from_logits: false };
    let (p, y) = ([0.0f32, 1.0, 0.0, 1.0], [1.0f32, 0.0, 0.0, 1.0]);
    // In f32, 1 - 1e-7 rounds to hi = 1 - 2^-23, so 1 - hi = 2^-23:
    // ℓ = -ln(eps), -ln(1 - hi), -ln(1 - eps), -ln(hi).
    let eps = f64::from(BCE_EPS);
    let hi = f64::from(1.0f32 - BCE_EPS);
    let want = (-eps.ln() - (1.0 - hi).ln() - (1.0 - eps).ln() - hi.ln()) / 4.0;
    for (l, g) in [gpu_loss(kind, &[4], &p, &y), cpu_f32(kind, &[4], &p, &y)] {
        assert_close("bce clamped loss", &[l], &[want as f32], 1e-6, 1e-4);
        assert_eq!(g, vec![0.0; 4], "clamped probabilities have zero gradient");
    }
}

/// Runs `steps` steps with the same gradients on the CPU and the GPU optimizer from the
/// parameters `w0`, returning both results flattened.
fn both_optimizers(
    config: OptimizerConfig,
    w0: &[Vec<f32>],
    grads: &[Vec<Vec<f32>>],
) -> (Vec<f32>, Vec<f32>, Option<f32>, Option<f32>) {
    let c = ctx();
    let lens: Vec<usize> = w0.iter().map(Vec::len).collect();
    let mut cpu = Optimizer::<f32>::new(config).unwrap();
    let mut w_cpu: Vec<_> = w0.iter().map(|w| arr(&[w.len()], w)).collect();
    let w_gpu: Vec<_> = w0
        .iter()
        .map(|w| storage_buffer(c, "w", w).unwrap())
        .collect();
    let g_gpu: Vec<_> = lens
        .iter()
        .map(|&n| storage_buffer(c, "g", &vec![0.0; n]).unwrap())
        .collect();
    let mut gpu = GpuOptimizer::new(c, config, &lens).unwrap();
    for step in grads {
        let g_cpu: Vec<_> = step.iter().map(|g| arr(&[g.len()], g)).collect();
        let mut views: Vec<_> = w_cpu.iter_mut().map(|w| w.view_mut()).collect();
        let gviews: Vec<_> = g_cpu.iter().map(|g| g.view()).collect();
        cpu.step(&mut views, &gviews).unwrap();
        for (buf, g) in g_gpu.iter().zip(step) {
            c.queue().write_buffer(buf, 0, bytemuck::cast_slice(g));
        }
        let mut rec = StepRecorder::new(c);
        let pairs: Vec<_> = w_gpu.iter().zip(&g_gpu).collect();
        gpu.record_step(&mut rec, &pairs).unwrap();
        rec.submit().unwrap();
    }
    assert_eq!(gpu.steps(), grads.len() as u64);
    let cpu_flat = w_cpu.iter().flat_map(|w| w.iter().copied()).collect();
    let gpu_flat = w_gpu
        .iter()
        .zip(&lens)
        .flat_map(|(b, &n)| read_buffer(c, b, n).unwrap())
        .collect();
    let norm = gpu.read_grad_norm(c).unwrap();
    (cpu_flat, gpu_flat, cpu.last_grad_norm(), norm)
}

/// The same gradients on two steps, w0 = [1, -2], g = [0.5, 0.25].
fn hand_case(config: OptimizerConfig, steps: usize, want: [f64; 2]) {
    let w0 = vec![vec![1.0f32, -2.0]];
    let grads = vec![vec![vec![0.5f32, 0.25]]; steps];
    let (cpu, gpu, _, _) = both_optimizers(config, &w0, &grads);
    let want = f32s(&want);
    let what = format!("{config:?} after {steps} step(s)");
    assert_close(&format!("cpu {what}"), &cpu, &want, 1e-6, 1e-6);
    assert_close(&format!("gpu {what}"), &gpu, &want, 1e-6, 1e-6);
}

#[test]
fn one_or_two_steps_of_every_optimizer_equal_hand_computed_values() {
    // SGD lr 0.1: w - 0.1·g = [1 - 0.05, -2 - 0.025].
    hand_case(OptimizerConfig::sgd(0.1, 0.0, false), 1, [0.95, -2.025]);
    // SGD momentum 0.9: b₁ = g, w₁ = [0.95, -2.025]; b₂ = 0.9·g + g = 1.9·g = [0.95, 0.475],
    // w₂ = [0.95 - 0.095, -2.025 - 0.0475].
    hand_case(OptimizerConfig::sgd(0.1, 0.9, false), 2, [0.855, -2.0725]);
    // Nesterov: d₁ = g + 0.9·g = [0.95, 0.475], w₁ = [0.905, -2.0475];
    // b₂ = 1.9·g, d₂ = g + 0.9·1.9·g = 2.71·g = [1.355, 0.6775], w₂ = [0.7695, -2.11525].
    hand_case(OptimizerConfig::sgd(0.1, 0.9, true), 2, [0.7695, -2.11525]);
    // Weight decay 0.1: g' = g + 0.1·w = [0.6, 0.05], w = [1 - 0.06, -2 - 0.005].
    let mut wd = OptimizerConfig::sgd(0.1, 0.0, false);
    wd.weight_decay = 0.1;
    hand_case(wd, 1, [0.94, -2.005]);
    // Adam lr 0.01 with a constant gradient: m_t = (1-β₁ᵗ)·g and v_t = (1-β₂ᵗ)·g², so the
    // bias-corrected m̂ = g, v̂ = g² and every step moves lr·g/(|g| + 1e-8) ≈ 0.01·sign(g)
    // (without the correction, step 1 would move 0.01·0.05/sqrt(0.00025) = 0.0316).
    // After 3 steps: [1 - 0.03, -2 - 0.03] (the 1e-8 changes the 8th digit only).
    hand_case(OptimizerConfig::adam(0.01), 3, [0.97, -2.03]);
    // RMSprop lr 0.01, α 0.99: v = 0.01·g², sqrt(v) = 0.1·|g|, w -= 0.01·g/(0.1|g|) = 0.1·sign(g).
    hand_case(OptimizerConfig::rmsprop(0.01), 1, [0.9, -2.1]);
    // RMSprop momentum 0.5, two steps: b₁ = g/(0.1|g|) = 10, w₁ = [0.9, -2.1];
    // v₂ = 0.99·0.01·g² + 0.01·g² = 0.0199·g², g/a = 1/sqrt(0.0199) = 7.08881 (both entries),
    // b₂ = 0.5·10 + 7.08881, w₂ = w₁ - 0.01·b₂·sign(g).
    let b2 = 5.0 + 1.0 / 0.0199f64.sqrt();
    let mut rms = OptimizerConfig::rmsprop(0.01);
    rms.kind = OptimizerKind::RmsProp {
        alpha: 0.99,
        eps: 1e-8,
        momentum: 0.5,
    };
    hand_case(rms, 2, [0.9 - 0.01 * b2, -2.1 - 0.01 * b2]);
}

#[test]
fn clipping_scales_by_the_global_norm_only_above_the_threshold() {
    // Two tensors, gradients [3, 4] and [12]: global norm sqrt(9 + 16 + 144) = 13.
    // SGD lr 1 from w = 0 leaves w = -scale·g.
    let w0 = vec![vec![0.0f32; 2], vec![0.0f32]];
    let grads = vec![vec![vec![3.0f32, 4.0], vec![12.0]]];
    let g = [3.0f64, 4.0, 12.0];
    for (max_norm, scale) in [
        (6.5f32, 6.5 / (13.0 + 1e-6)),
        (20.0, 1.0),
        (1.0, 1.0 / (13.0 + 1e-6)),
    ] {
        let mut config = OptimizerConfig::sgd(1.0, 0.0, false);
        config.clip_norm = Some(max_norm);
        let (cpu, gpu, cpu_norm, gpu_norm) = both_optimizers(config, &w0, &grads);
        let want: Vec<f32> = g.iter().map(|&v| (-scale * v) as f32).collect();
        assert_close(&format!("cpu clip {max_norm}"), &cpu, &want, 1e-6, 1e-6);
        assert_close(&format!("gpu clip {max_norm}"), &gpu, &want, 1e-6, 1e-6);
        assert_close(
            "norms",
            &[cpu_norm.unwrap(), gpu_norm.unwrap()],
            &[13.0, 13.0],
            0.0,
            1e-6,
        );
    }
}

#[test]
fn several_gpu_steps_equal_cpu_steps() {
    // 3000 elements: 12 update workgroups (not a multiple of 256) and 3 partial sums;
    // 1500 and 5 more so the global norm spans tensors.
    let lens = [3000usize, 1500, 5];
    let mut r = Rng(42);
    let w0: Vec<Vec<f32>> = lens.iter().map(|&n| f32s(&r.vec(n, -1.0, 1.0))).collect();
    let grads: Vec<Vec<Vec<f32>>> = (0..4)
        .map(|_| lens.iter().map(|&n| f32s(&r.vec(n, -1.0, 1.0))).collect())
        .collect();
    let mut sgd = OptimizerConfig::sgd(0.05, 0.9, true);
    sgd.weight_decay = 0.01;
    let mut adam = OptimizerConfig::adam(0.01);
    adam.clip_norm = Some(1.0);
    adam.weight_decay = 0.01;
    let mut rms = OptimizerConfig::with_kind(
        0.01,
        OptimizerKind::RmsProp {
            alpha: 0.9,
            eps: 1e-6,
            momentum: 0.5,
        },
    );
    rms.clip_norm = Some(5.0);
    let plain_rms = OptimizerConfig::rmsprop(0.001);
    for config in [
        sgd,
        adam,
        rms,
        plain_rms,
        OptimizerConfig::sgd(0.1, 0.0, false),
    ] {
        let (cpu, gpu, cpu_norm, gpu_norm) = both_optimizers(config, &w0, &grads);
        let atol = 1e-5 * max_abs(&cpu, 1.0);
        assert_close(&format!("{config:?}"), &gpu, &cpu, atol, 1e-4);
        let moved = cpu
            .iter()
            .zip(w0.iter().flatten())
            .filter(|(a, b)| (*a - *b).abs() > 1e-4)
            .count();
        assert!(
            moved > cpu.len() / 2,
            "{config:?}: only {moved} parameters moved"
        );
        match (config.clip_norm, cpu_norm, gpu_norm) {
            (Some(_), Some(c), Some(g)) => {
                // The last step's gradients: ≈ sqrt(4505/3) ≈ 38.8, above both thresholds.
                let want = grads[3]
                    .iter()
                    .flatten()
                    .map(|&v| f64::from(v).powi(2))
                    .sum::<f64>();
                assert_close("global norm", &[c, g], &[want.sqrt() as f32; 2], 0.0, 1e-5);
            }
            (None, None, None) => {}
            other => panic!("{config:?}: norms {other:?}"),
        }
    }
}

#[test]
fn a_whole_training_step_is_one_submit_and_matches_cpu_training() {
    // The model is the identity: the logits are the parameters. Softmax cross-entropy on
    // [4, 300] (rows longer than a workgroup) with Adam and clipping, 5 steps.
    let c = ctx();
    let shape = [4usize, 300];
    let (p0, t) = data(LossKind::SoftmaxCrossEntropy, &shape, 9);
    let (p0, t) = (f32s(&p0), f32s(&t));
    let mut config = OptimizerConfig::adam(0.05);
    config.clip_norm = Some(0.5);
    let w = storage_buffer(c, "w", &p0).unwrap();
    let tb = storage_buffer(c, "t", &t).unwrap();
    let g = storage_buffer(c, "g", &vec![0.0; p0.len()]).unwrap();
    let loss = GpuLoss::new(c, LossKind::SoftmaxCrossEntropy, &shape).unwrap();
    let mut opt = GpuOptimizer::new(c, config, &[p0.len()]).unwrap();
    let mut cpu_opt = Optimizer::<f32>::new(config).unwrap();
    let mut w_cpu = arr(&shape, &p0);
    let t_cpu = arr(&shape, &t);
    let mut losses = Vec::new();
    for step in 0..5 {
        let mut rec = StepRecorder::new(c);
        loss.record(&mut rec, &w, &tb, &g).unwrap();
        opt.record_step(&mut rec, &[(&w, &g)]).unwrap();
        let stats = rec.submit().unwrap();
        assert_eq!(stats.submits, 1);
        let gpu_loss = loss.read_value(c).unwrap();
        let (cpu_loss_v, cpu_grad) =
            cpu_loss(LossKind::SoftmaxCrossEntropy, w_cpu.view(), t_cpu.view()).unwrap();
        cpu_opt
            .step(&mut [w_cpu.view_mut()], &[cpu_grad.view()])
            .unwrap();
        assert_close(
            &format!("loss at step {step}"),
            &[gpu_loss],
            &[cpu_loss_v],
            1e-5,
            1e-4,
        );
        losses.push(gpu_loss);
    }
    assert!(
        losses.windows(2).all(|p| p[1] < p[0]),
        "training must lower the loss: {losses:?}"
    );
    let gpu_w = read_buffer(c, &w, p0.len()).unwrap();
    let cpu_w: Vec<f32> = w_cpu.iter().copied().collect();
    assert_close("parameters after 5 steps", &gpu_w, &cpu_w, 1e-5, 1e-4);
}

#[test]
fn checkpoint_round_trips_and_reports_missing_or_misshapen_tensors() {
    let c = ctx();
    let dir = std::env::temp_dir().join(format!("wgpu-rnn-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("params.safetensors");
    let a: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
    let b = vec![3.25f32, -7.5, 1e-20, 4.0e6];
    let (ba, bb) = (
        storage_buffer(c, "a", &a).unwrap(),
        storage_buffer(c, "b", &b).unwrap(),
    );
    checkpoint::save(
        c,
        &path,
        &[
            NamedBuffer {
                name: "layer.weight",
                buffer: &ba,
                shape: &[2, 3],
            },
            NamedBuffer {
                name: "layer.bias",
                buffer: &bb,
                shape: &[4],
            },
        ],
    )
    .unwrap();
    // The file is plain safetensors with the shapes given.
    let file = wgpu_rnn::weights::safetensors_io::read(&path).unwrap();
    assert_eq!(file.tensors["layer.weight"].shape(), &[2, 3]);
    assert_eq!(file.tensors["layer.bias"].as_slice().unwrap(), b.as_slice());
    let (za, zb) = (
        storage_buffer(c, "za", &[0.0; 6]).unwrap(),
        storage_buffer(c, "zb", &[0.0; 4]).unwrap(),
    );
    let targets = [
        NamedBuffer {
            name: "layer.bias",
            buffer: &zb,
            shape: &[4],
        },
        NamedBuffer {
            name: "layer.weight",
            buffer: &za,
            shape: &[2, 3],
        },
    ];
    checkpoint::load_into(c, &path, &targets).unwrap();
    assert_eq!(read_buffer(c, &za, 6).unwrap(), a);
    assert_eq!(read_buffer(c, &zb, 4).unwrap(), b);

    let fresh = storage_buffer(c, "fresh", &[9.0; 6]).unwrap();
    let missing = checkpoint::load_into(
        c,
        &path,
        &[
            NamedBuffer {
                name: "layer.weight",
                buffer: &fresh,
                shape: &[2, 3],
            },
            NamedBuffer {
                name: "other.weight",
                buffer: &zb,
                shape: &[4],
            },
        ],
    );
    match missing {
        Err(Error::Weights(msg)) => assert!(msg.contains("other.weight"), "{msg}"),
        other => panic!("expected a missing-tensor error, got {other:?}"),
    }
    // Nothing was written: the check runs before any upload.
    assert_eq!(read_buffer(c, &fresh, 6).unwrap(), vec![9.0; 6]);
    let misshapen = checkpoint::load_into(
        c,
        &path,
        &[NamedBuffer {
            name: "layer.weight",
            buffer: &fresh,
            shape: &[3, 2],
        }],
    );
    match misshapen {
        Err(Error::Shape(msg)) => {
            assert!(msg.contains("[2, 3]") && msg.contains("[3, 2]"), "{msg}")
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_inputs_are_typed_errors() {
    let c = ctx();
    assert!(matches!(
        GpuLoss::new(c, LossKind::Mse, &[3, 0]),
        Err(Error::Shape(_))
    ));
    let small = storage_buffer(c, "small", &[0.0; 3]).unwrap();
    let big = storage_buffer(c, "big", &[0.0; 8]).unwrap();
    let big2 = storage_buffer(c, "big2", &[0.0; 8]).unwrap();
    let loss = GpuLoss::new(c, LossKind::Mae, &[8]).unwrap();
    let mut rec = StepRecorder::new(c);
    match loss.record(&mut rec, &small, &big, &big2) {
        Err(Error::Shape(msg)) => assert!(msg.contains('3') && msg.contains('8'), "{msg}"),
        other => panic!("expected a shape error, got {other:?}"),
    }
    match Optimizer::<f32>::new(OptimizerConfig::sgd(-1.0, 0.0, false)) {
        Err(Error::Config(msg)) => assert!(msg.contains("lr = -1"), "{msg}"),
        other => panic!("expected a config error, got {other:?}"),
    }
    assert!(matches!(
        GpuOptimizer::new(c, OptimizerConfig::sgd(0.1, 0.0, true), &[4]),
        Err(Error::Config(_))
    ));
    let mut bad_beta = OptimizerConfig::adam(0.1);
    bad_beta.kind = OptimizerKind::Adam {
        beta1: 1.0,
        beta2: 0.999,
        eps: 1e-8,
    };
    assert!(matches!(bad_beta.validate(), Err(Error::Config(_))));
    let mut opt = GpuOptimizer::new(c, OptimizerConfig::adam(0.1), &[8, 3]).unwrap();
    assert!(matches!(
        opt.record_step(&mut rec, &[(&big, &big2)]),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        opt.record_step(&mut rec, &[(&big, &big2), (&small, &small)]),
        Err(Error::Config(_))
    ));
    assert_eq!(opt.steps(), 0, "failed recordings do not count as steps");
    let mut cpu = Optimizer::<f64>::new(OptimizerConfig::adam(0.1)).unwrap();
    let mut w = ndarray::ArrayD::<f64>::zeros(IxDyn(&[2]));
    let g = ndarray::ArrayD::<f64>::zeros(IxDyn(&[3]));
    assert!(matches!(
        cpu.step(&mut [w.view_mut()], &[g.view()]),
        Err(Error::Shape(_))
    ));
}
