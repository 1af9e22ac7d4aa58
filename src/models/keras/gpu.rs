//! [`GpuBackend`]: a Sequential model on the device, built on the crate's layer contract.
//! Each layer is a device layer (`Embedding`, `GpuDense`, `Lstm`/`Gru`/`SimpleRnn` in Keras
//! layout); Keras masks run through [`MaskedRecurrent`], Bidirectional through two
//! layers and the merge kernels. The forward is one submit; the loss (with its mask and the
//! regularization terms) is computed on the host from the read-back prediction, exactly as
//! [`keras_loss`] defines it; the backward is a second submit, and every trainable weight's
//! gradient is read back under its Keras path.
//!

use std::sync::Arc;

use ndarray::{Array2, ArrayD};

use super::backend::{Evaluation, ModelBackend, ModelInput};
use super::device_params;
use super::gpu_layers::{DevLayer, build};
use super::loss::{KerasLoss, Target, keras_loss};
use super::model::Sequential;
use super::spec::{LayerKind, MergeMode};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::merge::{self, Merge};
use crate::kernels::tensor_ops::{self, SeqLayout, Source};
use crate::kernels::{Recorder, buffers};
use crate::layer::{Layer, OutputGrads, Tape};
use crate::nn::GpuDropout;
use crate::nn::masking::{MaskOptions, MaskedRecurrent, SeqMask};
use crate::tensor::{DType, DeviceTensor};

/// Sequential models on a GPU context.
#[derive(Clone, Debug)]
pub struct GpuBackend {
    ctx: Arc<Context>,
}

impl GpuBackend {
    /// A backend on `ctx`.
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { ctx }
    }

    /// The context it runs on.
    pub fn ctx(&self) -> &Arc<Context> {
        &self.ctx
    }
}

/// The host-side Keras mask `(B, T)` of the model input, when a layer makes one (the loss of
/// a sequence prediction is averaged over its valid steps).
fn host_mask(model: &Sequential, x: &ModelInput) -> Result<Option<Array2<bool>>> {
    let mut mask = None;
    for l in &model.spec().layers {
        match (&l.spec.kind, x) {
            (
                LayerKind::Embedding {
                    mask_zero: true, ..
                },
                ModelInput::Tokens(t),
            ) => {
                mask = Some(t.mapv(|v| v != 0));
            }
            (LayerKind::Masking { mask_value }, ModelInput::Values(v)) if v.ndim() == 3 => {
                let m = v.map_axis(ndarray::Axis(2), |r| r.iter().any(|e| e != mask_value));
                mask = Some(
                    m.into_dimensionality()
                        .map_err(|e| Error::Shape(e.to_string()))?,
                );
            }
            _ => {}
        }
    }
    Ok(mask)
}

/// The mask Keras puts on the loss of a prediction of `pred_shape`: the model's `(B, T)` mask
/// when the prediction is a sequence it covers, else none.
pub(super) fn loss_mask(
    model: &Sequential,
    x: &ModelInput,
    pred_shape: &[usize],
) -> Result<Option<ArrayD<bool>>> {
    Ok(host_mask(model, x)?
        .filter(|m| pred_shape.len() == 3 && m.shape() == &pred_shape[..2])
        .map(|m| m.into_dyn()))
}

/// What one layer's forward left for its backward.
enum Saved {
    None,
    Tape(Tape),
    Masking(SeqMask),
    Softmax {
        dense: Tape,
        y: DeviceTensor,
    },
    Rnn {
        tape: Tape,
        drop: Option<Tape>,
        seq: bool,
        b: usize,
        u: usize,
    },
    Bidi {
        f: Tape,
        b: Tape,
        drop: Option<Box<(Tape, Tape)>>,
        yf: DeviceTensor,
        yb: DeviceTensor,
        seq: bool,
        dims: (usize, usize, usize),
    },
}

/// A recorded forward: the model's outputs and what the backward needs.
pub(super) struct Run {
    pub outputs: Vec<DeviceTensor>,
    saved: Vec<Saved>,
}

