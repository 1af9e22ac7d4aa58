//! Keras masking around a recurrent layer, on the device: a [`SeqMask`] (from
//! `Embedding(mask_zero=True)` token ids or a `Masking(mask_value)` layer's input) and
//! [`MaskedRecurrent`], which runs any [`Recurrent`] layer (LSTM, GRU, SimpleRNN, every
//! algorithm, forward and backward) with Keras' semantics: the state is carried through
//! masked steps, and a masked step's output is the previous output (or zero with
//! `zero_output_for_mask`, as Keras' Bidirectional sets it).
//!
//! Any mask works (pre- or post-padding, gaps): a masked step leaves the state alone, so the
//! valid steps are compacted to the front in order, the layer runs with packed lengths, and
//! outputs and gradients are mapped back.

use super::ParamBuffer;
use crate::error::{Error, Result};
use crate::kernels::seq_mask::{self, Move};
use crate::kernels::{Recorder, buffers};
use crate::layer::{Forward, Layer, OutputGrads, Tape};
use crate::tensor::{DType, DeviceTensor};

/// A recurrent layer the masking adapter can drive: batch-first, run on packed lengths.
pub trait Recurrent: Layer {
    /// Records the forward of batch-first `x` `(B, T, F)` with u32 `lengths` `(B)` (PyTorch
    /// packed semantics: steps `t ≥ lengths[b]` are not processed, their outputs are zero).
    fn record_forward_packed(
        &self,
        rec: &mut Recorder<'_>,
        x: &DeviceTensor,
        lengths: &DeviceTensor,
        train: bool,
    ) -> Result<Forward>;

    /// Whether inputs are `(B, T, ·)` and the layer reads them in order (no go_backwards).
    fn packs_batch_first(&self) -> bool;
}

/// Which steps of each sequence are valid, u32 `(B, T)` on the device.
#[derive(Clone, Debug)]
pub struct SeqMask {
    valid: wgpu::Buffer,
    b: usize,
    t: usize,
}

fn bt_of(shape: &[usize], what: &str) -> Result<(usize, usize)> {
    match shape {
        &[b, t, ..] if b > 0 && t > 0 => Ok((b, t)),
        s => Err(Error::Shape(format!(
            "{what} has shape {s:?}; expected (batch, seq_len, ...)"
        ))),
    }
}

impl SeqMask {
    /// The mask of `Embedding(mask_zero=True)`: token id 0 is padding. `tokens` u32 `(B, T)`.
    pub fn from_tokens(rec: &mut Recorder<'_>, tokens: &DeviceTensor) -> Result<Self> {
        let ctx = rec.ctx();
        let (b, t) = bt_of(tokens.shape(), "mask tokens")?;
        tokens.expect(ctx, "mask tokens", DType::U32, &[b, t])?;
        let valid = buffers::zeros(ctx, "mask", b * t)?;
        let spare = buffers::zeros(ctx, "spare", 1)?;
        seq_mask::valid_from_tokens(rec, tokens.buffer(), &valid, &spare, (b, t))?;
        Ok(Self { valid, b, t })
    }

    /// The mask of Keras `Masking(mask_value)`: a step is masked when every feature equals
    /// `mask_value`. `x` f32 `(B, T, F)`.
    pub fn from_values(rec: &mut Recorder<'_>, x: &DeviceTensor, mask_value: f32) -> Result<Self> {
        let ctx = rec.ctx();
        let (b, t) = bt_of(x.shape(), "masked input")?;
        let f = match x.shape() {
            &[_, _, f] if f > 0 => f,
            s => {
                return Err(Error::Shape(format!(
                    "masked input has shape {s:?}; expected (batch, seq_len, features)"
                )));
            }
        };
        x.expect(ctx, "masked input", DType::F32, &[b, t, f])?;
        let valid = buffers::zeros(ctx, "mask", b * t)?;
        let spare = buffers::zeros(ctx, "spare", 1)?;
        seq_mask::valid_from_values(rec, x.buffer(), &valid, &spare, (b, t, f), mask_value)?;
        Ok(Self { valid, b, t })
    }

