//! Launcher for `shaders/dropout.wgsl`: Keras Dropout's training mask (hash of seed and
//! element), applied to the forward input and, identically, to the backward gradient.

use super::rec::{step_groups, u32_of};
use super::{Access, KernelDef, Recorder, Shader};
use crate::error::{Error, Result};

/// Mirrors `DropParams` in `shaders/dropout.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    seed_lo: u32,
    seed_hi: u32,
    threshold: u32,
    scale: f32,
    per_sequence: u32,
    t: u32,
    f: u32,
}

const APPLY: KernelDef = KernelDef {
    shader: Shader::Dropout,
    entry: "dropout_apply",
    storage: &[Access::Read, Access::ReadWrite],
    params_size: std::mem::size_of::<Params>() as u64,
};

/// How the mask is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MaskShape {
    /// An independent draw per element (Keras `Dropout`).
    Elements,
    /// One draw per `(b, f)` of a `(B, T, F)` sequence, the same at every step (the input
    /// `dropout` of Keras recurrent layers).
    PerSequence { t: usize, f: usize },
}

/// Records `dst = keep ? src / (1 - rate) : 0` over `n` elements, the mask drawn from `seed`.
pub(crate) fn apply(
    rec: &mut Recorder<'_>,
    (src, dst): (&wgpu::Buffer, &wgpu::Buffer),
    n: usize,
    rate: f32,
    seed: u64,
    shape: MaskShape,
) -> Result<()> {
    if !(0.0..1.0).contains(&rate) {
        return Err(Error::Config(format!(
            "dropout rate {rate} must be in [0, 1)"
        )));
    }
    let (per_sequence, t, f) = match shape {
        MaskShape::Elements => (0, 1, 1),
        MaskShape::PerSequence { t, f } => (1, t, f),
    };
    let p = Params {
        n: u32_of(n, "dropout elements")?,
        seed_lo: seed as u32,
        seed_hi: (seed >> 32) as u32,
        threshold: threshold(rate),
        scale: 1.0 / (1.0 - rate),
        per_sequence,
        t: u32_of(t.max(1), "steps")?,
        f: u32_of(f.max(1), "features")?,
    };
    rec.dispatch(&APPLY, &p, &[src, dst], step_groups(n)?)
}

/// The keep threshold of `dropout_hash.wgsl`: an element is kept when its hash is at least
/// `round(rate · 2^32)`.
pub(crate) fn threshold(rate: f32) -> u32 {
    (f64::from(rate) * 4_294_967_296.0)
        .round()
        .min(u32::MAX as f64) as u32
}

/// `mix32` of `dropout_hash.wgsl`, on the host.
fn mix32(x: u32) -> u32 {
    let x = (x ^ (x >> 16)).wrapping_mul(0x7feb_352d);
    let x = (x ^ (x >> 15)).wrapping_mul(0x846c_a68b);
    x ^ (x >> 16)
}

/// The device's keep decision for mask element `m` under `seed` (`dropout_hash.wgsl`), bit
/// for bit: lets the host replay a mask the device drew.
pub(crate) fn host_keep(m: u32, seed: u64, threshold: u32) -> bool {
    mix32(mix32(m ^ seed as u32) ^ (seed >> 32) as u32) >= threshold
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The host mirror keeps about 1 - rate of the elements and the threshold saturates.
    #[test]
    fn host_keep_rate_and_threshold() {
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(0.5), 1 << 31);
        let n = 100_000u32;
        let thr = threshold(0.3);
        let kept = (0..n).filter(|&m| host_keep(m, 42, thr)).count() as f64;
        // Binomial(n, 0.7): sd = sqrt(n·0.21) ≈ 145; 5 sd either way.
        assert!((kept - 70_000.0).abs() < 725.0, "kept {kept}");
        assert!((0..1000).all(|m| host_keep(m, 7, 0)));
    }
}
