//! Keras losses with Keras' default reduction (`sum_over_batch_size`), the mask of the
//! prediction applied as Keras 3 applies it, and the regularization terms.
//!
//! Each loss first reduces the last axis (mean for MSE/MAE/binary cross-entropy, sum for the
//! categorical ones), giving one value per sample (and step, for sequence outputs). Without a
//! mask the loss is the mean of those values. With a mask `(B, T)` on a sequence output, Keras
//! weights valid entries by `total/valid` and masked ones by 0 before the mean, so the loss
//! is the sum over valid entries divided by their count (0 when none is valid).
//! Probabilities are clipped to `[1e-7, 1 - 1e-7]` (Keras' `epsilon()`), and categorical
//! predictions are first divided by their sum, as Keras' backends do; gradients flow through
//! both (zero outside the clip range).

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use serde_json::Value;

use crate::cpu::{Real, sigmoid};
use crate::error::{Error, Result};

/// Keras' `epsilon()`.
const EPS: f64 = 1e-7;

/// A Keras loss by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KerasLoss {
    /// `mean_squared_error`.
    MeanSquaredError,
    /// `mean_absolute_error`.
    MeanAbsoluteError,
    /// `binary_crossentropy`.
    BinaryCrossentropy {
        /// Predictions are logits.
        from_logits: bool,
    },
    /// `categorical_crossentropy` (one-hot or probability targets).
    CategoricalCrossentropy {
        /// Predictions are logits.
        from_logits: bool,
    },
    /// `sparse_categorical_crossentropy` (integer class targets).
    SparseCategoricalCrossentropy {
        /// Predictions are logits.
        from_logits: bool,
    },
}

impl KerasLoss {
    /// From a Keras loss name (`mean_squared_error`, `mse`, `MeanSquaredError`, …).
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "mean_squared_error" | "mse" | "MeanSquaredError" => Self::MeanSquaredError,
            "mean_absolute_error" | "mae" | "MeanAbsoluteError" => Self::MeanAbsoluteError,
            "binary_crossentropy" | "BinaryCrossentropy" => {
                Self::BinaryCrossentropy { from_logits: false }
            }
            "categorical_crossentropy" | "CategoricalCrossentropy" => {
                Self::CategoricalCrossentropy { from_logits: false }
            }
            "sparse_categorical_crossentropy" | "SparseCategoricalCrossentropy" => {
                Self::SparseCategoricalCrossentropy { from_logits: false }
            }
            other => {
                return Err(Error::Unsupported(format!(
                    "loss {other:?}; supported: mean_squared_error, mean_absolute_error, \
                     binary_crossentropy, categorical_crossentropy, \
                     sparse_categorical_crossentropy"
                )));
            }
        })
    }

    /// From a `compile_config` loss: a name, or a serialized loss object whose `reduction`
    /// must be the default and `label_smoothing` 0; `from_logits` is read.
    pub fn from_config(v: &Value) -> Result<Self> {
        let (class, cfg) = match v {
            Value::String(s) => return Self::from_name(s),
            Value::Object(o) => (
                o.get("class_name").and_then(Value::as_str).unwrap_or(""),
                o.get("config").cloned().unwrap_or(Value::Null),
            ),
            other => return Err(Error::Unsupported(format!("loss {other}"))),
        };
        let base = Self::from_name(class)?;
        let Some(cfg) = cfg.as_object() else {
            return Ok(base);
        };
        let from_logits = cfg
            .get("from_logits")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        for (k, val) in cfg {
            let ok = match k.as_str() {
                "name" | "dtype" | "from_logits" | "axis" => k != "axis" || val == -1,
                "reduction" => val.is_null() || val == "sum_over_batch_size",
                "label_smoothing" => val.as_f64() == Some(0.0),
                "ignore_class" => val.is_null(),
                _ => false,
            };
            if !ok {
                return Err(Error::Unsupported(format!("loss {class}: {k} = {val}")));
            }
        }
        Ok(match base {
            Self::BinaryCrossentropy { .. } => Self::BinaryCrossentropy { from_logits },
            Self::CategoricalCrossentropy { .. } => Self::CategoricalCrossentropy { from_logits },
            Self::SparseCategoricalCrossentropy { .. } => {
                Self::SparseCategoricalCrossentropy { from_logits }
            }
            other => other,
        })
    }
}