/// The recurrent layer's input: `x`, or `x` under the layer's input dropout in training
/// (Keras: one mask per sequence and feature, the same at every step).
fn rnn_input(
    rec: &mut Recorder<'_>,
    drop: Option<&GpuDropout>,
    x: &DeviceTensor,
    train: bool,
) -> Result<(DeviceTensor, Option<Tape>)> {
    match drop {
        Some(d) if train => {
            let f = d.record_forward(rec, x, true)?;
            Ok((f.y, f.tape))
        }
        _ => Ok((x.clone(), None)),
    }
}

/// `dx` through the input dropout `rnn_input` applied.
fn rnn_input_backward(
    rec: &mut Recorder<'_>,
    drop: Option<&GpuDropout>,
    tape: Option<&Tape>,
    dx: DeviceTensor,
) -> Result<DeviceTensor> {
    match (drop, tape) {
        (Some(d), Some(t)) => Layer::record_backward(d, rec, t, &OutputGrads::output(dx))?
            .ok_or_else(|| Error::Device("dropout backward gave no dx".into())),
        _ => Ok(dx),
    }
}

fn f32_tensor(ctx: &Context, shape: Vec<usize>) -> Result<DeviceTensor> {
    DeviceTensor::zeros(ctx, &shape, DType::F32)
}

/// Reverses the time axis of a batch-first `(B, T, F)` tensor.
fn flip(rec: &mut Recorder<'_>, x: &DeviceTensor) -> Result<DeviceTensor> {
    let ctx = rec.ctx();
    let (b, t, f) = (x.shape()[0], x.shape()[1], x.shape()[2]);
    let out = f32_tensor(ctx, x.shape().to_vec())?;
    let bf = SeqLayout { batch_first: true };
    tensor_ops::reorder(rec, (x.buffer(), bf), (out.buffer(), bf), (t, b, f), true)?;
    Ok(out)
}

/// `dst += src` (same length).
fn add_into(rec: &mut Recorder<'_>, dst: &DeviceTensor, src: &DeviceTensor) -> Result<()> {
    tensor_ops::gather(
        rec,
        src.buffer(),
        Source::Offset(0),
        (dst.buffer(), 0),
        dst.len(),
        true,
    )
}

fn keras_merge(m: MergeMode) -> Option<Merge> {
    match m {
        MergeMode::Concat => Some(Merge::Concat),
        MergeMode::Sum => Some(Merge::Sum),
        MergeMode::Mul => Some(Merge::Mul),
        MergeMode::Ave => Some(Merge::Ave),
        MergeMode::None => None,
    }
}

