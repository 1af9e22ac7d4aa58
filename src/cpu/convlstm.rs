//! CPU reference of Keras 3 `ConvLSTM2D` (`data_format="channels_last"`): sizes, parameters,
//! the forward pass, and the tape the backward pass (in `convlstm_backward.rs`) consumes.
//!
//! Semantics follow `CONVENTIONS.md` §2: `x` is `(B, T, rows, cols, Cin)`, the kernel is
//! `(kh, kw, Cin, 4F)`, the recurrent kernel `(kh, kw, F, 4F)`, the bias `(4F)`, and the gates
//! are blocks `i, f, c, o` of size F on the last axis. The input convolution uses the layer's
//! strides, padding and dilation; the recurrent one always uses stride 1, "same", no dilation.
//! The bias is added once.
//!
//! Internally every spatial tensor is a `(pixels, channels)` row matrix whose rows run over
//! `(step, b, y, x)`, with steps in processing order (reversed input time when
//! `go_backwards`). One step's `B·Ho·Wo` rows are then a contiguous block, the input
//! convolution of all steps is a single `im2col` + matmul, and the weight gradients are
//! single matmuls over all rows (the same plan as the GPU kernels).

use ndarray::{Array1, Array2, Array4, Array5, ArrayView4, ArrayView5, linalg, s};

use super::common::{Filler, cast_array, check_shape};
use super::conv::{
    ConvGeom, kernel_matrix, rows_to_seq, rows_to_state, seq_to_rows, state_to_rows,
};
use super::real::{Real, hard_sigmoid, relu, sigmoid, tanh};
use crate::error::{Error, Result};
use crate::limits;

pub use super::convlstm_backward::{convlstm_backward, convlstm_loss};

/// Padding of the input convolution (Keras `padding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Output `ceil(len / stride)`; the TF rule puts any odd padding row/column at the
    /// bottom/right.
    Same,
    /// No padding: output `floor((len - dilated_kernel) / stride) + 1`.
    Valid,
}

/// An element-wise activation, with Keras 3 definitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `tanh(x)`, the default `activation`.
    Tanh,
    /// `max(x, 0)`.
    Relu,
    /// The logistic function, the default `recurrent_activation`.
    Sigmoid,
    /// Keras 3 `hard_sigmoid`: `relu6(x + 3) / 6` (not Keras 2's `0.2·x + 0.5`).
    HardSigmoid,
    /// The identity.
    Linear,
}

impl Activation {
    /// Parses a Keras activation name (`"tanh"`, `"relu"`, `"sigmoid"`, `"hard_sigmoid"`,
    /// `"linear"`); `Error::Config` for anything else.
    pub fn from_keras(name: &str) -> Result<Self> {
        Ok(match name {
            "tanh" => Self::Tanh,
            "relu" => Self::Relu,
            "sigmoid" => Self::Sigmoid,
            "hard_sigmoid" => Self::HardSigmoid,
            "linear" => Self::Linear,
            _ => {
                return Err(Error::Config(format!(
                    "activation {name:?} is not supported; expected one of tanh, relu, \
                     sigmoid, hard_sigmoid, linear"
                )));
            }
        })
    }

    /// Applies the activation to one value.
    pub fn apply<T: Real>(self, x: T) -> T {
        match self {
            Self::Tanh => tanh(x),
            Self::Relu => relu(x),
            Self::Sigmoid => sigmoid(x),
            Self::HardSigmoid => hard_sigmoid(x),
            Self::Linear => x,
        }
    }

    /// The derivative at the pre-activation `x`, given only the output `y = apply(x)`.
    ///
    /// Every supported activation's derivative is a function of its output, so the tape
    /// stores outputs only. At the kinks it takes the one-sided value PyTorch autograd
    /// uses: relu' = `[x > 0]`, hard_sigmoid' = 1/6 strictly inside `(-3, 3)`, else 0.
    pub fn derivative_from_output<T: Real>(self, y: T) -> T {
        let (zero, one) = (T::zero(), T::one());
        match self {
            Self::Tanh => one - y * y,
            Self::Relu => {
                if y > zero {
                    one
                } else {
                    zero
                }
            }
            Self::Sigmoid => y * (one - y),
            Self::HardSigmoid => {
                if y > zero && y < one {
                    one / T::from_f64(6.0)
                } else {
                    zero
                }
            }
            Self::Linear => one,
        }
    }
}

