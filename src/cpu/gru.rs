//! CPU reference GRU with PyTorch `nn.GRU` semantics (and Keras `GRU` in both `reset_after`
//! modes, once the caller has reordered Keras' z,r,h gate blocks to r,z,n): parameter
//! containers, the forward pass and its tape. The backward pass is in `gru_backward.rs`,
//! stacking and packed lengths in `stack.rs`.
//!
//! Gates are row blocks `r, z, n` of size H (`CONVENTIONS.md` §1):
//! ```text
//! r = σ(x W_irᵀ + b_ir + h W_hrᵀ + b_hr)      z = σ(x W_izᵀ + b_iz + h W_hzᵀ + b_hz)
//! ResetAfter:  n = tanh(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn))
//! ResetBefore: n = tanh(x W_inᵀ + b_in + (r ⊙ h) W_hnᵀ)
//! h' = (1 - z) ⊙ n + z ⊙ h
//! ```

use ndarray::{Array1, Array2, Array3, ArrayView2, ArrayView3, s};

use super::common::{
    Filler, Walk, cast_cell, check_cells, h_tape_accessors, impl_cell_core, loss_out_h,
    torch_suffix, validate_unprojected, zero_cells,
};
use super::gru_backward::backprop_direction;
use super::lstm::LstmDims;
use super::real::{Real, sigmoid, tanh};
use super::stack::{HCell, HTape, stack_backward, stack_forward};
use crate::error::{Error, Result};

/// How the candidate uses the reset gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GruMode {
    /// PyTorch nn.GRU == Keras GRU(reset_after=True) after reordering:
    /// `n = tanh(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn))`.
    ResetAfter,
    /// Keras GRU(reset_after=False): `n = tanh(x W_inᵀ + b_in + (r ⊙ h) W_hnᵀ)`; no
    /// recurrent bias (`b_hh` must be all zeros, and its gradient is returned as zeros).
    ResetBefore,
}

/// One layer-direction's parameters, PyTorch layout, gate order r,z,n as row blocks of size H.
#[derive(Clone, Debug, PartialEq)]
pub struct GruCellParams<T> {
    /// `weight_ih_l{k}`: `(3H, In)`, applied as `x W_ihᵀ`.
    pub w_ih: Array2<T>,
    /// `weight_hh_l{k}`: `(3H, H)`, applied as `h W_hhᵀ`.
    pub w_hh: Array2<T>,
    /// `bias_ih_l{k}`: `(3H)`.
    pub b_ih: Array1<T>,
    /// `bias_hh_l{k}`: `(3H)`. Unlike the LSTM, its n block is not interchangeable with
    /// `b_ih`'s (it sits inside the reset product). All zeros in `ResetBefore` mode.
    pub b_hh: Array1<T>,
}

impl_cell_core!(GruCellParams);

/// All parameters of a GRU stack.
#[derive(Clone, Debug, PartialEq)]
pub struct GruParams<T> {
    /// The sizes these parameters were made for; `proj_size` must be 0.
    pub dims: LstmDims,
    /// Where the reset gate is applied.
    pub mode: GruMode,
    /// One entry per layer-direction, index `layer·D + direction`.
    pub cells: Vec<GruCellParams<T>>,
}

impl<T: Real> GruParams<T> {
    /// All-zero parameters of the right shapes (`Error::Config` if `dims` is invalid or has
    /// a projection).
    pub fn zeros(dims: LstmDims, mode: GruMode) -> Result<Self> {
        validate_unprojected(&dims, "GRU", 3)?;
        let cells = zero_cells(&dims, 3);
        Ok(Self { dims, mode, cells })
    }

    /// Checks `dims` (`Error::Config`), every tensor's shape (`Error::Shape`, naming the
    /// tensor by its PyTorch name, e.g. `weight_hh_l1_reverse`), and that `b_hh` is all
    /// zeros in `ResetBefore` mode (`Error::Config`), where the equations have no place
    /// for it; silently ignoring it would make the forward pass disagree with the caller.
    pub fn validate(&self) -> Result<()> {
        let d = self.dims;
        validate_unprojected(&d, "GRU", 3)?;
        check_cells(&d, 3, &self.cells, |i, c| {
            if self.mode == GruMode::ResetBefore && c.b_hh.iter().any(|&v| v != T::zero()) {
                return Err(Error::Config(format!(
                    "bias_hh_{} must be all zeros in ResetBefore mode (Keras reset_after=False \
                     has no recurrent bias)",
                    torch_suffix(&d, i)
                )));
            }
            Ok(())
        })
    }

    /// Converts every tensor to another scalar type (e.g. an `f64` reference to `f32`).
    pub fn cast<U: Real>(&self) -> GruParams<U> {
        GruParams {
            dims: self.dims,
            mode: self.mode,
            cells: self.cells.iter().map(cast_cell).collect(),
        }
    }

