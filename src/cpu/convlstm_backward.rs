//! Backward pass (BPTT) of the CPU reference `ConvLSTM2D` in `convlstm.rs`.
//!
//! The reversed step loop only computes the pre-activation gate gradients `dG` and carries
//! `dh`/`dc` back through time; `dh_{t-1}` is the recurrent convolution transposed,
//! `col2im(dG_t · RKᵀ)`. Everything that is a sum over steps is done after the loop as one
//! matmul over all `T·B·Ho·Wo` rows: `dKernel = im2col(x)ᵀ·dG`,
//! `dRecurrentKernel = im2col(H_prev)ᵀ·dG`, `dbias = Σ dG` and `dx = col2im(dG·Kᵀ)`.

use ndarray::{Array2, Array4, ArrayView4, ArrayView5, Axis, s};

use super::common::check_shape;
use super::conv::{kernel_matrix, rows_to_seq, rows_to_state, seq_to_rows, state_to_rows};
use super::convlstm::{ConvLstmForward, ConvLstmGrads, ConvLstmParams, ConvLstmTape};
use super::real::Real;
use crate::error::{Error, Result};

/// A `(kh·kw·C, 4F)` gradient matrix back to the `(kh, kw, C, 4F)` kernel layout.
fn to_kernel<T: Real>(m: Array2<T>, shape: &[usize]) -> Result<Array4<T>> {
    let &[kh, kw, c, g] = shape else {
        return Err(Error::Shape(format!("kernel shape {shape:?} is not 4-D")));
    };
    m.into_shape_with_order((kh, kw, c, g))
        .map_err(|e| Error::Shape(format!("kernel gradient: {e}")))
}

/// `ConvLSTM2D` backward pass: the gradient of `convlstm_loss` with respect to `x`, `h0`,
/// `c0` and every parameter, given the tape of the matching `convlstm_forward` call.
///
/// `dy_out`: `(B, T, Ho, Wo, F)` in processing order (like `out`); `dy_h_n`, `dy_c_n`:
/// `(B, Ho, Wo, F)`. For Keras `return_sequences=False`, pass zeros for every step of
/// `dy_out` but the last (or fold the last-step gradient into `dy_h_n`).
///
/// Errors: `Error::Config` if `p` has other dims than the tape, `Error::Shape` if a `dy` or a
/// parameter has the wrong shape.
pub fn convlstm_backward<T: Real>(
    p: &ConvLstmParams<T>,
    tape: &ConvLstmTape<T>,
    dy_out: ArrayView5<T>,
    dy_h_n: ArrayView4<T>,
    dy_c_n: ArrayView4<T>,
) -> Result<ConvLstmGrads<T>> {
    p.validate()?;
    let d = p.dims;
    if d != tape.dims {
        return Err(Error::Config(format!(
            "params have dims {d:?} but the tape was recorded with {:?}",
            tape.dims
        )));
    }
    let (gin, grec) = (d.input_geom()?, d.recurrent_geom()?);
    let (batch, seq, f) = (tape.batch, tape.seq_len, d.filters);
    let (ho, wo) = gin.out;
    check_shape("dy_out", dy_out.shape(), &[batch, seq, ho, wo, f])?;
    check_shape("dy_h_n", dy_h_n.shape(), &[batch, ho, wo, f])?;
    check_shape("dy_c_n", dy_c_n.shape(), &[batch, ho, wo, f])?;
    let (act, rec) = (d.activation, d.recurrent_activation);
    let step_rows = batch * gin.out_pixels();

    // dy_out is already in processing order, so no reversal here.
    let dout = seq_to_rows(dy_out, false)?;
    let rk = kernel_matrix(&p.recurrent_kernel)?;
    let mut dgates = Array2::<T>::zeros((seq * step_rows, 4 * f));
    let mut dh = state_to_rows(dy_h_n)?;
    let mut dc = state_to_rows(dy_c_n)?;

    for step in (0..seq).rev() {
        let r = step * step_rows..(step + 1) * step_rows;
        let mut dg = dgates.slice_mut(s![r.clone(), ..]);
        for px in 0..step_rows {
            let row = step * step_rows + px;
            let gate = tape.gates.row(row);
            for j in 0..f {
                let (i, fg, cc, o) = (gate[j], gate[f + j], gate[2 * f + j], gate[3 * f + j]);
                let ac = tape.act_c[[row, j]];
                // Total gradient on h_t: carried from the next step plus this step's output.
                let dht = dh[[px, j]] + dout[[row, j]];
                // c_t feeds h_t through the activation and the next step directly (dc).
                let dct = dc[[px, j]] + dht * o * act.derivative_from_output(ac);
                dg[[px, j]] = dct * cc * rec.derivative_from_output(i);
                dg[[px, f + j]] = dct * tape.c_prev[[row, j]] * rec.derivative_from_output(fg);
                dg[[px, 2 * f + j]] = dct * i * act.derivative_from_output(cc);
                dg[[px, 3 * f + j]] = dht * ac * rec.derivative_from_output(o);
                dc[[px, j]] = dct * fg;
            }
        }
        // The recurrent convolution transposed: unrolled-patch gradients, scattered back.
        dh = grec.col2im(dg.dot(&rk.t()).view());
    }

    // Sums over all steps as single matmuls.
    let kernel = gin.im2col(tape.frames.view()).t().dot(&dgates);
    let recurrent_kernel = grec.im2col(tape.h_prev.view()).t().dot(&dgates);
    let bias = dgates.sum_axis(Axis(0));
    let dframes = gin.col2im(dgates.dot(&kernel_matrix(&p.kernel)?.t()).view());
    let state = [batch, ho, wo, f];
    Ok(ConvLstmGrads {
        dx: rows_to_seq(dframes, (batch, seq, d.rows, d.cols), tape.go_backwards)?,
        dh0: rows_to_state(dh, state)?,
        dc0: rows_to_state(dc, state)?,
        kernel: to_kernel(kernel, p.kernel.shape())?,
        recurrent_kernel: to_kernel(recurrent_kernel, p.recurrent_kernel.shape())?,
        bias,
    })
}

/// The loss whose gradient `convlstm_backward` computes:
/// `L = Σ out⊙dy_out + Σ h_n⊙dy_h_n + Σ c_n⊙dy_c_n`.
///
/// # Panics
/// If a `dy` does not have the shape of the tensor it multiplies (this is a test helper,
/// so a mismatch is a bug in the caller, not bad user input).
pub fn convlstm_loss<T: Real>(
    f: &ConvLstmForward<T>,
    dy_out: ArrayView5<T>,
    dy_h_n: ArrayView4<T>,
    dy_c_n: ArrayView4<T>,
) -> T {
    assert_eq!(dy_out.shape(), f.out.shape(), "dy_out shape must match out");
    assert_eq!(dy_h_n.shape(), f.h_n.shape(), "dy_h_n shape must match h_n");
    assert_eq!(dy_c_n.shape(), f.c_n.shape(), "dy_c_n shape must match c_n");
    let dot = |a: &mut dyn Iterator<Item = (&T, &T)>| a.map(|(&u, &v)| u * v).sum::<T>();
    dot(&mut f.out.iter().zip(dy_out.iter()))
        + dot(&mut f.h_n.iter().zip(dy_h_n.iter()))
        + dot(&mut f.c_n.iter().zip(dy_c_n.iter()))
}
