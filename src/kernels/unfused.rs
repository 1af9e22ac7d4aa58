//! The unfused baseline LSTM recurrence (benchmarks only): per step, one GEMM for h·W_hhᵀ and
//! one dispatch per element-wise operation, all in one pass and one submit — how ONNX Runtime's
//! WebGPU LSTM runs — so the fused kernels' gain is measured, not assumed.

use super::gemm::{self, Mat, Out};
use super::{Access, KernelDef, Recorder, Shader, buffers};
use crate::context::Context;
use crate::error::Result;
use crate::kernels::rec::{step_groups, u32_of};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    width: u32,
    a_off: u32,
    a_rs: u32,
    b_off: u32,
    b_rs: u32,
    d_off: u32,
    d_rs: u32,
}

const fn def(entry: &'static str) -> KernelDef {
    KernelDef {
        shader: Shader::Unfused,
        entry,
        storage: &[Access::Read, Access::Read, Access::ReadWrite],
        params_size: std::mem::size_of::<Params>() as u64,
    }
}
const ADD: KernelDef = def("add");
const MUL: KernelDef = def("mul");
const SIGMOID: KernelDef = def("sigmoid");
const TANH: KernelDef = def("tanh_op");
const COPY: KernelDef = def("copy");
const DSIG: KernelDef = def("dsig");
const DTANH: KernelDef = def("dtanh");

/// What the unfused forward keeps per step for its backward, each `[T, B, ·]`: gate
/// activations (σ for i, f, o and tanh for g, as `[B, 4H]` rows), c and h before the step,
/// tanh(c) after it. Saved with one copy dispatch each, as an autograd engine keeps them.
pub(crate) struct UnfusedTape {
    sg: wgpu::Buffer,
    th: wgpu::Buffer,
    c_prev: wgpu::Buffer,
    h_prev: wgpu::Buffer,
    tanh_c: wgpu::Buffer,
}

impl UnfusedTape {
    pub fn new(ctx: &Context, (t, b, h): (usize, usize, usize)) -> Result<Self> {
        Ok(Self {
            sg: buffers::zeros(ctx, "tape σ", t * b * 4 * h)?,
            th: buffers::zeros(ctx, "tape tanh g", t * b * 4 * h)?,
            c_prev: buffers::zeros(ctx, "tape c_prev", t * b * h)?,
            h_prev: buffers::zeros(ctx, "tape h_prev", t * b * h)?,
            tanh_c: buffers::zeros(ctx, "tape tanh c", t * b * h)?,
        })
    }
}

/// Gradient outputs of the unfused backward.
pub(crate) struct UnfusedGrads<'a> {
    /// dx `[T·B, I]`.
    pub dx: &'a wgpu::Buffer,
    /// dW_ih `[4H, I]`.
    pub dw_ih: &'a wgpu::Buffer,
    /// dW_hh `[4H, H]`.
    pub dw_hh: &'a wgpu::Buffer,
    /// d(b_ih) = d(b_hh) `[4H]`.
    pub db: &'a wgpu::Buffer,
}

/// A `[rows, width]` view: element (r, j) at `off + r·rs + j`.
#[derive(Clone, Copy)]
struct View<'a> {
    buf: &'a wgpu::Buffer,
    off: usize,
    rs: usize,
}

fn op(
    rec: &mut Recorder<'_>,
    k: &KernelDef,
    (rows, width): (usize, usize),
    a: View<'_>,
    b: View<'_>,
    d: View<'_>,
) -> Result<()> {
    let n = rows * width;
    let prm = Params {
        n: u32_of(n, "elements")?,
        width: u32_of(width, "width")?,
        a_off: u32_of(a.off, "offset")?,
        a_rs: u32_of(a.rs, "stride")?,
        b_off: u32_of(b.off, "offset")?,
        b_rs: u32_of(b.rs, "stride")?,
        d_off: u32_of(d.off, "offset")?,
        d_rs: u32_of(d.rs, "stride")?,
    };
    rec.dispatch(k, &prm, &[a.buf, b.buf, d.buf], step_groups(n)?)
}

/// A one-operand op (sigmoid, tanh, copy): the unused second operand is `a` again.
fn unary(
    rec: &mut Recorder<'_>,
    k: &KernelDef,
    shape: (usize, usize),
    a: View<'_>,
    d: View<'_>,
) -> Result<()> {
    op(rec, k, shape, a, a, d)
}

