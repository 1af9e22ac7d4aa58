//! Keras `recurrent_dropout` replayed: the device layers (Keras layout, as `gpu_layers` builds
//! them) train with masks they draw; the Keras CPU reference (`cpu::rnn::forward_dropout`)
//! runs with the same masks (read back, or from the host mirror of the draw) and must give
//! the same outputs, input gradient and weight gradients, for LSTM, GRU (both reset_after)
//! and SimpleRNN, Stepwise and Persistent, with and without a Keras mask; the reference's
//! own gradients with masks match finite differences in f64.

use std::sync::{Arc, OnceLock};

use ndarray::{Array2, Array3, ArrayD, Axis, Ix2, IxDyn};

use super::cpu::rnn::{RnnWeights, backward, forward_dropout};
use super::init::Rng;
use super::spec::{CellKind, RnnSpec};
use crate::algorithm::Algorithm;
use crate::context::Context;
use crate::layers::Backend;
use crate::nn::masking::{MaskOptions, MaskedRecurrent, Recurrent, SeqMask};
use crate::weights::TensorMap;
use crate::{DeviceTensor, Gru, GruConfig, Lstm, LstmConfig, OutputGrads, Recorder};
use crate::{SimpleRnn, SimpleRnnConfig};

const ATOL: f64 = 1e-5;
const RTOL: f64 = 1e-4;

pub(super) fn ctx() -> Arc<Context> {
    static CTX: OnceLock<Arc<Context>> = OnceLock::new();
    CTX.get_or_init(|| {
        Arc::new(Context::new().unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}")))
    })
    .clone()
}

pub(super) const CELLS: [CellKind; 4] = [
    CellKind::Lstm {
        unit_forget_bias: true,
    },
    CellKind::Gru { reset_after: true },
    CellKind::Gru { reset_after: false },
    CellKind::SimpleRnn,
];

fn rand(rng: &mut Rng, shape: &[usize]) -> ArrayD<f32> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || (rng.unit() - 0.5) as f32)
}

/// Keras tensors of one layer.
fn keras_weights(spec: &RnnSpec, i: usize, seed: u64) -> TensorMap {
    let mut rng = Rng::new(seed);
    let (u, g) = (spec.units, spec.cell.gates() * spec.units);
    let mut m = TensorMap::new();
    m.insert("kernel".into(), rand(&mut rng, &[i, g]));
    m.insert(
        "recurrent_kernel".into(),
        rand(&mut rng, &[u, g]).mapv(|v| 2.0 * v),
    );
    m.insert("bias".into(), rand(&mut rng, &spec.bias_shape()));
    m
}

/// The device layer of `spec` (batch-first, Keras layout) with recurrent dropout.
fn device_layer(
    spec: &RnnSpec,
    i: usize,
    m: &TensorMap,
    (rate, seed): (f32, u64),
    algo: Algorithm,
) -> Box<dyn Recurrent> {
    let backend = Backend::Gpu(ctx());
    let u = spec.units;
    match spec.cell {
        CellKind::Lstm { .. } => {
            let mut c = LstmConfig::new(i, u);
            c.batch_first = true;
            (c.recurrent_dropout, c.dropout_seed) = (rate, seed);
            let mut l = Lstm::from_keras(c, m, backend).unwrap();
            l.set_algorithm(algo);
            Box::new(l)
        }
        CellKind::Gru { reset_after } => {
            let mut c = GruConfig::new(i, u);
            (c.batch_first, c.reset_after) = (true, reset_after);
            (c.recurrent_dropout, c.dropout_seed) = (rate, seed);
            let mut l = Gru::from_keras(c, m, backend).unwrap();
            l.set_algorithm(algo);
            Box::new(l)
        }
        CellKind::SimpleRnn => {
            let mut c = SimpleRnnConfig::new(i, u);
            c.batch_first = true;
            (c.recurrent_dropout, c.dropout_seed) = (rate, seed);
            let mut l = SimpleRnn::from_keras(c, m, backend).unwrap();
            l.set_algorithm(algo);
            Box::new(l)
        }
    }
}

