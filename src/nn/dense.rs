//! Dense (fully connected) layer, PyTorch `nn.Linear` layout: `y = act(x·Wᵀ + b)` with
//! `W` `[out, in]` and `b` `[out]`, on `[N, in]` rows or, as Keras `TimeDistributed(Dense)`,
//! on `[B, T, in]` sequences (the same product over `B·T` rows).
//!
//! Backward, from the saved output `y` (every supported activation's derivative is a function
//! of its output): `dz = dy ⊙ act'(y)`, `dX = dz·W`, `dW = dzᵀ·X`, `db = Σ_rows dz`. On the
//! GPU these are the strided GEMM of gemm.wgsl (transposes are strides, no copies) plus one
//! element-wise kernel for the activation.

use std::sync::Arc;

use ndarray::{Array, Array1, Array2, Array3, ArrayView1, ArrayView2, ArrayView3, Axis, Ix2, Ix3};

use super::{
    GradTarget, ParamBuffer, check_buffer, check_nonzero, check_shape, checked_product, flat,
    shaped,
};
use crate::context::Context;
use crate::cpu::common::Filler;
use crate::cpu::{Activation, Real};
use crate::error::{Error, Result};
use crate::kernels::gemm::{self, Mat, Out};
use crate::kernels::{Recorder, buffers, nn_act};

/// Sizes and activation of a [`DenseParams`] / [`GpuDense`] layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DenseConfig {
    /// Input features `in`.
    pub in_features: usize,
    /// Output features `out`.
    pub out_features: usize,
    /// Applied element-wise after the affine map (`Linear` for logits).
    pub activation: Activation,
}

impl DenseConfig {
    /// A checked config (`Error::Config` naming a zero size).
    pub fn new(in_features: usize, out_features: usize, activation: Activation) -> Result<Self> {
        let c = Self {
            in_features,
            out_features,
            activation,
        };
        c.validate()?;
        Ok(c)
    }

    /// `Error::Config` when a size is 0.
    pub fn validate(&self) -> Result<()> {
        check_nonzero("dense in_features", self.in_features)?;
        check_nonzero("dense out_features", self.out_features)?;
        checked_product("dense weight", &[self.out_features, self.in_features]).map(|_| ())
    }
}

/// A Dense layer's parameters on the host (the CPU reference runs on these).
#[derive(Clone, Debug, PartialEq)]
pub struct DenseParams<T> {
    /// Sizes and activation.
    pub config: DenseConfig,
    /// `W`, `[out, in]` (PyTorch layout).
    pub weight: Array2<T>,
    /// `b`, `[out]`.
    pub bias: Array1<T>,
}

/// Gradients of a Dense backward: `dx` has the input's shape (`[N, in]` or `[B, T, in]`).
#[derive(Clone, Debug, PartialEq)]
pub struct DenseGrads<T, D: ndarray::Dimension = Ix2> {
    /// Gradient with respect to the input.
    pub dx: Array<T, D>,
    /// Gradient with respect to `W`, `[out, in]`.
    pub weight: Array2<T>,
    /// Gradient with respect to `b`, `[out]`.
    pub bias: Array1<T>,
}

impl<T: Real> DenseParams<T> {
    /// Parameters from PyTorch-layout tensors; `Error::Shape` names a mismatched tensor.
    pub fn new(config: DenseConfig, weight: Array2<T>, bias: Array1<T>) -> Result<Self> {
        config.validate()?;
        check_shape(
            "dense weight",
            weight.shape(),
            &[config.out_features, config.in_features],
        )?;
        check_shape("dense bias", bias.shape(), &[config.out_features])?;
        Ok(Self {
            config,
            weight,
            bias,
        })
    }

    /// Parameters from a Keras `Dense` layer: `kernel` is `[in, out]` (transposed here).
    pub fn from_keras(
        kernel: ArrayView2<T>,
        bias: ArrayView1<T>,
        activation: Activation,
    ) -> Result<Self> {
        let (i, o) = kernel.dim();
        let config = DenseConfig::new(i, o, activation)?;
        Self::new(
            config,
            kernel.t().as_standard_layout().into_owned(),
            bias.to_owned(),
        )
    }

    /// Reproducible parameters uniform in `[-scale, scale)`, filled `weight` then `bias`.
    pub fn random(config: DenseConfig, seed: u64, scale: f64) -> Result<Self> {
        config.validate()?;
        let mut f = Filler::new(seed, scale)?;
        let mut weight = Array2::zeros((config.out_features, config.in_features));
        let mut bias = Array1::zeros(config.out_features);
        f.fill(weight.iter_mut());
        f.fill(bias.iter_mut());
        Ok(Self {
            config,
            weight,
            bias,
        })
    }

