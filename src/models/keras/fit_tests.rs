//! The device training step against the CPU reference (loss, and the gradient seen through a
//! plain SGD update, for every loss, with masks and regularizers), and `fit`'s behaviour:
//! it learns, early stopping stops and restores, dropout is live only in training, batched
//! prediction and evaluation agree with the one-shot ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use ndarray::{Array2, ArrayD, IxDyn};

use super::backend::{CpuBackend, ModelBackend, ModelInput, Precision};
use super::builder::SequentialBuilder;
use super::fit::{EarlyStopping, FitOptions, keras_optimizer};
use super::gpu::GpuBackend;
use super::init::Rng;
use super::loss::{KerasLoss, Target};
use super::metrics::Metric;
use super::model::Sequential;
use super::session::Session;
use super::spec::{CellKind, DenseActivation, MergeMode, Regularizer};
use crate::context::Context;
use crate::cpu::Activation;
use crate::error::Error;
use crate::train::OptimizerConfig;

const LSTM: CellKind = CellKind::Lstm {
    unit_forget_bias: true,
};
const SIGMOID: DenseActivation = DenseActivation::Elementwise(Activation::Sigmoid);
const LINEAR: DenseActivation = DenseActivation::Elementwise(Activation::Linear);

fn backend() -> GpuBackend {
    GpuBackend::new(Arc::new(Context::new().expect(
        "GPU tests need an adapter (scripts/test.sh installs lavapipe)",
    )))
}

fn values(rng: &mut Rng, shape: &[usize]) -> ArrayD<f64> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), || 2.0 * rng.unit() - 1.0)
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
        "{what}: {a} vs reference {b}"
    );
}

/// One device step with SGD(lr) changes every weight by `-lr · gradient`; the gradient and
/// the loss are the CPU reference's (inference mode: these models have no dropout).
fn check_step(name: &str, model: &Sequential, x: &ModelInput, y: &Target, loss: KerasLoss) {
    let be = backend();
    let cpu = CpuBackend {
        precision: Precision::F64,
    };
    let reference = cpu.evaluate(model, x, y, loss).expect(name);
    let lr = 0.5f32;
    let mut s = Session::new(
        be.ctx(),
        model,
        Some((3, OptimizerConfig::sgd(lr, 0.0, false))),
    )
    .expect(name);
    let before = be.ctx().totals();
    let out = s.train_step(model, x, y, loss, true).expect(name);
    // The whole step is one submit and one read-back (the row losses, the penalty partials
    // and the prediction together).
    let step = be.ctx().totals().since(&before);
    assert_eq!((step.submits, step.read_backs), (1, 1), "{name}: {step:?}");
    close(out.loss, reference.loss, &format!("{name}: loss"));
    let pred = out.pred.expect("asked for the prediction");
    for (a, b) in pred.iter().zip(reference.pred.iter()) {
        close(f64::from(*a), *b, &format!("{name}: prediction"));
    }
    let after = s.weights().expect(name);
    let mut live = 0;
    for (path, g) in &reference.grads {
        let w0 = model.weights().get(path).expect("weight");
        let w1 = &after[path];
        for ((a, b), gr) in w0.iter().zip(w1.iter()).zip(g.iter()) {
            let implied = f64::from(a - b) / f64::from(lr);
            // f32 weights: the difference of two f32 values near |w| carries ~|w|·6e-8 / lr.
            let tol = 2e-5 + 1e-3 * gr.abs() + f64::from(a.abs()) * 3e-7 / f64::from(lr);
            assert!(
                (implied - gr).abs() <= tol,
                "{name}: {path}: implied gradient {implied:e} vs reference {gr:e}"
            );
            live += usize::from(gr.abs() > 1e-4);
        }
    }
    assert!(live > 0, "{name}: no live gradient to compare");
}

fn seq_model(loss_head: DenseActivation, units: usize, reg: bool) -> Sequential {
    let r = reg.then_some(Regularizer { l1: 0.01, l2: 0.02 });
    let spec = SequentialBuilder::new("m", &[Some(5), Some(3)], false)
        .masking(0.0)
        .rnn(LSTM, 4, |c| {
            c.return_sequences = true;
            c.kernel_regularizer = r;
            c.bias_regularizer = r;
        })
        .bidirectional(
            CellKind::Gru { reset_after: true },
            3,
            MergeMode::Sum,
            |_| {},
        )
        .dense(units, loss_head)
        .build()
        .unwrap();
    Sequential::new(
        spec.clone(),
        super::weights::ModelWeights::fresh(&spec, 5).unwrap(),
    )
    .unwrap()
}

