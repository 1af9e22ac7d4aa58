//! Weight import and export: PyTorch state_dict names, Keras kernels, safetensors files.
//! The canonical layout inside the crate is PyTorch's (DESIGN.md §3).

pub(crate) mod keras;
pub mod safetensors_io;
pub(crate) mod torch;

use std::collections::BTreeMap;

use ndarray::{Array1, Array2, ArrayD, ArrayViewD, Ix1, Ix2};

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

/// One layer-direction's weights (or gradients) in PyTorch layout, for any cell:
/// `w_ih (G·H, In)`, `w_hh (G·H, P)`, `b_ih`, `b_hh (G·H)`, `w_hr (P, H)` (LSTM projection).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CellWeights {
    pub w_ih: Array2<f32>,
    pub w_hh: Array2<f32>,
    pub b_ih: Array1<f32>,
    pub b_hh: Array1<f32>,
    pub w_hr: Option<Array2<f32>>,
}

pub(crate) fn to2(v: ArrayViewD<f32>, name: &str) -> Result<Array2<f32>> {
    v.to_owned()
        .into_dimensionality::<Ix2>()
        .map_err(|e| Error::Weights(format!("{name}: {e}")))
}

pub(crate) fn to1(v: ArrayViewD<f32>, name: &str) -> Result<Array1<f32>> {
    v.to_owned()
        .into_dimensionality::<Ix1>()
        .map_err(|e| Error::Weights(format!("{name}: {e}")))
}