/// The device's masks `(1, G, B, U)` (kernel gate order: LSTM i,f,g,o; GRU r,z,n) as Keras'
/// per-gate list (LSTM i,f,c,o; GRU z,r,h), in f64.
pub(super) fn keras_masks(cell: CellKind, m: &ndarray::Array4<f32>) -> Vec<Array2<f64>> {
    let per: Vec<Array2<f64>> = m
        .index_axis(Axis(0), 0)
        .outer_iter()
        .map(|a| a.mapv(f64::from))
        .collect();
    match cell {
        CellKind::Gru { .. } => vec![per[1].clone(), per[0].clone(), per[2].clone()],
        _ => per,
    }
}

pub(super) fn close(what: &str, got: &ArrayD<f32>, want: &ArrayD<f64>) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for (idx, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        let err = (f64::from(*g) - w).abs();
        assert!(
            err <= ATOL + RTOL * w.abs(),
            "{what}[{idx}]: {g} vs reference {w}"
        );
    }
    assert!(want.iter().any(|v| v.abs() > 1e-3), "{what}: trivial");
}

/// Runs the device layer (optionally under a Keras mask given as `valid (B, T)`) in training
/// with upstream gradient `dy`: (y, dx, weight gradients by Keras name, masks drawn).
fn run_device(
    layer: &dyn Recurrent,
    x: &Array3<f32>,
    dy: &Array3<f32>,
    valid: Option<&Array2<bool>>,
) -> (ArrayD<f32>, ArrayD<f32>, TensorMap) {
    let c = ctx();
    let params = layer.params().unwrap();
    let mut rec = Recorder::new(&c);
    let xt = DeviceTensor::from_array(&c, x.view()).unwrap();
    let g = OutputGrads::output(DeviceTensor::from_array(&c, dy.view()).unwrap());
    let (y, dx) = match valid {
        None => {
            let f = layer.record_forward(&mut rec, &xt, true).unwrap();
            let dx = layer
                .record_backward(&mut rec, f.tape.as_ref().unwrap(), &g)
                .unwrap()
                .unwrap();
            (f.y, dx)
        }
        Some(v) => {
            let (b, t) = v.dim();
            let flags: Vec<u32> = v.iter().map(|&k| u32::from(k)).collect();
            let tokens = DeviceTensor::from_u32(&c, &[b, t], &flags).unwrap();
            let mask = SeqMask::from_tokens(&mut rec, &tokens).unwrap();
            let m = MaskedRecurrent {
                layer,
                options: MaskOptions::default(),
            };
            let f = m.record_forward(&mut rec, &xt, &mask, true).unwrap();
            let dx = m
                .record_backward(&mut rec, f.tape.as_ref().unwrap(), &g)
                .unwrap();
            (f.y, dx)
        }
    };
    rec.submit().unwrap();
    let mut grads = TensorMap::new();
    for p in params {
        let v = crate::train::read_buffer(&c, &p.grad, p.len()).unwrap();
        grads.insert(
            p.name.clone(),
            ArrayD::from_shape_vec(p.shape.clone(), v).unwrap(),
        );
    }
    (y.to_array(&c).unwrap(), dx.to_array(&c).unwrap(), grads)
}

/// The Keras CPU reference in f64: (seq, dx, kernel, recurrent_kernel, bias gradients).
fn run_cpu(
    spec: &RnnSpec,
    m: &TensorMap,
    x: &Array3<f32>,
    dy: &Array3<f32>,
    valid: Option<&Array2<bool>>,
    masks: Option<&[Array2<f64>]>,
) -> (ArrayD<f64>, TensorMap64) {
    let f = |k: &str| m[k].mapv(f64::from);
    let (k, r, bias) = (f("kernel"), f("recurrent_kernel"), f("bias"));
    let w = RnnWeights {
        kernel: k.view().into_dimensionality::<Ix2>().unwrap(),
        recurrent: r.view().into_dimensionality::<Ix2>().unwrap(),
        bias: Some(bias.view()),
    };
    let x64 = x.mapv(f64::from);
    let run = forward_dropout(spec, &w, x64.view(), valid, None, masks);
    let dy64 = dy.mapv(f64::from);
    let g = backward(spec, &w, &run.tape, Some(dy64.view()), None);
    let mut out = TensorMap64::new();
    out.insert("dx".into(), g.dx.into_dyn());
    out.insert("kernel".into(), g.kernel.into_dyn());
    out.insert("recurrent_kernel".into(), g.recurrent.into_dyn());
    out.insert("bias".into(), g.bias.unwrap());
    (run.seq.into_dyn(), out)
}