/// Output length, padding before and padding after of one axis of the input convolution.
/// `None` when a "valid" convolution does not fit (dilated kernel longer than the axis).
/// Uses saturating arithmetic so it never panics, even on dims `validate` would reject.
fn axis_geometry(
    len: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    padding: Padding,
) -> Option<(usize, usize, usize)> {
    // Saturating: an absurd kernel must reach the size checks, not overflow here.
    let eff = kernel
        .saturating_sub(1)
        .saturating_mul(dilation)
        .saturating_add(1);
    let stride = stride.max(1);
    match padding {
        Padding::Valid => (eff <= len).then(|| ((len - eff) / stride + 1, 0, 0)),
        Padding::Same => {
            let out = len.div_ceil(stride);
            let total = out
                .saturating_sub(1)
                .saturating_mul(stride)
                .saturating_add(eff)
                .saturating_sub(len);
            // TF rule: the smaller half goes before, the extra one after.
            Some((out, total / 2, total - total / 2))
        }
    }
}

/// Sizes and hyper-parameters of a `ConvLSTM2D` layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvLstmDims {
    /// Frame height of `x`.
    pub rows: usize,
    /// Frame width of `x`.
    pub cols: usize,
    /// Channels of `x` (`Cin`).
    pub in_channels: usize,
    /// `F`: channels of `h` and `c`, and the width of each gate block.
    pub filters: usize,
    /// `(kh, kw)`, shared by the input and the recurrent convolution.
    pub kernel: (usize, usize),
    /// Strides of the input convolution (the recurrent one always uses 1).
    pub strides: (usize, usize),
    /// Padding of the input convolution (the recurrent one always uses "same").
    pub padding: Padding,
    /// Dilation of the input convolution (the recurrent one has none).
    pub dilation: (usize, usize),
    /// Applied to the candidate `c` gate and to the cell before output (default `Tanh`).
    pub activation: Activation,
    /// Applied to the `i`, `f`, `o` gates (default `Sigmoid`).
    pub recurrent_activation: Activation,
}

impl ConvLstmDims {
    /// Dims with the Keras defaults: strides 1, padding "valid", no dilation, tanh, sigmoid.
    pub fn new(
        rows: usize,
        cols: usize,
        in_channels: usize,
        filters: usize,
        kernel: (usize, usize),
    ) -> Self {
        Self {
            rows,
            cols,
            in_channels,
            filters,
            kernel,
            strides: (1, 1),
            padding: Padding::Valid,
            dilation: (1, 1),
            activation: Activation::Tanh,
            recurrent_activation: Activation::Sigmoid,
        }
    }

