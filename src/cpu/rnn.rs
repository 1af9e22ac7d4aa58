//! CPU reference Elman RNN with PyTorch `nn.RNN` semantics (Keras `SimpleRNN` is the same
//! recurrence with `kernel = W_ihᵀ`, `recurrent_kernel = W_hhᵀ`, one bias): parameters,
//! forward and backward. Stacking and packed lengths are in `stack.rs`.
//!
//! `h' = act(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)` with `act` = tanh or relu.

use ndarray::{Array1, Array2, Array3, ArrayView2, ArrayView3, Axis, s};

use super::common::{
    Filler, Walk, cast_cell, check_cells, h_tape_accessors, impl_cell_core, loss_out_h,
    validate_unprojected, zero_cells,
};
use super::lstm::LstmDims;
use super::real::{Real, relu, tanh};
use super::stack::{HCell, HTape, stack_backward, stack_forward};
use crate::error::Result;

/// The activation of the Elman RNN (PyTorch `nonlinearity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nonlinearity {
    /// `tanh` (the default in both PyTorch and Keras).
    Tanh,
    /// `max(0, ·)`; its derivative is taken as 1 where the pre-activation is > 0, else 0.
    Relu,
}

/// One layer-direction's parameters, PyTorch layout.
#[derive(Clone, Debug, PartialEq)]
pub struct RnnCellParams<T> {
    /// `weight_ih_l{k}`: `(H, In)`, applied as `x W_ihᵀ`.
    pub w_ih: Array2<T>,
    /// `weight_hh_l{k}`: `(H, H)`, applied as `h W_hhᵀ`.
    pub w_hh: Array2<T>,
    /// `bias_ih_l{k}`: `(H)`.
    pub b_ih: Array1<T>,
    /// `bias_hh_l{k}`: `(H)`. Kept separate from `b_ih` to mirror PyTorch checkpoints,
    /// although only their sum matters.
    pub b_hh: Array1<T>,
}

impl_cell_core!(RnnCellParams);

/// All parameters of an Elman RNN stack.
#[derive(Clone, Debug, PartialEq)]
pub struct RnnParams<T> {
    /// The sizes these parameters were made for; `proj_size` must be 0.
    pub dims: LstmDims,
    /// The activation of every layer.
    pub nonlinearity: Nonlinearity,
    /// One entry per layer-direction, index `layer·D + direction`.
    pub cells: Vec<RnnCellParams<T>>,
}

impl<T: Real> RnnParams<T> {
    /// All-zero parameters of the right shapes (`Error::Config` if `dims` is invalid or has
    /// a projection).
    pub fn zeros(dims: LstmDims, nonlinearity: Nonlinearity) -> Result<Self> {
        validate_unprojected(&dims, "RNN", 1)?;
        let cells = zero_cells(&dims, 1);
        Ok(Self {
            dims,
            nonlinearity,
            cells,
        })
    }

    /// Checks `dims` (`Error::Config`) and every tensor's shape (`Error::Shape`, naming the
    /// tensor by its PyTorch name, e.g. `weight_hh_l1_reverse`).
    pub fn validate(&self) -> Result<()> {
        let d = self.dims;
        validate_unprojected(&d, "RNN", 1)?;
        check_cells(&d, 1, &self.cells, |_, _| Ok(()))
    }

    /// Converts every tensor to another scalar type (e.g. an `f64` reference to `f32`).
    pub fn cast<U: Real>(&self) -> RnnParams<U> {
        RnnParams {
            dims: self.dims,
            nonlinearity: self.nonlinearity,
            cells: self.cells.iter().map(cast_cell).collect(),
        }
    }

    /// Deterministic pseudo-random parameters, uniform in `[-scale, scale]`, from a seeded
    /// splitmix64 generator (drawn in `f64`, so `f32` and `f64` versions of a seed agree to
    /// `f32` precision). Tensors are filled cell by cell in the order `w_ih, w_hh, b_ih,
    /// b_hh`, row-major.
    pub fn random(
        dims: LstmDims,
        nonlinearity: Nonlinearity,
        seed: u64,
        scale: f64,
    ) -> Result<Self> {
        let mut filler = Filler::new(seed, scale)?;
        let mut p = Self::zeros(dims, nonlinearity)?;
        for c in &mut p.cells {
            filler.fill_core(c, true);
        }
        Ok(p)
    }
}

