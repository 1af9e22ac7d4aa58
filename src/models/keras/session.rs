//! A Sequential model resident on the device for many steps: its layers built once, its
//! weights updated in place by a [`GpuOptimizer`]. One training step is one submit (forward
//! with live dropout, the Keras loss, backward, regularizers, optimizer) and one read-back (the
//! per-row losses, the regularization partial sums and, when metrics need it, the prediction).

use std::collections::BTreeMap;
use std::sync::Arc;

use ndarray::{ArrayD, IxDyn};

use super::backend::ModelInput;
use super::device_params::{self, KerasParam};
use super::gpu::{backward, forward, upload_input};
use super::gpu_layers::{DevLayer, build};
use super::loss::{KerasLoss, Target, dense_targets};
use super::model::Sequential;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::keras_loss::{self as kernel, LossBufs, RowLoss};
use crate::kernels::{Recorder, buffers};
use crate::tensor::{DType, DeviceTensor};
use crate::train::{GpuOptimizer, OptimizerConfig};

/// Keras' `epsilon()`, the clip of probabilities in the cross-entropies.
const EPS: f32 = 1e-7;

/// What one training step reports.
pub(super) struct StepOut {
    /// The batch's loss (the Keras loss plus every regularization penalty).
    pub loss: f64,
    /// The prediction, when asked for.
    pub pred: Option<ArrayD<f32>>,
    /// The targets as the loss read them, `(rows, classes)`.
    pub target: ndarray::Array2<f32>,
    /// The per-row loss weights.
    pub weights: Vec<f32>,
}

/// A regularized weight: its index in the parameters, factors and partial-sum offset.
struct Reg {
    param: usize,
    l1: f32,
    l2: f32,
    off: usize,
}

/// A model on the device for training and inference.
pub(super) struct Session {
    ctx: Arc<Context>,
    layers: Vec<DevLayer>,
    params: Vec<KerasParam>,
    /// Indices of the trainable parameters, in the optimizer's order.
    trainable: Vec<usize>,
    opt: Option<GpuOptimizer>,
    regs: Vec<Reg>,
    /// The penalty partial sums of every regularized weight.
    partials: Option<(wgpu::Buffer, usize)>,
}

fn row_loss_kind(loss: KerasLoss) -> RowLoss {
    match loss {
        KerasLoss::MeanSquaredError => RowLoss::Mse,
        KerasLoss::MeanAbsoluteError => RowLoss::Mae,
        KerasLoss::BinaryCrossentropy { from_logits: true } => RowLoss::BceLogits,
        KerasLoss::BinaryCrossentropy { from_logits: false } => RowLoss::BceProbs,
        KerasLoss::CategoricalCrossentropy { from_logits: true }
        | KerasLoss::SparseCategoricalCrossentropy { from_logits: true } => RowLoss::CceLogits,
        KerasLoss::CategoricalCrossentropy { from_logits: false }
        | KerasLoss::SparseCategoricalCrossentropy { from_logits: false } => RowLoss::CceProbs,
    }
}

/// The per-row loss weights of `rows` rows: `1/rows`, or `1/valid` at the steps the loss
/// mask ([`loss_mask`](super::gpu::loss_mask)) keeps.
pub(super) fn row_weights(rows: usize, mask: Option<&ArrayD<bool>>) -> Vec<f32> {
    match mask {
        None => vec![1.0 / rows.max(1) as f32; rows],
        Some(m) => {
            let valid = m.iter().filter(|&&b| b).count();
            m.iter()
                .map(|&b| {
                    if b && valid > 0 {
                        1.0 / valid as f32
                    } else {
                        0.0
                    }
                })
                .collect()
        }
    }
}

impl Session {
    /// `model` on the device. `train: Some((seed, optimizer))` builds for training (live
    /// dropout seeded from `seed`, optimizer state for every trainable weight); `None` builds
    /// for inference only.
    pub fn new(
        ctx: &Arc<Context>,
        model: &Sequential,
        train: Option<(u64, OptimizerConfig)>,
    ) -> Result<Self> {
        let layers = build(ctx, model, train.map(|t| t.0))?;
        let params = device_params::keras_params(model, &layers)?;
        let trainable: Vec<usize> = (0..params.len())
            .filter(|&i| params[i].spec.trainable)
            .collect();
        let opt = match train {
            Some((_, cfg)) if !trainable.is_empty() => {
                let lens: Vec<usize> = trainable.iter().map(|&i| params[i].buf.len()).collect();
                Some(GpuOptimizer::new(ctx, cfg, &lens)?)
            }
            Some(_) => {
                return Err(Error::Config(format!(
                    "model {} has no trainable weights to fit",
                    model.spec().name
                )));
            }
            None => None,
        };
        let mut regs = Vec::new();
        let mut total = 0usize;
        for &i in &trainable {
            if let Some(r) = params[i].spec.regularizer {
                regs.push(Reg {
                    param: i,
                    l1: r.l1 as f32,
                    l2: r.l2 as f32,
                    off: total,
                });
                total += kernel::reg_groups(params[i].buf.len());
            }
        }
        let partials = if total > 0 {
            Some((buffers::zeros(ctx, "penalty partials", total)?, total))
        } else {
            None
        };
        Ok(Self {
            ctx: ctx.clone(),
            layers,
            params,
            trainable,
            opt,
            regs,
            partials,
        })
    }