/// Records the unfused forward recurrence of one unidirectional layer (zero initial state):
/// `gx` [T,B,4H] holds x·W_ihᵀ + b, `w_hh` is (4H, H); h_t goes to `out` [T,B,H].
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_forward(
    ctx: &Context,
    rec: &mut Recorder<'_>,
    (t, b, h): (usize, usize, usize),
    gx: &wgpu::Buffer,
    w_hh: &wgpu::Buffer,
    out: &wgpu::Buffer,
    tape: Option<&UnfusedTape>,
) -> Result<()> {
    let g4 = 4 * h;
    let z = |what| buffers::zeros(ctx, what, b * g4);
    let (mm, pre, sg, th) = (
        z("h·W_hh")?,
        z("pre-activations")?,
        z("sigmoids")?,
        z("tanhs")?,
    );
    let y = |what| buffers::zeros(ctx, what, b * h);
    let (hs, c, c2, fc, ig, tc) = (
        y("h")?,
        y("c")?,
        y("c'")?,
        y("f·c")?,
        y("i·g")?,
        y("tanh c")?,
    );
    let v = |buf, off, rs| View { buf, off, rs };
    let bh = (b, h);
    for step in 0..t {
        if let Some(tp) = tape {
            unary(rec, &COPY, bh, v(&hs, 0, h), v(&tp.h_prev, step * b * h, h))?;
            unary(rec, &COPY, bh, v(&c, 0, h), v(&tp.c_prev, step * b * h, h))?;
        }
        // pre = h·W_hhᵀ + gx[t]   (two ops, as a framework would issue them)
        gemm::record(
            rec,
            (b, g4, h),
            1.0,
            Mat::rows(&hs, 0, h),
            Mat::rows_t(w_hh, 0, h),
            0.0,
            Out {
                buf: &mm,
                off: 0,
                rs: g4,
            },
            None,
        )?;
        op(
            rec,
            &ADD,
            (b, g4),
            v(&mm, 0, g4),
            v(gx, step * b * g4, g4),
            v(&pre, 0, g4),
        )?;
        // activations of the four gate slices
        unary(rec, &SIGMOID, bh, v(&pre, 0, g4), v(&sg, 0, g4))?;
        unary(rec, &SIGMOID, bh, v(&pre, h, g4), v(&sg, h, g4))?;
        unary(rec, &TANH, bh, v(&pre, 2 * h, g4), v(&th, 2 * h, g4))?;
        unary(rec, &SIGMOID, bh, v(&pre, 3 * h, g4), v(&sg, 3 * h, g4))?;
        // c' = f·c + i·g ; h = o·tanh(c')
        op(rec, &MUL, bh, v(&sg, h, g4), v(&c, 0, h), v(&fc, 0, h))?;
        op(
            rec,
            &MUL,
            bh,
            v(&sg, 0, g4),
            v(&th, 2 * h, g4),
            v(&ig, 0, h),
        )?;
        op(rec, &ADD, bh, v(&fc, 0, h), v(&ig, 0, h), v(&c2, 0, h))?;
        unary(rec, &COPY, bh, v(&c2, 0, h), v(&c, 0, h))?;
        unary(rec, &TANH, bh, v(&c2, 0, h), v(&tc, 0, h))?;
        op(rec, &MUL, bh, v(&sg, 3 * h, g4), v(&tc, 0, h), v(&hs, 0, h))?;
        if let Some(tp) = tape {
            let g = (b, g4);
            unary(rec, &COPY, g, v(&sg, 0, g4), v(&tp.sg, step * b * g4, g4))?;
            unary(rec, &COPY, g, v(&th, 0, g4), v(&tp.th, step * b * g4, g4))?;
            unary(rec, &COPY, bh, v(&tc, 0, h), v(&tp.tanh_c, step * b * h, h))?;
        }
        unary(rec, &COPY, bh, v(&hs, 0, h), v(out, step * b * h, h))?;
    }
    Ok(())
}

