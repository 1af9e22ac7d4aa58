#![cfg(feature = "render")]
//! Smoke test of the main job: `examples/next_frame.rs` (built by `cargo test`) runs a tiny
//! configuration on the adapter and writes every promised output: metrics.json with its keys,
//! a rollout GIF of the right size and frame count, and the loss chart.

use std::path::PathBuf;
use std::process::Command;

mod common;

fn example() -> PathBuf {
    common::example_bin("next_frame")
}

#[test]
fn next_frame_quick_writes_metrics_gif_and_chart() {
    let out = std::env::temp_dir().join(format!(
        "wgpu-rnn-next-frame-example-{}",
        std::process::id()
    ));
    let run = Command::new(example())
        .args([
            "--quick",
            "--epochs",
            "1",
            "--train",
            "16",
            "--heldout",
            "3",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("run examples/next_frame (built by cargo test)");
    let log = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "next_frame failed:\n{log}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(out.join("metrics.json")).expect("metrics.json");
    let m: serde_json::Value = serde_json::from_str(&text).expect("metrics.json is JSON");
    for key in [
        "heldout_mse_model",
        "heldout_mse_copy_last",
        "heldout_mse_blank",
        "seconds",
        "train_sequences_per_s",
    ] {
        let v = m[key].as_f64().unwrap_or(f64::NAN);
        assert!(v.is_finite() && v > 0.0, "{key} = {v}");
    }
    // Copy-last and blank are computed from the data alone: blank = mean(y²) ≥ 0, and the
    // model's MSE is a probability map's error, at most 1.
    assert!(m["heldout_mse_model"].as_f64().unwrap_or(2.0) <= 1.0);
    assert_eq!(m["rollout_mse"].as_array().map(Vec::len), Some(10));
    assert_eq!(m["train_loss"].as_array().map(Vec::len), Some(1));
    // Training throughput (issue 12): the 16 training sequences took at most the whole run,
    // so rate·seconds ≥ 16; one epoch, one rate; and the log says it.
    let rate = m["train_sequences_per_s"].as_f64().unwrap_or(0.0);
    assert!(
        rate * m["seconds"].as_f64().unwrap_or(0.0) >= 16.0,
        "{rate} sequences/s"
    );
    assert_eq!(
        m["train_sequences_per_s_per_epoch"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert!(
        log.contains("sequences/s (median of 1 epochs)"),
        "no training throughput line:\n{log}"
    );
    for key in ["backend", "adapter"] {
        assert!(m[key].as_str().is_some_and(|s| !s.is_empty()), "{key}");
    }
    // The GIF: 20 frames (10 context + 10 rollout), the 3 held-out sequences side by side.
    let file = std::fs::File::open(out.join("rollout.gif")).expect("rollout.gif");
    let mut dec = gif::DecodeOptions::new()
        .read_info(file)
        .expect("rollout.gif decodes");
    let (w, h) = (dec.width(), dec.height());
    let mut frames = 0;
    while dec.read_next_frame().expect("frame").is_some() {
        frames += 1;
    }
    assert_eq!(frames, 20, "GIF frames");
    assert!(w > 3 * 16 && h > 2 * 16, "GIF {w}x{h}");
    let png = std::fs::read(out.join("loss.png")).expect("loss.png");
    assert_eq!(&png[1..4], b"PNG");
    std::fs::remove_dir_all(&out).ok();
}
