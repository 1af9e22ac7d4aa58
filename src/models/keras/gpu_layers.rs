//! The device layers of a Sequential model on the GPU: each Keras layer spec and its Keras-
//! layout weights become a crate layer (`Embedding`, `GpuDense`, `Lstm`/`Gru`/`SimpleRnn` in
//! Keras layout, two of them for Bidirectional).

use std::sync::Arc;

use ndarray::ArrayD;

use super::model::Sequential;
use super::plan::PlannedLayer;
use super::spec::{CellKind, DenseActivation, DenseSpec, LayerKind, MergeMode, RnnSpec};
use crate::context::Context;
use crate::cpu::Activation;
use crate::error::{Error, Result};
use crate::layers::Backend;
use crate::nn::masking::Recurrent;
use crate::nn::{DenseConfig, DenseParams, Embedding, EmbeddingConfig, GpuDense};
use crate::weights::TensorMap;
use crate::{Gru, GruConfig, Lstm, LstmConfig, Nonlinearity, SimpleRnn, SimpleRnnConfig};

/// One layer on the device.
pub(super) enum DevLayer {
    Embedding(Embedding),
    Masking(f32),
    Identity,
    Dense(GpuDense, bool),
    Rnn(Box<dyn Recurrent>, RnnSpec),
    Bidi {
        f: Box<dyn Recurrent>,
        b: Box<dyn Recurrent>,
        fs: RnnSpec,
        merge: MergeMode,
    },
}

fn weight<'a>(model: &'a Sequential, l: &PlannedLayer, i: usize) -> Result<&'a ArrayD<f32>> {
    let path = &l.weights[i].path;
    model
        .weights()
        .get(path)
        .ok_or_else(|| Error::Weights(format!("missing weight {path}")))
}

fn unsupported(what: String) -> Error {
    Error::Unsupported(format!("{what} (the CPU backend runs it)"))
}

/// Whether the device layers apply Keras' recurrent_dropout in training forwards (see
/// `rnn_layer`): off while `train` means "keep tapes for inference-mode gradients".
const TRAINING_RECURRENT_DROPOUT: bool = false;

/// A recurrent direction in Keras layout from the weights starting at `first`.
fn rnn_layer(
    ctx: &Arc<Context>,
    model: &Sequential,
    l: &PlannedLayer,
    r: &RnnSpec,
    first: usize,
    input: usize,
) -> Result<Box<dyn Recurrent>> {
    let mut m = TensorMap::new();
    m.insert("kernel".into(), weight(model, l, first)?.clone());
    m.insert(
        "recurrent_kernel".into(),
        weight(model, l, first + 1)?.clone(),
    );
    if r.use_bias {
        m.insert("bias".into(), weight(model, l, first + 2)?.clone());
    }
    let backend = Backend::Gpu(ctx.clone());
    // recurrent_dropout masks: a seed per layer name and direction (FNV-1a of the name; the
    // model-level seed is to come), so Bidirectional's two layers draw different masks. The
    // rate stays off until a training flag reaches `build`: GpuBackend's gradients are Keras'
    // inference-mode ones (the goldens), recorded with `train = true` only to keep tapes.
    let rd = if TRAINING_RECURRENT_DROPOUT {
        r.recurrent_dropout as f32
    } else {
        0.0
    };
    let seed = r.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, c| {
        (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3)
    }) ^ first as u64;
    Ok(match r.cell {
        CellKind::Lstm { .. } => {
            let mut c = LstmConfig::new(input, r.units);
            c.batch_first = true;
            c.bias = r.use_bias;
            c.activation = r.activation;
            c.recurrent_activation = r.recurrent_activation;
            (c.recurrent_dropout, c.dropout_seed) = (rd, seed);
            Box::new(Lstm::from_keras(c, &m, backend)?)
        }
        CellKind::Gru { reset_after } => {
            let mut c = GruConfig::new(input, r.units);
            c.batch_first = true;
            c.bias = r.use_bias;
            c.reset_after = reset_after;
            c.activation = r.activation;
            c.recurrent_activation = r.recurrent_activation;
            (c.recurrent_dropout, c.dropout_seed) = (rd, seed);
            Box::new(Gru::from_keras(c, &m, backend)?)
        }
        CellKind::SimpleRnn if matches!(r.activation, Activation::Tanh | Activation::Relu) => {
            let mut c = SimpleRnnConfig::new(input, r.units);
            c.batch_first = true;
            c.bias = r.use_bias;
            if r.activation == Activation::Relu {
                c.nonlinearity = Nonlinearity::Relu;
            }
            (c.recurrent_dropout, c.dropout_seed) = (rd, seed);
            Box::new(SimpleRnn::from_keras(c, &m, backend)?)
        }
        _ => {
            return Err(unsupported(format!(
                "{} {} with activation {:?} / recurrent_activation {:?} on the GPU",
                r.cell.class_name(),
                r.name,
                r.activation,
                r.recurrent_activation
            )));
        }
    })
}

