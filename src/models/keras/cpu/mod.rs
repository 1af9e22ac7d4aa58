//! The CPU reference of a whole Sequential model, forward and backward, generic over
//! `f32`/`f64` like the crate's other references. Layers run in order on `(B, T, F)` or
//! `(B, F)` arrays carrying Keras' mask `(B, T)`; backward walks them in reverse and returns
//! the gradient of every weight under its Keras path.

mod layers;
pub(crate) mod rnn;

use std::collections::BTreeMap;

use ndarray::{Array2, ArrayD, ArrayView2, Axis, Ix2, Ix3};

use super::backend::ModelInput;
use super::plan::{ModelSpec, PlannedLayer};
use super::spec::{LayerKind, RnnSpec};
use crate::cpu::Real;
use crate::error::{Error, Result};
use rnn::{RnnTape, RnnWeights};

/// Weights by Keras path, in the scalar type of the run.
pub(crate) type Weights<T> = BTreeMap<String, ArrayD<T>>;

// One tape per layer and few layers: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Tape<T> {
    Identity,
    Masking(Array2<bool>),
    Embedding(Array2<i64>),
    Dense {
        x: ArrayD<T>,
        y: ArrayD<T>,
    },
    Rnn(RnnTape<T>),
    Bidi {
        f: RnnTape<T>,
        b: RnnTape<T>,
        yf: ArrayD<T>,
        yb: ArrayD<T>,
    },
}

/// The result of a forward pass: the model's outputs, the mask on the first one, and what
/// backward needs.
pub(crate) struct Forward<T> {
    /// One output, or several when the last layer returns states / unmerged directions.
    pub(crate) outputs: Vec<ArrayD<T>>,
    /// Keras' mask on the first output (sequence outputs of masked models).
    pub(crate) mask: Option<Array2<bool>>,
    /// Final states of the stateful recurrent layers, by weight-path prefix.
    pub(crate) states: BTreeMap<String, Vec<Array2<T>>>,
    tapes: Vec<Tape<T>>,
}

fn weight<'a, T>(w: &'a Weights<T>, l: &PlannedLayer, i: usize) -> Result<&'a ArrayD<T>> {
    let path = &l.weights[i].path;
    w.get(path)
        .ok_or_else(|| Error::Weights(format!("missing weight {path}")))
}

fn view2<'a, T>(a: &'a ArrayD<T>, what: &str) -> Result<ArrayView2<'a, T>> {
    a.view()
        .into_dimensionality::<Ix2>()
        .map_err(|e| Error::Shape(format!("{what}: {e}")))
}

/// The three (or two) weights of one direction starting at index `first` of the layer.
fn rnn_weights<'a, T>(
    w: &'a Weights<T>,
    l: &PlannedLayer,
    r: &RnnSpec,
    first: usize,
) -> Result<RnnWeights<'a, T>> {
    Ok(RnnWeights {
        kernel: view2(weight(w, l, first)?, "kernel")?,
        recurrent: view2(weight(w, l, first + 1)?, "recurrent_kernel")?,
        bias: if r.use_bias {
            Some(weight(w, l, first + 2)?.view())
        } else {
            None
        },
    })
}

fn n_weights(r: &RnnSpec) -> usize {
    if r.use_bias { 3 } else { 2 }
}

fn flip_time<T: Clone>(a: &ArrayD<T>) -> ArrayD<T> {
    let mut v = a.view();
    v.invert_axis(Axis(1));
    v.to_owned()
}

/// `v` as integers when every entry is a whole number.
pub(crate) fn integral(v: &ArrayD<f64>) -> Option<ArrayD<i64>> {
    v.iter()
        .all(|x| x.fract() == 0.0 && x.abs() < 9e15)
        .then(|| v.mapv(|x| x as i64))
}

/// Per recurrent direction (keyed as the stateful states: the layer name, or
/// `bidirectional_name/direction_name`), its recurrent-dropout masks: one `(B, units)` per
/// gate block in Keras' order (see [`rnn::forward_dropout`]).
pub(crate) type RecMasks<T> = BTreeMap<String, Vec<Array2<T>>>;

/// One recurrent direction; stateful layers start from `init[key]` and leave their final
/// states in `states[key]`; `rec_masks[key]`, when present, are its recurrent-dropout masks.
#[allow(clippy::too_many_arguments)]
fn run_rnn<T: Real>(
    r: &RnnSpec,
    key: String,
    rw: &RnnWeights<T>,
    x3: ndarray::ArrayView3<T>,
    mask: Option<&Array2<bool>>,
    init: Option<&BTreeMap<String, Vec<Array2<T>>>>,
    rec_masks: Option<&RecMasks<T>>,
    states: &mut BTreeMap<String, Vec<Array2<T>>>,
) -> rnn::RnnRun<T> {
    let s0 = if r.stateful {
        init.and_then(|m| m.get(&key))
    } else {
        None
    };
    let drop = rec_masks.and_then(|m| m.get(&key)).map(Vec::as_slice);
    let run = rnn::forward_dropout(r, rw, x3, mask, s0.map(Vec::as_slice), drop);
    if r.stateful {
        states.insert(key, run.states.clone());
    }
    run
}

