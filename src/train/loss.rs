//! Losses: the GPU version ([`GpuLoss`], recorded into a training step) and the CPU
//! reference ([`cpu_loss`], generic over f32/f64) with identical semantics.

use ndarray::{ArrayD, ArrayViewD, Axis};

use super::{StepRecorder, check_len};
use crate::context::Context;
use crate::cpu::{Real, sigmoid};
use crate::error::{Error, Result};
use crate::kernels::buffers;
use crate::kernels::loss::{self as kernel, LossBuffers, Pointwise};

/// Keras' `epsilon()`: probabilities are clamped to `[EPS, 1 - EPS]` before the logarithm.
pub const BCE_EPS: f32 = 1e-7;

/// Which loss; every loss is the mean over its terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// Mean squared error: `mean((p - y)²)`.
    Mse,
    /// Mean absolute error: `mean(|p - y|)`, gradient `sign(p - y)/N` with `sign(0) = 0`.
    Mae,
    /// Binary cross-entropy, mean over all elements. `from_logits: true` takes logits and uses
    /// the stable form `max(x,0) - x·y + ln(1 + e^{-|x|})`; `false` takes probabilities and
    /// clamps them to `[1e-7, 1 - 1e-7]` as Keras does (zero gradient outside that range).
    BinaryCrossEntropy {
        /// Whether predictions are logits (true) or probabilities (false).
        from_logits: bool,
    },
    /// Softmax cross-entropy over the last axis, mean over the rows (all other axes). Targets
    /// are class probabilities (one-hot included), as f32: `ℓ = -Σ_j y_j ln softmax(x)_j`.
    SoftmaxCrossEntropy,
}

/// (rows, classes) of a softmax cross-entropy over the last axis of `shape`.
fn rows_cols(shape: &[usize]) -> Result<(usize, usize)> {
    let cols = *shape.last().ok_or_else(|| {
        Error::Shape("softmax cross-entropy needs at least one axis (the classes)".into())
    })?;
    let n: usize = shape.iter().product();
    Ok((n.checked_div(cols).unwrap_or(0), cols))
}

fn element_count(shape: &[usize]) -> Result<usize> {
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::Limit(format!("loss shape {shape:?} overflows usize")))?;
    if n == 0 {
        return Err(Error::Shape(format!(
            "loss shape {shape:?} has no elements; a mean needs at least one"
        )));
    }
    Ok(n)
}

