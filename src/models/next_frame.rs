//! Next-frame video prediction (the Keras ConvLSTM2D example, Moving-MNIST style): stacked
//! ConvLSTM2D layers ("same" padding, return_sequences) and a per-frame convolution head,
//! trained with binary cross-entropy and an optimizer entirely on the device.
//!
//! Frame t of the input predicts frame t+1. The head outputs logits and the loss is the
//! stable BCE-with-logits; predictions are the sigmoid of the logits (what the Keras model's
//! sigmoid head outputs). One training step — every layer's forward, the head, the loss,
//! the whole backward and the optimizer update — is recorded into one submit; only the
//! scalar loss comes back to the host.

use std::path::Path;
use std::sync::Arc;

use ndarray::{Array5, ArrayD, ArrayView5, Axis, IxDyn, concatenate, s};

use crate::algorithm::Algorithm;
use crate::context::Context;
use crate::cpu::convlstm::{Activation, ConvLstmDims, ConvLstmParams, Padding};
use crate::error::{Error, Result};
use crate::gpu::convlstm::{GpuConvLstm, LayerRun};
use crate::kernels::{Recorder, buffers, nn_act};
use crate::nn::{ConvHeadConfig, ConvHeadParams, GpuConvHead, GradTarget, SeqShape};
use crate::train::checkpoint::{self, NamedBuffer};
use crate::train::{GpuLoss, GpuOptimizer, LossKind, OptimizerConfig, StepRecorder};
use crate::weights::TensorMap;

/// One ConvLSTM2D layer of the stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvLstmLayerSpec {
    /// Filters `F`.
    pub filters: usize,
    /// Kernel `(kh, kw)` of both convolutions ("same" padding, stride 1).
    pub kernel: (usize, usize),
}

/// The model and how it trains.
#[derive(Clone, Debug)]
pub struct NextFrameConfig {
    /// Frame height.
    pub rows: usize,
    /// Frame width.
    pub cols: usize,
    /// Channels per frame (1 for Moving MNIST).
    pub channels: usize,
    /// The ConvLSTM2D stack, first layer first.
    pub layers: Vec<ConvLstmLayerSpec>,
    /// Kernel of the per-frame head convolution (to `channels` outputs).
    pub head_kernel: (usize, usize),
    /// Initial bias of the head (a logit): frames of sparse digits are mostly background, and
    /// starting at the logit of the mean intensity (e.g. logit(0.05) ≈ -3) instead of 0 (a
    /// grey 0.5 frame) skips the first phase of training.
    pub head_bias_init: f32,
    /// Optimizer, learning rate and clipping.
    pub optimizer: OptimizerConfig,
    /// Seed of the weight initialisation.
    pub seed: u64,
}

impl NextFrameConfig {
    /// Checks sizes; the error names the value.
    pub fn validate(&self) -> Result<()> {
        if self.rows == 0 || self.cols == 0 || self.channels == 0 {
            return Err(Error::Config(format!(
                "frames must be non-empty: {}x{}x{}",
                self.rows, self.cols, self.channels
            )));
        }
        if !self.head_bias_init.is_finite() {
            return Err(Error::Config(format!(
                "head_bias_init must be finite, got {}",
                self.head_bias_init
            )));
        }
        if self.layers.is_empty() {
            return Err(Error::Config(
                "the model needs at least one ConvLSTM2D layer".into(),
            ));
        }
        if let Some(l) = self
            .layers
            .iter()
            .find(|l| l.filters == 0 || l.kernel.0 == 0 || l.kernel.1 == 0)
        {
            return Err(Error::Config(format!("bad ConvLSTM2D layer {l:?}")));
        }
        self.optimizer.validate()
    }
}

/// A next-frame model whose weights, gradients and optimizer state live on the device.
pub struct NextFrameModel {
    ctx: Arc<Context>,
    config: NextFrameConfig,
    cells: Vec<(ConvLstmDims, GpuConvLstm)>,
    head: GpuConvHead,
    optimizer: GpuOptimizer,
    /// BCE for the last batch shape (rebuilt when the shape changes).
    loss: Option<(Vec<usize>, GpuLoss)>,
}

/// What one recorded forward leaves on the device.
struct Forward {
    runs: Vec<LayerRun>,
    logits: wgpu::Buffer,
    shape: SeqShape,
}

