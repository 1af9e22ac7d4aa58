//! `Lstm`: a multi-layer, optionally bidirectional LSTM with PyTorch semantics, loadable from
//! PyTorch state_dict tensors, Keras kernels or a safetensors file.

use std::path::Path;

use ndarray::{Array3, Array4, ArrayView3};

use super::Backend;
use super::common::{
    Layout, Runner, check_cpu_dropout, check_go_backwards, check_lengths_layout,
    check_recurrent_dropout, expect_shape,
};
use crate::algorithm::Algorithm;
use crate::cpu::lstm::{self as cpu, LstmCellParams, LstmDims, LstmGrads, LstmParams, LstmTape};
use crate::error::{Error, Result};
use crate::gpu::cell::{CellKind, CellWeights};
use crate::gpu::stack::{self as gpu, GpuTape};
use crate::gpu::stack_backward;
use crate::kernels::{RecordStats, Recorder};
use crate::layer::{Forward, Layer, Origin, OutputGrads, Tape, next_layer_id};
use crate::layers::device::{RecurrentDevice, read_masks, read_params};
use crate::nn::ParamBuffer;
use crate::tensor::DeviceTensor;
use crate::weights::keras::{self, KerasCell};
use crate::weights::{self, TensorMap, WeightFormat, lookup, torch};

/// Configuration of an [`Lstm`], named as in PyTorch (`nn.LSTM`) with Keras' `go_backwards`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LstmConfig {
    /// Features per input step (`I`).
    pub input_size: usize,
    /// Hidden units (`H`, Keras `units`).
    pub hidden_size: usize,
    /// Stacked layers (default 1).
    pub num_layers: usize,
    /// Run a reverse direction too; outputs are `[forward | reverse]` on the last axis.
    pub bidirectional: bool,
    /// Projection size `P` of `h` (0 = none; PyTorch `proj_size`).
    pub proj_size: usize,
    /// Inputs and outputs are `(B, T, ·)` instead of `(T, B, ·)`.
    pub batch_first: bool,
    /// Whether the layer has biases (PyTorch `bias`, Keras `use_bias`).
    pub bias: bool,
    /// Keras `go_backwards`: process the sequence last step first and return outputs in
    /// processing order (as Keras does). One unidirectional layer only.
    pub go_backwards: bool,
    /// Keras `activation`: the candidate and output activation (tanh; GPU backend for others).
    pub activation: crate::cpu::Activation,
    /// Keras `recurrent_activation`: the gates' activation (sigmoid; GPU backend for others).
    pub recurrent_activation: crate::cpu::Activation,
    /// Keras `recurrent_dropout`: in a training forward (GPU backend), the fraction of
    /// h_{t-1} dropped where it feeds the recurrent kernel, with one mask per gate block
    /// (Keras: LSTM 4, GRU 3, SimpleRNN 1), each `(B, units)`, drawn afresh per call and
    /// kept for every step; kept values are scaled by 1/(1-rate). `0 ≤ rate < 1`; 0 (the
    /// default) and inference change nothing.
    pub recurrent_dropout: f32,
    /// Seed of the recurrent-dropout masks (each training call mixes in a call counter).
    pub dropout_seed: u64,
}

impl LstmConfig {
    /// One unidirectional layer with biases, time-major, no projection.
    pub fn new(input_size: usize, hidden_size: usize) -> Self {
        Self {
            input_size,
            hidden_size,
            num_layers: 1,
            bidirectional: false,
            proj_size: 0,
            batch_first: false,
            bias: true,
            go_backwards: false,
            activation: crate::cpu::Activation::Tanh,
            recurrent_activation: crate::cpu::Activation::Sigmoid,
            recurrent_dropout: 0.0,
            dropout_seed: 0,
        }
    }

