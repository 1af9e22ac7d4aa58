//! Launchers for `shaders/conv.wgsl`: the ConvLSTM2D convolutions outside the time loop
//! (implicit-GEMM input convolution, weight gradients, input gradient).

use super::{Access, KernelDef, Recorder, Shader, buffers};
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
    split_len: u32,
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
const WGRAD_DIRECT: KernelDef = def("wgrad_direct");
const SPLIT_SUM: KernelDef = def("split_sum");

/// wgrad_direct splits the frames into at most this many partial sums: enough invocations
/// to fill a large GPU (9·Cin·F invocations per split) with small partial buffers.
const WGRAD_MAX_SPLITS: usize = 64;

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

/// The shaders index a tap as `i32(o·stride + k·dilation) - i32(pad)`: every such value
/// must fit in `i32`, or a wrapped index could land inside the frame (a wrong result instead
/// of padding). `Error::Limit` naming the axis otherwise.
fn check_tap_range(g: &ConvGeom) -> Result<()> {
    for (name, out, k, s, d, pad, len) in [
        (
            "rows",
            g.out_rows,
            g.kernel.0,
            g.strides.0,
            g.dilation.0,
            g.pad.0,
            g.rows,
        ),
        (
            "cols",
            g.out_cols,
            g.kernel.1,
            g.strides.1,
            g.dilation.1,
            g.pad.1,
            g.cols,
        ),
    ] {
        let reach = out
            .saturating_sub(1)
            .checked_mul(s)
            .and_then(|a| {
                k.saturating_sub(1)
                    .checked_mul(d)
                    .and_then(|b| a.checked_add(b))
            })
            .and_then(|r| r.checked_add(pad.max(len)));
        if reach.is_none_or(|r| r > i32::MAX as usize) {
            return Err(Error::Limit(format!(
                "convolution over {name}: output {out}, kernel {k}, stride {s}, dilation {d}, \
                 padding {pad} reach beyond {}, the largest index the shaders use (i32)",
                i32::MAX
            )));
        }
    }
    Ok(())
}

fn params(g: &ConvGeom, m: &FrameMap, cout: usize) -> Result<ConvParams> {
    check_tap_range(g)?;
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
        split_len: 0,
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
    wgrad_bias(rec, g, m, cout, src, grad, (dst, None), beta)
}

/// [`wgrad`], plus db[o] = Σ_m G[m, o] (+ beta·db) into `dst.1` when given.
///
/// dW is small (9·Cin × 4F for ConvLSTM2D) while the reduction runs over every output pixel
/// of every frame, so the tiled GEMM would put the whole sum on a few workgroups (measured on
/// lavapipe, B2 T10 32×32 F16: 490 ms for the recurrent kernel's gradient and 112 ms for the
/// bias as an M = 1 GEMM). The direct kernel spreads (k, 4 outputs, frame split) over
/// invocations and sums the splits after.
#[allow(clippy::too_many_arguments)]
pub(crate) fn wgrad_bias(
    rec: &mut Recorder<'_>,
    g: &ConvGeom,
    m: &FrameMap,
    cout: usize,
    src: &wgpu::Buffer,
    grad: &wgpu::Buffer,
    (dst, db): (&wgpu::Buffer, Option<&wgpu::Buffer>),
    beta: f32,
) -> Result<()> {
    let mut prm = params(g, m, cout)?;
    let kc = g.kernel.0 * g.kernel.1 * g.cin;
    let hw = g.out_rows * g.out_cols;
    let max_len = LOOP_BUDGET as usize / hw.max(1);
    if !cout.is_multiple_of(4) || max_len == 0 {
        // Rare shapes (cout not a multiple of 4, frames over the loop budget): tiled GEMM.
        let k = m.frames * hw;
        chunked(
            rec,
            &CONV_WGRAD,
            prm,
            &[src, src, grad, src, dst],
            k,
            tiles(kc, cout)?,
            beta,
        )?;
        return match db {
            Some(db) => bias_sum(rec, prm, m.frames * hw, cout, grad, db, beta),
            None => Ok(()),
        };
    }
    let splits = m
        .frames
        .min(WGRAD_MAX_SPLITS)
        .max(m.frames.div_ceil(max_len));
    let split_len = m.frames.div_ceil(splits);
    let splits = m.frames.div_ceil(split_len);
    let kq = kc + usize::from(db.is_some());
    let parts = buffers::zeros(rec.ctx(), "wgrad partials", splits * kq * cout)?;
    prm.split_len = u32_of(split_len, "frames per split")?;
    prm.has_bias = u32::from(db.is_some());
    let n = splits * kq * cout / 4;
    rec.dispatch(
        &WGRAD_DIRECT,
        &prm,
        &[src, src, grad, src, &parts],
        u32_of(n.div_ceil(64), "workgroups")?,
    )?;
    let mut sum = prm;
    sum.frames = u32_of(splits, "splits")?;
    sum.src_sb = u32_of(kq * cout, "split stride")?;
    sum.src_off = 0;
    sum.k_end = u32_of(kc * cout, "elements")?;
    sum.beta = beta;
    let sum_bufs = [&parts, &parts, &parts, &parts, dst];
    rec.dispatch(
        &SPLIT_SUM,
        &sum,
        &sum_bufs,
        u32_of((kc * cout).div_ceil(64), "workgroups")?,
    )?;
    if let Some(db) = db {
        sum.src_off = u32_of(kc * cout, "offset")?;
        sum.k_end = u32_of(cout, "elements")?;
        rec.dispatch(
            &SPLIT_SUM,
            &sum,
            &[&parts, &parts, &parts, &parts, db],
            u32_of(cout.div_ceil(64), "workgroups")?,
        )?;
    }
    Ok(())
}

