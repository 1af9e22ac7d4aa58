//! criterion benches of the LSTM: forward and forward+backward per recurrence algorithm and
//! on the CPU reference. Small shapes by default (software adapters are slow); set
//! `WGPU_RNN_BENCH_FULL=1` for the standard shapes of DESIGN.md §6 on a real GPU.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ndarray::Array3;
use wgpu_rnn::{Algorithm, Backend, Lstm, LstmConfig};

/// (B, T, I, H)
fn shapes() -> Vec<(usize, usize, usize, usize)> {
    if std::env::var_os("WGPU_RNN_BENCH_FULL").is_some() {
        vec![(64, 100, 256, 256), (1, 1000, 64, 64), (256, 50, 512, 512)]
    } else {
        vec![(8, 32, 64, 64)]
    }
}

fn bench_lstm(c: &mut Criterion) {
    let gpu = Backend::gpu().expect("benches need an adapter (scripts/test.sh installs lavapipe)");
    let mut group = c.benchmark_group("lstm");
    group.sample_size(10);
    for (b, t, i, h) in shapes() {
        let x = Array3::from_shape_fn((t, b, i), |(a, bb, k)| {
            ((a + 3 * bb + 7 * k) as f32 * 0.01).sin()
        });
        let shape = format!("B{b}_T{t}_I{i}_H{h}");
        let variants = [
            ("persistent", gpu.clone(), Algorithm::Persistent),
            ("stepwise", gpu.clone(), Algorithm::Stepwise),
            ("cpu", Backend::Cpu, Algorithm::Auto),
        ];
        for (name, backend, algo) in variants {
            let mut l = Lstm::new(LstmConfig::new(i, h), backend, 1).expect("layer");
            l.set_algorithm(algo);
            if l.forward_train(x.view(), None, None).is_err() {
                continue; // this algorithm cannot run at this shape (limit), nothing to time
            }
            group.bench_function(BenchmarkId::new(format!("forward/{name}"), &shape), |bn| {
                bn.iter(|| black_box(l.forward(x.view(), None, None).expect("forward")))
            });
            group.bench_function(
                BenchmarkId::new(format!("forward_backward/{name}"), &shape),
                |bn| {
                    bn.iter(|| {
                        let (y, tr) = l.forward_train(x.view(), None, None).expect("forward");
                        black_box(l.backward(&tr, y.out.view(), None, None).expect("backward"))
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench_lstm);
criterion_main!(benches);