    /// The sizes the kernels and the CPU reference work with.
    pub fn dims(&self) -> LstmDims {
        LstmDims {
            input_size: self.input_size,
            hidden_size: self.hidden_size,
            proj_size: self.proj_size,
            num_layers: self.num_layers,
            bidirectional: self.bidirectional,
        }
    }

    /// Checks sizes and option combinations.
    pub fn validate(&self) -> Result<()> {
        self.dims().validate()?;
        check_recurrent_dropout("lstm", self.recurrent_dropout)?;
        if self.proj_size > 0 && self.recurrent_dropout > 0.0 {
            // Keras has no projection, so there is no reference for the masks' semantics.
            return Err(Error::Unsupported(format!(
                "lstm recurrent_dropout {} with proj_size {} (a Keras option; Keras LSTMs have \
                 no projection)",
                self.recurrent_dropout, self.proj_size
            )));
        }
        check_go_backwards(self.go_backwards, &self.dims())
    }

    fn layout(&self) -> Layout {
        Layout {
            batch_first: self.batch_first,
            go_backwards: self.go_backwards,
        }
    }
}

/// Outputs of a forward pass. `out` is `(T, B, D·P)` (`(B, T, D·P)` with `batch_first`),
/// `h_n` is `(L·D, B, P)` and `c_n` is `(L·D, B, H)`, as in PyTorch.
#[derive(Clone, Debug)]
pub struct LstmOutput {
    /// Output sequence (zero at padded steps; processing order with `go_backwards`).
    pub out: Array3<f32>,
    /// Final hidden state of each layer-direction.
    pub h_n: Array3<f32>,
    /// Final cell state of each layer-direction.
    pub c_n: Array3<f32>,
}

enum TraceInner {
    Cpu(LstmTape<f32>),
    Gpu(GpuTape),
}

/// What `forward_train` saved for `backward` (on the device for the GPU backend). It
/// remembers the layer, context and input shape that made it: another layer's `backward`
/// refuses it with a typed error.
pub struct LstmTrace {
    inner: TraceInner,
    t: usize,
    b: usize,
    origin: Origin,
}

/// Gradients from [`Lstm::backward`].
#[derive(Clone, Debug)]
pub struct LstmGradients {
    /// dL/dx, shaped like `x` (zero at padded steps).
    pub dx: Array3<f32>,
    /// dL/dh0, `(L·D, B, P)`.
    pub dh0: Array3<f32>,
    /// dL/dc0, `(L·D, B, H)`.
    pub dc0: Array3<f32>,
    /// Weight gradients under the names the weights were loaded with.
    pub weights: TensorMap,
}

/// A multi-layer LSTM on a [`Backend`].
pub struct Lstm {
    config: LstmConfig,
    params: LstmParams<f32>,
    format: WeightFormat,
    runner: Runner,
    id: u64,
}

fn generic(cells: &[LstmCellParams<f32>]) -> Vec<CellWeights> {
    cells.iter().map(CellWeights::from).collect()
}

impl Lstm {
    /// A layer with PyTorch's default initialisation, U(-1/√H, 1/√H), from a fixed seed.
    pub fn new(config: LstmConfig, backend: Backend, seed: u64) -> Result<Self> {
        config.validate()?;
        let scale = 1.0 / (config.hidden_size as f64).sqrt();
        let params = LstmParams::<f32>::random(config.dims(), seed, scale)?;
        Self::with_params(config, params, WeightFormat::Torch, backend)
    }

    /// A layer from PyTorch state_dict tensors (`weight_ih_l0`, `bias_hh_l1_reverse`, ...).
    pub fn from_torch(config: LstmConfig, tensors: &TensorMap, backend: Backend) -> Result<Self> {
        config.validate()?;
        let cells = torch::import(config.dims(), 4, config.bias, tensors)?;
        let params = LstmParams {
            dims: config.dims(),
            cells: cells.into_iter().map(Into::into).collect(),
        };
        Self::with_params(config, params, WeightFormat::Torch, backend)
    }

