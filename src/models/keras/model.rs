//! [`Sequential`]: a Keras model's structure and weights, ready to run on a backend.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ndarray::ArrayD;

use super::backend::{Evaluation, ModelBackend, ModelInput};
use super::config::{self, ParsedConfig};
use super::config_writer;
use super::loss::{KerasLoss, Target, regularization};
use super::plan::ModelSpec;
use super::summary;
use super::weights::ModelWeights;
use crate::error::Result;

/// A Keras Sequential model: its checked structure and its weights.
#[derive(Clone, Debug)]
pub struct Sequential {
    spec: ModelSpec,
    weights: ModelWeights,
}

impl Sequential {
    /// A model from its spec and weights (checked against each other).
    pub fn new(spec: ModelSpec, weights: ModelWeights) -> Result<Self> {
        let tensors = weights.to_tensors("");
        let weights = ModelWeights::from_tensors(&spec, &tensors, "")?;
        Ok(Self { spec, weights })
    }

    /// A model from a Keras config (JSON text of `model.get_config()` or a `.keras` file's
    /// `config.json`) with fresh weights drawn from its initializers with `seed`.
    pub fn from_config_str(text: &str, seed: u64) -> Result<Self> {
        let ParsedConfig { spec, .. } = config::parse_str(text)?;
        let weights = ModelWeights::fresh(&spec, seed)?;
        Ok(Self { spec, weights })
    }

    /// The file [`Sequential::save`] writes the config to.
    pub const CONFIG_FILE: &str = config_writer::CONFIG_FILE;
    /// The file [`Sequential::save`] writes the weights to.
    pub const WEIGHTS_FILE: &str = config_writer::WEIGHTS_FILE;

    /// The Keras config as pretty JSON text: `model.get_config()`'s dict
    /// ([`ModelSpec::to_config`]), which [`Sequential::from_config_str`] reads back.
    pub fn to_config_json(&self) -> Result<String> {
        let v = self.spec.to_config()?;
        serde_json::to_string_pretty(&v).map_err(|e| {
            crate::error::Error::Format(format!("model {:?}: config JSON: {e}", self.spec.name))
        })
    }

    /// Saves the model into the directory `dir` (created if missing, files replaced):
    /// [`Sequential::CONFIG_FILE`] (`config.json`, the `.keras` archive form of the config,
    /// [`ModelSpec::to_keras_file_config`]) and [`Sequential::WEIGHTS_FILE`]
    /// (`model.weights.safetensors`: every weight as f32 keyed by its Keras path, e.g.
    /// `lstm/lstm_cell/kernel`, `dense/bias`).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        config_writer::save(&self.spec, &self.weights, dir.as_ref())
    }

    /// Loads a model [`Sequential::save`] wrote into `dir` (or any Keras config named
    /// `config.json` beside Keras-path weights in `model.weights.safetensors`). Every weight
    /// of the config is required with its Keras shape and no other is accepted; errors are
    /// typed (`Error::Io`, `Config`, `Unsupported`, `Weights`, `Limit`) and name the file
    /// and, for weights, the key.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let (spec, weights) = config_writer::load(dir.as_ref())?;
        Ok(Self { spec, weights })
    }

    /// The structure.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The weights.
    pub fn weights(&self) -> &ModelWeights {
        &self.weights
    }

    /// The weights, to change them (shapes are kept by [`ModelWeights::set`]).
    pub fn weights_mut(&mut self) -> &mut ModelWeights {
        &mut self.weights
    }

    /// Keras' `count_params()`.
    pub fn param_count(&self) -> usize {
        self.spec.param_count()
    }

    /// Keras-style summary table ending with `Total params: N`.
    pub fn summary(&self) -> String {
        summary::summary(&self.spec)
    }

    /// Paths of the weights that have gradients.
    pub fn trainable_paths(&self) -> BTreeSet<String> {
        self.spec
            .weights()
            .filter(|w| w.trainable)
            .map(|w| w.path.clone())
            .collect()
    }

    /// The regularization loss `Σ l1·|w| + l2·w²` over regularized weights and its gradient
    /// by path (computed in f64 from the f32 weights).
    pub fn regularization(&self) -> (f64, BTreeMap<String, ArrayD<f64>>) {
        let mut total = 0.0;
        let mut grads = BTreeMap::new();
        for w in self.spec.weights() {
            if let (Some(r), Some(v)) = (w.regularizer, self.weights.get(&w.path)) {
                let (l, g) = regularization(r.l1, r.l2, v.mapv(f64::from).view());
                total += l;
                grads.insert(w.path.clone(), g);
            }
        }
        (total, grads)
    }

    /// The model's outputs on `backend`.
    pub fn predict(&self, backend: &dyn ModelBackend, x: &ModelInput) -> Result<Vec<ArrayD<f64>>> {
        backend.predict(self, x)
    }

    /// Prediction, loss and gradients on `backend`.
    pub fn evaluate(
        &self,
        backend: &dyn ModelBackend,
        x: &ModelInput,
        y: &Target,
        loss: KerasLoss,
    ) -> Result<Evaluation> {
        backend.evaluate(self, x, y, loss)
    }
}
