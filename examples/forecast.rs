//! Time-series forecasting the Keras way, on the GPU: stacked LSTM/GRU/SimpleRNN layers (with
//! dropout, optionally bidirectional) read 30-step windows of a min-max scaled series and
//! predict the next value; trained with `Sequential::fit` and early stopping.
//!
//!     cargo run --release --example forecast -- --quick --out out/forecast
//!     cargo run --release --example forecast -- --cell gru --units 64,32 --dropout 0.2 --lr 1e-3 --clip 1
//!     cargo run --release --example forecast -- --csv prices.csv --column Close
//!     cargo run --release --example forecast -- --config model.json   # a Keras get_config()
//!
//! The series (built in: trend + two seasonal sines + noise, or a CSV column) is split in
//! time order into train/validation/test spans; the scaler is fitted on the training span
//! only. Prints the model summary and the test MSE/MAE against the naive "repeat the last
//! value" forecast; writes `forecast.png` (the test span, truth and prediction) and
//! `metrics.json`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;
use wgpu_rnn::data::series::{self, SeriesConfig};
use wgpu_rnn::data::{ChartOptions, write_forecast_plot};
use wgpu_rnn::models::keras::{
    CellKind, DenseActivation, EarlyStopping, FitOptions, GpuBackend, KerasLoss, MergeMode, Metric,
    ModelInput, ModelWeights, Sequential, SequentialBuilder, Target, keras_optimizer,
};
use wgpu_rnn::{Context, Error, Result};

#[derive(Parser, Debug)]
#[command(about = "Next-value forecasting with stacked recurrent layers on the GPU")]
struct Args {
    /// A size that trains in a few minutes on a software adapter (2 CPU cores).
    #[arg(long)]
    quick: bool,
    /// The recurrent cell: lstm, gru or rnn.
    #[arg(long, default_value = "lstm")]
    cell: String,
    /// Units of the stacked layers, comma-separated (every layer but the last returns
    /// sequences).
    #[arg(long, default_value = "64,32")]
    units: String,
    /// Dropout after every recurrent layer.
    #[arg(long, default_value_t = 0.2)]
    dropout: f64,
    /// Wrap every recurrent layer in Bidirectional (concat).
    #[arg(long)]
    bidirectional: bool,
    /// Learning rate (Adam; default 1e-3, 3e-3 with --quick).
    #[arg(long)]
    lr: Option<f32>,
    /// Clip the gradients to this global norm.
    #[arg(long)]
    clip: Option<f32>,
    /// A Keras model config (`model.get_config()` JSON) instead of the flags above; its input
    /// must be (window, 1) and its output (1).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A CSV file to read the series from (with --column).
    #[arg(long, requires = "column")]
    csv: Option<PathBuf>,
    /// The CSV column holding the series (e.g. Close).
    #[arg(long)]
    column: Option<String>,
    /// Steps per input window.
    #[arg(long, default_value_t = 30)]
    window: usize,
    /// Override the epochs (an upper bound: early stopping may stop sooner).
    #[arg(long)]
    epochs: Option<usize>,
    /// Override the length of the built-in series.
    #[arg(long)]
    length: Option<usize>,
    /// Early-stopping patience (epochs).
    #[arg(long, default_value_t = 5)]
    patience: usize,
    /// Output directory for forecast.png and metrics.json.
    #[arg(long, default_value = "out/forecast")]
    out: PathBuf,
    /// Series, weight, shuffle and dropout seed.
    #[arg(long, default_value_t = 3)]
    seed: u64,
}

fn cell_of(name: &str) -> Result<CellKind> {
    Ok(match name {
        "lstm" => CellKind::Lstm {
            unit_forget_bias: true,
        },
        "gru" => CellKind::Gru { reset_after: true },
        "rnn" | "simple_rnn" => CellKind::SimpleRnn,
        _ => {
            return Err(Error::Config(format!("--cell {name:?}: lstm, gru or rnn")));
        }
    })
}

fn units_of(text: &str) -> Result<Vec<usize>> {
    let u: Vec<usize> = text
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Config(format!("--units {text:?}: {e}")))?;
    if u.is_empty() || u.contains(&0) {
        return Err(Error::Config(format!(
            "--units {text:?}: one or more positive sizes"
        )));
    }
    Ok(u)
}

/// The model from the flags: [Bidirectional](RNN(u, return_sequences) → Dropout)… → Dense(1).
fn model_from_flags(a: &Args) -> Result<Sequential> {
    let cell = cell_of(&a.cell)?;
    let units = units_of(&a.units)?;
    let mut b = SequentialBuilder::new("forecast", &[Some(a.window), Some(1)], false);
    for (i, &u) in units.iter().enumerate() {
        let seq = i + 1 < units.len();
        b = if a.bidirectional {
            b.bidirectional(cell, u, MergeMode::Concat, |r| r.return_sequences = seq)
        } else {
            b.rnn(cell, u, |r| r.return_sequences = seq)
        };
        if a.dropout > 0.0 {
            b = b.dropout(a.dropout);
        }
    }
    let spec = b
        .dense(
            1,
            DenseActivation::Elementwise(wgpu_rnn::cpu::Activation::Linear),
        )
        .build()?;
    Sequential::new(spec.clone(), ModelWeights::fresh(&spec, a.seed)?)
}

fn io(path: &std::path::Path, e: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    }
}

