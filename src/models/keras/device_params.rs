//! The device layers' parameter buffers under their Keras weight paths: what the GPU backend
//! reads gradients from, what a device training step updates, regularizes and reads back.

use std::collections::BTreeMap;

use ndarray::{ArrayD, IxDyn};

use super::gpu_layers::DevLayer;
use super::model::Sequential;
use super::spec::WeightSpec;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::buffers;
use crate::layer::Layer;
use crate::nn::ParamBuffer;

/// One Keras weight on the device.
pub(super) struct KerasParam {
    /// The Keras weight (path, Keras shape, trainable, regularizer).
    pub spec: WeightSpec,
    /// The device buffers (values and the last backward's gradient).
    pub buf: ParamBuffer,
    /// The device holds the transpose of the Keras layout (Dense kernels: `(out, in)`).
    pub transposed: bool,
}

/// Every Keras weight of `model` matched with its device buffers, in Keras order.
pub(super) fn keras_params(model: &Sequential, layers: &[DevLayer]) -> Result<Vec<KerasParam>> {
    let mut out = Vec::new();
    for (pl, dl) in model.spec().layers.iter().zip(layers) {
        let params = match dl {
            DevLayer::Embedding(e) => e.params()?,
            DevLayer::Dense(d, _) => Layer::params(d)?,
            DevLayer::Rnn(l, ..) => l.params()?,
            // The backward direction's weights follow the forward's in Keras order.
            DevLayer::Bidi { f, b, .. } => {
                let mut v = f.params()?;
                v.extend(b.params()?);
                v
            }
            _ => continue,
        };
        // Keras order within a layer: kernel, recurrent_kernel, bias (per direction);
        // Dense: kernel, bias; Embedding: embeddings.
        let dense = matches!(dl, DevLayer::Dense(..));
        let mut ws = pl.weights.iter();
        for p in params {
            if dense && p.name == "bias" && pl.weights.len() < 2 {
                continue; // use_bias = false: the zero bias is not a Keras weight
            }
            let Some(w) = ws.next() else { break };
            let transposed = dense && p.name == "weight";
            let mut shape = p.shape.clone();
            if transposed {
                shape.reverse();
            }
            if shape != w.shape {
                return Err(Error::Shape(format!(
                    "device parameter {} of {} has shape {:?}; the Keras weight is {:?}",
                    p.name, w.path, p.shape, w.shape
                )));
            }
            out.push(KerasParam {
                spec: w.clone(),
                buf: p,
                transposed,
            });
        }
        if let Some(w) = ws.next() {
            return Err(Error::Weights(format!(
                "Keras weight {} has no device parameter",
                w.path
            )));
        }
    }
    Ok(out)
}

/// Keras layout of a device buffer's contents.
fn to_keras(p: &KerasParam, v: Vec<f32>) -> Result<ArrayD<f32>> {
    let a =
        ArrayD::from_shape_vec(IxDyn(&p.buf.shape), v).map_err(|e| Error::Shape(e.to_string()))?;
    Ok(if p.transposed {
        a.t().as_standard_layout().into_owned()
    } else {
        a
    })
}

/// Reads the chosen buffer of every parameter in `params` back in one read-back, by path.
fn read_all<'a>(
    ctx: &Context,
    params: impl Iterator<Item = &'a KerasParam>,
    grad: bool,
) -> Result<BTreeMap<String, ArrayD<f32>>> {
    let params: Vec<&KerasParam> = params.collect();
    let ranges: Vec<buffers::ReadRange<'_>> = params
        .iter()
        .map(|p| {
            let b = if grad { &p.buf.grad } else { &p.buf.param };
            (b, 0, p.buf.len())
        })
        .collect();
    let data = buffers::read_f32(ctx, &ranges)?;
    params
        .iter()
        .zip(data)
        .map(|(p, v)| Ok((p.spec.path.clone(), to_keras(p, v)?)))
        .collect()
}

/// The trainable weights' gradients of the last backward, by Keras path.
pub(super) fn gradients(
    ctx: &Context,
    params: &[KerasParam],
) -> Result<BTreeMap<String, ArrayD<f64>>> {
    Ok(
        read_all(ctx, params.iter().filter(|p| p.spec.trainable), true)?
            .into_iter()
            .map(|(k, v)| (k, v.mapv(f64::from)))
            .collect(),
    )
}

/// The device's current values of every weight, by Keras path, in Keras layout.
pub(super) fn values(
    ctx: &Context,
    params: &[KerasParam],
) -> Result<BTreeMap<String, ArrayD<f32>>> {
    read_all(ctx, params.iter(), false)
}
