//! A recurrent stack's weights on the device, in three roles:
//! - **trainable** tensors, named as loaded: PyTorch's canonical layout (`weight_ih_l0` ...)
//!   or Keras' (`kernel` `(I, G·U)` with GRU gates z,r,h, `recurrent_kernel`, `bias`); an
//!   optimizer updates these in place;
//! - **canonical** tensors (PyTorch layout) the GEMMs read and the backward writes gradients
//!   of; for PyTorch-loaded layers these are the trainable tensors themselves;
//! - **derived** tensors the recurrence kernels read: `w_rec` (W_hh, then W_hr or b_hn, then
//!   W_hhᵀ) and the folded bias b_ih + b_hh (see [`CellKind::w_rec`]).
//!
//! Upload fills all three. Once [`GpuWeights::params`] has handed the trainable buffers out,
//! every recorded forward first re-derives the other two on the device (a few copies and
//! gathers per cell), so in-place updates take effect; every recorded backward ends by
//! writing the trainable tensors' gradients (for Keras names, gathered from the canonical
//! gradients).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::cell::{CellKind, CellWeights};
use crate::context::Context;
use crate::cpu::lstm::LstmDims;
use crate::error::Result;
use crate::kernels::tensor_ops::{self, Source};
use crate::kernels::workspace::Workspace;
use crate::kernels::{Recorder, buffers};
use crate::nn::ParamBuffer;
use crate::weights::WeightFormat;
use crate::weights::torch::torch_suffix;

/// Canonical gradient buffers of one layer-direction (overwritten by each backward).
pub(crate) struct CellGrads {
    pub w_ih: wgpu::Buffer,
    pub w_hh: wgpu::Buffer,
    pub b_ih: wgpu::Buffer,
    pub b_hh: wgpu::Buffer,
    /// `(P, H)` (LSTM projection; a 1-element placeholder otherwise).
    pub w_hr: wgpu::Buffer,
}

/// One layer-direction's weights on the device.
pub(crate) struct GpuCell {
    /// `(G·H, In)` row-major (canonical).
    pub(crate) w_ih: wgpu::Buffer,
    /// `(G·H, P)` (canonical).
    pub(crate) w_hh: wgpu::Buffer,
    pub(crate) b_ih: wgpu::Buffer,
    pub(crate) b_hh: wgpu::Buffer,
    /// `(P, H)` or a placeholder.
    pub(crate) w_hr: wgpu::Buffer,
    /// Recurrent weights in the layout the cell's shader reads (derived).
    pub(crate) w_rec: wgpu::Buffer,
    /// Bias added by the input projection (derived, see [`CellKind::folded_bias`]).
    pub(crate) bias: wgpu::Buffer,
    pub(crate) grads: CellGrads,
}

/// One trainable Keras tensor: its buffer, its gradient, and the index maps between it and
/// the canonical tensor it feeds (`to_canon[i]` = Keras index of canonical element `i`;
/// `from_canon[j]` = canonical index of Keras element `j`).
struct KerasTensor {
    name: &'static str,
    shape: Vec<usize>,
    param: wgpu::Buffer,
    grad: wgpu::Buffer,
    /// (canonical target, element count, Keras offset map) per canonical tensor fed.
    feeds: Vec<(Canon, wgpu::Buffer, usize)>,
    /// Pieces of the gradient: (canonical gradient, index map, count, offset in the grad).
    grad_from: Vec<(Canon, wgpu::Buffer, usize, usize)>,
}

/// A canonical tensor of cell 0 (Keras layers have exactly one cell).
#[derive(Clone, Copy, Debug)]
enum Canon {
    WIh,
    WHh,
    BIh,
    BHh,
}

/// All weights of a stack, uploaded once.
pub(crate) struct GpuWeights {
    pub(crate) kind: CellKind,
    pub(crate) dims: LstmDims,
    pub(crate) cells: Vec<GpuCell>,
    /// Buffers, arena and bind groups kept between inference calls (see [`Workspace`]); a
    /// training forward allocates afresh, its buffers live on in the tape.
    pub(crate) workspace: Mutex<Workspace>,
    /// A single 1.0: the left operand of bias column sums.
    pub(crate) ones: wgpu::Buffer,
    format: WeightFormat,
    bias: bool,
    keras: Vec<KerasTensor>,
    /// Set once the trainable buffers were handed out: forwards then re-derive.
    exposed: AtomicBool,
    /// The last all-`T` lengths buffer of the device path, by `(T, B)`: an unpacked
    /// training step then uploads nothing.
    full_lengths: Mutex<Option<((usize, usize), wgpu::Buffer)>>,
}