    /// Deterministic pseudo-random parameters, uniform in `[-scale, scale]`, from a seeded
    /// splitmix64 generator (drawn in `f64`, so `f32` and `f64` versions of a seed agree to
    /// `f32` precision). Tensors are filled cell by cell in the order `w_ih, w_hh, b_ih,
    /// b_hh`, row-major; in `ResetBefore` mode `b_hh` is skipped and stays zero.
    pub fn random(dims: LstmDims, mode: GruMode, seed: u64, scale: f64) -> Result<Self> {
        let mut filler = Filler::new(seed, scale)?;
        let mut p = Self::zeros(dims, mode)?;
        for c in &mut p.cells {
            filler.fill_core(c, mode == GruMode::ResetAfter);
        }
        Ok(p)
    }
}

/// What backward needs from one GRU layer-direction. All matrices are `(T·B, ·)` in time
/// order (row `t·B + b`), whichever way the direction ran; rows of padded steps are zero
/// and never read.
#[derive(Clone, Debug)]
pub(crate) struct GruSaved<T> {
    /// Gate activations `[r|z|n]`, `(T·B, 3H)`.
    pub(crate) gates: Array2<T>,
    /// `(T·B, H)`. ResetAfter: `h_{t-1} W_hnᵀ + b_hn`, the factor `r` multiplies (needed for
    /// `dr`). ResetBefore: `r ⊙ h_{t-1}`, the right operand of `dW_hn`.
    pub(crate) hn: Array2<T>,
    /// Hidden state before the step, `(T·B, H)`. Stored because "the previous step" is `t-1`
    /// or `t+1` depending on the direction and is `h0` at each sequence's own start.
    pub(crate) h_prev: Array2<T>,
}

/// Everything backward needs (saved per layer-direction: gate activations, the recurrent
/// candidate term, h sequence, layer inputs, lengths).
#[derive(Clone, Debug)]
pub struct GruTape<T>(pub(crate) HTape<T, GruSaved<T>>);

h_tape_accessors!(GruTape);

/// Result of `gru_forward`.
#[derive(Clone, Debug)]
pub struct GruForward<T> {
    /// `(T, B, D·H)`, forward direction first on the last axis; 0 at padded steps.
    pub out: Array3<T>,
    /// `(L·D, B, H)`: each sequence's `h` at its own end (after `t = len_b - 1` forward,
    /// after `t = 0` reverse).
    pub h_n: Array3<T>,
    /// Saved activations for `gru_backward`.
    pub tape: GruTape<T>,
}

/// Gradients from `gru_backward`, shaped like the corresponding inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct GruGrads<T> {
    /// `(T, B, I)`; exactly 0 at padded steps.
    pub dx: Array3<T>,
    /// `(L·D, B, H)`.
    pub dh0: Array3<T>,
    /// Same shapes as `GruParams::cells`. `b_hh` is all zeros in `ResetBefore` mode.
    pub cells: Vec<GruCellParams<T>>,
}

/// One GRU layer-direction with its mode, as the stack driver sees it.
struct GruCell<'a, T> {
    p: &'a GruCellParams<T>,
    mode: GruMode,
}

