//! The GPU plan of a recurrent stack, shared by LSTM, GRU and RNN: per layer and direction
//! the input projection as one GEMM over all steps, the cell's fused recurrence, and in
//! backward the reversed loop followed by weight, bias and input gradients as GEMMs.
//! One submit for the forward, one for the backward.

use ndarray::{Array2, Array3, ArrayView3};

use super::cell::CellWeights;
use crate::algorithm::Algorithm;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::gemm::{self, Mat, Out};
use crate::kernels::rec::{self, FwdBufs, RecShape};
use crate::kernels::workspace::Alloc;
use crate::kernels::{Phase, RecordStats, Recorder, buffers};

pub(crate) use super::params::GpuWeights;

/// What one layer-direction's forward saved for backward.
pub(crate) struct CellTape {
    pub(crate) gates: wgpu::Buffer,
    pub(crate) hseq: wgpu::Buffer,
    pub(crate) cseq: wgpu::Buffer,
    pub(crate) aux: wgpu::Buffer,
    pub(crate) algo: Algorithm,
}

/// Keras `recurrent_dropout` of one training forward: the drop rate and the seed this call's
/// masks were drawn from (see `shaders/rec_dropout.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RecDrop {
    pub rate: f32,
    pub seed: u64,
}

/// Where layer-direction `ci`'s masks `[G, B, P]` start in the `lens` buffer (u32 elements):
/// after the `B` lengths, one block of `G·B·P` per layer-direction.
pub(crate) fn mask_offset(ci: usize, (g, b, p): (usize, usize, usize)) -> usize {
    b + ci * g * b * p
}

/// Device buffers a training forward keeps for backward.
pub(crate) struct GpuTape {
    pub(crate) t: usize,
    pub(crate) b: usize,
    /// Lengths `(B)`, followed by the recurrent-dropout masks when `drop` is set.
    pub(crate) lens: wgpu::Buffer,
    /// The recurrent dropout this forward applied (`None`: none).
    pub(crate) drop: Option<RecDrop>,
    /// Input of each layer: x, then the output of every layer but the last.
    pub(crate) inputs: Vec<wgpu::Buffer>,
    pub(crate) cells: Vec<CellTape>,
}

/// Result of a GPU forward.
pub(crate) struct GpuForward {
    pub out: Array3<f32>,
    pub h_n: Array3<f32>,
    /// Final cell states (LSTM only).
    pub c_n: Option<Array3<f32>>,
    pub tape: Option<GpuTape>,
    pub stats: RecordStats,
}

/// Gradients from a GPU backward, in the generic cell layout.
pub(crate) struct GpuGrads {
    pub dx: Array3<f32>,
    pub dh0: Array3<f32>,
    pub dc0: Option<Array3<f32>>,
    pub cells: Vec<CellWeights>,
    pub stats: RecordStats,
}

pub(super) fn shape_of(w: &GpuWeights, t: usize, b: usize, dir: usize) -> RecShape {
    let d = &w.dims;
    RecShape {
        acts: w.acts,
        t,
        b,
        h: d.hidden_size,
        p: d.out_size(),
        proj: d.proj_size > 0,
        dir,
        rmask: 0,
    }
}

pub(super) fn flat(a: ArrayView3<f32>) -> Vec<f32> {
    a.iter().copied().collect()
}

pub(super) fn array3(v: Vec<f32>, shape: (usize, usize, usize)) -> Result<Array3<f32>> {
    Array3::from_shape_vec(shape, v).map_err(|e| Error::Shape(e.to_string()))
}

pub(super) fn array2(v: Vec<f32>, shape: (usize, usize)) -> Result<Array2<f32>> {
    Array2::from_shape_vec(shape, v).map_err(|e| Error::Shape(e.to_string()))
}

/// Bytes of `n` f32s (offsets for copies).
fn by(n: usize) -> u64 {
    (n * 4) as u64
}

/// Device inputs of a recorded forward: `x` time-major `(T, B, In)`; `h0`/`c0`
/// `(L·D, B, P)`/`(L·D, B, H)` (zeros when `None`); `lens` u32 `(B)` (all `T` when `None`).
pub(crate) struct FwdIn<'a> {
    pub x: &'a wgpu::Buffer,
    pub h0: Option<&'a wgpu::Buffer>,
    pub c0: Option<&'a wgpu::Buffer>,
    pub lens: Option<&'a wgpu::Buffer>,
}

/// Device outputs of a recorded forward: `out` `(T, B, D·P)`, `h_n`, `c_n` (a placeholder
/// without a cell state), and the tape of a training forward.
pub(crate) struct DevForward {
    pub out: wgpu::Buffer,
    pub h_n: wgpu::Buffer,
    pub c_n: wgpu::Buffer,
    pub tape: Option<GpuTape>,
}

