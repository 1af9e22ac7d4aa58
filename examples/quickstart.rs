//! The smallest end-to-end use: a PyTorch-shaped LSTM and a Keras-shaped GRU on the GPU (or
//! the CPU reference when no adapter exists), forward and backward.
//!
//! cargo run --release --example quickstart

use ndarray::Array3;
use wgpu_rnn::{Backend, Gru, GruConfig, Lstm, LstmConfig, Result};

fn main() -> Result<()> {
    let backend = Backend::gpu_or_cpu();
    if let Backend::Gpu(ctx) = &backend {
        println!("adapter: {}", ctx.adapter().name);
    }
    // nn.LSTM(input_size=3, hidden_size=5, num_layers=2, bidirectional=True)
    let mut cfg = LstmConfig::new(3, 5);
    cfg.num_layers = 2;
    cfg.bidirectional = true;
    let lstm = Lstm::new(cfg, backend.clone(), 0)?;
    let x = Array3::from_shape_fn((7, 4, 3), |(t, b, i)| {
        ((t + 2 * b + 3 * i) as f32 * 0.3).sin()
    });
    let (y, trace) = lstm.forward_train(x.view(), None, Some(&[7, 5, 3, 1]))?;
    let grads = lstm.backward(&trace, y.out.view(), None)?;
    println!(
        "lstm out {:?}, h_n {:?}, {} weight gradients",
        y.out.dim(),
        y.h_n.dim(),
        grads.weights.len()
    );

    // keras.layers.GRU(5, reset_after=False) on batch-major input.
    let mut gcfg = GruConfig::new(3, 5);
    gcfg.batch_first = true;
    gcfg.reset_after = false;
    let gru = Gru::new(gcfg, backend, 0)?;
    let xb = Array3::from_shape_fn((4, 7, 3), |(b, t, i)| ((b + t * i) as f32 * 0.2).cos());
    let out = gru.forward(xb.view(), None, None)?;
    println!("gru out {:?}, h_n {:?}", out.out.dim(), out.h_n.dim());
    Ok(())
}