pub(super) type TensorMap64 = std::collections::BTreeMap<String, ArrayD<f64>>;

pub(super) fn spec_of(cell: CellKind, u: usize) -> RnnSpec {
    let mut s = RnnSpec::new("r", cell, u);
    s.return_sequences = true;
    s
}

/// GPU training with the masks it drew == the CPU reference replaying them: outputs, dx and
/// every weight gradient, in both algorithms that apply masks.
#[test]
fn device_training_matches_the_reference_with_the_same_masks() {
    let (b, t, i, u, rate) = (3usize, 5usize, 2usize, 4usize, 0.4f32);
    for cell in CELLS {
        let spec = spec_of(cell, u);
        let m = keras_weights(&spec, i, 31);
        let x = Array3::from_shape_fn((b, t, i), |(p, q, r)| {
            ((p * 7 + q * 3 + r) as f32 * 0.37).sin()
        });
        let dy = Array3::from_shape_fn((b, t, u), |(p, q, r)| {
            ((p * 5 + q * 11 + r * 2) as f32 * 0.53).cos()
        });
        for algo in [Algorithm::Stepwise, Algorithm::Persistent] {
            let seed = 17;
            let layer = device_layer(&spec, i, &m, (rate, seed), algo);
            let (y, dx, grads) = run_device(layer.as_ref(), &x, &dy, None);
            // This layer's first training call: the masks are the host mirror of call 0.
            let g = cell.gates();
            let drawn =
                crate::nn::dropout::recurrent_dropout_masks(seed, 0, rate, (1, g, b, u)).unwrap();
            let km = keras_masks(cell, &drawn);
            let (want_y, want) = run_cpu(&spec, &m, &x, &dy, None, Some(&km));
            let what = format!("{cell:?} {algo:?}");
            close(&format!("{what} y"), &y, &want_y);
            close(&format!("{what} dx"), &dx, &want["dx"]);
            for k in ["kernel", "recurrent_kernel", "bias"] {
                close(&format!("{what} d{k}"), &grads[k], &want[k]);
            }
            // Without the masks the reference is measurably different: the replay matters.
            let (plain_y, plain) = run_cpu(&spec, &m, &x, &dy, None, None);
            let d = (&plain_y - &want_y)
                .mapv(f64::abs)
                .fold(0.0, |a: f64, &v| a.max(v));
            let dr = (&plain["recurrent_kernel"] - &want["recurrent_kernel"])
                .mapv(f64::abs)
                .fold(0.0, |a: f64, &v| a.max(v));
            assert!(
                d > 1e-2 && dr > 1e-2,
                "{what}: masks changed little ({d}, {dr})"
            );
        }
    }
}

