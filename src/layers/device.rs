//! The device path every recurrent layer (LSTM, GRU, SimpleRNN) shares: inputs and outputs
//! as [`DeviceTensor`]s in the caller's layout, recorded into a caller's [`Recorder`].
//! Batch-first and Keras go_backwards layouts are moved on the device (`seq_reorder`),
//! so nothing crosses to the host.

use super::common::{Layout, Runner};
use crate::context::Context;
use crate::cpu::lstm::LstmDims;
use crate::error::{Error, Result};
use crate::gpu::stack::{self, FwdIn, GpuTape, GpuWeights};
use crate::gpu::stack_backward;
use crate::kernels::tensor_ops::{self, SeqLayout};
use crate::kernels::workspace::Alloc;
use crate::kernels::{Recorder, buffers};
use crate::layer::{Forward, Origin, OutputGrads, Tape};
use crate::nn::ParamBuffer;
use crate::tensor::{DType, DeviceTensor};

/// What a recurrent layer's device path needs to know about it.
pub(crate) struct RecurrentDevice<'a> {
    pub kind: &'static str,
    pub id: u64,
    pub runner: &'a Runner,
    pub layout: Layout,
    pub dims: LstmDims,
    pub has_c: bool,
    /// Keras `recurrent_dropout` rate and the layer's dropout seed.
    pub rec_dropout: (f32, u64),
}

/// The device tape of a recurrent layer.
struct DevTape {
    gpu: GpuTape,
}

fn time_major() -> SeqLayout {
    SeqLayout { batch_first: false }
}

