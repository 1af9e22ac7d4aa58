//! Keras' training loop on the device: [`Sequential::fit`] (epochs, batches, shuffling,
//! validation, metrics, early stopping, a progress bar), [`Sequential::evaluate_metrics`]
//! (Keras' `model.evaluate`) and [`Sequential::predict_batched`].
//!
//! Each training step is one submit and one read-back ([`Session`]); the epoch's numbers are
//! the batch-size-weighted means of the steps' numbers, as Keras reports them. Validation runs
//! the same device layers in inference mode (every dropout an identity).

use std::collections::BTreeMap;
use std::time::Instant;

use ndarray::{ArrayD, Axis};

use super::backend::ModelInput;
use super::gpu::GpuBackend;
use super::loss::{KerasLoss, Target, dense_targets, keras_loss, regularization};
use super::metrics::{Metric, MetricSums};
use super::model::Sequential;
use super::session::{Session, row_weights};
use crate::error::{Error, Result};
use crate::train::{OptimizerConfig, OptimizerKind};

/// Keras' `EarlyStopping` callback.
#[derive(Clone, Debug, PartialEq)]
pub struct EarlyStopping {
    /// The logged quantity watched (`val_loss`, `loss`, `val_accuracy`, …). Quantities with
    /// `acc` in their name are maximised, the others minimised (Keras' `mode="auto"`).
    pub monitor: String,
    /// Epochs without improvement before training stops.
    pub patience: usize,
    /// The smallest change that counts as an improvement.
    pub min_delta: f64,
    /// When training stops early, put back the weights of the best epoch.
    pub restore_best_weights: bool,
}

impl EarlyStopping {
    /// Watches `monitor` with `patience`, `min_delta = 0` and restores the best weights.
    pub fn new(monitor: &str, patience: usize) -> Self {
        Self {
            monitor: monitor.to_string(),
            patience,
            min_delta: 0.0,
            restore_best_weights: true,
        }
    }

    fn maximise(&self) -> bool {
        self.monitor.contains("acc")
    }
}

/// The arguments of Keras' `compile` and `fit` that [`Sequential::fit`] takes.
#[derive(Clone, Debug)]
pub struct FitOptions {
    /// Passes over the training data.
    pub epochs: usize,
    /// Samples per step (the last batch may be smaller).
    pub batch_size: usize,
    /// Shuffle the training samples before every epoch (seeded by `seed`).
    pub shuffle: bool,
    /// The last fraction of the samples (taken before shuffling, as Keras does) held out for
    /// validation; ignored when `validation_data` is given.
    pub validation_split: f64,
    /// Held-out data evaluated after every epoch.
    pub validation_data: Option<(ModelInput, Target)>,
    /// The loss.
    pub loss: KerasLoss,
    /// The optimizer (see [`keras_optimizer`]); `clip_norm` is Keras' `global_clipnorm`.
    pub optimizer: OptimizerConfig,
    /// Metrics logged besides the loss.
    pub metrics: Vec<Metric>,
    /// Early stopping, if any.
    pub early_stopping: Option<EarlyStopping>,
    /// Seeds the shuffling and every dropout mask.
    pub seed: u64,
    /// Show a progress bar per epoch and print each epoch's logs to stderr.
    pub verbose: bool,
}

impl FitOptions {
    /// One epoch of batches of 32, shuffled, no validation, no metrics, silent.
    pub fn new(loss: KerasLoss, optimizer: OptimizerConfig) -> Self {
        Self {
            epochs: 1,
            batch_size: 32,
            shuffle: true,
            validation_split: 0.0,
            validation_data: None,
            loss,
            optimizer,
            metrics: Vec::new(),
            early_stopping: None,
            seed: 0,
            verbose: false,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.batch_size == 0 {
            return Err(Error::Config(format!(
                "fit needs epochs ≥ 1 and batch_size ≥ 1 (got {} and {})",
                self.epochs, self.batch_size
            )));
        }
        if !(0.0..1.0).contains(&self.validation_split) {
            return Err(Error::Config(format!(
                "validation_split = {}; it must be in [0, 1)",
                self.validation_split
            )));
        }
        self.optimizer.validate()
    }
}

/// A Keras optimizer by name (`adam`, `rmsprop`, `sgd`) with Keras' defaults (ε = 1e-7;
/// RMSprop ρ = 0.9) and learning rate `lr`.
pub fn keras_optimizer(name: &str, lr: f32) -> Result<OptimizerConfig> {
    let kind = match name.to_ascii_lowercase().as_str() {
        "adam" => OptimizerKind::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
        },
        "rmsprop" => OptimizerKind::RmsProp {
            alpha: 0.9,
            eps: 1e-7,
            momentum: 0.0,
        },
        "sgd" => OptimizerKind::Sgd {
            momentum: 0.0,
            nesterov: false,
        },
        _ => {
            return Err(Error::Unsupported(format!(
                "optimizer {name:?} (supported: adam, rmsprop, sgd)"
            )));
        }
    };
    let c = OptimizerConfig::with_kind(lr, kind);
    c.validate()?;
    Ok(c)
}

