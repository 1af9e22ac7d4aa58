//! Text classification the Keras way, on the GPU: Embedding → {SimpleRNN, GRU, LSTM}(32) →
//! Dense(1, sigmoid), trained with `Sequential::fit` and compared on held-out reviews.
//!
//!     cargo run --release --example sentiment -- --quick --out out/sentiment
//!     cargo run --release --example sentiment -- --data imdb.npz     # Keras' IMDB file
//!     cargo run --release --example sentiment                        # the GPU size
//!
//! Without `--data`, reviews come from a built-in generator: sentiment words, negations that
//! flip the next sentiment word, neutral filler, variable lengths, pre-padded with 0 and
//! masked (`mask_zero=True`). Writes `metrics.json` with every cell's test accuracy,
//! parameter count and seconds, and the majority-class baseline.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use ndarray::Array2;
use wgpu_rnn::data::text::{self, ReviewConfig, Side, Vocabulary};
use wgpu_rnn::data::{ImdbOptions, load_imdb};
use wgpu_rnn::models::keras::{
    CellKind, DenseActivation, EarlyStopping, FitOptions, GpuBackend, KerasLoss, Metric,
    ModelInput, ModelWeights, Sequential, SequentialBuilder, Target, keras_optimizer,
};
use wgpu_rnn::{Context, Error, Result};