impl<T: Real> HCell<T> for GruCell<'_, T> {
    type Saved = GruSaved<T>;
    type Grad = GruCellParams<T>;

    fn forward_dir(
        &self,
        input: ArrayView2<T>,
        walk: Walk,
        h0: ArrayView2<T>,
    ) -> (Array2<T>, Array2<T>, GruSaved<T>) {
        let p = self.p;
        let (rows, batch) = (input.nrows(), walk.batch);
        let seq = rows / batch;
        let hs = p.w_hh.ncols();
        let (zero, one) = (T::zero(), T::one());
        let after = self.mode == GruMode::ResetAfter;

        // The input projection does not depend on the recurrence, so all steps are one
        // matmul over T·B rows. b_ih is folded in here; b_hh cannot be (its n block is
        // scaled by r), so it goes into the per-step recurrent product.
        let mut gates = input.dot(&p.w_ih.t()) + &p.b_ih;
        let mut hn_all = Array2::<T>::zeros((rows, hs));
        let mut h_prev = Array2::<T>::zeros((rows, hs));
        let mut out = Array2::<T>::zeros((rows, hs));
        let mut h = h0.to_owned();
        // Recurrent products of one step: [r|z|n] blocks of h W_hhᵀ (+ b_hh when ResetAfter;
        // in ResetBefore only the r and z blocks are used, the n block comes from r ⊙ h).
        let mut rec = Array2::<T>::zeros((batch, 3 * hs));
        let rec_w = if after {
            p.w_hh.view()
        } else {
            p.w_hh.slice(s![..2 * hs, ..])
        };
        let w_hn = p.w_hh.slice(s![2 * hs.., ..]);

        for step in 0..seq {
            let t = walk.time(step, seq);
            let r = t * batch..(t + 1) * batch;
            h_prev.slice_mut(s![r.clone(), ..]).assign(&h);

            let mut rec_used = rec.slice_mut(s![.., ..rec_w.nrows()]);
            if after {
                rec_used.assign(&p.b_hh.broadcast((batch, 3 * hs)).expect("3H bias"));
            } else {
                rec_used.fill(zero);
            }
            ndarray::linalg::general_mat_mul(one, &h, &rec_w.t(), one, &mut rec_used);

            let mut g = gates.slice_mut(s![r.clone(), ..]);
            let mut hn = hn_all.slice_mut(s![r.clone(), ..]);
            for b in 0..batch {
                if t >= walk.lengths[b] {
                    g.row_mut(b).fill(zero);
                    continue;
                }
                for j in 0..hs {
                    g[[b, j]] = sigmoid(g[[b, j]] + rec[[b, j]]);
                    g[[b, hs + j]] = sigmoid(g[[b, hs + j]] + rec[[b, hs + j]]);
                    // The saved factor: the n block of the recurrent product, or r ⊙ h.
                    hn[[b, j]] = if after {
                        rec[[b, 2 * hs + j]]
                    } else {
                        g[[b, j]] * h[[b, j]]
                    };
                }
            }
            // ResetBefore applies W_hn after the reset, so it needs r first: a second matmul.
            let n_rec = (!after).then(|| hn.dot(&w_hn.t()));
            for b in walk.valid(t) {
                for j in 0..hs {
                    let (rg, z) = (g[[b, j]], g[[b, hs + j]]);
                    let n_in = match &n_rec {
                        Some(nr) => nr[[b, j]],
                        None => rg * hn[[b, j]],
                    };
                    let n = tanh(g[[b, 2 * hs + j]] + n_in);
                    g[[b, 2 * hs + j]] = n;
                    let hv = (one - z) * n + z * h[[b, j]];
                    h[[b, j]] = hv;
                    out[[t * batch + b, j]] = hv;
                }
            }
        }
        let saved = GruSaved {
            gates,
            hn: hn_all,
            h_prev,
        };
        (out, h, saved)
    }

    fn backward_dir(
        &self,
        saved: &GruSaved<T>,
        input: ArrayView2<T>,
        dout: ArrayView2<T>,
        walk: Walk,
        dh_n: ArrayView2<T>,
        dinput: &mut Array2<T>,
    ) -> (GruCellParams<T>, Array2<T>) {
        backprop_direction(self.p, self.mode, saved, input, dout, walk, dh_n, dinput)
    }
}

/// The cells of `p` bound to its mode, for the stack driver.
fn bind<T>(p: &GruParams<T>) -> Vec<GruCell<'_, T>> {
    p.cells
        .iter()
        .map(|c| GruCell { p: c, mode: p.mode })
        .collect()
}

/// GRU forward pass.
///
/// `x`: `(T, B, I)` time-major. `h0`: `(L·D, B, H)`. `lengths`: per-batch valid lengths
/// (PyTorch packed semantics, any order), `None` = all `T`.
///
/// Errors: `Error::Shape` for wrong tensor shapes or `T = 0` / `B = 0`, `Error::Config` for
/// invalid dims (including `proj_size > 0`), a non-zero `b_hh` in `ResetBefore` mode, or
/// lengths outside `1..=T`; every message names the value and the limit.
pub fn gru_forward<T: Real>(
    p: &GruParams<T>,
    x: ArrayView3<T>,
    h0: ArrayView3<T>,
    lengths: Option<&[usize]>,
) -> Result<GruForward<T>> {
    p.validate()?;
    let f = stack_forward(p.dims, &bind(p), x, h0, lengths)?;
    Ok(GruForward {
        out: f.out,
        h_n: f.h_n,
        tape: GruTape(f.tape),
    })
}

/// GRU backward pass: the gradient of `gru_loss` with respect to `x`, `h0` and every
/// parameter, given the tape of the matching `gru_forward` call.
///
/// `dy_out`: `(T, B, D·H)` (values at padded steps are ignored), `dy_h_n`: `(L·D, B, H)`.
///
/// Errors: `Error::Config` if `p` has other dims than the tape or is invalid,
/// `Error::Shape` if a `dy` or a parameter has the wrong shape.
pub fn gru_backward<T: Real>(
    p: &GruParams<T>,
    tape: &GruTape<T>,
    dy_out: ArrayView3<T>,
    dy_h_n: ArrayView3<T>,
) -> Result<GruGrads<T>> {
    p.validate()?;
    let g = stack_backward(p.dims, &bind(p), &tape.0, dy_out, dy_h_n)?;
    Ok(GruGrads {
        dx: g.dx,
        dh0: g.dh0,
        cells: g.cells,
    })
}

/// The loss whose gradient `gru_backward` computes:
/// `L = Σ out⊙dy_out (only at valid steps t < len_b) + Σ h_n⊙dy_h_n`.
///
/// # Panics
/// If a `dy` does not have the shape of the tensor it multiplies (this is a test helper,
/// so a mismatch is a bug in the caller, not bad user input).
pub fn gru_loss<T: Real>(f: &GruForward<T>, dy_out: ArrayView3<T>, dy_h_n: ArrayView3<T>) -> T {
    loss_out_h(&f.out, &f.h_n, &f.tape.0.lengths, dy_out, dy_h_n)
}
