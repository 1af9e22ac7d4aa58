//! Launchers for `shaders/rec_dropout.wgsl`: Keras `recurrent_dropout` masks drawn on the
//! device after the lengths in a recurrent layer's `lens` buffer, and the masked rows of
//! H_prev the recurrent-weight gradient reads.

use super::dropout::threshold;
use super::rec::{step_groups, u32_of};
use super::{Access, KernelDef, Recorder, Shader};
use crate::error::{Error, Result};

/// Mirrors `RdParams` in `shaders/rec_dropout.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    off: u32,
    seed_lo: u32,
    seed_hi: u32,
    threshold: u32,
    scale: f32,
    rows: u32,
    src_off: u32,
}

const PARAMS: u64 = std::mem::size_of::<Params>() as u64;
const DRAW: KernelDef = KernelDef {
    shader: Shader::RecDropout,
    entry: "draw",
    storage: &[Access::ReadWrite],
    params_size: PARAMS,
};
const MASKED_ROWS: KernelDef = KernelDef {
    shader: Shader::RecDropout,
    entry: "masked_rows",
    storage: &[Access::ReadWrite, Access::Read, Access::ReadWrite],
    params_size: PARAMS,
};

/// Records the draw of `n` mask values (`0` or `1 / (1 - rate)`, element `i` kept when
/// `host_keep(i, seed, threshold(rate))`) into `bits[off..off + n]` as f32 bit patterns.
pub(crate) fn draw(
    rec: &mut Recorder<'_>,
    bits: &wgpu::Buffer,
    off: usize,
    n: usize,
    rate: f32,
    seed: u64,
) -> Result<()> {
    if !(0.0..1.0).contains(&rate) {
        return Err(Error::Config(format!(
            "recurrent_dropout {rate} must be in [0, 1)"
        )));
    }
    if n == 0 {
        return Ok(());
    }
    let p = Params {
        n: u32_of(n, "recurrent dropout mask elements")?,
        off: u32_of(off, "mask offset")?,
        seed_lo: seed as u32,
        seed_hi: (seed >> 32) as u32,
        threshold: threshold(rate),
        scale: 1.0 / (1.0 - rate),
        ..Default::default()
    };
    rec.dispatch(&DRAW, &p, &[bits], step_groups(n)?)
}

/// Records `dst[i] = src[src_off + i] · mask[i % rows]` for `i < t · rows`, the mask read from
/// `bits[mask_off..mask_off + rows]`: one gate block's masked H_prev.
pub(crate) fn masked_rows(
    rec: &mut Recorder<'_>,
    (bits, mask_off): (&wgpu::Buffer, usize),
    (src, src_off): (&wgpu::Buffer, usize),
    dst: &wgpu::Buffer,
    (t, rows): (usize, usize),
) -> Result<()> {
    let n = t
        .checked_mul(rows)
        .ok_or_else(|| Error::Limit(format!("{t} × {rows} rows overflow usize")))?;
    if n == 0 {
        return Ok(());
    }
    let p = Params {
        n: u32_of(n, "masked rows")?,
        off: u32_of(mask_off, "mask offset")?,
        rows: u32_of(rows, "row length")?,
        src_off: u32_of(src_off, "source offset")?,
        ..Default::default()
    };
    rec.dispatch(&MASKED_ROWS, &p, &[bits, src, dst], step_groups(n)?)
}
