//! Initializers, losses against the crate's `cpu_loss`, and multi-output models.

use ndarray::{ArrayD, IxDyn};

use super::backend::{CpuBackend, ModelInput, Precision};
use super::builder::SequentialBuilder;
use super::init::{Rng, draw};
use super::loss::{KerasLoss, Target, keras_loss};
use super::model::Sequential;
use super::spec::{CellKind, DenseActivation, Init, MergeMode};
use super::weights::ModelWeights;
use crate::cpu::Activation;
use crate::train::{LossKind, cpu_loss};

#[test]
fn initializers_follow_keras_distributions() {
    let mut rng = Rng::new(9);
    let k = draw(&mut rng, &Init::GlorotUniform, &[20, 80], "k").unwrap();
    let limit = (6.0f64 / 100.0).sqrt();
    assert!(k.iter().all(|v| v.abs() <= limit));
    let max = k.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(max > 0.9 * limit, "max {max} of limit {limit}");
    let mean = k.iter().sum::<f64>() / k.len() as f64;
    assert!(mean.abs() < 0.01, "mean {mean}");
    // Orthogonal (U, 4U): rows orthonormal; (8, 3): columns orthonormal.
    for shape in [[5usize, 20], [8, 3]] {
        let q = draw(&mut rng, &Init::Orthogonal { gain: 1.0 }, &shape, "r").unwrap();
        let q = q.into_dimensionality::<ndarray::Ix2>().unwrap();
        let g = if shape[0] < shape[1] {
            q.dot(&q.t())
        } else {
            q.t().dot(&q)
        };
        for ((i, j), v) in g.indexed_iter() {
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((v - want).abs() < 1e-12, "{shape:?} ({i},{j}) = {v}");
        }
    }
    let b = draw(
        &mut rng,
        &Init::UnitForgetBias {
            units: 3,
            base: Box::new(Init::Zeros),
        },
        &[12],
        "b",
    )
    .unwrap();
    assert_eq!(
        b.iter().copied().collect::<Vec<_>>(),
        [0., 0., 0., 1., 1., 1., 0., 0., 0., 0., 0., 0.]
    );
    let n = draw(
        &mut rng,
        &Init::TruncatedNormal {
            mean: 1.0,
            stddev: 0.5,
        },
        &[2000],
        "n",
    )
    .unwrap();
    assert!(n.iter().all(|v| (v - 1.0).abs() <= 1.0));
    let sd = (n.iter().map(|v| (v - 1.0) * (v - 1.0)).sum::<f64>() / 2000.0).sqrt();
    assert!((0.38..0.5).contains(&sd), "truncated sd {sd}");
}

#[test]
fn fresh_weights_are_reproducible_and_keras_shaped() {
    let spec = SequentialBuilder::new("m", &[Some(7)], true)
        .embedding(30, 4, true)
        .rnn(
            CellKind::Lstm {
                unit_forget_bias: true,
            },
            5,
            |_| {},
        )
        .dense(2, DenseActivation::Softmax)
        .build()
        .unwrap();
    let a = ModelWeights::fresh(&spec, 3).unwrap();
    assert_eq!(a, ModelWeights::fresh(&spec, 3).unwrap());
    assert_ne!(a, ModelWeights::fresh(&spec, 4).unwrap());
    let e = a.get("embedding/embeddings").unwrap();
    assert!(e.iter().all(|v| v.abs() <= 0.05) && e.iter().any(|v| v.abs() > 0.04));
    let bias = a.get("lstm/lstm_cell/bias").unwrap();
    assert_eq!(bias.iter().filter(|&&v| v == 1.0).count(), 5);
    assert!(a.get("dense/bias").unwrap().iter().all(|&v| v == 0.0));
}

