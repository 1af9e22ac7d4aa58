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
use crate::nn::{DenseConfig, DenseParams, Embedding, EmbeddingConfig, GpuDense, GpuDropout};
use crate::weights::TensorMap;
use crate::{Gru, GruConfig, Lstm, LstmConfig, Nonlinearity, SimpleRnn, SimpleRnnConfig};

/// One layer on the device.
pub(super) enum DevLayer {
    Embedding(Embedding),
    Masking(f32),
    Identity,
    /// Keras `Dropout` (built for training only; inference builds an `Identity`).
    Dropout(GpuDropout),
    Dense(GpuDense, bool),
    /// A recurrent layer and, in a training build, its input `dropout`.
    Rnn(Box<dyn Recurrent>, RnnSpec, Option<GpuDropout>),
    Bidi {
        f: Box<dyn Recurrent>,
        b: Box<dyn Recurrent>,
        fs: RnnSpec,
        merge: MergeMode,
        /// The two directions' input dropouts (a training build with `dropout > 0`).
        drop: Option<(GpuDropout, GpuDropout)>,
    },
}

/// The seed of the `k`-th dropout of a training build seeded with `seed`.
fn drop_seed(seed: u64, k: &mut u64) -> u64 {
    *k += 1;
    seed ^ k.wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// A recurrent layer's input dropout in a training build.
fn input_dropout(
    ctx: &Arc<Context>,
    r: &RnnSpec,
    train: Option<u64>,
    k: &mut u64,
) -> Result<Option<GpuDropout>> {
    match train {
        Some(seed) if r.dropout > 0.0 => Ok(Some(GpuDropout::new(
            ctx.clone(),
            r.dropout as f32,
            true,
            drop_seed(seed, k),
        )?)),
        _ => Ok(None),
    }
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

/// A recurrent direction in Keras layout from the weights starting at `first`.
fn rnn_layer(
    ctx: &Arc<Context>,
    model: &Sequential,
    l: &PlannedLayer,
    r: &RnnSpec,
    first: usize,
    input: usize,
    train: Option<u64>,
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
    // recurrent_dropout masks: live only in a training build (`train: Some(seed)`); an
    // inference build keeps the rate at 0, since GpuBackend's gradients are Keras'
    // inference-mode ones (the goldens), recorded with `train = true` only to keep tapes.
    // The seed mixes the build's seed with the layer name (FNV-1a) and direction, so
    // Bidirectional's two layers and every layer of a stack draw different masks.
    let rd = if train.is_some() {
        r.recurrent_dropout as f32
    } else {
        0.0
    };
    let seed = r.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, c| {
        (h ^ u64::from(c)).wrapping_mul(0x100_0000_01b3)
    }) ^ first as u64
        ^ train.unwrap_or(0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
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

/// The device layers of `model`. `train: Some(seed)` builds for training: `Dropout` layers
/// and recurrent input dropout are live (seeded from `seed`) in a forward recorded with
/// `train = true`; `None` builds the inference model (every dropout an identity), which the
/// backend's `evaluate` (inference-mode gradients, as the goldens hold) uses.
pub(super) fn build(
    ctx: &Arc<Context>,
    model: &Sequential,
    train: Option<u64>,
) -> Result<Vec<DevLayer>> {
    let mut out = Vec::new();
    let mut k = 0u64;
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
            LayerKind::Dropout { rate } => match train {
                Some(seed) if *rate > 0.0 => DevLayer::Dropout(GpuDropout::new(
                    ctx.clone(),
                    *rate as f32,
                    false,
                    drop_seed(seed, &mut k),
                )?),
                _ => DevLayer::Identity,
            },
            LayerKind::Dense(d) | LayerKind::TimeDistributed(d) => dense_layer(ctx, model, l, d)?,
            LayerKind::Rnn(r) => DevLayer::Rnn(
                rnn_layer(ctx, model, l, r, 0, input, train)?,
                r.clone(),
                input_dropout(ctx, r, train, &mut k)?,
            ),
            LayerKind::Bidirectional {
                forward,
                backward,
                merge,
            } => {
                let nf = if forward.use_bias { 3 } else { 2 };
                let df = input_dropout(ctx, forward, train, &mut k)?;
                let db = input_dropout(ctx, backward, train, &mut k)?;
                DevLayer::Bidi {
                    f: rnn_layer(ctx, model, l, forward, 0, input, train)?,
                    b: rnn_layer(ctx, model, l, backward, nf, input, train)?,
                    fs: (**forward).clone(),
                    merge: *merge,
                    drop: df.zip(db),
                }
            }
        });
    }
    Ok(out)
}
