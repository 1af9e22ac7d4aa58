//! Per-frame 2-D convolution head: every frame of a `[B, T, H, W, Cin]` channels-last sequence
//! goes through one `kh×kw` convolution (stride 1, TF `same` padding, bias, `Cin → Cout`)
//! and an activation — sigmoid in the Keras ConvLSTM2D next-frame example, `Linear` when the
//! loss takes logits. The kernel has the Keras layout `(kh, kw, Cin, Cout)`.
//!
//! B·T is simply the frame count, so the GPU path reuses the ConvLSTM's implicit-GEMM
//! convolutions of conv.wgsl: `conv_gemm` forward, `conv_wgrad` for the kernel gradient,
//! `conv_dgrad` for the input gradient, and the GEMM column sum for the bias gradient.

use std::sync::Arc;

use ndarray::{Array1, Array2, Array4, Array5, ArrayView1, ArrayView4, ArrayView5, Axis};

use super::{
    GradTarget, ParamBuffer, check_buffer, check_nonzero, check_shape, checked_product, flat,
    shaped,
};
use crate::context::Context;
use crate::cpu::common::Filler;
use crate::cpu::conv::ConvGeom as CpuGeom;
use crate::cpu::{Activation, Real};
use crate::error::{Error, Result};
use crate::kernels::conv::{self, ConvGeom, FrameMap};
use crate::kernels::{Recorder, buffers, nn_act};

/// Sizes and activation of a convolution head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvHeadConfig {
    /// Input channels `Cin` (the ConvLSTM's filters).
    pub in_channels: usize,
    /// Output channels `Cout` (1 for a grey-scale next frame).
    pub out_channels: usize,
    /// Kernel size `(kh, kw)`; padding is TF `same` (any odd row/column at the bottom/right).
    pub kernel: (usize, usize),
    /// Applied element-wise after the convolution: `Sigmoid`, or `Linear` for logits.
    pub activation: Activation,
}

impl ConvHeadConfig {
    /// A checked config (`Error::Config` naming a zero size).
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: (usize, usize),
        activation: Activation,
    ) -> Result<Self> {
        let c = Self {
            in_channels,
            out_channels,
            kernel,
            activation,
        };
        c.validate()?;
        Ok(c)
    }

    /// `Error::Config` when a size is 0.
    pub fn validate(&self) -> Result<()> {
        check_nonzero("conv head in_channels", self.in_channels)?;
        check_nonzero("conv head out_channels", self.out_channels)?;
        check_nonzero("conv head kernel height", self.kernel.0)?;
        check_nonzero("conv head kernel width", self.kernel.1)?;
        let k = [
            self.kernel.0,
            self.kernel.1,
            self.in_channels,
            self.out_channels,
        ];
        checked_product("conv head kernel", &k).map(|_| ())
    }

    /// Padding above and left of each frame under TF `same` with stride 1.
    fn pad(&self) -> (usize, usize) {
        ((self.kernel.0 - 1) / 2, (self.kernel.1 - 1) / 2)
    }
}

/// The shape of a channels-last frame sequence `[batch, steps, rows, cols, C]` (C is the
/// layer's in or out channels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqShape {
    /// `B`.
    pub batch: usize,
    /// `T`.
    pub steps: usize,
    /// Frame height `H`.
    pub rows: usize,
    /// Frame width `W`.
    pub cols: usize,
}

impl SeqShape {
    /// The shape of a 5-D array's first four axes.
    pub fn of<T>(x: &ArrayView5<T>) -> Self {
        let (batch, steps, rows, cols, _) = x.dim();
        Self {
            batch,
            steps,
            rows,
            cols,
        }
    }

    /// Pixels over all frames, `B·T·H·W` (saturating: layers reject shapes that overflow).
    pub fn pixels(&self) -> usize {
        [self.steps, self.rows, self.cols]
            .iter()
            .fold(self.batch, |acc, &d| acc.saturating_mul(d))
    }

    fn validate(&self) -> Result<()> {
        check_nonzero("conv head batch", self.batch)?;
        check_nonzero("conv head steps", self.steps)?;
        check_nonzero("conv head frame rows", self.rows)?;
        check_nonzero("conv head frame cols", self.cols)?;
        let d = [self.batch, self.steps, self.rows, self.cols];
        checked_product("conv head sequence", &d).map(|_| ())
    }

    fn dims(&self, c: usize) -> [usize; 5] {
        [self.batch, self.steps, self.rows, self.cols, c]
    }
}