/// The same under a Keras mask (pre-padding, a gap, post-padding): masked steps carry the
/// state, and the recurrent masks stay those of the sequence.
#[test]
fn masked_sequences_with_recurrent_dropout_match_the_reference() {
    let (b, t, i, u, rate) = (3usize, 6usize, 2usize, 3usize, 0.5f32);
    let valid = Array2::from_shape_fn((b, t), |(p, q)| match p {
        0 => q >= 2,
        1 => q != 3,
        _ => q < 4,
    });
    for cell in CELLS {
        let spec = spec_of(cell, u);
        let m = keras_weights(&spec, i, 5);
        let mut x = Array3::from_shape_fn((b, t, i), |(p, q, r)| {
            ((p * 3 + q * 5 + r) as f32 * 0.71).sin()
        });
        for ((p, q), &v) in valid.indexed_iter() {
            if !v {
                x.slice_mut(ndarray::s![p, q, ..]).fill(0.0);
            }
        }
        let dy = Array3::from_shape_fn((b, t, u), |(p, q, r)| {
            ((p + q * 2 + r * 3) as f32 * 0.29).cos()
        });
        for algo in [Algorithm::Stepwise, Algorithm::Persistent] {
            let seed = 99;
            let layer = device_layer(&spec, i, &m, (rate, seed), algo);
            let (y, dx, grads) = run_device(layer.as_ref(), &x, &dy, Some(&valid));
            let drawn =
                crate::nn::dropout::recurrent_dropout_masks(seed, 0, rate, (1, cell.gates(), b, u))
                    .unwrap();
            let km = keras_masks(cell, &drawn);
            let (want_y, want) = run_cpu(&spec, &m, &x, &dy, Some(&valid), Some(&km));
            let what = format!("masked {cell:?} {algo:?}");
            close(&format!("{what} y"), &y, &want_y);
            close(&format!("{what} dx"), &dx, &want["dx"]);
            for k in ["kernel", "recurrent_kernel", "bias"] {
                close(&format!("{what} d{k}"), &grads[k], &want[k]);
            }
        }
    }
}

/// The masks a layer reports from its trace are what it applied: the ndarray training path
/// replays against the reference too (LSTM, Stepwise).
#[test]
fn reported_masks_replay_the_ndarray_training_path() {
    let (b, t, i, u, rate) = (2usize, 4usize, 3usize, 5usize, 0.3f32);
    let cell = CellKind::Lstm {
        unit_forget_bias: true,
    };
    let spec = spec_of(cell, u);
    let m = keras_weights(&spec, i, 8);
    let mut c = LstmConfig::new(i, u);
    c.batch_first = true;
    (c.recurrent_dropout, c.dropout_seed) = (rate, 4);
    let l = Lstm::from_keras(c, &m, Backend::Gpu(ctx())).unwrap();
    let x = Array3::from_shape_fn((b, t, i), |(p, q, r)| ((p + 2 * q + 3 * r) as f32).sin());
    let dy = Array3::from_shape_fn((b, t, u), |(p, q, r)| ((3 * p + q + r) as f32).cos());
    // A first call (discarded) so the one checked is call 1.
    l.forward_train(x.view(), None, None).unwrap();
    let (o, trace) = l.forward_train(x.view(), None, None).unwrap();
    let drawn = l.recurrent_dropout_mask(&trace).unwrap().unwrap();
    let km = keras_masks(cell, &drawn);
    let gr = l.backward(&trace, dy.view(), None).unwrap();
    let (want_y, want) = run_cpu(&spec, &m, &x, &dy, None, Some(&km));
    close("ndarray y", &o.out.into_dyn(), &want_y);
    close("ndarray dx", &gr.dx.into_dyn(), &want["dx"]);
    for k in ["kernel", "recurrent_kernel", "bias"] {
        close(&format!("ndarray d{k}"), &gr.weights[k], &want[k]);
    }
}

