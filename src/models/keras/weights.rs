//! A model's weights by Keras path: loaded strictly from named tensors (every weight present
//! with its exact shape, nothing extra), or drawn fresh from the layers' initializers.

use std::collections::BTreeMap;

use ndarray::ArrayD;

use super::init::{Rng, draw};
use super::plan::ModelSpec;
use crate::error::{Error, Result};
use crate::weights::TensorMap;

/// Every weight of a model, f32, by Keras path (`lstm/lstm_cell/kernel`, `dense/bias`, …).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelWeights {
    values: BTreeMap<String, ArrayD<f32>>,
}

impl ModelWeights {
    /// Reads the weights named `prefix + path` from `tensors` (e.g. prefix `w/` in the model
    /// goldens, or `""` for a plain weights file). Every weight of `spec` must be there with
    /// its Keras shape, and no other tensor may start with `prefix` (`Error::Weights` naming
    /// the path either way).
    pub fn from_tensors(spec: &ModelSpec, tensors: &TensorMap, prefix: &str) -> Result<Self> {
        let mut values = BTreeMap::new();
        for w in spec.weights() {
            let key = format!("{prefix}{}", w.path);
            let t = tensors.get(&key).ok_or_else(|| {
                Error::Weights(format!(
                    "missing weight {key} (expected shape {:?})",
                    w.shape
                ))
            })?;
            if t.shape() != w.shape.as_slice() {
                return Err(Error::Weights(format!(
                    "{key} has shape {:?}; expected {:?}",
                    t.shape(),
                    w.shape
                )));
            }
            values.insert(w.path.clone(), t.clone());
        }
        if let Some(extra) = tensors
            .keys()
            .filter(|k| k.starts_with(prefix))
            .find(|k| !values.contains_key(&k[prefix.len()..]))
        {
            return Err(Error::Weights(format!(
                "unexpected weight {extra}: model {} has no weight at that path",
                spec.name
            )));
        }
        Ok(Self { values })
    }

    /// Fresh weights from each layer's initializer, reproducible from `seed`.
    pub fn fresh(spec: &ModelSpec, seed: u64) -> Result<Self> {
        let mut rng = Rng::new(seed);
        let mut values = BTreeMap::new();
        for w in spec.weights() {
            let v = draw(&mut rng, &w.init, &w.shape, &w.path)?;
            values.insert(w.path.clone(), v.mapv(|x| x as f32));
        }
        Ok(Self { values })
    }

    /// The weight at `path`.
    pub fn get(&self, path: &str) -> Option<&ArrayD<f32>> {
        self.values.get(path)
    }

    /// Replaces the weight at `path` (same shape; `Error::Weights` otherwise).
    pub fn set(&mut self, path: &str, value: ArrayD<f32>) -> Result<()> {
        let slot = self
            .values
            .get_mut(path)
            .ok_or_else(|| Error::Weights(format!("no weight at {path}")))?;
        if slot.shape() != value.shape() {
            return Err(Error::Weights(format!(
                "{path}: shape {:?} given for a weight of shape {:?}",
                value.shape(),
                slot.shape()
            )));
        }
        *slot = value;
        Ok(())
    }

    /// All weights by path.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &ArrayD<f32>)> {
        self.values.iter()
    }

    /// The weights as named tensors `prefix + path` (to write a safetensors file).
    pub fn to_tensors(&self, prefix: &str) -> TensorMap {
        self.values
            .iter()
            .map(|(k, v)| (format!("{prefix}{k}"), v.clone()))
            .collect()
    }
}
