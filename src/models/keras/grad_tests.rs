//! The CPU reference's gradients against f64 central finite differences, for every layer and
//! option (masks from Embedding and Masking, pre-, post- and mid-sequence padding, both
//! directions, every merge mode, GRU both modes, zero_output_for_mask, sequence losses under
//! a mask, regularizers, every loss), and its f32 version against its f64 version.

use ndarray::{Array2, ArrayD, IxDyn};

use super::backend::{ModelInput, evaluate_weights};
use super::builder::SequentialBuilder;
use super::cpu::Weights;
use super::init::Rng;
use super::loss::{KerasLoss, Target};
use super::plan::ModelSpec;
use super::spec::{CellKind, DenseActivation, MergeMode, Regularizer};
use crate::cpu::Activation;

const LSTM: CellKind = CellKind::Lstm {
    unit_forget_bias: true,
};
const GRU_AFTER: CellKind = CellKind::Gru { reset_after: true };
const GRU_BEFORE: CellKind = CellKind::Gru { reset_after: false };
const REG: Option<Regularizer> = Some(Regularizer { l1: 0.01, l2: 0.02 });

fn random_weights(spec: &ModelSpec, seed: u64) -> Weights<f64> {
    let mut rng = Rng::new(seed);
    spec.weights()
        .map(|w| {
            let a = ArrayD::from_shape_simple_fn(IxDyn(&w.shape), || rng.unit() - 0.5);
            (w.path.clone(), a)
        })
        .collect()
}

fn values(rng: &mut Rng, shape: &[usize]) -> ArrayD<f64> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || 2.0 * rng.unit() - 1.0)
}

/// Token ids `(B, T)`: row b has `lengths[b]` tokens, pre- or post-padded with 0.
fn tokens(rng: &mut Rng, t: usize, vocab: usize, lengths: &[usize], pre: bool) -> Array2<i64> {
    let mut x = Array2::zeros((lengths.len(), t));
    for (b, &n) in lengths.iter().enumerate() {
        for k in 0..n {
            let col = if pre { t - n + k } else { k };
            x[[b, col]] = 1 + (rng.unit() * (vocab - 1) as f64) as i64;
        }
    }
    x
}

