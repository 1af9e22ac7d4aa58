#![cfg(feature = "render")]
//! The two Keras-style examples end to end at a tiny size (built by `cargo test`): the
//! sentiment comparison writes metrics.json with every cell's accuracy, parameter count and
//! time; the forecast writes metrics.json and a PNG plot of the test span. The accuracy and
//! MSE targets of the issue are checked at the examples' `--quick` size by hand (README).

use std::path::PathBuf;
use std::process::Command;

mod common;

fn out_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("wgpu-rnn-{name}-{}", std::process::id()))
}

fn run(example: &str, args: &[&str], out: &PathBuf) -> serde_json::Value {
    let run = Command::new(common::example_bin(example))
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("the example runs (built by cargo test)");
    assert!(
        run.status.success(),
        "{example} failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(out.join("metrics.json")).expect("metrics.json");
    serde_json::from_str(&text).expect("metrics.json is JSON")
}

#[test]
fn sentiment_compares_the_three_cells() {
    let out = out_dir("sentiment");
    let m = run(
        "sentiment",
        &["--quick", "--train", "96", "--test", "32", "--epochs", "1"],
        &out,
    );
    let base = m["majority_baseline"].as_f64().unwrap_or(0.0);
    assert!((0.5..=1.0).contains(&base), "majority baseline {base}");
    // Embedding(200, 16) → cell(32) → Dense(1): Keras' parameter counts.
    for (cell, params) in [("simple_rnn", 4801), ("gru", 8033), ("lstm", 9505)] {
        let c = &m["cells"][cell];
        let acc = c["test_accuracy"].as_f64().unwrap_or(-1.0);
        assert!((0.0..=1.0).contains(&acc), "{cell}: accuracy {acc}");
        assert_eq!(c["params"].as_u64(), Some(params), "{cell}");
        assert!(c["seconds"].as_f64().is_some_and(|s| s > 0.0), "{cell}");
    }
    for key in ["backend", "adapter"] {
        assert!(m[key].as_str().is_some_and(|s| !s.is_empty()), "{key}");
    }
}

#[test]
fn forecast_writes_metrics_and_the_plot() {
    let out = out_dir("forecast");
    let m = run(
        "forecast",
        &[
            "--quick", "--units", "8,4", "--epochs", "2", "--length", "240", "--window", "12",
        ],
        &out,
    );
    for key in ["test_mse", "test_mae", "naive_mse"] {
        let v = m[key].as_f64().unwrap_or(-1.0);
        assert!(v.is_finite() && v >= 0.0, "{key} = {v}");
    }
    // LSTM(8, seq) → Dropout → LSTM(4) → Dropout → Dense(1): 4·8·(1+8+1) + 4·4·(8+4+1) + 5.
    assert_eq!(m["params"].as_u64(), Some(320 + 208 + 5));
    let epochs = m["epochs_run"].as_u64().unwrap_or(0);
    assert!((1..=2).contains(&epochs), "epochs_run {epochs}");
    let png = std::fs::read(out.join("forecast.png")).expect("forecast.png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "forecast.png is a PNG");
}