    /// A layer from Keras tensors `kernel` `(I, 4U)`, `recurrent_kernel` `(U, 4U)`, `bias` `(4U)`.
    pub fn from_keras(config: LstmConfig, tensors: &TensorMap, backend: Backend) -> Result<Self> {
        config.validate()?;
        let cell = keras::import(KerasCell::Lstm, config.dims(), config.bias, tensors)?;
        let params = LstmParams {
            dims: config.dims(),
            cells: vec![cell.into()],
        };
        Self::with_params(config, params, WeightFormat::Keras, backend)
    }

    /// A layer from a `.safetensors` file holding PyTorch names (possibly under a module
    /// prefix such as `lstm.weight_ih_l0`) or Keras names.
    pub fn from_safetensors(config: LstmConfig, path: &Path, backend: Backend) -> Result<Self> {
        let file = weights::safetensors_io::read(path)?;
        if lookup(&file.tensors, "weight_ih_l0")?.is_some() {
            Self::from_torch(config, &file.tensors, backend)
        } else if lookup(&file.tensors, "kernel")?.is_some() {
            Self::from_keras(config, &file.tensors, backend)
        } else {
            Err(Error::Weights(format!(
                "{}: neither weight_ih_l0 (PyTorch) nor kernel (Keras) found",
                path.display()
            )))
        }
    }

