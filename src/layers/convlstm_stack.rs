//! `ConvLstm2dStack`: several ConvLSTM2D layers run as one model (the Keras next-frame example
//! stacks three). On the GPU the whole forward is one submit and the whole backward another:
//! each layer's output buffer is the next layer's input and each layer's input gradient the
//! previous layer's output gradient, with no host copies in between.

use ndarray::{Array4, Array5, ArrayD, ArrayView5, ArrayViewD, Axis, Ix4, Ix5, s};

use super::Backend;
use super::convlstm::{ConvLstm2d, ConvLstm2dOutput, ConvLstm2dTrace};
use crate::error::{Error, Result};
use crate::gpu::convlstm::ConvTape;
use crate::kernels::{RecordStats, Recorder, buffers};
use crate::weights::TensorMap;

/// Layers applied in order; see the module documentation.
pub struct ConvLstm2dStack {
    layers: Vec<ConvLstm2d>,
    pub(crate) id: u64,
}

enum Inner {
    Cpu(Vec<ConvLstm2dTrace>),
    Gpu(Vec<ConvTape>),
}

/// What `forward_train` saved for `backward`.
pub struct ConvLstm2dStackTrace {
    inner: Inner,
    b: usize,
    t: usize,
    /// The stack that recorded it (its layers' own traces also check on the CPU).
    layer: u64,
}

/// Gradients of a stack: the input gradient and each layer's Keras-named weight gradients.
#[derive(Clone, Debug)]
pub struct ConvLstm2dStackGradients {
    /// dL/dx `(B, T, rows, cols, Cin)` of the first layer.
    pub dx: Array5<f32>,
    /// One map per layer: `kernel`, `recurrent_kernel`, `bias`.
    pub layers: Vec<TensorMap>,
}

fn same_backend(a: &Backend, b: &Backend) -> bool {
    match (a, b) {
        (Backend::Cpu, Backend::Cpu) => true,
        (Backend::Gpu(x), Backend::Gpu(y)) => std::sync::Arc::ptr_eq(x, y),
        _ => false,
    }
}

impl ConvLstm2dStack {
    /// Checks that the layers chain: each input frame and channels equal the previous output,
    /// every layer but the last returns sequences, all share one backend, and only the first
    /// may use go_backwards (on the device a later reversal would need a time-flip kernel).
    pub fn new(layers: Vec<ConvLstm2d>) -> Result<Self> {
        if layers.is_empty() {
            return Err(Error::Config("a stack needs at least one layer".into()));
        }
        for (k, pair) in layers.windows(2).enumerate() {
            let (a, b) = (pair[0].config(), pair[1].config());
            let (ho, wo) = a.out_hw()?;
            if (b.rows, b.cols, b.in_channels) != (ho, wo, a.filters) {
                return Err(Error::Shape(format!(
                    "layer {} takes {}x{}x{} frames but layer {k} produces {ho}x{wo}x{}",
                    k + 1,
                    b.rows,
                    b.cols,
                    b.in_channels,
                    a.filters
                )));
            }
            if !a.return_sequences {
                return Err(Error::Config(format!(
                    "layer {k} must return sequences to feed layer {}",
                    k + 1
                )));
            }
            if b.go_backwards {
                return Err(Error::Unsupported(format!(
                    "go_backwards on stacked layer {} (first layer only)",
                    k + 1
                )));
            }
            if !same_backend(pair[0].backend(), pair[1].backend()) {
                return Err(Error::Config(format!(
                    "layers {k} and {} run on different backends",
                    k + 1
                )));
            }
        }
        Ok(Self {
            layers,
            id: crate::layer::next_layer_id(),
        })
    }

    /// The layers.
    pub fn layers(&self) -> &[ConvLstm2d] {
        &self.layers
    }

    /// Dispatches, passes and submits of the last GPU forward or backward of the whole stack.
    pub fn last_stats(&self) -> RecordStats {
        self.layers[0].last_stats()
    }

    /// Inference forward from zero states; returns the last layer's output and states.
    pub fn forward(&self, x: ArrayView5<f32>) -> Result<ConvLstm2dOutput> {
        self.run(x, false).map(|(o, _)| o)
    }

    /// Training forward: as [`ConvLstm2dStack::forward`], plus what `backward` needs.
    pub fn forward_train(
        &self,
        x: ArrayView5<f32>,
    ) -> Result<(ConvLstm2dOutput, ConvLstm2dStackTrace)> {
        let (o, t) = self.run(x, true)?;
        Ok((
            o,
            t.ok_or_else(|| Error::Device("training forward kept no trace".into()))?,
        ))
    }

