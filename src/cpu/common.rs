//! Helpers shared by every cell of the CPU reference (LSTM, GRU, Elman RNN): input checks,
//! packed-length handling, the time walk of one direction, a reproducible generator, and the
//! `(T·B, ·)` row layout conversions.

use ndarray::{Array, Array1, Array2, Array3, ArrayView3, Dimension, s};

use super::lstm::LstmDims;
use super::real::Real;
use crate::error::{Error, Result};

/// splitmix64: a tiny, well-mixed 64-bit generator, so `random` is reproducible across
/// platforms and versions without depending on the `rand` crate.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-scale, scale)`, from the top 53 bits so every value is an exact `f64`.
    pub(crate) fn uniform(&mut self, scale: f64) -> f64 {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (2.0 * u - 1.0) * scale
    }
}

/// Rejects a `scale` for `random` that is negative or not finite (`Error::Config`).
pub(crate) fn check_scale(scale: f64) -> Result<()> {
    if scale.is_finite() && scale >= 0.0 {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "scale {scale} must be finite and non-negative"
        )))
    }
}

/// Fails with `Error::Shape` naming `name` if `got != expected`.
pub(crate) fn check_shape(name: &str, got: &[usize], expected: &[usize]) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "{name}: expected shape {expected:?}, got {got:?}"
        )))
    }
}

/// Validates the dims of a cell without projection (GRU, RNN): the LSTM rules plus
/// `proj_size == 0`, since only the LSTM has a projection (`Error::Config` otherwise).
pub(crate) fn validate_unprojected(d: &LstmDims, cell: &str, gates: usize) -> Result<()> {
    if d.proj_size != 0 {
        return Err(Error::Config(format!(
            "proj_size is {}; {cell} has no projection, so it must be 0",
            d.proj_size
        )));
    }
    d.validate_cell(gates)
}

/// Checks that the parameter list has one cell per layer-direction (`Error::Shape`).
pub(crate) fn check_cell_count(d: &LstmDims, got: usize) -> Result<()> {
    if got == d.cell_count() {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "expected {} cells (num_layers {} x directions {}), got {got}",
            d.cell_count(),
            d.num_layers,
            d.directions()
        )))
    }
}

/// PyTorch state_dict suffix of cell `layer·D + dir`, e.g. `l1_reverse`, so errors name
/// tensors the way users see them in checkpoints.
pub(crate) fn torch_suffix(d: &LstmDims, cell: usize) -> String {
    let (layer, dir) = (cell / d.directions(), cell % d.directions());
    format!("l{layer}{}", if dir == 1 { "_reverse" } else { "" })
}

/// Expected shapes `(w_ih, w_hh, bias)` of cell `cell` of a stack whose cells have `gates`
/// row blocks of size H (4 for the LSTM, 3 for GRU, 1 for the Elman RNN); `w_hh` has
/// `H_out` columns (`H` without projection).
pub(crate) fn cell_shapes(
    d: &LstmDims,
    cell: usize,
    gates: usize,
) -> ([usize; 2], [usize; 2], usize) {
    let g = gates * d.hidden_size;
    let layer = cell / d.directions();
    ([g, d.layer_input_size(layer)], [g, d.out_size()], g)
}

/// Checks the shapes of one cell's `[w_ih, w_hh, b_ih, b_hh]`, naming them like
/// PyTorch (`weight_hh_l1_reverse`, ...) on mismatch (`Error::Shape`).
pub(crate) fn check_cell_shapes(
    d: &LstmDims,
    cell: usize,
    gates: usize,
    tensors: [&[usize]; 4],
) -> Result<()> {
    let sfx = torch_suffix(d, cell);
    let (ih, hh, b) = cell_shapes(d, cell, gates);
    check_shape(&format!("weight_ih_{sfx}"), tensors[0], &ih)?;
    check_shape(&format!("weight_hh_{sfx}"), tensors[1], &hh)?;
    check_shape(&format!("bias_ih_{sfx}"), tensors[2], &[b])?;
    check_shape(&format!("bias_hh_{sfx}"), tensors[3], &[b])
}

