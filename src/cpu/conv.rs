//! 2-D convolution as matrix products, for the ConvLSTM reference: `im2col` unrolls every
//! receptive field of a batch of channels-last frames into one row, so a convolution becomes
//! `im2col(x) · K` with the kernel `(kh, kw, C, O)` read as a `(kh·kw·C, O)` matrix, and its
//! transpose `col2im` scatter-adds such rows back onto the frames (the gradient of `im2col`).
//!
//! Frames are stored as `(N·H·W, C)` row matrices (row `(n·H + y)·W + x`), the same row layout
//! the ConvLSTM keeps its states and gates in, so no reshuffling is needed between the
//! convolutions and the element-wise gate math.

use ndarray::{Array2, Array4, Array5, ArrayView2, ArrayView4, ArrayView5, Axis};

use super::real::Real;
use crate::error::{Error, Result};

/// Geometry of one cross-correlation (no kernel flip) over channels-last frames:
/// `y[n, oy, ox, :] = Σ_{a, b, ch} xpad[n, oy·sh + a·dh, ox·sw + b·dw, ch] · K[a, b, ch, :]`,
/// where `xpad` is `x` with `pad.0` zero rows above and `pad.1` zero columns on the left.
/// Padding at the bottom/right is implied by `out`: taps past the frame read as zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConvGeom {
    /// Frame height `H`.
    pub(crate) in_h: usize,
    /// Frame width `W`.
    pub(crate) in_w: usize,
    /// Channels `C` of the input frames.
    pub(crate) channels: usize,
    /// Kernel size `(kh, kw)`.
    pub(crate) kernel: (usize, usize),
    /// Strides `(sh, sw)`.
    pub(crate) strides: (usize, usize),
    /// Dilation `(dh, dw)`: the gap between kernel taps.
    pub(crate) dilation: (usize, usize),
    /// Zero rows above and columns left of the frame.
    pub(crate) pad: (usize, usize),
    /// Output size `(Ho, Wo)`.
    pub(crate) out: (usize, usize),
}

impl ConvGeom {
    /// Width of one unrolled row: `kh·kw·C`, the row count of the reshaped kernel.
    pub(crate) fn patch_len(&self) -> usize {
        self.kernel.0 * self.kernel.1 * self.channels
    }

    /// Pixels per input frame.
    fn in_pixels(&self) -> usize {
        self.in_h * self.in_w
    }

    /// Pixels per output frame.
    pub(crate) fn out_pixels(&self) -> usize {
        self.out.0 * self.out.1
    }

    /// Input coordinate read by output coordinate `o` through kernel tap `k` on one axis,
    /// or `None` where it falls into the padding. Computed in signed-free form (`o·s + k·d`
    /// is the padded coordinate) so no negative intermediate is ever formed.
    fn source(
        o: usize,
        k: usize,
        stride: usize,
        dilation: usize,
        pad: usize,
        len: usize,
    ) -> Option<usize> {
        (o * stride + k * dilation)
            .checked_sub(pad)
            .filter(|&i| i < len)
    }

    /// Calls `f(col_offset, in_pixel)` for every kernel tap of output pixel `(oy, ox)` that
    /// lands inside the frame: `col_offset` is where the tap's `C` values sit in the unrolled
    /// row, `in_pixel` is the frame pixel (`y·W + x`) it reads. Shared by `im2col` and
    /// `col2im` so the two are exact transposes of each other by construction.
    fn for_taps(&self, oy: usize, ox: usize, mut f: impl FnMut(usize, usize)) {
        let (kh, kw) = self.kernel;
        for a in 0..kh {
            let Some(iy) = Self::source(
                oy,
                a,
                self.strides.0,
                self.dilation.0,
                self.pad.0,
                self.in_h,
            ) else {
                continue;
            };
            for b in 0..kw {
                if let Some(ix) = Self::source(
                    ox,
                    b,
                    self.strides.1,
                    self.dilation.1,
                    self.pad.1,
                    self.in_w,
                ) {
                    f((a * kw + b) * self.channels, iy * self.in_w + ix);
                }
            }
        }
    }

    /// Unrolls `n` frames given as `(n·H·W, C)` rows into `(n·Ho·Wo, kh·kw·C)`; taps in the
    /// padding stay 0.
    pub(crate) fn im2col<T: Real>(&self, frames: ArrayView2<T>) -> Array2<T> {
        let ch = self.channels;
        let n = frames.nrows() / self.in_pixels();
        let src = frames.as_standard_layout();
        let src = src.as_slice().expect("standard layout is contiguous");
        let width = self.patch_len();
        let mut cols = Array2::<T>::zeros((n * self.out_pixels(), width));
        let dst = cols.as_slice_mut().expect("fresh array is contiguous");
        for frame in 0..n {
            let in_base = frame * self.in_pixels();
            for oy in 0..self.out.0 {
                for ox in 0..self.out.1 {
                    let row = (frame * self.out.0 + oy) * self.out.1 + ox;
                    let out_row = &mut dst[row * width..(row + 1) * width];
                    self.for_taps(oy, ox, |off, pix| {
                        let s = (in_base + pix) * ch;
                        out_row[off..off + ch].copy_from_slice(&src[s..s + ch]);
                    });
                }
            }
        }
        cols
    }