/// What `fit` returns: Keras' `History.history` (a list per logged key, one value per epoch)
/// and how training ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// `loss`, the metrics' keys, and `val_` versions of them when validating.
    pub history: BTreeMap<String, Vec<f64>>,
    /// Epochs run.
    pub epochs_run: usize,
    /// The epoch (0-based) early stopping stopped at, if it did.
    pub stopped_epoch: Option<usize>,
    /// The best epoch of the monitored quantity (0-based), with early stopping.
    pub best_epoch: Option<usize>,
    /// Training samples per second over all epochs (steps only, validation excluded).
    pub samples_per_second: f64,
}

impl History {
    /// The values logged under `key`.
    pub fn get(&self, key: &str) -> Option<&[f64]> {
        self.history.get(key).map(Vec::as_slice)
    }
}

/// Samples in `x` (its first axis).
pub(super) fn samples(x: &ModelInput) -> usize {
    match x {
        ModelInput::Tokens(t) => t.nrows(),
        ModelInput::Values(v) => v.shape().first().copied().unwrap_or(0),
    }
}

fn target_samples(y: &Target) -> usize {
    match y {
        Target::Values(v) => v.shape().first().copied().unwrap_or(0),
        Target::Classes(c) => c.shape().first().copied().unwrap_or(0),
    }
}

pub(super) fn take_input(x: &ModelInput, idx: &[usize]) -> ModelInput {
    match x {
        ModelInput::Tokens(t) => ModelInput::Tokens(t.select(Axis(0), idx)),
        ModelInput::Values(v) => ModelInput::Values(v.select(Axis(0), idx)),
    }
}

pub(super) fn take_target(y: &Target, idx: &[usize]) -> Target {
    match y {
        Target::Values(v) => Target::Values(v.select(Axis(0), idx)),
        Target::Classes(c) => Target::Classes(c.select(Axis(0), idx)),
    }
}

/// A seeded permutation of `0..n` (Fisher–Yates over the data generators' splitmix64).
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    crate::data::rng::SplitMix64::new(seed).shuffle(&mut p);
    p
}

/// The regularization penalty of `weights` under `model`'s regularizers.
fn penalty(model: &Sequential, weights: &BTreeMap<String, ArrayD<f32>>) -> f64 {
    model
        .spec()
        .weights()
        .filter_map(|w| {
            let r = w.regularizer?;
            let v = weights.get(&w.path)?;
            Some(regularization(r.l1, r.l2, v.mapv(f64::from).view()).0)
        })
        .sum()
}

/// Loss (plus `reg`) and metrics of `model` on `(x, y)` in batches on `session`.
fn score(
    session: &Session,
    model: &Sequential,
    (x, y): (&ModelInput, &Target),
    loss: KerasLoss,
    metrics: &[Metric],
    batch_size: usize,
    reg: f64,
) -> Result<Vec<(String, f64)>> {
    let n = samples(x);
    if n == 0 || target_samples(y) != n {
        return Err(Error::Shape(format!(
            "evaluation data: {n} inputs and {} targets (both must be equal and > 0)",
            target_samples(y)
        )));
    }
    let all: Vec<usize> = (0..n).collect();
    let (mut loss_sum, mut sums) = (0.0, MetricSums::default());
    for idx in all.chunks(batch_size.max(1)) {
        let (xb, yb) = (take_input(x, idx), take_target(y, idx));
        let outs = session.infer(model, &xb)?;
        let pred = outs
            .first()
            .ok_or_else(|| Error::Device("the model gave no output".into()))?;
        let shape = pred.shape().to_vec();
        let mask = super::gpu::loss_mask(model, &xb, &shape)?;
        let (l, _) = keras_loss(
            loss,
            pred.mapv(f64::from).view(),
            &yb,
            mask.as_ref().map(|m| m.view()),
        )?;
        loss_sum += l * idx.len() as f64;
        let t = dense_targets(loss, &yb, &shape)?;
        let w = row_weights(t.nrows(), mask.as_ref());
        sums.add(metrics, loss, pred, &t, &w);
    }
    let mut out = vec![("loss".to_string(), loss_sum / n as f64 + reg)];
    out.extend(sums.means(metrics));
    Ok(out)
}