/// The reference's gradients with masks against central differences in f64 (every entry of
/// every weight and of x): relative error ≤ 1e-6, and nonzero where the numeric one is.
#[test]
fn reference_gradients_with_masks_match_finite_differences() {
    let (b, t, i, u) = (2usize, 4usize, 2usize, 3usize);
    for cell in CELLS {
        let spec = spec_of(cell, u);
        let m32 = keras_weights(&spec, i, 77);
        let mut w: TensorMap64 = m32
            .iter()
            .map(|(k, v)| (k.clone(), v.mapv(f64::from)))
            .collect();
        let mut rng = Rng::new(3);
        let mut x = Array3::from_shape_simple_fn((b, t, i), || rng.unit() - 0.5);
        let dy = Array3::from_shape_simple_fn((b, t, u), || rng.unit() - 0.5);
        // Masks with dropped and kept entries (scale 2 = 1/(1-0.5)) for every gate.
        let masks: Vec<Array2<f64>> = (0..cell.gates())
            .map(|gi| {
                Array2::from_shape_fn(
                    (b, u),
                    |(p, q)| {
                        if (p + 2 * q + gi) % 3 == 0 { 0.0 } else { 2.0 }
                    },
                )
            })
            .collect();
        let loss = |w: &TensorMap64, x: &Array3<f64>| -> f64 {
            let rw = RnnWeights {
                kernel: w["kernel"].view().into_dimensionality::<Ix2>().unwrap(),
                recurrent: w["recurrent_kernel"]
                    .view()
                    .into_dimensionality::<Ix2>()
                    .unwrap(),
                bias: Some(w["bias"].view()),
            };
            let run = forward_dropout(&spec, &rw, x.view(), None, None, Some(&masks));
            (&run.seq * &dy).sum()
        };
        let (analytic, unmasked) = {
            let rw = RnnWeights {
                kernel: w["kernel"].view().into_dimensionality::<Ix2>().unwrap(),
                recurrent: w["recurrent_kernel"]
                    .view()
                    .into_dimensionality::<Ix2>()
                    .unwrap(),
                bias: Some(w["bias"].view()),
            };
            let run = forward_dropout(&spec, &rw, x.view(), None, None, Some(&masks));
            let g = backward(&spec, &rw, &run.tape, Some(dy.view()), None);
            let plain = forward_dropout(&spec, &rw, x.view(), None, None, None);
            let gp = backward(&spec, &rw, &plain.tape, Some(dy.view()), None);
            let mut a = TensorMap64::new();
            a.insert("dx".into(), g.dx.into_dyn());
            a.insert("kernel".into(), g.kernel.into_dyn());
            a.insert("recurrent_kernel".into(), g.recurrent.into_dyn());
            a.insert("bias".into(), g.bias.unwrap());
            (a, gp.recurrent.into_dyn())
        };
        let eps = 1e-6;
        let check = |name: &str, num: f64, ana: f64| {
            let err = (num - ana).abs();
            assert!(
                err <= 1e-6 * num.abs().max(1.0),
                "{cell:?} {name}: numeric {num} analytic {ana}"
            );
            if num.abs() > 1e-6 {
                assert!(ana.abs() > 0.0, "{cell:?} {name}: zero analytic gradient");
            }
        };
        let mut numeric_rec = Vec::new();
        for k in ["kernel", "recurrent_kernel", "bias"] {
            for j in 0..w[k].len() {
                let orig = w[k].as_slice().unwrap()[j];
                w.get_mut(k).unwrap().as_slice_mut().unwrap()[j] = orig + eps;
                let up = loss(&w, &x);
                w.get_mut(k).unwrap().as_slice_mut().unwrap()[j] = orig - eps;
                let down = loss(&w, &x);
                w.get_mut(k).unwrap().as_slice_mut().unwrap()[j] = orig;
                let num = (up - down) / (2.0 * eps);
                check(
                    &format!("{k}[{j}]"),
                    num,
                    analytic[k].as_slice().unwrap()[j],
                );
                if k == "recurrent_kernel" {
                    numeric_rec.push(num);
                }
            }
        }
        for j in 0..x.len() {
            let orig = x.as_slice().unwrap()[j];
            x.as_slice_mut().unwrap()[j] = orig + eps;
            let up = loss(&w, &x);
            x.as_slice_mut().unwrap()[j] = orig - eps;
            let down = loss(&w, &x);
            x.as_slice_mut().unwrap()[j] = orig;
            check(
                &format!("x[{j}]"),
                (up - down) / (2.0 * eps),
                analytic["dx"].as_slice().unwrap()[j],
            );
        }
        // The check can fail: the unmasked recurrent gradient is far from the numeric one.
        let off = numeric_rec
            .iter()
            .zip(unmasked.iter())
            .map(|(n, a)| (n - a).abs())
            .fold(0.0f64, f64::max);
        assert!(
            off > 1e-3,
            "{cell:?}: unmasked gradient indistinguishable ({off})"
        );
    }
}

