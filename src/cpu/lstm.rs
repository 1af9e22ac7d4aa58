//! CPU reference LSTM with PyTorch `nn.LSTM` semantics: parameter containers, the forward
//! pass, and the tape the backward pass (in `lstm_backward.rs`) consumes.
//!
//! Layouts follow PyTorch with `batch_first=False` (see `CONVENTIONS.md` §1): `x` is
//! `(T, B, I)`, states are `(L·D, B, ·)` with row `layer·D + direction`, and `out` is
//! `(T, B, D·H_out)` with the forward half first. Gates are row blocks `i, f, g, o` of size H.
//!
//! Internally every sequence tensor is kept as a 2-D `(T·B, features)` matrix whose row
//! `t·B + b` is time `t`, batch `b`. That makes one time step a contiguous block of `B` rows,
//! and lets the input projection and the weight gradients be single large matmuls.

use ndarray::{Array1, Array2, Array3, ArrayView2, ArrayView3, Axis, Zip, s};

use super::common::{
    Filler, Walk, cast_array, cast_cell, check_cells, check_shape, check_x_h0, from_rows,
    impl_cell_core, resolve_lengths, to_rows, torch_suffix, zero_cell,
};
use super::real::{Real, sigmoid, tanh};
use crate::error::{Error, Result};
use crate::limits;

pub use super::lstm_backward::{lstm_backward, lstm_loss};

/// Sizes of an LSTM stack, PyTorch semantics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LstmDims {
    /// Features of `x` (`I`), the input of layer 0.
    pub input_size: usize,
    /// Cell size `H`: the width of each gate block and of `c`.
    pub hidden_size: usize,
    /// Projection size `P`; 0 means no projection (then `h` has size `H`).
    pub proj_size: usize,
    /// Number of stacked layers `L`.
    pub num_layers: usize,
    /// Whether each layer also runs a reverse-time direction (`D = 2`).
    pub bidirectional: bool,
}

impl LstmDims {
    /// Number of directions `D`: 2 if bidirectional, else 1.
    pub fn directions(&self) -> usize {
        if self.bidirectional { 2 } else { 1 }
    }

    /// `H_out`, the size of `h` and of each direction's output: `proj_size` if it is
    /// non-zero, else `hidden_size`.
    pub fn out_size(&self) -> usize {
        if self.proj_size > 0 {
            self.proj_size
        } else {
            self.hidden_size
        }
    }

    /// Input features of `layer`: `input_size` for layer 0, else `D·H_out` because deeper
    /// layers read the concatenated outputs of both directions of the layer below.
    pub fn layer_input_size(&self, layer: usize) -> usize {
        if layer == 0 {
            self.input_size
        } else {
            self.directions() * self.out_size()
        }
    }

    /// Checks that every size is non-zero (except `proj_size`, where 0 means "none") and that
    /// `proj_size < hidden_size`, which PyTorch requires (`Error::Config` otherwise), and that
    /// the LSTM's parameters fit the host-memory cap (`Error::Limit`, see [`crate::limits`]).
    pub fn validate(&self) -> Result<()> {
        self.validate_cell(4)
    }

    /// [`validate`](Self::validate) for a cell with `gates` row blocks of size H (4 for the
    /// LSTM, 3 for GRU, 1 for the Elman RNN): the size of its parameters is checked with
    /// overflow-checked arithmetic against the host-memory cap before anything is allocated.
    pub fn validate_cell(&self, gates: usize) -> Result<()> {
        self.validate_sizes()?;
        let floats = self.param_count(gates).map_err(|e| {
            Error::Limit(format!(
                "input_size {}, hidden_size {}, proj_size {}, num_layers {}: {}",
                self.input_size,
                self.hidden_size,
                self.proj_size,
                self.num_layers,
                e.to_string().trim_start_matches("limit exceeded: ")
            ))
        })?;
        limits::check_host_f32(
            &format!(
                "{} layer(s) x {} direction(s) of parameters ({floats} floats: input_size {}, \
                 hidden_size {}, {gates} gate(s))",
                self.num_layers,
                self.directions(),
                self.input_size,
                self.hidden_size
            ),
            floats,
        )
    }