/// What backward needs from one RNN layer-direction, `(T·B, H)` matrices in time order
/// (row `t·B + b`); rows of padded steps are zero and never read.
#[derive(Clone, Debug)]
pub(crate) struct RnnSaved<T> {
    /// `h_t = act(pre)`. Enough for both derivatives: `1 - h²` for tanh, and for relu
    /// `pre > 0` exactly when `h > 0`.
    pub(crate) h: Array2<T>,
    /// Hidden state before the step: the right operand of `dW_hh`.
    pub(crate) h_prev: Array2<T>,
}

/// Everything backward needs (saved per layer-direction: h sequence before and after each
/// step, layer inputs, lengths).
#[derive(Clone, Debug)]
pub struct RnnTape<T>(pub(crate) HTape<T, RnnSaved<T>>);

h_tape_accessors!(RnnTape);

/// Result of `rnn_forward`.
#[derive(Clone, Debug)]
pub struct RnnForward<T> {
    /// `(T, B, D·H)`, forward direction first on the last axis; 0 at padded steps.
    pub out: Array3<T>,
    /// `(L·D, B, H)`: each sequence's `h` at its own end (after `t = len_b - 1` forward,
    /// after `t = 0` reverse).
    pub h_n: Array3<T>,
    /// Saved activations for `rnn_backward`.
    pub tape: RnnTape<T>,
}

/// Gradients from `rnn_backward`, shaped like the corresponding inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct RnnGrads<T> {
    /// `(T, B, I)`; exactly 0 at padded steps.
    pub dx: Array3<T>,
    /// `(L·D, B, H)`.
    pub dh0: Array3<T>,
    /// Same shapes as `RnnParams::cells`; `b_ih` and `b_hh` are equal, since both enter as
    /// the same sum.
    pub cells: Vec<RnnCellParams<T>>,
}

/// One RNN layer-direction with its activation, as the stack driver sees it.
struct RnnCell<'a, T> {
    p: &'a RnnCellParams<T>,
    act: Nonlinearity,
}

impl<T: Real> HCell<T> for RnnCell<'_, T> {
    type Saved = RnnSaved<T>;
    type Grad = RnnCellParams<T>;

    fn forward_dir(
        &self,
        input: ArrayView2<T>,
        walk: Walk,
        h0: ArrayView2<T>,
    ) -> (Array2<T>, Array2<T>, RnnSaved<T>) {
        let p = self.p;
        let (rows, batch) = (input.nrows(), walk.batch);
        let seq = rows / batch;
        let (zero, one) = (T::zero(), T::one());

        // The input projection for all steps is one matmul; both biases are folded in once.
        let mut pre = input.dot(&p.w_ih.t()) + &(&p.b_ih + &p.b_hh);
        let mut h_prev = Array2::<T>::zeros(pre.raw_dim());
        let mut h = h0.to_owned();
        for step in 0..seq {
            let t = walk.time(step, seq);
            let r = t * batch..(t + 1) * batch;
            h_prev.slice_mut(s![r.clone(), ..]).assign(&h);
            let mut a = pre.slice_mut(s![r, ..]);
            ndarray::linalg::general_mat_mul(one, &h, &p.w_hh.t(), one, &mut a);
            for (b, mut row) in a.outer_iter_mut().enumerate() {
                if t >= walk.lengths[b] {
                    // Frozen: h keeps its value, the output (and tape) row is 0.
                    row.fill(zero);
                    continue;
                }
                row.mapv_inplace(|v| match self.act {
                    Nonlinearity::Tanh => tanh(v),
                    Nonlinearity::Relu => relu(v),
                });
                h.row_mut(b).assign(&row);
            }
        }
        // After activation in place, `pre` holds each step's h: the output and the tape.
        let saved = RnnSaved {
            h: pre.clone(),
            h_prev,
        };
        (pre, h, saved)
    }

    fn backward_dir(
        &self,
        saved: &RnnSaved<T>,
        input: ArrayView2<T>,
        dout: ArrayView2<T>,
        walk: Walk,
        dh_n: ArrayView2<T>,
        dinput: &mut Array2<T>,
    ) -> (RnnCellParams<T>, Array2<T>) {
        let p = self.p;
        let (rows, batch) = (dout.nrows(), walk.batch);
        let seq = rows / batch;
        let (zero, one) = (T::zero(), T::one());

        // Pre-activation gradients; padded rows stay 0, so the sums below skip them.
        let mut dpre = Array2::<T>::zeros(dout.raw_dim());
        let mut dh = dh_n.to_owned();
        for step in (0..seq).rev() {
            let t = walk.time(step, seq);
            let r = t * batch..(t + 1) * batch;
            let mut dp = dpre.slice_mut(s![r.clone(), ..]);
            for b in walk.valid(t) {
                let row = t * batch + b;
                for (j, v) in dp.row_mut(b).iter_mut().enumerate() {
                    let hv = saved.h[[row, j]];
                    let deriv = match self.act {
                        Nonlinearity::Tanh => one - hv * hv,
                        Nonlinearity::Relu if hv > zero => one,
                        Nonlinearity::Relu => zero,
                    };
                    *v = (dh[[b, j]] + dout[[row, j]]) * deriv;
                }
            }
            // Padded entries were frozen in forward, so they keep their carried dh.
            let dh_prev = dp.dot(&p.w_hh);
            for b in walk.valid(t) {
                dh.row_mut(b).assign(&dh_prev.row(b));
            }
        }
        ndarray::linalg::general_mat_mul(one, &dpre, &p.w_ih, one, dinput);
        let db = dpre.sum_axis(Axis(0));
        let grads = RnnCellParams {
            w_ih: dpre.t().dot(&input),
            w_hh: dpre.t().dot(&saved.h_prev),
            b_ih: db.clone(),
            b_hh: db,
        };
        (grads, dh)
    }
}

