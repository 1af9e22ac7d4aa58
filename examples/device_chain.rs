//! Chaining layers on the device with a user-owned wgpu device: Embedding → LSTM →
//! Dense(1, sigmoid), trained with binary cross-entropy and Adam on a built-in token task
//! (label: does the marker token occur in the sequence?). Every training step is one
//! recording and one submit; the host reads back only the loss.
//!
//!     cargo run --release --example device_chain

use std::sync::Arc;

use wgpu_rnn::nn::{DenseConfig, DenseParams, Embedding, EmbeddingConfig, GpuDense};
use wgpu_rnn::train::{GpuLoss, GpuOptimizer, LossKind, OptimizerConfig};
use wgpu_rnn::{
    Activation, Backend, Context, DType, DeviceTensor, Forward, Layer, Lstm, LstmConfig,
    OutputGrads, Recorder, Tape, wgpu,
};

const VOCAB: usize = 16;
const MARKER: u32 = 1;
const SEQ: usize = 10;
const BATCH: usize = 32;
const BATCHES: usize = 4;
const STEPS: usize = 50;

/// A batch of token sequences (ids 2..VOCAB, the marker at a random place in about half)
/// and their labels, from a small xorshift generator so every run is the same.
fn batch(seed: u64) -> (Vec<u32>, Vec<f32>) {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let (mut tokens, mut labels) = (Vec::new(), Vec::new());
    for _ in 0..BATCH {
        let mut row: Vec<u32> = (0..SEQ)
            .map(|_| 2 + (next() % (VOCAB as u64 - 2)) as u32)
            .collect();
        let has = next() % 2 == 0;
        if has {
            row[(next() % SEQ as u64) as usize] = MARKER;
        }
        tokens.extend(row);
        labels.push(if has { 1.0 } else { 0.0 });
    }
    (tokens, labels)
}

/// The tape of a training forward.
fn tape(f: &Forward) -> wgpu_rnn::Result<&Tape> {
    f.tape
        .as_ref()
        .ok_or_else(|| wgpu_rnn::Error::Device("training forward kept no tape".into()))
}

fn main() -> wgpu_rnn::Result<()> {
    // The application's own device (any adapter; the adapter's limits for the fastest kernels).
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .map_err(|e| wgpu_rnn::Error::NoAdapter(e.to_string()))?;
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .map_err(|e| wgpu_rnn::Error::RequestDevice(e.to_string()))?;
    println!("adapter: {}", adapter.get_info().name);
    let ctx = Arc::new(Context::from_device(adapter, device, queue)?);

    let emb = Embedding::random(ctx.clone(), EmbeddingConfig::new(VOCAB, 8), 1)?;
    let mut cfg = LstmConfig::new(8, 16);
    cfg.batch_first = true;
    let lstm = Lstm::new(cfg, Backend::Gpu(ctx.clone()), 2)?;
    let head = DenseParams::random(DenseConfig::new(16, 1, Activation::Sigmoid)?, 3, 0.25)?;
    let dense = GpuDense::new(ctx.clone(), &head)?;

    let mut params = emb.params()?;
    params.extend(lstm.params()?);
    params.extend(Layer::params(&dense)?);
    let lens: Vec<usize> = params.iter().map(|p| p.len()).collect();
    let mut opt_cfg = OptimizerConfig::adam(3e-2);
    opt_cfg.clip_norm = Some(1.0);
    let mut opt = GpuOptimizer::new(&ctx, opt_cfg, &lens)?;
    let loss = GpuLoss::new(
        &ctx,
        LossKind::BinaryCrossEntropy { from_logits: false },
        &[BATCH, 1],
    )?;
    let dpred = DeviceTensor::zeros(&ctx, &[BATCH, 1], DType::F32)?;

    // The data goes to the device once; steps then upload nothing.
    let mut data = Vec::new();
    for k in 0..BATCHES {
        let (tokens, labels) = batch(k as u64 + 1);
        data.push((
            DeviceTensor::from_u32(&ctx, &[BATCH, SEQ], &tokens)?,
            DeviceTensor::from_f32(&ctx, &[BATCH, 1], &labels)?,
        ));
    }

    let (mut first, mut last, mut per_step) = (None, 0.0, Vec::new());
    let started = std::time::Instant::now();
    for step in 0..STEPS {
        let (tokens, labels) = &data[step % BATCHES];
        let before = ctx.totals();
        let mut rec = Recorder::new(&ctx);
        let e = emb.record_forward(&mut rec, tokens, true)?;
        let l = lstm.record_forward(&mut rec, &e.y, true)?;
        // The classifier reads the final hidden state h_n (1, B, H) as (B, H).
        let h = l.state[0].reshape(&[BATCH, 16])?;
        let d = Layer::record_forward(&dense, &mut rec, &h, true)?;
        loss.record(&mut rec, d.y.buffer(), labels.buffer(), dpred.buffer())?;
        let dh = Layer::record_backward(
            &dense,
            &mut rec,
            tape(&d)?,
            &OutputGrads::output(dpred.clone()),
        )?
        .ok_or_else(|| wgpu_rnn::Error::Device("dense returned no input gradient".into()))?;
        let grads = OutputGrads::final_state(dh.reshape(&[1, BATCH, 16])?);
        let de = lstm
            .record_backward(&mut rec, tape(&l)?, &grads)?
            .ok_or_else(|| wgpu_rnn::Error::Device("lstm returned no input gradient".into()))?;
        emb.record_backward(&mut rec, tape(&e)?, &OutputGrads::output(de))?;
        let pairs: Vec<_> = params.iter().map(|p| (&p.param, &p.grad)).collect();
        opt.record_step(&mut rec, &pairs)?;
        rec.submit()?;
        let value = loss.read_value(&ctx)?;
        per_step.push(ctx.totals().since(&before).read_backs);
        first.get_or_insert(value);
        last = value;
    }
    let ms = started.elapsed().as_secs_f64() * 1e3 / STEPS as f64;
    let reads = per_step.iter().max().copied().unwrap_or(0);
    println!("step time: {ms:.2} ms (mean of {STEPS} steps, loss read-back included)");
    println!("host read-backs per step: {reads}");
    println!("loss: {:.4} -> {last:.4}", first.unwrap_or(f32::NAN));
    Ok(())
}