/// Runs every layer on `x` (inference mode: Dropout and recurrent dropout are identities).
pub(crate) fn forward<T: Real>(
    spec: &ModelSpec,
    w: &Weights<T>,
    x: &ModelInput,
    init: Option<&BTreeMap<String, Vec<Array2<T>>>>,
) -> Result<Forward<T>> {
    forward_with_masks(spec, w, x, init, None)
}

/// [`forward`] with recurrent-dropout masks for the directions `rec_masks` names (a training
/// step replayed with the masks the device drew); the backward applies them too.
pub(crate) fn forward_with_masks<T: Real>(
    spec: &ModelSpec,
    w: &Weights<T>,
    x: &ModelInput,
    init: Option<&BTreeMap<String, Vec<Array2<T>>>>,
    rec_masks: Option<&RecMasks<T>>,
) -> Result<Forward<T>> {
    let mut states = BTreeMap::new();
    let mut tapes = Vec::with_capacity(spec.layers.len());
    let mut mask: Option<Array2<bool>> = None;
    let mut flow: ArrayD<T> = match x {
        ModelInput::Values(v) => v.mapv(T::from_f64),
        ModelInput::Tokens(t) => t.mapv(|v| T::from_f64(v as f64)).into_dyn(),
    };
    let mut outputs = Vec::new();
    for l in &spec.layers {
        let name = l.spec.name.as_str();
        fn seq3<'a, T>(a: &'a ArrayD<T>, name: &str) -> Result<ndarray::ArrayView3<'a, T>> {
            a.view()
                .into_dimensionality::<Ix3>()
                .map_err(|e| Error::Shape(format!("layer {name}: input {:?}: {e}", a.shape())))
        }
        let (mut outs, tape) = match &l.spec.kind {
            LayerKind::Embedding { mask_zero, .. } => {
                // Keras casts a float input to int32 ids; only whole numbers are ids here.
                let ids = match x {
                    ModelInput::Tokens(t) => t.clone(),
                    ModelInput::Values(v) => integral(v)
                        .and_then(|a| a.into_dimensionality::<Ix2>().ok())
                        .ok_or_else(|| {
                            Error::Shape(format!(
                                "layer {name} (Embedding) needs token ids (B, T) of whole \
                                 numbers; got values of shape {:?}",
                                v.shape()
                            ))
                        })?,
                };
                let ids = &ids;
                let y = layers::embedding_forward(view2(weight(w, l, 0)?, name)?, ids, name)?;
                mask = mask_zero.then(|| ids.mapv(|v| v != 0));
                (vec![y], Tape::Embedding(ids.clone()))
            }
            LayerKind::Masking { mask_value } => {
                seq3(&flow, name)?;
                let (y, keep) = layers::masking_forward(flow.view(), *mask_value);
                mask = Some(keep.clone());
                (vec![y], Tape::Masking(keep))
            }
            LayerKind::Dropout { .. } => (vec![flow.clone()], Tape::Identity),
            LayerKind::Dense(d) | LayerKind::TimeDistributed(d) => {
                let k = view2(weight(w, l, 0)?, name)?;
                let b = if d.use_bias {
                    Some(weight(w, l, 1)?.view())
                } else {
                    None
                };
                let y = layers::dense_forward(d.activation, k, b, flow.view())?;
                if flow.ndim() != 3 {
                    mask = None;
                }
                (vec![y.clone()], Tape::Dense { x: flow.clone(), y })
            }
            LayerKind::Rnn(r) => {
                let run = run_rnn(
                    r,
                    r.name.clone(),
                    &rnn_weights(w, l, r, 0)?,
                    seq3(&flow, name)?,
                    mask.as_ref(),
                    init,
                    rec_masks,
                    &mut states,
                );
                let y = if r.return_sequences {
                    run.seq.into_dyn()
                } else {
                    mask = None;
                    run.last.into_dyn()
                };
                let mut outs = vec![y];
                if r.return_state {
                    outs.extend(run.states.into_iter().map(|s| s.into_dyn()));
                }
                (outs, Tape::Rnn(run.tape))
            }
            LayerKind::Bidirectional {
                forward: fs,
                backward: bs,
                merge,
            } => {
                let x3 = seq3(&flow, name)?;
                let fr = run_rnn(
                    fs,
                    format!("{name}/{}", fs.name),
                    &rnn_weights(w, l, fs, 0)?,
                    x3,
                    mask.as_ref(),
                    init,
                    rec_masks,
                    &mut states,
                );
                let br = run_rnn(
                    bs,
                    format!("{name}/{}", bs.name),
                    &rnn_weights(w, l, bs, n_weights(fs))?,
                    x3,
                    mask.as_ref(),
                    init,
                    rec_masks,
                    &mut states,
                );
                let (yf, yb) = if fs.return_sequences {
                    (fr.seq.into_dyn(), flip_time(&br.seq.into_dyn()))
                } else {
                    mask = None;
                    (fr.last.into_dyn(), br.last.into_dyn())
                };
                let mut outs = if *merge == super::spec::MergeMode::None {
                    vec![yf.clone(), yb.clone()]
                } else {
                    vec![layers::merge(*merge, &yf, &yb)?]
                };
                if fs.return_state {
                    outs.extend(fr.states.into_iter().map(|s| s.into_dyn()));
                    outs.extend(br.states.into_iter().map(|s| s.into_dyn()));
                }
                (
                    outs,
                    Tape::Bidi {
                        f: fr.tape,
                        b: br.tape,
                        yf,
                        yb,
                    },
                )
            }
        };
        tapes.push(tape);
        flow = outs[0].clone();
        outputs = std::mem::take(&mut outs);
    }
    Ok(Forward {
        outputs,
        mask,
        states,
        tapes,
    })
}

