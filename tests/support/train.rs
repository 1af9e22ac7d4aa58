//! Helpers of `train_ops.rs`: the shared GPU context, a reproducible generator, running one
//! GPU loss, and the `atol + rtol·|ref|` comparison of flat vectors.
#![allow(dead_code)]

use std::sync::OnceLock;

use ndarray::{ArrayD, IxDyn};
use wgpu_rnn::Context;
use wgpu_rnn::train::{GpuLoss, LossKind, StepRecorder, read_buffer, storage_buffer};

/// The GPU context of this test binary. Panics (fails the test) when no adapter exists:
/// a GPU test must never skip silently.
pub fn ctx() -> &'static Context {
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(|| {
        Context::new().unwrap_or_else(|e| {
            panic!("GPU tests need an adapter (scripts/test.sh installs Mesa lavapipe): {e}")
        })
    })
}

/// splitmix64 in [-1, 1).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    /// `n` values uniform in [lo, hi).
    pub fn vec(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n)
            .map(|_| lo + (hi - lo) * (self.next() + 1.0) / 2.0)
            .collect()
    }
}

pub fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

pub fn arr<T: Clone>(shape: &[usize], v: &[T]) -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).expect("shape matches data")
}

/// Runs one GPU loss evaluation (one submit) and reads back (loss, gradient).
pub fn gpu_loss(kind: LossKind, shape: &[usize], pred: &[f32], target: &[f32]) -> (f32, Vec<f32>) {
    let c = ctx();
    let p = storage_buffer(c, "pred", pred).unwrap();
    let t = storage_buffer(c, "target", target).unwrap();
    // Non-zero garbage, so a kernel that skips an element is caught.
    let g = storage_buffer(c, "grad", &vec![7.0; pred.len()]).unwrap();
    let loss = GpuLoss::new(c, kind, shape).unwrap();
    let mut rec = StepRecorder::new(c);
    loss.record(&mut rec, &p, &t, &g).unwrap();
    let stats = rec.submit().unwrap();
    assert_eq!(stats.submits, 1);
    (
        loss.read_value(c).unwrap(),
        read_buffer(c, &g, pred.len()).unwrap(),
    )
}

/// Asserts |got - want| ≤ atol + rtol·|want| everywhere (NaN fails), naming the worst entry.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = (g - w).abs() <= atol + rtol * w.abs();
        assert!(
            ok,
            "{what}: element {i} is {g}, reference {w} (atol {atol}, rtol {rtol})"
        );
    }
}

/// The largest |x| (at least `floor`), to scale an absolute tolerance to a tensor.
pub fn max_abs(v: &[f32], floor: f32) -> f32 {
    v.iter().fold(floor, |a, x| a.max(x.abs()))
}