/// Checks d loss / d w of every weight at spread-out entries against central differences.
fn check(name: &str, spec: &ModelSpec, x: &ModelInput, y: &Target, loss: KerasLoss) {
    let w = random_weights(spec, 11);
    let ev = evaluate_weights(spec, &w, x, y, loss).expect(name);
    assert!(
        ev.loss.is_finite() && ev.loss > 0.0,
        "{name}: loss {}",
        ev.loss
    );
    let h = 1e-5;
    let trainable: Vec<_> = spec.weights().filter(|s| s.trainable).collect();
    assert_eq!(
        ev.grads.len(),
        trainable.len(),
        "{name}: one gradient per trainable weight"
    );
    for ws in trainable {
        let g = &ev.grads[&ws.path];
        let n = ws.len();
        let (mut num_norm, mut ana_norm) = (0.0f64, 0.0f64);
        for k in 0..n.min(7) {
            let idx = (k * 7919 + 3) % n;
            let at = |d: f64| {
                let mut w2 = w.clone();
                let v = w2.get_mut(&ws.path).unwrap();
                v.as_slice_mut().unwrap()[idx] += d;
                evaluate_weights(spec, &w2, x, y, loss).unwrap().loss
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            let analytic = g.as_slice().unwrap()[idx];
            assert!(
                (analytic - numeric).abs() <= 1e-6 * numeric.abs() + 1e-9,
                "{name}: {} [{idx}]: analytic {analytic:e} vs numeric {numeric:e}",
                ws.path
            );
            num_norm += numeric * numeric;
            ana_norm += analytic * analytic;
        }
        // Lower bound: the analytic gradient is not vanishing where the numeric one is not.
        if num_norm > 1e-16 {
            let ratio = (ana_norm / num_norm).sqrt();
            assert!(
                (ratio - 1.0).abs() < 1e-5,
                "{name}: {} ratio {ratio}",
                ws.path
            );
        }
    }
    // At least most weights must carry a real gradient, or the check proves little.
    let live = ev
        .grads
        .values()
        .filter(|g| g.iter().any(|v| v.abs() > 1e-6))
        .count();
    assert!(
        live * 4 >= ev.grads.len() * 3,
        "{name}: only {live} live gradients"
    );
}

#[test]
fn embedding_mask_prepadding_lstm_then_backwards_gru_before_bce() {
    let spec = SequentialBuilder::new("m", &[Some(6)], true)
        .embedding(9, 3, true)
        .rnn(LSTM, 4, |r| {
            r.return_sequences = true;
            r.kernel_regularizer = REG;
            r.recurrent_regularizer = REG;
            r.bias_regularizer = REG;
        })
        .rnn(GRU_BEFORE, 3, |r| r.go_backwards = true)
        .dense(1, DenseActivation::Elementwise(Activation::Sigmoid))
        .build()
        .unwrap();
    let mut rng = Rng::new(1);
    let mut ids = tokens(&mut rng, 6, 9, &[6, 3, 1], true);
    ids[[0, 2]] = 0; // a masked step mid-sequence
    let y = Target::Values(ArrayD::from_shape_vec(IxDyn(&[3, 1]), vec![1.0, 0.0, 1.0]).unwrap());
    check(
        "prepad",
        &spec,
        &ModelInput::Tokens(ids),
        &y,
        KerasLoss::BinaryCrossentropy { from_logits: false },
    );
}

#[test]
fn masking_bidirectional_merges_and_masked_sequence_loss() {
    for merge in [
        MergeMode::Concat,
        MergeMode::Sum,
        MergeMode::Mul,
        MergeMode::Ave,
    ] {
        let spec = SequentialBuilder::new("m", &[Some(5), Some(2)], false)
            .masking(0.0)
            .bidirectional(GRU_AFTER, 3, merge, |r| r.return_sequences = true)
            .bidirectional(CellKind::SimpleRnn, 3, MergeMode::Concat, |r| {
                r.return_sequences = true
            })
            .time_distributed_dense(3, DenseActivation::Softmax)
            .build()
            .unwrap();
        let mut rng = Rng::new(2);
        let mut x = values(&mut rng, &[3, 5, 2]);
        for (b, t) in [(0, 0), (0, 1), (1, 2), (2, 3), (2, 4)] {
            x[[b, t, 0]] = 0.0;
            x[[b, t, 1]] = 0.0;
        }
        let y = Target::Classes(ArrayD::from_shape_fn(IxDyn(&[3, 5]), |i| {
            ((i[0] + i[1]) % 3) as i64
        }));
        check(
            &format!("masking {merge:?}"),
            &spec,
            &ModelInput::Values(x),
            &y,
            KerasLoss::SparseCategoricalCrossentropy { from_logits: false },
        );
    }
}

#[test]
fn backwards_sequences_zero_output_and_mse_mae() {
    for loss in [KerasLoss::MeanSquaredError, KerasLoss::MeanAbsoluteError] {
        let spec = SequentialBuilder::new("m", &[Some(4)], true)
            .embedding(7, 3, true)
            .rnn(LSTM, 3, |r| {
                r.return_sequences = true;
                r.go_backwards = true;
                r.zero_output_for_mask = true;
                r.recurrent_activation = Activation::HardSigmoid;
            })
            .dropout(0.3)
            .bidirectional(LSTM, 3, MergeMode::Ave, |r| r.recurrent_dropout = 0.4)
            .dense(2, DenseActivation::Elementwise(Activation::Tanh))
            .build()
            .unwrap();
        let mut rng = Rng::new(3);
        let ids = tokens(&mut rng, 4, 7, &[4, 2, 3], false);
        let y = Target::Values(values(&mut rng, &[3, 2]));
        check(
            &format!("{loss:?}"),
            &spec,
            &ModelInput::Tokens(ids),
            &y,
            loss,
        );
    }
}

#[test]
fn categorical_losses_without_bias_and_with_logits() {
    let spec = SequentialBuilder::new("m", &[Some(4), Some(3)], false)
        .rnn(GRU_AFTER, 4, |r| {
            r.return_sequences = true;
            r.use_bias = false;
        })
        .rnn(CellKind::SimpleRnn, 3, |r| r.return_sequences = true)
        .time_distributed_dense(3, DenseActivation::Softmax)
        .build()
        .unwrap();
    let mut rng = Rng::new(4);
    let x = ModelInput::Values(values(&mut rng, &[2, 4, 3]));
    let soft = values(&mut rng, &[2, 4, 3]).mapv(|v| v.abs());
    let y = Target::Values(soft);
    check(
        "cce",
        &spec,
        &x,
        &y,
        KerasLoss::CategoricalCrossentropy { from_logits: false },
    );
    let spec = SequentialBuilder::new("m", &[Some(4), Some(3)], false)
        .rnn(LSTM, 3, |_| {})
        .dense(3, DenseActivation::Elementwise(Activation::Linear))
        .build()
        .unwrap();
    let y = Target::Classes(ArrayD::from_shape_vec(IxDyn(&[2]), vec![2, 0]).unwrap());
    check(
        "scce logits",
        &spec,
        &x,
        &y,
        KerasLoss::SparseCategoricalCrossentropy { from_logits: true },
    );
    let y = Target::Values(
        ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![1., 0., 1., 0., 1., 1.]).unwrap(),
    );
    check(
        "bce logits",
        &spec,
        &x,
        &y,
        KerasLoss::BinaryCrossentropy { from_logits: true },
    );
}

#[test]
fn f32_reference_matches_f64() {
    let spec = SequentialBuilder::new("m", &[Some(6)], true)
        .embedding(9, 4, true)
        .bidirectional(LSTM, 5, MergeMode::Concat, |r| r.return_sequences = true)
        .rnn(GRU_BEFORE, 4, |_| {})
        .dense(3, DenseActivation::Softmax)
        .build()
        .unwrap();
    let mut rng = Rng::new(5);
    let ids = ModelInput::Tokens(tokens(&mut rng, 6, 9, &[6, 4, 2], true));
    let y = Target::Classes(ArrayD::from_shape_vec(IxDyn(&[3]), vec![0, 1, 2]).unwrap());
    let loss = KerasLoss::SparseCategoricalCrossentropy { from_logits: false };
    let w64 = random_weights(&spec, 3);
    let w32: Weights<f32> = w64
        .iter()
        .map(|(k, v)| (k.clone(), v.mapv(|x| x as f32)))
        .collect();
    let w64r: Weights<f64> = w32
        .iter()
        .map(|(k, v)| (k.clone(), v.mapv(f64::from)))
        .collect();
    let a = evaluate_weights(&spec, &w32, &ids, &y, loss).unwrap();
    let b = evaluate_weights(&spec, &w64r, &ids, &y, loss).unwrap();
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-5 + 1e-4 * y.abs();
    assert!(close(a.loss, b.loss));
    for (k, g) in &b.grads {
        assert!(g.iter().any(|v| v.abs() > 1e-4), "{k} is all ~0");
        for (x, y) in a.grads[k].iter().zip(g.iter()) {
            assert!(close(*x, *y), "{k}: {x} vs {y}");
        }
    }
}
