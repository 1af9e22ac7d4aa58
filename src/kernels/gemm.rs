//! Launcher for `shaders/gemm.wgsl`: strided C = alpha·A·B + beta·C (+ bias row).

use super::{Access, KernelDef, Recorder, Shader};
use crate::error::{Error, Result};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k_begin: u32,
    k_end: u32,
    a_off: u32,
    a_rs: u32,
    a_cs: u32,
    b_off: u32,
    b_rs: u32,
    b_cs: u32,
    c_off: u32,
    c_rs: u32,
    bias_off: u32,
    has_bias: u32,
    alpha: f32,
    beta: f32,
}

const GEMM: KernelDef = KernelDef {
    shader: Shader::Gemm,
    entry: "gemm",
    storage: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
    params_size: std::mem::size_of::<Params>() as u64,
};

/// K handled by one dispatch: ~22 loop iterations per 16-wide K tile per invocation keeps
/// an invocation well under the loop budget (DESIGN.md §5).
const K_CHUNK: usize = 16_384;

/// A strided read-only matrix operand: element (r, c) at `off + r*rs + c*cs` (in f32s).
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub buf: &'a wgpu::Buffer,
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// Row-major with row stride `ld`, starting at element `off`.
    pub fn rows(buf: &'a wgpu::Buffer, off: usize, ld: usize) -> Self {
        Self {
            buf,
            off,
            rs: ld,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with row stride `ld`.
    pub fn rows_t(buf: &'a wgpu::Buffer, off: usize, ld: usize) -> Self {
        Self {
            buf,
            off,
            rs: 1,
            cs: ld,
        }
    }
}

/// The row-major output: element (r, c) at `off + r*rs + c`.
#[derive(Clone, Copy)]
pub(crate) struct Out<'a> {
    pub buf: &'a wgpu::Buffer,
    pub off: usize,
    pub rs: usize,
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Limit(format!("gemm {what} = {v} exceeds u32 indexing")))
}

/// Records C[m×n] = alpha·A[m×k]·B[k×n] + beta·C (+ bias[bias_off..] on every row).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    rec: &mut Recorder<'_>,
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    a: Mat<'_>,
    b: Mat<'_>,
    beta: f32,
    c: Out<'_>,
    bias: Option<(&wgpu::Buffer, usize)>,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    let groups = u32_of(m.div_ceil(64) * n.div_ceil(64), "tile count")?;
    let mut k_begin = 0;
    let mut first = true;
    // k == 0 still runs once so beta/bias are applied (C = beta·C + bias).
    loop {
        let k_end = (k_begin + K_CHUNK).min(k);
        let params = Params {
            m: u32_of(m, "m")?,
            n: u32_of(n, "n")?,
            k_begin: u32_of(k_begin, "k")?,
            k_end: u32_of(k_end, "k")?,
            a_off: u32_of(a.off, "a offset")?,
            a_rs: u32_of(a.rs, "a stride")?,
            a_cs: u32_of(a.cs, "a stride")?,
            b_off: u32_of(b.off, "b offset")?,
            b_rs: u32_of(b.rs, "b stride")?,
            b_cs: u32_of(b.cs, "b stride")?,
            c_off: u32_of(c.off, "c offset")?,
            c_rs: u32_of(c.rs, "c stride")?,
            bias_off: u32_of(bias.map_or(0, |x| x.1), "bias offset")?,
            has_bias: u32::from(first && bias.is_some()),
            alpha,
            beta: if first { beta } else { 1.0 },
        };
        let bias_buf = bias.map_or(a.buf, |x| x.0);
        rec.dispatch(&GEMM, &params, &[a.buf, b.buf, bias_buf, c.buf], groups)?;
        first = false;
        k_begin = k_end;
        if k_begin >= k {
            return Ok(());
        }
    }
}