impl RecurrentDevice<'_> {
    fn device(&self) -> Result<(&Context, &GpuWeights)> {
        self.runner.device().ok_or_else(|| {
            Error::Unsupported(format!(
                "the device path of this {} needs a GPU backend (it was built on the CPU)",
                self.kind
            ))
        })
    }

    /// The trainable tensors as device buffers.
    pub fn params(&self) -> Result<Vec<ParamBuffer>> {
        Ok(self.device()?.1.params())
    }

    /// `(T, B)` from an input shape in the caller's layout, checked against the layer.
    fn seq_dims(&self, x: &DeviceTensor, ctx: &Context) -> Result<(usize, usize)> {
        let i = self.dims.input_size;
        let s = x.shape();
        let named = if self.layout.batch_first {
            "(batch, seq_len, input_size)"
        } else {
            "(seq_len, batch, input_size)"
        };
        if s.len() != 3 || s[2] != i || s[0] == 0 || s[1] == 0 {
            return Err(Error::Shape(format!(
                "{} input has shape {s:?}, read as {named}; the layer's input_size is {i}",
                self.kind
            )));
        }
        x.expect(ctx, &format!("{} input", self.kind), DType::F32, s)?;
        Ok(if self.layout.batch_first {
            (s[1], s[0])
        } else {
            (s[0], s[1])
        })
    }

    /// The output shape for an input shape (caller's layout).
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let d = self.dims;
        if input.len() != 3 || input[2] != d.input_size {
            return Err(Error::Shape(format!(
                "{} input has shape {input:?}; expected 3 axes ending in input_size {}",
                self.kind, d.input_size
            )));
        }
        Ok(vec![input[0], input[1], d.directions() * d.out_size()])
    }

    /// Moves a sequence between the caller's layout and time-major (`to_caller` picks the
    /// direction), reversing time when `reverse` (go_backwards inputs and input gradients);
    /// returns the buffer itself when nothing moves.
    fn relayout(
        &self,
        rec: &mut Recorder<'_>,
        buf: &wgpu::Buffer,
        (t, b, f): (usize, usize, usize),
        reverse: bool,
        to_caller: bool,
    ) -> Result<wgpu::Buffer> {
        if !self.layout.batch_first && !reverse {
            return Ok(buf.clone());
        }
        let out = buffers::zeros(rec.ctx(), "relayout", t * b * f)?;
        let caller = SeqLayout {
            batch_first: self.layout.batch_first,
        };
        let (from, to) = if to_caller {
            (time_major(), caller)
        } else {
            (caller, time_major())
        };
        tensor_ops::reorder(rec, (buf, from), (&out, to), (t, b, f), reverse)?;
        Ok(out)
    }

    fn to_time_major(
        &self,
        rec: &mut Recorder<'_>,
        buf: &wgpu::Buffer,
        dims: (usize, usize, usize),
        reverse: bool,
    ) -> Result<wgpu::Buffer> {
        self.relayout(rec, buf, dims, reverse, false)
    }

    fn to_caller(
        &self,
        rec: &mut Recorder<'_>,
        buf: &wgpu::Buffer,
        dims: (usize, usize, usize),
        reverse: bool,
    ) -> Result<wgpu::Buffer> {
        self.relayout(rec, buf, dims, reverse, true)
    }

    /// Records the forward. `state` is `[h0]` (`[h0, c0]` for the LSTM), each optional;
    /// `lengths` is u32 `(B)` (PyTorch packed semantics, e.g. from `Embedding(mask_zero)`).
    pub fn record_forward(
        &self,
        rec: &mut Recorder<'_>,
        x: &DeviceTensor,
        state: &[Option<&DeviceTensor>],
        lengths: Option<&DeviceTensor>,
        train: bool,
    ) -> Result<Forward> {
        let (ctx, w) = self.device()?;
        let d = self.dims;
        let (t, b) = self.seq_dims(x, ctx)?;
        let (ld, p, h) = (d.cell_count(), d.out_size(), d.hidden_size);
        let want_state = if self.has_c { 2 } else { 1 };
        if state.len() > want_state {
            return Err(Error::Shape(format!(
                "{} takes {want_state} state tensor(s); {} were given",
                self.kind,
                state.len()
            )));
        }
        let h0 = state.first().copied().flatten();
        let c0 = state.get(1).copied().flatten();
        if let Some(h0) = h0 {
            h0.expect(ctx, "h0", DType::F32, &[ld, b, p])?;
        }
        if let Some(c0) = c0 {
            c0.expect(ctx, "c0", DType::F32, &[ld, b, h])?;
        }
        if let Some(l) = lengths {
            if self.layout.go_backwards {
                return Err(Error::Unsupported(
                    "variable lengths with go_backwards (Keras masks instead of packing)".into(),
                ));
            }
            l.expect(ctx, "lengths", DType::U32, &[b])?;
        }
        let xt = self.to_time_major(
            rec,
            x.buffer(),
            (t, b, d.input_size),
            self.layout.go_backwards,
        )?;
        let lens = match lengths {
            Some(l) => l.buffer().clone(),
            None => w.full_lengths(ctx, t, b)?,
        };
        let inp = FwdIn {
            x: &xt,
            h0: h0.map(|v| v.buffer()),
            c0: c0.map(|v| v.buffer()),
            lens: Some(&lens),
        };
        let drop = self.runner.next_drop(self.rec_dropout, train);
        let f = stack::record_forward(
            rec,
            &mut Alloc::Fresh,
            w,
            inp,
            (t, b),
            self.runner.algorithm,
            train,
            drop,
        )?;
        let width = d.directions() * p;
        // Outputs stay in processing order (Keras go_backwards), so only the batch axis moves.
        let y = self.to_caller(rec, &f.out, (t, b, width), false)?;
        let y_shape = if self.layout.batch_first {
            vec![b, t, width]
        } else {
            vec![t, b, width]
        };
        let mut st = vec![DeviceTensor::wrap(ctx, f.h_n, vec![ld, b, p])];
        if self.has_c {
            st.push(DeviceTensor::wrap(ctx, f.c_n, vec![ld, b, h]));
        }
        let origin = Origin {
            layer: self.id,
            ctx: Some(ctx.id()),
            input: x.shape().to_vec(),
        };
        Ok(Forward {
            y: DeviceTensor::wrap(ctx, y, y_shape),
            state: st,
            lengths: None,
            tape: f.tape.map(|gpu| Tape::new(origin, DevTape { gpu })),
        })
    }

    /// The recurrent-dropout masks the training forward of `tape` drew, read back from the
    /// device (see [`read_masks`]).
    pub fn recurrent_masks(&self, tape: &Tape) -> Result<Option<ndarray::Array4<f32>>> {
        let (ctx, w) = self.device()?;
        let dt: &DevTape = tape.open(self.kind, self.id, Some(ctx.id()))?;
        read_masks(ctx, w, &dt.gpu)
    }

    /// Records the backward; returns dL/dx in the caller's layout.
    pub fn record_backward(
        &self,
        rec: &mut Recorder<'_>,
        tape: &Tape,
        grads: &OutputGrads,
    ) -> Result<Option<DeviceTensor>> {
        let (ctx, w) = self.device()?;
        let dt: &DevTape = tape.open(self.kind, self.id, Some(ctx.id()))?;
        let d = self.dims;
        let (t, b) = (dt.gpu.t, dt.gpu.b);
        let (ld, p, h) = (d.cell_count(), d.out_size(), d.hidden_size);
        let width = d.directions() * p;
        let dy = match &grads.dy {
            Some(dy) => {
                let want = self.output_shape(tape.input_shape())?;
                dy.expect(ctx, "dy", DType::F32, &want)?;
                Some(self.to_time_major(rec, dy.buffer(), (t, b, width), false)?)
            }
            None => None,
        };
        let want_state = if self.has_c { 2 } else { 1 };
        if grads.dstate.len() > want_state {
            return Err(Error::Shape(format!(
                "{} has {want_state} final state tensor(s); {} gradients were given",
                self.kind,
                grads.dstate.len()
            )));
        }
        let dh = grads.dstate.first().cloned().flatten();
        let dc = grads.dstate.get(1).cloned().flatten();
        if let Some(v) = &dh {
            v.expect(ctx, "dh_n", DType::F32, &[ld, b, p])?;
        }
        if let Some(v) = &dc {
            v.expect(ctx, "dc_n", DType::F32, &[ld, b, h])?;
        }
        let g = stack_backward::record_backward(
            rec,
            w,
            &dt.gpu,
            dy.as_ref(),
            (
                dh.as_ref().map(|v| v.buffer()),
                dc.as_ref().map(|v| v.buffer()),
            ),
        )?;
        let i = d.input_size;
        let dx = self.to_caller(rec, &g.dx, (t, b, i), self.layout.go_backwards)?;
        Ok(Some(DeviceTensor::wrap(
            ctx,
            dx,
            tape.input_shape().to_vec(),
        )))
    }
}