    /// The same parameters in another precision (f64 → f32 rounds to nearest).
    pub fn cast<U: Real>(&self) -> DenseParams<U> {
        DenseParams {
            config: self.config,
            weight: self.weight.mapv(|v| U::from_f64(v.as_f64())),
            bias: self.bias.mapv(|v| U::from_f64(v.as_f64())),
        }
    }

    fn check_rows(&self, what: &str, a: &ArrayView2<T>, width: usize) -> Result<()> {
        check_nonzero(&format!("{what} rows"), a.nrows())?;
        check_shape(what, a.shape(), &[a.nrows(), width])
    }

    /// CPU reference forward on `[N, in]` rows: `act(x·Wᵀ + b)`.
    pub fn forward(&self, x: ArrayView2<T>) -> Result<Array2<T>> {
        self.check_rows("dense input", &x, self.config.in_features)?;
        let act = self.config.activation;
        let mut y = x.dot(&self.weight.t()) + &self.bias;
        y.mapv_inplace(|v| act.apply(v));
        Ok(y)
    }

    /// CPU reference backward on `[N, in]` rows, from the input `x`, the forward output `y`
    /// and the output gradient `dy`.
    pub fn backward(
        &self,
        x: ArrayView2<T>,
        y: ArrayView2<T>,
        dy: ArrayView2<T>,
    ) -> Result<DenseGrads<T>> {
        let (n, o) = (x.nrows(), self.config.out_features);
        self.check_rows("dense input", &x, self.config.in_features)?;
        check_shape("dense output", y.shape(), &[n, o])?;
        check_shape("dense output gradient", dy.shape(), &[n, o])?;
        let act = self.config.activation;
        let dz = ndarray::Zip::from(&dy)
            .and(&y)
            .map_collect(|&g, &v| g * act.derivative_from_output(v));
        Ok(DenseGrads {
            dx: dz.dot(&self.weight),
            weight: dz.t().dot(&x),
            bias: dz.sum_axis(Axis(0)),
        })
    }

    /// CPU reference forward applied to every step of a `[B, T, in]` sequence.
    pub fn forward_seq(&self, x: ArrayView3<T>) -> Result<Array3<T>> {
        let (b, t, _) = x.dim();
        let y = self.forward(rows_of(x)?.view())?;
        seq_of(y, (b, t))
    }

    /// CPU reference backward of [`Self::forward_seq`].
    pub fn backward_seq(
        &self,
        x: ArrayView3<T>,
        y: ArrayView3<T>,
        dy: ArrayView3<T>,
    ) -> Result<DenseGrads<T, Ix3>> {
        let (b, t, _) = x.dim();
        let g = self.backward(rows_of(x)?.view(), rows_of(y)?.view(), rows_of(dy)?.view())?;
        Ok(DenseGrads {
            dx: seq_of(g.dx, (b, t))?,
            weight: g.weight,
            bias: g.bias,
        })
    }
}

/// `[B, T, F]` as `[B·T, F]` rows (copies only when `x` is not in standard layout).
fn rows_of<T: Real>(x: ArrayView3<T>) -> Result<Array2<T>> {
    let (b, t, f) = x.dim();
    x.as_standard_layout()
        .into_owned()
        .into_shape_with_order((b * t, f))
        .map_err(|e| Error::Shape(format!("sequence of shape {:?}: {e}", x.shape())))
}

fn seq_of<T: Real>(y: Array2<T>, (b, t): (usize, usize)) -> Result<Array3<T>> {
    let f = y.ncols();
    y.into_shape_with_order((b, t, f))
        .map_err(|e| Error::Shape(format!("dense output rows: {e}")))
}

/// A Dense layer on the device: parameters, their gradient buffers, and the recorded
/// forward/backward.
pub struct GpuDense {
    ctx: Arc<Context>,
    config: DenseConfig,
    /// `[out, in]`, row-major.
    weight: wgpu::Buffer,
    bias: wgpu::Buffer,
    grad_weight: wgpu::Buffer,
    grad_bias: wgpu::Buffer,
    /// A single 1.0: the left operand of the bias-gradient column sum.
    ones: wgpu::Buffer,
    /// Identity for the traces its `Layer` forward records.
    pub(crate) id: u64,
}

