//! `ConvLstm2d`: Keras `ConvLSTM2D` (channels_last, gates i,f,c,o), loadable from Keras
//! tensors or a safetensors file, on the GPU or the CPU reference.

use std::path::Path;

use ndarray::{Array1, Array4, Array5, ArrayD, ArrayView4, ArrayView5, Axis, Ix4, Ix5, s};

use super::Backend;
use super::common::{Runner, expect_shape};
use crate::algorithm::Algorithm;
pub use crate::cpu::convlstm::{Activation, Padding};
use crate::cpu::convlstm::{
    ConvLstmDims, ConvLstmParams, ConvLstmTape, check_inputs, convlstm_backward, convlstm_forward,
};
use crate::error::{Error, Result};
use crate::gpu::convlstm::{self as gpu, ConvTape, GpuConvLstm};
use crate::kernels::RecordStats;
use crate::layer::Origin;
use crate::weights::{TensorMap, require, safetensors_io};

/// Configuration of a [`ConvLstm2d`], named as in Keras (`keras.layers.ConvLSTM2D`), with its
/// defaults: strides 1, padding "valid", dilation 1, tanh / sigmoid, bias, last step only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvLstm2dConfig {
    /// Input frame height.
    pub rows: usize,
    /// Input frame width.
    pub cols: usize,
    /// Input channels (`Cin`).
    pub in_channels: usize,
    /// Output channels per gate (`F`).
    pub filters: usize,
    /// `(kh, kw)`, used by both convolutions.
    pub kernel_size: (usize, usize),
    /// Input-convolution strides (the recurrent convolution always uses 1).
    pub strides: (usize, usize),
    /// Input-convolution padding (the recurrent convolution is always "same").
    pub padding: Padding,
    /// Input-convolution dilation (Keras forbids combining it with strides > 1).
    pub dilation_rate: (usize, usize),
    /// Candidate and output activation.
    pub activation: Activation,
    /// Gate activation.
    pub recurrent_activation: Activation,
    /// Whether the layer has a bias.
    pub use_bias: bool,
    /// Return every step `(B, T, Ho, Wo, F)` instead of the last `(B, Ho, Wo, F)`.
    pub return_sequences: bool,
    /// Process the sequence last step first; outputs stay in processing order (Keras).
    pub go_backwards: bool,
}

impl ConvLstm2dConfig {
    /// Keras defaults for the given frame, channels, filters and kernel.
    pub fn new(
        rows: usize,
        cols: usize,
        in_channels: usize,
        filters: usize,
        kernel_size: (usize, usize),
    ) -> Self {
        Self {
            rows,
            cols,
            in_channels,
            filters,
            kernel_size,
            strides: (1, 1),
            padding: Padding::Valid,
            dilation_rate: (1, 1),
            activation: Activation::Tanh,
            recurrent_activation: Activation::Sigmoid,
            use_bias: true,
            return_sequences: false,
            go_backwards: false,
        }
    }

    /// The geometry the engines work with.
    pub fn dims(&self) -> ConvLstmDims {
        ConvLstmDims {
            rows: self.rows,
            cols: self.cols,
            in_channels: self.in_channels,
            filters: self.filters,
            kernel: self.kernel_size,
            strides: self.strides,
            padding: self.padding,
            dilation: self.dilation_rate,
            activation: self.activation,
            recurrent_activation: self.recurrent_activation,
        }
    }

    /// Output frame size `(Ho, Wo)`; errors as [`ConvLstmDims::validate`].
    pub fn out_hw(&self) -> Result<(usize, usize)> {
        self.dims().validate()?;
        self.dims().out_hw()
    }
}

/// Outputs of a forward pass (Keras layouts).
#[derive(Clone, Debug)]
pub struct ConvLstm2dOutput {
    /// `(B, T, Ho, Wo, F)` with `return_sequences`, else `(B, Ho, Wo, F)` (the last step).
    pub out: ArrayD<f32>,
    /// Final hidden state `(B, Ho, Wo, F)`.
    pub h_n: Array4<f32>,
    /// Final cell state `(B, Ho, Wo, F)`.
    pub c_n: Array4<f32>,
}