    /// Every step of every sequence valid (a layer without a mask).
    pub fn full(ctx: &crate::Context, b: usize, t: usize) -> Result<Self> {
        let n = b
            .checked_mul(t)
            .ok_or_else(|| Error::Limit(format!("a ({b}, {t}) mask overflows usize")))?;
        let valid = buffers::upload(ctx, "mask", &vec![1u32; n])?;
        Ok(Self { valid, b, t })
    }

    /// Records `dst = x` at valid steps and 0 at masked ones (`x`, `dst` `(B, T, F)`): Keras
    /// Masking's output, and its gradient.
    pub fn record_apply(&self, rec: &mut Recorder<'_>, x: &DeviceTensor) -> Result<DeviceTensor> {
        let ctx = rec.ctx();
        let f = match x.shape() {
            &[b, t, f] if (b, t) == (self.b, self.t) => f,
            s => {
                return Err(Error::Shape(format!(
                    "masked tensor has shape {s:?}; the mask is for {:?}",
                    (self.b, self.t)
                )));
            }
        };
        let out = DeviceTensor::zeros(ctx, x.shape(), DType::F32)?;
        seq_mask::apply_valid(
            rec,
            (x.buffer(), &self.valid, out.buffer()),
            (self.b, self.t, f),
        )?;
        Ok(out)
    }

    /// `(B, T)` the mask was made for.
    pub fn dims(&self) -> (usize, usize) {
        (self.b, self.t)
    }

    /// The valid flags, u32 `(B, T)` (1 = valid).
    pub fn valid(&self) -> &wgpu::Buffer {
        &self.valid
    }
}

/// Keras options of a masked recurrent layer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaskOptions {
    /// Keras `go_backwards`: read the sequence last step first (outputs in that order).
    pub go_backwards: bool,
    /// Keras `zero_output_for_mask`: masked steps output zero instead of the previous output.
    pub zero_output_for_mask: bool,
}

/// A recurrent layer run under a Keras mask (see the module docs).
pub struct MaskedRecurrent<'a> {
    /// The layer (batch-first, no go_backwards of its own).
    pub layer: &'a dyn Recurrent,
    /// Keras options.
    pub options: MaskOptions,
}

/// What a masked training forward keeps.
struct MaskTape {
    inner: Tape,
    tables: wgpu::Buffer,
    dims: (usize, usize),
    f_in: usize,
    f_out: usize,
}

