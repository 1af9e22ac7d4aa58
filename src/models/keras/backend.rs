//! Where a Sequential model runs. [`ModelBackend`] is the seam between the model (its
//! [`ModelSpec`](super::ModelSpec) and [`ModelWeights`](super::ModelWeights)) and an
//! implementation: [`CpuBackend`] (the f32/f64 reference, layer by layer in `cpu/`) today; a
//! device backend built on the crate's layer contract implements the same two methods.

use std::collections::BTreeMap;

use ndarray::{Array2, ArrayD};

use super::cpu::{self, Weights};
use super::loss::{KerasLoss, Target, keras_loss, mask_for, regularization};
use super::model::Sequential;
use super::plan::ModelSpec;
use crate::cpu::Real;
use crate::error::{Error, Result};

/// The model's input.
#[derive(Clone, Debug)]
pub enum ModelInput {
    /// Integer token ids `(B, T)` for a model starting with `Embedding`.
    Tokens(Array2<i64>),
    /// Float features `(B, T, F)` (or `(B, F)` for a Dense-only model).
    Values(ArrayD<f64>),
}

/// One evaluation: the outputs, the loss (including regularization) and the gradient of the
/// loss for every trainable weight, by Keras path.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// The model's output (the prediction).
    pub pred: ArrayD<f64>,
    /// The loss plus every regularization term.
    pub loss: f64,
    /// d loss / d weight for every trainable weight.
    pub grads: BTreeMap<String, ArrayD<f64>>,
}

/// An implementation of a Sequential model's inference-mode forward and gradient.
///
/// Contract (what a device backend must match, checked against [`CpuBackend`] and the model
/// goldens): inference mode (Dropout and recurrent_dropout are identities); Keras masking
/// (from `Embedding(mask_zero)` / `Masking`) carried through every recurrent layer as
/// `cpu::rnn` documents; the loss reduced as [`keras_loss`] documents, plus
/// [`Sequential::regularization`]; gradients for exactly the trainable weights
/// ([`Sequential::trainable_paths`]).
pub trait ModelBackend {
    /// Short name for reports (`cpu`, `gpu`).
    fn name(&self) -> &str;

    /// Every output of the model (one, or several when the last layer returns states or
    /// unmerged directions).
    fn predict(&self, model: &Sequential, x: &ModelInput) -> Result<Vec<ArrayD<f64>>>;

    /// Prediction, loss and gradients (models with a single output).
    fn evaluate(
        &self,
        model: &Sequential,
        x: &ModelInput,
        y: &Target,
        loss: KerasLoss,
    ) -> Result<Evaluation>;
}

/// The precision of the CPU reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// f32, as the GPU computes.
    F32,
    /// f64, for finite-difference checks and goldens.
    F64,
}

/// The CPU reference backend.
#[derive(Clone, Copy, Debug)]
pub struct CpuBackend {
    /// f32 or f64.
    pub precision: Precision,
}

fn cast_weights<T: Real>(model: &Sequential) -> Weights<T> {
    model
        .weights()
        .iter()
        .map(|(k, v)| (k.clone(), v.mapv(|x| T::from_f64(f64::from(x)))))
        .collect()
}

fn predict_t<T: Real>(model: &Sequential, x: &ModelInput) -> Result<Vec<ArrayD<f64>>> {
    let fwd = cpu::forward(model.spec(), &cast_weights::<T>(model), x, None)?;
    Ok(fwd.outputs.iter().map(|o| o.mapv(|v| v.as_f64())).collect())
}

fn evaluate_t<T: Real>(
    model: &Sequential,
    x: &ModelInput,
    y: &Target,
    loss: KerasLoss,
) -> Result<Evaluation> {
    evaluate_weights(model.spec(), &cast_weights::<T>(model), x, y, loss)
}

