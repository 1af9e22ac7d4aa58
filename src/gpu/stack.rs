//! The GPU plan of a recurrent stack, shared by LSTM, GRU and RNN: per layer and direction
//! the input projection as one GEMM over all steps, the cell's fused recurrence, and in
//! backward the reversed loop followed by weight, bias and input gradients as GEMMs.
//! One submit for the forward, one for the backward.

use ndarray::{Array1, Array2, Array3, ArrayView3};

use super::cell::{CellKind, CellWeights, Rhs};
use crate::algorithm::Algorithm;
use crate::context::Context;
use crate::cpu::lstm::LstmDims;
use crate::error::{Error, Result};
use crate::kernels::gemm::{self, Mat, Out};
use crate::kernels::rec::{self, BwdBufs, FwdBufs, RecShape};
use crate::kernels::workspace::{Alloc, Workspace};
use crate::kernels::{Phase, RecordStats, Recorder, buffers};
use std::sync::Mutex;

/// One layer-direction's weights on the device.
pub(crate) struct GpuCell {
    /// `(G·H, In)` row-major.
    pub(crate) w_ih: wgpu::Buffer,
    /// Recurrent weights in the layout the cell's shader reads (see [`CellKind::w_rec`]).
    pub(crate) w_rec: wgpu::Buffer,
    /// Bias added by the input projection (see [`CellKind::folded_bias`]).
    pub(crate) bias: wgpu::Buffer,
}

/// All weights of a stack, uploaded once.
pub(crate) struct GpuWeights {
    pub(crate) kind: CellKind,
    pub(crate) dims: LstmDims,
    pub(crate) cells: Vec<GpuCell>,
    /// Buffers, arena and bind groups kept between inference calls (see
    /// [`Workspace`]); a training forward allocates afresh, its buffers live on in the tape.
    pub(crate) workspace: Mutex<Workspace>,
}

impl GpuWeights {
    pub fn upload(
        ctx: &Context,
        kind: CellKind,
        dims: LstmDims,
        cells: &[CellWeights],
    ) -> Result<Self> {
        let mut out = Vec::with_capacity(cells.len());
        for c in cells {
            let w_ih: Vec<f32> = c.w_ih.iter().copied().collect();
            out.push(GpuCell {
                w_ih: buffers::upload(ctx, "w_ih", &w_ih)?,
                w_rec: buffers::upload(ctx, "w_rec", &kind.w_rec(c))?,
                bias: buffers::upload(ctx, "bias", &kind.folded_bias(c))?,
            });
        }
        Ok(Self {
            kind,
            dims,
            cells: out,
            workspace: Mutex::default(),
        })
    }
}

/// What one layer-direction's forward saved for backward.
struct CellTape {
    gates: wgpu::Buffer,
    hseq: wgpu::Buffer,
    cseq: wgpu::Buffer,
    aux: wgpu::Buffer,
    algo: Algorithm,
}

