//! The engine behind [`Gru`](super::gru::Gru) and [`SimpleRnn`](super::simple_rnn::SimpleRnn):
//! layers whose only state is h. Same forward/backward shape as the LSTM, without c.

use ndarray::{Array3, ArrayView3};

use super::Backend;
use super::common::{Layout, Runner, check_cpu_dropout, check_lengths_layout, expect_shape};
use crate::cpu::gru::{GruCellParams, GruParams, GruTape, gru_backward, gru_forward};
use crate::cpu::lstm::{LstmDims, check_inputs};
use crate::cpu::rnn::{Nonlinearity, RnnCellParams, RnnParams, RnnTape, rnn_backward, rnn_forward};
use crate::error::{Error, Result};
use crate::gpu::cell::{CellKind, CellWeights};
use crate::gpu::stack::{self as gpu, GpuTape};
use crate::gpu::stack_backward;
use crate::kernels::RecordStats;
use crate::layer::{Origin, next_layer_id};
use crate::layers::device::{RecurrentDevice, read_masks, read_params};
use crate::weights::keras::{self, KerasCell};
use crate::weights::{TensorMap, WeightFormat, torch};

/// Outputs of a GRU or RNN forward: `out` `(T, B, D·H)` (`(B, T, D·H)` with `batch_first`)
/// and `h_n` `(L·D, B, H)`, as in PyTorch.
#[derive(Clone, Debug)]
pub struct RnnOutput {
    /// Output sequence (zero at padded steps; processing order with `go_backwards`).
    pub out: Array3<f32>,
    /// Final hidden state of each layer-direction.
    pub h_n: Array3<f32>,
}

/// Gradients from a GRU or RNN backward.
#[derive(Clone, Debug)]
pub struct RnnGradients {
    /// dL/dx, shaped like `x` (zero at padded steps).
    pub dx: Array3<f32>,
    /// dL/dh0, `(L·D, B, H)`.
    pub dh0: Array3<f32>,
    /// Weight gradients under the names the weights were loaded with.
    pub weights: TensorMap,
}

/// The methods `Gru` and `SimpleRnn` share, delegating to their `core: HCore` (one
/// implementation, two public types with their own config).
macro_rules! hstate_layer_api {
    ($layer:ident) => {
        /// The backend this layer runs on.
        pub fn backend(&self) -> &Backend {
            &self.core.runner.backend
        }

        /// Forces a recurrence algorithm (GPU only; `Auto` lets the heuristic choose). A forced
        /// algorithm that cannot run at some shape makes that call return an error naming the limit.
        pub fn set_algorithm(&mut self, algorithm: Algorithm) {
            self.core.runner.algorithm = algorithm;
        }

        /// Dispatches, passes and submits of the last GPU forward or backward.
        pub fn last_stats(&self) -> RecordStats {
            self.core.stats()
        }

        /// The weights under the names they were loaded with (PyTorch or Keras).
        pub fn weights(&self) -> Result<TensorMap> {
            self.core.weights()
        }

        /// Inference forward; `h0` is `(L·D, B, H)` (zeros when `None`); `lengths` gives each
        /// sequence's valid length (PyTorch packed semantics).
        pub fn forward(
            &self,
            x: ArrayView3<f32>,
            h0: Option<ArrayView3<f32>>,
            lengths: Option<&[usize]>,
        ) -> Result<RnnOutput> {
            self.core.forward(x, h0, lengths, false).map(|(o, _)| o)
        }

        /// Training forward: as `forward`, plus what `backward` needs.
        pub fn forward_train(
            &self,
            x: ArrayView3<f32>,
            h0: Option<ArrayView3<f32>>,
            lengths: Option<&[usize]>,
        ) -> Result<(RnnOutput, RnnTrace)> {
            let (o, t) = self.core.forward(x, h0, lengths, true)?;
            let t = t.ok_or_else(|| Error::Device("training forward kept no trace".into()))?;
            Ok((o, t))
        }

        /// The recurrent-dropout masks the training forward of `trace` drew (GPU backend),
        /// read back from the device: `(L·D, G, B, H)`, gate blocks in the kernels' order
        /// (GRU r, z, n, i.e. Keras' r, z, h; SimpleRNN one), each value 0 or 1/(1-rate);
        /// `None` when it applied none.
        pub fn recurrent_dropout_mask(
            &self,
            trace: &RnnTrace,
        ) -> Result<Option<ndarray::Array4<f32>>> {
            self.core.recurrent_masks(trace)
        }

        /// As `recurrent_dropout_mask`, for the tape of a recorded training forward.
        pub fn recurrent_dropout_mask_of(
            &self,
            tape: &crate::Tape,
        ) -> Result<Option<ndarray::Array4<f32>>> {
            self.core.device_path().recurrent_masks(tape)
        }

        /// Backward through time from the upstream gradients of `out` (caller's layout) and
        /// `h_n` (zeros when `None`). Returns dx, dh0 and every weight gradient under the names
        /// the weights were loaded with.
        pub fn backward(
            &self,
            trace: &RnnTrace,
            dy_out: ArrayView3<f32>,
            dy_h_n: Option<ArrayView3<f32>>,
        ) -> Result<RnnGradients> {
            self.core.backward(trace, dy_out, dy_h_n)
        }

        /// Records the forward on device tensors into `rec` (GPU backend): `x` in the
        /// caller's layout, optional `h0` `(L·D, B, H)` and u32 `lengths` `(B)`. Returns `y`
        /// in the caller's layout and the state `[h_n]`; `train` keeps a tape for
        /// [`Layer::record_backward`](crate::Layer::record_backward).
        pub fn record_forward_with(
            &self,
            rec: &mut crate::Recorder<'_>,
            x: &crate::DeviceTensor,
            h0: Option<&crate::DeviceTensor>,
            lengths: Option<&crate::DeviceTensor>,
            train: bool,
        ) -> Result<crate::Forward> {
            self.core
                .device_path()
                .record_forward(rec, x, &[h0], lengths, train)
        }
    };
}
pub(crate) use hstate_layer_api;