    /// The transpose of `im2col`: adds every unrolled row `(n·Ho·Wo, kh·kw·C)` back onto the
    /// frame pixels it was read from, giving `(n·H·W, C)`. Pixels read by several taps (kernel
    /// overlap) accumulate; pixels never read (skipped by a stride, or cut off by "valid")
    /// get 0.
    pub(crate) fn col2im<T: Real>(&self, cols: ArrayView2<T>) -> Array2<T> {
        let ch = self.channels;
        let width = self.patch_len();
        let n = cols.nrows() / self.out_pixels();
        let src = cols.as_standard_layout();
        let src = src.as_slice().expect("standard layout is contiguous");
        let mut frames = Array2::<T>::zeros((n * self.in_pixels(), ch));
        let dst = frames.as_slice_mut().expect("fresh array is contiguous");
        for frame in 0..n {
            let in_base = frame * self.in_pixels();
            for oy in 0..self.out.0 {
                for ox in 0..self.out.1 {
                    let row = (frame * self.out.0 + oy) * self.out.1 + ox;
                    let in_row = &src[row * width..(row + 1) * width];
                    self.for_taps(oy, ox, |off, pix| {
                        let d = (in_base + pix) * ch;
                        for (acc, &v) in dst[d..d + ch].iter_mut().zip(&in_row[off..off + ch]) {
                            *acc = *acc + v;
                        }
                    });
                }
            }
        }
        frames
    }
}

// ---------------------------------------------------------------------------------------
// Row layouts: channels-last tensors as `(pixels, channels)` matrices and back.

/// A `(B, T, H, W, C)` sequence as `(T·B·H·W, C)` rows in processing order (time reversed
/// when `reverse`). Iterates logically, so any memory layout of the view works.
pub(crate) fn seq_to_rows<T: Real>(a: ArrayView5<T>, reverse: bool) -> Result<Array2<T>> {
    let mut v = a.permuted_axes([1, 0, 2, 3, 4]);
    if reverse {
        v.invert_axis(Axis(0));
    }
    let ch = v.len_of(Axis(4));
    let rows = v.len() / ch.max(1);
    Array2::from_shape_vec((rows, ch), v.iter().copied().collect())
        .map_err(|e| Error::Shape(format!("sequence of shape {:?}: {e}", a.shape())))
}

/// The inverse of `seq_to_rows`: `(T·B·H·W, C)` rows back to `(B, T, H, W, C)`.
pub(crate) fn rows_to_seq<T: Real>(
    rows: Array2<T>,
    (b, t, h, w): (usize, usize, usize, usize),
    reverse: bool,
) -> Result<Array5<T>> {
    let c = rows.ncols();
    let mut a = rows
        .into_shape_with_order((t, b, h, w, c))
        .map_err(|e| Error::Shape(format!("sequence rows: {e}")))?;
    if reverse {
        a.invert_axis(Axis(0));
    }
    Ok(a.permuted_axes([1, 0, 2, 3, 4])
        .as_standard_layout()
        .into_owned())
}

/// A `(B, H, W, C)` state as `(B·H·W, C)` rows.
pub(crate) fn state_to_rows<T: Real>(a: ArrayView4<T>) -> Result<Array2<T>> {
    let ch = a.len_of(Axis(3));
    Array2::from_shape_vec((a.len() / ch.max(1), ch), a.iter().copied().collect())
        .map_err(|e| Error::Shape(format!("state of shape {:?}: {e}", a.shape())))
}

/// `(B·H·W, C)` rows back to a `(B, H, W, C)` state.
pub(crate) fn rows_to_state<T: Real>(rows: Array2<T>, shape: [usize; 4]) -> Result<Array4<T>> {
    rows.into_shape_with_order(shape)
        .map_err(|e| Error::Shape(format!("state rows: {e}")))
}

/// A `(kh, kw, C, 4F)` kernel as the `(kh·kw·C, 4F)` matrix `im2col` rows multiply.
pub(crate) fn kernel_matrix<T: Real>(k: &Array4<T>) -> Result<Array2<T>> {
    let (kh, kw, c, g) = k.dim();
    Array2::from_shape_vec((kh * kw * c, g), k.iter().copied().collect())
        .map_err(|e| Error::Shape(format!("kernel of shape {:?}: {e}", k.shape())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `<im2col(x), y> == <x, col2im(y)>` for random `x`, `y`: col2im is the exact adjoint,
    /// including asymmetric padding, strides and dilation.
    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        let g = ConvGeom {
            in_h: 5,
            in_w: 4,
            channels: 2,
            kernel: (3, 2),
            strides: (2, 1),
            dilation: (1, 2),
            pad: (1, 0),
            out: (3, 3),
        };
        let mut s = 1.0f64;
        let mut next = || {
            s = (s * 7.31).fract() + 0.1;
            s - 0.5
        };
        let x = Array2::from_shape_simple_fn((2 * 20, 2), &mut next);
        let y = Array2::from_shape_simple_fn((2 * 9, g.patch_len()), &mut next);
        let cols = g.im2col(x.view());
        let back = g.col2im(y.view());
        let lhs: f64 = cols.iter().zip(y.iter()).map(|(a, b)| a * b).sum();
        let rhs: f64 = x.iter().zip(back.iter()).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-12, "{lhs} vs {rhs}");
        // Output (0, 0) with pad_top 1: tap row 0 is padding, tap (1, 0) reads pixel (0, 0).
        assert_eq!(cols[[0, 0]], 0.0);
        assert_eq!(cols[[0, 2 * 2]], x[[0, 0]]);
    }
}
