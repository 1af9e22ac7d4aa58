//! Keras `Dropout` on the device: in a training forward each element is kept with probability
//! `1 - rate` and scaled by `1 / (1 - rate)`, else zeroed; inference is the identity. A new
//! mask is drawn for every training forward from the layer's seed and a call counter, and the
//! backward applies the same mask (recomputed from the seed kept in the tape).
//!
//! `per_sequence` draws one mask per `(batch row, feature)` of a `(B, T, F)` input and applies
//! it at every step: the input `dropout` of Keras' recurrent layers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::ParamBuffer;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::Recorder;
use crate::kernels::dropout::{self as kernel, MaskShape};
use crate::layer::{Forward, Layer, Origin, OutputGrads, Tape, next_layer_id};
use crate::tensor::{DType, DeviceTensor};

/// A Dropout layer on the device.
pub struct GpuDropout {
    ctx: Arc<Context>,
    rate: f32,
    per_sequence: bool,
    seed: u64,
    calls: AtomicU64,
    id: u64,
}

/// What a training forward keeps: the seed of its mask.
struct DropTape {
    seed: u64,
}

/// splitmix64 of `(seed, call)`: a fresh, reproducible mask seed per training forward.
pub(crate) fn call_seed(seed: u64, call: u64) -> u64 {
    let mut z = seed ^ call.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl GpuDropout {
    /// Drops `rate` of the elements in training (`0 ≤ rate < 1`); `per_sequence` keeps one
    /// mask per sequence and feature across steps.
    pub fn new(ctx: Arc<Context>, rate: f32, per_sequence: bool, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&rate) {
            return Err(Error::Config(format!(
                "dropout rate {rate} must be in [0, 1)"
            )));
        }
        Ok(Self {
            ctx,
            rate,
            per_sequence,
            seed,
            calls: AtomicU64::new(0),
            id: next_layer_id(),
        })
    }

    /// The drop rate.
    pub fn rate(&self) -> f32 {
        self.rate
    }

    fn shape(&self, s: &[usize]) -> Result<MaskShape> {
        if !self.per_sequence {
            return Ok(MaskShape::Elements);
        }
        match s {
            &[_, t, f] => Ok(MaskShape::PerSequence { t, f }),
            _ => Err(Error::Shape(format!(
                "per-sequence dropout needs (batch, steps, features); got {s:?}"
            ))),
        }
    }

    fn apply(&self, rec: &mut Recorder<'_>, x: &DeviceTensor, seed: u64) -> Result<DeviceTensor> {
        let y = DeviceTensor::zeros(&self.ctx, x.shape(), DType::F32)?;
        let shape = self.shape(x.shape())?;
        kernel::apply(
            rec,
            (x.buffer(), y.buffer()),
            x.len(),
            self.rate,
            seed,
            shape,
        )?;
        Ok(y)
    }
}

impl Layer for GpuDropout {
    fn kind(&self) -> &'static str {
        "dropout"
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.shape(input)?;
        Ok(input.to_vec())
    }

    fn record_forward(
        &self,
        rec: &mut Recorder<'_>,
        x: &DeviceTensor,
        train: bool,
    ) -> Result<Forward> {
        x.expect(&self.ctx, "dropout input", DType::F32, x.shape())?;
        if !train || self.rate == 0.0 {
            return Ok(Forward {
                y: x.clone(),
                state: Vec::new(),
                lengths: None,
                tape: train.then(|| {
                    Tape::new(
                        Origin {
                            layer: self.id,
                            ctx: Some(self.ctx.id()),
                            input: x.shape().to_vec(),
                        },
                        DropTape { seed: 0 },
                    )
                }),
            });
        }
        let seed = call_seed(self.seed, self.calls.fetch_add(1, Ordering::Relaxed));
        let y = self.apply(rec, x, seed)?;
        Ok(Forward {
            y,
            state: Vec::new(),
            lengths: None,
            tape: Some(Tape::new(
                Origin {
                    layer: self.id,
                    ctx: Some(self.ctx.id()),
                    input: x.shape().to_vec(),
                },
                DropTape { seed },
            )),
        })
    }

    fn record_backward(
        &self,
        rec: &mut Recorder<'_>,
        tape: &Tape,
        grads: &OutputGrads,
    ) -> Result<Option<DeviceTensor>> {
        let dt: &DropTape = tape.open("dropout", self.id, Some(self.ctx.id()))?;
        let dy = grads
            .dy
            .as_ref()
            .ok_or_else(|| Error::Config("dropout backward needs dy".into()))?;
        dy.expect(&self.ctx, "dropout dy", DType::F32, tape.input_shape())?;
        if self.rate == 0.0 {
            return Ok(Some(dy.clone()));
        }
        // The same mask and scale as the forward: d(x·m/(1-p))/dx = m/(1-p).
        Ok(Some(self.apply(rec, dy, dt.seed)?))
    }

    fn params(&self) -> Result<Vec<ParamBuffer>> {
        Ok(Vec::new())
    }
}

/// Mixed into recurrent-dropout seeds ("RECDROP"), keeping those masks apart from a Dropout
/// layer given the same seed.
const REC_DROPOUT_DOMAIN: u64 = 0x0052_4543_4452_4f50;

/// The mask seed of training call `call` (0 first) of a recurrent layer with `dropout_seed`.
pub(crate) fn recurrent_call_seed(seed: u64, call: u64) -> u64 {
    call_seed(seed ^ REC_DROPOUT_DOMAIN, call)
}

/// The recurrent-dropout masks that training call `call` (counting from 0, per layer) of an
/// `Lstm`/`Gru`/`SimpleRnn` with `dropout_seed = seed` and `recurrent_dropout = rate` draws
/// on the device, computed on the host bit for bit (the same hash): shape
/// `(L·D, G, B, P)` as the layers' `recurrent_dropout_mask` returns it. Lets a CPU reference
/// replay a GPU training step without reading the masks back.
pub fn recurrent_dropout_masks(
    seed: u64,
    call: u64,
    rate: f32,
    (cells, gates, batch, units): (usize, usize, usize, usize),
) -> Result<ndarray::Array4<f32>> {
    if !(0.0..1.0).contains(&rate) {
        return Err(Error::Config(format!(
            "recurrent_dropout {rate} must be in [0, 1)"
        )));
    }
    let n = cells
        .checked_mul(gates)
        .and_then(|v| v.checked_mul(batch))
        .and_then(|v| v.checked_mul(units))
        .filter(|&n| n <= u32::MAX as usize)
        .ok_or_else(|| {
            Error::Limit(format!(
                "({cells}, {gates}, {batch}, {units}) masks exceed u32 indexing"
            ))
        })?;
    let s = recurrent_call_seed(seed, call);
    let thr = kernel::threshold(rate);
    let scale = 1.0 / (1.0 - rate);
    let v = (0..n as u32)
        .map(|m| {
            if kernel::host_keep(m, s, thr) {
                scale
            } else {
                0.0
            }
        })
        .collect();
    ndarray::Array4::from_shape_vec((cells, gates, batch, units), v)
        .map_err(|e| Error::Shape(e.to_string()))
}