fn canon_buf(c: &GpuCell, which: Canon) -> &wgpu::Buffer {
    match which {
        Canon::WIh => &c.w_ih,
        Canon::WHh => &c.w_hh,
        Canon::BIh => &c.b_ih,
        Canon::BHh => &c.b_hh,
    }
}

fn canon_grad(c: &GpuCell, which: Canon) -> &wgpu::Buffer {
    match which {
        Canon::WIh => &c.grads.w_ih,
        Canon::WHh => &c.grads.w_hh,
        Canon::BIh => &c.grads.b_ih,
        Canon::BHh => &c.grads.b_hh,
    }
}

/// Keras stores GRU gate blocks z,r,h; canonical is r,z,n: swap the first two blocks of
/// width `u` (an involution). Identity for other cells.
fn gate_perm(kind: CellKind, u: usize) -> impl Fn(usize) -> usize {
    let gru = matches!(kind, CellKind::Gru { .. });
    move |r| {
        if !gru {
            r
        } else if r < u {
            r + u
        } else if r < 2 * u {
            r - u
        } else {
            r
        }
    }
}

fn u32s(v: impl Iterator<Item = usize>) -> Vec<u32> {
    v.map(|x| x as u32).collect()
}

impl GpuWeights {
    pub fn upload(
        ctx: &Context,
        kind: CellKind,
        dims: LstmDims,
        cells: &[CellWeights],
        format: WeightFormat,
        bias: bool,
    ) -> Result<Self> {
        let mut out = Vec::with_capacity(cells.len());
        for c in cells {
            let flat = |a: &ndarray::Array2<f32>| a.iter().copied().collect::<Vec<f32>>();
            let (gh, inp, p) = (c.w_ih.nrows(), c.w_ih.ncols(), c.w_hh.ncols());
            let hr_len = c.w_hr.as_ref().map_or(1, |w| w.len());
            out.push(GpuCell {
                w_ih: buffers::upload(ctx, "w_ih", &flat(&c.w_ih))?,
                w_hh: buffers::upload(ctx, "w_hh", &flat(&c.w_hh))?,
                b_ih: buffers::upload(ctx, "b_ih", &c.b_ih.to_vec())?,
                b_hh: buffers::upload(ctx, "b_hh", &c.b_hh.to_vec())?,
                w_hr: match &c.w_hr {
                    Some(w) => buffers::upload(ctx, "w_hr", &flat(w))?,
                    None => buffers::zeros(ctx, "no w_hr", 1)?,
                },
                w_rec: buffers::upload(ctx, "w_rec", &kind.w_rec(c))?,
                bias: buffers::upload(ctx, "bias", &kind.folded_bias(c))?,
                grads: CellGrads {
                    w_ih: buffers::zeros(ctx, "dw_ih", gh * inp)?,
                    w_hh: buffers::zeros(ctx, "dw_hh", gh * p)?,
                    b_ih: buffers::zeros(ctx, "db_ih", gh)?,
                    b_hh: buffers::zeros(ctx, "db_hh", gh)?,
                    w_hr: buffers::zeros(ctx, "dw_hr", hr_len)?,
                },
            });
        }
        let mut w = Self {
            kind,
            dims,
            cells: out,
            workspace: Mutex::default(),
            ones: buffers::upload(ctx, "ones", &[1.0f32])?,
            format,
            bias,
            keras: Vec::new(),
            exposed: AtomicBool::new(false),
            full_lengths: Mutex::default(),
        };
        if format == WeightFormat::Keras {
            w.keras = w.keras_tensors(ctx, cells)?;
        }
        Ok(w)
    }

