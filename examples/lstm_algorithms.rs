//! Times one LSTM forward (and forward+backward) per recurrence algorithm and on the CPU
//! reference at a chosen shape: median of N runs after a warm-up, wall time.
//!
//! cargo run --release --example lstm_algorithms -- --batch 8 --seq 100 --input 128 --hidden 128

use std::time::Instant;

use clap::Parser;
use ndarray::Array3;
use wgpu_rnn::{Algorithm, Backend, Lstm, LstmConfig};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 8)]
    batch: usize,
    #[arg(long, default_value_t = 100)]
    seq: usize,
    #[arg(long, default_value_t = 128)]
    input: usize,
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Timed runs per configuration (the median is printed).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

fn median_ms(
    runs: usize,
    mut f: impl FnMut() -> wgpu_rnn::Result<()>,
) -> wgpu_rnn::Result<(f64, f64, f64)> {
    f()?; // warm-up: pipelines, allocations
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(f64::total_cmp);
    Ok((v[v.len() / 2], v[0], v[v.len() - 1]))
}

fn main() -> wgpu_rnn::Result<()> {
    let a = Args::parse();
    let cfg = LstmConfig::new(a.input, a.hidden);
    let x = Array3::from_shape_fn((a.seq, a.batch, a.input), |(t, b, i)| {
        ((t * 31 + b * 7 + i) as f32 * 0.01).sin()
    });
    let gpu = Backend::gpu()?;
    if let Backend::Gpu(ctx) = &gpu {
        let ad = ctx.adapter();
        println!(
            "adapter: {} ({}, {}, {})",
            ad.name, ad.backend, ad.device_type, ad.driver
        );
    }
    println!(
        "LSTM B{} T{} I{} H{}, wall time, median of {} (min..max)",
        a.batch, a.seq, a.input, a.hidden, a.runs
    );
    let flops = 2.0 * (a.seq * a.batch * (a.input + a.hidden) * 4 * a.hidden) as f64;
    let runs: [(&str, Backend, Algorithm); 3] = [
        ("persistent", gpu.clone(), Algorithm::Persistent),
        ("stepwise", gpu, Algorithm::Stepwise),
        ("cpu", Backend::Cpu, Algorithm::Auto),
    ];
    for (name, backend, algo) in runs {
        let mut l = Lstm::new(cfg, backend, 1)?;
        l.set_algorithm(algo);
        let (fwd, lo, hi) = median_ms(a.runs, || l.forward(x.view(), None, None).map(|_| ()))?;
        let stats = l.last_stats();
        let (fb, _, _) = median_ms(a.runs, || {
            let (y, tr) = l.forward_train(x.view(), None, None)?;
            l.backward(&tr, y.out.view(), None, None).map(|_| ())
        })?;
        println!(
            "{name:>10}: forward {fwd:9.2} ms ({lo:.2}..{hi:.2}) {:7.2} GFLOP/s, {} dispatches, {} submit | forward+backward {fb:9.2} ms",
            flops / fwd / 1e6,
            stats.dispatches,
            stats.submits
        );
    }
    Ok(())
}