fn run(a: &Args) -> Result<()> {
    let ctx = Arc::new(Context::new()?);
    let adapter = ctx.adapter().clone();
    println!(
        "adapter: {} ({}, {})",
        adapter.name, adapter.backend, adapter.device_type
    );
    let (raw, source) = match (&a.csv, &a.column) {
        (Some(path), Some(col)) => (
            series::load_csv_column(path, col)?,
            format!("{} column {col}", path.display()),
        ),
        _ => {
            let cfg = SeriesConfig {
                length: a.length.unwrap_or(if a.quick { 1200 } else { 4000 }),
                // A gentle trend keeps most of the test span inside the range the scaler saw
                // in training (a min-max scaled LSTM extrapolates poorly far above it).
                trend: 0.004,
                seed: a.seed,
                ..SeriesConfig::default()
            };
            (
                series::synthetic_series(&cfg)?,
                "built-in series (trend + two sines + noise)".to_string(),
            )
        }
    };
    // Windows split in time order (70% / 15% / 15%), scaled by a scaler fitted on the
    // training span only.
    let d = series::prepare_forecast(&raw, a.window, 0.70, 0.15)?;
    if d.x_val.is_empty() || d.x_test.is_empty() {
        return Err(Error::Data(format!(
            "{} values give no validation or test windows of {} steps",
            raw.len(),
            a.window
        )));
    }
    println!(
        "data: {source}: {} values; windows of {} steps: {} train, {} validation, {} test",
        raw.len(),
        a.window,
        d.x_train.dim().0,
        d.x_val.dim().0,
        d.x_test.dim().0
    );
    let values = |x: &ndarray::Array3<f64>| ModelInput::Values(x.clone().into_dyn());
    let targets = |y: &ndarray::Array2<f64>| Target::Values(y.clone().into_dyn());
    let (xtr, ytr) = (values(&d.x_train), targets(&d.y_train));
    let (xva, yva) = (values(&d.x_val), targets(&d.y_val));
    let xte = values(&d.x_test);

    let mut model = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
            Sequential::from_config_str(&text, a.seed)?
        }
        None => model_from_flags(a)?,
    };
    println!("\n{}", model.summary());
    let lr = a.lr.unwrap_or(if a.quick { 3e-3 } else { 1e-3 });
    let mut opt = keras_optimizer("adam", lr)?;
    opt.clip_norm = a.clip;
    let loss = KerasLoss::MeanSquaredError;
    let mut o = FitOptions::new(loss, opt);
    o.epochs = a.epochs.unwrap_or(if a.quick { 30 } else { 100 });
    o.batch_size = 32;
    o.validation_data = Some((xva, yva));
    o.metrics = vec![Metric::MeanAbsoluteError];
    o.early_stopping = Some(EarlyStopping::new("val_loss", a.patience));
    o.seed = a.seed;
    o.verbose = true;
    let backend = GpuBackend::new(ctx.clone());
    let start = Instant::now();
    let h = model.fit(&backend, &xtr, &ytr, &o)?;
    let seconds = start.elapsed().as_secs_f64();

    let pred = model.predict_batched(&backend, &xte, 256)?;
    let pred_s: Vec<f64> = pred[0].iter().map(|&v| f64::from(v)).collect();
    // Back to the series' units: the model's and the naive forecast's errors.
    let truth = d.scaler.inverse_transform(&d.y_test.column(0).to_vec());
    let predicted = d.scaler.inverse_transform(&pred_s);
    let last = d.x_test.slice(ndarray::s![.., a.window - 1, 0]).to_vec();
    let naive = d.scaler.inverse_transform(&last);
    let model_err = series::errors(&predicted, &truth)?;
    let naive_err = series::errors(&naive, &truth)?;
    let (mse, mae) = (model_err.mse, model_err.mae);
    let (naive_mse, naive_mae) = (naive_err.mse, naive_err.mae);
    println!("\n| forecast | test MSE | test MAE |\n|---|---|---|");
    println!("| model | {mse:.6} | {mae:.6} |");
    println!("| naive (repeat the last value) | {naive_mse:.6} | {naive_mae:.6} |");
    println!(
        "{} epochs (early stopping: {}), {seconds:.1} s, {:.0} samples/s",
        h.epochs_run,
        h.stopped_epoch.map_or("no".into(), |e| format!(
            "stopped at epoch {}, best {}",
            e + 1,
            h.best_epoch.map_or(0, |b| b + 1)
        )),
        h.samples_per_second
    );
    std::fs::create_dir_all(&a.out).map_err(|e| io(&a.out, e))?;
    let png = a.out.join("forecast.png");
    write_forecast_plot(
        &png,
        &truth,
        &predicted,
        &format!("{source}: test span"),
        &ChartOptions::default(),
    )?;
    let metrics = serde_json::json!({
        "test_mse": mse,
        "test_mae": mae,
        "naive_mse": naive_mse,
        "naive_mae": naive_mae,
        "params": model.param_count(),
        "epochs_run": h.epochs_run,
        "seconds": seconds,
        "history": h.history,
        "backend": adapter.backend,
        "adapter": adapter.name,
        "data": source,
    });
    let path = a.out.join("metrics.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&metrics).unwrap_or_default(),
    )
    .map_err(|e| io(&path, e))?;
    println!("wrote {} and {}", png.display(), path.display());
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("forecast: {e}");
            ExitCode::FAILURE
        }
    }
}