/// The [`Layer`](crate::Layer) contract for `Gru` and `SimpleRnn` through their `core`.
macro_rules! hstate_layer_impl {
    ($layer:ident) => {
        impl crate::Layer for $layer {
            fn kind(&self) -> &'static str {
                self.core.kind
            }

            fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
                self.core.device_path().output_shape(input)
            }

            fn record_forward(
                &self,
                rec: &mut crate::Recorder<'_>,
                x: &crate::DeviceTensor,
                train: bool,
            ) -> Result<crate::Forward> {
                self.core
                    .device_path()
                    .record_forward(rec, x, &[], None, train)
            }

            fn record_backward(
                &self,
                rec: &mut crate::Recorder<'_>,
                tape: &crate::Tape,
                grads: &crate::OutputGrads,
            ) -> Result<Option<crate::DeviceTensor>> {
                self.core.device_path().record_backward(rec, tape, grads)
            }

            fn params(&self) -> Result<Vec<crate::nn::ParamBuffer>> {
                self.core.device_path().params()
            }
        }

        impl crate::nn::masking::Recurrent for $layer {
            fn record_forward_packed(
                &self,
                rec: &mut crate::Recorder<'_>,
                x: &crate::DeviceTensor,
                lengths: &crate::DeviceTensor,
                train: bool,
            ) -> Result<crate::Forward> {
                self.record_forward_with(rec, x, None, Some(lengths), train)
            }

            fn packs_batch_first(&self) -> bool {
                self.core.layout.batch_first && !self.core.layout.go_backwards
            }
        }
    };
}
pub(crate) use hstate_layer_impl;

enum Inner {
    Gru(GruTape<f32>),
    Rnn(RnnTape<f32>),
    Gpu(GpuTape),
}

/// What a GRU or RNN `forward_train` saved for `backward` (on the device for the GPU).
pub struct RnnTrace {
    inner: Inner,
    t: usize,
    b: usize,
    origin: Origin,
}

/// The CPU-reference parameters of the cell.
pub(crate) enum HParams {
    Gru(GruParams<f32>),
    Rnn(RnnParams<f32>),
}

impl HParams {
    fn dims(&self) -> LstmDims {
        match self {
            HParams::Gru(p) => p.dims,
            HParams::Rnn(p) => p.dims,
        }
    }

    fn validate(&self) -> Result<()> {
        match self {
            HParams::Gru(p) => p.validate(),
            HParams::Rnn(p) => p.validate(),
        }
    }

    fn generic(&self) -> Vec<CellWeights> {
        match self {
            HParams::Gru(p) => p.cells.iter().map(gru_generic).collect(),
            HParams::Rnn(p) => p.cells.iter().map(rnn_generic).collect(),
        }
    }
}