/// Records the forward pass of the whole stack (after re-deriving the kernels' weight
/// layouts when the trainable tensors were handed out). A training forward with `drop`
/// draws fresh recurrent-dropout masks (one per gate block and layer-direction, Keras) and
/// applies them at every step; inference ignores `drop`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_forward(
    rec: &mut Recorder<'_>,
    al: &mut Alloc<'_>,
    w: &GpuWeights,
    inp: FwdIn<'_>,
    (t, b): (usize, usize),
    algo: Algorithm,
    train: bool,
    drop: Option<RecDrop>,
) -> Result<DevForward> {
    let ctx = rec.ctx();
    let (kind, d) = (w.kind, w.dims);
    let (h, p, dn, g) = (d.hidden_size, d.out_size(), d.directions(), kind.gates());
    let cells_n = d.cell_count();
    w.record_sync(rec)?;
    let lens = match inp.lens {
        Some(l) => l.clone(),
        None => al.upload(ctx, "lengths", &vec![t as u32; b])?,
    };
    let drop = drop.filter(|d| train && d.rate > 0.0);
    let lens = match drop {
        None => lens,
        Some(dr) => {
            // The masks follow the lengths in one buffer: the kernels read both through
            // their `lens` binding (the backward kernels have no binding left).
            let n = cells_n
                .checked_mul(g * b * p)
                .ok_or_else(|| Error::Limit("recurrent dropout masks overflow usize".into()))?;
            let packed = al.zeros(rec, "lengths + recurrent dropout masks", b + n)?;
            rec.copy(&lens, 0, &packed, 0, by(b));
            crate::kernels::rec_dropout::draw(rec, &packed, b, n, dr.rate, dr.seed)?;
            packed
        }
    };
    let h0_buf = match inp.h0 {
        Some(h0) => h0.clone(),
        None => al.zeros(rec, "h0", cells_n * b * p)?,
    };
    let c0_buf = match inp.c0 {
        Some(c) => c.clone(),
        None => al.zeros(rec, "c0", if kind.has_c() { cells_n * b * h } else { 1 })?,
    };
    let hn_buf = al.zeros(rec, "h_n", cells_n * b * p)?;
    let cn_buf = al.zeros(rec, "c_n", if kind.has_c() { cells_n * b * h } else { 1 })?;
    let slots = if train { t + 1 } else { 2 };

    // One snapshot of the measured Auto table for the whole call: every layer-direction
    // follows the same table even if another thread replaces it meanwhile.
    let table = ctx.auto_table();
    let mut inputs = vec![inp.x.clone()];
    let mut cells = Vec::with_capacity(cells_n);
    let mut last_out = None;
    for layer in 0..d.num_layers {
        let in_w = d.layer_input_size(layer);
        let out = al.zeros(rec, "out", t * b * dn * p)?;
        // Per direction: the input projection and the state rings, then the recurrences
        // (both directions in one dispatch when both run Resident), then the final states.
        let mut pend = Vec::with_capacity(dn);
        for dir in 0..dn {
            let ci = layer * dn + dir;
            let cell = &w.cells[ci];
            let mut s = shape_of(w, t, b, dir);
            if drop.is_some() {
                s.rmask = rec::u32_of(mask_offset(ci, (g, b, p)), "mask offset")?;
            }
            let algo = rec::resolve(
                ctx,
                (algo, table.as_deref()),
                &s,
                train,
                &kind.pool_need(&s),
            )?;
            rec.note_algorithm(algo);
            let gx = al.zeros(rec, "gates", t * b * g * h)?;
            let input = inputs
                .last()
                .ok_or_else(|| Error::Device("no layer input".into()))?;
            gemm::record(
                rec,
                (t * b, g * h, in_w),
                1.0,
                Mat::rows(input, 0, in_w),
                Mat::rows_t(&cell.w_ih, 0, in_w),
                0.0,
                Out {
                    buf: &gx,
                    off: 0,
                    rs: g * h,
                },
                Some((&cell.bias, 0)),
            )?;
            let hseq = al.zeros(rec, "hseq", slots * b * p)?;
            let cseq = al.zeros(rec, "cseq", if kind.has_c() { slots * b * h } else { 1 })?;
            let aux = al.zeros(rec, "aux", kind.forward_aux_len(&s, train))?;
            // State before the first processed step: slot (t_first + dir) % slots.
            let first = (if dir == 0 { 0 } else { t }) % slots;
            rec.copy(&h0_buf, by(ci * b * p), &hseq, by(first * b * p), by(b * p));
            if kind.has_c() {
                rec.copy(&c0_buf, by(ci * b * h), &cseq, by(first * b * h), by(b * h));
            }
            pend.push((
                s,
                CellTape {
                    gates: gx,
                    hseq,
                    cseq,
                    aux,
                    algo,
                },
            ));
        }
        let bufs: Vec<FwdBufs<'_>> = pend
            .iter()
            .enumerate()
            .map(|(dir, (_, c))| FwdBufs {
                gx: &c.gates,
                w_rec: &w.cells[layer * dn + dir].w_rec,
                lens: &lens,
                hseq: &c.hseq,
                cseq: &c.cseq,
                out: &out,
                aux: &c.aux,
            })
            .collect();
        rec.set_phase(Phase::Recurrence);
        if let [(s0, c0), (_, c1)] = &pend[..]
            && let Some(a) = kind.one_dispatch(ctx, [c0.algo, c1.algo], s0, false)
        {
            kind.record_forward_bi(rec, (s0, a), train, slots, [&bufs[0], &bufs[1]])?;
        } else {
            for (dir, (s, c)) in pend.iter().enumerate() {
                let at = (dn * p, dir * p);
                kind.record_forward(rec, s, c.algo, train, slots, at, &bufs[dir])?;
            }
        }
        rec.set_phase(Phase::Dense);
        std::mem::drop(bufs);
        for (dir, (_, c)) in pend.into_iter().enumerate() {
            let ci = layer * dn + dir;
            let last = (if dir == 0 { t } else { 0 }) % slots;
            rec.copy(
                &c.hseq,
                by(last * b * p),
                &hn_buf,
                by(ci * b * p),
                by(b * p),
            );
            if kind.has_c() {
                rec.copy(
                    &c.cseq,
                    by(last * b * h),
                    &cn_buf,
                    by(ci * b * h),
                    by(b * h),
                );
            }
            cells.push(c);
        }
        if layer + 1 < d.num_layers {
            inputs.push(out);
        } else {
            last_out = Some(out);
        }
    }
    let out = last_out.ok_or_else(|| Error::Config("num_layers is 0".into()))?;
    let tape = train.then_some(GpuTape {
        t,
        b,
        lens,
        drop,
        inputs,
        cells,
    });
    Ok(DevForward {
        out,
        h_n: hn_buf,
        c_n: cn_buf,
        tape,
    })
}