/// Records the unfused BPTT of [`record_forward`] (zero initial state, dL/dh_T = dL/dc_T =
/// 0): per step one dispatch per element-wise operation and one GEMM for dh·W_hh, then the
/// weight and input gradients as GEMMs over all steps. `dy` `[T, B, H]` is dL/dout; `x`
/// `[T·B, I]`, `w_ih` `[4H, I]`, `w_hh` `[4H, H]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_backward(
    ctx: &Context,
    rec: &mut Recorder<'_>,
    (t, b, h, i): (usize, usize, usize, usize),
    tape: &UnfusedTape,
    (x, w_ih, w_hh): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
    dy: &wgpu::Buffer,
    g: &UnfusedGrads<'_>,
) -> Result<()> {
    let g4 = 4 * h;
    let y = |what| buffers::zeros(ctx, what, b * h);
    let (dh, dc, dht, dc2, t1, t2) = (
        y("dh")?,
        y("dc")?,
        y("dh_tot")?,
        y("dc'")?,
        y("t1")?,
        y("t2")?,
    );
    let dgates = buffers::zeros(ctx, "dgates", t * b * g4)?;
    let ones = buffers::upload(ctx, "ones", &[1.0f32])?;
    let v = |buf, off, rs| View { buf, off, rs };
    let bh = (b, h);
    for step in (0..t).rev() {
        let (s4, s1) = (step * b * g4, step * b * h);
        let sg = |q: usize| v(&tape.sg, s4 + q * h, g4);
        let dg = |q: usize| v(&dgates, s4 + q * h, g4);
        let tc = v(&tape.tanh_c, s1, h);
        op(rec, &ADD, bh, v(&dh, 0, h), v(dy, s1, h), v(&dht, 0, h))?;
        // do = dh·tanh(c)·σ'(o)
        op(rec, &MUL, bh, v(&dht, 0, h), tc, v(&t1, 0, h))?;
        op(rec, &DSIG, bh, v(&t1, 0, h), sg(3), dg(3))?;
        // dc' = dc + dh·o·tanh'(c)
        op(rec, &MUL, bh, v(&dht, 0, h), sg(3), v(&t1, 0, h))?;
        op(rec, &DTANH, bh, v(&t1, 0, h), tc, v(&t2, 0, h))?;
        op(rec, &ADD, bh, v(&dc, 0, h), v(&t2, 0, h), v(&dc2, 0, h))?;
        // di = dc'·g·σ'(i) ; dg = dc'·i·tanh'(g) ; df = dc'·c_prev·σ'(f) ; dc = dc'·f
        op(
            rec,
            &MUL,
            bh,
            v(&dc2, 0, h),
            v(&tape.th, s4 + 2 * h, g4),
            v(&t1, 0, h),
        )?;
        op(rec, &DSIG, bh, v(&t1, 0, h), sg(0), dg(0))?;
        op(rec, &MUL, bh, v(&dc2, 0, h), sg(0), v(&t1, 0, h))?;
        op(
            rec,
            &DTANH,
            bh,
            v(&t1, 0, h),
            v(&tape.th, s4 + 2 * h, g4),
            dg(2),
        )?;
        op(
            rec,
            &MUL,
            bh,
            v(&dc2, 0, h),
            v(&tape.c_prev, s1, h),
            v(&t1, 0, h),
        )?;
        op(rec, &DSIG, bh, v(&t1, 0, h), sg(1), dg(1))?;
        op(rec, &MUL, bh, v(&dc2, 0, h), sg(1), v(&dc, 0, h))?;
        // dh_{t-1} = dgates_t · W_hh
        gemm::record(
            rec,
            (b, h, g4),
            1.0,
            Mat::rows(&dgates, s4, g4),
            Mat::rows(w_hh, 0, h),
            0.0,
            Out {
                buf: &dh,
                off: 0,
                rs: h,
            },
            None,
        )?;
    }
    // The loop is over; what follows is dense work (reported apart from the recurrence).
    rec.set_phase(super::Phase::Dense);
    let rows = t * b;
    let dgt = Mat::rows_t(&dgates, 0, g4);
    let out = |buf, rs| Out { buf, off: 0, rs };
    gemm::record(
        rec,
        (g4, i, rows),
        1.0,
        dgt,
        Mat::rows(x, 0, i),
        0.0,
        out(g.dw_ih, i),
        None,
    )?;
    let dgt = Mat::rows_t(&dgates, 0, g4);
    let hp = Mat::rows(&tape.h_prev, 0, h);
    gemm::record(rec, (g4, h, rows), 1.0, dgt, hp, 0.0, out(g.dw_hh, h), None)?;
    let ones = Mat {
        buf: &ones,
        off: 0,
        rs: 0,
        cs: 0,
    };
    let dgr = Mat::rows(&dgates, 0, g4);
    gemm::record(rec, (1, g4, rows), 1.0, ones, dgr, 0.0, out(g.db, g4), None)?;
    let dgr = Mat::rows(&dgates, 0, g4);
    gemm::record(
        rec,
        (rows, i, g4),
        1.0,
        dgr,
        Mat::rows(w_ih, 0, i),
        0.0,
        out(g.dx, i),
        None,
    )
}
