//! Helpers shared by the integration tests: one GPU context per test binary, seeded random
//! tensors, and the `atol + rtol·|ref|` comparison of DESIGN.md §4.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use ndarray::{Array3, ArrayViewD, Dimension};
use wgpu_rnn::{Backend, Context};

/// The GPU backend of this test binary. Panics (fails the test) when no adapter exists:
/// a GPU test must never skip silently.
pub fn gpu() -> Backend {
    static CTX: OnceLock<Arc<Context>> = OnceLock::new();
    let ctx = CTX.get_or_init(|| {
        Arc::new(Context::new().unwrap_or_else(|e| {
            panic!("GPU tests need an adapter (scripts/test.sh installs Mesa lavapipe): {e}")
        }))
    });
    Backend::Gpu(ctx.clone())
}

/// Deterministic values in [-scale, scale).
pub fn rand3(shape: (usize, usize, usize), seed: u64, scale: f32) -> Array3<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    Array3::from_shape_fn(shape, |_| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * scale
    })
}

/// Asserts |got - want| ≤ atol + rtol·|want| everywhere, naming the worst element.
pub fn assert_close<D: Dimension>(
    what: &str,
    got: ArrayViewD<f32>,
    want: ndarray::ArrayView<f32, D>,
    atol: f32,
    rtol: f32,
) {
    let want = want.into_dyn();
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let mut worst: Option<(f32, Vec<usize>, f32, f32)> = None;
    for ((idx, g), w) in got.indexed_iter().zip(want.iter()) {
        let excess = (g - w).abs() - (atol + rtol * w.abs());
        // NaN counts as a failure, so test "within bounds" rather than "beyond".
        let within = excess <= 0.0;
        if !within
            && worst
                .as_ref()
                .is_none_or(|x| excess > x.0 || excess.is_nan())
        {
            worst = Some((excess, idx.slice().to_vec(), *g, *w));
        }
    }
    if let Some((_, idx, g, w)) = worst {
        panic!("{what}: element {idx:?} is {g}, reference {w} (atol {atol}, rtol {rtol})");
    }
}

/// `target/<profile>/examples/<name>`, next to the calling test binary's `deps/` folder. A
/// plain `cargo test` (what scripts/test.sh and CI run) builds it; a filtered run may need
/// `cargo build --example <name>` first.
pub fn example_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let bin = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test` (it builds the examples) or `cargo build --example {name}`",
        bin.display()
    );
    bin
}

/// A context on this binary's adapter over a device the test opens itself, as a caller of
/// `Context::from_device` would: the adapter's limits, changed by `limits`, and no optional
/// features. Panics (fails the test) when no adapter exists.
pub fn own_device(limits: impl FnOnce(&mut wgpu::Limits)) -> Arc<Context> {
    own_device_with(wgpu::Features::empty(), limits)
}

/// [`own_device`] with the optional `features` (those the adapter has) requested too.
pub fn own_device_with(
    features: wgpu::Features,
    limits: impl FnOnce(&mut wgpu::Limits),
) -> Arc<Context> {
    let inst = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter = pollster::block_on(inst.request_adapter(&wgpu::RequestAdapterOptions::default()))
        .expect("GPU tests need an adapter (scripts/test.sh installs lavapipe)");
    let mut l = adapter.limits();
    limits(&mut l);
    let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        required_limits: l,
        required_features: features & adapter.features(),
        ..Default::default()
    }))
    .expect("the adapter opens a device within its own limits");
    Arc::new(Context::from_device(adapter, device, queue).expect("a device with those limits"))
}