/// Runs the forward pass on host arrays (upload, record, one submit, read back).
/// `lengths` are already validated (all `T` when not packed); `c0` is required exactly for
/// the LSTM.
pub(crate) fn forward(
    ctx: &Context,
    w: &GpuWeights,
    x: ArrayView3<f32>,
    (h0, c0): (ArrayView3<f32>, Option<ArrayView3<f32>>),
    lengths: &[usize],
    algo: Algorithm,
    (train, drop): (bool, Option<RecDrop>),
) -> Result<GpuForward> {
    let (kind, d) = (w.kind, w.dims);
    let (t, b, _) = x.dim();
    let (h, p, dn) = (d.hidden_size, d.out_size(), d.directions());
    let cells_n = d.cell_count();
    let lens: Vec<u32> = lengths.iter().map(|&l| l as u32).collect();
    // Inference reuses the layer's workspace (unless another thread holds it); training
    // allocates, since the tape keeps its buffers.
    let mut guard = if train {
        None
    } else {
        w.workspace.try_lock().ok()
    };
    let mut al = match guard.as_deref_mut() {
        Some(ws) => {
            ws.begin();
            Alloc::Reuse(ws)
        }
        None => Alloc::Fresh,
    };
    let mut rec = Recorder::new(ctx);
    let lens = al.upload(ctx, "lengths", &lens)?;
    let x_buf = al.upload(ctx, "x", &flat(x))?;
    let h0_buf = al.upload(ctx, "h0", &flat(h0))?;
    let c0_buf = match c0 {
        Some(c) => Some(al.upload(ctx, "c0", &flat(c))?),
        None => None,
    };
    rec.restart_clock();
    let inp = FwdIn {
        x: &x_buf,
        h0: Some(&h0_buf),
        c0: c0_buf.as_ref(),
        lens: Some(&lens),
    };
    let f = record_forward(&mut rec, &mut al, w, inp, (t, b), algo, train, drop)?;
    let stats = match al {
        Alloc::Reuse(ws) => rec.submit_with(Some(ws))?,
        Alloc::Fresh => rec.submit()?,
    };
    let c_len = if kind.has_c() { cells_n * b * h } else { 0 };
    let mut got = buffers::read_f32(
        ctx,
        &[
            (&f.out, 0, t * b * dn * p),
            (&f.h_n, 0, cells_n * b * p),
            (&f.c_n, 0, c_len),
        ],
    )?
    .into_iter();
    let mut next = || got.next().ok_or_else(|| Error::Device("read-back".into()));
    let out = array3(next()?, (t, b, dn * p))?;
    let h_n = array3(next()?, (cells_n, b, p))?;
    let c_raw = next()?;
    let c_n = if kind.has_c() {
        Some(array3(c_raw, (cells_n, b, h))?)
    } else {
        None
    };
    Ok(GpuForward {
        out,
        h_n,
        c_n,
        tape: f.tape,
        stats,
    })
}
