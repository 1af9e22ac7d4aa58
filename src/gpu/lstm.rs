//! The GPU LSTM plan: per layer and direction, the input projection as one GEMM, the fused
//! recurrence, and in backward the reversed loop followed by weight/bias/input gradients as
//! GEMMs. One submit for the forward, one for the backward.

use ndarray::{Array1, Array2, Array3, ArrayView3};

use crate::algorithm::Algorithm;
use crate::context::Context;
use crate::cpu::lstm::{LstmCellParams, LstmDims, LstmGrads, LstmParams};
use crate::error::{Error, Result};
use crate::kernels::gemm::{self, Mat, Out};
use crate::kernels::lstm::{self as klstm, BwdBufs, FwdBufs, RecShape};
use crate::kernels::{RecordStats, Recorder, buffers};

/// One layer-direction's weights on the device.
pub(crate) struct GpuCell {
    /// `(4H, In)` row-major.
    w_ih: wgpu::Buffer,
    /// W_hh `(4H, P)` followed by W_hr `(P, H)` when projecting.
    w_rec: wgpu::Buffer,
    /// `b_ih + b_hh`, `(4H)`: the recurrence never needs them apart.
    bias: wgpu::Buffer,
}

/// All weights of an LSTM stack, uploaded once.
pub(crate) struct GpuLstmWeights {
    dims: LstmDims,
    cells: Vec<GpuCell>,
}

fn flat<T: Copy>(a: impl IntoIterator<Item = T>) -> Vec<T> {
    a.into_iter().collect()
}

impl GpuLstmWeights {
    pub fn upload(ctx: &Context, p: &LstmParams<f32>) -> Result<Self> {
        p.validate()?;
        let mut cells = Vec::with_capacity(p.cells.len());
        for c in &p.cells {
            let mut rec = flat(c.w_hh.iter().copied());
            if let Some(w) = &c.w_hr {
                rec.extend(w.iter().copied());
            }
            let bias: Vec<f32> = c.b_ih.iter().zip(&c.b_hh).map(|(a, b)| a + b).collect();
            cells.push(GpuCell {
                w_ih: buffers::upload(ctx, "w_ih", &flat(c.w_ih.iter().copied()))?,
                w_rec: buffers::upload(ctx, "w_rec", &rec)?,
                bias: buffers::upload(ctx, "bias", &bias)?,
            });
        }
        Ok(Self {
            dims: p.dims,
            cells,
        })
    }
}

