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
use crate::kernels::gemm::{self, Mat, Out};
use crate::kernels::{RecordStats, Recorder, buffers};

/// A layer's weights on the device (Keras layouts, flattened row-major).
pub(crate) struct GpuConvLstm {
    dims: ConvLstmDims,
    /// (kh·kw·Cin, 4F)
    kernel: wgpu::Buffer,
    /// (kh·kw·F, 4F)
    rkernel: wgpu::Buffer,
    bias: wgpu::Buffer,
}

impl GpuConvLstm {
    pub fn upload(ctx: &Context, p: &ConvLstmParams<f32>) -> Result<Self> {
        let flat = |a: &Array4<f32>| a.iter().copied().collect::<Vec<f32>>();
        Ok(Self {
            dims: p.dims,
            kernel: buffers::upload(ctx, "kernel", &flat(&p.kernel))?,
            rkernel: buffers::upload(ctx, "recurrent_kernel", &flat(&p.recurrent_kernel))?,
            bias: buffers::upload(ctx, "bias", &p.bias.to_vec())?,
        })
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
    let s = w.shape(b, t)?;
    let algo = kcell::resolve(ctx, algo, &s)?;
    let f = w.dims.filters;
    let (ho, wo) = (s.rows, s.cols);
    let frame = ho * wo * f;
    let gin = w.input_geom()?;
    let x_buf = buffers::upload(ctx, "x", &x.iter().copied().collect::<Vec<_>>())?;
    let zx = buffers::zeros(ctx, "gates", b * t * ho * wo * 4 * f)?;
    let slots = if train { t + 1 } else { 2 };
    let hseq = buffers::zeros(ctx, "hseq", slots * b * frame)?;
    let cseq = buffers::zeros(ctx, "cseq", slots * b * frame)?;
    let out = buffers::zeros(ctx, "out", b * t * frame)?;
    let h0b = buffers::upload(ctx, "h0", &h0.iter().copied().collect::<Vec<_>>())?;
    let c0b = buffers::upload(ctx, "c0", &c0.iter().copied().collect::<Vec<_>>())?;
    let (hn, cn) = (
        buffers::zeros(ctx, "h_n", b * frame)?,
        buffers::zeros(ctx, "c_n", b * frame)?,
    );

    let mut rec = Recorder::new(ctx);
    let xmap = FrameMap {
        frames: b * t,
        t_len: t,
        sb: t,
        st: 1,
        off: 0,
    };
    conv::forward(
        &mut rec,
        &gin,
        &xmap,
        4 * f,
        &x_buf,
        &w.kernel,
        &w.bias,
        &zx,
    )?;
    rec.copy(&h0b, 0, &hseq, 0, by(b * frame));
    rec.copy(&c0b, 0, &cseq, 0, by(b * frame));
    let bufs = FwdBufs {
        zx: &zx,
        rk: &w.rkernel,
        hseq: &hseq,
        cseq: &cseq,
        out: &out,
    };
    kcell::record_forward(&mut rec, &s, algo, train, slots, &bufs)?;
    let last = t % slots;
    rec.copy(&hseq, by(last * b * frame), &hn, 0, by(b * frame));
    rec.copy(&cseq, by(last * b * frame), &cn, 0, by(b * frame));
    let stats = rec.submit()?;
    let mut got = buffers::read_f32(
        ctx,
        &[
            (&out, 0, b * t * frame),
            (&hn, 0, b * frame),
            (&cn, 0, b * frame),
        ],
    )?
    .into_iter();
    let mut next = || got.next().ok_or_else(|| Error::Device("read-back".into()));
    Ok(ConvForward {
        out: shaped(next()?, (b, t, ho, wo, f))?,
        h_n: shaped(next()?, (b, ho, wo, f))?,
        c_n: shaped(next()?, (b, ho, wo, f))?,
        tape: train.then_some(ConvTape {
            b,
            t,
            x: x_buf,
            gates: zx,
            hseq,
            cseq,
        }),
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
    let (b, t) = (tape.b, tape.t);
    let s = w.shape(b, t)?;
    let d = w.dims;
    let f = d.filters;
    let frame = s.rows * s.cols * f;
    let n = b * frame;
    let (gin, grec) = (w.input_geom()?, w.recurrent_geom()?);
    let dy = buffers::upload(ctx, "dy_out", &dy_out.iter().copied().collect::<Vec<_>>())?;
    let mut st: Vec<f32> = dy_h_n.iter().copied().collect();
    st.extend(dy_c_n.iter().copied());
    let state = buffers::upload(ctx, "bwd state", &st)?;
    let dgates = buffers::zeros(ctx, "dgates", b * t * s.rows * s.cols * 4 * f)?;
    let k_rows = d.kernel.0 * d.kernel.1;
    let dk = buffers::zeros(ctx, "d kernel", k_rows * d.in_channels * 4 * f)?;
    let drk = buffers::zeros(ctx, "d recurrent_kernel", k_rows * f * 4 * f)?;
    let db = buffers::zeros(ctx, "d bias", 4 * f)?;
    let dx = buffers::zeros(ctx, "dx", b * t * d.rows * d.cols * d.in_channels)?;
    let ones = buffers::upload(ctx, "ones", &[1.0f32])?;

    let mut rec = Recorder::new(ctx);
    let bufs = BwdBufs {
        gates: &tape.gates,
        rk: &w.rkernel,
        cseq: &tape.cseq,
        dy: &dy,
        dgates: &dgates,
        state: &state,
    };
    kcell::record_backward(&mut rec, &s, &bufs)?;
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
    conv::wgrad(&mut rec, &gin, &xmap, 4 * f, &tape.x, &dgates, &dk, 0.0)?;
    conv::wgrad(
        &mut rec,
        &grec,
        &hmap,
        4 * f,
        &tape.hseq,
        &dgates,
        &drk,
        0.0,
    )?;
    let rows = b * t * s.rows * s.cols;
    gemm::record(
        &mut rec,
        (1, 4 * f, rows),
        1.0,
        Mat {
            buf: &ones,
            off: 0,
            rs: 0,
            cs: 0,
        },
        Mat::rows(&dgates, 0, 4 * f),
        0.0,
        Out {
            buf: &db,
            off: 0,
            rs: 4 * f,
        },
        None,
    )?;
    conv::dgrad(&mut rec, &gin, &xmap, 4 * f, &dgates, &w.kernel, &dx, 0.0)?;
    let stats = rec.submit()?;

    let mut got = buffers::read_f32(
        ctx,
        &[
            (&dx, 0, b * t * d.rows * d.cols * d.in_channels),
            (&state, 0, n),
            (&state, n, n),
            (&dk, 0, k_rows * d.in_channels * 4 * f),
            (&drk, 0, k_rows * f * 4 * f),
            (&db, 0, 4 * f),
        ],
    )?
    .into_iter();
    let mut next = || got.next().ok_or_else(|| Error::Device("read-back".into()));
    let (kh, kw) = d.kernel;
    Ok(ConvGrads {
        dx: shaped(next()?, (b, t, d.rows, d.cols, d.in_channels))?,
        dh0: shaped(next()?, (b, s.rows, s.cols, f))?,
        dc0: shaped(next()?, (b, s.rows, s.cols, f))?,
        kernel: shaped(next()?, (kh, kw, d.in_channels, 4 * f))?,
        recurrent_kernel: shaped(next()?, (kh, kw, f, 4 * f))?,
        bias: Array1::from_vec(next()?),
        stats,
    })
}