/// A (3, 5, 3) batch pre-padded with zero steps (rows of length 5, 3, 1).
fn padded_values(rng: &mut Rng) -> ModelInput {
    let mut x = values(rng, &[3, 5, 3]);
    for (b, n) in [5usize, 3, 1].iter().enumerate() {
        for t in 0..5 - n {
            for f in 0..3 {
                x[[b, t, f]] = 0.0;
            }
        }
    }
    ModelInput::Values(x)
}

#[test]
fn device_step_matches_the_reference_for_every_loss() {
    let mut rng = Rng::new(9);
    let x = padded_values(&mut rng);
    let bce = Target::Values(ArrayD::from_shape_vec(IxDyn(&[3, 1]), vec![1.0, 0.0, 1.0]).unwrap());
    let m = seq_model(SIGMOID, 1, true);
    check_step(
        "bce",
        &m,
        &x,
        &bce,
        KerasLoss::BinaryCrossentropy { from_logits: false },
    );
    let m = seq_model(LINEAR, 1, false);
    check_step(
        "bce logits",
        &m,
        &x,
        &bce,
        KerasLoss::BinaryCrossentropy { from_logits: true },
    );
    let reals = Target::Values(values(&mut rng, &[3, 2]));
    let m = seq_model(LINEAR, 2, true);
    check_step("mse", &m, &x, &reals, KerasLoss::MeanSquaredError);
    check_step("mae", &m, &x, &reals, KerasLoss::MeanAbsoluteError);
    let classes = Target::Classes(ArrayD::from_shape_vec(IxDyn(&[3]), vec![2, 0, 1]).unwrap());
    let m = seq_model(DenseActivation::Softmax, 3, false);
    check_step(
        "sparse cce",
        &m,
        &x,
        &classes,
        KerasLoss::SparseCategoricalCrossentropy { from_logits: false },
    );
    let onehot = Target::Values(
        ArrayD::from_shape_vec(
            IxDyn(&[3, 3]),
            vec![0.2, 0.0, 0.8, 1.0, 0.0, 0.0, 0.0, 0.5, 0.5],
        )
        .unwrap(),
    );
    check_step(
        "cce",
        &m,
        &x,
        &onehot,
        KerasLoss::CategoricalCrossentropy { from_logits: false },
    );
    let m = seq_model(LINEAR, 3, false);
    check_step(
        "cce logits",
        &m,
        &x,
        &classes,
        KerasLoss::SparseCategoricalCrossentropy { from_logits: true },
    );
}

#[test]
fn device_step_matches_the_reference_on_a_masked_sequence_loss() {
    // Embedding(mask_zero) → LSTM(return_sequences) → TimeDistributed(Dense): the loss is
    // averaged over the valid steps only.
    let spec = SequentialBuilder::new("m", &[Some(4)], true)
        .embedding(7, 3, true)
        .rnn(LSTM, 3, |c| c.return_sequences = true)
        .time_distributed_dense(2, LINEAR)
        .build()
        .unwrap();
    let m = Sequential::new(
        spec.clone(),
        super::weights::ModelWeights::fresh(&spec, 2).unwrap(),
    )
    .unwrap();
    let x =
        ModelInput::Tokens(Array2::from_shape_vec((2, 4), vec![0, 3, 5, 1, 2, 6, 0, 0]).unwrap());
    let mut rng = Rng::new(4);
    let y = Target::Values(values(&mut rng, &[2, 4, 2]));
    check_step(
        "masked sequence mse",
        &m,
        &x,
        &y,
        KerasLoss::MeanSquaredError,
    );
}

/// y = 1 when the sum of the first feature over the sequence is positive.
fn sign_task(n: usize, seed: u64) -> (ModelInput, Target) {
    let mut rng = Rng::new(seed);
    let x = values(&mut rng, &[n, 6, 2]);
    let y: Vec<f64> = (0..n)
        .map(|b| f64::from(u8::from((0..6).map(|t| x[[b, t, 0]]).sum::<f64>() > 0.0)))
        .collect();
    (
        ModelInput::Values(x),
        Target::Values(ArrayD::from_shape_vec(IxDyn(&[n, 1]), y).unwrap()),
    )
}