    /// Number of parameters of the whole stack for a cell with `gates` row blocks
    /// (`Error::Limit` when it overflows `usize`).
    pub fn param_count(&self, gates: usize) -> Result<usize> {
        let what = "parameter count";
        let g = limits::count(what, &[gates, self.hidden_size])?;
        let proj = limits::count(what, &[self.proj_size, self.hidden_size])?;
        let mut total = 0usize;
        for layer in 0..self.num_layers.min(2) {
            let cols = limits::sum(
                what,
                &[self.layer_input_size_checked(layer)?, self.out_size(), 2],
            )?;
            let cell = limits::sum(what, &[limits::count(what, &[g, cols])?, proj])?;
            // Layers 1.. all have the same size: count layer 1 once, times num_layers - 1.
            let layers = if layer == 0 { 1 } else { self.num_layers - 1 };
            let n = limits::count(what, &[cell, layers, self.directions()])?;
            total = limits::sum(what, &[total, n])?;
        }
        Ok(total)
    }

    /// `layer_input_size` with the `D·H_out` product checked.
    fn layer_input_size_checked(&self, layer: usize) -> Result<usize> {
        if layer == 0 {
            Ok(self.input_size)
        } else {
            limits::count("layer input size", &[self.directions(), self.out_size()])
        }
    }

    fn validate_sizes(&self) -> Result<()> {
        for (name, v) in [
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
        ] {
            if v == 0 {
                return Err(Error::Config(format!("{name} is 0; it must be at least 1")));
            }
        }
        if self.proj_size >= self.hidden_size && self.proj_size > 0 {
            return Err(Error::Config(format!(
                "proj_size {} must be smaller than hidden_size {} (or 0 for no projection)",
                self.proj_size, self.hidden_size
            )));
        }
        Ok(())
    }

    /// Number of layer-directions, i.e. `L·D`, the length of `LstmParams::cells`.
    pub fn cell_count(&self) -> usize {
        self.num_layers * self.directions()
    }

    /// PyTorch state_dict suffix of a cell, e.g. `l1_reverse`, so errors name tensors the
    /// way users see them in checkpoints.
    pub(crate) fn suffix(&self, cell: usize) -> String {
        torch_suffix(self, cell)
    }

    /// Expected shape of each cell's `w_hr`: `(P, H)` when projecting, else none.
    fn hr_shape(&self) -> Option<[usize; 2]> {
        (self.proj_size > 0).then_some([self.proj_size, self.hidden_size])
    }
}

/// One layer-direction's parameters, PyTorch layout, gate order i,f,g,o as row blocks of size H.
#[derive(Clone, Debug, PartialEq)]
pub struct LstmCellParams<T> {
    /// `weight_ih_l{k}`: `(4H, In)`, applied as `x W_ih^T`.
    pub w_ih: Array2<T>,
    /// `weight_hh_l{k}`: `(4H, H_out)`, applied as `h W_hh^T`.
    pub w_hh: Array2<T>,
    /// `bias_ih_l{k}`: `(4H)`.
    pub b_ih: Array1<T>,
    /// `bias_hh_l{k}`: `(4H)`. Kept separate from `b_ih` to mirror PyTorch checkpoints,
    /// although only their sum matters.
    pub b_hh: Array1<T>,
    /// `weight_hr_l{k}`: `(P, H)`, present iff `proj_size > 0`.
    pub w_hr: Option<Array2<T>>,
}

impl_cell_core!(LstmCellParams, w_hr: None);

/// All parameters of an LSTM stack.
#[derive(Clone, Debug, PartialEq)]
pub struct LstmParams<T> {
    /// The sizes these parameters were made for.
    pub dims: LstmDims,
    /// One entry per layer-direction, index `layer·D + direction`.
    pub cells: Vec<LstmCellParams<T>>,
}

impl<T: Real> LstmParams<T> {
    /// All-zero parameters of the right shapes (`Error::Config` if `dims` is invalid).
    pub fn zeros(dims: LstmDims) -> Result<Self> {
        dims.validate()?;
        let cells = (0..dims.cell_count())
            .map(|cell| LstmCellParams {
                w_hr: dims.hr_shape().map(Array2::zeros),
                ..zero_cell(&dims, cell, 4)
            })
            .collect();
        Ok(Self { dims, cells })
    }

    /// Checks `dims` and every tensor's shape. Errors name the tensor by its PyTorch name
    /// (e.g. `weight_hh_l1_reverse`) and give the expected and actual shapes.
    pub fn validate(&self) -> Result<()> {
        let d = self.dims;
        d.validate()?;
        check_cells(&d, 4, &self.cells, |i, c| {
            let sfx = d.suffix(i);
            match (d.hr_shape(), &c.w_hr) {
                (Some(e), Some(w)) => check_shape(&format!("weight_hr_{sfx}"), w.shape(), &e)?,
                (None, None) => {}
                (Some(e), None) => {
                    return Err(Error::Shape(format!(
                        "weight_hr_{sfx} is missing; proj_size is {} so it must be {e:?}",
                        d.proj_size
                    )));
                }
                (None, Some(w)) => {
                    return Err(Error::Shape(format!(
                        "weight_hr_{sfx} is present (shape {:?}) but proj_size is 0",
                        w.shape()
                    )));
                }
            }
            Ok(())
        })
    }