pub(super) fn forward(
    rec: &mut Recorder<'_>,
    layers: &[DevLayer],
    x: &DeviceTensor,
    train: bool,
) -> Result<Run> {
    let mut flow = x.clone();
    let mut mask: Option<SeqMask> = None;
    let mut saved = Vec::new();
    let mut outputs = Vec::new();
    for layer in layers {
        let (outs, s) = match layer {
            DevLayer::Embedding(e) => {
                let f = e.record_forward(rec, &flow, train)?;
                if e.config().mask_zero {
                    mask = Some(SeqMask::from_tokens(rec, &flow)?);
                }
                (vec![f.y], f.tape.map_or(Saved::None, Saved::Tape))
            }
            DevLayer::Masking(v) => {
                let m = SeqMask::from_values(rec, &flow, *v)?;
                let y = m.record_apply(rec, &flow)?;
                mask = Some(m.clone());
                (vec![y], Saved::Masking(m))
            }
            DevLayer::Identity => (vec![flow.clone()], Saved::None),
            // Keras' Dropout passes the mask through unchanged.
            DevLayer::Dropout(d) => {
                let f = d.record_forward(rec, &flow, train)?;
                (vec![f.y], f.tape.map_or(Saved::None, Saved::Tape))
            }
            DevLayer::Dense(d, softmax) => {
                let f = Layer::record_forward(d, rec, &flow, train)?;
                if flow.shape().len() != 3 {
                    mask = None;
                }
                if *softmax {
                    let w = *f.y.shape().last().unwrap_or(&1);
                    let y = f32_tensor(rec.ctx(), f.y.shape().to_vec())?;
                    let spare = buffers::zeros(rec.ctx(), "spare", 1)?;
                    merge::softmax(rec, (f.y.buffer(), y.buffer(), &spare), (f.y.len() / w, w))?;
                    let s = match f.tape {
                        Some(t) => Saved::Softmax {
                            dense: t,
                            y: y.clone(),
                        },
                        None => Saved::None,
                    };
                    (vec![y], s)
                } else {
                    (vec![f.y], f.tape.map_or(Saved::None, Saved::Tape))
                }
            }
            DevLayer::Rnn(l, r, drop) => {
                let m = run_mask(rec, &flow, mask.as_ref())?;
                let (xin, drop) = rnn_input(rec, drop.as_ref(), &flow, train)?;
                let opts = MaskOptions {
                    go_backwards: r.go_backwards,
                    zero_output_for_mask: r.zero_output_for_mask,
                };
                let mr = MaskedRecurrent {
                    layer: l.as_ref(),
                    options: opts,
                };
                let f = mr.record_forward(rec, &xin, &m, train)?;
                let (b, u) = (flow.shape()[0], r.units);
                let y = if r.return_sequences {
                    f.y
                } else {
                    mask = None;
                    f.state[0].reshape(&[b, u])?
                };
                let mut outs = vec![y];
                if r.return_state {
                    for s in &f.state {
                        outs.push(s.reshape(&[b, u])?);
                    }
                }
                let s = match f.tape {
                    Some(tape) => Saved::Rnn {
                        tape,
                        drop,
                        seq: r.return_sequences,
                        b,
                        u,
                    },
                    None => Saved::None,
                };
                (outs, s)
            }
            DevLayer::Bidi {
                f,
                b,
                fs,
                merge: mm,
                drop,
            } => {
                let m = run_mask(rec, &flow, mask.as_ref())?;
                let (xf, df) = rnn_input(rec, drop.as_ref().map(|d| &d.0), &flow, train)?;
                let (xb, db) = rnn_input(rec, drop.as_ref().map(|d| &d.1), &flow, train)?;
                let opts = |go_backwards| MaskOptions {
                    go_backwards,
                    zero_output_for_mask: fs.zero_output_for_mask,
                };
                let ff = MaskedRecurrent {
                    layer: f.as_ref(),
                    options: opts(false),
                }
                .record_forward(rec, &xf, &m, train)?;
                let fb = MaskedRecurrent {
                    layer: b.as_ref(),
                    options: opts(true),
                }
                .record_forward(rec, &xb, &m, train)?;
                let (bsz, t, u) = (flow.shape()[0], flow.shape()[1], fs.units);
                let seq = fs.return_sequences;
                let (yf, yb) = if seq {
                    (ff.y.clone(), flip(rec, &fb.y)?)
                } else {
                    mask = None;
                    (
                        ff.state[0].reshape(&[bsz, u])?,
                        fb.state[0].reshape(&[bsz, u])?,
                    )
                };
                let rows = yf.len() / u;
                let mut outs = match keras_merge(*mm) {
                    None => vec![yf.clone(), yb.clone()],
                    Some(mode) => {
                        let mut shape = yf.shape().to_vec();
                        if mode == Merge::Concat {
                            *shape.last_mut().unwrap_or(&mut 0) *= 2;
                        }
                        let y = f32_tensor(rec.ctx(), shape)?;
                        let spare = buffers::zeros(rec.ctx(), "spare", 1)?;
                        merge::forward(
                            rec,
                            mode,
                            (yf.buffer(), yb.buffer(), y.buffer(), &spare),
                            (rows, u),
                        )?;
                        vec![y]
                    }
                };
                if fs.return_state {
                    for st in ff.state.iter().chain(&fb.state) {
                        outs.push(st.reshape(&[bsz, u])?);
                    }
                }
                let s = match (ff.tape, fb.tape) {
                    (Some(tf), Some(tb)) => Saved::Bidi {
                        f: tf,
                        b: tb,
                        drop: df.zip(db).map(Box::new),
                        yf,
                        yb,
                        seq,
                        dims: (bsz, t, u),
                    },
                    _ => Saved::None,
                };
                (outs, s)
            }
        };
        saved.push(s);
        flow = outs[0].clone();
        outputs = outs;
    }
    Ok(Run { outputs, saved })
}

/// The mask a recurrent layer runs under: the model's, or every step valid.
fn run_mask(rec: &mut Recorder<'_>, x: &DeviceTensor, mask: Option<&SeqMask>) -> Result<SeqMask> {
    match mask {
        Some(m) => Ok(m.clone()),
        None => SeqMask::full(rec.ctx(), x.shape()[0], x.shape()[1]),
    }
}