pub(crate) fn gru_generic(c: &GruCellParams<f32>) -> CellWeights {
    CellWeights {
        w_ih: c.w_ih.clone(),
        w_hh: c.w_hh.clone(),
        b_ih: c.b_ih.clone(),
        b_hh: c.b_hh.clone(),
        w_hr: None,
    }
}

pub(crate) fn rnn_generic(c: &RnnCellParams<f32>) -> CellWeights {
    CellWeights {
        w_ih: c.w_ih.clone(),
        w_hh: c.w_hh.clone(),
        b_ih: c.b_ih.clone(),
        b_hh: c.b_hh.clone(),
        w_hr: None,
    }
}

/// PyTorch-layout cells from generic weights, for either cell type.
pub(crate) fn gru_cells(cells: Vec<CellWeights>) -> Vec<GruCellParams<f32>> {
    cells
        .into_iter()
        .map(|c| GruCellParams {
            w_ih: c.w_ih,
            w_hh: c.w_hh,
            b_ih: c.b_ih,
            b_hh: c.b_hh,
        })
        .collect()
}

pub(crate) fn rnn_cells(cells: Vec<CellWeights>) -> Vec<RnnCellParams<f32>> {
    cells
        .into_iter()
        .map(|c| RnnCellParams {
            w_ih: c.w_ih,
            w_hh: c.w_hh,
            b_ih: c.b_ih,
            b_hh: c.b_hh,
        })
        .collect()
}

/// A GRU or RNN stack on a backend.
pub(crate) struct HCore {
    /// "gru" or "simple_rnn", for messages.
    pub kind: &'static str,
    pub id: u64,
    pub layout: Layout,
    pub bias: bool,
    pub format: WeightFormat,
    pub keras_cell: KerasCell,
    pub params: HParams,
    pub runner: Runner,
    /// Keras `recurrent_dropout` rate and its seed (set by the layer after `new`).
    pub rec_dropout: (f32, u64),
}

impl HCore {
    pub fn new(
        layout: Layout,
        (bias, acts): (bool, u32),
        format: WeightFormat,
        keras_cell: KerasCell,
        params: HParams,
        backend: Backend,
    ) -> Result<Self> {
        params.validate()?;
        let kind = match &params {
            HParams::Gru(p) => CellKind::Gru {
                reset_before: p.mode == crate::cpu::gru::GruMode::ResetBefore,
            },
            HParams::Rnn(p) => CellKind::Rnn {
                relu: p.nonlinearity == Nonlinearity::Relu,
            },
        };
        let runner = Runner::new(
            backend,
            kind,
            params.dims(),
            &params.generic(),
            (format, bias, acts),
        )?;
        Ok(Self {
            kind: match kind {
                CellKind::Gru { .. } => "gru",
                _ => "simple_rnn",
            },
            id: next_layer_id(),
            layout,
            bias,
            format,
            keras_cell,
            params,
            runner,
            rec_dropout: (0.0, 0),
        })
    }

    pub fn stats(&self) -> RecordStats {
        self.runner.stats()
    }

    /// Weights (or gradients) under the names they were loaded with.
    pub fn export(&self, cells: &[CellWeights], gradients: bool) -> Result<TensorMap> {
        match self.format {
            WeightFormat::Torch => Ok(torch::export(&self.params.dims(), self.bias, cells)),
            WeightFormat::Keras => {
                let c = cells
                    .first()
                    .ok_or_else(|| Error::Weights("a Keras layer has one cell".into()))?;
                keras::export(self.keras_cell, self.bias, c, gradients)
            }
        }
    }

    pub fn weights(&self) -> Result<TensorMap> {
        match self.runner.device() {
            Some((ctx, w)) if w.was_exposed() => read_params(ctx, w),
            _ => self.export(&self.params.generic(), false),
        }
    }