/// A target: values shaped like the prediction, or integer class ids.
#[derive(Clone, Debug)]
pub enum Target {
    /// Same shape as the prediction (a trailing or missing size-1 axis is reconciled).
    Values(ArrayD<f64>),
    /// Class ids: the prediction's shape without its class axis (or with it at size 1).
    Classes(ArrayD<i64>),
}

/// `y` reshaped to `pred`'s shape when they differ only by a trailing size-1 axis (Keras'
/// `squeeze_or_expand_to_same_rank`).
fn align<T: Clone>(y: &ArrayD<T>, pred: &[usize], what: &str) -> Result<ArrayD<T>> {
    if y.shape() == pred {
        return Ok(y.clone());
    }
    let n: usize = pred.iter().product();
    let (yr, pr) = (y.ndim(), pred.len());
    let fits = (yr + 1 == pr && pred[pr - 1] == 1 && y.shape() == &pred[..pr - 1])
        || (pr + 1 == yr && y.shape()[yr - 1] == 1 && &y.shape()[..yr - 1] == pred);
    if fits && y.len() == n {
        return y
            .clone()
            .into_shape_with_order(IxDyn(pred))
            .map_err(|e| Error::Shape(format!("{what}: {e}")));
    }
    Err(Error::Shape(format!(
        "{what}: target shape {:?} does not match prediction shape {pred:?}",
        y.shape()
    )))
}