/// The model-level reference takes per-direction masks by key (layer name, or
/// `bidirectional/direction`) and gives each direction its own: a Bidirectional LSTM's merged
/// output equals the two directions run by hand with their masks, and differs when the masks
/// are swapped between directions.
#[test]
fn model_reference_takes_masks_per_direction() {
    use super::backend::ModelInput;
    use super::builder::SequentialBuilder;
    use super::cpu::{RecMasks, Weights, forward_with_masks};
    use super::spec::{LayerKind, MergeMode};
    let (b, t, f, u) = (2usize, 4usize, 3usize, 2usize);
    let cell = CELLS[0];
    let spec = SequentialBuilder::new("m", &[Some(t), Some(f)], false)
        .bidirectional(cell, u, MergeMode::Concat, |r| r.return_sequences = true)
        .build()
        .unwrap();
    let mut rng = Rng::new(5);
    let w: Weights<f64> = spec
        .weights()
        .map(|s| {
            let a = ArrayD::from_shape_simple_fn(IxDyn(&s.shape), || rng.unit() - 0.5);
            (s.path.clone(), a)
        })
        .collect();
    let x = Array3::from_shape_simple_fn((b, t, f), || rng.unit() - 0.5);
    let mask_of = |seed: usize| -> Vec<Array2<f64>> {
        (0..cell.gates())
            .map(|g| {
                Array2::from_shape_fn((b, u), |(p, q)| {
                    f64::from(!(p + q + g + seed).is_multiple_of(2)) * 2.0
                })
            })
            .collect()
    };
    let l = &spec.layers[0];
    let LayerKind::Bidirectional {
        forward: fs,
        backward: bs,
        ..
    } = &l.spec.kind
    else {
        panic!("not bidirectional")
    };
    let keys = [
        format!("{}/{}", l.spec.name, fs.name),
        format!("{}/{}", l.spec.name, bs.name),
    ];
    let run = |masks: &RecMasks<f64>| {
        let fw = forward_with_masks(
            &spec,
            &w,
            &ModelInput::Values(x.clone().into_dyn()),
            None,
            Some(masks),
        );
        fw.unwrap().outputs[0].clone()
    };
    let mut masks = RecMasks::new();
    masks.insert(keys[0].clone(), mask_of(0));
    masks.insert(keys[1].clone(), mask_of(1));
    let got = run(&masks);
    // By hand: each direction with its own weights (kernel, recurrent_kernel, bias) and mask.
    let n = 3;
    for (dir, (rs, key)) in [(fs, &keys[0]), (bs, &keys[1])].into_iter().enumerate() {
        let p = |i: usize| &w[&l.weights[dir * n + i].path];
        let rw = RnnWeights {
            kernel: p(0).view().into_dimensionality::<Ix2>().unwrap(),
            recurrent: p(1).view().into_dimensionality::<Ix2>().unwrap(),
            bias: Some(p(2).view()),
        };
        let mut seq = forward_dropout(rs, &rw, x.view(), None, None, Some(&masks[key])).seq;
        if dir == 1 {
            seq.invert_axis(Axis(1));
        }
        let part = got.slice(ndarray::s![.., .., dir * u..(dir + 1) * u]);
        let err = (&part - &seq).mapv(f64::abs).fold(0.0f64, |a, &v| a.max(v));
        assert!(err < 1e-12, "direction {dir}: {err}");
    }
    masks.insert(keys[0].clone(), mask_of(1));
    masks.insert(keys[1].clone(), mask_of(0));
    let swapped = run(&masks);
    let d = (&swapped - &got)
        .mapv(f64::abs)
        .fold(0.0f64, |a, &v| a.max(v));
    assert!(
        d > 1e-3,
        "swapping the directions' masks changed nothing ({d})"
    );
}