/// The trainable tensors read back from the device under their names (weights after
/// in-place training).
pub(crate) fn read_params(ctx: &Context, w: &GpuWeights) -> Result<crate::weights::TensorMap> {
    let params = w.params();
    let ranges: Vec<_> = params.iter().map(|p| (&p.param, 0, p.len())).collect();
    let got = buffers::read_f32(ctx, &ranges)?;
    let mut m = crate::weights::TensorMap::new();
    for (p, v) in params.iter().zip(got) {
        let a = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&p.shape), v)
            .map_err(|e| Error::Shape(e.to_string()))?;
        m.insert(p.name.clone(), a);
    }
    Ok(m)
}

/// The recurrent-dropout masks a training forward drew, read back from the device: shape
/// `(L·D, G, B, P)` (layer-direction, gate block in the kernels' order: LSTM i,f,g,o, GRU
/// r,z,n, RNN one; batch row; unit of h_{t-1}), each value 0 or 1/(1-rate); `None` when that
/// forward applied none (inference, or rate 0).
pub(crate) fn read_masks(
    ctx: &Context,
    w: &GpuWeights,
    tape: &GpuTape,
) -> Result<Option<ndarray::Array4<f32>>> {
    if tape.drop.is_none() {
        return Ok(None);
    }
    let d = w.dims;
    let (cells, g, b, p) = (d.cell_count(), w.kind.gates(), tape.b, d.out_size());
    let n = cells * g * b * p;
    let got = buffers::read_f32(ctx, &[(&tape.lens, b, n)])?;
    let v = got.into_iter().next().unwrap_or_default();
    ndarray::Array4::from_shape_vec((cells, g, b, p), v)
        .map(Some)
        .map_err(|e| Error::Shape(e.to_string()))
}
