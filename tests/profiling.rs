//! Benchmark instrumentation: a profiling context reports GPU time per submission and the
//! time-loop part alone (from pass timestamps), plus host encode time; off by default.

use std::sync::Arc;

use ndarray::Array3;
use wgpu_rnn::{Algorithm, Backend, Context, Lstm, LstmConfig};

#[test]
fn profiling_separates_the_recurrence_from_the_gemms() {
    let ctx = Arc::new(
        Context::new().expect("GPU tests need an adapter (scripts/test.sh installs lavapipe)"),
    );
    let mut l = Lstm::new(LstmConfig::new(16, 8), Backend::Gpu(ctx.clone()), 1).unwrap();
    l.set_algorithm(Algorithm::Stepwise);
    let x = Array3::from_elem((12, 3, 16), 0.25f32);
    l.forward(x.view(), None, None).unwrap();
    let s = l.last_stats();
    assert!(s.encode_ms > 0.0);
    assert_eq!(s.gpu_ms, None, "timestamps only when profiling");
    ctx.set_profiling(true);
    l.forward(x.view(), None, None).unwrap();
    let s = l.last_stats();
    // The GEMM and the recurrence are separate passes: at least 2.
    assert!(s.passes >= 2, "{s:?}");
    if ctx.has_timestamps() {
        let (total, rec) = (s.gpu_ms.unwrap(), s.recurrence_ms.unwrap());
        assert!(rec > 0.0 && rec <= total, "{s:?}");
    } else {
        assert_eq!(s.gpu_ms, None);
    }
}