    pub fn device_path(&self) -> RecurrentDevice<'_> {
        RecurrentDevice {
            kind: self.kind,
            id: self.id,
            runner: &self.runner,
            layout: self.layout,
            dims: self.params.dims(),
            has_c: false,
            rec_dropout: self.rec_dropout,
        }
    }

    fn ctx_id(&self) -> Option<u64> {
        self.runner.device().map(|(c, _)| c.id())
    }

    pub fn forward(
        &self,
        x: ArrayView3<f32>,
        h0: Option<ArrayView3<f32>>,
        lengths: Option<&[usize]>,
        train: bool,
    ) -> Result<(RnnOutput, Option<RnnTrace>)> {
        let d = self.params.dims();
        check_lengths_layout(lengths, self.layout)?;
        self.layout
            .check_input(self.kind, x.shape(), d.input_size)?;
        let xt = self.layout.time_major(x);
        let (t, b, _) = xt.dim();
        let zeros;
        let h0 = match h0 {
            Some(h) => h,
            None => {
                zeros = Array3::zeros((d.cell_count(), b, d.hidden_size));
                zeros.view()
            }
        };
        // No c state: the c0 check is given the shape it expects.
        let c_shape = [d.cell_count(), b, d.hidden_size];
        let lens = check_inputs(&d, xt.shape(), h0.shape(), &c_shape, lengths)?;
        check_cpu_dropout(self.kind, &self.runner.backend, self.rec_dropout.0, train)?;
        let (out, h_n, inner) = match self.runner.device() {
            Some((ctx, w)) => {
                let drop = self.runner.next_drop(self.rec_dropout, train);
                let algo = self.runner.algorithm;
                let f = gpu::forward(ctx, w, xt, (h0, None), &lens, algo, (train, drop))?;
                self.runner.set_stats(f.stats);
                (f.out, f.h_n, f.tape.map(Inner::Gpu))
            }
            None => match &self.params {
                HParams::Gru(p) => {
                    let f = gru_forward(p, xt, h0, lengths)?;
                    (f.out, f.h_n, train.then_some(Inner::Gru(f.tape)))
                }
                HParams::Rnn(p) => {
                    let f = rnn_forward(p, xt, h0, lengths)?;
                    (f.out, f.h_n, train.then_some(Inner::Rnn(f.tape)))
                }
            },
        };
        let out = RnnOutput {
            out: self.layout.caller(out, false),
            h_n,
        };
        let origin = Origin {
            layer: self.id,
            ctx: self.ctx_id(),
            input: x.shape().to_vec(),
        };
        Ok((
            out,
            inner.map(|inner| RnnTrace {
                inner,
                t,
                b,
                origin,
            }),
        ))
    }

    pub fn recurrent_masks(&self, trace: &RnnTrace) -> Result<Option<ndarray::Array4<f32>>> {
        match (&trace.inner, self.runner.device()) {
            (Inner::Gpu(tape), Some((ctx, w))) => read_masks(ctx, w, tape),
            _ => Ok(None),
        }
    }

    pub fn backward(
        &self,
        trace: &RnnTrace,
        dy_out: ArrayView3<f32>,
        dy_h_n: Option<ArrayView3<f32>>,
    ) -> Result<RnnGradients> {
        trace.origin.check(self.kind, self.id, self.ctx_id())?;
        let d = self.params.dims();
        let (t, b, h) = (trace.t, trace.b, d.hidden_size);
        let want = self.layout.caller_shape(t, b, d.directions() * h);
        expect_shape("dy_out", dy_out.shape(), &want)?;
        let dy = self.layout.time_major_out(dy_out);
        let zh = Array3::zeros((d.cell_count(), b, h));
        let dyh = dy_h_n.unwrap_or(zh.view());
        expect_shape("dy_h_n", dyh.shape(), &[d.cell_count(), b, h])?;
        let other = || Error::Config("this trace was recorded on another backend or cell".into());
        let (dx, dh0, cells) = match (&trace.inner, self.runner.device(), &self.params) {
            (Inner::Gpu(tape), Some((ctx, w)), _) => {
                let g = stack_backward::backward(ctx, w, tape, dy, dyh, None)?;
                self.runner.set_stats(g.stats);
                (g.dx, g.dh0, g.cells)
            }
            (Inner::Gru(tape), None, HParams::Gru(p)) => {
                let g = gru_backward(p, tape, dy, dyh)?;
                (g.dx, g.dh0, g.cells.iter().map(gru_generic).collect())
            }
            (Inner::Rnn(tape), None, HParams::Rnn(p)) => {
                let g = rnn_backward(p, tape, dy, dyh)?;
                (g.dx, g.dh0, g.cells.iter().map(rnn_generic).collect())
            }
            _ => return Err(other()),
        };
        Ok(RnnGradients {
            dx: self.layout.caller(dx, true),
            dh0,
            weights: self.export(&cells, true)?,
        })
    }
}