pub(super) fn backward(
    rec: &mut Recorder<'_>,
    layers: &[DevLayer],
    run: &Run,
    dy: DeviceTensor,
) -> Result<()> {
    let mut g = dy;
    for (layer, s) in layers.iter().zip(&run.saved).rev() {
        let next = match (layer, s) {
            (DevLayer::Embedding(e), Saved::Tape(t)) => {
                e.record_backward(rec, t, &OutputGrads::output(g.clone()))?;
                None
            }
            // dx = dy at valid steps, 0 at masked ones (the mask this layer made).
            (DevLayer::Masking(_), Saved::Masking(mk)) => Some(mk.record_apply(rec, &g)?),
            (DevLayer::Identity, _) => Some(g.clone()),
            (DevLayer::Dropout(d), Saved::Tape(t)) => {
                Layer::record_backward(d, rec, t, &OutputGrads::output(g.clone()))?
            }
            (DevLayer::Dense(d, _), Saved::Tape(t)) => {
                Layer::record_backward(d, rec, t, &OutputGrads::output(g.clone()))?
            }
            (DevLayer::Dense(d, _), Saved::Softmax { dense, y }) => {
                let w = *y.shape().last().unwrap_or(&1);
                let dz = f32_tensor(rec.ctx(), y.shape().to_vec())?;
                let spare = buffers::zeros(rec.ctx(), "spare", 1)?;
                merge::softmax_backward(
                    rec,
                    (y.buffer(), g.buffer(), dz.buffer(), &spare),
                    (y.len() / w, w),
                )?;
                Layer::record_backward(d, rec, dense, &OutputGrads::output(dz))?
            }
            (
                DevLayer::Rnn(l, r, drop),
                Saved::Rnn {
                    tape,
                    drop: dt,
                    seq,
                    b,
                    u,
                },
            ) => {
                let opts = MaskOptions {
                    go_backwards: r.go_backwards,
                    zero_output_for_mask: r.zero_output_for_mask,
                };
                let grads = if *seq {
                    OutputGrads::output(g.clone())
                } else {
                    OutputGrads::final_state(g.reshape(&[1, *b, *u])?)
                };
                let mr = MaskedRecurrent {
                    layer: l.as_ref(),
                    options: opts,
                };
                let dx = mr.record_backward(rec, tape, &grads)?;
                Some(rnn_input_backward(rec, drop.as_ref(), dt.as_ref(), dx)?)
            }
            (
                DevLayer::Bidi {
                    f,
                    b,
                    fs,
                    merge: mm,
                    drop,
                },
                Saved::Bidi {
                    f: tf,
                    b: tb,
                    drop: dt,
                    yf,
                    yb,
                    seq,
                    dims,
                },
            ) => {
                let (bsz, _, u) = *dims;
                let rows = yf.len() / u;
                let da = f32_tensor(rec.ctx(), yf.shape().to_vec())?;
                let db = f32_tensor(rec.ctx(), yb.shape().to_vec())?;
                let mode = keras_merge(*mm).ok_or_else(|| {
                    Error::Unsupported("a loss on Bidirectional merge_mode=None".into())
                })?;
                merge::backward(
                    rec,
                    mode,
                    g.buffer(),
                    (yf.buffer(), yb.buffer()),
                    (da.buffer(), db.buffer()),
                    (rows, u),
                )?;
                let opts = |go_backwards| MaskOptions {
                    go_backwards,
                    zero_output_for_mask: fs.zero_output_for_mask,
                };
                let (gf, gb) = if *seq {
                    (
                        OutputGrads::output(da),
                        OutputGrads::output(flip(rec, &db)?),
                    )
                } else {
                    (
                        OutputGrads::final_state(da.reshape(&[1, bsz, u])?),
                        OutputGrads::final_state(db.reshape(&[1, bsz, u])?),
                    )
                };
                let dxf = MaskedRecurrent {
                    layer: f.as_ref(),
                    options: opts(false),
                }
                .record_backward(rec, tf, &gf)?;
                let dxb = MaskedRecurrent {
                    layer: b.as_ref(),
                    options: opts(true),
                }
                .record_backward(rec, tb, &gb)?;
                let (dxf, dxb) = match (drop, dt.as_deref()) {
                    (Some((d0, d1)), Some((t0, t1))) => (
                        rnn_input_backward(rec, Some(d0), Some(t0), dxf)?,
                        rnn_input_backward(rec, Some(d1), Some(t1), dxb)?,
                    ),
                    _ => (dxf, dxb),
                };
                add_into(rec, &dxf, &dxb)?;
                Some(dxf)
            }
            _ => return Err(Error::Device("a layer's forward kept no tape".into())),
        };
        match next {
            Some(n) => g = n,
            None => break,
        }
    }
    Ok(())
}

