//! The device path of [`ConvLstm2d`] and [`ConvLstm2dStack`]: Keras layouts
//! (`(B, T, rows, cols, Cin)` in, `(B, T, Ho, Wo, F)` or the last step out) as
//! [`DeviceTensor`]s recorded into a caller's [`Recorder`].

use super::convlstm::ConvLstm2d;
use super::convlstm_stack::ConvLstm2dStack;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::gpu::convlstm::{ConvTape, GpuConvLstm};
use crate::kernels::tensor_ops::{self, SeqLayout};
use crate::kernels::{Recorder, buffers};
use crate::layer::{Forward, Layer, Origin, OutputGrads, Tape};
use crate::nn::ParamBuffer;
use crate::tensor::{DType, DeviceTensor};

/// The device tape of one ConvLSTM2D layer.
struct ConvDevTape {
    tape: ConvTape,
    b: usize,
    t: usize,
}

fn by(n: usize) -> u64 {
    (n * 4) as u64
}

/// Reverses the time axis of a `(B, T, f)` batch-first sequence into a new buffer.
fn reverse_time(
    rec: &mut Recorder<'_>,
    buf: &wgpu::Buffer,
    (b, t, f): (usize, usize, usize),
) -> Result<wgpu::Buffer> {
    let out = buffers::zeros(rec.ctx(), "reversed", b * t * f)?;
    let bf = SeqLayout { batch_first: true };
    tensor_ops::reorder(rec, (buf, bf), (&out, bf), (t, b, f), true)?;
    Ok(out)
}

impl ConvLstm2d {
    fn device(&self) -> Result<(&Context, &GpuConvLstm)> {
        self.runner.device().ok_or_else(|| {
            Error::Unsupported(
                "the device path of this conv_lstm2d needs a GPU backend (it was built on the \
                 CPU)"
                    .into(),
            )
        })
    }

    /// `(B, T)` of an input shape, checked against the layer.
    fn input_bt(&self, input: &[usize]) -> Result<(usize, usize)> {
        let c = self.config();
        match input {
            &[b, t, r, cc, ch] if (r, cc, ch) == (c.rows, c.cols, c.in_channels) && b * t > 0 => {
                Ok((b, t))
            }
            _ => Err(Error::Shape(format!(
                "conv_lstm2d input has shape {input:?}; expected (batch, steps, {}, {}, {})",
                c.rows, c.cols, c.in_channels
            ))),
        }
    }

    /// `(Ho, Wo, F)` of one output frame.
    fn frame(&self) -> Result<[usize; 3]> {
        let c = self.config();
        let (ho, wo) = c.out_hw()?;
        Ok([ho, wo, c.filters])
    }

    /// Records the forward on device tensors (GPU backend): `x` `(B, T, rows, cols, Cin)`,
    /// optional `(h0, c0)` each `(B, Ho, Wo, F)`. `y` is the sequence or the last step (as
    /// `return_sequences` says); the state is `[h_n, c_n]`.
    pub fn record_forward_with(
        &self,
        rec: &mut Recorder<'_>,
        x: &DeviceTensor,
        state: Option<(&DeviceTensor, &DeviceTensor)>,
        train: bool,
    ) -> Result<Forward> {
        let (ctx, w) = self.device()?;
        let (b, t) = self.input_bt(x.shape())?;
        x.expect(ctx, "conv_lstm2d input", DType::F32, x.shape())?;
        let [ho, wo, f] = self.frame()?;
        let n = w.state_len(b)?;
        let (h0, c0) = match state {
            Some((h, c)) => {
                h.expect(ctx, "h0", DType::F32, &[b, ho, wo, f])?;
                c.expect(ctx, "c0", DType::F32, &[b, ho, wo, f])?;
                (h.buffer().clone(), c.buffer().clone())
            }
            None => (buffers::zeros(ctx, "h0", n)?, buffers::zeros(ctx, "c0", n)?),
        };
        let c = self.config();
        let xs = if c.go_backwards {
            reverse_time(rec, x.buffer(), (b, t, c.rows * c.cols * c.in_channels))?
        } else {
            x.buffer().clone()
        };
        let run = w.record_forward(
            ctx,
            rec,
            &xs,
            (b, t),
            (&h0, &c0),
            self.runner.algorithm,
            train,
        )?;
        let h_n = DeviceTensor::wrap(ctx, run.h_n, vec![b, ho, wo, f]);
        let y = if c.return_sequences {
            DeviceTensor::wrap(ctx, run.out, vec![b, t, ho, wo, f])
        } else {
            h_n.clone()
        };
        let origin = Origin {
            layer: self.id,
            ctx: Some(ctx.id()),
            input: x.shape().to_vec(),
        };
        Ok(Forward {
            y,
            state: vec![h_n, DeviceTensor::wrap(ctx, run.c_n, vec![b, ho, wo, f])],
            lengths: None,
            tape: run
                .tape
                .map(|tape| Tape::new(origin, ConvDevTape { tape, b, t })),
        })
    }