/// The loss of `pred` against `y` and dL/dpred. `mask` is the prediction's Keras mask
/// `(B, T)` (sequence outputs only).
pub fn keras_loss<T: Real>(
    kind: KerasLoss,
    pred: ArrayViewD<T>,
    y: &Target,
    mask: Option<ArrayViewD<bool>>,
) -> Result<(f64, ArrayD<T>)> {
    let shape = pred.shape().to_vec();
    let Some((&classes, rows_shape)) = shape.split_last() else {
        return Err(Error::Shape("loss: the prediction is a scalar".into()));
    };
    // Keras casts targets to the loss's type: class ids stored as floats, 0/1 labels as ints.
    let converted;
    let y = match (kind, y) {
        (KerasLoss::SparseCategoricalCrossentropy { .. }, Target::Values(v)) => {
            converted = Target::Classes(super::cpu::integral(v).ok_or_else(|| {
                Error::Shape("sparse categorical cross-entropy: targets are not class ids".into())
            })?);
            &converted
        }
        (KerasLoss::SparseCategoricalCrossentropy { .. }, _) => y,
        (_, Target::Classes(c)) => {
            converted = Target::Values(c.mapv(|v| v as f64));
            &converted
        }
        _ => y,
    };
    let rows: usize = rows_shape.iter().product();
    if rows == 0 || classes == 0 {
        return Err(Error::Shape(format!("loss: empty prediction {shape:?}")));
    }
    // The per-entry weight: 1/N, or 1/valid at valid entries and 0 elsewhere.
    let weights: Vec<f64> = match &mask {
        None => vec![1.0 / rows as f64; rows],
        Some(m) => {
            if m.shape() != rows_shape {
                return Err(Error::Shape(format!(
                    "loss: mask shape {:?} does not match the prediction's {rows_shape:?}",
                    m.shape()
                )));
            }
            let valid = m.iter().filter(|&&b| b).count();
            m.iter()
                .map(|&b| {
                    if b && valid > 0 {
                        1.0 / valid as f64
                    } else {
                        0.0
                    }
                })
                .collect()
        }
    };
    let p = pred
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((rows, classes))
        .map_err(|e| Error::Shape(format!("loss: {e}")))?;
    let mut g = ndarray::Array2::<T>::zeros((rows, classes));
    let mut total = 0.0f64;
    let eps = T::from_f64(EPS);
    let (zero, one) = (T::zero(), T::one());
    let clip = |q: T| (q.max(eps).min(one - eps), q >= eps && q <= one - eps);
    match (kind, y) {
        (KerasLoss::SparseCategoricalCrossentropy { .. }, Target::Values(_))
        | (KerasLoss::MeanSquaredError, Target::Classes(_))
        | (KerasLoss::MeanAbsoluteError, Target::Classes(_))
        | (KerasLoss::BinaryCrossentropy { .. }, Target::Classes(_))
        | (KerasLoss::CategoricalCrossentropy { .. }, Target::Classes(_)) => {
            unreachable!("targets were converted to the loss's type above")
        }
        (KerasLoss::SparseCategoricalCrossentropy { from_logits }, Target::Classes(c)) => {
            let c = align(c, rows_shape, "sparse categorical cross-entropy")?;
            for (r, &cls) in c.iter().enumerate() {
                if cls < 0 || cls as usize >= classes {
                    return Err(Error::Shape(format!(
                        "sparse categorical cross-entropy: class {cls} out of range 0..{classes}"
                    )));
                }
                let mut onehot = vec![zero; classes];
                onehot[cls as usize] = one;
                let (l, d) = categorical(p.row(r).to_vec(), &onehot, from_logits, clip);
                total += l * weights[r];
                for (gv, dv) in g.row_mut(r).iter_mut().zip(d) {
                    *gv = dv * T::from_f64(weights[r]);
                }
            }
        }
        (KerasLoss::CategoricalCrossentropy { from_logits }, Target::Values(v)) => {
            let v = align(v, &shape, "categorical cross-entropy")?
                .into_shape_with_order((rows, classes))
                .map_err(|e| Error::Shape(format!("loss: {e}")))?;
            for (r, &wr) in weights.iter().enumerate() {
                let t: Vec<T> = v.row(r).iter().map(|&x| T::from_f64(x)).collect();
                let (l, d) = categorical(p.row(r).to_vec(), &t, from_logits, clip);
                total += l * wr;
                for (gv, dv) in g.row_mut(r).iter_mut().zip(d) {
                    *gv = dv * T::from_f64(wr);
                }
            }
        }
        (_, Target::Values(v)) => {
            let v = align(v, &shape, "loss")?
                .into_shape_with_order((rows, classes))
                .map_err(|e| Error::Shape(format!("loss: {e}")))?;
            let inv_c = T::from_f64(1.0 / classes as f64);
            for r in 0..rows {
                let w = T::from_f64(weights[r]);
                let mut row_loss = 0.0f64;
                for j in 0..classes {
                    let (x, t) = (p[[r, j]], T::from_f64(v[[r, j]]));
                    let (l, d) = match kind {
                        KerasLoss::MeanSquaredError => {
                            ((x - t) * (x - t), (x - t) * T::from_f64(2.0))
                        }
                        KerasLoss::MeanAbsoluteError => {
                            let s = if x > t {
                                one
                            } else if x < t {
                                -one
                            } else {
                                zero
                            };
                            ((x - t).abs(), s)
                        }
                        KerasLoss::BinaryCrossentropy { from_logits: true } => (
                            x.max(zero) - x * t + (-x.abs()).exp().ln_1p(),
                            sigmoid(x) - t,
                        ),
                        _ => {
                            let (q, inside) = clip(x);
                            let l = -(t * q.ln() + (one - t) * (one - q).ln());
                            let d = if inside {
                                (q - t) / (q * (one - q))
                            } else {
                                zero
                            };
                            (l, d)
                        }
                    };
                    row_loss += l.as_f64();
                    g[[r, j]] = d * inv_c * w;
                }
                total += row_loss / classes as f64 * weights[r];
            }
        }
    }
    let g = g
        .into_shape_with_order(IxDyn(&shape))
        .map_err(|e| Error::Shape(format!("loss: {e}")))?;
    Ok((total, g))
}