pub(super) fn upload_input(
    ctx: &Context,
    model: &Sequential,
    x: &ModelInput,
) -> Result<DeviceTensor> {
    match x {
        ModelInput::Tokens(t) => {
            let ids: Vec<u32> = t
                .iter()
                .map(|&v| {
                    u32::try_from(v).map_err(|_| {
                        Error::Shape(format!("token id {v} is not a vocabulary index"))
                    })
                })
                .collect::<Result<_>>()?;
            let vocab = match model.spec().layers.first().map(|l| &l.spec.kind) {
                Some(LayerKind::Embedding { input_dim, .. }) => Some(*input_dim),
                _ => None,
            };
            if let Some((bad, v)) =
                vocab.and_then(|v| ids.iter().find(|&&i| i as usize >= v).map(|&i| (i, v)))
            {
                return Err(Error::Shape(format!(
                    "token id {bad} is outside the vocabulary (input_dim {v})"
                )));
            }
            DeviceTensor::from_u32(ctx, t.shape(), &ids)
        }
        ModelInput::Values(v) => {
            let data: Vec<f32> = v.iter().map(|&e| e as f32).collect();
            DeviceTensor::from_f32(ctx, v.shape(), &data)
        }
    }
}

fn read64(ctx: &Context, t: &DeviceTensor) -> Result<ArrayD<f64>> {
    Ok(t.to_array(ctx)?.mapv(f64::from))
}

impl GpuBackend {
    fn run(&self, model: &Sequential, x: &ModelInput, train: bool) -> Result<(Vec<DevLayer>, Run)> {
        let layers = build(&self.ctx, model, None)?;
        let xt = upload_input(&self.ctx, model, x)?;
        let mut rec = Recorder::new(&self.ctx);
        let run = forward(&mut rec, &layers, &xt, train)?;
        rec.submit()?;
        Ok((layers, run))
    }
}

impl ModelBackend for GpuBackend {
    fn name(&self) -> &str {
        "gpu"
    }

    fn predict(&self, model: &Sequential, x: &ModelInput) -> Result<Vec<ArrayD<f64>>> {
        let (_, run) = self.run(model, x, false)?;
        run.outputs.iter().map(|o| read64(&self.ctx, o)).collect()
    }

    fn evaluate(
        &self,
        model: &Sequential,
        x: &ModelInput,
        y: &Target,
        loss: KerasLoss,
    ) -> Result<Evaluation> {
        let (layers, run) = self.run(model, x, true)?;
        if run.outputs.len() != 1 {
            return Err(Error::Unsupported(format!(
                "model {} has {} outputs; a loss needs one",
                model.spec().name,
                run.outputs.len()
            )));
        }
        let pred = read64(&self.ctx, &run.outputs[0])?;
        // Keras masks a sequence prediction's loss with the model's mask.
        let mask = loss_mask(model, x, pred.shape())?;
        let (mut value, dy) = keras_loss(loss, pred.view(), y, mask.as_ref().map(|m| m.view()))?;
        let dyt = DeviceTensor::from_array(&self.ctx, dy.mapv(|v| v as f32).view())?;
        let mut rec = Recorder::new(&self.ctx);
        backward(&mut rec, &layers, &run, dyt)?;
        rec.submit()?;
        let params = device_params::keras_params(model, &layers)?;
        let mut grads = device_params::gradients(&self.ctx, &params)?;
        let (reg, rg) = model.regularization();
        value += reg;
        for (k, g) in rg {
            if let Some(a) = grads.get_mut(&k) {
                *a += &g;
            }
        }
        Ok(Evaluation {
            pred,
            loss: value,
            grads,
        })
    }
}
