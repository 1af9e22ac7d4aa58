//! The GPU plan of one ConvLSTM2D layer (DESIGN.md §2): the input convolution of all T frames
//! as one implicit GEMM, the recurrence (recurrent convolution fused with the gates) on the
//! device, and in backward the reversed loop followed by kernel, recurrent-kernel, bias and
//! input gradients as large convolutions/reductions. One submit each way.

use ndarray::{Array1, Array4, Array5, ArrayView4, ArrayView5};

use crate::algorithm::Algorithm;
use crate::context::Context;
use crate::cpu::convlstm::{ConvLstmDims, ConvLstmParams};
use crate::error::{Error, Result};
use crate::kernels::conv::{self, ConvGeom, FrameMap};
use crate::kernels::convlstm::{self as kcell, BwdBufs, CellShape, FwdBufs};
use crate::kernels::convlstm_tiled as ktiled;
use crate::kernels::{Phase, RecordStats, Recorder, buffers};

/// A layer's weights on the device (Keras layouts, flattened row-major).
pub(crate) struct GpuConvLstm {
    dims: ConvLstmDims,
    /// (kh·kw·Cin, 4F)
    kernel: wgpu::Buffer,
    /// (kh·kw·F, 4F)
    rkernel: wgpu::Buffer,
    bias: wgpu::Buffer,
    /// Gradients of the three (overwritten by each recorded backward).
    dk: wgpu::Buffer,
    drk: wgpu::Buffer,
    db: wgpu::Buffer,
    /// Set once the parameter buffers were handed out (they may change in place).
    exposed: std::sync::atomic::AtomicBool,
}

