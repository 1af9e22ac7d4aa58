//! Backward pass (BPTT) of the CPU reference LSTM in `lstm.rs`.
//!
//! The per-step loop only computes the pre-activation gate gradients `dG` and carries
//! `dh`/`dc` back through time; everything that is a sum over steps (weight and bias
//! gradients, the gradient of the layer input) is done afterwards as one matmul over all
//! `T·B` rows, which keeps the f32 reference fast (large matmuls instead of many small ones).

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, Axis, Zip, s};

use super::common::{Walk, check_shape, dot3, from_rows, loss_out_h, valid_rows};
use super::lstm::{DirTape, LstmCellParams, LstmForward, LstmGrads, LstmParams, LstmTape};
use super::real::Real;
use crate::error::{Error, Result};

/// Gradients of one layer-direction, before they are placed into `LstmGrads`.
struct DirGrads<T> {
    /// Pre-activation gate gradients `(T·B, 4H)`; zero rows at padded steps.
    dgates: Array2<T>,
    /// Gradient reaching each step's (projected) output `h_t`, `(T·B, P)`; only when
    /// projecting, as the left operand of `dW_hr`. Zero rows at padded steps.
    dh_out: Option<Array2<T>>,
    /// Gradient of the initial hidden state, `(B, H_out)`.
    dh0: Array2<T>,
    /// Gradient of the initial cell state, `(B, H)`.
    dc0: Array2<T>,
}

/// BPTT through one direction of one layer.
///
/// `dout` is the gradient of this direction's output, `(T·B, H_out)`, already zero at padded
/// steps. Steps run in the opposite order to the forward pass. A batch entry at a padded step
/// was frozen in forward, so here its `dh`/`dc` pass through unchanged and its gate
/// gradient is 0; that is what makes `dh0`/`dc0` correct for short sequences in the reverse
/// direction, and makes every weight gradient ignore padding automatically.
fn backprop_direction<T: Real>(
    cell: &LstmCellParams<T>,
    tape: &DirTape<T>,
    dout: ArrayView2<T>,
    walk: Walk,
    dh_n: ArrayView2<T>,
    dc_n: ArrayView2<T>,
) -> DirGrads<T> {
    let (rows, batch) = (dout.nrows(), walk.batch);
    let seq = rows / batch;
    let hs = cell.w_hh.nrows() / 4;
    let one = T::one();

    let mut dgates = Array2::<T>::zeros((rows, 4 * hs));
    let mut dh_out = cell
        .w_hr
        .as_ref()
        .map(|w| Array2::<T>::zeros((rows, w.nrows())));
    let mut dh = dh_n.to_owned();
    let mut dc = dc_n.to_owned();

    for step in (0..seq).rev() {
        let t = walk.time(step, seq);
        let r = t * batch..(t + 1) * batch;
        // Total gradient on h_t: from the next step (carried) plus from this step's output.
        let dh_tot = &dh + &dout.slice(s![r.clone(), ..]);
        let dh_raw = match &cell.w_hr {
            Some(w) => {
                if let Some(all) = &mut dh_out {
                    let mut dst = all.slice_mut(s![r.clone(), ..]);
                    for b in walk.valid(t) {
                        dst.row_mut(b).assign(&dh_tot.row(b));
                    }
                }
                dh_tot.dot(w)
            }
            None => dh_tot,
        };

        let mut dg = dgates.slice_mut(s![r.clone(), ..]);
        // Rows are independent; split them over the rayon pool like the forward.
        let lens = walk.lengths;
        Zip::indexed(dg.rows_mut())
            .and(dc.rows_mut())
            .and(dh_raw.rows())
            .par_for_each(|b, mut dg, mut dc, dhr| {
                if t >= lens[b] {
                    return;
                }
                let row = t * batch + b;
                let gate = tape.gates.row(row);
                let (tc, cp) = (tape.tanh_c.row(row), tape.c_prev.row(row));
                for j in 0..hs {
                    let (i, f, g, o) = (gate[j], gate[hs + j], gate[2 * hs + j], gate[3 * hs + j]);
                    let (tc, dhr) = (tc[j], dhr[j]);
                    // c_t feeds h_t through tanh and the next step directly (dc).
                    let dct = dc[j] + dhr * o * (one - tc * tc);
                    dg[j] = dct * g * i * (one - i);
                    dg[hs + j] = dct * cp[j] * f * (one - f);
                    dg[2 * hs + j] = dct * i * (one - g * g);
                    dg[3 * hs + j] = dhr * tc * o * (one - o);
                    dc[j] = dct * f;
                }
            });
        // Padded rows of dg are 0, so this would give them dh_prev = 0; they must instead
        // keep their carried dh, hence the per-row copy.
        let dh_prev = dg.dot(&cell.w_hh);
        for b in walk.valid(t) {
            dh.row_mut(b).assign(&dh_prev.row(b));
        }
    }
    DirGrads {
        dgates,
        dh_out,
        dh0: dh,
        dc0: dc,
    }
}