    fn with_params(
        config: LstmConfig,
        params: LstmParams<f32>,
        format: WeightFormat,
        backend: Backend,
    ) -> Result<Self> {
        params.validate()?;
        let acts = super::common::packed_acts(
            "lstm",
            &backend,
            config.activation,
            config.recurrent_activation,
        )?;
        let runner = Runner::new(
            backend,
            CellKind::Lstm,
            params.dims,
            &generic(&params.cells),
            (format, config.bias, acts),
        )?;
        Ok(Self {
            config,
            params,
            format,
            runner,
            id: next_layer_id(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LstmConfig {
        &self.config
    }

    /// The backend this layer runs on.
    pub fn backend(&self) -> &Backend {
        &self.runner.backend
    }

    /// Forces a recurrence algorithm (GPU only; `Auto` lets the heuristic choose). A forced
    /// algorithm that cannot run at some shape makes that call return an error naming the limit.
    pub fn set_algorithm(&mut self, algorithm: Algorithm) {
        self.runner.algorithm = algorithm;
    }

    /// Dispatches, passes and submits of the last GPU forward or backward.
    pub fn last_stats(&self) -> RecordStats {
        self.runner.stats()
    }

    /// The weights under the names they were loaded with (PyTorch or Keras). After training
    /// on the device (see [`Layer::params`]) these are read back from the device.
    pub fn weights(&self) -> Result<TensorMap> {
        match self.runner.device() {
            Some((ctx, w)) if w.was_exposed() => read_params(ctx, w),
            _ => Ok(self.export(&self.params.cells, false)),
        }
    }

    fn device_path(&self) -> RecurrentDevice<'_> {
        RecurrentDevice {
            kind: "lstm",
            id: self.id,
            runner: &self.runner,
            layout: self.config.layout(),
            dims: self.config.dims(),
            has_c: true,
            rec_dropout: (self.config.recurrent_dropout, self.config.dropout_seed),
        }
    }

    /// Records the forward on device tensors into `rec` (GPU backend): `x` in the caller's
    /// layout (`(B, T, I)` with `batch_first`, else `(T, B, I)`), optional `(h0, c0)` and
    /// u32 `lengths` `(B)`. Returns `y` in the caller's layout and the state `[h_n, c_n]`;
    /// `train` keeps a tape for [`Layer::record_backward`].
    pub fn record_forward_with(
        &self,
        rec: &mut Recorder<'_>,
        x: &DeviceTensor,
        state: Option<(&DeviceTensor, &DeviceTensor)>,
        lengths: Option<&DeviceTensor>,
        train: bool,
    ) -> Result<Forward> {
        let st = match state {
            Some((h, c)) => vec![Some(h), Some(c)],
            None => Vec::new(),
        };
        self.device_path()
            .record_forward(rec, x, &st, lengths, train)
    }

    fn export(&self, cells: &[LstmCellParams<f32>], gradients: bool) -> TensorMap {
        let cells = generic(cells);
        match self.format {
            WeightFormat::Torch => torch::export(&self.params.dims, self.config.bias, &cells),
            // Import guarantees exactly one cell, so export cannot fail on layout.
            WeightFormat::Keras => cells
                .first()
                .and_then(|c| keras::export(KerasCell::Lstm, self.config.bias, c, gradients).ok())
                .unwrap_or_default(),
        }
    }

    /// The unfused baseline (benchmarks): one unidirectional layer, zero state, time-major
    /// `x` `(T, B, I)`; the recurrence runs as one dispatch per operation per step, as ONNX
    /// Runtime's WebGPU LSTM does. Returns `out` `(T, B, H)`; GPU only.
    #[doc(hidden)]
    pub fn forward_unfused_baseline(&self, x: ArrayView3<f32>) -> Result<Array3<f32>> {
        let (ctx, w) = self
            .runner
            .device()
            .ok_or_else(|| Error::Unsupported("the unfused baseline is a GPU path".into()))?;
        let d = self.config.dims();
        let b = x.dim().1;
        let (hs, cs) = (
            [d.cell_count(), b, d.out_size()],
            [d.cell_count(), b, d.hidden_size],
        );
        cpu::check_inputs(&d, x.shape(), &hs, &cs, None)?;
        let (out, stats) = crate::gpu::unfused::forward_unfused(ctx, w, x)?;
        self.runner.set_stats(stats);
        Ok(out)
    }

    /// The unfused baseline's forward and backward (benchmarks), one submit, for
    /// L = ½·Σ out² (dL/dout = out): returns `(out, dx, gradients)` with PyTorch names
    /// (`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`); GPU only.
    #[doc(hidden)]
    pub fn forward_backward_unfused_baseline(
        &self,
        x: ArrayView3<f32>,
    ) -> Result<(Array3<f32>, Array3<f32>, TensorMap)> {
        let (ctx, w) = self
            .runner
            .device()
            .ok_or_else(|| Error::Unsupported("the unfused baseline is a GPU path".into()))?;
        let d = self.config.dims();
        let b = x.dim().1;
        let (hs, cs) = (
            [d.cell_count(), b, d.out_size()],
            [d.cell_count(), b, d.hidden_size],
        );
        cpu::check_inputs(&d, x.shape(), &hs, &cs, None)?;
        let r = crate::gpu::unfused::forward_backward_unfused(ctx, w, x)?;
        self.runner.set_stats(r.stats);
        let mut g = TensorMap::new();
        g.insert("weight_ih_l0".into(), r.dw_ih.into_dyn());
        g.insert("weight_hh_l0".into(), r.dw_hh.into_dyn());
        g.insert("bias_ih_l0".into(), r.db.clone().into_dyn());
        g.insert("bias_hh_l0".into(), r.db.into_dyn());
        Ok((r.out, r.dx, g))
    }

    /// Inference forward. `state` is `(h0, c0)` shaped `(L·D, B, P)` and `(L·D, B, H)` (zeros
    /// when `None`); `lengths` gives each sequence's valid length (PyTorch packed semantics).
    pub fn forward(
        &self,
        x: ArrayView3<f32>,
        state: Option<(ArrayView3<f32>, ArrayView3<f32>)>,
        lengths: Option<&[usize]>,
    ) -> Result<LstmOutput> {
        self.run(x, state, lengths, false).map(|(o, _)| o)
    }

    /// Training forward: as [`Lstm::forward`], plus what [`Lstm::backward`] needs.
    pub fn forward_train(
        &self,
        x: ArrayView3<f32>,
        state: Option<(ArrayView3<f32>, ArrayView3<f32>)>,
        lengths: Option<&[usize]>,
    ) -> Result<(LstmOutput, LstmTrace)> {
        let (o, t) = self.run(x, state, lengths, true)?;
        let t = t.ok_or_else(|| Error::Device("training forward kept no trace".into()))?;
        Ok((o, t))
    }

    fn run(
        &self,
        x: ArrayView3<f32>,
        state: Option<(ArrayView3<f32>, ArrayView3<f32>)>,
        lengths: Option<&[usize]>,
        train: bool,
    ) -> Result<(LstmOutput, Option<LstmTrace>)> {
        let d = self.config.dims();
        let layout = self.config.layout();
        check_lengths_layout(lengths, layout)?;
        layout.check_input("lstm", x.shape(), d.input_size)?;
        let xt = layout.time_major(x);
        let (t, b, _) = xt.dim();
        let zeros_h;
        let zeros_c;
        let (h0, c0) = match state {
            Some(s) => s,
            None => {
                zeros_h = Array3::zeros((d.cell_count(), b, d.out_size()));
                zeros_c = Array3::zeros((d.cell_count(), b, d.hidden_size));
                (zeros_h.view(), zeros_c.view())
            }
        };
        let lens = cpu::check_inputs(&d, xt.shape(), h0.shape(), c0.shape(), lengths)?;
        let rate = self.config.recurrent_dropout;
        check_cpu_dropout("lstm", &self.runner.backend, rate, train)?;
        let (out, h_n, c_n, inner) = match self.runner.device() {
            Some((ctx, w)) => {
                let drop = self
                    .runner
                    .next_drop((rate, self.config.dropout_seed), train);
                let f = gpu::forward(
                    ctx,
                    w,
                    xt,
                    (h0, Some(c0)),
                    &lens,
                    self.runner.algorithm,
                    (train, drop),
                )?;
                self.runner.set_stats(f.stats);
                let c_n = f
                    .c_n
                    .ok_or_else(|| Error::Device("LSTM forward returned no c_n".into()))?;
                (f.out, f.h_n, c_n, f.tape.map(TraceInner::Gpu))
            }
            None => {
                let f = cpu::lstm_forward(&self.params, xt, h0, c0, lengths)?;
                (
                    f.out,
                    f.h_n,
                    f.c_n,
                    train.then_some(TraceInner::Cpu(f.tape)),
                )
            }
        };
        let output = LstmOutput {
            out: layout.caller(out, false),
            h_n,
            c_n,
        };
        let origin = Origin {
            layer: self.id,
            ctx: self.runner.device().map(|(c, _)| c.id()),
            input: x.shape().to_vec(),
        };
        Ok((
            output,
            inner.map(|inner| LstmTrace {
                inner,
                t,
                b,
                origin,
            }),
        ))
    }

    /// The recurrent-dropout masks the training forward of `trace` drew (GPU backend), read
    /// back from the device: `(L·D, 4, B, P)` with gate blocks i, f, g (Keras c), o, each
    /// value 0 or 1/(1-rate); `None` when it applied none. The masks of a device
    /// [`Tape`] come from [`Lstm::recurrent_dropout_mask_of`].
    pub fn recurrent_dropout_mask(&self, trace: &LstmTrace) -> Result<Option<Array4<f32>>> {
        match (&trace.inner, self.runner.device()) {
            (TraceInner::Gpu(tape), Some((ctx, w))) => read_masks(ctx, w, tape),
            _ => Ok(None),
        }
    }

    /// As [`Lstm::recurrent_dropout_mask`], for the tape of a recorded training forward.
    pub fn recurrent_dropout_mask_of(&self, tape: &Tape) -> Result<Option<Array4<f32>>> {
        self.device_path().recurrent_masks(tape)
    }

    /// Backward through time from the upstream gradients of `out` (caller's layout) and of
    /// the final state `(h_n, c_n)` (zeros when `None`; the same family as `forward`'s
    /// `state`). Returns dx, dh0, dc0 and every weight gradient under the names the weights
    /// were loaded with. A trace from another layer or context is a typed error.
    pub fn backward(
        &self,
        trace: &LstmTrace,
        dy_out: ArrayView3<f32>,
        dy_state: Option<(ArrayView3<f32>, ArrayView3<f32>)>,
    ) -> Result<LstmGradients> {
        let ctx_id = self.runner.device().map(|(c, _)| c.id());
        trace.origin.check("lstm", self.id, ctx_id)?;
        let (dy_h_n, dy_c_n) = match dy_state {
            Some((h, c)) => (Some(h), Some(c)),
            None => (None, None),
        };
        let d = self.config.dims();
        let (t, b) = (trace.t, trace.b);
        let (ld, p, h) = (d.cell_count(), d.out_size(), d.hidden_size);
        let layout = self.config.layout();
        let want = layout.caller_shape(t, b, d.directions() * p);
        expect_shape("dy_out", dy_out.shape(), &want)?;
        let dy = layout.time_major_out(dy_out);
        let zh = Array3::zeros((ld, b, p));
        let zc = Array3::zeros((ld, b, h));
        let dyh = dy_h_n.unwrap_or(zh.view());
        let dyc = dy_c_n.unwrap_or(zc.view());
        expect_shape("dy_h_n", dyh.shape(), &[ld, b, p])?;
        expect_shape("dy_c_n", dyc.shape(), &[ld, b, h])?;
        let grads: LstmGrads<f32> = match (&trace.inner, self.runner.device()) {
            (TraceInner::Gpu(tape), Some((ctx, w))) => {
                let g = stack_backward::backward(ctx, w, tape, dy, dyh, Some(dyc))?;
                self.runner.set_stats(g.stats);
                LstmGrads {
                    dx: g.dx,
                    dh0: g.dh0,
                    dc0: g
                        .dc0
                        .ok_or_else(|| Error::Device("LSTM backward returned no dc0".into()))?,
                    cells: g.cells.into_iter().map(Into::into).collect(),
                }
            }
            (TraceInner::Cpu(tape), None) => cpu::lstm_backward(&self.params, tape, dy, dyh, dyc)?,
            _ => {
                return Err(Error::Config(
                    "this trace was recorded on another backend".into(),
                ));
            }
        };
        let weights = self.export(&grads.cells, true);
        Ok(LstmGradients {
            dx: layout.caller(grads.dx, true),
            dh0: grads.dh0,
            dc0: grads.dc0,
            weights,
        })
    }
}

impl Layer for Lstm {
    fn kind(&self) -> &'static str {
        "lstm"
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.device_path().output_shape(input)
    }

    fn record_forward(
        &self,
        rec: &mut Recorder<'_>,
        x: &DeviceTensor,
        train: bool,
    ) -> Result<Forward> {
        self.record_forward_with(rec, x, None, None, train)
    }

    fn record_backward(
        &self,
        rec: &mut Recorder<'_>,
        tape: &Tape,
        grads: &OutputGrads,
    ) -> Result<Option<DeviceTensor>> {
        self.device_path().record_backward(rec, tape, grads)
    }

    fn params(&self) -> Result<Vec<ParamBuffer>> {
        self.device_path().params()
    }
}

impl crate::nn::masking::Recurrent for Lstm {
    fn record_forward_packed(
        &self,
        rec: &mut Recorder<'_>,
        x: &DeviceTensor,
        lengths: &DeviceTensor,
        train: bool,
    ) -> Result<Forward> {
        self.record_forward_with(rec, x, None, Some(lengths), train)
    }

    fn packs_batch_first(&self) -> bool {
        self.config.batch_first && !self.config.go_backwards
    }
}
