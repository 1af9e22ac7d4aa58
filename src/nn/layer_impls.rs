//! The [`Layer`] contract for the feed-forward layers: Dense (on rows, or on every step of
//! a sequence: Keras `TimeDistributed(Dense)`) and the per-frame convolution head.

use super::conv_head::{GpuConvHead, SeqShape};
use super::dense::GpuDense;
use super::{GradTarget, ParamBuffer};
use crate::error::{Error, Result};
use crate::kernels::Recorder;
use crate::layer::{Forward, Layer, Origin, OutputGrads, Tape};
use crate::tensor::{DType, DeviceTensor};

/// What a feed-forward forward keeps: its input and output buffers.
struct IoTape {
    x: wgpu::Buffer,
    y: wgpu::Buffer,
}

fn origin(id: u64, ctx: u64, x: &DeviceTensor) -> Origin {
    Origin {
        layer: id,
        ctx: Some(ctx),
        input: x.shape().to_vec(),
    }
}

/// The output gradient a feed-forward backward needs (no state gradients).
fn need_dy<'a>(kind: &str, grads: &'a OutputGrads) -> Result<&'a DeviceTensor> {
    if grads.dstate.iter().any(Option::is_some) {
        return Err(Error::Config(format!(
            "{kind} has no state: gradients of a final state were given"
        )));
    }
    grads
        .dy
        .as_ref()
        .ok_or_else(|| Error::Config(format!("{kind} backward needs dy")))
}

impl GpuDense {
    /// Rows of an input shape `(..., in)`.
    fn rows_of(&self, input: &[usize]) -> Result<usize> {
        let i = self.config().in_features;
        match input.split_last() {
            Some((&last, lead)) if last == i && !lead.is_empty() => Ok(lead.iter().product()),
            _ => Err(Error::Shape(format!(
                "dense input has shape {input:?}; expected (rows, {i}) or (batch, steps, {i})"
            ))),
        }
    }
}

impl Layer for GpuDense {
    fn kind(&self) -> &'static str {
        "dense"
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.rows_of(input)?;
        let mut s = input.to_vec();
        if let Some(last) = s.last_mut() {
            *last = self.config().out_features;
        }
        Ok(s)
    }

    fn record_forward(
        &self,
        rec: &mut Recorder<'_>,
        x: &DeviceTensor,
        train: bool,
    ) -> Result<Forward> {
        let ctx = self.context().clone();
        x.expect(&ctx, "dense input", DType::F32, x.shape())?;
        let rows = self.rows_of(x.shape())?;
        let y = GpuDense::record_forward(self, rec, x.buffer(), rows)?;
        let shape = self.output_shape(x.shape())?;
        let tape = train.then(|| {
            Tape::new(
                origin(self.id, ctx.id(), x),
                IoTape {
                    x: x.buffer().clone(),
                    y: y.clone(),
                },
            )
        });
        Ok(Forward {
            y: DeviceTensor::wrap(&ctx, y, shape),
            state: Vec::new(),
            lengths: None,
            tape,
        })
    }

    fn record_backward(
        &self,
        rec: &mut Recorder<'_>,
        tape: &Tape,
        grads: &OutputGrads,
    ) -> Result<Option<DeviceTensor>> {
        let ctx = self.context().clone();
        let io: &IoTape = tape.open("dense", self.id, Some(ctx.id()))?;
        let dy = need_dy("dense", grads)?;
        let want = self.output_shape(tape.input_shape())?;
        dy.expect(&ctx, "dense dy", DType::F32, &want)?;
        let rows = self.rows_of(tape.input_shape())?;
        let dx = GpuDense::record_backward(
            self,
            rec,
            (&io.x, &io.y, dy.buffer()),
            rows,
            GradTarget::New,
        )?;
        Ok(Some(DeviceTensor::wrap(
            &ctx,
            dx,
            tape.input_shape().to_vec(),
        )))
    }

    fn params(&self) -> Result<Vec<ParamBuffer>> {
        Ok(GpuDense::params(self))
    }
}

impl GpuConvHead {
    fn seq_of(&self, input: &[usize]) -> Result<SeqShape> {
        let c = self.config().in_channels;
        match input {
            &[batch, steps, rows, cols, ch] if ch == c && batch * steps * rows * cols > 0 => {
                Ok(SeqShape {
                    batch,
                    steps,
                    rows,
                    cols,
                })
            }
            _ => Err(Error::Shape(format!(
                "conv head input has shape {input:?}; expected (batch, steps, rows, cols, {c})"
            ))),
        }
    }
}

impl Layer for GpuConvHead {
    fn kind(&self) -> &'static str {
        "conv_head"
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.seq_of(input)?;
        let mut s = input.to_vec();
        s[4] = self.config().out_channels;
        Ok(s)
    }

    fn record_forward(
        &self,
        rec: &mut Recorder<'_>,
        x: &DeviceTensor,
        train: bool,
    ) -> Result<Forward> {
        let ctx = self.context().clone();
        x.expect(&ctx, "conv head input", DType::F32, x.shape())?;
        let s = self.seq_of(x.shape())?;
        let y = GpuConvHead::record_forward(self, rec, x.buffer(), s)?;
        let tape = train.then(|| {
            Tape::new(
                origin(self.id, ctx.id(), x),
                IoTape {
                    x: x.buffer().clone(),
                    y: y.clone(),
                },
            )
        });
        Ok(Forward {
            y: DeviceTensor::wrap(&ctx, y, self.output_shape(x.shape())?),
            state: Vec::new(),
            lengths: None,
            tape,
        })
    }

    fn record_backward(
        &self,
        rec: &mut Recorder<'_>,
        tape: &Tape,
        grads: &OutputGrads,
    ) -> Result<Option<DeviceTensor>> {
        let ctx = self.context().clone();
        let io: &IoTape = tape.open("conv_head", self.id, Some(ctx.id()))?;
        let dy = need_dy("conv_head", grads)?;
        dy.expect(
            &ctx,
            "conv head dy",
            DType::F32,
            &self.output_shape(tape.input_shape())?,
        )?;
        let s = self.seq_of(tape.input_shape())?;
        let dx = GpuConvHead::record_backward(
            self,
            rec,
            (&io.x, &io.y, dy.buffer()),
            s,
            GradTarget::New,
        )?;
        Ok(Some(DeviceTensor::wrap(
            &ctx,
            dx,
            tape.input_shape().to_vec(),
        )))
    }

    fn params(&self) -> Result<Vec<ParamBuffer>> {
        Ok(GpuConvHead::params(self))
    }
}