enum Inner {
    Cpu(Box<ConvLstmTape<f32>>),
    Gpu(ConvTape),
}

/// What `forward_train` saved for `backward`.
pub struct ConvLstm2dTrace {
    inner: Inner,
    b: usize,
    t: usize,
    origin: Origin,
}

/// Gradients from [`ConvLstm2d::backward`].
#[derive(Clone, Debug)]
pub struct ConvLstm2dGradients {
    /// dL/dx `(B, T, rows, cols, Cin)`.
    pub dx: Array5<f32>,
    /// dL/dh0 `(B, Ho, Wo, F)`.
    pub dh0: Array4<f32>,
    /// dL/dc0 `(B, Ho, Wo, F)`.
    pub dc0: Array4<f32>,
    /// `kernel`, `recurrent_kernel` and (with a bias) `bias`, Keras names and layouts.
    pub weights: TensorMap,
}

/// A ConvLSTM2D layer on a [`Backend`].
pub struct ConvLstm2d {
    config: ConvLstm2dConfig,
    params: ConvLstmParams<f32>,
    pub(crate) runner: Runner<GpuConvLstm>,
    pub(crate) id: u64,
}

impl ConvLstm2d {
    /// A layer with Glorot-uniform-like weights U(-√(6/(fan_in+fan_out))) from a fixed seed,
    /// zero bias.
    pub fn new(config: ConvLstm2dConfig, backend: Backend, seed: u64) -> Result<Self> {
        let d = config.dims();
        d.validate()?;
        let fan_in = d.kernel.0 * d.kernel.1 * (d.in_channels + d.filters);
        let scale = (6.0 / (fan_in + 4 * d.filters) as f64).sqrt();
        let mut params = ConvLstmParams::<f32>::random(d, seed, scale)?;
        params.bias.fill(0.0);
        Self::build(config, params, backend)
    }

    /// A layer from Keras tensors `kernel` `(kh, kw, Cin, 4F)`, `recurrent_kernel`
    /// `(kh, kw, F, 4F)` and (with `use_bias`) `bias` `(4F)`.
    pub fn from_keras(
        config: ConvLstm2dConfig,
        tensors: &TensorMap,
        backend: Backend,
    ) -> Result<Self> {
        let d = config.dims();
        d.validate()?;
        let (kh, kw) = d.kernel;
        let f4 = 4 * d.filters;
        let to4 = |name: &str, shape: &[usize]| -> Result<Array4<f32>> {
            require(tensors, name, shape)?
                .to_owned()
                .into_dimensionality::<Ix4>()
                .map_err(|e| Error::Weights(format!("{name}: {e}")))
        };
        let kernel = to4("kernel", &[kh, kw, d.in_channels, f4])?;
        let recurrent_kernel = to4("recurrent_kernel", &[kh, kw, d.filters, f4])?;
        let bias = if config.use_bias {
            Array1::from_iter(require(tensors, "bias", &[f4])?.iter().copied())
        } else {
            Array1::zeros(f4)
        };
        Self::build(
            config,
            ConvLstmParams {
                dims: d,
                kernel,
                recurrent_kernel,
                bias,
            },
            backend,
        )
    }

    /// A layer from a `.safetensors` file holding Keras names (module prefix allowed).
    pub fn from_safetensors(
        config: ConvLstm2dConfig,
        path: &Path,
        backend: Backend,
    ) -> Result<Self> {
        Self::from_keras(config, &safetensors_io::read(path)?.tensors, backend)
    }