/// The CPU evaluation on weights already in `T` (what finite-difference tests perturb):
/// forward, the Keras loss on the first output under its mask, backward, and the
/// regularization terms of the weights (computed in `T`).
pub(crate) fn evaluate_weights<T: Real>(
    spec: &ModelSpec,
    w: &Weights<T>,
    x: &ModelInput,
    y: &Target,
    loss: KerasLoss,
) -> Result<Evaluation> {
    let fwd = cpu::forward(spec, w, x, None)?;
    if fwd.outputs.len() != 1 {
        return Err(Error::Unsupported(format!(
            "model {} has {} outputs (return_state or merge_mode=None on its last layer); a \
             loss needs one",
            spec.name,
            fwd.outputs.len()
        )));
    }
    let pred = &fwd.outputs[0];
    let mask = mask_for(pred.shape(), fwd.mask.as_ref());
    let (mut value, dy) = keras_loss(loss, pred.view(), y, mask.as_ref().map(|m| m.view()))?;
    let mut grads = cpu::backward(spec, w, &fwd, dy)?;
    for ws in spec.weights() {
        if let (Some(r), Some(v), Some(g)) =
            (ws.regularizer, w.get(&ws.path), grads.get_mut(&ws.path))
        {
            let (l, rg) = regularization(r.l1, r.l2, v.view());
            value += l;
            g.zip_mut_with(&rg, |a, &b| *a = *a + b);
        }
    }
    Ok(Evaluation {
        pred: pred.mapv(|v| v.as_f64()),
        loss: value,
        grads: grads
            .into_iter()
            .filter(|(k, _)| spec.weights().any(|ws| ws.trainable && &ws.path == k))
            .map(|(k, g)| (k, g.mapv(|v| v.as_f64())))
            .collect(),
    })
}

/// The states of a model's `stateful` recurrent layers between calls, by the layer's weight
/// path prefix (`lstm`, `bidirectional/forward_gru`): `[h, c]` or `[h]`, each `(B, U)`.
/// Empty means zero states (Keras right after `reset_states()`).
pub type RnnStates = BTreeMap<String, Vec<Array2<f64>>>;

fn predict_stateful_t<T: Real>(
    model: &Sequential,
    x: &ModelInput,
    states: &mut RnnStates,
) -> Result<Vec<ArrayD<f64>>> {
    let init: BTreeMap<String, Vec<Array2<T>>> = states
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().map(|a| a.mapv(T::from_f64)).collect()))
        .collect();
    let fwd = cpu::forward(model.spec(), &cast_weights::<T>(model), x, Some(&init))?;
    *states = fwd
        .states
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.iter().map(|a| a.mapv(|e| e.as_f64())).collect(),
            )
        })
        .collect();
    Ok(fwd.outputs.iter().map(|o| o.mapv(|v| v.as_f64())).collect())
}

impl CpuBackend {
    /// Inference that carries the `stateful` layers' states across calls, as Keras does:
    /// each stateful layer starts from `states` (zeros where absent) and leaves its final
    /// states there. Non-stateful layers start from zeros every call.
    pub fn predict_stateful(
        &self,
        model: &Sequential,
        x: &ModelInput,
        states: &mut RnnStates,
    ) -> Result<Vec<ArrayD<f64>>> {
        match self.precision {
            Precision::F32 => predict_stateful_t::<f32>(model, x, states),
            Precision::F64 => predict_stateful_t::<f64>(model, x, states),
        }
    }
}

impl ModelBackend for CpuBackend {
    fn name(&self) -> &str {
        "cpu"
    }

    fn predict(&self, model: &Sequential, x: &ModelInput) -> Result<Vec<ArrayD<f64>>> {
        match self.precision {
            Precision::F32 => predict_t::<f32>(model, x),
            Precision::F64 => predict_t::<f64>(model, x),
        }
    }

    fn evaluate(
        &self,
        model: &Sequential,
        x: &ModelInput,
        y: &Target,
        loss: KerasLoss,
    ) -> Result<Evaluation> {
        match self.precision {
            Precision::F32 => evaluate_t::<f32>(model, x, y, loss),
            Precision::F64 => evaluate_t::<f64>(model, x, y, loss),
        }
    }
}