/// The loss and dL/dpred of `pred` against `target` (same shape), computed on the CPU.
///
/// The loss is accumulated in f64 whatever `T` is, so the reference is at least as exact as
/// the GPU's tree reduction; the gradient is computed element by element in `T`.
pub fn cpu_loss<T: Real>(
    kind: LossKind,
    pred: ArrayViewD<T>,
    target: ArrayViewD<T>,
) -> Result<(T, ArrayD<T>)> {
    if pred.shape() != target.shape() {
        return Err(Error::Shape(format!(
            "loss: prediction shape {:?} differs from target shape {:?}",
            pred.shape(),
            target.shape()
        )));
    }
    let n = element_count(pred.shape())?;
    let inv_n = T::from_f64(1.0 / n as f64);
    let mut grad = ArrayD::<T>::zeros(pred.raw_dim());
    let mut total = 0.0f64;
    if kind == LossKind::SoftmaxCrossEntropy {
        let (rows, cols) = rows_cols(pred.shape())?;
        let inv_r = T::from_f64(1.0 / rows as f64);
        let flat = |a: ArrayViewD<T>| -> Result<ndarray::Array2<T>> {
            a.as_standard_layout()
                .into_owned()
                .into_shape_with_order((rows, cols))
                .map_err(|e| Error::Shape(format!("softmax cross-entropy: {e}")))
        };
        let (x, y) = (flat(pred.view())?, flat(target.view())?);
        let mut g = ndarray::Array2::<T>::zeros((rows, cols));
        for ((xr, yr), mut gr) in x
            .axis_iter(Axis(0))
            .zip(y.axis_iter(Axis(0)))
            .zip(g.axis_iter_mut(Axis(0)))
        {
            let m = xr.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
            let sum_e: T = xr.iter().map(|&v| (v - m).exp()).sum();
            let s: T = yr.iter().copied().sum();
            let lse = m + sum_e.ln();
            for ((&xv, &yv), gv) in xr.iter().zip(yr.iter()).zip(gr.iter_mut()) {
                total += (yv * (lse - xv)).as_f64();
                *gv = ((xv - lse).exp() * s - yv) * inv_r;
            }
        }
        grad = g
            .into_shape_with_order(pred.raw_dim())
            .map_err(|e| Error::Shape(format!("softmax cross-entropy: {e}")))?;
        return Ok((T::from_f64(total / rows as f64), grad));
    }
    let two = T::from_f64(2.0);
    let eps = T::from_f64(f64::from(BCE_EPS));
    for ((&x, &y), g) in pred.iter().zip(target.iter()).zip(grad.iter_mut()) {
        let (l, d) = match kind {
            LossKind::Mse => ((x - y) * (x - y), two * (x - y)),
            LossKind::Mae => {
                let d = x - y;
                let s = if d > T::zero() {
                    T::one()
                } else if d < T::zero() {
                    -T::one()
                } else {
                    T::zero()
                };
                (d.abs(), s)
            }
            LossKind::BinaryCrossEntropy { from_logits: true } => {
                let l = x.max(T::zero()) - x * y + (-x.abs()).exp().ln_1p();
                (l, sigmoid(x) - y)
            }
            LossKind::BinaryCrossEntropy { from_logits: false } => {
                let hi = T::one() - eps;
                let q = x.max(eps).min(hi);
                let l = -(y * q.ln() + (T::one() - y) * (T::one() - q).ln());
                let inside = x >= eps && x <= hi;
                let d = if inside {
                    (q - y) / (q * (T::one() - q))
                } else {
                    T::zero()
                };
                (l, d)
            }
            LossKind::SoftmaxCrossEntropy => (T::zero(), T::zero()),
        };
        total += l.as_f64();
        *g = d * inv_n;
    }
    Ok((T::from_f64(total / n as f64), grad))
}

/// A loss evaluated on the device: records dL/dpred into a caller's buffer and the mean loss
/// into its own one-element buffer, without reading anything back.
pub struct GpuLoss {
    kind: LossKind,
    len: usize,
    rows: usize,
    cols: usize,
    partials: wgpu::Buffer,
    value: wgpu::Buffer,
}

impl GpuLoss {
    /// A loss over tensors of `shape` (for softmax cross-entropy the last axis holds the
    /// classes). Checks the sizes against the device's limits and allocates the scratch.
    pub fn new(ctx: &Context, kind: LossKind, shape: &[usize]) -> Result<Self> {
        let len = element_count(shape)?;
        let (rows, cols) = match kind {
            LossKind::SoftmaxCrossEntropy => rows_cols(shape)?,
            _ => (0, 0),
        };
        let softmax = (kind == LossKind::SoftmaxCrossEntropy).then_some((rows, cols));
        kernel::check(len, softmax)?;
        let partials = buffers::zeros(
            ctx,
            "loss partials",
            kernel::partials_len(len, softmax.map(|s| s.0)),
        )?;
        let value = buffers::zeros(ctx, "loss value", 1)?;
        Ok(Self {
            kind,
            len,
            rows,
            cols,
            partials,
            value,
        })
    }

    /// Elements of the prediction, target and gradient tensors.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a loss needs at least one element (kept for the `len` convention).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Which loss this is.
    pub fn kind(&self) -> LossKind {
        self.kind
    }