/// Device buffers a training forward keeps for backward.
pub(crate) struct GpuTape {
    t: usize,
    b: usize,
    lens: wgpu::Buffer,
    /// Input of each layer: x, then the output of every layer but the last.
    inputs: Vec<wgpu::Buffer>,
    cells: Vec<CellTape>,
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

fn shape_of(d: &LstmDims, t: usize, b: usize, dir: usize) -> RecShape {
    RecShape {
        t,
        b,
        h: d.hidden_size,
        p: d.out_size(),
        proj: d.proj_size > 0,
        dir,
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

/// Runs the forward pass. `lengths` are already validated (all `T` when not packed);
/// `c0` is required exactly for the LSTM.
pub(crate) fn forward(
    ctx: &Context,
    w: &GpuWeights,
    x: ArrayView3<f32>,
    (h0, c0): (ArrayView3<f32>, Option<ArrayView3<f32>>),
    lengths: &[usize],
    algo: Algorithm,
    train: bool,
) -> Result<GpuForward> {
    let (kind, d) = (w.kind, w.dims);
    let (t, b, _) = x.dim();
    let (h, p, dn, g) = (d.hidden_size, d.out_size(), d.directions(), kind.gates());
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
        Some(c) => al.upload(ctx, "c0", &flat(c))?,
        None => al.zeros(&mut rec, "no c0", 1)?,
    };
    let hn_buf = al.zeros(&mut rec, "h_n", cells_n * b * p)?;
    let cn_buf = al.zeros(
        &mut rec,
        "c_n",
        if kind.has_c() { cells_n * b * h } else { 1 },
    )?;
    rec.restart_clock();
    let slots = if train { t + 1 } else { 2 };

    let mut inputs = vec![x_buf];
    let mut cells = Vec::with_capacity(cells_n);
    let mut last_out = None;
    for layer in 0..d.num_layers {
        let in_w = d.layer_input_size(layer);
        let out = al.zeros(&mut rec, "out", t * b * dn * p)?;
        for dir in 0..dn {
            let ci = layer * dn + dir;
            let cell = &w.cells[ci];
            let s = shape_of(&d, t, b, dir);
            let algo = rec::resolve(ctx, algo, &s, train, &kind.pool_need(&s))?;
            let gx = al.zeros(&mut rec, "gates", t * b * g * h)?;
            let input = inputs
                .last()
                .ok_or_else(|| Error::Device("no layer input".into()))?;
            gemm::record(
                &mut rec,
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
            let hseq = al.zeros(&mut rec, "hseq", slots * b * p)?;
            let cseq = al.zeros(
                &mut rec,
                "cseq",
                if kind.has_c() { slots * b * h } else { 1 },
            )?;
            let aux = al.zeros(&mut rec, "aux", kind.forward_aux_len(&s, train))?;
            // State before the first processed step: slot (t_first + dir) % slots.
            let first = (if dir == 0 { 0 } else { t }) % slots;
            let last = (if dir == 0 { t } else { 0 }) % slots;
            rec.copy(&h0_buf, by(ci * b * p), &hseq, by(first * b * p), by(b * p));
            if kind.has_c() {
                rec.copy(&c0_buf, by(ci * b * h), &cseq, by(first * b * h), by(b * h));
            }
            let bufs = FwdBufs {
                gx: &gx,
                w_rec: &cell.w_rec,
                lens: &lens,
                hseq: &hseq,
                cseq: &cseq,
                out: &out,
                aux: &aux,
            };
            rec.set_phase(Phase::Recurrence);
            kind.record_forward(&mut rec, &s, algo, train, slots, (dn * p, dir * p), &bufs)?;
            rec.set_phase(Phase::Dense);
            rec.copy(&hseq, by(last * b * p), &hn_buf, by(ci * b * p), by(b * p));
            if kind.has_c() {
                rec.copy(&cseq, by(last * b * h), &cn_buf, by(ci * b * h), by(b * h));
            }
            cells.push(CellTape {
                gates: gx,
                hseq,
                cseq,
                aux,
                algo,
            });
        }
        if layer + 1 < d.num_layers {
            inputs.push(out);
        } else {
            last_out = Some(out);
        }
    }
    let stats = match al {
        Alloc::Reuse(ws) => rec.submit_with(Some(ws))?,
        Alloc::Fresh => rec.submit()?,
    };
    let out_buf = last_out.ok_or_else(|| Error::Config("num_layers is 0".into()))?;
    let c_len = if kind.has_c() { cells_n * b * h } else { 0 };
    let mut got = buffers::read_f32(
        ctx,
        &[
            (&out_buf, 0, t * b * dn * p),
            (&hn_buf, 0, cells_n * b * p),
            (&cn_buf, 0, c_len),
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
    let tape = train.then_some(GpuTape {
        t,
        b,
        lens,
        inputs,
        cells,
    });
    Ok(GpuForward {
        out,
        h_n,
        c_n,
        tape,
        stats,
    })
}

/// Gradient buffers of one layer-direction.
struct CellGradBufs {
    dw_ih: wgpu::Buffer,
    dw_rec: wgpu::Buffer,
    db_ih: wgpu::Buffer,
    db_hh: wgpu::Buffer,
}

/// Runs the backward pass from a training forward's tape. `dy_c_n` is required exactly for
/// the LSTM.
pub(crate) fn backward(
    ctx: &Context,
    w: &GpuWeights,
    tape: &GpuTape,
    dy_out: ArrayView3<f32>,
    dy_h_n: ArrayView3<f32>,
    dy_c_n: Option<ArrayView3<f32>>,
) -> Result<GpuGrads> {
    let (kind, d) = (w.kind, w.dims);
    let (t, b) = (tape.t, tape.b);
    let (h, p, dn, g) = (d.hidden_size, d.out_size(), d.directions(), kind.gates());
    let gd = kind.dgate_blocks() * h;
    let cells_n = d.cell_count();
    let i0 = d.input_size;
    let dy_buf = buffers::upload(ctx, "dy_out", &flat(dy_out))?;
    let dyh = buffers::upload(ctx, "dy_h_n", &flat(dy_h_n))?;
    let dyc = match dy_c_n {
        Some(c) => buffers::upload(ctx, "dy_c_n", &flat(c))?,
        None => buffers::zeros(ctx, "no dy_c_n", 1)?,
    };
    let c_state = if kind.has_c() { b * h } else { 0 };
    let dh0 = buffers::zeros(ctx, "dh0", cells_n * b * p)?;
    let dc0 = buffers::zeros(ctx, "dc0", (cells_n * c_state).max(1))?;
    let dx = buffers::zeros(ctx, "dx", t * b * i0)?;
    let ones = buffers::upload(ctx, "ones", &[1.0f32])?;
    let mut grads: Vec<Option<CellGradBufs>> = (0..cells_n).map(|_| None).collect();

    let mut rec = Recorder::new(ctx);
    // Gradient w.r.t. the output of the layer being processed (starts as dy_out).
    let mut d_out = dy_buf;
    for layer in (0..d.num_layers).rev() {
        let in_w = d.layer_input_size(layer);
        let d_in = if layer == 0 {
            dx.clone()
        } else {
            buffers::zeros(ctx, "d_layer_input", t * b * in_w)?
        };
        let input = &tape.inputs[layer];
        for dir in 0..dn {
            let ci = layer * dn + dir;
            let (cell, ct) = (&w.cells[ci], &tape.cells[ci]);
            let s = shape_of(&d, t, b, dir);
            let dgates = buffers::zeros(ctx, "dgates", t * b * gd)?;
            let state = buffers::zeros(ctx, "bwd state", b * p + c_state)?;
            // LSTM with projection: the total dh per step, for dW_hr. GRU: the forward's aux.
            let dhtot = if kind.has_c() {
                buffers::zeros(ctx, "dhtot", if s.proj { t * b * p } else { 1 })?
            } else {
                ct.aux.clone()
            };
            rec.copy(&dyh, by(ci * b * p), &state, 0, by(b * p));
            if kind.has_c() {
                rec.copy(&dyc, by(ci * b * h), &state, by(b * p), by(b * h));
            }
            let bufs = BwdBufs {
                gates: &ct.gates,
                w_rec: &cell.w_rec,
                lens: &tape.lens,
                seq: if kind.has_c() { &ct.cseq } else { &ct.hseq },
                dy: &d_out,
                dgates: &dgates,
                state: &state,
                aux: &dhtot,
            };
            rec.set_phase(Phase::Recurrence);
            kind.record_backward(&mut rec, &s, ct.algo, (dn * p, dir * p), &bufs)?;
            rec.set_phase(Phase::Dense);
            rec.copy(&state, 0, &dh0, by(ci * b * p), by(b * p));
            if kind.has_c() {
                rec.copy(&state, by(b * p), &dc0, by(ci * b * h), by(b * h));
            }

            let gb = CellGradBufs {
                dw_ih: buffers::zeros(ctx, "dw_ih", g * h * in_w)?,
                dw_rec: buffers::zeros(ctx, "dw_rec", g * h * p + if s.proj { p * h } else { 0 })?,
                db_ih: buffers::zeros(ctx, "db_ih", g * h)?,
                db_hh: buffers::zeros(ctx, "db_hh", g * h)?,
            };
            let rows = t * b;
            let ones_row = Mat {
                buf: &ones,
                off: 0,
                rs: 0,
                cs: 0,
            };
            // dW_ih = dGᵀ·X and db_ih = Σ dG over the input-side gate columns.
            gemm::record(
                &mut rec,
                (g * h, in_w, rows),
                1.0,
                Mat::rows_t(&dgates, 0, gd),
                Mat::rows(input, 0, in_w),
                0.0,
                Out {
                    buf: &gb.dw_ih,
                    off: 0,
                    rs: in_w,
                },
                None,
            )?;
            gemm::record(
                &mut rec,
                (1, g * h, rows),
                1.0,
                ones_row,
                Mat::rows(&dgates, 0, gd),
                0.0,
                Out {
                    buf: &gb.db_ih,
                    off: 0,
                    rs: g * h,
                },
                None,
            )?;
            // dW_hh by blocks: dG columns against H_prev (ring slot t + dir) or the aux rows.
            for blk in kind.hh_blocks(h) {
                let rhs = match blk.rhs {
                    Rhs::HPrev => Mat::rows(&ct.hseq, dir * b * p, p),
                    Rhs::Aux => Mat::rows(&ct.aux, 0, h),
                };
                gemm::record(
                    &mut rec,
                    (blk.rows, p, rows),
                    1.0,
                    Mat::rows_t(&dgates, blk.dg_col, gd),
                    rhs,
                    0.0,
                    Out {
                        buf: &gb.dw_rec,
                        off: blk.w_row * p,
                        rs: p,
                    },
                    None,
                )?;
                if kind.has_b_hh_grad() {
                    gemm::record(
                        &mut rec,
                        (1, blk.rows, rows),
                        1.0,
                        ones_row,
                        Mat::rows(&dgates, blk.dg_col, gd),
                        0.0,
                        Out {
                            buf: &gb.db_hh,
                            off: blk.w_row,
                            rs: g * h,
                        },
                        None,
                    )?;
                }
            }
            if s.proj {
                // dW_hr = dhᵀ · H_raw
                gemm::record(
                    &mut rec,
                    (p, h, rows),
                    1.0,
                    Mat::rows_t(&dhtot, 0, p),
                    Mat::rows(&ct.aux, 0, h),
                    0.0,
                    Out {
                        buf: &gb.dw_rec,
                        off: g * h * p,
                        rs: h,
                    },
                    None,
                )?;
            }
            // dX += dG · W_ih (the two directions add into the same input gradient)
            gemm::record(
                &mut rec,
                (rows, in_w, g * h),
                1.0,
                Mat::rows(&dgates, 0, gd),
                Mat::rows(&cell.w_ih, 0, in_w),
                if dir == 0 { 0.0 } else { 1.0 },
                Out {
                    buf: &d_in,
                    off: 0,
                    rs: in_w,
                },
                None,
            )?;
            grads[ci] = Some(gb);
        }
        d_out = d_in;
    }
    let stats = rec.submit()?;

    let mut ranges = vec![
        (&dx, 0, t * b * i0),
        (&dh0, 0, cells_n * b * p),
        (&dc0, 0, cells_n * c_state),
    ];
    for (ci, gb) in grads.iter().enumerate() {
        let gb = gb
            .as_ref()
            .ok_or_else(|| Error::Device(format!("cell {ci} has no gradients")))?;
        let in_w = d.layer_input_size(ci / dn);
        ranges.push((&gb.dw_ih, 0, g * h * in_w));
        ranges.push((
            &gb.dw_rec,
            0,
            g * h * p + if d.proj_size > 0 { p * h } else { 0 },
        ));
        ranges.push((&gb.db_ih, 0, g * h));
        ranges.push((&gb.db_hh, 0, g * h));
    }
    let mut got = buffers::read_f32(ctx, &ranges)?.into_iter();
    let mut next = || got.next().ok_or_else(|| Error::Device("read-back".into()));
    let dx = array3(next()?, (t, b, i0))?;
    let dh0 = array3(next()?, (cells_n, b, p))?;
    let dc_raw = next()?;
    let dc0 = if kind.has_c() {
        Some(array3(dc_raw, (cells_n, b, h))?)
    } else {
        None
    };
    let mut cells = Vec::with_capacity(cells_n);
    for ci in 0..cells_n {
        let in_w = d.layer_input_size(ci / dn);
        let w_ih = array2(next()?, (g * h, in_w))?;
        let mut wr = next()?;
        let w_hr = if d.proj_size > 0 {
            let tail = wr.split_off(g * h * p);
            Some(array2(tail, (p, h))?)
        } else {
            None
        };
        cells.push(CellWeights {
            w_ih,
            w_hh: array2(wr, (g * h, p))?,
            b_ih: Array1::from_vec(next()?),
            b_hh: Array1::from_vec(next()?),
            w_hr,
        });
    }
    Ok(GpuGrads {
        dx,
        dh0,
        dc0,
        cells,
        stats,
    })
}
