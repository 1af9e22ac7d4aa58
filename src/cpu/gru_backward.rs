//! Backward pass (BPTT) through one direction of the CPU reference GRU in `gru.rs`.
//!
//! The per-step loop only computes pre-activation gradients and carries `dh` back through
//! time; weight and bias gradients and the gradient of the layer input are sums over steps,
//! done afterwards as single matmuls over all `T·B` rows.

use ndarray::{Array1, Array2, ArrayView2, Axis, s};

use super::common::Walk;
use super::gru::{GruCellParams, GruMode, GruSaved};
use super::real::Real;

/// BPTT through one GRU layer-direction; see `HCell::backward_dir`.
///
/// Steps run in the opposite order to the forward pass. A batch entry at a padded step was
/// frozen in forward, so here its `dh` passes through unchanged and its gate gradients are
/// 0; that makes `dh0` right for short sequences in the reverse direction, and makes every
/// weight gradient ignore padding without further masking.
///
/// With `a = x W_ihᵀ + b_ih` (pre-activations from the input) and the gate activations
/// `r, z, n`, one step's gradients are, for `dh` the total gradient on `h_t`:
/// ```text
/// dn̂ = dh ⊙ (1 - z) ⊙ (1 - n²)          dẑ = dh ⊙ (h_{t-1} - n) ⊙ z(1 - z)
/// ResetAfter:  dr̂ = dn̂ ⊙ (h W_hnᵀ + b_hn) ⊙ r(1 - r); recurrent n gradient dn̂ ⊙ r
/// ResetBefore: d(r⊙h) = dn̂ W_hn;  dr̂ = d(r⊙h) ⊙ h_{t-1} ⊙ r(1 - r)
/// ```
#[allow(clippy::too_many_arguments)] // mirrors HCell::backward_dir plus the bound cell
pub(crate) fn backprop_direction<T: Real>(
    p: &GruCellParams<T>,
    mode: GruMode,
    saved: &GruSaved<T>,
    input: ArrayView2<T>,
    dout: ArrayView2<T>,
    walk: Walk,
    dh_n: ArrayView2<T>,
    dinput: &mut Array2<T>,
) -> (GruCellParams<T>, Array2<T>) {
    let (rows, batch) = (dout.nrows(), walk.batch);
    let seq = rows / batch;
    let hs = p.w_hh.ncols();
    let one = T::one();
    let after = mode == GruMode::ResetAfter;
    let w_rz = p.w_hh.slice(s![..2 * hs, ..]);
    let w_hn = p.w_hh.slice(s![2 * hs.., ..]);

    // Gradients of the pre-activations from the input projection, [dr̂|dẑ|dn̂], and of the
    // recurrent products h W_hhᵀ (+ b_hh) (ResetBefore: the n block is that of (r⊙h) W_hnᵀ).
    // They differ only in the n block when ResetAfter (scaled by r there).
    let mut dgi = Array2::<T>::zeros((rows, 3 * hs));
    let mut dgh = Array2::<T>::zeros((rows, 3 * hs));
    let mut dh = dh_n.to_owned();

    for step in (0..seq).rev() {
        let t = walk.time(step, seq);
        let r = t * batch..(t + 1) * batch;
        // Total gradient on h_t: from the next step (carried) plus from this step's output.
        let dh_tot = &dh + &dout.slice(s![r.clone(), ..]);
        let gates = saved.gates.slice(s![r.clone(), ..]);
        let hn = saved.hn.slice(s![r.clone(), ..]);
        let h_prev = saved.h_prev.slice(s![r.clone(), ..]);
        let mut gi = dgi.slice_mut(s![r.clone(), ..]);
        let mut gh = dgh.slice_mut(s![r.clone(), ..]);

        for b in walk.valid(t) {
            for j in 0..hs {
                let (rg, z, n) = (gates[[b, j]], gates[[b, hs + j]], gates[[b, 2 * hs + j]]);
                let d = dh_tot[[b, j]];
                let dn = d * (one - z) * (one - n * n);
                let dz = d * (h_prev[[b, j]] - n) * z * (one - z);
                gi[[b, hs + j]] = dz;
                gh[[b, hs + j]] = dz;
                gi[[b, 2 * hs + j]] = dn;
                if after {
                    gh[[b, 2 * hs + j]] = dn * rg;
                    let dr = dn * hn[[b, j]] * rg * (one - rg);
                    gi[[b, j]] = dr;
                    gh[[b, j]] = dr;
                } else {
                    gh[[b, 2 * hs + j]] = dn;
                }
            }
        }

        // Gradient reaching h_{t-1} through the recurrent products (padded rows of gh are 0
        // and are not copied below anyway).
        let dh_prev = if after {
            gh.dot(&p.w_hh)
        } else {
            // r depends on h_{t-1} and multiplies it, so dr̂ needs d(r⊙h) first.
            let d_rh = gh.slice(s![.., 2 * hs..]).dot(&w_hn);
            for b in walk.valid(t) {
                for j in 0..hs {
                    let rg = gates[[b, j]];
                    let dr = d_rh[[b, j]] * h_prev[[b, j]] * rg * (one - rg);
                    gi[[b, j]] = dr;
                    gh[[b, j]] = dr;
                }
            }
            let rz = gh.slice(s![.., ..2 * hs]).dot(&w_rz);
            rz + &d_rh * &gates.slice(s![.., ..hs])
        };
        // h_{t-1} also reaches h_t directly, weighted by z. Padded entries keep their dh.
        for b in walk.valid(t) {
            for j in 0..hs {
                dh[[b, j]] = dh_prev[[b, j]] + dh_tot[[b, j]] * gates[[b, hs + j]];
            }
        }
    }

    // Sums over all steps as single matmuls; padded rows of dgi/dgh are 0.
    let w_hh = if after {
        dgh.t().dot(&saved.h_prev)
    } else {
        let mut w = Array2::<T>::zeros(p.w_hh.raw_dim());
        w.slice_mut(s![..2 * hs, ..])
            .assign(&dgh.slice(s![.., ..2 * hs]).t().dot(&saved.h_prev));
        // The n block multiplies r ⊙ h_{t-1}, not h_{t-1}.
        w.slice_mut(s![2 * hs.., ..])
            .assign(&dgh.slice(s![.., 2 * hs..]).t().dot(&saved.hn));
        w
    };
    let b_hh = if after {
        dgh.sum_axis(Axis(0))
    } else {
        Array1::zeros(3 * hs)
    };
    ndarray::linalg::general_mat_mul(one, &dgi, &p.w_ih, one, dinput);
    let grads = GruCellParams {
        w_ih: dgi.t().dot(&input),
        w_hh,
        b_ih: dgi.sum_axis(Axis(0)),
        b_hh,
    };
    (grads, dh)
}