    /// Converts every tensor to another scalar type (e.g. an `f64` reference to `f32`).
    pub fn cast<U: Real>(&self) -> LstmParams<U> {
        LstmParams {
            dims: self.dims,
            cells: self
                .cells
                .iter()
                .map(|c| LstmCellParams {
                    w_hr: c.w_hr.as_ref().map(cast_array),
                    ..cast_cell(c)
                })
                .collect(),
        }
    }

    /// Deterministic pseudo-random parameters, uniform in `[-scale, scale]`, from a seeded
    /// splitmix64 generator. Values are drawn in `f64` and rounded, so the `f32` and `f64`
    /// versions of the same seed agree to `f32` precision. Tensors are filled cell by cell,
    /// in the order `w_ih, w_hh, b_ih, b_hh, w_hr`, each in row-major order.
    pub fn random(dims: LstmDims, seed: u64, scale: f64) -> Result<Self> {
        let mut filler = Filler::new(seed, scale)?;
        let mut p = Self::zeros(dims)?;
        for c in &mut p.cells {
            filler.fill_core(c, true);
            if let Some(w) = &mut c.w_hr {
                filler.fill(w.iter_mut());
            }
        }
        Ok(p)
    }
}

/// What backward needs from one layer-direction. All matrices are `(T·B, ·)` in time order
/// (row `t·B + b`), whichever way the direction ran. Rows of padded steps (`t >= len_b`)
/// hold zeros in `gates` and `h_raw`; backward never reads them.
#[derive(Clone, Debug)]
pub(crate) struct DirTape<T> {
    /// Gate activations after the nonlinearity, `[i|f|g|o]`, `(T·B, 4H)`.
    pub(crate) gates: Array2<T>,
    /// `tanh` of the cell state after the step, `(T·B, H)` (what backward needs; computed
    /// once in forward rather than again in backward).
    pub(crate) tanh_c: Array2<T>,
    /// Cell state before the step, `(T·B, H)`. Stored rather than derived from `c` because
    /// "the previous step" is `t-1` or `t+1` depending on the direction and is `c0` at a
    /// sequence's own start, which differs per batch entry under variable lengths.
    pub(crate) c_prev: Array2<T>,
    /// Hidden state before the step, `(T·B, H_out)`: the right operand of `dW_hh`.
    pub(crate) h_prev: Array2<T>,
    /// `o ⊙ tanh(c)` before projection, `(T·B, H)`; only kept when projecting (for `dW_hr`).
    pub(crate) h_raw: Option<Array2<T>>,
}

/// Everything backward needs (saved per layer-direction: gate activations, c sequence,
/// h sequence, layer inputs, lengths).
#[derive(Clone, Debug)]
pub struct LstmTape<T> {
    /// Sizes of the stack that produced this tape, to catch a mismatched `params` in backward.
    pub(crate) dims: LstmDims,
    /// `T`.
    pub(crate) seq_len: usize,
    /// `B`.
    pub(crate) batch: usize,
    /// Valid length of each sequence (all `T` when none were given).
    pub(crate) lengths: Vec<usize>,
    /// Input of each layer, `(T·B, In_layer)`; shared by both directions of the layer.
    pub(crate) layer_inputs: Vec<Array2<T>>,
    /// One per layer-direction, index `layer·D + direction`.
    pub(crate) dirs: Vec<DirTape<T>>,
}

impl<T> LstmTape<T> {
    /// Sizes of the stack that produced this tape.
    pub fn dims(&self) -> LstmDims {
        self.dims
    }

    /// Sequence length `T` of the forward pass.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Batch size `B` of the forward pass.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The valid length of each sequence (all equal to `T` when `lengths` was `None`).
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }
}