/// What one layer-direction's forward saved for backward.
struct CellTape {
    gates: wgpu::Buffer,
    hseq: wgpu::Buffer,
    cseq: wgpu::Buffer,
    hraw: wgpu::Buffer,
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

/// Result of a GPU forward: outputs, the tape when training, and what was recorded.
pub(crate) struct GpuForward {
    pub out: Array3<f32>,
    pub h_n: Array3<f32>,
    pub c_n: Array3<f32>,
    pub tape: Option<GpuTape>,
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

fn to_vec3(a: ArrayView3<f32>) -> Vec<f32> {
    a.iter().copied().collect()
}

fn array3(v: Vec<f32>, shape: (usize, usize, usize)) -> Result<Array3<f32>> {
    Array3::from_shape_vec(shape, v).map_err(|e| Error::Shape(e.to_string()))
}

/// Runs the forward pass. `lengths` are already validated (all `T` when not packed).
pub(crate) fn forward(
    ctx: &Context,
    w: &GpuLstmWeights,
    x: ArrayView3<f32>,
    (h0, c0): (ArrayView3<f32>, ArrayView3<f32>),
    lengths: &[usize],
    algo: Algorithm,
    train: bool,
) -> Result<GpuForward> {
    let d = w.dims;
    let (t, b, _) = x.dim();
    let (h, p, dn) = (d.hidden_size, d.out_size(), d.directions());
    let cells_n = d.cell_count();
    let lens: Vec<u32> = lengths.iter().map(|&l| l as u32).collect();
    let lens = buffers::upload(ctx, "lengths", &lens)?;
    let x_buf = buffers::upload(ctx, "x", &to_vec3(x))?;
    let h0_buf = buffers::upload(ctx, "h0", &to_vec3(h0))?;
    let c0_buf = buffers::upload(ctx, "c0", &to_vec3(c0))?;
    let hn_buf = buffers::zeros(ctx, "h_n", cells_n * b * p)?;
    let cn_buf = buffers::zeros(ctx, "c_n", cells_n * b * h)?;
    let slots = if train { t + 1 } else { 2 };

    let mut rec = Recorder::new(ctx);
    let mut inputs = vec![x_buf];
    let mut cells = Vec::with_capacity(cells_n);
    let mut last_out = None;
    for layer in 0..d.num_layers {
        let in_w = d.layer_input_size(layer);
        let out = buffers::zeros(ctx, "out", t * b * dn * p)?;
        for dir in 0..dn {
            let ci = layer * dn + dir;
            let cell = &w.cells[ci];
            let s = shape_of(&d, t, b, dir);
            let algo = klstm::resolve(ctx, algo, &s, train)?;
            let gx = buffers::zeros(ctx, "gates", t * b * 4 * h)?;
            let input = inputs
                .last()
                .ok_or_else(|| Error::Device("no input".into()))?;
            gemm::record(
                &mut rec,
                (t * b, 4 * h, in_w),
                1.0,
                Mat::rows(input, 0, in_w),
                Mat::rows_t(&cell.w_ih, 0, in_w),
                0.0,
                Out {
                    buf: &gx,
                    off: 0,
                    rs: 4 * h,
                },
                Some((&cell.bias, 0)),
            )?;
            let hseq = buffers::zeros(ctx, "hseq", slots * b * p)?;
            let cseq = buffers::zeros(ctx, "cseq", slots * b * h)?;
            let hraw_rows = if train { t * b } else { b };
            let hraw = buffers::zeros(ctx, "hraw", if s.proj { hraw_rows * h } else { 1 })?;
            // State before the first processed step: slot (t_first + dir) % slots.
            let first = (if dir == 0 { 0 } else { t }) % slots;
            rec.copy(
                &h0_buf,
                (ci * b * p * 4) as u64,
                &hseq,
                (first * b * p * 4) as u64,
                (b * p * 4) as u64,
            );
            rec.copy(
                &c0_buf,
                (ci * b * h * 4) as u64,
                &cseq,
                (first * b * h * 4) as u64,
                (b * h * 4) as u64,
            );
            let bufs = FwdBufs {
                gx: &gx,
                w_rec: &cell.w_rec,
                lens: &lens,
                hseq: &hseq,
                cseq: &cseq,
                out: &out,
                hraw: &hraw,
            };
            klstm::record_forward(&mut rec, &s, algo, train, slots, (dn * p, dir * p), &bufs)?;
            let last = (if dir == 0 { t } else { 0 }) % slots;
            rec.copy(
                &hseq,
                (last * b * p * 4) as u64,
                &hn_buf,
                (ci * b * p * 4) as u64,
                (b * p * 4) as u64,
            );
            rec.copy(
                &cseq,
                (last * b * h * 4) as u64,
                &cn_buf,
                (ci * b * h * 4) as u64,
                (b * h * 4) as u64,
            );
            cells.push(CellTape {
                gates: gx,
                hseq,
                cseq,
                hraw,
                algo,
            });
        }
        if layer + 1 < d.num_layers {
            inputs.push(out);
        } else {
            last_out = Some(out);
        }
    }
    let stats = rec.submit()?;
    let out_buf = last_out.ok_or_else(|| Error::Config("num_layers is 0".into()))?;
    let mut got = buffers::read_f32(
        ctx,
        &[
            (&out_buf, 0, t * b * dn * p),
            (&hn_buf, 0, cells_n * b * p),
            (&cn_buf, 0, cells_n * b * h),
        ],
    )?
    .into_iter();
    let mut next = || got.next().ok_or_else(|| Error::Device("read-back".into()));
    let out = array3(next()?, (t, b, dn * p))?;
    let h_n = array3(next()?, (cells_n, b, p))?;
    let c_n = array3(next()?, (cells_n, b, h))?;
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
    db: wgpu::Buffer,
}

/// Runs the backward pass from a training forward's tape.
pub(crate) fn backward(
    ctx: &Context,
    w: &GpuLstmWeights,
    tape: &GpuTape,
    dy_out: ArrayView3<f32>,
    dy_h_n: ArrayView3<f32>,
    dy_c_n: ArrayView3<f32>,
) -> Result<(LstmGrads<f32>, RecordStats)> {
    let d = w.dims;
    let (t, b) = (tape.t, tape.b);
    let (h, p, dn) = (d.hidden_size, d.out_size(), d.directions());
    let cells_n = d.cell_count();
    let i0 = d.input_size;
    let dy_buf = buffers::upload(ctx, "dy_out", &to_vec3(dy_out))?;
    let dyh = buffers::upload(ctx, "dy_h_n", &to_vec3(dy_h_n))?;
    let dyc = buffers::upload(ctx, "dy_c_n", &to_vec3(dy_c_n))?;
    let dh0 = buffers::zeros(ctx, "dh0", cells_n * b * p)?;
    let dc0 = buffers::zeros(ctx, "dc0", cells_n * b * h)?;
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
            let dgates = buffers::zeros(ctx, "dgates", t * b * 4 * h)?;
            let state = buffers::zeros(ctx, "bwd state", b * p + b * h)?;
            let dhtot = buffers::zeros(ctx, "dhtot", if s.proj { t * b * p } else { 1 })?;
            rec.copy(&dyh, (ci * b * p * 4) as u64, &state, 0, (b * p * 4) as u64);
            rec.copy(
                &dyc,
                (ci * b * h * 4) as u64,
                &state,
                (b * p * 4) as u64,
                (b * h * 4) as u64,
            );
            let bufs = BwdBufs {
                gates: &ct.gates,
                w_rec: &cell.w_rec,
                lens: &tape.lens,
                cseq: &ct.cseq,
                dy: &d_out,
                dgates: &dgates,
                state: &state,
                dhtot: &dhtot,
            };
            klstm::record_backward(&mut rec, &s, ct.algo, (dn * p, dir * p), &bufs)?;
            rec.copy(&state, 0, &dh0, (ci * b * p * 4) as u64, (b * p * 4) as u64);
            rec.copy(
                &state,
                (b * p * 4) as u64,
                &dc0,
                (ci * b * h * 4) as u64,
                (b * h * 4) as u64,
            );

            let g = CellGradBufs {
                dw_ih: buffers::zeros(ctx, "dw_ih", 4 * h * in_w)?,
                dw_rec: buffers::zeros(ctx, "dw_rec", 4 * h * p + if s.proj { p * h } else { 0 })?,
                db: buffers::zeros(ctx, "db", 4 * h)?,
            };
            let rows = t * b;
            let dg_t = Mat::rows_t(&dgates, 0, 4 * h);
            // dW_ih = dGᵀ · X
            gemm::record(
                &mut rec,
                (4 * h, in_w, rows),
                1.0,
                dg_t,
                Mat::rows(input, 0, in_w),
                0.0,
                Out {
                    buf: &g.dw_ih,
                    off: 0,
                    rs: in_w,
                },
                None,
            )?;
            // dW_hh = dGᵀ · H_prev; H_prev of time t is hseq slot t + dir.
            gemm::record(
                &mut rec,
                (4 * h, p, rows),
                1.0,
                dg_t,
                Mat::rows(&ct.hseq, dir * b * p, p),
                0.0,
                Out {
                    buf: &g.dw_rec,
                    off: 0,
                    rs: p,
                },
                None,
            )?;
            if s.proj {
                // dW_hr = dhᵀ · H_raw
                gemm::record(
                    &mut rec,
                    (p, h, rows),
                    1.0,
                    Mat::rows_t(&dhtot, 0, p),
                    Mat::rows(&ct.hraw, 0, h),
                    0.0,
                    Out {
                        buf: &g.dw_rec,
                        off: 4 * h * p,
                        rs: h,
                    },
                    None,
                )?;
            }
            // db = Σ_rows dG (a 1×rows matrix of ones times dG)
            let ones_row = Mat {
                buf: &ones,
                off: 0,
                rs: 0,
                cs: 0,
            };
            gemm::record(
                &mut rec,
                (1, 4 * h, rows),
                1.0,
                ones_row,
                Mat::rows(&dgates, 0, 4 * h),
                0.0,
                Out {
                    buf: &g.db,
                    off: 0,
                    rs: 4 * h,
                },
                None,
            )?;
            // dX += dG · W_ih (the two directions add into the same input gradient)
            gemm::record(
                &mut rec,
                (rows, in_w, 4 * h),
                1.0,
                Mat::rows(&dgates, 0, 4 * h),
                Mat::rows(&cell.w_ih, 0, in_w),
                if dir == 0 { 0.0 } else { 1.0 },
                Out {
                    buf: &d_in,
                    off: 0,
                    rs: in_w,
                },
                None,
            )?;
            grads[ci] = Some(g);
        }
        d_out = d_in;
    }
    let stats = rec.submit()?;