#[derive(Parser, Debug)]
#[command(about = "Sentiment classification with SimpleRNN, GRU and LSTM on the GPU")]
struct Args {
    /// A size that trains in a few minutes on a software adapter (2 CPU cores).
    #[arg(long)]
    quick: bool,
    /// Keras' `imdb.npz` (from `keras.datasets.imdb`) instead of generated reviews.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output directory for metrics.json.
    #[arg(long, default_value = "out/sentiment")]
    out: PathBuf,
    /// Cells to train, comma-separated (simple_rnn, gru, lstm).
    #[arg(long, default_value = "simple_rnn,gru,lstm")]
    cells: String,
    /// Override the epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the training reviews (generated data) or cap them (IMDB).
    #[arg(long)]
    train: Option<usize>,
    /// Override the test reviews.
    #[arg(long)]
    test: Option<usize>,
    /// Recurrent units.
    #[arg(long, default_value_t = 32)]
    units: usize,
    /// Learning rate (Adam).
    #[arg(long)]
    lr: Option<f32>,
    /// Data, weight, shuffle and dropout seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// One run's sizes.
struct Plan {
    vocab: usize,
    embed: usize,
    maxlen: usize,
    train: usize,
    test: usize,
    epochs: usize,
    batch: usize,
    lr: f32,
}

fn plan(a: &Args) -> Plan {
    let mut p = if a.quick {
        Plan {
            vocab: 200,
            embed: 16,
            maxlen: 24,
            train: 3000,
            test: 600,
            epochs: 20,
            batch: 32,
            lr: 0.01,
        }
    } else {
        // Keras' IMDB example: Embedding(20000, 128), sequences cut to 200 tokens.
        Plan {
            vocab: 20000,
            embed: 128,
            maxlen: 200,
            train: 20000,
            test: 5000,
            epochs: 10,
            batch: 64,
            lr: 0.002,
        }
    };
    if let Some(e) = a.epochs {
        p.epochs = e;
    }
    if let Some(n) = a.train {
        p.train = n;
    }
    if let Some(n) = a.test {
        p.test = n;
    }
    if let Some(lr) = a.lr {
        p.lr = lr;
    }
    p
}

/// Padded token ids and 0/1 labels of one split.
struct Split {
    x: Array2<i64>,
    y: Vec<i64>,
}

fn split(seqs: &[Vec<u32>], labels: &[i64], maxlen: usize) -> Result<Split> {
    Ok(Split {
        x: text::pad_sequences(seqs, Some(maxlen), Side::Pre, Side::Pre, 0)?,
        y: labels.to_vec(),
    })
}

/// Train and test splits, the Embedding's input_dim, and where the data came from.
fn load(a: &Args, p: &Plan) -> Result<(Split, Split, usize, String)> {
    if let Some(path) = &a.data {
        let opts = ImdbOptions {
            num_words: Some(p.vocab),
            ..ImdbOptions::default()
        };
        let d = load_imdb(path, &opts)?;
        let cap = |s: &[Vec<u32>], l: &[i64], n: usize| -> Result<Split> {
            let n = n.min(s.len());
            split(&s[..n], &l[..n], p.maxlen)
        };
        let train = cap(&d.x_train, &d.y_train, p.train)?;
        let test = cap(&d.x_test, &d.y_test, p.test)?;
        return Ok((train, test, p.vocab, format!("IMDB ({})", path.display())));
    }
    let cfg = |samples, seed| ReviewConfig {
        samples,
        vocab_size: p.vocab.max(Vocabulary::fixed_len()),
        min_len: 8.min(p.maxlen),
        max_len: p.maxlen,
        seed,
        ..ReviewConfig::default()
    };
    // Separate seeds: the test reviews are new draws, not a slice of the training ones.
    let tr = text::generate_reviews(&cfg(p.train, a.seed))?;
    let te = text::generate_reviews(&cfg(p.test, a.seed ^ 0x5eed_7e57))?;
    if let Some(s) = tr.sequences.first() {
        println!(
            "a generated review (label {}): {}",
            tr.labels[0],
            tr.vocab.decode(s)
        );
    }
    Ok((
        split(&tr.sequences, &tr.labels, p.maxlen)?,
        split(&te.sequences, &te.labels, p.maxlen)?,
        tr.vocab.len(),
        "generated reviews".to_string(),
    ))
}

fn cell_of(name: &str) -> Result<CellKind> {
    Ok(match name {
        "simple_rnn" | "rnn" => CellKind::SimpleRnn,
        "gru" => CellKind::Gru { reset_after: true },
        "lstm" => CellKind::Lstm {
            unit_forget_bias: true,
        },
        _ => {
            return Err(Error::Config(format!(
                "--cells: unknown cell {name:?} (simple_rnn, gru, lstm)"
            )));
        }
    })
}

fn labels(y: &[i64]) -> Target {
    Target::Values(text::label_column(y).into_dyn())
}

fn run(a: &Args) -> Result<()> {
    let p = plan(a);
    let ctx = Arc::new(Context::new()?);
    let adapter = ctx.adapter().clone();
    println!(
        "adapter: {} ({}, {})",
        adapter.name, adapter.backend, adapter.device_type
    );
    let (train, test, vocab, source) = load(a, &p)?;
    println!(
        "data: {source}: {} train + {} test reviews, {} tokens (pre-padded, masked), vocabulary {}",
        train.y.len(),
        test.y.len(),
        p.maxlen,
        vocab
    );
    let majority = text::majority_baseline(&test.y)?;
    let backend = GpuBackend::new(ctx.clone());
    let (xtr, ytr) = (ModelInput::Tokens(train.x.clone()), labels(&train.y));
    let (xte, yte) = (ModelInput::Tokens(test.x.clone()), labels(&test.y));
    let loss = KerasLoss::BinaryCrossentropy { from_logits: false };
    let mut rows = BTreeMap::new();
    for name in a.cells.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let cell = cell_of(name)?;
        let spec = SequentialBuilder::new(name, &[Some(p.maxlen)], true)
            .embedding(vocab, p.embed, true)
            .rnn(cell, a.units, |_| {})
            .dense(
                1,
                DenseActivation::Elementwise(wgpu_rnn::cpu::Activation::Sigmoid),
            )
            .build()?;
        let mut model = Sequential::new(spec.clone(), ModelWeights::fresh(&spec, a.seed)?)?;
        println!("\n{}", model.summary());
        let mut o = FitOptions::new(loss, keras_optimizer("adam", p.lr)?);
        o.epochs = p.epochs;
        o.batch_size = p.batch;
        o.validation_split = 0.2;
        o.metrics = vec![Metric::Accuracy];
        // val_accuracy, not val_loss: these models first fit the training reviews (val_loss
        // rises for a few epochs) before the sentiment words generalise.
        o.early_stopping = Some(EarlyStopping::new("val_accuracy", 5));
        o.seed = a.seed;
        o.verbose = true;
        let start = Instant::now();
        let h = model.fit(&backend, &xtr, &ytr, &o)?;
        let seconds = start.elapsed().as_secs_f64();
        let ev = model.evaluate_metrics(&backend, (&xte, &yte), loss, &[Metric::Accuracy], 256)?;
        let acc = ev.get("accuracy").copied().unwrap_or(f64::NAN);
        println!(
            "{name}: test accuracy {acc:.4} after {} epochs, {seconds:.1} s ({:.0} samples/s)",
            h.epochs_run, h.samples_per_second
        );
        rows.insert(
            name.to_string(),
            serde_json::json!({
                "test_accuracy": acc,
                "test_loss": ev.get("loss").copied().unwrap_or(f64::NAN),
                "params": model.param_count(),
                "seconds": seconds,
                "epochs_run": h.epochs_run,
            }),
        );
    }
    println!("\n| cell | test accuracy | params | seconds |\n|---|---|---|---|");
    for (name, r) in &rows {
        println!(
            "| {name} | {:.4} | {} | {:.1} |",
            r["test_accuracy"].as_f64().unwrap_or(f64::NAN),
            r["params"],
            r["seconds"].as_f64().unwrap_or(f64::NAN)
        );
    }
    println!("majority baseline: {majority:.4}");
    let metrics = serde_json::json!({
        "cells": rows,
        "majority_baseline": majority,
        "backend": adapter.backend,
        "adapter": adapter.name,
        "data": source,
    });
    std::fs::create_dir_all(&a.out).map_err(|e| Error::Io {
        path: a.out.display().to_string(),
        msg: e.to_string(),
    })?;
    let path = a.out.join("metrics.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&metrics).unwrap_or_default(),
    )
    .map_err(|e| Error::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    })?;
    println!("wrote {}", path.display());
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sentiment: {e}");
            ExitCode::FAILURE
        }
    }
}