fn small_model(seed: u64, dropout: f64) -> Sequential {
    small_model_with(seed, dropout, (0.0, 0.0))
}

/// SimpleRNN(8, dropout, recurrent_dropout = `rnn_drop`) → Dropout(`dropout`) →
/// Dense(1, sigmoid).
fn small_model_with(seed: u64, dropout: f64, rnn_drop: (f64, f64)) -> Sequential {
    let spec = SequentialBuilder::new("m", &[Some(6), Some(2)], false)
        .rnn(CellKind::SimpleRnn, 8, |r| {
            r.dropout = rnn_drop.0;
            r.recurrent_dropout = rnn_drop.1;
        })
        .dropout(dropout)
        .dense(1, SIGMOID)
        .build()
        .unwrap();
    Sequential::new(
        spec.clone(),
        super::weights::ModelWeights::fresh(&spec, seed).unwrap(),
    )
    .unwrap()
}

#[test]
fn fit_learns_and_evaluate_and_predict_agree_with_the_history() {
    let be = backend();
    let (x, y) = sign_task(96, 1);
    let mut m = small_model(3, 0.0);
    let mut o = FitOptions::new(
        KerasLoss::BinaryCrossentropy { from_logits: false },
        keras_optimizer("adam", 0.02).unwrap(),
    );
    o.epochs = 12;
    o.batch_size = 16;
    o.metrics = vec![Metric::Accuracy];
    o.validation_split = 0.25;
    let h = m.fit(&be, &x, &y, &o).unwrap();
    let loss = h.get("loss").unwrap();
    assert_eq!(loss.len(), 12);
    assert!(loss[11] < 0.6 * loss[0], "loss did not fall: {loss:?}");
    let acc = h.get("accuracy").unwrap();
    assert!(acc[11] >= 0.85, "training accuracy {acc:?}");
    assert_eq!(h.get("val_loss").map(<[f64]>::len), Some(12));
    // The returned model holds the trained weights: evaluating the held-out quarter gives
    // the last val_loss, and the batched prediction is the one-shot one.
    let idx: Vec<usize> = (72..96).collect();
    let (vx, vy) = (
        super::fit::take_input(&x, &idx),
        super::fit::take_target(&y, &idx),
    );
    let ev = m
        .evaluate_metrics(&be, (&vx, &vy), o.loss, &[Metric::Accuracy], 5)
        .unwrap();
    close(ev["loss"], h.get("val_loss").unwrap()[11], "val_loss");
    close(
        ev["accuracy"],
        h.get("val_accuracy").unwrap()[11],
        "val_accuracy",
    );
    let one = m.predict(&be, &vx).unwrap();
    let batched = m.predict_batched(&be, &vx, 7).unwrap();
    for (a, b) in batched[0].iter().zip(one[0].iter()) {
        close(f64::from(*a), *b, "batched prediction");
    }
}