impl MaskedRecurrent<'_> {
    fn dims(&self, x: &DeviceTensor, mask: &SeqMask) -> Result<(usize, usize, usize)> {
        if !self.layer.packs_batch_first() {
            return Err(Error::Config(format!(
                "a masked {} must be batch_first without go_backwards of its own (the mask \
                 adapter handles go_backwards)",
                self.layer.kind()
            )));
        }
        match x.shape() {
            &[b, t, f] if (b, t) == mask.dims() => Ok((b, t, f)),
            s => Err(Error::Shape(format!(
                "masked input has shape {s:?}; the mask is for (batch, seq_len) = {:?}",
                mask.dims()
            ))),
        }
    }

    /// Records the forward of `x` `(B, T, F)` under `mask`. `y` is the output sequence in
    /// processing order with Keras' masked-step outputs; `state` is the layer's final state
    /// (after the last valid step).
    pub fn record_forward(
        &self,
        rec: &mut Recorder<'_>,
        x: &DeviceTensor,
        mask: &SeqMask,
        train: bool,
    ) -> Result<Forward> {
        let ctx = rec.ctx();
        let (b, t, f) = self.dims(x, mask)?;
        let o = self.options;
        let tables = buffers::zeros(ctx, "mask tables", seq_mask::tables_len(b, t)?)?;
        let spare = buffers::zeros(ctx, "spare", 1)?;
        seq_mask::tables(rec, &mask.valid, &tables, &spare, (b, t), o.go_backwards)?;
        let lengths = DeviceTensor::zeros(ctx, &[b], DType::U32)?;
        rec.copy(
            &tables,
            (8 * b * t) as u64,
            lengths.buffer(),
            0,
            (4 * b) as u64,
        );
        let packed = buffers::zeros(ctx, "packed input", b * t * f)?;
        let dims = (b, t, f);
        let rev = o.go_backwards;
        seq_mask::record(
            rec,
            Move::Pack,
            x.buffer(),
            &tables,
            &packed,
            dims,
            rev,
            false,
        )?;
        let xp = DeviceTensor::from_buffer(ctx, packed, &[b, t, f], DType::F32)?;
        let fwd = self
            .layer
            .record_forward_packed(rec, &xp, &lengths, train)?;
        let f_out = *fwd.y.shape().last().unwrap_or(&0);
        let out = buffers::zeros(ctx, "masked output", b * t * f_out)?;
        let carry = !o.zero_output_for_mask;
        seq_mask::record(
            rec,
            Move::UnpackOut,
            fwd.y.buffer(),
            &tables,
            &out,
            (b, t, f_out),
            o.go_backwards,
            carry,
        )?;
        let tape = fwd.tape.map(|inner| {
            let origin = inner.origin.clone();
            Tape::new(
                origin,
                MaskTape {
                    inner,
                    tables: tables.clone(),
                    dims: (b, t),
                    f_in: f,
                    f_out,
                },
            )
        });
        Ok(Forward {
            y: DeviceTensor::from_buffer(ctx, out, &[b, t, f_out], DType::F32)?,
            state: fwd.state,
            lengths: Some(lengths),
            tape,
        })
    }

    /// Records the backward of a masked training forward; returns dL/dx `(B, T, F)` (zero at
    /// masked steps).
    pub fn record_backward(
        &self,
        rec: &mut Recorder<'_>,
        tape: &Tape,
        grads: &OutputGrads,
    ) -> Result<DeviceTensor> {
        let ctx = rec.ctx();
        let mt: &MaskTape = tape.open_any()?;
        let (b, t) = mt.dims;
        let o = self.options;
        let dy = match &grads.dy {
            Some(dy) => {
                dy.expect(ctx, "masked dy", DType::F32, &[b, t, mt.f_out])?;
                let packed = buffers::zeros(ctx, "packed dy", b * t * mt.f_out)?;
                seq_mask::record(
                    rec,
                    Move::PackDy,
                    dy.buffer(),
                    &mt.tables,
                    &packed,
                    (b, t, mt.f_out),
                    o.go_backwards,
                    !o.zero_output_for_mask,
                )?;
                Some(DeviceTensor::from_buffer(
                    ctx,
                    packed,
                    &[b, t, mt.f_out],
                    DType::F32,
                )?)
            }
            None => None,
        };
        let inner = OutputGrads {
            dy,
            dstate: grads.dstate.clone(),
        };
        let dxp = self
            .layer
            .record_backward(rec, &mt.inner, &inner)?
            .ok_or_else(|| {
                Error::Device("the recurrent layer returned no input gradient".into())
            })?;
        let dx = buffers::zeros(ctx, "masked dx", b * t * mt.f_in)?;
        seq_mask::record(
            rec,
            Move::UnpackDx,
            dxp.buffer(),
            &mt.tables,
            &dx,
            (b, t, mt.f_in),
            o.go_backwards,
            false,
        )?;
        DeviceTensor::from_buffer(ctx, dx, &[b, t, mt.f_in], DType::F32)
    }

    /// The layer's parameters.
    pub fn params(&self) -> Result<Vec<ParamBuffer>> {
        self.layer.params()
    }
}