fn dense_layer(
    ctx: &Arc<Context>,
    model: &Sequential,
    l: &PlannedLayer,
    d: &DenseSpec,
) -> Result<DevLayer> {
    let k = weight(model, l, 0)?;
    let (i, o) = (k.shape()[0], k.shape()[1]);
    let (act, softmax) = match d.activation {
        DenseActivation::Elementwise(a) => (a, false),
        DenseActivation::Softmax => (Activation::Linear, true),
    };
    if !matches!(
        act,
        Activation::Linear | Activation::Relu | Activation::Tanh | Activation::Sigmoid
    ) {
        return Err(unsupported(format!("Dense {} activation {act:?}", d.name)));
    }
    let kernel = k
        .view()
        .into_dimensionality::<ndarray::Ix2>()
        .map_err(|e| Error::Shape(e.to_string()))?;
    let bias = if d.use_bias {
        weight(model, l, 1)?
            .iter()
            .copied()
            .collect::<ndarray::Array1<f32>>()
    } else {
        ndarray::Array1::zeros(o)
    };
    let p = DenseParams::new(
        DenseConfig::new(i, o, act)?,
        kernel.t().as_standard_layout().into_owned(),
        bias,
    )?;
    Ok(DevLayer::Dense(GpuDense::new(ctx.clone(), &p)?, softmax))
}

pub(super) fn build(ctx: &Arc<Context>, model: &Sequential) -> Result<Vec<DevLayer>> {
    let mut out = Vec::new();
    for l in &model.spec().layers {
        let input = l.input_shape.last().copied().flatten().unwrap_or(0);
        out.push(match &l.spec.kind {
            LayerKind::Embedding {
                input_dim,
                output_dim,
                mask_zero,
                ..
            } => {
                let cfg = EmbeddingConfig {
                    input_dim: *input_dim,
                    output_dim: *output_dim,
                    mask_zero: *mask_zero,
                };
                let t = weight(model, l, 0)?
                    .view()
                    .into_dimensionality::<ndarray::Ix2>()
                    .map_err(|e| Error::Shape(e.to_string()))?;
                DevLayer::Embedding(Embedding::new(ctx.clone(), cfg, t)?)
            }
            LayerKind::Masking { mask_value } => DevLayer::Masking(*mask_value as f32),
            LayerKind::Dropout { .. } => DevLayer::Identity,
            LayerKind::Dense(d) | LayerKind::TimeDistributed(d) => dense_layer(ctx, model, l, d)?,
            LayerKind::Rnn(r) => DevLayer::Rnn(rnn_layer(ctx, model, l, r, 0, input)?, r.clone()),
            LayerKind::Bidirectional {
                forward,
                backward,
                merge,
            } => {
                let nf = if forward.use_bias { 3 } else { 2 };
                DevLayer::Bidi {
                    f: rnn_layer(ctx, model, l, forward, 0, input)?,
                    b: rnn_layer(ctx, model, l, backward, nf, input)?,
                    fs: (**forward).clone(),
                    merge: *merge,
                }
            }
        });
    }
    Ok(out)
}