/// A convolution head's parameters on the host (the CPU reference runs on these).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvHeadParams<T> {
    /// Sizes and activation.
    pub config: ConvHeadConfig,
    /// `(kh, kw, Cin, Cout)` (Keras layout).
    pub kernel: Array4<T>,
    /// `[Cout]`.
    pub bias: Array1<T>,
}

/// Gradients of a convolution head's backward.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvHeadGrads<T> {
    /// Gradient with respect to the input, `[B, T, H, W, Cin]`.
    pub dx: Array5<T>,
    /// Gradient with respect to the kernel, `(kh, kw, Cin, Cout)`.
    pub kernel: Array4<T>,
    /// Gradient with respect to the bias, `[Cout]`.
    pub bias: Array1<T>,
}

impl<T: Real> ConvHeadParams<T> {
    /// Parameters from Keras-layout tensors; `Error::Shape` names a mismatched tensor.
    pub fn new(config: ConvHeadConfig, kernel: Array4<T>, bias: Array1<T>) -> Result<Self> {
        config.validate()?;
        let c = config;
        check_shape(
            "conv head kernel",
            kernel.shape(),
            &[c.kernel.0, c.kernel.1, c.in_channels, c.out_channels],
        )?;
        check_shape("conv head bias", bias.shape(), &[c.out_channels])?;
        Ok(Self {
            config,
            kernel,
            bias,
        })
    }

    /// Parameters from a Keras `Conv2D` kernel `(kh, kw, Cin, Cout)` and bias.
    pub fn from_keras(
        kernel: ArrayView4<T>,
        bias: ArrayView1<T>,
        activation: Activation,
    ) -> Result<Self> {
        let (kh, kw, i, o) = kernel.dim();
        let config = ConvHeadConfig::new(i, o, (kh, kw), activation)?;
        Self::new(config, kernel.to_owned(), bias.to_owned())
    }

    /// Parameters from a PyTorch `nn.Conv2d` weight `[Cout, Cin, kh, kw]` and bias (the
    /// caller must have used `padding='same'`; PyTorch puts an even kernel's extra padding
    /// at the bottom/right too).
    pub fn from_torch(
        weight: ArrayView4<T>,
        bias: ArrayView1<T>,
        activation: Activation,
    ) -> Result<Self> {
        let k = weight.permuted_axes([2, 3, 1, 0]);
        Self::from_keras(k.as_standard_layout().view(), bias, activation)
    }

    /// Reproducible parameters uniform in `[-scale, scale)`, filled `kernel` then `bias`.
    pub fn random(config: ConvHeadConfig, seed: u64, scale: f64) -> Result<Self> {
        config.validate()?;
        let c = config;
        let mut f = Filler::new(seed, scale)?;
        let mut kernel = Array4::zeros((c.kernel.0, c.kernel.1, c.in_channels, c.out_channels));
        let mut bias = Array1::zeros(c.out_channels);
        f.fill(kernel.iter_mut());
        f.fill(bias.iter_mut());
        Ok(Self {
            config,
            kernel,
            bias,
        })
    }

    /// The same parameters in another precision (f64 → f32 rounds to nearest).
    pub fn cast<U: Real>(&self) -> ConvHeadParams<U> {
        ConvHeadParams {
            config: self.config,
            kernel: self.kernel.mapv(|v| U::from_f64(v.as_f64())),
            bias: self.bias.mapv(|v| U::from_f64(v.as_f64())),
        }
    }

    fn geom(&self, s: SeqShape) -> CpuGeom {
        let c = self.config;
        CpuGeom {
            in_h: s.rows,
            in_w: s.cols,
            channels: c.in_channels,
            kernel: c.kernel,
            strides: (1, 1),
            dilation: (1, 1),
            pad: c.pad(),
            out: (s.rows, s.cols),
        }
    }

    /// The `(kh·kw·Cin, Cout)` matrix im2col rows multiply.
    fn kernel_matrix(&self) -> Result<Array2<T>> {
        let c = self.config;
        let k = c.kernel.0 * c.kernel.1 * c.in_channels;
        self.kernel
            .as_standard_layout()
            .into_owned()
            .into_shape_with_order((k, c.out_channels))
            .map_err(|e| Error::Shape(format!("conv head kernel: {e}")))
    }

