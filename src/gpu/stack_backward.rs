//! The backward of the GPU recurrent stack: per layer (last first) and direction the
//! reversed recurrence, then the weight, bias and input gradients as GEMMs over all steps.
//! Weight gradients go to the layer's own gradient buffers ([`GpuWeights::params`]).

use ndarray::{Array1, Array3, ArrayView3};

use super::cell::{CellWeights, Rhs};
use super::stack::{GpuGrads, GpuTape, GpuWeights, array2, array3, flat, mask_offset, shape_of};
use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::gemm::{self, Mat, Out};
use crate::kernels::rec::{BwdBufs, u32_of};
use crate::kernels::rec_dropout;
use crate::kernels::{Phase, Recorder, buffers};

/// Device outputs of a recorded backward: dX `(T, B, I)`, dh0 `(L·D, B, P)`, dc0
/// `(L·D, B, H)` (a placeholder without a cell state).
pub(crate) struct DevGrads {
    pub dx: wgpu::Buffer,
    pub dh0: wgpu::Buffer,
    pub dc0: wgpu::Buffer,
}

/// Bytes of `n` f32s (offsets for copies).
fn by(n: usize) -> u64 {
    (n * 4) as u64
}

/// Records the backward pass from a training forward's tape. `dy_out` is time-major
/// `(T, B, D·P)`; `dy_h_n`/`dy_c_n` are zeros when `None`.
pub(crate) fn record_backward(
    rec: &mut Recorder<'_>,
    w: &GpuWeights,
    tape: &GpuTape,
    dy_out: Option<&wgpu::Buffer>,
    (dy_h_n, dy_c_n): (Option<&wgpu::Buffer>, Option<&wgpu::Buffer>),
) -> Result<DevGrads> {
    let ctx = rec.ctx();
    let (kind, d) = (w.kind, w.dims);
    let (t, b) = (tape.t, tape.b);
    let (h, p, dn, g) = (d.hidden_size, d.out_size(), d.directions(), kind.gates());
    let gd = kind.dgate_blocks() * h;
    let cells_n = d.cell_count();
    let i0 = d.input_size;
    let zeros = |what: &str, n: usize| buffers::zeros(ctx, what, n);
    let dy_buf = match dy_out {
        Some(dy) => dy.clone(),
        None => zeros("dy_out", t * b * dn * p)?,
    };
    let dyh = match dy_h_n {
        Some(v) => v.clone(),
        None => zeros("dy_h_n", cells_n * b * p)?,
    };
    let c_state = if kind.has_c() { b * h } else { 0 };
    let dyc = match dy_c_n {
        Some(v) => v.clone(),
        None => zeros("dy_c_n", (cells_n * c_state).max(1))?,
    };
    let dh0 = zeros("dh0", cells_n * b * p)?;
    let dc0 = zeros("dc0", (cells_n * c_state).max(1))?;
    let dx = zeros("dx", t * b * i0)?;
    // Recurrent dropout: one gate block's m ⊙ H_prev at a time, for its dW_hh rows.
    let masked_h = match tape.drop {
        Some(_) => Some(zeros("masked h_prev", t * b * p)?),
        None => None,
    };
    let ones_row = Mat {
        buf: &w.ones,
        off: 0,
        rs: 0,
        cs: 0,
    };

    // Gradient w.r.t. the output of the layer being processed (starts as dy_out).
    let mut d_out = dy_buf;
    for layer in (0..d.num_layers).rev() {
        let in_w = d.layer_input_size(layer);
        let d_in = if layer == 0 {
            dx.clone()
        } else {
            zeros("d_layer_input", t * b * in_w)?
        };
        let input = &tape.inputs[layer];
        // Per direction: the gradient buffers, then the reversed recurrences (both
        // directions in one dispatch when both ran Resident), then the GEMMs.
        let mut pend = Vec::with_capacity(dn);
        for dir in 0..dn {
            let ci = layer * dn + dir;
            let mut s = shape_of(w, t, b, dir);
            if tape.drop.is_some() {
                s.rmask = u32_of(mask_offset(ci, (g, b, p)), "mask offset")?;
            }
            let dgates = zeros("dgates", t * b * gd)?;
            let state = zeros("bwd state", b * p + c_state)?;
            // LSTM with projection: the total dh per step, for dW_hr. GRU: the forward's aux.
            let dhtot = if kind.has_c() {
                zeros("dhtot", if s.proj { t * b * p } else { 1 })?
            } else {
                tape.cells[ci].aux.clone()
            };
            rec.copy(&dyh, by(ci * b * p), &state, 0, by(b * p));
            if kind.has_c() {
                rec.copy(&dyc, by(ci * b * h), &state, by(b * p), by(b * h));
            }
            pend.push((s, dgates, state, dhtot));
        }
        let bufs: Vec<BwdBufs<'_>> = pend
            .iter()
            .enumerate()
            .map(|(dir, (_, dgates, state, dhtot))| {
                let ci = layer * dn + dir;
                let ct = &tape.cells[ci];
                BwdBufs {
                    gates: &ct.gates,
                    w_rec: &w.cells[ci].w_rec,
                    lens: &tape.lens,
                    seq: if kind.has_c() { &ct.cseq } else { &ct.hseq },
                    dy: &d_out,
                    dgates,
                    state,
                    aux: dhtot,
                }
            })
            .collect();
        rec.set_phase(Phase::Recurrence);
        let cts = &tape.cells[layer * dn..(layer + 1) * dn];
        cts.iter().for_each(|c| rec.note_algorithm(c.algo));
        if let ([(s0, ..), (s1, ..)], [c0, c1]) = (&pend[..], cts)
            && let Some(a) = kind.one_dispatch(ctx, [c0.algo, c1.algo], s0, true)
        {
            kind.record_backward_bi(rec, ([s0, s1], a), [&bufs[0], &bufs[1]])?;
        } else {
            for (dir, (s, ..)) in pend.iter().enumerate() {
                let at = (dn * p, dir * p);
                kind.record_backward(rec, s, cts[dir].algo, at, &bufs[dir])?;
            }
        }
        rec.set_phase(Phase::Dense);
        std::mem::drop(bufs);
        for (dir, (s, dgates, state, dhtot)) in pend.into_iter().enumerate() {
            let ci = layer * dn + dir;
            let (cell, ct) = (&w.cells[ci], &tape.cells[ci]);
            let gr = &cell.grads;
            let moff = mask_offset(ci, (g, b, p));
            rec.copy(&state, 0, &dh0, by(ci * b * p), by(b * p));
            if kind.has_c() {
                rec.copy(&state, by(b * p), &dc0, by(ci * b * h), by(b * h));
            }
            let rows = t * b;
            // dW_ih = dGᵀ·X and db_ih = Σ dG over the input-side gate columns.
            gemm::record(
                rec,
                (g * h, in_w, rows),
                1.0,
                Mat::rows_t(&dgates, 0, gd),
                Mat::rows(input, 0, in_w),
                0.0,
                Out {
                    buf: &gr.w_ih,
                    off: 0,
                    rs: in_w,
                },
                None,
            )?;
            gemm::record(
                rec,
                (1, g * h, rows),
                1.0,
                ones_row,
                Mat::rows(&dgates, 0, gd),
                0.0,
                Out {
                    buf: &gr.b_ih,
                    off: 0,
                    rs: g * h,
                },
                None,
            )?;
            // dW_hh by blocks: dG columns against H_prev (ring slot t + dir) or the aux rows.
            // Under recurrent dropout each gate block of h rows reads its own m_g ⊙ H_prev
            // (Keras: that block's matmul takes h_tm1 * rec_dp_mask[g]); the aux rows (GRU
            // reset-before r ⊙ m_n ⊙ h) were masked by the forward.
            for blk in kind.hh_blocks(h) {
                let split = match (&masked_h, blk.rhs) {
                    (Some(hm), Rhs::HPrev) => {
                        let v: Vec<_> = (0..blk.rows / h)
                            .map(|k| (blk.w_row + k * h, blk.dg_col + k * h, h, Some(hm)))
                            .collect();
                        v
                    }
                    _ => vec![(blk.w_row, blk.dg_col, blk.rows, None)],
                };
                for (w_row, dg_col, n_rows, hm) in split {
                    let rhs = match (hm, blk.rhs) {
                        (Some(hm), _) => {
                            let gate = w_row / h;
                            rec_dropout::masked_rows(
                                rec,
                                (&tape.lens, moff + gate * b * p),
                                (&ct.hseq, dir * b * p),
                                hm,
                                (t, b * p),
                            )?;
                            Mat::rows(hm, 0, p)
                        }
                        (None, Rhs::HPrev) => Mat::rows(&ct.hseq, dir * b * p, p),
                        (None, Rhs::Aux) => Mat::rows(&ct.aux, 0, h),
                    };
                    gemm::record(
                        rec,
                        (n_rows, p, rows),
                        1.0,
                        Mat::rows_t(&dgates, dg_col, gd),
                        rhs,
                        0.0,
                        Out {
                            buf: &gr.w_hh,
                            off: w_row * p,
                            rs: p,
                        },
                        None,
                    )?;
                }
                if kind.has_b_hh_grad() {
                    gemm::record(
                        rec,
                        (1, blk.rows, rows),
                        1.0,
                        ones_row,
                        Mat::rows(&dgates, blk.dg_col, gd),
                        0.0,
                        Out {
                            buf: &gr.b_hh,
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
                    rec,
                    (p, h, rows),
                    1.0,
                    Mat::rows_t(&dhtot, 0, p),
                    Mat::rows(&ct.aux, 0, h),
                    0.0,
                    Out {
                        buf: &gr.w_hr,
                        off: 0,
                        rs: h,
                    },
                    None,
                )?;
            }
            // dX += dG · W_ih (the two directions add into the same input gradient)
            gemm::record(
                rec,
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
        }
        d_out = d_in;
    }
    w.record_grad_export(rec)?;
    Ok(DevGrads { dx, dh0, dc0 })
}

/// Runs the backward pass on host arrays (upload, record, one submit, read back). `dy_c_n`
/// is required exactly for the LSTM.
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
    let cells_n = d.cell_count();
    let i0 = d.input_size;
    let dy_buf = buffers::upload(ctx, "dy_out", &flat(dy_out))?;
    let dyh = buffers::upload(ctx, "dy_h_n", &flat(dy_h_n))?;
    let dyc = match dy_c_n {
        Some(c) => Some(buffers::upload(ctx, "dy_c_n", &flat(c))?),
        None => None,
    };
    let mut rec = Recorder::new(ctx);
    let out = record_backward(&mut rec, w, tape, Some(&dy_buf), (Some(&dyh), dyc.as_ref()))?;
    let stats = rec.submit()?;

    let c_state = if kind.has_c() { b * h } else { 0 };
    let mut ranges = vec![
        (&out.dx, 0, t * b * i0),
        (&out.dh0, 0, cells_n * b * p),
        (&out.dc0, 0, cells_n * c_state),
    ];
    for (ci, cell) in w.cells.iter().enumerate() {
        let gr = &cell.grads;
        let in_w = d.layer_input_size(ci / dn);
        ranges.push((&gr.w_ih, 0, g * h * in_w));
        ranges.push((&gr.w_hh, 0, g * h * p));
        ranges.push((&gr.w_hr, 0, if d.proj_size > 0 { p * h } else { 0 }));
        ranges.push((&gr.b_ih, 0, g * h));
        ranges.push((&gr.b_hh, 0, g * h));
    }
    let mut got = buffers::read_f32(ctx, &ranges)?.into_iter();
    let mut next = || got.next().ok_or_else(|| Error::Device("read-back".into()));
    let dx = array3(next()?, (t, b, i0))?;
    let dh0 = array3(next()?, (cells_n, b, p))?;
    let dc_raw = next()?;
    let dc0: Option<Array3<f32>> = if kind.has_c() {
        Some(array3(dc_raw, (cells_n, b, h))?)
    } else {
        None
    };
    let mut cells = Vec::with_capacity(cells_n);
    for ci in 0..cells_n {
        let in_w = d.layer_input_size(ci / dn);
        let w_ih = array2(next()?, (g * h, in_w))?;
        let w_hh = array2(next()?, (g * h, p))?;
        let hr = next()?;
        let w_hr = if d.proj_size > 0 {
            Some(array2(hr, (p, h))?)
        } else {
            None
        };
        cells.push(CellWeights {
            w_ih,
            w_hh,
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
