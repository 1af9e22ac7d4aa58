//! Keras Dropout on the device (`nn::GpuDropout`): the keep rate and the 1/(1-p) scaling,
//! the backward applying the forward's mask, a new mask per training step from a
//! reproducible seed, one mask per sequence across steps for recurrent input dropout, and the
//! identity in inference.

mod common;

use std::sync::Arc;

use wgpu_rnn::nn::GpuDropout;
use wgpu_rnn::{Backend, Context, DeviceTensor, Layer, OutputGrads, Recorder};

fn ctx() -> Arc<Context> {
    match common::gpu() {
        Backend::Gpu(c) => c,
        Backend::Cpu => unreachable!(),
    }
}

/// (y, dx) of one training step on ones, with dy = 2·ones.
fn step(c: &Context, d: &GpuDropout, shape: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let n: usize = shape.iter().product();
    let x = DeviceTensor::from_f32(c, shape, &vec![1.0; n]).unwrap();
    let dy = DeviceTensor::from_f32(c, shape, &vec![2.0; n]).unwrap();
    let mut rec = Recorder::new(c);
    let f = d.record_forward(&mut rec, &x, true).unwrap();
    let dx = d
        .record_backward(&mut rec, f.tape.as_ref().unwrap(), &OutputGrads::output(dy))
        .unwrap()
        .unwrap();
    rec.submit().unwrap();
    let y = f.y.to_array(c).unwrap().iter().copied().collect();
    let dx = dx.to_array(c).unwrap().iter().copied().collect();
    (y, dx)
}

#[test]
fn keep_rate_scale_and_the_backward_mask() {
    let c = ctx();
    let p = 0.3f32;
    let d = GpuDropout::new(c.clone(), p, false, 7).unwrap();
    let n = 100_000;
    let (y, dx) = step(&c, &d, &[n]);
    let scale = 1.0 / (1.0 - p);
    let kept = y.iter().filter(|&&v| v != 0.0).count();
    // Binomial(n, 0.7): within 5 standard deviations.
    let sd = (n as f64 * 0.3 * 0.7).sqrt();
    let mean = n as f64 * 0.7;
    assert!(
        (kept as f64 - mean).abs() < 5.0 * sd,
        "kept {kept} of {n}, expected {mean} ± {}",
        5.0 * sd
    );
    for (a, g) in y.iter().zip(&dx) {
        // Kept elements are exactly 1/(1-p); the gradient has the same mask and scale.
        assert!(*a == 0.0 || (*a - scale).abs() < 1e-6, "{a}");
        assert!((*g - 2.0 * a).abs() < 1e-6, "dx {g} for y {a}");
    }
}

#[test]
fn every_step_draws_a_new_mask_and_seeds_reproduce() {
    let c = ctx();
    let a = GpuDropout::new(c.clone(), 0.5, false, 11).unwrap();
    let b = GpuDropout::new(c.clone(), 0.5, false, 11).unwrap();
    let other = GpuDropout::new(c.clone(), 0.5, false, 12).unwrap();
    let (a1, _) = step(&c, &a, &[4096]);
    let (a2, _) = step(&c, &a, &[4096]);
    let (b1, _) = step(&c, &b, &[4096]);
    let (o1, _) = step(&c, &other, &[4096]);
    assert_eq!(a1, b1, "the same seed gives the same first mask");
    let differ = |u: &[f32], v: &[f32]| u.iter().zip(v).filter(|(x, y)| x != y).count();
    // Independent masks at p = 0.5 differ in about half the elements.
    assert!(differ(&a1, &a2) > 1500, "step 2 reused step 1's mask");
    assert!(differ(&a1, &o1) > 1500, "another seed gave the same mask");
}

#[test]
fn per_sequence_masks_are_the_same_at_every_step() {
    let c = ctx();
    let d = GpuDropout::new(c.clone(), 0.4, true, 3).unwrap();
    let (b, t, f) = (64, 7, 32);
    let (y, dx) = step(&c, &d, &[b, t, f]);
    let at = |bi: usize, ti: usize, fi: usize| (bi * t + ti) * f + fi;
    let mut kept = 0;
    for bi in 0..b {
        for fi in 0..f {
            let first = y[at(bi, 0, fi)];
            for ti in 1..t {
                assert_eq!(y[at(bi, ti, fi)], first, "mask changed across steps");
                assert_eq!(dx[at(bi, ti, fi)], dx[at(bi, 0, fi)]);
            }
            kept += usize::from(first != 0.0);
        }
    }
    let n = (b * f) as f64;
    let sd = (n * 0.4 * 0.6).sqrt();
    assert!(
        (kept as f64 - 0.6 * n).abs() < 5.0 * sd,
        "kept {kept} of {n}"
    );
}

#[test]
fn inference_is_the_identity_and_rates_are_checked() {
    let c = ctx();
    let d = GpuDropout::new(c.clone(), 0.5, false, 1).unwrap();
    let x = DeviceTensor::from_f32(&c, &[3], &[1.0, -2.0, 3.0]).unwrap();
    let mut rec = Recorder::new(&c);
    let f = d.record_forward(&mut rec, &x, false).unwrap();
    rec.submit().unwrap();
    assert_eq!(
        f.y.to_array(&c)
            .unwrap()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![1.0, -2.0, 3.0]
    );
    assert!(GpuDropout::new(c.clone(), 1.0, false, 1).is_err());
    assert!(GpuDropout::new(c, -0.1, false, 1).is_err());
}
