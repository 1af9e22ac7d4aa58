//! criterion benches of every cell: forward and forward+backward per recurrence algorithm and
//! on the CPU reference. Small shapes by default (software adapters are slow); set
//! `WGPU_RNN_BENCH_FULL=1` for the standard shapes of DESIGN.md §6 on a real GPU.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ndarray::{Array3, Array5};
use wgpu_rnn::{
    Algorithm, Backend, ConvLstm2d, ConvLstm2dConfig, Gru, GruConfig, Lstm, LstmConfig, Padding,
    SimpleRnn, SimpleRnnConfig,
};

fn full() -> bool {
    std::env::var_os("WGPU_RNN_BENCH_FULL").is_some()
}

/// (B, T, I, H)
fn shapes() -> Vec<(usize, usize, usize, usize)> {
    if full() {
        vec![(64, 100, 256, 256), (1, 1000, 64, 64), (256, 50, 512, 512)]
    } else {
        vec![(8, 32, 64, 64)]
    }
}

fn variants(gpu: &Backend) -> [(&'static str, Backend, Algorithm); 3] {
    [
        ("persistent", gpu.clone(), Algorithm::Persistent),
        ("stepwise", gpu.clone(), Algorithm::Stepwise),
        ("cpu", Backend::Cpu, Algorithm::Auto),
    ]
}

/// Benches forward and forward+backward of a layer, given closures for both.
fn bench_pair(
    c: &mut Criterion,
    group: &str,
    id: &str,
    mut fwd: impl FnMut() -> wgpu_rnn::Result<()>,
    mut fb: impl FnMut() -> wgpu_rnn::Result<()>,
) {
    if fwd().is_err() || fb().is_err() {
        return; // this algorithm cannot run at this shape (a named limit): nothing to time
    }
    let mut g = c.benchmark_group(group);
    g.sample_size(10);
    g.bench_function(BenchmarkId::new("forward", id), |b| {
        b.iter(|| fwd().expect("forward"))
    });
    g.bench_function(BenchmarkId::new("forward_backward", id), |b| {
        b.iter(|| fb().expect("backward"))
    });
    g.finish();
}

fn bench_recurrent(c: &mut Criterion) {
    let gpu = Backend::gpu().expect("benches need an adapter (scripts/test.sh installs lavapipe)");
    for (b, t, i, h) in shapes() {
        let x = Array3::from_shape_fn((t, b, i), |(a, bb, k)| {
            ((a + 3 * bb + 7 * k) as f32 * 0.01).sin()
        });
        for (name, backend, algo) in variants(&gpu) {
            let id = format!("{name}/B{b}_T{t}_I{i}_H{h}");
            let mut l = Lstm::new(LstmConfig::new(i, h), backend.clone(), 1).expect("layer");
            l.set_algorithm(algo);
            bench_pair(
                c,
                "lstm",
                &id,
                || l.forward(x.view(), None, None).map(|_| ()),
                || {
                    let (y, tr) = l.forward_train(x.view(), None, None)?;
                    l.backward(&tr, y.out.view(), None).map(|_| ())
                },
            );
            let mut g = Gru::new(GruConfig::new(i, h), backend.clone(), 1).expect("layer");
            g.set_algorithm(algo);
            bench_pair(
                c,
                "gru",
                &id,
                || g.forward(x.view(), None, None).map(|_| ()),
                || {
                    let (y, tr) = g.forward_train(x.view(), None, None)?;
                    g.backward(&tr, y.out.view(), None).map(|_| ())
                },
            );
            let mut r = SimpleRnn::new(SimpleRnnConfig::new(i, h), backend, 1).expect("layer");
            r.set_algorithm(algo);
            bench_pair(
                c,
                "rnn",
                &id,
                || r.forward(x.view(), None, None).map(|_| ()),
                || {
                    let (y, tr) = r.forward_train(x.view(), None, None)?;
                    r.backward(&tr, y.out.view(), None).map(|_| ())
                },
            );
        }
    }
}

fn bench_convlstm(c: &mut Criterion) {
    let gpu = Backend::gpu().expect("benches need an adapter (scripts/test.sh installs lavapipe)");
    // (B, T, frame, F): DESIGN.md §6 on a real GPU, a small frame otherwise.
    let (b, t, side, f) = if full() {
        (8, 10, 64, 40)
    } else {
        (2, 4, 16, 8)
    };
    let mut cfg = ConvLstm2dConfig::new(side, side, 1, f, (3, 3));
    cfg.padding = Padding::Same;
    cfg.return_sequences = true;
    let x = Array5::from_shape_fn((b, t, side, side, 1), |(bb, tt, y, xx, _)| {
        ((bb + tt + y * xx) as f32 * 0.1).sin()
    });
    for (name, backend, algo) in variants(&gpu) {
        let mut l = ConvLstm2d::new(cfg, backend, 1).expect("layer");
        l.set_algorithm(algo);
        let id = format!("{name}/B{b}_T{t}_{side}x{side}x1_F{f}_3x3");
        bench_pair(
            c,
            "convlstm2d",
            &id,
            || l.forward(x.view(), None).map(|_| ()),
            || {
                let (y, tr) = l.forward_train(x.view(), None)?;
                l.backward(&tr, y.out.view(), None).map(|_| ())
            },
        );
    }
}

criterion_group!(benches, bench_recurrent, bench_convlstm);
criterion_main!(benches);