/// LSTM backward pass: the gradient of `lstm_loss` with respect to `x`, `h0`, `c0` and every
/// parameter, given the tape of the matching `lstm_forward` call.
///
/// `dy_out`: `(T, B, D·H_out)` (values at padded steps are ignored), `dy_h_n`:
/// `(L·D, B, H_out)`, `dy_c_n`: `(L·D, B, H)`.
///
/// Errors: `Error::Config` if `p` has other dims than the tape, `Error::Shape` if a `dy` or a
/// parameter has the wrong shape.
pub fn lstm_backward<T: Real>(
    p: &LstmParams<T>,
    tape: &LstmTape<T>,
    dy_out: ArrayView3<T>,
    dy_h_n: ArrayView3<T>,
    dy_c_n: ArrayView3<T>,
) -> Result<LstmGrads<T>> {
    p.validate()?;
    let d = p.dims;
    if d != tape.dims {
        return Err(Error::Config(format!(
            "params have dims {d:?} but the tape was recorded with {:?}",
            tape.dims
        )));
    }
    let (seq, batch, dn, h_out) = (tape.seq_len, tape.batch, d.directions(), d.out_size());
    let ld = d.cell_count();
    check_shape("dy_out", dy_out.shape(), &[seq, batch, dn * h_out])?;
    check_shape("dy_h_n", dy_h_n.shape(), &[ld, batch, h_out])?;
    check_shape("dy_c_n", dy_c_n.shape(), &[ld, batch, d.hidden_size])?;
    let lengths = &tape.lengths;

    // Gradient of the top layer's output as (T·B, D·H_out), with padded steps zeroed so
    // they contribute nothing (PyTorch ignores dy_out there).
    let mut dlayer_out = valid_rows(dy_out, lengths);

    let mut dh0 = Array3::<T>::zeros((ld, batch, h_out));
    let mut dc0 = Array3::<T>::zeros((ld, batch, d.hidden_size));
    let mut cells: Vec<Option<LstmCellParams<T>>> = vec![None; ld];
    for layer in (0..d.num_layers).rev() {
        let input = &tape.layer_inputs[layer];
        // Gradient of this layer's input: the next (lower) layer's output gradient, or dx.
        let mut dinput = Array2::<T>::zeros(input.raw_dim());
        for dir in 0..dn {
            let idx = layer * dn + dir;
            let cell = &p.cells[idx];
            let dt = &tape.dirs[idx];
            let g = backprop_direction(
                cell,
                dt,
                dlayer_out.slice(s![.., dir * h_out..(dir + 1) * h_out]),
                Walk {
                    batch,
                    reverse: dir == 1,
                    lengths,
                },
                dy_h_n.index_axis(Axis(0), idx),
                dy_c_n.index_axis(Axis(0), idx),
            );
            // Sums over all steps as single matmuls; padded rows of dgates are 0.
            let db = g.dgates.sum_axis(Axis(0));
            let w_hr = match (&g.dh_out, &dt.h_raw) {
                (Some(dho), Some(hr)) => Some(dho.t().dot(hr)),
                _ => None,
            };
            cells[idx] = Some(LstmCellParams {
                w_ih: g.dgates.t().dot(input),
                w_hh: g.dgates.t().dot(&dt.h_prev),
                b_ih: db.clone(),
                b_hh: db,
                w_hr,
            });
            ndarray::linalg::general_mat_mul(
                T::one(),
                &g.dgates,
                &cell.w_ih,
                T::one(),
                &mut dinput,
            );
            dh0.index_axis_mut(Axis(0), idx).assign(&g.dh0);
            dc0.index_axis_mut(Axis(0), idx).assign(&g.dc0);
        }
        dlayer_out = dinput;
    }
    let dx = from_rows(dlayer_out, seq, batch, "dx")?;
    Ok(LstmGrads {
        dx,
        dh0,
        dc0,
        cells: cells.into_iter().flatten().collect(),
    })
}

/// The loss whose gradient `lstm_backward` computes:
/// `L = Σ out⊙dy_out (only at valid steps t < len_b) + Σ h_n⊙dy_h_n + Σ c_n⊙dy_c_n`.
///
/// Padded steps of `dy_out` are skipped, matching backward, which ignores them.
///
/// # Panics
/// If a `dy` does not have the shape of the tensor it multiplies (this is a test helper,
/// so a mismatch is a bug in the caller, not bad user input).
pub fn lstm_loss<T: Real>(
    f: &LstmForward<T>,
    dy_out: ArrayView3<T>,
    dy_h_n: ArrayView3<T>,
    dy_c_n: ArrayView3<T>,
) -> T {
    assert_eq!(dy_c_n.shape(), f.c_n.shape(), "dy_c_n shape must match c_n");
    let l = &f.tape.lengths;
    loss_out_h(&f.out, &f.h_n, l, dy_out, dy_h_n) + dot3(&f.c_n, &dy_c_n)
}
