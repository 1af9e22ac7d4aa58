//! Next-frame video prediction with stacked ConvLSTM2D layers (the Keras ConvLSTM2D example,
//! Moving-MNIST style), trained end to end on the GPU.
//!
//!     cargo run --release --example next_frame -- --quick --out out/next_frame
//!     cargo run --release --example next_frame -- --data mnist_test_seq.npy   # real Moving MNIST
//!     cargo run --release --example next_frame -- --full                       # the Keras size
//!
//! Frames 0..T-1 of a sequence predict frames 1..T; loss binary cross-entropy, Adam. Held-out
//! sequences are scored by per-frame MSE against two baselines ("copy the last frame" and
//! "predict an empty frame"), then a 10-frame autoregressive rollout is drawn to a GIF.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array5, ArrayView5, Axis, concatenate, s};
use wgpu_rnn::data::{self, ChartOptions, GifOptions, MovingDigitsConfig};
use wgpu_rnn::models::{ConvLstmLayerSpec, NextFrameConfig, NextFrameModel};
use wgpu_rnn::train::OptimizerConfig;
use wgpu_rnn::{Context, Result};

#[derive(Parser, Debug)]
#[command(about = "ConvLSTM2D next-frame prediction (Moving-MNIST style) on the GPU")]
struct Args {
    /// Small configuration that trains in minutes on a software adapter.
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// The Keras example's size: 3 layers of 64 filters (5×5, 3×3, 1×1).
    #[arg(long)]
    full: bool,
    /// Train on the real Moving MNIST file (20, N, 64, 64) uint8 instead of generated digits.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output directory for metrics.json, rollout.gif, loss.png and weights.safetensors.
    #[arg(long, default_value = "out/next_frame")]
    out: PathBuf,
    /// Override the number of epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the number of training sequences.
    #[arg(long)]
    train: Option<usize>,
    /// Override the number of held-out sequences.
    #[arg(long)]
    heldout: Option<usize>,
    /// Override the learning rate.
    #[arg(long)]
    lr: Option<f32>,
    /// Override the filters of every ConvLSTM2D layer.
    #[arg(long)]
    filters: Option<usize>,
    /// Data and weight seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// One run's sizes.
#[derive(Clone, Debug)]
struct Plan {
    name: &'static str,
    /// Frames are generated (or loaded) at 64×64 and box-downscaled by this factor.
    downscale: usize,
    frames: usize,
    /// Digit speed range, pixels per frame at 64×64 (before downscaling).
    speed: (f32, f32),
    layers: Vec<ConvLstmLayerSpec>,
    head_kernel: (usize, usize),
    batch: usize,
    train: usize,
    heldout: usize,
    epochs: usize,
    lr: f32,
}

fn bad_arg(msg: String) -> wgpu_rnn::Error {
    wgpu_rnn::Error::Config(msg)
}

/// The run's sizes from the preset and the overrides; every override is checked here, before
/// any data is loaded or anything is trained.
fn plan(a: &Args) -> Result<Plan> {
    let layer = |filters, k| ConvLstmLayerSpec {
        filters,
        kernel: (k, k),
    };
    let mut p = if a.quick {
        Plan {
            name: "quick",
            downscale: 4,
            frames: 20,
            speed: (3.0, 6.0),
            layers: vec![layer(8, 3), layer(8, 3)],
            head_kernel: (3, 3),
            batch: 8,
            train: 320,
            heldout: 32,
            epochs: 4,
            lr: 1e-2,
        }
    } else if a.full {
        Plan {
            name: "full",
            downscale: 1,
            frames: 20,
            speed: (1.0, 3.0),
            layers: vec![layer(64, 5), layer(64, 3), layer(64, 1)],
            head_kernel: (3, 3),
            batch: 5,
            train: 900,
            heldout: 100,
            epochs: 20,
            lr: 1e-3,
        }
    } else {
        Plan {
            name: "default",
            downscale: 2,
            frames: 20,
            speed: (2.0, 4.0),
            layers: vec![layer(32, 3), layer(32, 3)],
            head_kernel: (3, 3),
            batch: 8,
            train: 1024,
            heldout: 64,
            epochs: 10,
            lr: 1e-3,
        }
    };
    if let Some(e) = a.epochs {
        p.epochs = e;
    }
    if let Some(n) = a.train {
        p.train = n;
    }
    if let Some(n) = a.heldout {
        p.heldout = n;
    }
    if let Some(lr) = a.lr {
        p.lr = lr;
    }
    if let Some(f) = a.filters {
        p.layers.iter_mut().for_each(|l| l.filters = f);
    }
    if p.epochs == 0 {
        return Err(bad_arg("--epochs 0: train for at least 1 epoch".into()));
    }
    if p.train < p.batch {
        return Err(bad_arg(format!(
            "--train {}: at least one batch of {} training sequences is needed",
            p.train, p.batch
        )));
    }
    if p.heldout == 0 {
        return Err(bad_arg(
            "--heldout 0: at least 1 held-out sequence is needed to score the model".into(),
        ));
    }
    if !(p.lr.is_finite() && p.lr > 0.0) {
        return Err(bad_arg(format!(
            "--lr {}: the learning rate must be a positive finite number",
            p.lr
        )));
    }
    if p.train.checked_add(p.heldout).is_none() {
        return Err(bad_arg(format!(
            "--train {} plus --heldout {} overflows",
            p.train, p.heldout
        )));
    }
    Ok(p)
}

/// The model for `rows x cols` frames (also used to check the configuration before any data
/// is loaded).
fn model_config(p: &Plan, rows: usize, cols: usize, seed: u64) -> NextFrameConfig {
    NextFrameConfig {
        rows,
        cols,
        channels: 1,
        layers: p.layers.clone(),
        head_kernel: p.head_kernel,
        head_bias_init: -3.0,
        optimizer: OptimizerConfig {
            clip_norm: Some(1.0),
            ..OptimizerConfig::adam(p.lr)
        },
        seed,
    }
}

/// GIF magnification: small frames scaled up to roughly 200 pixels per sequence, within the
/// 1..=16 the GIF writer accepts.
fn gif_scale(cols: usize) -> usize {
    (192 / cols.max(1)).clamp(2, 16)
}

/// Train and held-out sequences, [N, T, H, W, 1] in [0, 1].
fn load_data(a: &Args, p: &Plan) -> Result<(Array5<f32>, Array5<f32>, String)> {
    let n = p.train + p.heldout;
    let (all, source) = match &a.data {
        Some(path) => (
            data::load_moving_mnist(path, Some(n))?,
            format!("Moving MNIST file {}", path.display()),
        ),
        None => {
            let cfg = MovingDigitsConfig {
                frames: p.frames,
                min_speed: p.speed.0,
                max_speed: p.speed.1,
                seed: a.seed,
                ..MovingDigitsConfig::default()
            };
            (
                data::generate(cfg, n)?,
                "built-in bouncing digits".to_string(),
            )
        }
    };
    let (count, frames, rows, cols, _) = all.dim();
    if frames < 2 {
        return Err(wgpu_rnn::Error::Data(format!(
            "{source}: sequences of {frames} frame(s); next-frame prediction needs at least 2"
        )));
    }
    if p.downscale > 1 && (rows < p.downscale || cols < p.downscale) {
        return Err(wgpu_rnn::Error::Data(format!(
            "{source}: frames of {rows}x{cols} pixels are smaller than the {}x downscale of \
             this configuration",
            p.downscale
        )));
    }
    let all = if p.downscale > 1 {
        data::downscale(all.view(), p.downscale)?
    } else {
        all
    };
    // A data file may hold fewer sequences than asked for: then half of them are held out,
    // as long as a whole training batch and one held-out sequence remain.
    let heldout = if count >= n { p.heldout } else { count / 2 };
    let n = count.min(n);
    if heldout == 0 || n - heldout < p.batch {
        return Err(wgpu_rnn::Error::Data(format!(
            "{source}: {count} sequence(s); this run needs at least one training batch of {} \
             plus 1 held-out sequence ({} in all)",
            p.batch,
            p.batch + 1
        )));
    }
    let t = frames.min(p.frames);
    let train = all.slice(s![..n - heldout, ..t, .., .., ..]).to_owned();
    let held = all.slice(s![n - heldout..n, ..t, .., .., ..]).to_owned();
    Ok((train, held, source))
}

/// Input frames 0..T-1 and targets 1..T of a batch of sequences.
fn split(seq: ArrayView5<f32>) -> (ArrayView5<f32>, ArrayView5<f32>) {
    let t = seq.dim().1;
    (
        seq.slice_move(s![.., ..t - 1, .., .., ..]),
        seq.slice_move(s![.., 1.., .., .., ..]),
    )
}

fn mse(a: ArrayView5<f32>, b: ArrayView5<f32>) -> f64 {
    let n = a.len().max(1) as f64;
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        / n
}

#[derive(Clone, Copy)]
struct HeldOut {
    bce: f64,
    mse_model: f64,
    mse_copy_last: f64,
    mse_blank: f64,
}

fn evaluate(model: &mut NextFrameModel, held: &Array5<f32>, batch: usize) -> Result<HeldOut> {
    let (mut bce, mut m, mut c, mut z, mut n) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for chunk in held.axis_chunks_iter(Axis(0), batch) {
        let (x, y) = split(chunk);
        let (loss, pred) = model.evaluate(x, y)?;
        let w = chunk.dim().0 as f64;
        bce += f64::from(loss) * w;
        m += mse(pred.view(), y) * w;
        c += mse(x, y) * w;
        z += y.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / y.len() as f64 * w;
        n += w;
    }
    Ok(HeldOut {
        bce: bce / n,
        mse_model: m / n,
        mse_copy_last: c / n,
        mse_blank: z / n,
    })
}

fn main() -> ExitCode {
    // Errors print in words (Display), e.g. "limit exceeded: ... the limit is ...".
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("next_frame: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let p = plan(&args)?;
    // The model's sizes are checked (against the host-memory cap too) before any data is
    // loaded, with the frame size the preset makes.
    let side = 64 / p.downscale;
    model_config(&p, side, side, args.seed).validate()?;
    std::fs::create_dir_all(&args.out).map_err(|e| wgpu_rnn::Error::Io {
        path: args.out.display().to_string(),
        msg: e.to_string(),
    })?;
    let started = Instant::now();
    let ctx = Arc::new(Context::new()?);
    let adapter = ctx.adapter().clone();
    let (train, held, source) = load_data(&args, &p)?;
    let (_, t, rows, cols, _) = train.dim();
    println!(
        "adapter: {} ({}, {})\ndata: {source}: {} train + {} held-out sequences of {t} frames {rows}x{cols}",
        adapter.name,
        adapter.backend,
        adapter.device_type,
        train.dim().0,
        held.dim().0
    );
    let config = model_config(&p, rows, cols, args.seed);
    let gif = GifOptions {
        scale: gif_scale(cols),
        ..GifOptions::default()
    };
    let mut model = NextFrameModel::new(ctx.clone(), config)?;
    println!(
        "model ({}): ConvLSTM2D {:?} + conv head {:?}, {} parameters, Adam lr {}, batch {}",
        p.name,
        p.layers
            .iter()
            .map(|l| (l.filters, l.kernel))
            .collect::<Vec<_>>(),
        p.head_kernel,
        model.parameter_count(),
        p.lr,
        p.batch
    );
    let before = evaluate(&mut model, &held, p.batch)?;
    println!(
        "held-out before training: BCE {:.4}, MSE model {:.5} | copy-last {:.5} | blank {:.5}",
        before.bce, before.mse_model, before.mse_copy_last, before.mse_blank
    );
    let (mut train_loss, mut held_loss) = (Vec::new(), Vec::new());
    // Training throughput per epoch (the train steps alone, host batching included).
    let mut rates = Vec::new();
    // load_data guarantees at least one whole batch, so every reported loss was computed.
    let batches = train.dim().0 / p.batch;
    let mut order: Vec<usize> = (0..train.dim().0).collect();
    let mut rng = args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut last = before;
    for epoch in 0..p.epochs {
        // Fisher-Yates with a xorshift: a fresh order each epoch, reproducible from the seed.
        for i in (1..order.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            order.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        let bar = ProgressBar::new(batches as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, p.epochs));
        let t0 = Instant::now();
        let mut sum = 0.0;
        for bi in 0..batches {
            let idx = &order[bi * p.batch..(bi + 1) * p.batch];
            let seqs = train.select(Axis(0), idx);
            let (x, y) = split(seqs.view());
            let loss = model.train_step(x, y)?;
            sum += f64::from(loss);
            bar.set_message(format!("loss {:.4}", sum / (bi + 1) as f64));
            bar.inc(1);
        }
        bar.finish();
        let secs = t0.elapsed().as_secs_f64();
        rates.push((batches * p.batch) as f64 / secs);
        train_loss.push(sum / batches as f64);
        last = evaluate(&mut model, &held, p.batch)?;
        held_loss.push(last.bce);
        println!(
            "epoch {}: train BCE {:.4}, held-out BCE {:.4}, MSE model {:.5} (copy-last {:.5}, blank {:.5}), {:.1} sequences/s",
            epoch + 1,
            train_loss[epoch],
            last.bce,
            last.mse_model,
            last.mse_copy_last,
            last.mse_blank,
            rates[epoch]
        );
    }
    // Rollout: the first half of each shown sequence as context, then the model feeds on its
    // own predictions.
    let context = (t / 2).max(1);
    let steps = (t - context).min(10);
    let shown = held.dim().0.min(3);
    let seqs = held.slice(s![..shown, .., .., .., ..]);
    let pred = model.rollout(seqs.slice(s![.., ..context, .., .., ..]), steps)?;
    let truth = seqs.slice(s![.., context..context + steps, .., .., ..]);
    let rollout_mse: Vec<f64> = (0..steps)
        .map(|k| {
            mse(
                pred.slice(s![.., k..k + 1, .., .., ..]),
                truth.slice(s![.., k..k + 1, .., .., ..]),
            )
        })
        .collect();
    // GIF: the shown sequences side by side, ground truth above, rollout below.
    let wide = |a: ArrayView5<f32>| -> Result<ndarray::Array4<f32>> {
        let parts: Vec<_> = a.axis_iter(Axis(0)).collect();
        concatenate(Axis(2), &parts).map_err(|e| wgpu_rnn::Error::Shape(e.to_string()))
    };
    let truth_all = wide(seqs.slice(s![.., ..context + steps, .., .., ..]))?;
    data::write_rollout_gif(
        &args.out.join("rollout.gif"),
        truth_all.view(),
        wide(pred.view())?.view(),
        &gif,
    )?;
    let as_f32 = |v: &[f64]| v.iter().map(|x| *x as f32).collect::<Vec<_>>();
    data::write_loss_chart(
        &args.out.join("loss.png"),
        &as_f32(&train_loss),
        &as_f32(&held_loss),
        &ChartOptions::default(),
    )?;
    model.save(&args.out.join("weights.safetensors"))?;
    let seconds = started.elapsed().as_secs_f64();
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    let rate = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    // WGPU_RNN_CONVLSTM_ALGORITHM=stepwise|persistent|tiled forces the layers' Auto choice.
    let algorithm = std::env::var("WGPU_RNN_CONVLSTM_ALGORITHM").unwrap_or_else(|_| "auto".into());
    println!(
        "training ({} config, batch {}, ConvLSTM2D algorithm {algorithm}): {rate:.1} sequences/s \
         (median of {} epochs) on {}",
        p.name,
        p.batch,
        rates.len(),
        adapter.name
    );
    let metrics = serde_json::json!({
        "config": p.name,
        "data": source,
        "frames": [t, rows, cols],
        "train_sequences": train.dim().0,
        "heldout_sequences": held.dim().0,
        "epochs": p.epochs,
        "parameters": model.parameter_count(),
        "heldout_mse_model": last.mse_model,
        "heldout_mse_copy_last": last.mse_copy_last,
        "heldout_mse_blank": last.mse_blank,
        "heldout_bce": last.bce,
        "heldout_mse_model_before_training": before.mse_model,
        "rollout_context_frames": context,
        "rollout_mse": rollout_mse,
        "train_loss": train_loss,
        "heldout_loss": held_loss,
        "backend": adapter.backend,
        "adapter": adapter.name,
        "device_type": adapter.device_type,
        "seconds": seconds,
        "train_sequences_per_s": rate,
        "train_sequences_per_s_per_epoch": rates,
        "convlstm_algorithm": algorithm,
    });
    let path = args.out.join("metrics.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&metrics).unwrap_or_default(),
    )
    .map_err(|e| wgpu_rnn::Error::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    })?;
    let best = last.mse_copy_last.min(last.mse_blank);
    println!(
        "held-out MSE: model {:.5}, copy-last {:.5}, blank {:.5} (model/best baseline {:.2}); rollout MSE per step {:?}",
        last.mse_model,
        last.mse_copy_last,
        last.mse_blank,
        last.mse_model / best,
        rollout_mse
            .iter()
            .map(|v| format!("{v:.4}"))
            .collect::<Vec<_>>()
    );
    println!("wrote {} in {seconds:.0} s", args.out.display());
    Ok(())
}