    /// CPU reference forward of `x` `[B, T, H, W, Cin]` → `[B, T, H, W, Cout]`.
    pub fn forward(&self, x: ArrayView5<T>) -> Result<Array5<T>> {
        let s = checked_input(&x, self.config.in_channels)?;
        let cols = self.geom(s).im2col(rows(x)?.view());
        let mut y = cols.dot(&self.kernel_matrix()?) + &self.bias;
        let act = self.config.activation;
        y.mapv_inplace(|v| act.apply(v));
        seq(y, s.dims(self.config.out_channels))
    }

    /// CPU reference backward from the input `x`, the forward output `y` and the output
    /// gradient `dy`.
    pub fn backward(
        &self,
        x: ArrayView5<T>,
        y: ArrayView5<T>,
        dy: ArrayView5<T>,
    ) -> Result<ConvHeadGrads<T>> {
        let c = self.config;
        let s = checked_input(&x, c.in_channels)?;
        check_shape("conv head output", y.shape(), &s.dims(c.out_channels))?;
        check_shape(
            "conv head output gradient",
            dy.shape(),
            &s.dims(c.out_channels),
        )?;
        let act = c.activation;
        let dz = ndarray::Zip::from(&rows(dy)?)
            .and(&rows(y)?)
            .map_collect(|&g, &v| g * act.derivative_from_output(v));
        let g = self.geom(s);
        let kmat = self.kernel_matrix()?;
        let cols = g.im2col(rows(x)?.view());
        let dk = cols.t().dot(&dz);
        let dx = g.col2im(dz.dot(&kmat.t()).view());
        Ok(ConvHeadGrads {
            dx: seq(dx, s.dims(c.in_channels))?,
            kernel: dk
                .into_shape_with_order((c.kernel.0, c.kernel.1, c.in_channels, c.out_channels))
                .map_err(|e| Error::Shape(format!("conv head kernel gradient: {e}")))?,
            bias: dz.sum_axis(Axis(0)),
        })
    }
}

/// The sequence shape of `x`, checked: no zero axis and `channels` channels.
fn checked_input<T>(x: &ArrayView5<T>, channels: usize) -> Result<SeqShape> {
    let s = SeqShape::of(x);
    s.validate()?;
    check_shape("conv head input", x.shape(), &s.dims(channels))?;
    Ok(s)
}

/// `[B, T, H, W, C]` as `(B·T·H·W, C)` pixel rows, frames in (b, t) order.
fn rows<T: Real>(x: ArrayView5<T>) -> Result<Array2<T>> {
    let c = x.len_of(Axis(4));
    let n = x.len() / c.max(1);
    Array2::from_shape_vec((n, c), x.iter().copied().collect())
        .map_err(|e| Error::Shape(format!("sequence of shape {:?}: {e}", x.shape())))
}

fn seq<T: Real>(rows: Array2<T>, dims: [usize; 5]) -> Result<Array5<T>> {
    rows.into_shape_with_order(dims)
        .map_err(|e| Error::Shape(format!("conv head rows: {e}")))
}

/// A convolution head on the device: parameters, their gradient buffers, and the recorded
/// forward/backward.
pub struct GpuConvHead {
    ctx: Arc<Context>,
    config: ConvHeadConfig,
    /// `(kh·kw·Cin, Cout)`, row-major (the Keras kernel flattened).
    kernel: wgpu::Buffer,
    bias: wgpu::Buffer,
    grad_kernel: wgpu::Buffer,
    grad_bias: wgpu::Buffer,
    /// A single 1.0: the left operand of the bias-gradient column sum.
    ones: wgpu::Buffer,
    /// Identity for the traces its `Layer` forward records.
    pub(crate) id: u64,
}