#[test]
fn early_stopping_stops_and_restores_the_best_weights() {
    let be = backend();
    let (x, y) = sign_task(48, 2);
    // Validation targets are the opposite labels: the better the model learns, the worse
    // val_loss gets, so the best epoch is the first.
    let (vx, vy) = sign_task(24, 3);
    let vy = match vy {
        Target::Values(v) => Target::Values(v.mapv(|t| 1.0 - t)),
        t => t,
    };
    let mut m = small_model(4, 0.0);
    let mut o = FitOptions::new(
        KerasLoss::BinaryCrossentropy { from_logits: false },
        keras_optimizer("adam", 0.03).unwrap(),
    );
    o.epochs = 30;
    o.batch_size = 8;
    o.validation_data = Some((vx.clone(), vy.clone()));
    o.early_stopping = Some(EarlyStopping::new("val_loss", 2));
    let h = m.fit(&be, &x, &y, &o).unwrap();
    let vl = h.get("val_loss").unwrap().to_vec();
    let best = h.best_epoch.unwrap();
    assert_eq!(h.stopped_epoch, Some(best + 2), "val_loss {vl:?}");
    assert_eq!(h.epochs_run, best + 3);
    assert!(h.epochs_run < 30);
    let ev = m.evaluate_metrics(&be, (&vx, &vy), o.loss, &[], 8).unwrap();
    close(ev["loss"], vl[best], "restored weights' val_loss");
    assert!(vl[h.epochs_run - 1] > vl[best]);
    // An unlogged monitor is an error naming it.
    o.early_stopping = Some(EarlyStopping::new("val_accuracy", 2));
    match m.fit(&be, &x, &y, &o) {
        Err(Error::Config(msg)) => assert!(msg.contains("val_accuracy"), "{msg}"),
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn dropout_is_live_in_training_steps_only() {
    let be = backend();
    let (x, y) = sign_task(16, 5);
    let loss = KerasLoss::BinaryCrossentropy { from_logits: false };
    let frozen = OptimizerConfig::sgd(0.0, 0.0, false);
    let plain = small_model(6, 0.0);
    let dropped = small_model(6, 0.5);
    let input_dropped = small_model_with(6, 0.0, (0.5, 0.0));
    let recurrent_dropped = small_model_with(6, 0.0, (0.0, 0.5));
    // Same weights (the Dropout has none): the inference losses agree.
    let cpu = CpuBackend {
        precision: Precision::F64,
    };
    let reference = cpu.evaluate(&plain, &x, &y, loss).unwrap().loss;
    let mut losses = BTreeMap::new();
    for (name, m) in [
        ("plain", &plain),
        ("dropout", &dropped),
        ("input dropout", &input_dropped),
        ("recurrent dropout", &recurrent_dropped),
    ] {
        let mut s = Session::new(be.ctx(), m, Some((7, frozen))).unwrap();
        let v: Vec<f64> = (0..3)
            .map(|_| s.train_step(m, &x, &y, loss, false).unwrap().loss)
            .collect();
        losses.insert(name, v);
    }
    for v in &losses["plain"] {
        close(
            *v,
            reference,
            "no dropout: the training loss is the inference loss",
        );
    }
    // With rate 0.5 each step draws a new mask: the losses differ from the inference loss
    // and from each other.
    for key in ["dropout", "input dropout", "recurrent dropout"] {
        let d = &losses[key];
        assert!(
            d.iter().all(|v| (v - reference).abs() > 1e-4),
            "{key}: {d:?} vs {reference}"
        );
        assert!(
            (d[0] - d[1]).abs() > 1e-6 && (d[1] - d[2]).abs() > 1e-6,
            "{key}: {d:?}"
        );
    }
}

#[test]
fn fit_rejects_bad_options() {
    let be = backend();
    let (x, y) = sign_task(8, 1);
    let mut m = small_model(1, 0.0);
    let loss = KerasLoss::MeanSquaredError;
    let mut o = FitOptions::new(loss, keras_optimizer("sgd", 0.1).unwrap());
    o.batch_size = 0;
    assert!(matches!(m.fit(&be, &x, &y, &o), Err(Error::Config(_))));
    o.batch_size = 4;
    o.validation_split = 1.0;
    assert!(matches!(m.fit(&be, &x, &y, &o), Err(Error::Config(_))));
    o.validation_split = 0.0;
    let short = Target::Values(ArrayD::zeros(IxDyn(&[7, 1])));
    assert!(matches!(m.fit(&be, &x, &short, &o), Err(Error::Shape(_))));
    let spec = SequentialBuilder::new("s", &[Some(6), Some(2)], false)
        .batch_size(4)
        .rnn(CellKind::SimpleRnn, 3, |r| r.stateful = true)
        .dense(1, SIGMOID)
        .build()
        .unwrap();
    let mut stateful = Sequential::new(
        spec.clone(),
        super::weights::ModelWeights::fresh(&spec, 1).unwrap(),
    )
    .unwrap();
    match stateful.fit(&be, &x, &y, &o) {
        Err(Error::Unsupported(msg)) => assert!(msg.contains("simple_rnn"), "{msg}"),
        other => panic!("expected Unsupported for a stateful layer, got {other:?}"),
    }
    assert!(matches!(
        keras_optimizer("adagrad", 0.1),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        Metric::from_name("auc"),
        Err(Error::Unsupported(_))
    ));
}