    fn run(
        &self,
        x: ArrayView5<f32>,
        train: bool,
    ) -> Result<(ConvLstm2dOutput, Option<ConvLstm2dStackTrace>)> {
        let (b, t) = (x.shape()[0], x.shape()[1]);
        let first = &self.layers[0];
        let Some((ctx, _)) = first.runner.device() else {
            // CPU reference: chain the layers on the host.
            let mut traces = Vec::new();
            let mut cur: ArrayD<f32> = x.to_owned().into_dyn();
            let mut last = None;
            for l in &self.layers {
                let xv = cur
                    .view()
                    .into_dimensionality::<Ix5>()
                    .map_err(|e| Error::Shape(e.to_string()))?;
                let (y, tr) = l.forward_train(xv, None)?;
                traces.push(tr);
                cur = y.out.clone();
                last = Some(y);
            }
            let out = last.ok_or_else(|| Error::Config("empty stack".into()))?;
            return Ok((
                out,
                train.then_some(ConvLstm2dStackTrace {
                    inner: Inner::Cpu(traces),
                    b,
                    t,
                    layer: self.id,
                }),
            ));
        };
        let d0 = first.config().dims();
        ndarray_check(&x, d0.rows, d0.cols, d0.in_channels)?;
        let xs = if first.config().go_backwards {
            x.slice_move(s![.., ..;-1, .., .., ..])
        } else {
            x
        };
        let mut cur = buffers::upload(ctx, "x", &xs.iter().copied().collect::<Vec<_>>())?;
        let mut rec = Recorder::new(ctx);
        let mut tapes = Vec::new();
        let mut outs = Vec::new();
        for l in &self.layers {
            let (_, w) = l
                .runner
                .device()
                .ok_or_else(|| Error::Config("mixed backends".into()))?;
            let n = w.state_len(b)?;
            let zero = buffers::zeros(ctx, "zero state", n)?;
            let run = w.record_forward(
                ctx,
                &mut rec,
                &cur,
                (b, t),
                (&zero, &zero),
                l.runner.algorithm,
                train,
            )?;
            cur = run.out.clone();
            tapes.extend(run.tape);
            outs.push((run.out, run.h_n, run.c_n, n));
        }
        let stats = rec.submit()?;
        first.runner.set_stats(stats);
        let last = self
            .layers
            .last()
            .ok_or_else(|| Error::Config("empty stack".into()))?;
        let (out, hn, cn, n) = outs
            .pop()
            .ok_or_else(|| Error::Config("empty stack".into()))?;
        let mut got =
            buffers::read_f32(ctx, &[(&out, 0, t * n), (&hn, 0, n), (&cn, 0, n)])?.into_iter();
        let mut next = || got.next().ok_or_else(|| Error::Device("read-back".into()));
        let c = last.config();
        let (ho, wo) = c.out_hw()?;
        let shape4 = (b, ho, wo, c.filters);
        let seq = Array5::from_shape_vec((b, t, ho, wo, c.filters), next()?)
            .map_err(|e| Error::Shape(e.to_string()))?;
        let out = if c.return_sequences {
            seq.into_dyn()
        } else {
            seq.index_axis(Axis(1), t - 1).to_owned().into_dyn()
        };
        let h_n =
            Array4::from_shape_vec(shape4, next()?).map_err(|e| Error::Shape(e.to_string()))?;
        let c_n =
            Array4::from_shape_vec(shape4, next()?).map_err(|e| Error::Shape(e.to_string()))?;
        Ok((
            ConvLstm2dOutput { out, h_n, c_n },
            train.then_some(ConvLstm2dStackTrace {
                inner: Inner::Gpu(tapes),
                b,
                t,
                layer: self.id,
            }),
        ))
    }