impl GpuDense {
    /// Uploads `p` to the device of `ctx`; gradient buffers start at zero.
    pub fn new(ctx: Arc<Context>, p: &DenseParams<f32>) -> Result<Self> {
        let p = DenseParams::new(p.config, p.weight.clone(), p.bias.clone())?;
        let (o, i) = (p.config.out_features, p.config.in_features);
        Ok(Self {
            weight: buffers::upload(&ctx, "dense weight", &flat(p.weight.view()))?,
            bias: buffers::upload(&ctx, "dense bias", &flat(p.bias.view()))?,
            grad_weight: buffers::zeros(&ctx, "dense weight grad", o * i)?,
            grad_bias: buffers::zeros(&ctx, "dense bias grad", o)?,
            ones: buffers::upload(&ctx, "ones", &[1.0f32])?,
            config: p.config,
            ctx,
            id: crate::layer::next_layer_id(),
        })
    }

    /// The context the layer lives on.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Sizes and activation.
    pub fn config(&self) -> DenseConfig {
        self.config
    }

    /// The trainable tensors: `weight` `[out, in]` and `bias` `[out]`, each with the buffer
    /// every recorded backward writes its gradient to.
    pub fn params(&self) -> Vec<ParamBuffer> {
        let (o, i) = (self.config.out_features, self.config.in_features);
        vec![
            ParamBuffer {
                name: "weight".into(),
                param: self.weight.clone(),
                grad: self.grad_weight.clone(),
                shape: vec![o, i],
            },
            ParamBuffer {
                name: "bias".into(),
                param: self.bias.clone(),
                grad: self.grad_bias.clone(),
                shape: vec![o],
            },
        ]
    }

    /// Reads the current parameters back (after an optimizer updated them in place).
    pub fn read_params(&self) -> Result<DenseParams<f32>> {
        let (o, i) = (self.config.out_features, self.config.in_features);
        let mut got =
            buffers::read_f32(&self.ctx, &[(&self.weight, 0, o * i), (&self.bias, 0, o)])?;
        let bias = Array1::from_vec(got.pop().unwrap_or_default());
        let weight = shaped(got.pop().unwrap_or_default(), (o, i))?;
        DenseParams::new(self.config, weight, bias)
    }

    /// Element counts of `rows` input and output rows, checked (nonzero, no overflow).
    fn lens(&self, rows: usize) -> Result<(usize, usize)> {
        check_nonzero("dense input rows", rows)?;
        let c = self.config;
        Ok((
            checked_product("dense input", &[rows, c.in_features])?,
            checked_product("dense output", &[rows, c.out_features])?,
        ))
    }

    /// Records the forward of `rows` input rows `x` (`[rows, in]` f32s on the device) into
    /// `rec`, without submitting; returns the new output buffer `[rows, out]`, which backward
    /// needs again.
    pub(crate) fn record_forward(
        &self,
        rec: &mut Recorder<'_>,
        x: &wgpu::Buffer,
        rows: usize,
    ) -> Result<wgpu::Buffer> {
        let (i, o) = (self.config.in_features, self.config.out_features);
        let (n_in, n_out) = self.lens(rows)?;
        check_buffer("dense input", x, n_in)?;
        let y = buffers::zeros(&self.ctx, "dense output", n_out)?;
        gemm::record(
            rec,
            (rows, o, i),
            1.0,
            Mat::rows(x, 0, i),
            Mat::rows_t(&self.weight, 0, i),
            0.0,
            Out {
                buf: &y,
                off: 0,
                rs: o,
            },
            Some((&self.bias, 0)),
        )?;
        nn_act::forward(rec, self.config.activation, &y, &self.bias, n_out)?;
        Ok(y)
    }

    /// Records the backward of a recorded forward: `x` and `y` are its input and output
    /// buffers, `dy` `[rows, out]` the output gradient (e.g. written by a loss earlier in the
    /// same recorder). Overwrites the parameter gradients of [`Self::params`] and writes the
    /// input gradient `[rows, in]` as `dx` says; returns that buffer.
    pub(crate) fn record_backward(
        &self,
        rec: &mut Recorder<'_>,
        (x, y, dy): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
        rows: usize,
        dx: GradTarget<'_>,
    ) -> Result<wgpu::Buffer> {
        let (i, o) = (self.config.in_features, self.config.out_features);
        let (n_in, n_out) = self.lens(rows)?;
        check_buffer("dense input", x, n_in)?;
        check_buffer("dense output", y, n_out)?;
        check_buffer("dense output gradient", dy, n_out)?;
        let (dx, beta) = dx.resolve(&self.ctx, "dense input gradient", n_in)?;
        // The linear case needs no element-wise pass: dz is dy itself.
        let dz = if self.config.activation == Activation::Linear {
            dy.clone()
        } else {
            let dz = buffers::zeros(&self.ctx, "dense dz", n_out)?;
            nn_act::backward(rec, self.config.activation, dy, y, &dz, n_out)?;
            dz
        };
        // dW[out, in] = dzᵀ·X: dz read transposed through its strides.
        gemm::record(
            rec,
            (o, i, rows),
            1.0,
            Mat::rows_t(&dz, 0, o),
            Mat::rows(x, 0, i),
            0.0,
            Out {
                buf: &self.grad_weight,
                off: 0,
                rs: i,
            },
            None,
        )?;
        super::record_column_sum(rec, &self.ones, &dz, (rows, o), &self.grad_bias)?;
        gemm::record(
            rec,
            (rows, i, o),
            1.0,
            Mat::rows(&dz, 0, o),
            Mat::rows(&self.weight, 0, i),
            beta,
            Out {
                buf: &dx,
                off: 0,
                rs: i,
            },
            None,
        )?;
        Ok(dx)
    }