/// Resolves `lengths` (None = all `T`) and checks count and range (`Error::Config`).
pub(crate) fn resolve_lengths(
    lengths: Option<&[usize]>,
    seq: usize,
    batch: usize,
) -> Result<Vec<usize>> {
    let Some(l) = lengths else {
        return Ok(vec![seq; batch]);
    };
    if l.len() != batch {
        return Err(Error::Config(format!(
            "lengths has {} entries; batch size is {batch}",
            l.len()
        )));
    }
    if let Some((b, &len)) = l
        .iter()
        .enumerate()
        .find(|&(_, &len)| len == 0 || len > seq)
    {
        return Err(Error::Config(format!(
            "lengths[{b}] = {len} is out of range; it must be in 1..={seq} (seq_len)"
        )));
    }
    Ok(l.to_vec())
}

/// Checks `x` `(T, B, I)` against the dims (`T, B ≥ 1`, `I = input_size`) and `h0` against
/// `(L·D, B, H_out)` (`Error::Shape`); returns `(T, B)`.
pub(crate) fn check_x_h0(d: &LstmDims, x: &[usize], h0: &[usize]) -> Result<(usize, usize)> {
    let [seq, batch, width] = x else {
        return Err(Error::Shape(format!(
            "x has shape {x:?}; expected (T, B, I)"
        )));
    };
    let (seq, batch, width) = (*seq, *batch, *width);
    if seq == 0 || batch == 0 {
        return Err(Error::Shape(format!(
            "x has shape {x:?}; seq_len and batch must both be at least 1"
        )));
    }
    if width != d.input_size {
        return Err(Error::Shape(format!(
            "x has {width} features (shape {x:?}); input_size is {}",
            d.input_size
        )));
    }
    check_shape("h0", h0, &[d.cell_count(), batch, d.out_size()])?;
    // The sequence tensors every backend allocates, checked before any of them exists.
    crate::limits::host_f32(
        &format!(
            "the output sequence (T {seq} x B {batch} x {} directions x {} features)",
            d.directions(),
            d.out_size()
        ),
        &[seq, batch, d.directions(), d.out_size()],
    )?;
    crate::limits::host_f32(
        &format!(
            "one layer-direction's gates (T {seq} x B {batch} x up to 4 gates x hidden_size {})",
            d.hidden_size
        ),
        &[seq, batch, 4, d.hidden_size],
    )?;
    Ok((seq, batch))
}

/// How one direction walks a `(T·B, ·)` sequence: batch size, time direction, and which
/// steps each batch entry actually has. Shared by forward and backward so both agree on it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Walk<'a> {
    /// `B`: rows per time step.
    pub(crate) batch: usize,
    /// Whether this is the reverse direction (forward pass walks `t = T-1 .. 0`).
    pub(crate) reverse: bool,
    /// Valid length of each sequence.
    pub(crate) lengths: &'a [usize],
}

impl Walk<'_> {
    /// Time index of the `step`-th step of the forward pass, out of `seq` steps.
    pub(crate) fn time(&self, step: usize, seq: usize) -> usize {
        if self.reverse { seq - 1 - step } else { step }
    }

    /// Batch entries that have a real (unpadded) step at time `t`.
    pub(crate) fn valid(&self, t: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.batch).filter(move |&b| t < self.lengths[b])
    }
}

/// `(T, B, F)` as the `(T·B, F)` row matrix used internally (row `t·B + b`). Iterating in
/// logical order makes this correct for any memory layout of the view.
pub(crate) fn to_rows<T: Real>(a: ArrayView3<T>, name: &str) -> Result<Array2<T>> {
    let (seq, batch, width) = a.dim();
    Array2::from_shape_vec((seq * batch, width), a.iter().copied().collect())
        .map_err(|e| Error::Shape(format!("{name}: {e}")))
}

/// The inverse of `to_rows`: `(T·B, F)` back to `(T, B, F)`.
pub(crate) fn from_rows<T: Real>(
    a: Array2<T>,
    seq: usize,
    batch: usize,
    name: &str,
) -> Result<Array3<T>> {
    let width = a.ncols();
    a.into_shape_with_order((seq, batch, width))
        .map_err(|e| Error::Shape(format!("{name}: {e}")))
}

/// `dy_out` as `(T·B, F)` rows with padded steps zeroed, so they contribute nothing
/// (PyTorch ignores `dy_out` there).
pub(crate) fn valid_rows<T: Real>(dy_out: ArrayView3<T>, lengths: &[usize]) -> Array2<T> {
    let (seq, batch, width) = dy_out.dim();
    let mut rows = Array2::<T>::zeros((seq * batch, width));
    for t in 0..seq {
        for b in (0..batch).filter(|&b| t < lengths[b]) {
            rows.row_mut(t * batch + b)
                .assign(&dy_out.slice(s![t, b, ..]));
        }
    }
    rows
}