#[test]
fn unmasked_losses_agree_with_the_crate_cpu_loss() {
    let p = ArrayD::from_shape_fn(IxDyn(&[3, 2, 4]), |i| {
        0.05 + 0.9 * ((i[0] * 7 + i[1] * 3 + i[2]) % 11) as f64 / 10.0
    });
    let y = ArrayD::from_shape_fn(IxDyn(&[3, 2, 4]), |i| {
        ((i[0] + 2 * i[1] + i[2]) % 5) as f64 / 4.0
    });
    for (ours, theirs) in [
        (KerasLoss::MeanSquaredError, LossKind::Mse),
        (KerasLoss::MeanAbsoluteError, LossKind::Mae),
        (
            KerasLoss::BinaryCrossentropy { from_logits: false },
            LossKind::BinaryCrossEntropy { from_logits: false },
        ),
        (
            KerasLoss::BinaryCrossentropy { from_logits: true },
            LossKind::BinaryCrossEntropy { from_logits: true },
        ),
        (
            KerasLoss::CategoricalCrossentropy { from_logits: true },
            LossKind::SoftmaxCrossEntropy,
        ),
    ] {
        let (a, ga) = keras_loss(ours, p.view(), &Target::Values(y.clone()), None).unwrap();
        let (b, gb) = cpu_loss(theirs, p.view(), y.view()).unwrap();
        assert!((a - b).abs() < 1e-12, "{ours:?}: {a} vs {b}");
        for (u, v) in ga.iter().zip(gb.iter()) {
            assert!((u - v).abs() < 1e-12, "{ours:?}: {u} vs {v}");
        }
    }
}

#[test]
fn masked_loss_is_the_mean_over_valid_steps() {
    let p = ArrayD::from_shape_fn(IxDyn(&[2, 3, 1]), |i| (i[0] * 3 + i[1]) as f64);
    let y = Target::Values(ArrayD::zeros(IxDyn(&[2, 3, 1])));
    let mask = ndarray::arr2(&[[false, true, true], [true, false, false]]).into_dyn();
    let (l, g) = keras_loss(KerasLoss::MeanSquaredError, p.view(), &y, Some(mask.view())).unwrap();
    // Valid values 1, 2, 3 → (1 + 4 + 9) / 3.
    assert!((l - 14.0 / 3.0).abs() < 1e-12);
    assert_eq!(g[[0, 0, 0]], 0.0);
    assert!((g[[1, 0, 0]] - 2.0 * 3.0 / 3.0).abs() < 1e-12);
    let none = ndarray::Array2::from_elem((2, 3), false).into_dyn();
    let (l, g) = keras_loss(KerasLoss::MeanSquaredError, p.view(), &y, Some(none.view())).unwrap();
    assert_eq!(l, 0.0);
    assert!(g.iter().all(|&v| v == 0.0));
}

#[test]
fn return_state_and_unmerged_directions_give_several_outputs() {
    let spec = SequentialBuilder::new("m", &[Some(4), Some(2)], false)
        .bidirectional(
            CellKind::Gru { reset_after: true },
            3,
            MergeMode::None,
            |r| {
                r.return_state = true;
            },
        )
        .build()
        .unwrap();
    assert_eq!(spec.output_shapes().len(), 4);
    let model = Sequential::new(spec.clone(), ModelWeights::fresh(&spec, 1).unwrap()).unwrap();
    let x = ModelInput::Values(ArrayD::from_shape_fn(IxDyn(&[2, 4, 2]), |i| {
        (i[0] + i[1] * 2 + i[2]) as f64 / 7.0 - 0.5
    }));
    let cpu = CpuBackend {
        precision: Precision::F64,
    };
    let out = model.predict(&cpu, &x).unwrap();
    assert_eq!(out.len(), 4);
    // A GRU's last output is its final state, in each direction.
    assert_eq!(out[0], out[2]);
    assert_eq!(out[1], out[3]);
    assert!(out[0].iter().any(|v| v.abs() > 1e-3));
    let y = Target::Values(ArrayD::zeros(IxDyn(&[2, 3])));
    let e = model
        .evaluate(&cpu, &x, &y, KerasLoss::MeanSquaredError)
        .unwrap_err();
    assert!(e.to_string().contains("4 outputs"), "{e}");
    let lstm = SequentialBuilder::new("m", &[Some(4), Some(2)], false)
        .rnn(
            CellKind::Lstm {
                unit_forget_bias: true,
            },
            3,
            |r| r.return_state = true,
        )
        .build()
        .unwrap();
    let model = Sequential::new(lstm.clone(), ModelWeights::fresh(&lstm, 2).unwrap()).unwrap();
    let out = model.predict(&cpu, &x).unwrap();
    assert_eq!(out.len(), 3);
    assert_eq!(out[0], out[1]);
    assert_ne!(out[1], out[2]);
    let _ = Activation::Tanh;
}