/// Result of `lstm_forward`.
#[derive(Clone, Debug)]
pub struct LstmForward<T> {
    /// `(T, B, D·H_out)`, forward direction first on the last axis; 0 at padded steps.
    pub out: Array3<T>,
    /// `(L·D, B, H_out)`: each sequence's `h` at its own end (after `t = len_b - 1` forward,
    /// after `t = 0` reverse).
    pub h_n: Array3<T>,
    /// `(L·D, B, H)`: the matching cell states.
    pub c_n: Array3<T>,
    /// Saved activations for `lstm_backward`.
    pub tape: LstmTape<T>,
}

/// Gradients from `lstm_backward`, shaped like the corresponding inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct LstmGrads<T> {
    /// `(T, B, I)`; exactly 0 at padded steps.
    pub dx: Array3<T>,
    /// `(L·D, B, H_out)`.
    pub dh0: Array3<T>,
    /// `(L·D, B, H)`.
    pub dc0: Array3<T>,
    /// Same shapes as `LstmParams::cells`; `w_hr` is `Some` iff `proj_size > 0`.
    /// `b_ih` and `b_hh` are equal, since both enter the gates as the same sum.
    pub cells: Vec<LstmCellParams<T>>,
}

/// Runs one direction of one layer over the whole batch.
///
/// Steps are batched over `B`; a batch entry whose sequence is over at step `t`
/// (`t >= len_b`) keeps its state unchanged and outputs 0. That one rule gives PyTorch's
/// packed semantics in both directions: forward stops at `len_b - 1` with the final state
/// frozen, and reverse (walking `T-1 .. 0`) holds `h0` until it reaches `len_b - 1`.
///
/// Returns `(out (T·B, H_out), h_n (B, H_out), c_n (B, H), tape)`.
fn run_direction<T: Real>(
    cell: &LstmCellParams<T>,
    input: ArrayView2<T>,
    walk: Walk,
    h0: ArrayView2<T>,
    c0: ArrayView2<T>,
) -> (Array2<T>, Array2<T>, Array2<T>, DirTape<T>) {
    let (rows, batch) = (input.nrows(), walk.batch);
    let seq = rows / batch;
    let hs = cell.w_hh.nrows() / 4;
    let h_out = cell.w_hh.ncols();
    let (zero, one) = (T::zero(), T::one());

    // The input projection does not depend on the recurrence, so all steps are one matmul
    // over T·B rows. Both biases are folded in here once instead of per step.
    let bias = &cell.b_ih + &cell.b_hh;
    let mut gates = input.dot(&cell.w_ih.t()) + &bias;

    let mut tape_c = Array2::zeros((rows, hs));
    let mut c_prev = Array2::zeros((rows, hs));
    let mut h_prev = Array2::zeros((rows, h_out));
    let mut h_raw_all = cell.w_hr.as_ref().map(|_| Array2::zeros((rows, hs)));
    let mut out = Array2::zeros((rows, h_out));
    let mut h = h0.to_owned();
    let mut c = c0.to_owned();
    let mut h_raw = Array2::<T>::zeros((batch, hs));
    let mut tanh_c = Array2::<T>::zeros((batch, hs));

    for step in 0..seq {
        let t = walk.time(step, seq);
        let r = t * batch..(t + 1) * batch;
        h_prev.slice_mut(s![r.clone(), ..]).assign(&h);
        c_prev.slice_mut(s![r.clone(), ..]).assign(&c);

        // gates_t += h_{t-1} W_hh^T, in place in the tape, then activated in place.
        let mut g = gates.slice_mut(s![r.clone(), ..]);
        ndarray::linalg::general_mat_mul(one, &h, &cell.w_hh.t(), one, &mut g);
        h_raw.fill(zero);
        // Rows are independent: split them over the rayon pool (the GEMMs around this use
        // matrixmultiply's threads; the two never run at once). Zip over the four gate blocks
        // and the state rows avoids per-element bounds checks.
        let lens = walk.lengths;
        Zip::indexed(g.rows_mut())
            .and(c.rows_mut())
            .and(tanh_c.rows_mut())
            .and(h_raw.rows_mut())
            .par_for_each(|b, mut grow, c, mut tanh_c, h_raw| {
                if t >= lens[b] {
                    grow.fill(zero);
                    return;
                }
                let (i, rest) = grow.view_mut().split_at(Axis(0), hs);
                let (f, rest) = rest.split_at(Axis(0), hs);
                let (gg, o) = rest.split_at(Axis(0), hs);
                Zip::from(i)
                    .and(f)
                    .and(gg)
                    .and(o)
                    .and(c)
                    .and(tanh_c.view_mut())
                    .for_each(|i, f, gg, o, c, tc| {
                        (*i, *f, *gg, *o) = (sigmoid(*i), sigmoid(*f), tanh(*gg), sigmoid(*o));
                        *c = *f * *c + *i * *gg;
                        *tc = tanh(*c);
                    });
                let o = grow.slice(s![3 * hs..]);
                Zip::from(h_raw)
                    .and(&o)
                    .and(&tanh_c)
                    .for_each(|hr, o, tc| *hr = *o * *tc);
            });

        let h_new = match &cell.w_hr {
            Some(w) => {
                if let Some(all) = &mut h_raw_all {
                    all.slice_mut(s![r.clone(), ..]).assign(&h_raw);
                }
                h_raw.dot(&w.t())
            }
            None => h_raw.clone(),
        };
        for b in walk.valid(t) {
            h.row_mut(b).assign(&h_new.row(b));
            out.row_mut(t * batch + b).assign(&h_new.row(b));
        }
        tape_c.slice_mut(s![r, ..]).assign(&tanh_c);
    }

    let tape = DirTape {
        gates,
        tanh_c: tape_c,
        c_prev,
        h_prev,
        h_raw: h_raw_all,
    };
    (out, h, c, tape)
}