    /// Output frame size `(Ho, Wo)` of the input convolution (TF rule), which is also the
    /// size of `h` and `c`. `Error::Config` when a "valid" dilated kernel
    /// (`(k-1)·dilation + 1`) is larger than the frame.
    pub fn out_hw(&self) -> Result<(usize, usize)> {
        let axes = [
            (
                "rows",
                self.rows,
                self.kernel.0,
                self.strides.0,
                self.dilation.0,
            ),
            (
                "cols",
                self.cols,
                self.kernel.1,
                self.strides.1,
                self.dilation.1,
            ),
        ];
        let mut out = [0; 2];
        for (o, (name, len, k, st, dl)) in out.iter_mut().zip(axes) {
            *o = axis_geometry(len, k, st, dl, self.padding)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "padding \"valid\": the dilated kernel spans {} {name} (kernel {k}, \
                         dilation {dl}) but the frame has only {len} {name}",
                        k.saturating_sub(1).saturating_mul(dl) + 1
                    ))
                })?
                .0;
        }
        Ok((out[0], out[1]))
    }

    /// Padding of the input convolution, `((top, bottom), (left, right))`; all 0 for
    /// "valid". With "same", an odd total puts the extra row/column at the bottom/right.
    pub fn input_padding(&self) -> ((usize, usize), (usize, usize)) {
        let pad = |len, k, st, dl| {
            axis_geometry(len, k, st, dl, self.padding).map_or((0, 0), |(_, a, b)| (a, b))
        };
        (
            pad(self.rows, self.kernel.0, self.strides.0, self.dilation.0),
            pad(self.cols, self.kernel.1, self.strides.1, self.dilation.1),
        )
    }

    /// Checks that every size is at least 1, that strides > 1 and dilation > 1 are not
    /// combined (Keras forbids it), and that the input convolution fits (`out_hw`).
    /// `Error::Config` otherwise, naming the offending values.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("rows", self.rows),
            ("cols", self.cols),
            ("in_channels", self.in_channels),
            ("filters", self.filters),
            ("kernel height", self.kernel.0),
            ("kernel width", self.kernel.1),
            ("stride height", self.strides.0),
            ("stride width", self.strides.1),
            ("dilation height", self.dilation.0),
            ("dilation width", self.dilation.1),
        ] {
            if v == 0 {
                return Err(Error::Config(format!("{name} is 0; it must be at least 1")));
            }
        }
        let strided = self.strides.0 > 1 || self.strides.1 > 1;
        let dilated = self.dilation.0 > 1 || self.dilation.1 > 1;
        if strided && dilated {
            return Err(Error::Config(format!(
                "strides {:?} and dilation_rate {:?}: Keras does not allow strides > 1 \
                 together with dilation_rate > 1",
                self.strides, self.dilation
            )));
        }
        let (ho, wo) = self.out_hw()?;
        // Sizes in checked arithmetic, against the host-memory cap, before any allocation.
        let (kh, kw) = self.kernel;
        let what = "ConvLSTM2D parameter count";
        let g = limits::count(what, &[4, self.filters])?;
        let taps = limits::count(what, &[kh, kw])?;
        let chans = limits::sum(what, &[self.in_channels, self.filters])?;
        let params = limits::sum(what, &[limits::count(what, &[taps, chans, g])?, g])?;
        limits::check_host_f32(
            &format!(
                "ConvLSTM2D parameters ({params} floats: kernel {kh}x{kw}, in_channels {}, \
                 filters {})",
                self.in_channels, self.filters
            ),
            params,
        )?;
        // One sample's gates for one step, the smallest thing a forward pass holds.
        limits::host_f32(
            &format!(
                "one ConvLSTM2D step of one sample ({ho}x{wo} pixels x 4 x {} filters)",
                self.filters
            ),
            &[ho, wo, g],
        )?;
        limits::host_f32(
            &format!(
                "one input frame ({}x{} pixels x {} channels)",
                self.rows, self.cols, self.in_channels
            ),
            &[self.rows, self.cols, self.in_channels],
        )
        .map(|_| ())
    }

    /// Geometry of the input convolution over `x` frames.
    pub(crate) fn input_geom(&self) -> Result<ConvGeom> {
        let ((top, _), (left, _)) = self.input_padding();
        Ok(ConvGeom {
            in_h: self.rows,
            in_w: self.cols,
            channels: self.in_channels,
            kernel: self.kernel,
            strides: self.strides,
            dilation: self.dilation,
            pad: (top, left),
            out: self.out_hw()?,
        })
    }

    /// Geometry of the recurrent convolution over `h`: stride 1, "same", no dilation, so the
    /// padding before is `(k-1)/2` (the extra one of an even kernel goes after).
    pub(crate) fn recurrent_geom(&self) -> Result<ConvGeom> {
        let out = self.out_hw()?;
        Ok(ConvGeom {
            in_h: out.0,
            in_w: out.1,
            channels: self.filters,
            kernel: self.kernel,
            strides: (1, 1),
            dilation: (1, 1),
            pad: ((self.kernel.0 - 1) / 2, (self.kernel.1 - 1) / 2),
            out,
        })
    }

    /// Expected shapes of `(kernel, recurrent_kernel, bias)`.
    fn param_shapes(&self) -> ([usize; 4], [usize; 4], [usize; 1]) {
        let (kh, kw) = self.kernel;
        let g = 4 * self.filters;
        (
            [kh, kw, self.in_channels, g],
            [kh, kw, self.filters, g],
            [g],
        )
    }
}