#[test]
fn stateful_layers_carry_states_across_calls() {
    let spec = SequentialBuilder::new("m", &[Some(6), Some(2)], false)
        .batch_size(2)
        .rnn(
            CellKind::Lstm {
                unit_forget_bias: true,
            },
            3,
            |r| {
                r.stateful = true;
                r.return_sequences = true;
            },
        )
        .rnn(CellKind::Gru { reset_after: false }, 2, |r| {
            r.stateful = true;
            r.return_sequences = true;
        })
        .build()
        .unwrap();
    let model = Sequential::new(spec.clone(), ModelWeights::fresh(&spec, 5).unwrap()).unwrap();
    let x = ArrayD::from_shape_fn(IxDyn(&[2, 6, 2]), |i| {
        ((i[0] * 5 + i[1] * 3 + i[2]) % 7) as f64 / 3.0 - 1.0
    });
    let cpu = CpuBackend {
        precision: Precision::F64,
    };
    let whole = model.predict(&cpu, &ModelInput::Values(x.clone())).unwrap();
    let mut states = super::backend::RnnStates::new();
    let mut halves = Vec::new();
    for r in [0..3, 3..6] {
        let part = x.slice(ndarray::s![.., r, ..]).to_owned().into_dyn();
        halves.push(
            cpu.predict_stateful(&model, &ModelInput::Values(part), &mut states)
                .unwrap()
                .remove(0),
        );
    }
    assert_eq!(states.len(), 2);
    assert_eq!(states["lstm"].len(), 2);
    let joined =
        ndarray::concatenate(ndarray::Axis(1), &[halves[0].view(), halves[1].view()]).unwrap();
    for (a, b) in joined.iter().zip(whole[0].iter()) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    // Without the carried states the second half differs.
    let fresh = model
        .predict(
            &cpu,
            &ModelInput::Values(x.slice(ndarray::s![.., 3..6, ..]).to_owned().into_dyn()),
        )
        .unwrap();
    assert!(
        fresh[0]
            .iter()
            .zip(halves[1].iter())
            .any(|(a, b)| (a - b).abs() > 1e-3)
    );
}

#[test]
fn targets_and_token_inputs_are_cast_like_keras() {
    let p = ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![0.2, 0.3, 0.5, 0.6, 0.3, 0.1]).unwrap();
    let sparse = KerasLoss::SparseCategoricalCrossentropy { from_logits: false };
    let ints = Target::Classes(ArrayD::from_shape_vec(IxDyn(&[2]), vec![2, 0]).unwrap());
    let floats = Target::Values(ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![2.0, 0.0]).unwrap());
    let a = keras_loss(sparse, p.view(), &ints, None).unwrap();
    let b = keras_loss(sparse, p.view(), &floats, None).unwrap();
    assert!((a.0 - (-(0.5f64.ln() + 0.6f64.ln()) / 2.0)).abs() < 1e-12);
    assert_eq!(a.0, b.0);
    assert_eq!(a.1, b.1);
    let half = Target::Values(ArrayD::from_shape_vec(IxDyn(&[2]), vec![2.5, 0.0]).unwrap());
    assert!(keras_loss(sparse, p.view(), &half, None).is_err());
    let bce = KerasLoss::BinaryCrossentropy { from_logits: false };
    let labels =
        Target::Classes(ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![0, 1, 1, 0, 0, 1]).unwrap());
    let same = Target::Values(labels_f64());
    assert_eq!(
        keras_loss(bce, p.view(), &labels, None).unwrap().0,
        keras_loss(bce, p.view(), &same, None).unwrap().0
    );
    // Token ids given as floats (Keras casts them) give the same prediction.
    let spec = SequentialBuilder::new("m", &[Some(3)], true)
        .embedding(5, 2, true)
        .rnn(CellKind::SimpleRnn, 2, |_| {})
        .build()
        .unwrap();
    let model = Sequential::new(spec.clone(), ModelWeights::fresh(&spec, 1).unwrap()).unwrap();
    let cpu = CpuBackend {
        precision: Precision::F64,
    };
    let ids = ndarray::arr2(&[[0i64, 3, 4], [1, 2, 0]]);
    let a = model
        .predict(&cpu, &ModelInput::Tokens(ids.clone()))
        .unwrap();
    let b = model
        .predict(&cpu, &ModelInput::Values(ids.mapv(|v| v as f64).into_dyn()))
        .unwrap();
    assert_eq!(a, b);
    let bad = ModelInput::Values(ArrayD::from_elem(IxDyn(&[2, 3]), 0.5));
    assert!(model.predict(&cpu, &bad).is_err());
}

fn labels_f64() -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(&[2, 3]), vec![0., 1., 1., 0., 0., 1.]).unwrap()
}