    /// The Keras tensors of the one cell and their maps to and from the canonical layout.
    fn keras_tensors(&self, ctx: &Context, cells: &[CellWeights]) -> Result<Vec<KerasTensor>> {
        let kind = self.kind;
        let (i, u, g) = (self.dims.input_size, self.dims.hidden_size, kind.gates());
        let gu = g * u;
        let perm = gate_perm(kind, u);
        let export = crate::weights::keras::export(keras_cell(kind), self.bias, &cells[0], false)?;
        let up = |name: &str| -> Result<wgpu::Buffer> {
            let a = export
                .get(name)
                .map(|a| a.iter().copied().collect::<Vec<f32>>());
            buffers::upload(ctx, name, &a.unwrap_or_default())
        };
        // canonical W[r, c] (rows gu, cols n) = keras K[c, perm(r)] (rows n, cols gu)
        let matrix = |name: &'static str, n: usize, which: Canon| -> Result<KerasTensor> {
            let to = u32s((0..gu * n).map(|k| (k % n) * gu + perm(k / n)));
            let from = u32s((0..n * gu).map(|k| perm(k % gu) * n + k / gu));
            Ok(KerasTensor {
                name,
                shape: vec![n, gu],
                param: up(name)?,
                grad: buffers::zeros(ctx, name, n * gu)?,
                feeds: vec![(which, buffers::upload(ctx, "keras map", &to)?, gu * n)],
                grad_from: vec![(which, buffers::upload(ctx, "keras map", &from)?, n * gu, 0)],
            })
        };
        let mut v = vec![
            matrix("kernel", i, Canon::WIh)?,
            matrix("recurrent_kernel", u, Canon::WHh)?,
        ];
        if self.bias {
            let two = kind
                == CellKind::Gru {
                    reset_before: false,
                };
            let rows = if two { 2 } else { 1 };
            let map = |row: usize| u32s((0..gu).map(|r| row * gu + perm(r)));
            let back = u32s((0..gu).map(&perm));
            let mut feeds = vec![(Canon::BIh, buffers::upload(ctx, "keras map", &map(0))?, gu)];
            let back_buf = buffers::upload(ctx, "keras map", &back)?;
            let mut grad_from = vec![(Canon::BIh, back_buf.clone(), gu, 0)];
            if two {
                feeds.push((Canon::BHh, buffers::upload(ctx, "keras map", &map(1))?, gu));
                grad_from.push((Canon::BHh, back_buf, gu, gu));
            }
            v.push(KerasTensor {
                name: "bias",
                shape: if two { vec![2, gu] } else { vec![gu] },
                param: up("bias")?,
                grad: buffers::zeros(ctx, "bias", rows * gu)?,
                feeds,
                grad_from,
            });
        }
        Ok(v)
    }

    /// The trainable tensors and their gradient buffers, named as loaded. From now on every
    /// recorded forward re-derives the kernels' layouts from them.
    pub fn params(&self) -> Vec<ParamBuffer> {
        self.exposed.store(true, Ordering::Relaxed);
        if self.format == WeightFormat::Keras {
            return self
                .keras
                .iter()
                .map(|k| ParamBuffer {
                    name: k.name.into(),
                    param: k.param.clone(),
                    grad: k.grad.clone(),
                    shape: k.shape.clone(),
                })
                .collect();
        }
        let d = self.dims;
        let (h, p, g, dn) = (
            d.hidden_size,
            d.out_size(),
            self.kind.gates(),
            d.directions(),
        );
        let mut v = Vec::new();
        for (ci, c) in self.cells.iter().enumerate() {
            let sfx = torch_suffix(ci / dn, ci % dn);
            let inp = d.layer_input_size(ci / dn);
            let mut push = |base: &str, param: &wgpu::Buffer, grad: &wgpu::Buffer, shape| {
                v.push(ParamBuffer {
                    name: format!("{base}{sfx}"),
                    param: param.clone(),
                    grad: grad.clone(),
                    shape,
                })
            };
            push("weight_ih", &c.w_ih, &c.grads.w_ih, vec![g * h, inp]);
            push("weight_hh", &c.w_hh, &c.grads.w_hh, vec![g * h, p]);
            if self.bias {
                push("bias_ih", &c.b_ih, &c.grads.b_ih, vec![g * h]);
                push("bias_hh", &c.b_hh, &c.grads.b_hh, vec![g * h]);
            }
            if d.proj_size > 0 {
                push("weight_hr", &c.w_hr, &c.grads.w_hr, vec![p, h]);
            }
        }
        v
    }

    /// A u32 `(B)` buffer of `T`s (every sequence full length), kept for the next call.
    pub fn full_lengths(&self, ctx: &Context, t: usize, b: usize) -> Result<wgpu::Buffer> {
        let mut g = self
            .full_lengths
            .lock()
            .map_err(|_| crate::error::Error::Device("lengths cache poisoned".into()))?;
        if let Some((_, buf)) = g.as_ref().filter(|(k, _)| *k == (t, b)) {
            return Ok(buf.clone());
        }
        let buf = buffers::upload(ctx, "lengths", &vec![t as u32; b])?;
        *g = Some(((t, b), buf.clone()));
        Ok(buf)
    }

    /// Whether [`params`](Self::params) handed the trainable buffers out (they may have been
    /// updated in place since).
    pub fn was_exposed(&self) -> bool {
        self.exposed.load(Ordering::Relaxed)
    }

    /// Records the re-derivation of the canonical (Keras layers) and kernel layouts from the
    /// trainable tensors; nothing until [`params`](Self::params) handed them out.
    pub fn record_sync(&self, rec: &mut Recorder<'_>) -> Result<()> {
        if !self.exposed.load(Ordering::Relaxed) {
            return Ok(());
        }
        for k in &self.keras {
            for (which, map, n) in &k.feeds {
                let dst = canon_buf(&self.cells[0], *which);
                tensor_ops::gather(rec, &k.param, Source::Indexed(map), (dst, 0), *n, false)?;
            }
        }
        let (kind, d) = (self.kind, self.dims);
        let (h, p, g) = (d.hidden_size, d.out_size(), kind.gates());
        let ghp = g * h * p;
        for c in &self.cells {
            rec.copy(&c.w_hh, 0, &c.w_rec, 0, (ghp * 4) as u64);
            let extra = match kind {
                CellKind::Lstm if d.proj_size > 0 => {
                    rec.copy(&c.w_hr, 0, &c.w_rec, (ghp * 4) as u64, (p * h * 4) as u64);
                    p * h
                }
                CellKind::Gru { .. } => {
                    rec.copy(
                        &c.b_hh,
                        (2 * h * 4) as u64,
                        &c.w_rec,
                        (ghp * 4) as u64,
                        (h * 4) as u64,
                    );
                    h
                }
                _ => 0,
            };
            let tr = Source::Transpose {
                off: 0,
                rows: g * h,
                cols: p,
            };
            tensor_ops::gather(rec, &c.w_hh, tr, (&c.w_rec, ghp + extra), ghp, false)?;
            rec.copy(&c.b_ih, 0, &c.bias, 0, (g * h * 4) as u64);
            let n_start = match kind {
                CellKind::Gru { .. } => 2 * h,
                _ => g * h,
            };
            tensor_ops::gather(rec, &c.b_hh, Source::Offset(0), (&c.bias, 0), n_start, true)?;
        }
        Ok(())
    }

    /// Records the trainable tensors' gradients from the canonical ones a backward wrote
    /// (Keras layers only: PyTorch-named tensors are the canonical ones).
    pub fn record_grad_export(&self, rec: &mut Recorder<'_>) -> Result<()> {
        for k in &self.keras {
            for (which, map, n, off) in &k.grad_from {
                let src = canon_grad(&self.cells[0], *which);
                tensor_ops::gather(rec, src, Source::Indexed(map), (&k.grad, *off), *n, false)?;
            }
        }
        Ok(())
    }
}

fn keras_cell(kind: CellKind) -> crate::weights::keras::KerasCell {
    use crate::weights::keras::KerasCell;
    match kind {
        CellKind::Lstm => KerasCell::Lstm,
        CellKind::Gru { reset_before } => KerasCell::Gru {
            reset_after: !reset_before,
        },
        CellKind::Rnn { .. } => KerasCell::SimpleRnn,
    }
}