/// Parameters of a `ConvLSTM2D` layer, Keras layout, gate blocks `i, f, c, o` of size F.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvLstmParams<T> {
    /// The sizes these parameters were made for.
    pub dims: ConvLstmDims,
    /// `(kh, kw, Cin, 4F)`.
    pub kernel: Array4<T>,
    /// `(kh, kw, F, 4F)`.
    pub recurrent_kernel: Array4<T>,
    /// `(4F)`, added once per step (on the input convolution).
    pub bias: Array1<T>,
}

impl<T: Real> ConvLstmParams<T> {
    /// All-zero parameters of the right shapes (`Error::Config` if `dims` is invalid).
    pub fn zeros(dims: ConvLstmDims) -> Result<Self> {
        dims.validate()?;
        let (k, rk, b) = dims.param_shapes();
        Ok(Self {
            dims,
            kernel: Array4::zeros(k),
            recurrent_kernel: Array4::zeros(rk),
            bias: Array1::zeros(b),
        })
    }

    /// Checks `dims` and every tensor's shape; `Error::Shape` names the tensor (`kernel`,
    /// `recurrent_kernel`, `bias`) with the expected and actual shapes.
    pub fn validate(&self) -> Result<()> {
        self.dims.validate()?;
        let (k, rk, b) = self.dims.param_shapes();
        check_shape("kernel", self.kernel.shape(), &k)?;
        check_shape("recurrent_kernel", self.recurrent_kernel.shape(), &rk)?;
        check_shape("bias", self.bias.shape(), &b)
    }

    /// Converts every tensor to another scalar type (e.g. an `f64` reference to `f32`).
    pub fn cast<U: Real>(&self) -> ConvLstmParams<U> {
        ConvLstmParams {
            dims: self.dims,
            kernel: cast_array(&self.kernel),
            recurrent_kernel: cast_array(&self.recurrent_kernel),
            bias: cast_array(&self.bias),
        }
    }

    /// Deterministic pseudo-random parameters, uniform in `[-scale, scale]`, from a seeded
    /// splitmix64 generator (drawn in `f64`, so `f32` and `f64` agree to `f32` precision).
    /// Filled in the order `kernel, recurrent_kernel, bias`, each in row-major order.
    pub fn random(dims: ConvLstmDims, seed: u64, scale: f64) -> Result<Self> {
        let mut filler = Filler::new(seed, scale)?;
        let mut p = Self::zeros(dims)?;
        filler.fill(p.kernel.iter_mut());
        filler.fill(p.recurrent_kernel.iter_mut());
        filler.fill(p.bias.iter_mut());
        Ok(p)
    }
}

/// What backward needs from a forward pass. Every matrix has one row per output pixel,
/// rows over `(step, b, y, x)` in processing order.
#[derive(Clone, Debug)]
pub struct ConvLstmTape<T> {
    /// Dims of the forward pass, to catch mismatched `params` in backward.
    pub(crate) dims: ConvLstmDims,
    /// `B`.
    pub(crate) batch: usize,
    /// `T`.
    pub(crate) seq_len: usize,
    /// Whether the input was consumed in reverse time order.
    pub(crate) go_backwards: bool,
    /// `x` frames in processing order, `(T·B·rows·cols, Cin)`: the `im2col` source of the
    /// kernel gradient (kept instead of the `kh·kw` times larger unrolled matrix).
    pub(crate) frames: Array2<T>,
    /// Gates after their activation, `[i|f|c|o]`, `(T·B·Ho·Wo, 4F)`.
    pub(crate) gates: Array2<T>,
    /// `activation(c_t)`, `(T·B·Ho·Wo, F)`.
    pub(crate) act_c: Array2<T>,
    /// `c_{t-1}` of each step, `(T·B·Ho·Wo, F)`.
    pub(crate) c_prev: Array2<T>,
    /// `h_{t-1}` of each step, `(T·B·Ho·Wo, F)`: the `im2col` source of the recurrent
    /// kernel gradient.
    pub(crate) h_prev: Array2<T>,
}