    fn build(
        config: ConvLstm2dConfig,
        params: ConvLstmParams<f32>,
        backend: Backend,
    ) -> Result<Self> {
        params.validate()?;
        let runner = Runner::with_upload(backend, |ctx| GpuConvLstm::upload(ctx, &params))?;
        Ok(Self {
            config,
            params,
            runner,
            id: crate::layer::next_layer_id(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ConvLstm2dConfig {
        &self.config
    }

    /// The backend this layer runs on.
    pub fn backend(&self) -> &Backend {
        &self.runner.backend
    }

    /// Forces the time-loop algorithm (GPU only): Persistent and Stepwise forwards run a
    /// Stepwise backward, a Tiled forward the tiled backward (see
    /// [`Algorithm::Tiled`]); Auto picks per shape and adapter (README, ConvLSTM2D).
    pub fn set_algorithm(&mut self, algorithm: Algorithm) {
        self.runner.algorithm = algorithm;
    }

    /// Dispatches, passes and submits of the last GPU forward or backward.
    pub fn last_stats(&self) -> RecordStats {
        self.runner.stats()
    }

    /// The weights under Keras names.
    pub fn weights(&self) -> Result<TensorMap> {
        if let Some((ctx, w)) = self.runner.device().filter(|(_, w)| w.was_exposed()) {
            let (k, rk, b) = w.read_params(ctx)?;
            return Ok(self.named(&k, &rk, &b));
        }
        Ok(self.named(
            &self.params.kernel,
            &self.params.recurrent_kernel,
            &self.params.bias,
        ))
    }

    pub(crate) fn named(&self, k: &Array4<f32>, rk: &Array4<f32>, b: &Array1<f32>) -> TensorMap {
        let mut m = TensorMap::new();
        m.insert("kernel".into(), k.clone().into_dyn());
        m.insert("recurrent_kernel".into(), rk.clone().into_dyn());
        if self.config.use_bias {
            m.insert("bias".into(), b.clone().into_dyn());
        }
        m
    }

    pub(crate) fn ctx_id(&self) -> Option<u64> {
        self.runner.device().map(|(c, _)| c.id())
    }

    /// Inference forward on `x` `(B, T, rows, cols, Cin)`; `state` is `(h0, c0)`, each
    /// `(B, Ho, Wo, F)` (zeros when `None`).
    pub fn forward(
        &self,
        x: ArrayView5<f32>,
        state: Option<(ArrayView4<f32>, ArrayView4<f32>)>,
    ) -> Result<ConvLstm2dOutput> {
        self.run(x, state, false).map(|(o, _)| o)
    }

    /// Training forward: as [`ConvLstm2d::forward`], plus what [`ConvLstm2d::backward`] needs.
    pub fn forward_train(
        &self,
        x: ArrayView5<f32>,
        state: Option<(ArrayView4<f32>, ArrayView4<f32>)>,
    ) -> Result<(ConvLstm2dOutput, ConvLstm2dTrace)> {
        let (o, t) = self.run(x, state, true)?;
        Ok((
            o,
            t.ok_or_else(|| Error::Device("training forward kept no trace".into()))?,
        ))
    }

    fn run(
        &self,
        x: ArrayView5<f32>,
        state: Option<(ArrayView4<f32>, ArrayView4<f32>)>,
        train: bool,
    ) -> Result<(ConvLstm2dOutput, Option<ConvLstm2dTrace>)> {
        let d = self.params.dims;
        let (ho, wo) = d.out_hw()?;
        let b = x.shape()[0];
        let zeros = Array4::<f32>::zeros((b, ho, wo, d.filters));
        let (h0, c0) = state.unwrap_or((zeros.view(), zeros.view()));
        let (b, t) = check_inputs(&d, x.shape(), h0.shape(), c0.shape())?;
        let (out, h_n, c_n, inner) = match self.runner.device() {
            Some((ctx, w)) => {
                let xs = if self.config.go_backwards {
                    x.slice_move(s![.., ..;-1, .., .., ..])
                } else {
                    x
                };
                let f = gpu::forward(ctx, w, xs, (h0, c0), self.runner.algorithm, train)?;
                self.runner.set_stats(f.stats);
                (f.out, f.h_n, f.c_n, f.tape.map(Inner::Gpu))
            }
            None => {
                let f = convlstm_forward(&self.params, x, h0, c0, self.config.go_backwards)?;
                (
                    f.out,
                    f.h_n,
                    f.c_n,
                    train.then(|| Inner::Cpu(Box::new(f.tape))),
                )
            }
        };
        let out = if self.config.return_sequences {
            out.into_dyn()
        } else {
            out.index_axis(Axis(1), t - 1).to_owned().into_dyn()
        };
        let origin = Origin {
            layer: self.id,
            ctx: self.ctx_id(),
            input: x.shape().to_vec(),
        };
        Ok((
            ConvLstm2dOutput { out, h_n, c_n },
            inner.map(|inner| ConvLstm2dTrace {
                inner,
                b,
                t,
                origin,
            }),
        ))
    }

    /// Backward through time from the upstream gradients of `out` (the shape `forward`
    /// returned) and of the final state `(h_n, c_n)` (zeros when `None`; the same family as
    /// `forward`'s `state`). A trace from another layer or context is a typed error.
    pub fn backward(
        &self,
        trace: &ConvLstm2dTrace,
        dy_out: ndarray::ArrayViewD<f32>,
        dy_state: Option<(ArrayView4<f32>, ArrayView4<f32>)>,
    ) -> Result<ConvLstm2dGradients> {
        trace.origin.check("conv_lstm2d", self.id, self.ctx_id())?;
        let (dy_h_n, dy_c_n) = match dy_state {
            Some((h, c)) => (Some(h), Some(c)),
            None => (None, None),
        };
        let d = self.params.dims;
        let (ho, wo) = d.out_hw()?;
        let (b, t, f) = (trace.b, trace.t, d.filters);
        let mut dy = Array5::<f32>::zeros((b, t, ho, wo, f));
        if self.config.return_sequences {
            expect_shape("dy_out", dy_out.shape(), &[b, t, ho, wo, f])?;
            dy.assign(
                &dy_out
                    .into_dimensionality::<Ix5>()
                    .map_err(|e| Error::Shape(e.to_string()))?,
            );
        } else {
            expect_shape("dy_out", dy_out.shape(), &[b, ho, wo, f])?;
            let last = dy_out
                .into_dimensionality::<Ix4>()
                .map_err(|e| Error::Shape(e.to_string()))?;
            dy.index_axis_mut(Axis(1), t - 1).assign(&last);
        }
        let zeros = Array4::<f32>::zeros((b, ho, wo, f));
        let dyh = dy_h_n.unwrap_or(zeros.view());
        let dyc = dy_c_n.unwrap_or(zeros.view());
        expect_shape("dy_h_n", dyh.shape(), zeros.shape())?;
        expect_shape("dy_c_n", dyc.shape(), zeros.shape())?;
        let (dx, dh0, dc0, k, rk, bias) = match (&trace.inner, self.runner.device()) {
            (Inner::Gpu(tape), Some((ctx, w))) => {
                let g = gpu::backward(ctx, w, tape, dy.view(), (dyh, dyc))?;
                self.runner.set_stats(g.stats);
                let dx = if self.config.go_backwards {
                    g.dx.slice_move(s![.., ..;-1, .., .., ..])
                        .as_standard_layout()
                        .into_owned()
                } else {
                    g.dx
                };
                (dx, g.dh0, g.dc0, g.kernel, g.recurrent_kernel, g.bias)
            }
            (Inner::Cpu(tape), None) => {
                let g = convlstm_backward(&self.params, tape, dy.view(), dyh, dyc)?;
                (g.dx, g.dh0, g.dc0, g.kernel, g.recurrent_kernel, g.bias)
            }
            _ => {
                return Err(Error::Config(
                    "this trace was recorded on another backend".into(),
                ));
            }
        };
        let weights = self.named(&k, &rk, &bias);
        Ok(ConvLstm2dGradients {
            dx,
            dh0,
            dc0,
            weights,
        })
    }
}
