//! Times one forward (and forward+backward) of each cell per recurrence algorithm and on the
//! CPU reference at a chosen shape: median of N runs after a warm-up, wall time.
//!
//! cargo run --release --example cell_timing -- --batch 8 --seq 100 --input 128 --hidden 128
//! cargo run --release --example cell_timing -- --cells convlstm2d --batch 2 --seq 10
//!     (ConvLSTM2D on `--frame`² × 1 frames, `--filters`, 3×3 same)

use std::time::Instant;

use clap::Parser;
use ndarray::{Array3, ArrayView3};
use wgpu_rnn::{
    Algorithm, Backend, Gru, GruConfig, Lstm, LstmConfig, RecordStats, Result, SimpleRnn,
    SimpleRnnConfig,
};

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
    /// Cells to time: lstm, gru, rnn, convlstm2d (comma-separated).
    #[arg(long, default_value = "lstm,gru,rnn")]
    cells: String,
    /// ConvLSTM2D frame side (frames are frame × frame × 1).
    #[arg(long, default_value_t = 32)]
    frame: usize,
    /// ConvLSTM2D filters.
    #[arg(long, default_value_t = 16)]
    filters: usize,
}

/// ConvLSTM2D at (B, T, frame×frame×1, F, 3×3, same): GPU (both algorithms where they fit)
/// against the CPU reference.
fn time_convlstm(a: &Args, gpu: &Backend) -> Result<()> {
    use wgpu_rnn::{ConvLstm2d, ConvLstm2dConfig, Padding};
    let mut cfg = ConvLstm2dConfig::new(a.frame, a.frame, 1, a.filters, (3, 3));
    cfg.padding = Padding::Same;
    cfg.return_sequences = true;
    let x =
        ndarray::Array5::from_shape_fn((a.batch, a.seq, a.frame, a.frame, 1), |(b, t, y, x, _)| {
            ((b * 13 + t * 7 + y * 3 + x) as f32 * 0.05).sin()
        });
    for (name, backend, algo) in [
        ("persistent", gpu.clone(), Algorithm::Persistent),
        ("stepwise", gpu.clone(), Algorithm::Stepwise),
        ("cpu", Backend::Cpu, Algorithm::Auto),
    ] {
        let mut l = ConvLstm2d::new(cfg, backend, 1)?;
        l.set_algorithm(algo);
        if let Err(e) = l.forward(x.view(), None) {
            println!("convlstm2d {name:>10}: skipped ({e})");
            continue;
        }
        let (fwd, lo, hi) = median_ms(a.runs, || l.forward(x.view(), None).map(|_| ()))?;
        let s = l.last_stats();
        let (fb, flo, fhi) = median_ms(a.runs, || {
            let (y, tr) = l.forward_train(x.view(), None)?;
            l.backward(&tr, y.out.view(), None, None).map(|_| ())
        })?;
        println!(
            "convlstm2d {name:>10}: forward {fwd:9.2} ({lo:.2}..{hi:.2}), {} dispatches, {} submit | forward+backward {fb:9.2} ({flo:.2}..{fhi:.2})",
            s.dispatches, s.submits
        );
    }
    Ok(())
}

fn median_ms(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<(f64, f64, f64)> {
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

/// The two passes a timed layer offers, whatever the cell.
struct Timed<'a> {
    forward: Box<dyn FnMut() -> Result<()> + 'a>,
    train: Box<dyn FnMut() -> Result<()> + 'a>,
    stats: Box<dyn Fn() -> RecordStats + 'a>,
}

fn lstm<'a>(l: &'a Lstm, x: ArrayView3<'a, f32>) -> Timed<'a> {
    let x2 = x.to_owned();
    Timed {
        forward: Box::new(move || l.forward(x, None, None).map(|_| ())),
        train: Box::new(move || {
            let (y, tr) = l.forward_train(x2.view(), None, None)?;
            l.backward(&tr, y.out.view(), None, None).map(|_| ())
        }),
        stats: Box::new(|| l.last_stats()),
    }
}

macro_rules! h_timed {
    ($l:expr, $x:expr) => {{
        let (l, x) = ($l, $x);
        let x2 = x.to_owned();
        Timed {
            forward: Box::new(move || l.forward(x, None, None).map(|_| ())),
            train: Box::new(move || {
                let (y, tr) = l.forward_train(x2.view(), None, None)?;
                l.backward(&tr, y.out.view(), None).map(|_| ())
            }),
            stats: Box::new(|| l.last_stats()),
        }
    }};
}

fn main() -> Result<()> {
    let a = Args::parse();
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
        "B{} T{} I{} H{}, wall time in ms, median of {} (min..max)",
        a.batch, a.seq, a.input, a.hidden, a.runs
    );
    for cell in a.cells.split(',') {
        if cell == "convlstm2d" {
            println!(
                "ConvLSTM2D B{} T{} {}x{}x1 F{} 3x3 same",
                a.batch, a.seq, a.frame, a.frame, a.filters
            );
            time_convlstm(&a, &gpu)?;
            continue;
        }
        let gates = match cell {
            "lstm" => 4,
            "gru" => 3,
            "rnn" => 1,
            other => {
                eprintln!("unknown cell {other}");
                continue;
            }
        };
        let flops = 2.0 * (a.seq * a.batch * (a.input + a.hidden) * gates * a.hidden) as f64;
        for (name, backend, algo) in [
            ("persistent", gpu.clone(), Algorithm::Persistent),
            ("stepwise", gpu.clone(), Algorithm::Stepwise),
            ("cpu", Backend::Cpu, Algorithm::Auto),
        ] {
            let (mut l1, mut l2, mut l3);
            let mut t = match cell {
                "lstm" => {
                    l1 = Lstm::new(LstmConfig::new(a.input, a.hidden), backend, 1)?;
                    l1.set_algorithm(algo);
                    lstm(&l1, x.view())
                }
                "gru" => {
                    l2 = Gru::new(GruConfig::new(a.input, a.hidden), backend, 1)?;
                    l2.set_algorithm(algo);
                    h_timed!(&l2, x.view())
                }
                _ => {
                    l3 = SimpleRnn::new(SimpleRnnConfig::new(a.input, a.hidden), backend, 1)?;
                    l3.set_algorithm(algo);
                    h_timed!(&l3, x.view())
                }
            };
            let (fwd, lo, hi) = median_ms(a.runs, &mut t.forward)?;
            let s = (t.stats)();
            let (fb, _, _) = median_ms(a.runs, &mut t.train)?;
            println!(
                "{cell:>4} {name:>10}: forward {fwd:9.2} ({lo:.2}..{hi:.2}) {:6.2} GFLOP/s, {} dispatches, {} submit | forward+backward {fb:9.2}",
                flops / fwd / 1e6,
                s.dispatches,
                s.submits
            );
        }
    }
    Ok(())
}
