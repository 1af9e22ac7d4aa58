//! Keras metrics of a training run: [`Metric`] (what `compile(metrics=[...])` names) and the
//! running sums `fit` and `evaluate_metrics` keep over the rows a batch weights.

use ndarray::ArrayD;

use super::loss::KerasLoss;
use crate::error::{Error, Result};

/// A metric, as Keras' `compile(metrics=[...])` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// `"accuracy"`: resolved from the loss as Keras does — binary accuracy (threshold 0.5 on
    /// probabilities, 0 on logits) for binary cross-entropy, argmax agreement for the
    /// categorical ones, exact equality otherwise.
    Accuracy,
    /// `"mae"`: mean absolute error.
    MeanAbsoluteError,
    /// `"mse"`: mean squared error.
    MeanSquaredError,
}

impl Metric {
    /// From a Keras metric name (`accuracy`/`acc`, `mae`, `mse` and their long names).
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "accuracy" | "acc" => Self::Accuracy,
            "mae" | "mean_absolute_error" => Self::MeanAbsoluteError,
            "mse" | "mean_squared_error" => Self::MeanSquaredError,
            _ => {
                return Err(Error::Unsupported(format!(
                    "metric {name:?} (supported: accuracy, mae, mse)"
                )));
            }
        })
    }

    /// The key in the logs and the history (`accuracy`, `mae`, `mse`).
    pub fn key(self) -> &'static str {
        match self {
            Self::Accuracy => "accuracy",
            Self::MeanAbsoluteError => "mae",
            Self::MeanSquaredError => "mse",
        }
    }
}

/// Sums of each metric over the rows a batch weights, and the rows counted.
#[derive(Default)]
pub(super) struct MetricSums {
    sums: Vec<f64>,
    rows: f64,
}

impl MetricSums {
    pub(super) fn add(
        &mut self,
        metrics: &[Metric],
        loss: KerasLoss,
        pred: &ArrayD<f32>,
        target: &ndarray::Array2<f32>,
        weights: &[f32],
    ) {
        self.sums.resize(metrics.len(), 0.0);
        let cols = target.ncols().max(1);
        let preds = pred
            .as_slice()
            .map(|s| s.to_vec())
            .unwrap_or_else(|| pred.iter().copied().collect());
        for (r, (&w, t)) in weights.iter().zip(target.rows()).enumerate() {
            if w <= 0.0 {
                continue;
            }
            let p = &preds[r * cols..(r + 1) * cols];
            self.rows += 1.0;
            for (k, m) in metrics.iter().enumerate() {
                self.sums[k] += row_metric(*m, loss, p, t.as_slice().unwrap_or(&[]));
            }
        }
    }

    pub(super) fn means(&self, metrics: &[Metric]) -> Vec<(String, f64)> {
        metrics
            .iter()
            .enumerate()
            .map(|(k, m)| {
                let s = self.sums.get(k).copied().unwrap_or(0.0);
                (m.key().to_string(), s / self.rows.max(1.0))
            })
            .collect()
    }
}

fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// One row's metric value (accuracy in [0, 1]; errors as means over the row).
fn row_metric(m: Metric, loss: KerasLoss, p: &[f32], t: &[f32]) -> f64 {
    let n = p.len().max(1) as f64;
    match m {
        Metric::MeanAbsoluteError => {
            p.iter()
                .zip(t)
                .map(|(a, b)| f64::from((a - b).abs()))
                .sum::<f64>()
                / n
        }
        Metric::MeanSquaredError => {
            p.iter()
                .zip(t)
                .map(|(a, b)| f64::from((a - b) * (a - b)))
                .sum::<f64>()
                / n
        }
        Metric::Accuracy => match loss {
            KerasLoss::BinaryCrossentropy { from_logits } => {
                let thr = if from_logits { 0.0 } else { 0.5 };
                p.iter()
                    .zip(t)
                    .filter(|&(&a, &b)| (a > thr) == (b > 0.5))
                    .count() as f64
                    / n
            }
            KerasLoss::CategoricalCrossentropy { .. }
            | KerasLoss::SparseCategoricalCrossentropy { .. } => {
                f64::from(u8::from(argmax(p) == argmax(t)))
            }
            _ => p.iter().zip(t).filter(|(a, b)| a == b).count() as f64 / n,
        },
    }
}
