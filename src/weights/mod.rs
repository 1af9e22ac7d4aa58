//! Weight import and export: PyTorch state_dict names, Keras kernels, safetensors files.
//! The canonical layout inside the crate is PyTorch's (DESIGN.md §3).

pub mod lstm;
pub mod safetensors_io;

use std::collections::BTreeMap;

use ndarray::{ArrayD, ArrayViewD};

use crate::error::{Error, Result};

/// Named f32 tensors, e.g. a PyTorch state_dict or the gradients `backward` returns.
pub type TensorMap = BTreeMap<String, ArrayD<f32>>;

/// Which framework's names and layouts a layer's weights came in (and its gradients go out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    /// `weight_ih_l0`, `weight_hh_l0_reverse`, ...: `(G·H, in)` applied as `x @ W.T`.
    Torch,
    /// `kernel`, `recurrent_kernel`, `bias`: `(in, G·U)` applied as `x @ kernel`.
    Keras,
}

/// Looks a tensor up by exact name, or by a unique `prefix.name` / `prefix/name` suffix (so a
/// whole model's state_dict such as `encoder.lstm.weight_ih_l0` works).
pub(crate) fn lookup<'a>(map: &'a TensorMap, name: &str) -> Result<Option<ArrayViewD<'a, f32>>> {
    if let Some(t) = map.get(name) {
        return Ok(Some(t.view()));
    }
    let hits: Vec<&String> = map
        .keys()
        .filter(|k| {
            k.strip_suffix(name)
                .is_some_and(|p| p.ends_with('.') || p.ends_with('/'))
        })
        .collect();
    match hits.as_slice() {
        [] => Ok(None),
        [one] => Ok(map.get(*one).map(|t| t.view())),
        many => Err(Error::Weights(format!(
            "{name} is ambiguous: {many:?} all end with it; pass one module's tensors"
        ))),
    }
}

/// A required tensor with an exact shape; the error names the tensor and both shapes.
pub(crate) fn require<'a>(
    map: &'a TensorMap,
    name: &str,
    shape: &[usize],
) -> Result<ArrayViewD<'a, f32>> {
    let t = lookup(map, name)?.ok_or_else(|| {
        Error::Weights(format!("missing tensor {name} (expected shape {shape:?})"))
    })?;
    if t.shape() != shape {
        return Err(Error::Weights(format!(
            "{name} has shape {:?}; expected {shape:?}",
            t.shape()
        )));
    }
    Ok(t)
}