    /// One training step on a batch: one submit, one read-back.
    pub fn train_step(
        &mut self,
        model: &Sequential,
        x: &ModelInput,
        y: &Target,
        loss: KerasLoss,
        want_pred: bool,
    ) -> Result<StepOut> {
        let Some(opt) = self.opt.as_mut() else {
            return Err(Error::Config(
                "this device session was built for inference; it cannot train".into(),
            ));
        };
        let ctx = self.ctx.clone();
        let xt = upload_input(&ctx, model, x)?;
        let mut rec = Recorder::new(&ctx);
        let run = forward(&mut rec, &self.layers, &xt, true)?;
        if run.outputs.len() != 1 {
            return Err(Error::Unsupported(format!(
                "model {} has {} outputs; training needs one",
                model.spec().name,
                run.outputs.len()
            )));
        }
        let pred = &run.outputs[0];
        let shape = pred.shape().to_vec();
        let cols = *shape.last().unwrap_or(&1);
        let rows = pred.len() / cols.max(1);
        let target = dense_targets(loss, y, &shape)?;
        let tv = target.as_standard_layout();
        let tgt = DeviceTensor::from_f32(&ctx, &[rows, cols], tv.as_slice().unwrap_or_default())?;
        let w = row_weights(rows, super::gpu::loss_mask(model, x, &shape)?.as_ref());
        let wt = DeviceTensor::from_f32(&ctx, &[rows], &w)?;
        let dy = DeviceTensor::zeros(&ctx, &shape, DType::F32)?;
        let row_loss = DeviceTensor::zeros(&ctx, &[rows], DType::F32)?;
        kernel::record_loss(
            &mut rec,
            row_loss_kind(loss),
            (rows, cols),
            EPS,
            &LossBufs {
                pred: pred.buffer(),
                target: tgt.buffer(),
                weight: wt.buffer(),
                grad: dy.buffer(),
                row_loss: row_loss.buffer(),
            },
        )?;
        backward(&mut rec, &self.layers, &run, dy)?;
        if let Some((partials, _)) = &self.partials {
            for r in &self.regs {
                let p = &self.params[r.param].buf;
                kernel::record_regularize(
                    &mut rec,
                    (&p.param, &p.grad, partials),
                    p.len(),
                    r.off,
                    (r.l1, r.l2),
                )?;
            }
        }
        let pairs: Vec<(&wgpu::Buffer, &wgpu::Buffer)> = self
            .trainable
            .iter()
            .map(|&i| (&self.params[i].buf.param, &self.params[i].buf.grad))
            .collect();
        opt.record_step(&mut rec, &pairs)?;
        rec.submit()?;
        let mut ranges = vec![(row_loss.buffer(), 0, rows)];
        if let Some((b, n)) = &self.partials {
            ranges.push((b, 0, *n));
        }
        if want_pred {
            ranges.push((pred.buffer(), 0, pred.len()));
        }
        let mut back = buffers::read_f32(&ctx, &ranges)?.into_iter();
        let mut value: f64 = back
            .next()
            .unwrap_or_default()
            .iter()
            .map(|&v| f64::from(v))
            .sum();
        if self.partials.is_some() {
            value += back
                .next()
                .unwrap_or_default()
                .iter()
                .map(|&v| f64::from(v))
                .sum::<f64>();
        }
        let pred = match back.next() {
            Some(v) if want_pred => Some(
                ArrayD::from_shape_vec(IxDyn(&shape), v)
                    .map_err(|e| Error::Shape(e.to_string()))?,
            ),
            _ => None,
        };
        Ok(StepOut {
            loss: value,
            pred,
            target,
            weights: w,
        })
    }

    /// The model's outputs on `x` in inference mode (every dropout an identity).
    pub fn infer(&self, model: &Sequential, x: &ModelInput) -> Result<Vec<ArrayD<f32>>> {
        let xt = upload_input(&self.ctx, model, x)?;
        let mut rec = Recorder::new(&self.ctx);
        let run = forward(&mut rec, &self.layers, &xt, false)?;
        rec.submit()?;
        let ranges: Vec<buffers::ReadRange<'_>> = run
            .outputs
            .iter()
            .map(|o| (o.buffer(), 0, o.len()))
            .collect();
        let data = buffers::read_f32(&self.ctx, &ranges)?;
        run.outputs
            .iter()
            .zip(data)
            .map(|(o, v)| {
                ArrayD::from_shape_vec(IxDyn(o.shape()), v).map_err(|e| Error::Shape(e.to_string()))
            })
            .collect()
    }

    /// The device's weights by Keras path (one read-back).
    pub fn weights(&self) -> Result<BTreeMap<String, ArrayD<f32>>> {
        device_params::values(&self.ctx, &self.params)
    }
}