impl<T> ConvLstmTape<T> {
    /// Dims of the forward pass that recorded this tape.
    pub fn dims(&self) -> ConvLstmDims {
        self.dims
    }

    /// Batch size `B`.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Sequence length `T`.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Whether the forward pass ran with `go_backwards`.
    pub fn go_backwards(&self) -> bool {
        self.go_backwards
    }
}

/// Result of `convlstm_forward`.
#[derive(Clone, Debug)]
pub struct ConvLstmForward<T> {
    /// `(B, T, Ho, Wo, F)`: `h` after every step, in processing order (Keras
    /// `return_sequences=True`; the last-step-only output is `out[:, T-1]`, equal to `h_n`).
    pub out: Array5<T>,
    /// `(B, Ho, Wo, F)`: `h` after the last processed step.
    pub h_n: Array4<T>,
    /// `(B, Ho, Wo, F)`: `c` after the last processed step.
    pub c_n: Array4<T>,
    /// Saved activations for `convlstm_backward`.
    pub tape: ConvLstmTape<T>,
}

/// Gradients from `convlstm_backward`, shaped like the corresponding inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvLstmGrads<T> {
    /// `(B, T, rows, cols, Cin)`, in input time order (not processing order).
    pub dx: Array5<T>,
    /// `(B, Ho, Wo, F)`.
    pub dh0: Array4<T>,
    /// `(B, Ho, Wo, F)`.
    pub dc0: Array4<T>,
    /// `(kh, kw, Cin, 4F)`.
    pub kernel: Array4<T>,
    /// `(kh, kw, F, 4F)`.
    pub recurrent_kernel: Array4<T>,
    /// `(4F)`.
    pub bias: Array1<T>,
}

/// Checks the inputs of a forward pass (shared by the CPU and GPU backends) and returns
/// `(B, T)`. `x` must be `(B, T, rows, cols, Cin)` with `B, T ≥ 1` and `h0`, `c0`
/// `(B, Ho, Wo, F)`; `Error::Shape` otherwise, naming the tensor, the value and the limit.
pub fn check_inputs(
    d: &ConvLstmDims,
    x: &[usize],
    h0: &[usize],
    c0: &[usize],
) -> Result<(usize, usize)> {
    let &[batch, seq, rows, cols, ch] = x else {
        return Err(Error::Shape(format!(
            "x has shape {x:?}; expected (B, T, rows, cols, Cin)"
        )));
    };
    if batch == 0 || seq == 0 {
        return Err(Error::Shape(format!(
            "x has shape {x:?}; batch and seq_len must both be at least 1"
        )));
    }
    if (rows, cols) != (d.rows, d.cols) {
        return Err(Error::Shape(format!(
            "x has {rows}x{cols} frames (shape {x:?}); the dims say {}x{}",
            d.rows, d.cols
        )));
    }
    if ch != d.in_channels {
        return Err(Error::Shape(format!(
            "x has {ch} channels (shape {x:?}); in_channels is {}",
            d.in_channels
        )));
    }
    let (ho, wo) = d.out_hw()?;
    check_shape("h0", h0, &[batch, ho, wo, d.filters])?;
    check_shape("c0", c0, &[batch, ho, wo, d.filters])?;
    // The gates of every step, the largest tensor a forward pass keeps, before any exists.
    crate::limits::host_f32(
        &format!(
            "the gates (B {batch} x T {seq} x {ho}x{wo} pixels x 4 x {} filters)",
            d.filters
        ),
        &[batch, seq, ho, wo, 4, d.filters],
    )?;
    Ok((batch, seq))
}