fn progress_bar(verbose: bool, len: usize, epoch: usize, epochs: usize) -> indicatif::ProgressBar {
    if !verbose {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(len as u64);
    let style = indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    pb.set_style(style);
    pb.set_prefix(format!("Epoch {}/{}", epoch + 1, epochs));
    pb
}

fn fmt_logs(logs: &[(String, f64)]) -> String {
    logs.iter()
        .map(|(k, v)| format!("{k}: {v:.4}"))
        .collect::<Vec<_>>()
        .join(" - ")
}

/// Keras carries a `stateful` layer's states from batch to batch in `fit`; the device
/// training step starts every batch from zeros, so such models are refused by name.
fn refuse_stateful(model: &Sequential) -> Result<()> {
    use super::spec::LayerKind;
    for l in &model.spec().layers {
        let stateful = match &l.spec.kind {
            LayerKind::Rnn(r) => r.stateful,
            LayerKind::Bidirectional { forward, .. } => forward.stateful,
            _ => false,
        };
        if stateful {
            return Err(Error::Unsupported(format!(
                "fit of {}: stateful=True (states carried across batches) is not trained on                  the device; train with stateful=False and load the weights into the stateful                  model",
                l.spec.name
            )));
        }
    }
    Ok(())
}

impl Sequential {
    /// Keras' `model.fit` on the device: trains the weights in place and returns the history.
    ///
    /// Every training step is one submit and one read-back. With early stopping that stops
    /// with `restore_best_weights`, the best epoch's weights are kept (Keras' rule).
    pub fn fit(
        &mut self,
        backend: &GpuBackend,
        x: &ModelInput,
        y: &Target,
        opts: &FitOptions,
    ) -> Result<History> {
        opts.validate()?;
        refuse_stateful(self)?;
        let n = samples(x);
        if n == 0 || target_samples(y) != n {
            return Err(Error::Shape(format!(
                "fit: {n} inputs and {} targets (both must be equal and > 0)",
                target_samples(y)
            )));
        }
        let split = if opts.validation_data.is_none() && opts.validation_split > 0.0 {
            ((n as f64) * (1.0 - opts.validation_split)) as usize
        } else {
            n
        };
        if split == 0 {
            return Err(Error::Config(format!(
                "validation_split = {} leaves no training samples of {n}",
                opts.validation_split
            )));
        }
        let held: Option<(ModelInput, Target)> = match &opts.validation_data {
            Some(v) => Some(v.clone()),
            None if split < n => {
                let idx: Vec<usize> = (split..n).collect();
                Some((take_input(x, &idx), take_target(y, &idx)))
            }
            None => None,
        };
        let mut session = Session::new(backend.ctx(), self, Some((opts.seed, opts.optimizer)))?;
        let has_reg = self.spec().weights().any(|w| w.regularizer.is_some());
        let mut hist = History::default();
        let (mut best, mut best_weights, mut wait) = (None::<f64>, None, 0usize);
        let (mut trained, mut train_secs) = (0usize, 0.0f64);
        for epoch in 0..opts.epochs {
            let order = if opts.shuffle {
                permutation(
                    split,
                    opts.seed ^ (epoch as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407),
                )
            } else {
                (0..split).collect()
            };
            let pb = progress_bar(opts.verbose, split, epoch, opts.epochs);
            let start = Instant::now();
            let (mut loss_sum, mut seen, mut sums) = (0.0, 0usize, MetricSums::default());
            for idx in order.chunks(opts.batch_size) {
                let (xb, yb) = (take_input(x, idx), take_target(y, idx));
                let out =
                    session.train_step(self, &xb, &yb, opts.loss, !opts.metrics.is_empty())?;
                if !out.loss.is_finite() {
                    return Err(Error::Data(format!(
                        "fit: the loss became {} at epoch {} (lower the learning rate or clip \
                         the gradients)",
                        out.loss,
                        epoch + 1
                    )));
                }
                loss_sum += out.loss * idx.len() as f64;
                seen += idx.len();
                if let Some(p) = &out.pred {
                    sums.add(&opts.metrics, opts.loss, p, &out.target, &out.weights);
                }
                pb.inc(idx.len() as u64);
                let rate = seen as f64 / start.elapsed().as_secs_f64().max(1e-9);
                let mut logs = vec![("loss".to_string(), loss_sum / seen as f64)];
                logs.extend(sums.means(&opts.metrics));
                pb.set_message(format!("{} - {rate:.0} samples/s", fmt_logs(&logs)));
            }
            let secs = start.elapsed().as_secs_f64();
            trained += seen;
            train_secs += secs;
            let mut logs = vec![("loss".to_string(), loss_sum / seen.max(1) as f64)];
            logs.extend(sums.means(&opts.metrics));
            if let Some((vx, vy)) = &held {
                let reg = if has_reg {
                    penalty(self, &session.weights()?)
                } else {
                    0.0
                };
                let v = score(
                    &session,
                    self,
                    (vx, vy),
                    opts.loss,
                    &opts.metrics,
                    opts.batch_size,
                    reg,
                )?;
                logs.extend(v.into_iter().map(|(k, x)| (format!("val_{k}"), x)));
            }
            pb.finish_and_clear();
            if opts.verbose {
                eprintln!(
                    "Epoch {}/{} - {:.1}s - {} - {:.0} samples/s",
                    epoch + 1,
                    opts.epochs,
                    secs,
                    fmt_logs(&logs),
                    seen as f64 / secs.max(1e-9)
                );
            }
            for (k, v) in &logs {
                hist.history.entry(k.clone()).or_default().push(*v);
            }
            hist.epochs_run = epoch + 1;
            if let Some(es) = &opts.early_stopping {
                let Some(&(_, now)) = logs.iter().find(|(k, _)| *k == es.monitor) else {
                    return Err(Error::Config(format!(
                        "early stopping monitors {:?}, which is not logged (logged: {})",
                        es.monitor,
                        logs.iter()
                            .map(|l| l.0.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                };
                let better = match best {
                    None => true,
                    Some(b) if es.maximise() => now > b + es.min_delta,
                    Some(b) => now < b - es.min_delta,
                };
                if better {
                    best = Some(now);
                    hist.best_epoch = Some(epoch);
                    wait = 0;
                    if es.restore_best_weights {
                        best_weights = Some(session.weights()?);
                    }
                } else {
                    wait += 1;
                    if wait >= es.patience.max(1) {
                        hist.stopped_epoch = Some(epoch);
                        if opts.verbose {
                            eprintln!(
                                "Early stopping at epoch {}: best {} {:.4} at epoch {}",
                                epoch + 1,
                                es.monitor,
                                best.unwrap_or(now),
                                hist.best_epoch.map_or(0, |e| e + 1)
                            );
                        }
                        break;
                    }
                }
            }
        }
        hist.samples_per_second = trained as f64 / train_secs.max(1e-9);
        let weights = match (hist.stopped_epoch, best_weights) {
            (Some(_), Some(b)) => b,
            _ => session.weights()?,
        };
        for (path, v) in weights {
            self.weights_mut().set(&path, v)?;
        }
        Ok(hist)
    }

    /// Keras' `model.evaluate`: the loss (plus regularization) and `metrics` on `(x, y)`, in
    /// inference mode, in batches of `batch_size`; keys as in [`History`] (`loss`, `accuracy`…).
    pub fn evaluate_metrics(
        &self,
        backend: &GpuBackend,
        (x, y): (&ModelInput, &Target),
        loss: KerasLoss,
        metrics: &[Metric],
        batch_size: usize,
    ) -> Result<BTreeMap<String, f64>> {
        let session = Session::new(backend.ctx(), self, None)?;
        let reg = self.regularization().0;
        Ok(
            score(&session, self, (x, y), loss, metrics, batch_size, reg)?
                .into_iter()
                .collect(),
        )
    }

    /// Keras' `model.predict` in batches of `batch_size` on the device: every output, with
    /// the batches concatenated along the first axis.
    pub fn predict_batched(
        &self,
        backend: &GpuBackend,
        x: &ModelInput,
        batch_size: usize,
    ) -> Result<Vec<ArrayD<f32>>> {
        let n = samples(x);
        if n == 0 || batch_size == 0 {
            return Err(Error::Shape(format!(
                "predict: {n} samples in batches of {batch_size} (both must be > 0)"
            )));
        }
        let session = Session::new(backend.ctx(), self, None)?;
        let all: Vec<usize> = (0..n).collect();
        let mut parts: Vec<Vec<ArrayD<f32>>> = Vec::new();
        for idx in all.chunks(batch_size) {
            parts.push(session.infer(self, &take_input(x, idx))?);
        }
        let outputs = parts.first().map_or(0, Vec::len);
        (0..outputs)
            .map(|k| {
                let views: Vec<_> = parts.iter().map(|p| p[k].view()).collect();
                ndarray::concatenate(Axis(0), &views).map_err(|e| Error::Shape(e.to_string()))
            })
            .collect()
    }
}