/// The cells of `p` bound to its activation, for the stack driver.
fn bind<T>(p: &RnnParams<T>) -> Vec<RnnCell<'_, T>> {
    p.cells
        .iter()
        .map(|c| RnnCell {
            p: c,
            act: p.nonlinearity,
        })
        .collect()
}

/// Elman RNN forward pass.
///
/// `x`: `(T, B, I)` time-major. `h0`: `(L·D, B, H)`. `lengths`: per-batch valid lengths
/// (PyTorch packed semantics, any order), `None` = all `T`.
///
/// Errors: `Error::Shape` for wrong tensor shapes or `T = 0` / `B = 0`, `Error::Config` for
/// invalid dims (including `proj_size > 0`) or lengths outside `1..=T`; every message names
/// the value and the limit.
pub fn rnn_forward<T: Real>(
    p: &RnnParams<T>,
    x: ArrayView3<T>,
    h0: ArrayView3<T>,
    lengths: Option<&[usize]>,
) -> Result<RnnForward<T>> {
    p.validate()?;
    let f = stack_forward(p.dims, &bind(p), x, h0, lengths)?;
    Ok(RnnForward {
        out: f.out,
        h_n: f.h_n,
        tape: RnnTape(f.tape),
    })
}

/// Elman RNN backward pass: the gradient of `rnn_loss` with respect to `x`, `h0` and every
/// parameter, given the tape of the matching `rnn_forward` call.
///
/// `dy_out`: `(T, B, D·H)` (values at padded steps are ignored), `dy_h_n`: `(L·D, B, H)`.
///
/// Errors: `Error::Config` if `p` has other dims than the tape or is invalid,
/// `Error::Shape` if a `dy` or a parameter has the wrong shape.
pub fn rnn_backward<T: Real>(
    p: &RnnParams<T>,
    tape: &RnnTape<T>,
    dy_out: ArrayView3<T>,
    dy_h_n: ArrayView3<T>,
) -> Result<RnnGrads<T>> {
    p.validate()?;
    let g = stack_backward(p.dims, &bind(p), &tape.0, dy_out, dy_h_n)?;
    Ok(RnnGrads {
        dx: g.dx,
        dh0: g.dh0,
        cells: g.cells,
    })
}

/// The loss whose gradient `rnn_backward` computes:
/// `L = Σ out⊙dy_out (only at valid steps t < len_b) + Σ h_n⊙dy_h_n`.
///
/// # Panics
/// If a `dy` does not have the shape of the tensor it multiplies (this is a test helper,
/// so a mismatch is a bug in the caller, not bad user input).
pub fn rnn_loss<T: Real>(f: &RnnForward<T>, dy_out: ArrayView3<T>, dy_h_n: ArrayView3<T>) -> T {
    loss_out_h(&f.out, &f.h_n, &f.tape.0.lengths, dy_out, dy_h_n)
}