/// Checks the inputs of a forward pass (shared by the CPU and GPU backends) and returns the
/// resolved lengths (all `T` when `lengths` is `None`).
///
/// Errors: `Error::Shape` for wrong shapes or `T = 0` / `B = 0`, `Error::Config` for lengths
/// outside `1..=T`; every message names the value and the limit.
pub fn check_inputs(
    d: &LstmDims,
    x: &[usize],
    h0: &[usize],
    c0: &[usize],
    lengths: Option<&[usize]>,
) -> Result<Vec<usize>> {
    let (seq, batch) = check_x_h0(d, x, h0)?;
    check_shape("c0", c0, &[d.cell_count(), batch, d.hidden_size])?;
    resolve_lengths(lengths, seq, batch)
}

/// LSTM forward pass.
///
/// `x`: `(T, B, I)` time-major. `h0`: `(L·D, B, H_out)`, `c0`: `(L·D, B, H)`.
/// `lengths`: per-batch valid lengths (PyTorch packed semantics, any order), `None` = all `T`.
///
/// Errors: `Error::Shape` for wrong tensor shapes or `T = 0` / `B = 0`, `Error::Config` for
/// invalid dims or lengths outside `1..=T`; every message names the value and the limit.
pub fn lstm_forward<T: Real>(
    p: &LstmParams<T>,
    x: ArrayView3<T>,
    h0: ArrayView3<T>,
    c0: ArrayView3<T>,
    lengths: Option<&[usize]>,
) -> Result<LstmForward<T>> {
    p.validate()?;
    let d = p.dims;
    let lengths = check_inputs(&d, x.shape(), h0.shape(), c0.shape(), lengths)?;
    let (seq, batch, _) = x.dim();
    let (ld, h_out, hs) = (d.cell_count(), d.out_size(), d.hidden_size);
    let mut input = to_rows(x, "x")?;
    let dn = d.directions();
    let mut h_n = Array3::zeros((ld, batch, h_out));
    let mut c_n = Array3::zeros((ld, batch, hs));
    let mut layer_inputs = Vec::with_capacity(d.num_layers);
    let mut dirs = Vec::with_capacity(ld);
    for layer in 0..d.num_layers {
        let mut layer_out = Array2::zeros((seq * batch, dn * h_out));
        for dir in 0..dn {
            let idx = layer * dn + dir;
            let (o, hn, cn, tape) = run_direction(
                &p.cells[idx],
                input.view(),
                Walk {
                    batch,
                    reverse: dir == 1,
                    lengths: &lengths,
                },
                h0.index_axis(Axis(0), idx),
                c0.index_axis(Axis(0), idx),
            );
            layer_out
                .slice_mut(s![.., dir * h_out..(dir + 1) * h_out])
                .assign(&o);
            h_n.index_axis_mut(Axis(0), idx).assign(&hn);
            c_n.index_axis_mut(Axis(0), idx).assign(&cn);
            dirs.push(tape);
        }
        // This layer's output is the next layer's input; the old input goes on the tape.
        layer_inputs.push(std::mem::replace(&mut input, layer_out));
    }
    let out = from_rows(input, seq, batch, "out")?;
    Ok(LstmForward {
        out,
        h_n,
        c_n,
        tape: LstmTape {
            dims: d,
            seq_len: seq,
            batch,
            lengths,
            layer_inputs,
            dirs,
        },
    })
}