    /// Forward on `[N, in]` rows (upload, one submit, read back).
    pub fn forward(&self, x: ArrayView2<f32>) -> Result<Array2<f32>> {
        let n = x.nrows();
        check_nonzero("dense input rows", n)?;
        check_shape("dense input", x.shape(), &[n, self.config.in_features])?;
        let xb = buffers::upload(&self.ctx, "dense input", &flat(x))?;
        let mut rec = Recorder::new(&self.ctx);
        let y = self.record_forward(&mut rec, &xb, n)?;
        rec.submit()?;
        let got = read_one(&self.ctx, &y, n * self.config.out_features)?;
        shaped(got, (n, self.config.out_features))
    }

    /// Backward on `[N, in]` rows from the input, the forward output and the output gradient
    /// (upload, one submit, read back). The parameter gradients also stay in the buffers of
    /// [`Self::params`].
    pub fn backward(
        &self,
        x: ArrayView2<f32>,
        y: ArrayView2<f32>,
        dy: ArrayView2<f32>,
    ) -> Result<DenseGrads<f32>> {
        let (n, o, i) = (x.nrows(), self.config.out_features, self.config.in_features);
        check_nonzero("dense input rows", n)?;
        check_shape("dense input", x.shape(), &[n, i])?;
        check_shape("dense output", y.shape(), &[n, o])?;
        check_shape("dense output gradient", dy.shape(), &[n, o])?;
        let up = |what, a: ArrayView2<f32>| buffers::upload(&self.ctx, what, &flat(a));
        let (xb, yb, dyb) = (up("x", x)?, up("y", y)?, up("dy", dy)?);
        let mut rec = Recorder::new(&self.ctx);
        let dx = self.record_backward(&mut rec, (&xb, &yb, &dyb), n, GradTarget::New)?;
        rec.submit()?;
        let mut got = buffers::read_f32(
            &self.ctx,
            &[
                (&dx, 0, n * i),
                (&self.grad_weight, 0, o * i),
                (&self.grad_bias, 0, o),
            ],
        )?
        .into_iter();
        let mut next = || got.next().ok_or_else(|| Error::Device("read-back".into()));
        Ok(DenseGrads {
            dx: shaped(next()?, (n, i))?,
            weight: shaped(next()?, (o, i))?,
            bias: Array1::from_vec(next()?),
        })
    }

    /// Forward on every step of a `[B, T, in]` sequence (Keras `TimeDistributed(Dense)`).
    pub fn forward_seq(&self, x: ArrayView3<f32>) -> Result<Array3<f32>> {
        let (b, t, _) = x.dim();
        seq_of(self.forward(rows_of(x)?.view())?, (b, t))
    }

    /// Backward of [`Self::forward_seq`].
    pub fn backward_seq(
        &self,
        x: ArrayView3<f32>,
        y: ArrayView3<f32>,
        dy: ArrayView3<f32>,
    ) -> Result<DenseGrads<f32, Ix3>> {
        let (b, t, _) = x.dim();
        let g = self.backward(rows_of(x)?.view(), rows_of(y)?.view(), rows_of(dy)?.view())?;
        Ok(DenseGrads {
            dx: seq_of(g.dx, (b, t))?,
            weight: g.weight,
            bias: g.bias,
        })
    }
}

/// Reads `len` f32s of one buffer.
pub(crate) fn read_one(ctx: &Context, buf: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
    buffers::read_f32(ctx, &[(buf, 0, len)])?
        .pop()
        .ok_or_else(|| Error::Device("read-back returned nothing".into()))
}