    fn record_backward_dev(
        &self,
        rec: &mut Recorder<'_>,
        tape: &Tape,
        grads: &OutputGrads,
    ) -> Result<Option<DeviceTensor>> {
        let (ctx, w) = self.device()?;
        let ct: &ConvDevTape = tape.open("conv_lstm2d", self.id, Some(ctx.id()))?;
        let (b, t) = (ct.b, ct.t);
        let [ho, wo, f] = self.frame()?;
        let frame = ho * wo * f;
        let c = self.config();
        let dy = match &grads.dy {
            Some(dy) if c.return_sequences => {
                dy.expect(ctx, "dy", DType::F32, &[b, t, ho, wo, f])?;
                dy.buffer().clone()
            }
            Some(dy) => {
                // The last step's gradient into slot t-1 of an otherwise zero sequence.
                dy.expect(ctx, "dy", DType::F32, &[b, ho, wo, f])?;
                let seq = buffers::zeros(ctx, "dy sequence", b * t * frame)?;
                for bi in 0..b {
                    let at = (bi * t + t - 1) * frame;
                    rec.copy(dy.buffer(), by(bi * frame), &seq, by(at), by(frame));
                }
                seq
            }
            None => buffers::zeros(ctx, "dy sequence", b * t * frame)?,
        };
        if grads.dstate.len() > 2 {
            return Err(Error::Shape(format!(
                "conv_lstm2d has 2 final state tensors; {} gradients were given",
                grads.dstate.len()
            )));
        }
        let state = buffers::zeros(ctx, "d state", 2 * b * frame)?;
        for (k, g) in grads.dstate.iter().enumerate() {
            if let Some(g) = g {
                g.expect(
                    ctx,
                    if k == 0 { "dh_n" } else { "dc_n" },
                    DType::F32,
                    &[b, ho, wo, f],
                )?;
                rec.copy(g.buffer(), 0, &state, by(k * b * frame), by(b * frame));
            }
        }
        let g = w.record_backward(ctx, rec, &ct.tape, &dy, state)?;
        let dx = if c.go_backwards {
            reverse_time(rec, &g.dx, (b, t, c.rows * c.cols * c.in_channels))?
        } else {
            g.dx
        };
        Ok(Some(DeviceTensor::wrap(
            ctx,
            dx,
            tape.input_shape().to_vec(),
        )))
    }
}

impl Layer for ConvLstm2d {
    fn kind(&self) -> &'static str {
        "conv_lstm2d"
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let (b, t) = self.input_bt(input)?;
        let [ho, wo, f] = self.frame()?;
        Ok(if self.config().return_sequences {
            vec![b, t, ho, wo, f]
        } else {
            vec![b, ho, wo, f]
        })
    }

    fn record_forward(
        &self,
        rec: &mut Recorder<'_>,
        x: &DeviceTensor,
        train: bool,
    ) -> Result<Forward> {
        self.record_forward_with(rec, x, None, train)
    }

    fn record_backward(
        &self,
        rec: &mut Recorder<'_>,
        tape: &Tape,
        grads: &OutputGrads,
    ) -> Result<Option<DeviceTensor>> {
        self.record_backward_dev(rec, tape, grads)
    }

    fn params(&self) -> Result<Vec<ParamBuffer>> {
        Ok(self.device()?.1.param_buffers())
    }
}

/// The tapes of a stack's layers.
struct StackTape {
    tapes: Vec<Tape>,
}

impl Layer for ConvLstm2dStack {
    fn kind(&self) -> &'static str {
        "conv_lstm2d_stack"
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let mut s = input.to_vec();
        for l in self.layers() {
            s = l.output_shape(&s)?;
        }
        Ok(s)
    }

    fn record_forward(
        &self,
        rec: &mut Recorder<'_>,
        x: &DeviceTensor,
        train: bool,
    ) -> Result<Forward> {
        let mut cur = x.clone();
        let mut tapes = Vec::new();
        let mut state = Vec::new();
        for l in self.layers() {
            let f = l.record_forward(rec, &cur, train)?;
            tapes.extend(f.tape);
            state = f.state;
            cur = f.y;
        }
        let first = &self.layers()[0];
        let origin = Origin {
            layer: self.id,
            ctx: first.ctx_id(),
            input: x.shape().to_vec(),
        };
        Ok(Forward {
            y: cur,
            state,
            lengths: None,
            tape: train.then(|| Tape::new(origin, StackTape { tapes })),
        })
    }

    fn record_backward(
        &self,
        rec: &mut Recorder<'_>,
        tape: &Tape,
        grads: &OutputGrads,
    ) -> Result<Option<DeviceTensor>> {
        let ctx = self.layers()[0].ctx_id();
        let st: &StackTape = tape.open("conv_lstm2d_stack", self.id, ctx)?;
        let mut g = grads.clone();
        let mut dx = None;
        for (l, t) in self.layers().iter().zip(&st.tapes).rev() {
            dx = l.record_backward(rec, t, &g)?;
            g = OutputGrads {
                dy: dx.clone(),
                dstate: Vec::new(),
            };
        }
        Ok(dx)
    }

    /// Every layer's tensors, named `"{layer index}.kernel"` and so on.
    fn params(&self) -> Result<Vec<ParamBuffer>> {
        let mut v = Vec::new();
        for (i, l) in self.layers().iter().enumerate() {
            for mut p in l.params()? {
                p.name = format!("{i}.{}", p.name);
                v.push(p);
            }
        }
        Ok(v)
    }
}
