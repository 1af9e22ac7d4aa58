//! The layer/direction driver shared by the cells whose only state is `h` (GRU, Elman RNN).
//!
//! Stacking, bidirectional concatenation, packed lengths and the backward sweep over layers
//! are the same for every such cell; only one direction's recurrence differs. A cell plugs
//! that recurrence in through `HCell`, so the packed and multi-layer semantics (which the
//! LSTM reference in `lstm.rs` established) are written once here for both.
//!
//! Layouts are PyTorch's (`CONVENTIONS.md` §1): `x` is `(T, B, I)`, `h0`/`h_n` are
//! `(L·D, B, H)` with row `layer·D + direction`, `out` is `(T, B, D·H)` with the forward half
//! first. Internally sequences are `(T·B, ·)` row matrices, row `t·B + b`.

use ndarray::{Array2, Array3, ArrayView2, ArrayView3, Axis, s};

use super::common::{
    Walk, check_shape, check_x_h0, from_rows, resolve_lengths, to_rows, valid_rows,
};
use super::lstm::LstmDims;
use super::real::Real;
use crate::error::{Error, Result};

/// One layer-direction of a single-state cell, with its parameters bound.
pub(crate) trait HCell<T: Real> {
    /// What backward needs from one direction's forward pass.
    type Saved;
    /// This direction's parameter gradients.
    type Grad;

    /// Runs one direction over the whole batch, `input` being `(T·B, In)` in time order.
    ///
    /// A batch entry at a padded step (`t >= len_b`) must keep its state and output 0; with
    /// the reverse walk starting at `T-1`, that makes the reverse direction hold `h0` until
    /// `len_b - 1`, which is PyTorch's packed semantics.
    ///
    /// Returns `(out (T·B, H), h_n (B, H), saved)`.
    fn forward_dir(
        &self,
        input: ArrayView2<T>,
        walk: Walk,
        h0: ArrayView2<T>,
    ) -> (Array2<T>, Array2<T>, Self::Saved);

    /// BPTT through one direction: `dout` is the gradient of this direction's output
    /// `(T·B, H)`, already 0 at padded steps, and `dh_n` that of its final state.
    /// Adds the gradient of `input` into `dinput` (both directions of a layer share the
    /// input) and returns `(parameter gradients, dh0)`.
    fn backward_dir(
        &self,
        saved: &Self::Saved,
        input: ArrayView2<T>,
        dout: ArrayView2<T>,
        walk: Walk,
        dh_n: ArrayView2<T>,
        dinput: &mut Array2<T>,
    ) -> (Self::Grad, Array2<T>);
}

/// Everything backward needs from a stack: sizes, lengths, the input of every layer, and
/// each layer-direction's saved activations.
#[derive(Clone, Debug)]
pub(crate) struct HTape<T, S> {
    /// Sizes of the stack that produced this tape, to catch mismatched params in backward.
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
    pub(crate) dirs: Vec<S>,
}

/// Result of `stack_forward`: `out (T, B, D·H)`, `h_n (L·D, B, H)` and the tape.
pub(crate) struct StackForward<T, S> {
    pub(crate) out: Array3<T>,
    pub(crate) h_n: Array3<T>,
    pub(crate) tape: HTape<T, S>,
}

/// Result of `stack_backward`: `dx (T, B, I)`, `dh0 (L·D, B, H)` and per-cell gradients.
pub(crate) struct StackGrads<T, G> {
    pub(crate) dx: Array3<T>,
    pub(crate) dh0: Array3<T>,
    pub(crate) cells: Vec<G>,
}