    let mut ranges = vec![
        (&dx, 0, t * b * i0),
        (&dh0, 0, cells_n * b * p),
        (&dc0, 0, cells_n * b * h),
    ];
    for (ci, g) in grads.iter().enumerate() {
        let g = g
            .as_ref()
            .ok_or_else(|| Error::Device(format!("cell {ci} has no gradients")))?;
        let in_w = d.layer_input_size(ci / dn);
        ranges.push((&g.dw_ih, 0, 4 * h * in_w));
        ranges.push((
            &g.dw_rec,
            0,
            4 * h * p + if d.proj_size > 0 { p * h } else { 0 },
        ));
        ranges.push((&g.db, 0, 4 * h));
    }
    let mut got = buffers::read_f32(ctx, &ranges)?.into_iter();
    let mut next = || got.next().ok_or_else(|| Error::Device("read-back".into()));
    let dx = array3(next()?, (t, b, i0))?;
    let dh0 = array3(next()?, (cells_n, b, p))?;
    let dc0 = array3(next()?, (cells_n, b, h))?;
    let mut cells = Vec::with_capacity(cells_n);
    for ci in 0..cells_n {
        let in_w = d.layer_input_size(ci / dn);
        let w_ih = Array2::from_shape_vec((4 * h, in_w), next()?)
            .map_err(|e| Error::Shape(e.to_string()))?;
        let mut rec = next()?;
        let w_hr = if d.proj_size > 0 {
            let tail = rec.split_off(4 * h * p);
            Some(Array2::from_shape_vec((p, h), tail).map_err(|e| Error::Shape(e.to_string()))?)
        } else {
            None
        };
        let w_hh =
            Array2::from_shape_vec((4 * h, p), rec).map_err(|e| Error::Shape(e.to_string()))?;
        let db = Array1::from_vec(next()?);
        cells.push(LstmCellParams {
            w_ih,
            w_hh,
            b_ih: db.clone(),
            b_hh: db,
            w_hr,
        });
    }
    Ok((
        LstmGrads {
            dx,
            dh0,
            dc0,
            cells,
        },
        stats,
    ))
}
