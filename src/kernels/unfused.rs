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
        op(
            rec,
            &SIGMOID,
            bh,
            v(&pre, 0, g4),
            v(&pre, 0, g4),
            v(&sg, 0, g4),
        )?;
        op(
            rec,
            &SIGMOID,
            bh,
            v(&pre, h, g4),
            v(&pre, h, g4),
            v(&sg, h, g4),
        )?;
        op(
            rec,
            &TANH,
            bh,
            v(&pre, 2 * h, g4),
            v(&pre, 2 * h, g4),
            v(&th, 2 * h, g4),
        )?;
        op(
            rec,
            &SIGMOID,
            bh,
            v(&pre, 3 * h, g4),
            v(&pre, 3 * h, g4),
            v(&sg, 3 * h, g4),
        )?;
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
        op(rec, &COPY, bh, v(&c2, 0, h), v(&c2, 0, h), v(&c, 0, h))?;
        op(rec, &TANH, bh, v(&c2, 0, h), v(&c2, 0, h), v(&tc, 0, h))?;
        op(rec, &MUL, bh, v(&sg, 3 * h, g4), v(&tc, 0, h), v(&hs, 0, h))?;
        op(
            rec,
            &COPY,
            bh,
            v(&hs, 0, h),
            v(&hs, 0, h),
            v(out, step * b * h, h),
        )?;
    }
    Ok(())
}