/// The targets of `kind` as the `(rows, classes)` f32 matrix the device loss reads (class ids
/// expanded one-hot; a trailing or missing size-1 axis reconciled as [`keras_loss`] does),
/// with Keras' conversions: class ids stored as floats, 0/1 labels stored as integers.
pub(crate) fn dense_targets(
    kind: KerasLoss,
    y: &Target,
    pred_shape: &[usize],
) -> Result<ndarray::Array2<f32>> {
    let Some((&classes, rows_shape)) = pred_shape.split_last() else {
        return Err(Error::Shape("loss: the prediction is a scalar".into()));
    };
    let rows: usize = rows_shape.iter().product();
    crate::limits::host_f32("loss targets", &[rows, classes])?;
    match kind {
        KerasLoss::SparseCategoricalCrossentropy { .. } => {
            let ids = match y {
                Target::Classes(c) => c.clone(),
                Target::Values(v) => super::cpu::integral(v).ok_or_else(|| {
                    Error::Shape(
                        "sparse categorical cross-entropy: targets are not class ids".into(),
                    )
                })?,
            };
            let ids = align(&ids, rows_shape, "sparse categorical cross-entropy")?;
            let mut t = ndarray::Array2::<f32>::zeros((rows, classes));
            for (r, &cls) in ids.iter().enumerate() {
                if cls < 0 || cls as usize >= classes {
                    return Err(Error::Shape(format!(
                        "sparse categorical cross-entropy: class {cls} out of range 0..{classes}"
                    )));
                }
                t[[r, cls as usize]] = 1.0;
            }
            Ok(t)
        }
        _ => {
            let v = match y {
                Target::Values(v) => v.clone(),
                Target::Classes(c) => c.mapv(|v| v as f64),
            };
            align(&v, pred_shape, "loss")?
                .mapv(|e| e as f32)
                .into_shape_with_order((rows, classes))
                .map_err(|e| Error::Shape(format!("loss: {e}")))
        }
    }
}

/// `-Σ t·log q` of one row and its gradient: `q = softmax(x)` for logits, else
/// `clip(x / Σx)`.
fn categorical<T: Real>(
    x: Vec<T>,
    t: &[T],
    from_logits: bool,
    clip: impl Fn(T) -> (T, bool),
) -> (f64, Vec<T>) {
    if from_logits {
        let m = x.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
        let lse = m + x.iter().map(|&v| (v - m).exp()).sum::<T>().ln();
        let ts: T = t.iter().copied().sum();
        let l: f64 = x
            .iter()
            .zip(t)
            .map(|(&xv, &tv)| (tv * (lse - xv)).as_f64())
            .sum();
        let d = x
            .iter()
            .zip(t)
            .map(|(&xv, &tv)| (xv - lse).exp() * ts - tv)
            .collect();
        return (l, d);
    }
    let s: T = x.iter().copied().sum();
    let mut l = 0.0f64;
    // dL/dq_j = -t_j / q_j inside the clip range; then through q = x / s.
    let mut dq = Vec::with_capacity(x.len());
    for (&xv, &tv) in x.iter().zip(t) {
        let (q, inside) = clip(xv / s);
        l -= (tv * q.ln()).as_f64();
        dq.push(if inside { -tv / q } else { T::zero() });
    }
    let dot: T = dq.iter().zip(&x).map(|(&d, &xv)| d * xv).sum();
    let d = dq.iter().map(|&d| d / s - dot / (s * s)).collect();
    (l, d)
}

/// `Σ l1·|w| + l2·w²` and its gradient `l1·sign(w) + 2·l2·w`.
pub fn regularization<T: Real>(l1: f64, l2: f64, w: ArrayViewD<T>) -> (f64, ArrayD<T>) {
    let mut total = 0.0;
    let (a, b) = (T::from_f64(l1), T::from_f64(2.0 * l2));
    let g = w.mapv(|v| {
        total += l1 * v.as_f64().abs() + l2 * v.as_f64() * v.as_f64();
        let s = if v > T::zero() {
            T::one()
        } else if v < T::zero() {
            -T::one()
        } else {
            T::zero()
        };
        a * s + b * v
    });
    (total, g)
}

/// The prediction's mask reshaped for the loss (`None` when it does not cover the rows).
pub(crate) fn mask_for(
    pred_shape: &[usize],
    mask: Option<&ndarray::Array2<bool>>,
) -> Option<ArrayD<bool>> {
    let m = mask?;
    (pred_shape.len() == 3 && m.shape() == &pred_shape[..2]).then(|| m.clone().into_dyn())
}
