//! Launchers for `shaders/conv.wgsl`: the ConvLSTM2D convolutions outside the time loop
//! (implicit-GEMM input convolution, weight gradients, input gradient).

use super::{Access, KernelDef, Recorder, Shader};
use crate::context::LOOP_BUDGET;
use crate::error::{Error, Result};
use crate::kernels::rec::u32_of;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ConvParams {
    frames: u32,
    t_len: u32,
    src_sb: u32,
    src_st: u32,
    src_off: u32,
    rows: u32,
    cols: u32,
    cin: u32,
    out_rows: u32,
    out_cols: u32,
    cout: u32,
    kh: u32,
    kw: u32,
    sy: u32,
    sx: u32,
    dy: u32,
    dx: u32,
    pad_top: u32,
    pad_left: u32,
    k_begin: u32,
    k_end: u32,
    has_bias: u32,
    beta: f32,
    _pad: u32,
}

const BINDINGS: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
];
const fn def(entry: &'static str) -> KernelDef {
    KernelDef {
        shader: Shader::Conv,
        entry,
        storage: BINDINGS,
        params_size: std::mem::size_of::<ConvParams>() as u64,
    }
}
const CONV_GEMM: KernelDef = def("conv_gemm");
const CONV_WGRAD: KernelDef = def("conv_wgrad");
const CONV_DGRAD: KernelDef = def("conv_dgrad");

/// Reduction length of one GEMM dispatch (~22 loop iterations per 16-wide tile per
/// invocation keeps it under the loop budget, as in gemm.rs).
const K_CHUNK: usize = 16_384;

/// Geometry of one 2-D convolution, channels_last.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvGeom {
    pub rows: usize,
    pub cols: usize,
    pub cin: usize,
    pub out_rows: usize,
    pub out_cols: usize,
    pub kernel: (usize, usize),
    pub strides: (usize, usize),
    pub dilation: (usize, usize),
    /// Padding before the first row / column (TF puts any extra at the bottom/right).
    pub pad: (usize, usize),
}

/// Where output frame n = b·T + t reads its source frame: `off + b·sb + t·st`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FrameMap {
    pub frames: usize,
    pub t_len: usize,
    pub sb: usize,
    pub st: usize,
    pub off: usize,
}

fn params(g: &ConvGeom, m: &FrameMap, cout: usize) -> Result<ConvParams> {
    Ok(ConvParams {
        frames: u32_of(m.frames, "frames")?,
        t_len: u32_of(m.t_len, "seq_len")?,
        src_sb: u32_of(m.sb, "frame stride")?,
        src_st: u32_of(m.st, "frame stride")?,
        src_off: u32_of(m.off, "frame offset")?,
        rows: u32_of(g.rows, "rows")?,
        cols: u32_of(g.cols, "cols")?,
        cin: u32_of(g.cin, "channels")?,
        out_rows: u32_of(g.out_rows, "rows")?,
        out_cols: u32_of(g.out_cols, "cols")?,
        cout: u32_of(cout, "channels")?,
        kh: u32_of(g.kernel.0, "kernel")?,
        kw: u32_of(g.kernel.1, "kernel")?,
        sy: u32_of(g.strides.0, "stride")?,
        sx: u32_of(g.strides.1, "stride")?,
        dy: u32_of(g.dilation.0, "dilation")?,
        dx: u32_of(g.dilation.1, "dilation")?,
        pad_top: u32_of(g.pad.0, "padding")?,
        pad_left: u32_of(g.pad.1, "padding")?,
        k_begin: 0,
        k_end: 0,
        has_bias: 0,
        beta: 0.0,
        _pad: 0,
    })
}

fn tiles(rows: usize, cout: usize) -> Result<u32> {
    u32_of(rows.div_ceil(64) * cout.div_ceil(64), "conv tiles")
}

/// Dispatches a tiled entry over [0, k) in chunks; `beta` applies to the first chunk only.
fn chunked(
    rec: &mut Recorder<'_>,
    k_def: &KernelDef,
    mut prm: ConvParams,
    bufs: &[&wgpu::Buffer; 5],
    k: usize,
    groups: u32,
    beta: f32,
) -> Result<()> {
    let mut k0 = 0;
    loop {
        let k1 = (k0 + K_CHUNK).min(k);
        prm.k_begin = u32_of(k0, "k")?;
        prm.k_end = u32_of(k1, "k")?;
        prm.beta = if k0 == 0 { beta } else { 1.0 };
        if k0 > 0 {
            prm.has_bias = 0;
        }
        rec.dispatch(k_def, &prm, bufs, groups)?;
        k0 = k1;
        if k0 >= k {
            return Ok(());
        }
    }
}

/// Y[m, o] = conv(src)[m, o] + bias[o] for every output pixel m of every frame (implicit GEMM);
/// `w` is the Keras kernel (kh, kw, cin, cout) flattened to (kh·kw·cin, cout).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    rec: &mut Recorder<'_>,
    g: &ConvGeom,
    m: &FrameMap,
    cout: usize,
    src: &wgpu::Buffer,
    w: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<()> {
    let mut prm = params(g, m, cout)?;
    prm.has_bias = 1;
    let rows = m.frames * g.out_rows * g.out_cols;
    let k = g.kernel.0 * g.kernel.1 * g.cin;
    chunked(
        rec,
        &CONV_GEMM,
        prm,
        &[src, w, src, bias, dst],
        k,
        tiles(rows, cout)?,
        0.0,
    )
}

/// dW[k, o] = Σ_m im2col(src)[m, k]·G[m, o] (+ beta·dW): a kernel gradient after the loop.
#[allow(clippy::too_many_arguments)]
pub(crate) fn wgrad(
    rec: &mut Recorder<'_>,
    g: &ConvGeom,
    m: &FrameMap,
    cout: usize,
    src: &wgpu::Buffer,
    grad: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    beta: f32,
) -> Result<()> {
    let prm = params(g, m, cout)?;
    let rows = g.kernel.0 * g.kernel.1 * g.cin;
    let k = m.frames * g.out_rows * g.out_cols;
    chunked(
        rec,
        &CONV_WGRAD,
        prm,
        &[src, src, grad, src, dst],
        k,
        tiles(rows, cout)?,
        beta,
    )
}

/// dX = the input gradient of `forward` for gate gradients `grad` (+ beta·dX), one
/// invocation per input element.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dgrad(
    rec: &mut Recorder<'_>,
    g: &ConvGeom,
    m: &FrameMap,
    cout: usize,
    grad: &wgpu::Buffer,
    w: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    beta: f32,
) -> Result<()> {
    let per_inv = g.kernel.0 * g.kernel.1 * (cout + 2);
    if per_inv > LOOP_BUDGET as usize {
        return Err(Error::Limit(format!(
            "conv input gradient: {per_inv} loop iterations per invocation exceed {LOOP_BUDGET}"
        )));
    }
    let mut prm = params(g, m, cout)?;
    prm.beta = beta;
    let n = m.frames * g.rows * g.cols * g.cin;
    rec.dispatch(
        &CONV_DGRAD,
        &prm,
        &[grad, w, grad, grad, dst],
        u32_of(n.div_ceil(64), "workgroups")?,
    )
}