    /// Backward from the gradient of the last layer's output (the shape `forward` returned);
    /// the final states get zero gradient.
    pub fn backward(
        &self,
        trace: &ConvLstm2dStackTrace,
        dy_out: ArrayViewD<f32>,
    ) -> Result<ConvLstm2dStackGradients> {
        if trace.layer != self.id {
            return Err(Error::Config(format!(
                "this conv_lstm2d_stack trace was recorded by layer #{}, not by this stack \
                 (#{})",
                trace.layer, self.id
            )));
        }
        let (b, t) = (trace.b, trace.t);
        match &trace.inner {
            Inner::Cpu(traces) => {
                let mut dy: ArrayD<f32> = dy_out.to_owned();
                let mut grads = Vec::new();
                for (l, tr) in self.layers.iter().zip(traces).rev() {
                    let g = l.backward(tr, dy.view(), None)?;
                    grads.push(g.weights);
                    dy = g.dx.into_dyn();
                }
                grads.reverse();
                let dx = dy
                    .into_dimensionality::<Ix5>()
                    .map_err(|e| Error::Shape(e.to_string()))?;
                Ok(ConvLstm2dStackGradients { dx, layers: grads })
            }
            Inner::Gpu(tapes) => {
                let first = &self.layers[0];
                let (ctx, _) = first
                    .runner
                    .device()
                    .ok_or_else(|| Error::Config("this trace was recorded on the GPU".into()))?;
                let last = self
                    .layers
                    .last()
                    .ok_or_else(|| Error::Config("empty stack".into()))?;
                let c = last.config();
                let (ho, wo) = c.out_hw()?;
                let mut full = Array5::<f32>::zeros((b, t, ho, wo, c.filters));
                if c.return_sequences {
                    let d = dy_out
                        .into_dimensionality::<Ix5>()
                        .map_err(|_| Error::Shape("dy_out must be (B, T, Ho, Wo, F)".into()))?;
                    if d.dim() != full.dim() {
                        return Err(Error::Shape(format!(
                            "dy_out has shape {:?}; expected {:?}",
                            d.shape(),
                            full.shape()
                        )));
                    }
                    full.assign(&d);
                } else {
                    let d = dy_out
                        .into_dimensionality::<Ix4>()
                        .map_err(|_| Error::Shape("dy_out must be (B, Ho, Wo, F)".into()))?;
                    if d.dim() != (b, ho, wo, c.filters) {
                        return Err(Error::Shape(format!(
                            "dy_out has shape {:?}; expected {:?}",
                            d.shape(),
                            (b, ho, wo, c.filters)
                        )));
                    }
                    full.index_axis_mut(Axis(1), t - 1).assign(&d);
                }
                let mut dy =
                    buffers::upload(ctx, "dy_out", &full.iter().copied().collect::<Vec<_>>())?;
                let mut rec = Recorder::new(ctx);
                let mut layer_grads = Vec::new();
                for (l, tape) in self.layers.iter().zip(tapes).rev() {
                    let (_, w) = l
                        .runner
                        .device()
                        .ok_or_else(|| Error::Config("mixed backends".into()))?;
                    let state = buffers::zeros(ctx, "bwd state", 2 * w.state_len(b)?)?;
                    let g = w.record_backward(ctx, &mut rec, tape, &dy, state)?;
                    dy = g.dx.clone();
                    layer_grads.push(g);
                }
                let stats = rec.submit()?;
                first.runner.set_stats(stats);
                let mut out = Vec::new();
                for (l, g) in self.layers.iter().rev().zip(&layer_grads) {
                    let (_, w) = l
                        .runner
                        .device()
                        .ok_or_else(|| Error::Config("mixed backends".into()))?;
                    let r = w.read_grads(ctx, b, t, g, stats)?;
                    out.push((r.dx, l.named(&r.kernel, &r.recurrent_kernel, &r.bias)));
                }
                out.reverse();
                let dx = out
                    .first()
                    .map(|o| o.0.clone())
                    .ok_or_else(|| Error::Config("empty stack".into()))?;
                let dx = if first.config().go_backwards {
                    dx.slice_move(s![.., ..;-1, .., .., ..])
                        .as_standard_layout()
                        .into_owned()
                } else {
                    dx
                };
                Ok(ConvLstm2dStackGradients {
                    dx,
                    layers: out.into_iter().map(|o| o.1).collect(),
                })
            }
        }
    }
}

fn ndarray_check(x: &ArrayView5<f32>, rows: usize, cols: usize, cin: usize) -> Result<()> {
    let sh = x.shape();
    if sh[0] == 0 || sh[1] == 0 || (sh[2], sh[3], sh[4]) != (rows, cols, cin) {
        return Err(Error::Shape(format!(
            "x has shape {sh:?}; expected (B ≥ 1, T ≥ 1, {rows}, {cols}, {cin})"
        )));
    }
    Ok(())
}