impl GpuConvLstm {
    pub fn upload(ctx: &Context, p: &ConvLstmParams<f32>) -> Result<Self> {
        let flat = |a: &Array4<f32>| a.iter().copied().collect::<Vec<f32>>();
        Ok(Self {
            dims: p.dims,
            kernel: buffers::upload(ctx, "kernel", &flat(&p.kernel))?,
            rkernel: buffers::upload(ctx, "recurrent_kernel", &flat(&p.recurrent_kernel))?,
            bias: buffers::upload(ctx, "bias", &p.bias.to_vec())?,
            dk: buffers::zeros(ctx, "d kernel", p.kernel.len())?,
            drk: buffers::zeros(ctx, "d recurrent_kernel", p.recurrent_kernel.len())?,
            db: buffers::zeros(ctx, "d bias", p.bias.len())?,
            exposed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// (kernel, recurrent_kernel, bias) device buffers, Keras layouts: what an optimizer
    /// updates in place.
    pub fn params(&self) -> [&wgpu::Buffer; 3] {
        self.exposed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        [&self.kernel, &self.rkernel, &self.bias]
    }

    /// The trainable tensors with their gradient buffers, Keras names and shapes.
    pub fn param_buffers(&self) -> Vec<crate::nn::ParamBuffer> {
        let [k, rk, b] = self.params();
        let d = self.dims;
        let (kh, kw) = d.kernel;
        let f4 = 4 * d.filters;
        let p =
            |name: &str, param: &wgpu::Buffer, grad: &wgpu::Buffer, shape| crate::nn::ParamBuffer {
                name: name.into(),
                param: param.clone(),
                grad: grad.clone(),
                shape,
            };
        vec![
            p("kernel", k, &self.dk, vec![kh, kw, d.in_channels, f4]),
            p(
                "recurrent_kernel",
                rk,
                &self.drk,
                vec![kh, kw, d.filters, f4],
            ),
            p("bias", b, &self.db, vec![f4]),
        ]
    }

    /// Whether the parameter buffers were handed out.
    pub fn was_exposed(&self) -> bool {
        self.exposed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The current (kernel, recurrent_kernel, bias), read back.
    pub fn read_params(&self, ctx: &Context) -> Result<(Array4<f32>, Array4<f32>, Array1<f32>)> {
        let d = self.dims;
        let (kh, kw) = d.kernel;
        let f4 = 4 * d.filters;
        let (nk, nrk) = (kh * kw * d.in_channels * f4, kh * kw * d.filters * f4);
        let mut got = buffers::read_f32(
            ctx,
            &[
                (&self.kernel, 0, nk),
                (&self.rkernel, 0, nrk),
                (&self.bias, 0, f4),
            ],
        )?
        .into_iter();
        let mut next = || got.next().ok_or_else(|| Error::Device("read-back".into()));
        Ok((
            shaped(next()?, (kh, kw, d.in_channels, f4))?,
            shaped(next()?, (kh, kw, d.filters, f4))?,
            Array1::from_vec(next()?),
        ))
    }

    fn input_geom(&self) -> Result<ConvGeom> {
        let d = &self.dims;
        let (ho, wo) = d.out_hw()?;
        let ((top, _), (left, _)) = d.input_padding();
        Ok(ConvGeom {
            rows: d.rows,
            cols: d.cols,
            cin: d.in_channels,
            out_rows: ho,
            out_cols: wo,
            kernel: d.kernel,
            strides: d.strides,
            dilation: d.dilation,
            pad: (top, left),
        })
    }

    /// The recurrent convolution: stride 1, "same" (TF: extra padding bottom/right).
    fn recurrent_geom(&self) -> Result<ConvGeom> {
        let d = &self.dims;
        let (ho, wo) = d.out_hw()?;
        Ok(ConvGeom {
            rows: ho,
            cols: wo,
            cin: d.filters,
            out_rows: ho,
            out_cols: wo,
            kernel: d.kernel,
            strides: (1, 1),
            dilation: (1, 1),
            pad: ((d.kernel.0 - 1) / 2, (d.kernel.1 - 1) / 2),
        })
    }

    fn shape(&self, b: usize, t: usize) -> Result<CellShape> {
        let (ho, wo) = self.dims.out_hw()?;
        Ok(CellShape {
            b,
            t,
            rows: ho,
            cols: wo,
            filters: self.dims.filters,
            kernel: self.dims.kernel,
            activation: self.dims.activation,
            recurrent_activation: self.dims.recurrent_activation,
        })
    }
}

/// Device buffers a training forward keeps for backward.
pub(crate) struct ConvTape {
    b: usize,
    t: usize,
    /// The backward's algorithm (`kcell::backward_algorithm`): Tiled runs the tiled reversed
    /// step and, where it fits, the tiled dX.
    bwd: Algorithm,
    x: wgpu::Buffer,
    gates: wgpu::Buffer,
    hseq: wgpu::Buffer,
    cseq: wgpu::Buffer,
}

/// Outputs of a GPU forward, Keras layouts: out (B,T,Ho,Wo,F) in processing order.
pub(crate) struct ConvForward {
    pub out: Array5<f32>,
    pub h_n: Array4<f32>,
    pub c_n: Array4<f32>,
    pub tape: Option<ConvTape>,
    pub stats: RecordStats,
}

/// Gradients of a GPU backward, Keras layouts.
pub(crate) struct ConvGrads {
    pub dx: Array5<f32>,
    pub dh0: Array4<f32>,
    pub dc0: Array4<f32>,
    pub kernel: Array4<f32>,
    pub recurrent_kernel: Array4<f32>,
    pub bias: Array1<f32>,
    pub stats: RecordStats,
}

fn by(n: usize) -> u64 {
    (n * 4) as u64
}

fn shaped<D: ndarray::Dimension>(
    v: Vec<f32>,
    shape: impl ndarray::ShapeBuilder<Dim = D>,
) -> Result<ndarray::Array<f32, D>> {
    ndarray::Array::from_shape_vec(shape, v).map_err(|e| Error::Shape(e.to_string()))
}

/// Device buffers of one layer's recorded forward.
pub(crate) struct LayerRun {
    /// (B, T, Ho, Wo, F): the next layer's input when stacked.
    pub out: wgpu::Buffer,
    pub h_n: wgpu::Buffer,
    pub c_n: wgpu::Buffer,
    pub tape: Option<ConvTape>,
}

/// Device buffers of one layer's recorded backward.
pub(crate) struct LayerGrads {
    /// (B, T, rows, cols, Cin): the previous layer's dy_out when stacked.
    pub dx: wgpu::Buffer,
    /// dh0 (B·Ho·Wo·F) then dc0.
    pub state: wgpu::Buffer,
    pub dk: wgpu::Buffer,
    pub drk: wgpu::Buffer,
    pub db: wgpu::Buffer,
}

impl GpuConvLstm {
    /// f32s of one state frame batch (B·Ho·Wo·F).
    pub fn state_len(&self, b: usize) -> Result<usize> {
        let (ho, wo) = self.dims.out_hw()?;
        Ok(b * ho * wo * self.dims.filters)
    }

    /// Records the forward of `x` (B,T,rows,cols,Cin, processing order, on the device) from
    /// `h0`/`c0` (B,Ho,Wo,F) into `rec`, without submitting.
    #[allow(clippy::too_many_arguments)]
    pub fn record_forward(
        &self,
        ctx: &Context,
        rec: &mut Recorder<'_>,
        x: &wgpu::Buffer,
        (b, t): (usize, usize),
        (h0, c0): (&wgpu::Buffer, &wgpu::Buffer),
        algo: Algorithm,
        train: bool,
    ) -> Result<LayerRun> {
        let s = self.shape(b, t)?;
        let algo = kcell::resolve(ctx, algo, &s)?;
        rec.note_algorithm(algo);
        let bwd = kcell::backward_algorithm(algo);
        let f = self.dims.filters;
        let frame = s.rows * s.cols * f;
        let zx = buffers::zeros(ctx, "gates", b * t * s.rows * s.cols * 4 * f)?;
        let slots = if train { t + 1 } else { 2 };
        let hseq = buffers::zeros(ctx, "hseq", slots * b * frame)?;
        let cseq = buffers::zeros(ctx, "cseq", slots * b * frame)?;
        let out = buffers::zeros(ctx, "out", b * t * frame)?;
        let (h_n, c_n) = (
            buffers::zeros(ctx, "h_n", b * frame)?,
            buffers::zeros(ctx, "c_n", b * frame)?,
        );
        let xmap = FrameMap {
            frames: b * t,
            t_len: t,
            sb: t,
            st: 1,
            off: 0,
        };
        conv::forward(
            rec,
            &self.input_geom()?,
            &xmap,
            4 * f,
            x,
            &self.kernel,
            &self.bias,
            &zx,
        )?;
        rec.copy(h0, 0, &hseq, 0, by(b * frame));
        rec.copy(c0, 0, &cseq, 0, by(b * frame));
        let bufs = FwdBufs {
            zx: &zx,
            rk: &self.rkernel,
            hseq: &hseq,
            cseq: &cseq,
            out: &out,
        };
        rec.set_phase(Phase::Recurrence);
        kcell::record_forward(rec, &s, algo, train, slots, &bufs)?;
        rec.set_phase(Phase::Dense);
        let last = t % slots;
        rec.copy(&hseq, by(last * b * frame), &h_n, 0, by(b * frame));
        rec.copy(&cseq, by(last * b * frame), &c_n, 0, by(b * frame));
        let tape = train.then(|| ConvTape {
            b,
            t,
            bwd,
            x: x.clone(),
            gates: zx,
            hseq,
            cseq,
        });
        Ok(LayerRun {
            out,
            h_n,
            c_n,
            tape,
        })
    }

    /// Records the backward from `dy` (B,T,Ho,Wo,F, processing order) and `state` (dy_h_n then
    /// dy_c_n, consumed: it ends as dh0 then dc0), without submitting.
    pub fn record_backward(
        &self,
        ctx: &Context,
        rec: &mut Recorder<'_>,
        tape: &ConvTape,
        dy: &wgpu::Buffer,
        state: wgpu::Buffer,
    ) -> Result<LayerGrads> {
        let (b, t) = (tape.b, tape.t);
        let s = self.shape(b, t)?;
        let d = self.dims;
        let f = d.filters;
        let (gin, grec) = (self.input_geom()?, self.recurrent_geom()?);
        let dgates = buffers::zeros(ctx, "dgates", b * t * s.rows * s.cols * 4 * f)?;
        let g = LayerGrads {
            dx: buffers::zeros(ctx, "dx", b * t * d.rows * d.cols * d.in_channels)?,
            state,
            dk: self.dk.clone(),
            drk: self.drk.clone(),
            db: self.db.clone(),
        };
        let bufs = BwdBufs {
            gates: &tape.gates,
            rk: &self.rkernel,
            cseq: &tape.cseq,
            dy,
            dgates: &dgates,
            state: &g.state,
        };
        rec.set_phase(Phase::Recurrence);
        rec.note_algorithm(tape.bwd);
        kcell::record_backward(rec, &s, tape.bwd, &bufs)?;
        rec.set_phase(Phase::Dense);
        // After the loop: every weight gradient in one pass over all T·B frames.
        let xmap = FrameMap {
            frames: b * t,
            t_len: t,
            sb: t,
            st: 1,
            off: 0,
        };
        // h_{t-1} of frame (b, t) is ring slot t: frame index t·B + b.
        let hmap = FrameMap {
            frames: b * t,
            t_len: t,
            sb: 1,
            st: b,
            off: 0,
        };
        conv::wgrad_bias(
            rec,
            &gin,
            &xmap,
            4 * f,
            &tape.x,
            &dgates,
            (&g.dk, Some(&g.db)),
            0.0,
        )?;
        conv::wgrad(rec, &grec, &hmap, 4 * f, &tape.hseq, &dgates, &g.drk, 0.0)?;
        // dX: a tiled gather convolution where the backward runs Tiled and the input conv
        // has stride 1 and ≥ 16 input channels (ktiled::dgrad_fits); otherwise the
        // one-invocation-per-element gather.
        if tape.bwd == Algorithm::Tiled && ktiled::dgrad_fits(ctx, &gin, b * t, 4 * f) {
            ktiled::dgrad(rec, &gin, b * t, 4 * f, &dgates, &self.kernel, &g.dx)?;
        } else {
            conv::dgrad(rec, &gin, &xmap, 4 * f, &dgates, &self.kernel, &g.dx, 0.0)?;
        }
        Ok(g)
    }

    /// Reads a layer's gradients back (Keras layouts).
    pub fn read_grads(
        &self,
        ctx: &Context,
        b: usize,
        t: usize,
        g: &LayerGrads,
        stats: RecordStats,
    ) -> Result<ConvGrads> {
        let d = self.dims;
        let (ho, wo) = d.out_hw()?;
        let (f, n) = (d.filters, self.state_len(b)?);
        let (kh, kw) = d.kernel;
        let mut got = buffers::read_f32(
            ctx,
            &[
                (&g.dx, 0, b * t * d.rows * d.cols * d.in_channels),
                (&g.state, 0, n),
                (&g.state, n, n),
                (&g.dk, 0, kh * kw * d.in_channels * 4 * f),
                (&g.drk, 0, kh * kw * f * 4 * f),
                (&g.db, 0, 4 * f),
            ],
        )?
        .into_iter();
        let mut next = || got.next().ok_or_else(|| Error::Device("read-back".into()));
        Ok(ConvGrads {
            dx: shaped(next()?, (b, t, d.rows, d.cols, d.in_channels))?,
            dh0: shaped(next()?, (b, ho, wo, f))?,
            dc0: shaped(next()?, (b, ho, wo, f))?,
            kernel: shaped(next()?, (kh, kw, d.in_channels, 4 * f))?,
            recurrent_kernel: shaped(next()?, (kh, kw, f, 4 * f))?,
            bias: Array1::from_vec(next()?),
            stats,
        })
    }
}

fn upload_state(
    ctx: &Context,
    what: &str,
    h: ArrayView4<f32>,
    c: ArrayView4<f32>,
) -> Result<wgpu::Buffer> {
    let mut v: Vec<f32> = h.iter().copied().collect();
    v.extend(c.iter().copied());
    buffers::upload(ctx, what, &v)
}

/// Runs the forward pass on `x` (B,T,rows,cols,Cin), already in processing order.
pub(crate) fn forward(
    ctx: &Context,
    w: &GpuConvLstm,
    x: ArrayView5<f32>,
    (h0, c0): (ArrayView4<f32>, ArrayView4<f32>),
    algo: Algorithm,
    train: bool,
) -> Result<ConvForward> {
    let (b, t) = (x.shape()[0], x.shape()[1]);
    let (ho, wo) = w.dims.out_hw()?;
    let f = w.dims.filters;
    let n = w.state_len(b)?;
    let x_buf = buffers::upload(ctx, "x", &x.iter().copied().collect::<Vec<_>>())?;
    let h0b = buffers::upload(ctx, "h0", &h0.iter().copied().collect::<Vec<_>>())?;
    let c0b = buffers::upload(ctx, "c0", &c0.iter().copied().collect::<Vec<_>>())?;
    let mut rec = Recorder::new(ctx);
    let run = w.record_forward(ctx, &mut rec, &x_buf, (b, t), (&h0b, &c0b), algo, train)?;
    let stats = rec.submit()?;
    let mut got = buffers::read_f32(
        ctx,
        &[(&run.out, 0, t * n), (&run.h_n, 0, n), (&run.c_n, 0, n)],
    )?
    .into_iter();
    let mut next = || got.next().ok_or_else(|| Error::Device("read-back".into()));
    Ok(ConvForward {
        out: shaped(next()?, (b, t, ho, wo, f))?,
        h_n: shaped(next()?, (b, ho, wo, f))?,
        c_n: shaped(next()?, (b, ho, wo, f))?,
        tape: run.tape,
        stats,
    })
}

/// Runs the backward pass: dy_out (B,T,Ho,Wo,F) in processing order, dy_h_n, dy_c_n (B,Ho,Wo,F).
pub(crate) fn backward(
    ctx: &Context,
    w: &GpuConvLstm,
    tape: &ConvTape,
    dy_out: ArrayView5<f32>,
    (dy_h_n, dy_c_n): (ArrayView4<f32>, ArrayView4<f32>),
) -> Result<ConvGrads> {
    let dy = buffers::upload(ctx, "dy_out", &dy_out.iter().copied().collect::<Vec<_>>())?;
    let state = upload_state(ctx, "bwd state", dy_h_n, dy_c_n)?;
    let mut rec = Recorder::new(ctx);
    let g = w.record_backward(ctx, &mut rec, tape, &dy, state)?;
    let stats = rec.submit()?;
    w.read_grads(ctx, tape.b, tape.t, &g, stats)
}