/// Runs the whole stack. The caller has validated the parameters; this checks `x`, `h0`
/// and `lengths` (`Error::Shape` / `Error::Config`).
pub(crate) fn stack_forward<T: Real, C: HCell<T>>(
    d: LstmDims,
    cells: &[C],
    x: ArrayView3<T>,
    h0: ArrayView3<T>,
    lengths: Option<&[usize]>,
) -> Result<StackForward<T, C::Saved>> {
    let (seq, batch) = check_x_h0(&d, x.shape(), h0.shape())?;
    let lengths = resolve_lengths(lengths, seq, batch)?;
    let (dn, hs) = (d.directions(), d.hidden_size);

    let mut input = to_rows(x, "x")?;
    let mut h_n = Array3::zeros((d.cell_count(), batch, hs));
    let mut layer_inputs = Vec::with_capacity(d.num_layers);
    let mut dirs = Vec::with_capacity(d.cell_count());
    for layer in 0..d.num_layers {
        let mut layer_out = Array2::zeros((seq * batch, dn * hs));
        for dir in 0..dn {
            let idx = layer * dn + dir;
            let walk = Walk {
                batch,
                reverse: dir == 1,
                lengths: &lengths,
            };
            let (o, hn, saved) =
                cells[idx].forward_dir(input.view(), walk, h0.index_axis(Axis(0), idx));
            layer_out
                .slice_mut(s![.., dir * hs..(dir + 1) * hs])
                .assign(&o);
            h_n.index_axis_mut(Axis(0), idx).assign(&hn);
            dirs.push(saved);
        }
        // This layer's output is the next layer's input; the old input goes on the tape.
        layer_inputs.push(std::mem::replace(&mut input, layer_out));
    }
    let out = from_rows(input, seq, batch, "out")?;
    let tape = HTape {
        dims: d,
        seq_len: seq,
        batch,
        lengths,
        layer_inputs,
        dirs,
    };
    Ok(StackForward { out, h_n, tape })
}

/// Backward through the whole stack, top layer first. The caller has validated the
/// parameters; this checks them against the tape (`Error::Config`) and the shapes of the
/// upstream gradients (`Error::Shape`; values of `dy_out` at padded steps are ignored).
pub(crate) fn stack_backward<T: Real, C: HCell<T>>(
    d: LstmDims,
    cells: &[C],
    tape: &HTape<T, C::Saved>,
    dy_out: ArrayView3<T>,
    dy_h_n: ArrayView3<T>,
) -> Result<StackGrads<T, C::Grad>> {
    if d != tape.dims {
        return Err(Error::Config(format!(
            "params have dims {d:?} but the tape was recorded with {:?}",
            tape.dims
        )));
    }
    let (seq, batch, dn, hs) = (tape.seq_len, tape.batch, d.directions(), d.hidden_size);
    let ld = d.cell_count();
    check_shape("dy_out", dy_out.shape(), &[seq, batch, dn * hs])?;
    check_shape("dy_h_n", dy_h_n.shape(), &[ld, batch, hs])?;
    let lengths = &tape.lengths;

    let mut dlayer_out = valid_rows(dy_out, lengths);
    let mut dh0 = Array3::<T>::zeros((ld, batch, hs));
    let mut grads: Vec<Option<C::Grad>> = (0..ld).map(|_| None).collect();
    for layer in (0..d.num_layers).rev() {
        let input = &tape.layer_inputs[layer];
        // Gradient of this layer's input: the next (lower) layer's output gradient, or dx.
        let mut dinput = Array2::<T>::zeros(input.raw_dim());
        for dir in 0..dn {
            let idx = layer * dn + dir;
            let walk = Walk {
                batch,
                reverse: dir == 1,
                lengths,
            };
            let (g, dh0_dir) = cells[idx].backward_dir(
                &tape.dirs[idx],
                input.view(),
                dlayer_out.slice(s![.., dir * hs..(dir + 1) * hs]),
                walk,
                dy_h_n.index_axis(Axis(0), idx),
                &mut dinput,
            );
            grads[idx] = Some(g);
            dh0.index_axis_mut(Axis(0), idx).assign(&dh0_dir);
        }
        dlayer_out = dinput;
    }
    let dx = from_rows(dlayer_out, seq, batch, "dx")?;
    Ok(StackGrads {
        dx,
        dh0,
        cells: grads.into_iter().flatten().collect(),
    })
}