impl GpuConvHead {
    /// Uploads `p` to the device of `ctx`; gradient buffers start at zero.
    pub fn new(ctx: Arc<Context>, p: &ConvHeadParams<f32>) -> Result<Self> {
        let p = ConvHeadParams::new(p.config, p.kernel.clone(), p.bias.clone())?;
        let k = p.kernel.len();
        Ok(Self {
            kernel: buffers::upload(&ctx, "conv head kernel", &flat(p.kernel.view()))?,
            bias: buffers::upload(&ctx, "conv head bias", &flat(p.bias.view()))?,
            grad_kernel: buffers::zeros(&ctx, "conv head kernel grad", k)?,
            grad_bias: buffers::zeros(&ctx, "conv head bias grad", p.config.out_channels)?,
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
    pub fn config(&self) -> ConvHeadConfig {
        self.config
    }

    fn kernel_dims(&self) -> [usize; 4] {
        let c = self.config;
        [c.kernel.0, c.kernel.1, c.in_channels, c.out_channels]
    }

    /// The trainable tensors: `kernel` `(kh, kw, Cin, Cout)` and `bias` `[Cout]`, each with
    /// the buffer every recorded backward writes its gradient to.
    pub fn params(&self) -> Vec<ParamBuffer> {
        vec![
            ParamBuffer {
                name: "kernel".into(),
                param: self.kernel.clone(),
                grad: self.grad_kernel.clone(),
                shape: self.kernel_dims().to_vec(),
            },
            ParamBuffer {
                name: "bias".into(),
                param: self.bias.clone(),
                grad: self.grad_bias.clone(),
                shape: vec![self.config.out_channels],
            },
        ]
    }

    /// Reads the current parameters back (after an optimizer updated them in place).
    pub fn read_params(&self) -> Result<ConvHeadParams<f32>> {
        let (k, o) = (self.kernel_dims(), self.config.out_channels);
        let mut got = buffers::read_f32(
            &self.ctx,
            &[(&self.kernel, 0, k.iter().product()), (&self.bias, 0, o)],
        )?;
        let bias = Array1::from_vec(got.pop().unwrap_or_default());
        let kernel = shaped(got.pop().unwrap_or_default(), k)?;
        ConvHeadParams::new(self.config, kernel, bias)
    }

    fn plan(&self, s: SeqShape) -> Result<(ConvGeom, FrameMap)> {
        s.validate()?;
        let c = self.config;
        let g = ConvGeom {
            rows: s.rows,
            cols: s.cols,
            cin: c.in_channels,
            out_rows: s.rows,
            out_cols: s.cols,
            kernel: c.kernel,
            strides: (1, 1),
            dilation: (1, 1),
            pad: c.pad(),
        };
        // Output frame n = b·T + t reads input frame n: both sequences are [B, T, ...].
        let m = FrameMap {
            frames: s.batch * s.steps,
            t_len: s.steps,
            sb: s.steps,
            st: 1,
            off: 0,
        };
        Ok((g, m))
    }

    /// Element counts of the input and output sequences, overflow-checked.
    fn lens(&self, s: SeqShape) -> Result<(usize, usize)> {
        let c = self.config;
        Ok((
            checked_product("conv head input", &s.dims(c.in_channels))?,
            checked_product("conv head output", &s.dims(c.out_channels))?,
        ))
    }

    /// Records the forward of `x` (`[B, T, H, W, Cin]` f32s on the device, e.g. a ConvLSTM
    /// output) into `rec`, without submitting; returns the new output buffer
    /// `[B, T, H, W, Cout]`, which backward needs again.
    pub(crate) fn record_forward(
        &self,
        rec: &mut Recorder<'_>,
        x: &wgpu::Buffer,
        s: SeqShape,
    ) -> Result<wgpu::Buffer> {
        let (g, m) = self.plan(s)?;
        let co = self.config.out_channels;
        let (n_in, n_out) = self.lens(s)?;
        check_buffer("conv head input", x, n_in)?;
        let y = buffers::zeros(&self.ctx, "conv head output", n_out)?;
        conv::forward(rec, &g, &m, co, x, &self.kernel, &self.bias, &y)?;
        nn_act::forward(rec, self.config.activation, &y, &self.bias, n_out)?;
        Ok(y)
    }

    /// Records the backward of a recorded forward: `x` and `y` are its input and output
    /// buffers, `dy` `[B, T, H, W, Cout]` the output gradient (e.g. written by a loss earlier
    /// in the same recorder). Overwrites the parameter gradients of [`Self::params`] and
    /// writes the input gradient `[B, T, H, W, Cin]` as `dx` says (ready to be a ConvLSTM
    /// backward's `dy`); returns that buffer.
    pub(crate) fn record_backward(
        &self,
        rec: &mut Recorder<'_>,
        (x, y, dy): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
        s: SeqShape,
        dx: GradTarget<'_>,
    ) -> Result<wgpu::Buffer> {
        let (g, m) = self.plan(s)?;
        let co = self.config.out_channels;
        let (n_in, n_out) = self.lens(s)?;
        check_buffer("conv head input", x, n_in)?;
        check_buffer("conv head output", y, n_out)?;
        check_buffer("conv head output gradient", dy, n_out)?;
        let (dx, beta) = dx.resolve(&self.ctx, "conv head input gradient", n_in)?;
        // The linear case needs no element-wise pass: dz is dy itself.
        let dz = if self.config.activation == Activation::Linear {
            dy.clone()
        } else {
            let dz = buffers::zeros(&self.ctx, "conv head dz", n_out)?;
            nn_act::backward(rec, self.config.activation, dy, y, &dz, n_out)?;
            dz
        };
        conv::wgrad(rec, &g, &m, co, x, &dz, &self.grad_kernel, 0.0)?;
        super::record_column_sum(rec, &self.ones, &dz, (s.pixels(), co), &self.grad_bias)?;
        conv::dgrad(rec, &g, &m, co, &dz, &self.kernel, &dx, beta)?;
        Ok(dx)
    }

    fn check_io(&self, s: SeqShape, y: &ArrayView5<f32>, dy: &ArrayView5<f32>) -> Result<()> {
        let co = self.config.out_channels;
        check_shape("conv head output", y.shape(), &s.dims(co))?;
        check_shape("conv head output gradient", dy.shape(), &s.dims(co))
    }

    /// Forward of `x` `[B, T, H, W, Cin]` (upload, one submit, read back).
    pub fn forward(&self, x: ArrayView5<f32>) -> Result<Array5<f32>> {
        let s = checked_input(&x, self.config.in_channels)?;
        let xb = buffers::upload(&self.ctx, "conv head input", &flat(x))?;
        let mut rec = Recorder::new(&self.ctx);
        let y = self.record_forward(&mut rec, &xb, s)?;
        rec.submit()?;
        let n = s.pixels() * self.config.out_channels;
        let got = super::dense::read_one(&self.ctx, &y, n)?;
        shaped(got, s.dims(self.config.out_channels))
    }

    /// Backward from the input, the forward output and the output gradient (upload, one
    /// submit, read back). The parameter gradients also stay in the buffers of
    /// [`Self::params`].
    pub fn backward(
        &self,
        x: ArrayView5<f32>,
        y: ArrayView5<f32>,
        dy: ArrayView5<f32>,
    ) -> Result<ConvHeadGrads<f32>> {
        let s = checked_input(&x, self.config.in_channels)?;
        self.check_io(s, &y, &dy)?;
        let up = |what, a: ArrayView5<f32>| buffers::upload(&self.ctx, what, &flat(a));
        let (xb, yb, dyb) = (up("x", x)?, up("y", y)?, up("dy", dy)?);
        let mut rec = Recorder::new(&self.ctx);
        let dx = self.record_backward(&mut rec, (&xb, &yb, &dyb), s, GradTarget::New)?;
        rec.submit()?;
        self.read_grads(s, &dx)
    }

    /// Forward and backward recorded into ONE submission, the way a training step chains
    /// them on device buffers: `x` → forward → `dy` (here uploaded; in training, written by
    /// the loss) → backward. Returns the output and the gradients.
    pub fn forward_backward(
        &self,
        x: ArrayView5<f32>,
        dy: ArrayView5<f32>,
    ) -> Result<(Array5<f32>, ConvHeadGrads<f32>)> {
        let s = checked_input(&x, self.config.in_channels)?;
        let co = self.config.out_channels;
        check_shape("conv head output gradient", dy.shape(), &s.dims(co))?;
        let xb = buffers::upload(&self.ctx, "conv head input", &flat(x))?;
        let dyb = buffers::upload(&self.ctx, "conv head output gradient", &flat(dy))?;
        let mut rec = Recorder::new(&self.ctx);
        let y = self.record_forward(&mut rec, &xb, s)?;
        let dx = self.record_backward(&mut rec, (&xb, &y, &dyb), s, GradTarget::New)?;
        rec.submit()?;
        let out = super::dense::read_one(&self.ctx, &y, s.pixels() * co)?;
        Ok((shaped(out, s.dims(co))?, self.read_grads(s, &dx)?))
    }

    fn read_grads(&self, s: SeqShape, dx: &wgpu::Buffer) -> Result<ConvHeadGrads<f32>> {
        let (ci, co) = (self.config.in_channels, self.config.out_channels);
        let k = self.kernel_dims();
        let mut got = buffers::read_f32(
            &self.ctx,
            &[
                (dx, 0, s.pixels() * ci),
                (&self.grad_kernel, 0, k.iter().product()),
                (&self.grad_bias, 0, co),
            ],
        )?
        .into_iter();
        let mut next = || got.next().ok_or_else(|| Error::Device("read-back".into()));
        Ok(ConvHeadGrads {
            dx: shaped(next()?, s.dims(ci))?,
            kernel: shaped(next()?, k)?,
            bias: Array1::from_vec(next()?),
        })
    }
}