/// `Σ out⊙dy_out` over valid steps `t < len_b` only, plus `Σ h_n⊙dy_h_n`: the loss every
/// backward pass differentiates (the LSTM adds its `c_n` term).
///
/// # Panics
/// If a `dy` does not have the shape of the tensor it multiplies (a test helper, so a
/// mismatch is a bug in the caller, not bad user input).
pub(crate) fn loss_out_h<T: Real>(
    out: &Array3<T>,
    h_n: &Array3<T>,
    lengths: &[usize],
    dy_out: ArrayView3<T>,
    dy_h_n: ArrayView3<T>,
) -> T {
    assert_eq!(dy_out.shape(), out.shape(), "dy_out shape must match out");
    assert_eq!(dy_h_n.shape(), h_n.shape(), "dy_h_n shape must match h_n");
    let mut total = T::zero();
    for (t, (o, dy)) in out.outer_iter().zip(dy_out.outer_iter()).enumerate() {
        for (b, (orow, dyrow)) in o.outer_iter().zip(dy.outer_iter()).enumerate() {
            if t < lengths[b] {
                total = total + orow.dot(&dyrow);
            }
        }
    }
    total + dot3(h_n, &dy_h_n)
}

/// `Σ a⊙b` of two equally shaped 3-D tensors.
pub(crate) fn dot3<T: Real>(a: &Array3<T>, b: &ArrayView3<T>) -> T {
    a.iter().zip(b.iter()).map(|(&u, &v)| u * v).sum::<T>()
}

/// The four tensors every recurrent cell has in PyTorch layout (`w_ih, w_hh, b_ih, b_hh`),
/// so the params impls of the LSTM, GRU and Elman RNN share their zeros / validate / cast /
/// random logic. The LSTM's optional `w_hr` is handled by its own impl.
pub(crate) trait CellCore<T>: Sized {
    /// A cell from its four core tensors (the LSTM's `w_hr` is `None`).
    fn from_core(w_ih: Array2<T>, w_hh: Array2<T>, b_ih: Array1<T>, b_hh: Array1<T>) -> Self;
    /// `(w_ih, w_hh, b_ih, b_hh)`.
    fn core(&self) -> (&Array2<T>, &Array2<T>, &Array1<T>, &Array1<T>);
    /// `(w_ih, w_hh, b_ih, b_hh)`, mutably.
    fn core_mut(
        &mut self,
    ) -> (
        &mut Array2<T>,
        &mut Array2<T>,
        &mut Array1<T>,
        &mut Array1<T>,
    );
}

/// Implements `CellCore` for a params struct with fields `w_ih, w_hh, b_ih, b_hh` (plus any
/// extra fields given as `field: value`, used by `from_core`).
macro_rules! impl_cell_core {
    ($ty:ident $(, $extra:ident: $val:expr)*) => {
        impl<T> $crate::cpu::common::CellCore<T> for $ty<T> {
            fn from_core(
                w_ih: ndarray::Array2<T>,
                w_hh: ndarray::Array2<T>,
                b_ih: ndarray::Array1<T>,
                b_hh: ndarray::Array1<T>,
            ) -> Self {
                Self { w_ih, w_hh, b_ih, b_hh $(, $extra: $val)* }
            }

            fn core(
                &self,
            ) -> (&ndarray::Array2<T>, &ndarray::Array2<T>, &ndarray::Array1<T>, &ndarray::Array1<T>)
            {
                (&self.w_ih, &self.w_hh, &self.b_ih, &self.b_hh)
            }

            fn core_mut(
                &mut self,
            ) -> (
                &mut ndarray::Array2<T>,
                &mut ndarray::Array2<T>,
                &mut ndarray::Array1<T>,
                &mut ndarray::Array1<T>,
            ) {
                (&mut self.w_ih, &mut self.w_hh, &mut self.b_ih, &mut self.b_hh)
            }
        }
    };
}
pub(crate) use impl_cell_core;