    /// Records the loss of `pred` against `target` (f32, row-major, [`len`](Self::len)
    /// elements each): writes dL/dpred into `grad` and the mean loss into
    /// [`value_buffer`](Self::value_buffer). `grad` must not be `pred` or `target` (WebGPU
    /// forbids a buffer both read-only and writable in one dispatch).
    pub fn record(
        &self,
        rec: &mut StepRecorder<'_>,
        pred: &wgpu::Buffer,
        target: &wgpu::Buffer,
        grad: &wgpu::Buffer,
    ) -> Result<()> {
        check_len(pred, self.len, "loss prediction buffer")?;
        check_len(target, self.len, "loss target buffer")?;
        check_len(grad, self.len, "loss gradient buffer")?;
        let b = LossBuffers {
            pred,
            target,
            grad,
            partials: &self.partials,
            out: &self.value,
        };
        let r = rec;
        match self.kind {
            LossKind::SoftmaxCrossEntropy => kernel::record_softmax(r, self.rows, self.cols, &b),
            LossKind::Mse => kernel::record_pointwise(r, Pointwise::Mse, self.len, 0.0, &b),
            LossKind::Mae => kernel::record_pointwise(r, Pointwise::Mae, self.len, 0.0, &b),
            LossKind::BinaryCrossEntropy { from_logits } => {
                let kind = if from_logits {
                    Pointwise::BceLogits
                } else {
                    Pointwise::BceProbs
                };
                kernel::record_pointwise(r, kind, self.len, BCE_EPS, &b)
            }
        }
    }

    /// The one-element device buffer holding the loss of the last submitted evaluation.
    pub fn value_buffer(&self) -> &wgpu::Buffer {
        &self.value
    }

    /// Reads the loss of the last submitted evaluation back (waits for the GPU).
    pub fn read_value(&self, ctx: &Context) -> Result<f32> {
        let v = buffers::read_f32(ctx, &[(&self.value, 0, 1)])?;
        v.first()
            .and_then(|x| x.first())
            .copied()
            .ok_or_else(|| Error::Device("loss read-back returned nothing".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::IxDyn;

    const KINDS: [LossKind; 5] = [
        LossKind::Mse,
        LossKind::Mae,
        LossKind::BinaryCrossEntropy { from_logits: true },
        LossKind::BinaryCrossEntropy { from_logits: false },
        LossKind::SoftmaxCrossEntropy,
    ];

    #[test]
    fn f32_reference_agrees_with_f64() {
        let p: Vec<f64> = (0..12)
            .map(|i| 0.05 + 0.9 * ((i * 7) % 12) as f64 / 11.0)
            .collect();
        let t: Vec<f64> = (0..12).map(|i| ((i * 5) % 12) as f64 / 11.0).collect();
        let a = |v: &[f64]| ArrayD::from_shape_vec(IxDyn(&[3, 4]), v.to_vec()).unwrap();
        let a32 = |v: &[f64]| a(v).mapv(|x| x as f32);
        for kind in KINDS {
            let (l64, g64) = cpu_loss(kind, a(&p).view(), a(&t).view()).unwrap();
            let (l32, g32) = cpu_loss(kind, a32(&p).view(), a32(&t).view()).unwrap();
            assert!(
                l64 > 0.0 && (f64::from(l32) - l64).abs() < 1e-5 * l64,
                "{kind:?}"
            );
            for (x, y) in g32.iter().zip(g64.iter()) {
                assert!((f64::from(*x) - y).abs() < 1e-6, "{kind:?}: {x} vs {y}");
            }
            assert!(
                g64.iter().any(|v| v.abs() > 1e-3),
                "{kind:?}: zero gradient"
            );
        }
    }

    #[test]
    fn mismatched_or_empty_shapes_are_errors() {
        let a = ArrayD::<f64>::zeros(IxDyn(&[2, 3]));
        let b = ArrayD::<f64>::zeros(IxDyn(&[3, 2]));
        let e = ArrayD::<f64>::zeros(IxDyn(&[0, 3]));
        for kind in KINDS {
            assert!(matches!(
                cpu_loss(kind, a.view(), b.view()),
                Err(Error::Shape(_))
            ));
            assert!(matches!(
                cpu_loss(kind, e.view(), e.view()),
                Err(Error::Shape(_))
            ));
        }
    }
}