/// db[o] = Σ_m G[m, o] (+ beta·db) as split_sums over the M rows of G, in chunks under the
/// loop budget that accumulate after the first.
fn bias_sum(
    rec: &mut Recorder<'_>,
    mut prm: ConvParams,
    rows: usize,
    cout: usize,
    grad: &wgpu::Buffer,
    db: &wgpu::Buffer,
    beta: f32,
) -> Result<()> {
    prm.src_sb = u32_of(cout, "cout")?;
    prm.k_end = u32_of(cout, "cout")?;
    let chunk = LOOP_BUDGET as usize;
    for r0 in (0..rows).step_by(chunk) {
        prm.frames = u32_of(chunk.min(rows - r0), "rows")?;
        prm.src_off = u32_of(r0 * cout, "offset")?;
        prm.beta = if r0 == 0 { beta } else { 1.0 };
        rec.dispatch(
            &SPLIT_SUM,
            &prm,
            &[grad, grad, grad, grad, db],
            u32_of(cout.div_ceil(64), "workgroups")?,
        )?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Context;

    /// Naive dW[k, o] and db[o] from the definitions (f64), for one geometry.
    fn reference(
        g: &ConvGeom,
        frames: usize,
        cout: usize,
        src: &[f32],
        grad: &[f32],
    ) -> (Vec<f64>, Vec<f64>) {
        let (kh, kw) = g.kernel;
        let mut dw = vec![0.0; kh * kw * g.cin * cout];
        let mut db = vec![0.0; cout];
        for n in 0..frames {
            for oy in 0..g.out_rows {
                for ox in 0..g.out_cols {
                    let m = (n * g.out_rows + oy) * g.out_cols + ox;
                    for o in 0..cout {
                        let gv = f64::from(grad[m * cout + o]);
                        db[o] += gv;
                        for a in 0..kh {
                            for c in 0..kw {
                                let iy = (oy * g.strides.0 + a * g.dilation.0) as isize
                                    - g.pad.0 as isize;
                                let ix = (ox * g.strides.1 + c * g.dilation.1) as isize
                                    - g.pad.1 as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= g.rows as isize
                                    || ix >= g.cols as isize
                                {
                                    continue;
                                }
                                for ch in 0..g.cin {
                                    let s = src[((n * g.rows + iy as usize) * g.cols
                                        + ix as usize)
                                        * g.cin
                                        + ch];
                                    dw[((a * kw + c) * g.cin + ch) * cout + o] += f64::from(s) * gv;
                                }
                            }
                        }
                    }
                }
            }
        }
        (dw, db)
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    /// Both wgrad paths (direct with frame splits for cout % 4 = 0, tiled GEMM + chunked bias
    /// sum otherwise) against the definition, including beta = 1 accumulation.
    #[test]
    fn weight_and_bias_gradients_match_the_definition() {
        let ctx = Context::new().expect("a wgpu adapter (lavapipe in CI) is required");
        for &(cout, frames) in &[(8usize, 70usize), (6, 5)] {
            let g = ConvGeom {
                rows: 5,
                cols: 6,
                cin: 2,
                out_rows: 5,
                out_cols: 6,
                kernel: (3, 2),
                strides: (1, 1),
                dilation: (1, 1),
                pad: (1, 0),
            };
            let map = FrameMap {
                frames,
                t_len: frames,
                sb: frames,
                st: 1,
                off: 0,
            };
            let src = values(frames * 5 * 6 * 2, 7);
            let grad = values(frames * 5 * 6 * cout, 11);
            let (dw_ref, db_ref) = reference(&g, frames, cout, &src, &grad);
            let src_b = buffers::upload(&ctx, "src", &src).unwrap();
            let grad_b = buffers::upload(&ctx, "grad", &grad).unwrap();
            let dw_b = buffers::upload(&ctx, "dw", &vec![1.0f32; dw_ref.len()]).unwrap();
            let db_b = buffers::upload(&ctx, "db", &vec![1.0f32; cout]).unwrap();
            let mut rec = Recorder::new(&ctx);
            wgrad_bias(
                &mut rec,
                &g,
                &map,
                cout,
                &src_b,
                &grad_b,
                (&dw_b, Some(&db_b)),
                1.0,
            )
            .unwrap();
            rec.submit().unwrap();
            let got =
                buffers::read_f32(&ctx, &[(&dw_b, 0, dw_ref.len()), (&db_b, 0, cout)]).unwrap();
            for (got, want) in got.iter().zip([&dw_ref, &db_ref]) {
                for (i, (&x, &r)) in got.iter().zip(want.iter()).enumerate() {
                    let r = r + 1.0; // beta = 1 onto the ones already there
                    assert!(
                        (f64::from(x) - r).abs() <= 1e-4 + 1e-4 * r.abs(),
                        "cout {cout}: element {i}: {x} vs {r}"
                    );
                }
            }
        }
    }
}