/// All-zero cell `cell` of a stack whose cells have `gates` row blocks of size H.
pub(crate) fn zero_cell<T: Real, C: CellCore<T>>(d: &LstmDims, cell: usize, gates: usize) -> C {
    let (ih, hh, b) = cell_shapes(d, cell, gates);
    C::from_core(
        Array2::zeros(ih),
        Array2::zeros(hh),
        Array1::zeros(b),
        Array1::zeros(b),
    )
}

/// One all-zero cell per layer-direction (see `zero_cell`).
pub(crate) fn zero_cells<T: Real, C: CellCore<T>>(d: &LstmDims, gates: usize) -> Vec<C> {
    (0..d.cell_count())
        .map(|cell| zero_cell(d, cell, gates))
        .collect()
}

/// Checks the cell count and, cell by cell, the four core shapes (named like PyTorch) and
/// then `extra(index, cell)` for whatever else a cell type requires.
pub(crate) fn check_cells<T, C: CellCore<T>>(
    d: &LstmDims,
    gates: usize,
    cells: &[C],
    mut extra: impl FnMut(usize, &C) -> Result<()>,
) -> Result<()> {
    check_cell_count(d, cells.len())?;
    for (i, c) in cells.iter().enumerate() {
        let (w_ih, w_hh, b_ih, b_hh) = c.core();
        let shapes = [w_ih.shape(), w_hh.shape(), b_ih.shape(), b_hh.shape()];
        check_cell_shapes(d, i, gates, shapes)?;
        extra(i, c)?;
    }
    Ok(())
}

/// Every entry converted to another scalar type through `f64`.
pub(crate) fn cast_array<T: Real, U: Real, D: Dimension>(a: &Array<T, D>) -> Array<U, D> {
    a.mapv(|v| U::from_f64(v.as_f64()))
}

/// A cell's core tensors converted to another scalar type (the LSTM's `w_hr` is `None`).
pub(crate) fn cast_cell<T: Real, U: Real, A: CellCore<T>, B: CellCore<U>>(c: &A) -> B {
    let (w_ih, w_hh, b_ih, b_hh) = c.core();
    B::from_core(
        cast_array(w_ih),
        cast_array(w_hh),
        cast_array(b_ih),
        cast_array(b_hh),
    )
}

/// Fills tensors with the reproducible uniform values of a params type's `random`.
pub(crate) struct Filler {
    rng: SplitMix64,
    scale: f64,
}

impl Filler {
    /// A filler seeded with `seed`, drawing uniformly in `[-scale, scale)` (`Error::Config`
    /// for a negative or non-finite `scale`).
    pub(crate) fn new(seed: u64, scale: f64) -> Result<Self> {
        check_scale(scale)?;
        Ok(Self {
            rng: SplitMix64(seed),
            scale,
        })
    }

    /// Overwrites every entry, in iteration order, with the next value (drawn in `f64`).
    pub(crate) fn fill<'a, T: Real + 'a>(&mut self, it: impl Iterator<Item = &'a mut T>) {
        it.for_each(|v| *v = T::from_f64(self.rng.uniform(self.scale)));
    }

    /// Fills a cell's `w_ih, w_hh, b_ih` and, if `with_b_hh`, `b_hh`, in that order.
    pub(crate) fn fill_core<T: Real, C: CellCore<T>>(&mut self, c: &mut C, with_b_hh: bool) {
        let (w_ih, w_hh, b_ih, b_hh) = c.core_mut();
        self.fill(w_ih.iter_mut());
        self.fill(w_hh.iter_mut());
        self.fill(b_ih.iter_mut());
        if with_b_hh {
            self.fill(b_hh.iter_mut());
        }
    }
}

/// Implements the public accessors of a tape that wraps an `HTape` (GRU, Elman RNN).
macro_rules! h_tape_accessors {
    ($ty:ident) => {
        impl<T> $ty<T> {
            /// Sizes of the stack that produced this tape.
            pub fn dims(&self) -> $crate::cpu::lstm::LstmDims {
                self.0.dims
            }

            /// Sequence length `T` of the forward pass.
            pub fn seq_len(&self) -> usize {
                self.0.seq_len
            }

            /// Batch size `B` of the forward pass.
            pub fn batch(&self) -> usize {
                self.0.batch
            }

            /// The valid length of each sequence (all equal to `T` when `lengths` was `None`).
            pub fn lengths(&self) -> &[usize] {
                &self.0.lengths
            }
        }
    };
}
pub(crate) use h_tape_accessors;