impl NextFrameModel {
    /// A model with Glorot-uniform-like weights from `config.seed` and zero biases.
    pub fn new(ctx: Arc<Context>, config: NextFrameConfig) -> Result<Self> {
        config.validate()?;
        let mut cells = Vec::new();
        let mut cin = config.channels;
        let mut lens = Vec::new();
        for (i, l) in config.layers.iter().enumerate() {
            let mut d = ConvLstmDims::new(config.rows, config.cols, cin, l.filters, l.kernel);
            d.padding = Padding::Same;
            d.validate()?;
            let fan = l.kernel.0 * l.kernel.1 * (cin + l.filters) + 4 * l.filters;
            let seed = config.seed.wrapping_add(i as u64);
            let mut p = ConvLstmParams::<f32>::random(d, seed, (6.0 / fan as f64).sqrt())?;
            p.bias.fill(0.0);
            // Keras' unit_forget_bias: start the forget gate open.
            p.bias.slice_mut(s![l.filters..2 * l.filters]).fill(1.0);
            lens.extend([p.kernel.len(), p.recurrent_kernel.len(), p.bias.len()]);
            cells.push((d, GpuConvLstm::upload(&ctx, &p)?));
            cin = l.filters;
        }
        let hc = ConvHeadConfig::new(cin, config.channels, config.head_kernel, Activation::Linear)?;
        let fan = config.head_kernel.0 * config.head_kernel.1 * (cin + config.channels);
        let mut hp =
            ConvHeadParams::<f32>::random(hc, config.seed ^ 0x5eed, (6.0 / fan as f64).sqrt())?;
        hp.bias.fill(config.head_bias_init);
        let head = GpuConvHead::new(ctx.clone(), &hp)?;
        lens.extend(head.params().iter().map(|p| p.len()));
        let optimizer = GpuOptimizer::new(&ctx, config.optimizer, &lens)?;
        Ok(Self {
            ctx,
            config,
            cells,
            head,
            optimizer,
            loss: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &NextFrameConfig {
        &self.config
    }

    /// The device context.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// Number of trainable parameters.
    pub fn parameter_count(&self) -> usize {
        self.optimizer_lens().iter().sum()
    }

    /// Optimizer steps taken so far.
    pub fn steps(&self) -> u64 {
        self.optimizer.steps()
    }

    fn optimizer_lens(&self) -> Vec<usize> {
        let mut v = Vec::new();
        for (d, _) in &self.cells {
            let k = d.kernel.0 * d.kernel.1;
            v.extend([
                k * d.in_channels * 4 * d.filters,
                k * d.filters * 4 * d.filters,
                4 * d.filters,
            ]);
        }
        v.extend(self.head.params().iter().map(|p| p.len()));
        v
    }

    fn check_frames(&self, what: &str, x: &ArrayView5<f32>) -> Result<()> {
        let c = &self.config;
        let (b, t, h, w, ch) = x.dim();
        if b == 0 || t == 0 || (h, w, ch) != (c.rows, c.cols, c.channels) {
            return Err(Error::Shape(format!(
                "{what} has shape {:?}; expected (B>0, T>0, {}, {}, {})",
                x.shape(),
                c.rows,
                c.cols,
                c.channels
            )));
        }
        Ok(())
    }

    /// Records the forward of `x` (B,T,H,W,C on the device) into `rec`.
    fn record_forward(
        &self,
        rec: &mut Recorder<'_>,
        x: &wgpu::Buffer,
        (b, t): (usize, usize),
        train: bool,
    ) -> Result<Forward> {
        let mut runs: Vec<LayerRun> = Vec::new();
        for (_, cell) in &self.cells {
            let n = cell.state_len(b)?;
            let (h0, c0) = (
                buffers::zeros(&self.ctx, "h0", n)?,
                buffers::zeros(&self.ctx, "c0", n)?,
            );
            let input = runs.last().map_or(x, |r| &r.out);
            let run = cell.record_forward(
                &self.ctx,
                rec,
                input,
                (b, t),
                (&h0, &c0),
                Algorithm::Auto,
                train,
            )?;
            runs.push(run);
        }
        let shape = SeqShape {
            batch: b,
            steps: t,
            rows: self.config.rows,
            cols: self.config.cols,
        };
        let last = runs
            .last()
            .map(|r| &r.out)
            .ok_or_else(|| Error::Config("the model needs at least one ConvLSTM2D layer".into()))?;
        let logits = self.head.record_forward(rec, last, shape)?;
        Ok(Forward {
            runs,
            logits,
            shape,
        })
    }

    fn loss_for(&mut self, shape: &[usize]) -> Result<&GpuLoss> {
        let stale = self.loss.as_ref().is_none_or(|(s, _)| s != shape);
        if stale {
            let kind = LossKind::BinaryCrossEntropy { from_logits: true };
            self.loss = Some((shape.to_vec(), GpuLoss::new(&self.ctx, kind, shape)?));
        }
        self.loss
            .as_ref()
            .map(|(_, l)| l)
            .ok_or_else(|| Error::Device("loss not built".into()))
    }

    /// One optimizer step on a batch: `x` frames (B,T,H,W,C) predict `y` (the same shape,
    /// usually x shifted by one frame). Returns the batch's mean BCE before the update.
    pub fn train_step(&mut self, x: ArrayView5<f32>, y: ArrayView5<f32>) -> Result<f32> {
        self.check_frames("input", &x)?;
        if x.dim() != y.dim() {
            return Err(Error::Shape(format!(
                "target shape {:?} differs from input shape {:?}",
                y.shape(),
                x.shape()
            )));
        }
        let (b, t) = (x.dim().0, x.dim().1);
        let ctx = self.ctx.clone();
        let x_buf = buffers::upload(&ctx, "frames", &flat(&x))?;
        let y_buf = buffers::upload(&ctx, "targets", &flat(&y))?;
        let mut sr = StepRecorder::new(&ctx);
        let fwd = self.record_forward(&mut sr, &x_buf, (b, t), true)?;
        let n = y.len();
        let dlogits = buffers::zeros(&ctx, "d logits", n)?;
        self.loss_for(y.shape())?
            .record(&mut sr, &fwd.logits, &y_buf, &dlogits)?;
        let last = fwd
            .runs
            .last()
            .ok_or_else(|| Error::Device("no layer ran".into()))?;
        let mut dy = self.head.record_backward(
            &mut sr,
            (&last.out, &fwd.logits, &dlogits),
            fwd.shape,
            GradTarget::New,
        )?;
        let mut grads = Vec::new();
        for ((_, cell), run) in self.cells.iter().zip(&fwd.runs).rev() {
            let tape = run
                .tape
                .as_ref()
                .ok_or_else(|| Error::Device("training forward kept no tape".into()))?;
            let state = buffers::zeros(&ctx, "d final state", 2 * cell.state_len(b)?)?;
            let g = cell.record_backward(&ctx, &mut sr, tape, &dy, state)?;
            dy = g.dx.clone();
            grads.push(g);
        }
        grads.reverse();
        let head_params = self.head.params();
        let mut pairs: Vec<(&wgpu::Buffer, &wgpu::Buffer)> = Vec::new();
        for ((_, cell), g) in self.cells.iter().zip(&grads) {
            let [k, rk, bias] = cell.params();
            pairs.extend([(k, &g.dk), (rk, &g.drk), (bias, &g.db)]);
        }
        pairs.extend(head_params.iter().map(|p| (&p.param, &p.grad)));
        self.optimizer.record_step(&mut sr, &pairs)?;
        sr.submit()?;
        self.loss_for(y.shape())?.read_value(&ctx)
    }

    /// Mean BCE of the model's predictions of `y` from `x`, and the predictions (sigmoid
    /// probabilities, the shape of `x`), without touching the weights.
    pub fn evaluate(
        &mut self,
        x: ArrayView5<f32>,
        y: ArrayView5<f32>,
    ) -> Result<(f32, Array5<f32>)> {
        self.check_frames("input", &x)?;
        if x.dim() != y.dim() {
            return Err(Error::Shape(format!(
                "target shape {:?} differs from input shape {:?}",
                y.shape(),
                x.shape()
            )));
        }
        let ctx = self.ctx.clone();
        let y_buf = buffers::upload(&ctx, "targets", &flat(&y))?;
        let scratch = buffers::zeros(&ctx, "d logits (unused)", y.len())?;
        let (logits, mut sr) = self.logits(&ctx, &x)?;
        self.loss_for(y.shape())?
            .record(&mut sr, &logits, &y_buf, &scratch)?;
        nn_act::forward(&mut sr, Activation::Sigmoid, &logits, &scratch, y.len())?;
        sr.submit()?;
        let loss = self.loss_for(y.shape())?.read_value(&ctx)?;
        Ok((loss, self.read_frames(&logits, x.dim())?))
    }

    fn logits<'c>(
        &self,
        ctx: &'c Context,
        x: &ArrayView5<f32>,
    ) -> Result<(wgpu::Buffer, StepRecorder<'c>)> {
        let (b, t) = (x.dim().0, x.dim().1);
        let x_buf = buffers::upload(ctx, "frames", &flat(x))?;
        let mut sr = StepRecorder::new(ctx);
        let fwd = self.record_forward(&mut sr, &x_buf, (b, t), false)?;
        Ok((fwd.logits, sr))
    }

    fn read_frames(
        &self,
        buf: &wgpu::Buffer,
        dim: (usize, usize, usize, usize, usize),
    ) -> Result<Array5<f32>> {
        let n = dim.0 * dim.1 * dim.2 * dim.3 * dim.4;
        let v = buffers::read_f32(&self.ctx, &[(buf, 0, n)])?
            .pop()
            .ok_or_else(|| Error::Device("read-back".into()))?;
        Array5::from_shape_vec(dim, v).map_err(|e| Error::Shape(e.to_string()))
    }

    /// Predictions (sigmoid probabilities) of frames 1..=T from frames 0..T of `x`.
    pub fn predict(&self, x: ArrayView5<f32>) -> Result<Array5<f32>> {
        self.check_frames("input", &x)?;
        let ctx = self.ctx.clone();
        let (logits, mut sr) = self.logits(&ctx, &x)?;
        let spare = buffers::zeros(&ctx, "spare", 1)?;
        nn_act::forward(&mut sr, Activation::Sigmoid, &logits, &spare, x.len())?;
        sr.submit()?;
        self.read_frames(&logits, x.dim())
    }

    /// Autoregressive rollout: from `context` (B,Tc,H,W,C), predicts the next frame, appends
    /// it to the input, and repeats `steps` times. Returns the `steps` predicted frames.
    pub fn rollout(&self, context: ArrayView5<f32>, steps: usize) -> Result<Array5<f32>> {
        self.check_frames("rollout context", &context)?;
        let mut seq = context.to_owned();
        let mut out = Vec::with_capacity(steps);
        for _ in 0..steps {
            let p = self.predict(seq.view())?;
            let t = p.dim().1;
            let next = p.slice(s![.., t - 1..t, .., .., ..]).to_owned();
            seq = concatenate(Axis(1), &[seq.view(), next.view()])
                .map_err(|e| Error::Shape(e.to_string()))?;
            out.push(next);
        }
        let views: Vec<_> = out.iter().map(|a| a.view()).collect();
        concatenate(Axis(1), &views).map_err(|e| Error::Shape(e.to_string()))
    }

    fn named(&self) -> Vec<(String, wgpu::Buffer, Vec<usize>)> {
        let mut v = Vec::new();
        for (i, (d, cell)) in self.cells.iter().enumerate() {
            let (kh, kw) = d.kernel;
            let [k, rk, b] = cell.params();
            v.push((
                format!("conv_lstm2d_{i}.kernel"),
                k.clone(),
                vec![kh, kw, d.in_channels, 4 * d.filters],
            ));
            v.push((
                format!("conv_lstm2d_{i}.recurrent_kernel"),
                rk.clone(),
                vec![kh, kw, d.filters, 4 * d.filters],
            ));
            v.push((
                format!("conv_lstm2d_{i}.bias"),
                b.clone(),
                vec![4 * d.filters],
            ));
        }
        for p in self.head.params() {
            v.push((format!("head.{}", p.name), p.param.clone(), p.shape.clone()));
        }
        v
    }

    /// Reads every weight back (Keras layouts), under the names [`save`](Self::save) uses.
    pub fn weights(&self) -> Result<TensorMap> {
        let named = self.named();
        let ranges: Vec<_> = named
            .iter()
            .map(|(_, b, shape)| (b, 0, shape.iter().product::<usize>()))
            .collect();
        let data = buffers::read_f32(&self.ctx, &ranges)?;
        named
            .into_iter()
            .zip(data)
            .map(|((n, _, shape), v)| {
                ArrayD::from_shape_vec(IxDyn(&shape), v)
                    .map(|a| (n, a))
                    .map_err(|e| Error::Shape(e.to_string()))
            })
            .collect()
    }

    /// Saves every weight (Keras layouts, names `conv_lstm2d_{i}.kernel|recurrent_kernel|
    /// bias`, `head.kernel|bias`) to a `.safetensors` file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let named = self.named();
        let list: Vec<NamedBuffer> = named
            .iter()
            .map(|(n, b, s)| NamedBuffer {
                name: n,
                buffer: b,
                shape: s,
            })
            .collect();
        checkpoint::save(&self.ctx, path, &list)
    }

    /// Loads weights saved by [`save`](Self::save) from a model of the same configuration.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let named = self.named();
        let list: Vec<NamedBuffer> = named
            .iter()
            .map(|(n, b, s)| NamedBuffer {
                name: n,
                buffer: b,
                shape: s,
            })
            .collect();
        checkpoint::load_into(&self.ctx, path, &list)
    }
}

fn flat(a: &ArrayView5<f32>) -> Vec<f32> {
    a.iter().copied().collect()
}