/// Gradients of every weight (trainable or not) given dL/d(first output).
pub(crate) fn backward<T: Real>(
    spec: &ModelSpec,
    w: &Weights<T>,
    fwd: &Forward<T>,
    dy: ArrayD<T>,
) -> Result<Weights<T>> {
    if fwd.outputs.len() != 1 {
        return Err(Error::Unsupported(format!(
            "model {}: backward through a model with {} outputs (return_state or \
             merge_mode=None on the last layer); a loss needs one",
            spec.name,
            fwd.outputs.len()
        )));
    }
    let mut grads = Weights::new();
    let mut dy = dy;
    for (l, tape) in spec.layers.iter().zip(&fwd.tapes).rev() {
        let path = |i: usize| l.weights[i].path.clone();
        dy = match (&l.spec.kind, tape) {
            (LayerKind::Embedding { input_dim, .. }, Tape::Embedding(ids)) => {
                grads.insert(
                    path(0),
                    layers::embedding_backward(*input_dim, ids, dy.view()).into_dyn(),
                );
                ArrayD::zeros(ndarray::IxDyn(&[0]))
            }
            (LayerKind::Masking { .. }, Tape::Masking(keep)) => {
                layers::apply_keep(&mut dy, keep);
                dy
            }
            (LayerKind::Dropout { .. }, Tape::Identity) => dy,
            (LayerKind::Dense(d) | LayerKind::TimeDistributed(d), Tape::Dense { x, y }) => {
                let k = view2(weight(w, l, 0)?, &l.spec.name)?;
                let (dx, dk, db) =
                    layers::dense_backward(d.activation, k, x.view(), y.view(), dy.view())?;
                grads.insert(path(0), dk.into_dyn());
                if d.use_bias {
                    grads.insert(path(1), db.into_dyn());
                }
                dx
            }
            (LayerKind::Rnn(r), Tape::Rnn(t)) => {
                let g = rnn_grad(r, &rnn_weights(w, l, r, 0)?, t, &dy)?;
                grads.insert(path(0), g.kernel.into_dyn());
                grads.insert(path(1), g.recurrent.into_dyn());
                if let Some(b) = g.bias {
                    grads.insert(path(2), b);
                }
                g.dx.into_dyn()
            }
            (
                LayerKind::Bidirectional {
                    forward: fs,
                    backward: bs,
                    merge,
                },
                Tape::Bidi { f, b, yf, yb },
            ) => {
                let (dyf, mut dyb) = layers::unmerge(*merge, yf, yb, &dy);
                if bs.return_sequences {
                    dyb = flip_time(&dyb);
                }
                let nf = n_weights(fs);
                let gf = rnn_grad(fs, &rnn_weights(w, l, fs, 0)?, f, &dyf)?;
                let gb = rnn_grad(bs, &rnn_weights(w, l, bs, nf)?, b, &dyb)?;
                for (off, g) in [(0, &gf), (nf, &gb)] {
                    grads.insert(path(off), g.kernel.clone().into_dyn());
                    grads.insert(path(off + 1), g.recurrent.clone().into_dyn());
                    if let Some(bias) = &g.bias {
                        grads.insert(path(off + 2), bias.clone());
                    }
                }
                (gf.dx + gb.dx).into_dyn()
            }
            _ => {
                return Err(Error::Shape(format!(
                    "layer {}: tape does not match the layer",
                    l.spec.name
                )));
            }
        };
    }
    Ok(grads)
}

fn rnn_grad<T: Real>(
    r: &RnnSpec,
    w: &RnnWeights<T>,
    t: &RnnTape<T>,
    dy: &ArrayD<T>,
) -> Result<rnn::RnnGrads<T>> {
    let shape_err = |e: ndarray::ShapeError| Error::Shape(format!("layer {}: dy {e}", r.name));
    Ok(if r.return_sequences {
        let d = dy.view().into_dimensionality::<Ix3>().map_err(shape_err)?;
        rnn::backward(r, w, t, Some(d), None)
    } else {
        let d = dy.view().into_dimensionality::<Ix2>().map_err(shape_err)?;
        rnn::backward(r, w, t, None, Some(d))
    })
}
