//! The unfused baseline LSTM (benchmarks only): the same layer run the way ONNX Runtime's
//! WebGPU LSTM runs it — per step one GEMM and one dispatch per element-wise operation,
//! forward and BPTT — so the fused kernels' gain is measured, not assumed.

use ndarray::{Array1, Array2, Array3, ArrayView3};

use super::cell::CellKind;
use super::stack::{GpuWeights, array2, array3, flat};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::gemm::{self, Mat, Out};
use crate::kernels::{Phase, RecordStats, Recorder, buffers, unfused};

/// The unfused baseline's forward (benchmarks): one unidirectional LSTM layer without
/// projection, zero state; returns `out` `(T, B, H)`.
pub(crate) fn forward_unfused(
    ctx: &Context,
    w: &GpuWeights,
    x: ArrayView3<f32>,
) -> Result<(Array3<f32>, RecordStats)> {
    let (out, _, stats) = run_unfused(ctx, w, x, false)?;
    Ok((out, stats))
}

/// Gradients of the unfused baseline's forward+backward, in PyTorch layouts.
pub(crate) struct UnfusedResult {
    pub out: Array3<f32>,
    pub dx: Array3<f32>,
    pub dw_ih: Array2<f32>,
    pub dw_hh: Array2<f32>,
    /// d(b_ih) = d(b_hh).
    pub db: Array1<f32>,
    pub stats: RecordStats,
}

/// The unfused baseline's forward and BPTT in one submit, for L = ½·Σ out² (dL/dout = out,
/// the upstream gradient the benchmarks use).
pub(crate) fn forward_backward_unfused(
    ctx: &Context,
    w: &GpuWeights,
    x: ArrayView3<f32>,
) -> Result<UnfusedResult> {
    let (out, grads, stats) = run_unfused(ctx, w, x, true)?;
    let [dx, dw_ih, dw_hh, db] = grads.ok_or_else(|| Error::Device("no gradients".into()))?;
    let (t, b, i) = x.dim();
    let h = w.dims.hidden_size;
    Ok(UnfusedResult {
        out,
        dx: array3(dx, (t, b, i))?,
        dw_ih: array2(dw_ih, (4 * h, i))?,
        dw_hh: array2(dw_hh, (4 * h, h))?,
        db: Array1::from_vec(db),
        stats,
    })
}

type UnfusedRun = (Array3<f32>, Option<[Vec<f32>; 4]>, RecordStats);

fn run_unfused(
    ctx: &Context,
    w: &GpuWeights,
    x: ArrayView3<f32>,
    train: bool,
) -> Result<UnfusedRun> {
    let d = w.dims;
    if w.kind != CellKind::Lstm || d.num_layers != 1 || d.bidirectional || d.proj_size > 0 {
        return Err(Error::Unsupported(
            "the unfused baseline runs one unidirectional LSTM layer without projection".into(),
        ));
    }
    let (t, b, i) = x.dim();
    let h = d.hidden_size;
    let cell = &w.cells[0];
    let x_buf = buffers::upload(ctx, "x", &flat(x))?;
    let gx = buffers::zeros(ctx, "gates", t * b * 4 * h)?;
    let out = buffers::zeros(ctx, "out", t * b * h)?;
    let mut rec = Recorder::new(ctx);
    gemm::record(
        &mut rec,
        (t * b, 4 * h, i),
        1.0,
        Mat::rows(&x_buf, 0, i),
        Mat::rows_t(&cell.w_ih, 0, i),
        0.0,
        Out {
            buf: &gx,
            off: 0,
            rs: 4 * h,
        },
        Some((&cell.bias, 0)),
    )?;
    rec.set_phase(Phase::Recurrence);
    let tape = if train {
        Some(unfused::UnfusedTape::new(ctx, (t, b, h))?)
    } else {
        None
    };
    unfused::record_forward(
        ctx,
        &mut rec,
        (t, b, h),
        &gx,
        &cell.w_rec,
        &out,
        tape.as_ref(),
    )?;
    let grads = match &tape {
        Some(tape) => {
            let g = [
                buffers::zeros(ctx, "dx", t * b * i)?,
                buffers::zeros(ctx, "dW_ih", 4 * h * i)?,
                buffers::zeros(ctx, "dW_hh", 4 * h * h)?,
                buffers::zeros(ctx, "db", 4 * h)?,
            ];
            let bufs = unfused::UnfusedGrads {
                dx: &g[0],
                dw_ih: &g[1],
                dw_hh: &g[2],
                db: &g[3],
            };
            // W_hh is the first 4H·H block of w_rec (gpu::cell::CellKind::w_rec).
            let ws = (&x_buf, &cell.w_ih, &cell.w_rec);
            unfused::record_backward(ctx, &mut rec, (t, b, h, i), tape, ws, &out, &bufs)?;
            Some(g)
        }
        None => None,
    };
    let stats = rec.submit()?;
    let mut ranges = vec![(&out, 0, t * b * h)];
    if let Some(g) = &grads {
        let lens = [t * b * i, 4 * h * i, 4 * h * h, 4 * h];
        ranges.extend(g.iter().zip(lens).map(|(buf, n)| (buf, 0, n)));
    }
    let mut got = buffers::read_f32(ctx, &ranges)?.into_iter();
    let out = array3(got.next().unwrap_or_default(), (t, b, h))?;
    let grads = match grads {
        Some(_) => {
            let mut next = || got.next().ok_or_else(|| Error::Device("read-back".into()));
            Some([next()?, next()?, next()?, next()?])
        }
        None => None,
    };
    Ok((out, grads, stats))
}