/// `ConvLSTM2D` forward pass (Keras 3 semantics, `return_sequences=True`,
/// `return_state=True`).
///
/// `x`: `(B, T, rows, cols, Cin)`; `h0`, `c0`: `(B, Ho, Wo, F)`. With `go_backwards` the
/// steps consume `x[:, T-1], …, x[:, 0]` and `out` stays in that processing order.
///
/// Errors: `Error::Config` for invalid dims, `Error::Shape` for mismatched parameter or input
/// shapes or `B = 0` / `T = 0`.
pub fn convlstm_forward<T: Real>(
    p: &ConvLstmParams<T>,
    x: ArrayView5<T>,
    h0: ArrayView4<T>,
    c0: ArrayView4<T>,
    go_backwards: bool,
) -> Result<ConvLstmForward<T>> {
    p.validate()?;
    let d = p.dims;
    let (batch, seq) = check_inputs(&d, x.shape(), h0.shape(), c0.shape())?;
    let (gin, grec) = (d.input_geom()?, d.recurrent_geom()?);
    let (ho, wo) = gin.out;
    let (f, step_rows) = (d.filters, batch * gin.out_pixels());
    let (act, rec) = (d.activation, d.recurrent_activation);

    // The input convolution does not depend on the recurrence: all T·B frames are one
    // im2col and one matmul, with the bias folded in here once.
    let frames = seq_to_rows(x, go_backwards)?;
    let mut gates = gin.im2col(frames.view()).dot(&kernel_matrix(&p.kernel)?) + &p.bias;
    let rk = kernel_matrix(&p.recurrent_kernel)?;

    let rows = seq * step_rows;
    let mut act_c = Array2::zeros((rows, f));
    let mut c_prev = Array2::zeros((rows, f));
    let mut h_prev = Array2::zeros((rows, f));
    let mut out = Array2::zeros((rows, f));
    let mut h = state_to_rows(h0)?;
    let mut c = state_to_rows(c0)?;
    for step in 0..seq {
        let r = step * step_rows..(step + 1) * step_rows;
        h_prev.slice_mut(s![r.clone(), ..]).assign(&h);
        c_prev.slice_mut(s![r.clone(), ..]).assign(&c);
        // gates += conv(h, recurrent_kernel), in place in the tape, then activated in place.
        let mut g = gates.slice_mut(s![r.clone(), ..]);
        linalg::general_mat_mul(T::one(), &grec.im2col(h.view()), &rk, T::one(), &mut g);
        let mut a = act_c.slice_mut(s![r.clone(), ..]);
        for (px, mut grow) in g.outer_iter_mut().enumerate() {
            for (k, v) in grow.iter_mut().enumerate() {
                *v = if k / f == 2 {
                    act.apply(*v)
                } else {
                    rec.apply(*v)
                };
            }
            for j in 0..f {
                let (i, fg, cc, o) = (grow[j], grow[f + j], grow[2 * f + j], grow[3 * f + j]);
                let cn = fg * c[[px, j]] + i * cc;
                let ac = act.apply(cn);
                c[[px, j]] = cn;
                a[[px, j]] = ac;
                h[[px, j]] = o * ac;
            }
        }
        out.slice_mut(s![r, ..]).assign(&h);
    }

    let out = rows_to_seq(out, (batch, seq, ho, wo), false)?;
    let state = [batch, ho, wo, f];
    Ok(ConvLstmForward {
        out,
        h_n: rows_to_state(h, state)?,
        c_n: rows_to_state(c, state)?,
        tape: ConvLstmTape {
            dims: d,
            batch,
            seq_len: seq,
            go_backwards,
            frames,
            gates,
            act_c,
            c_prev,
            h_prev,
        },
    })
}
