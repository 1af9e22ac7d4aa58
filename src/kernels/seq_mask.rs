//! Launchers for `shaders/seq_mask.wgsl`: Keras masking around a recurrent layer (valid
//! spans from tokens or a mask value, packing the valid steps, unpacking outputs and
//! gradients).

use super::rec::{step_groups, u32_of};
use super::{Access, KernelDef, Recorder, Shader};
use crate::context::LOOP_BUDGET;
use crate::error::{Error, Result};

/// Mirrors `MaskParams` in `shaders/seq_mask.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    b: u32,
    t: u32,
    f: u32,
    flags: u32,
    mask_value: f32,
    _pad: [u32; 3],
}

const fn def(entry: &'static str) -> KernelDef {
    KernelDef {
        shader: Shader::SeqMask,
        entry,
        storage: &[Access::Read, Access::ReadWrite, Access::ReadWrite],
        params_size: std::mem::size_of::<Params>() as u64,
    }
}
const SPANS_TOKENS: KernelDef = def("spans_tokens");
const SPANS_VALUES: KernelDef = def("spans_values");
const PACK: KernelDef = def("pack");
const UNPACK_DX: KernelDef = def("unpack_dx");
const UNPACK_OUT: KernelDef = def("unpack_out");
const PACK_DY: KernelDef = def("pack_dy");

/// Which data mover.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Move {
    /// Inputs to packed order.
    Pack,
    /// Packed input gradients back to the original steps.
    UnpackDx,
    /// Packed outputs back to processing order (masked steps carried or zero).
    UnpackOut,
    /// Output gradients to packed order (carried steps' gradients summed in).
    PackDy,
}

fn params(b: usize, t: usize, f: usize, flags: u32, mask_value: f32) -> Result<Params> {
    let n = b
        .checked_mul(t)
        .and_then(|v| v.checked_mul(f))
        .ok_or_else(|| Error::Limit(format!("a ({b}, {t}, {f}) sequence overflows usize")))?;
    u32_of(n, "masked sequence elements")?;
    if t > LOOP_BUDGET as usize {
        return Err(Error::Limit(format!(
            "masking loops over seq_len = {t} steps per invocation; the loop budget is \
             {LOOP_BUDGET}"
        )));
    }
    Ok(Params {
        b: u32_of(b, "batch")?,
        t: u32_of(t, "seq_len")?,
        f: u32_of(f, "features")?,
        flags,
        mask_value,
        ..Default::default()
    })
}

/// Records the valid spans of u32 `tokens` `(B, T)` (non-zero ids) into `spans`
/// (`3·B` u32s: `(s, e)` per row, then the lengths). `spare` is any other f32 buffer.
pub(crate) fn spans_from_tokens(
    rec: &mut Recorder<'_>,
    tokens: &wgpu::Buffer,
    spans: &wgpu::Buffer,
    spare: &wgpu::Buffer,
    (b, t): (usize, usize),
) -> Result<()> {
    let p = params(b, t, 1, 0, 0.0)?;
    rec.dispatch(&SPANS_TOKENS, &p, &[tokens, spans, spare], step_groups(b)?)
}

/// Records the valid spans of f32 `x` `(B, T, F)`: steps with any feature ≠ `mask_value`.
pub(crate) fn spans_from_values(
    rec: &mut Recorder<'_>,
    x: &wgpu::Buffer,
    spans: &wgpu::Buffer,
    spare: &wgpu::Buffer,
    (b, t, f): (usize, usize, usize),
    mask_value: f32,
) -> Result<()> {
    if t.saturating_mul(f) > LOOP_BUDGET as usize {
        return Err(Error::Limit(format!(
            "Masking scans steps × features = {} per invocation; the loop budget is \
             {LOOP_BUDGET}",
            t.saturating_mul(f)
        )));
    }
    let p = params(b, t, f, 0, mask_value)?;
    rec.dispatch(&SPANS_VALUES, &p, &[x, spans, spare], step_groups(b)?)
}

/// Records one data mover from `src` to `dst` (both `(B, T, F)`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    rec: &mut Recorder<'_>,
    how: Move,
    src: &wgpu::Buffer,
    spans: &wgpu::Buffer,
    dst: &wgpu::Buffer,
    (b, t, f): (usize, usize, usize),
    reverse: bool,
    carry: bool,
) -> Result<()> {
    let flags = u32::from(reverse) | (u32::from(carry) << 1);
    let p = params(b, t, f, flags, 0.0)?;
    let k = match how {
        Move::Pack => &PACK,
        Move::UnpackDx => &UNPACK_DX,
        Move::UnpackOut => &UNPACK_OUT,
        Move::PackDy => &PACK_DY,
    };
    rec.dispatch(k, &p, &[src, spans, dst], step_groups(b * t * f)?)
}
