//! Launchers for `shaders/seq_mask.wgsl`: Keras masking around a recurrent layer (which steps
//! are valid, the packing tables of one layer call, and the data movers between original and
//! packed order).

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
const VALID_TOKENS: KernelDef = def("valid_tokens");
const VALID_VALUES: KernelDef = def("valid_values");
const TABLES: KernelDef = def("tables");
const APPLY_VALID: KernelDef = def("apply_valid");
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

/// u32s of one layer call's tables: order and pos `[B, T]` each, then lens `[B]`.
pub(crate) fn tables_len(b: usize, t: usize) -> Result<usize> {
    b.checked_mul(t)
        .and_then(|bt| bt.checked_mul(2))
        .and_then(|v| v.checked_add(b))
        .ok_or_else(|| Error::Limit(format!("mask tables of ({b}, {t}) overflow usize")))
}

fn params(b: usize, t: usize, f: usize, flags: u32, mask_value: f32) -> Result<Params> {
    let n = b
        .checked_mul(t)
        .and_then(|v| v.checked_mul(f))
        .ok_or_else(|| Error::Limit(format!("a ({b}, {t}, {f}) sequence overflows usize")))?;
    u32_of(n, "masked sequence elements")?;
    u32_of(tables_len(b, t)?, "mask table entries")?;
    if t > LOOP_BUDGET as usize || f > LOOP_BUDGET as usize {
        return Err(Error::Limit(format!(
            "masking loops over seq_len {t} or features {f} per invocation; the loop budget \
             is {LOOP_BUDGET}"
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

/// Records `valid[b, t] = tokens[b, t] ≠ 0` for u32 `tokens` `(B, T)`. `spare` is any other
/// f32 buffer.
pub(crate) fn valid_from_tokens(
    rec: &mut Recorder<'_>,
    tokens: &wgpu::Buffer,
    valid: &wgpu::Buffer,
    spare: &wgpu::Buffer,
    (b, t): (usize, usize),
) -> Result<()> {
    let p = params(b, t, 1, 0, 0.0)?;
    rec.dispatch(
        &VALID_TOKENS,
        &p,
        &[tokens, valid, spare],
        step_groups(b * t)?,
    )
}

/// Records `valid[b, t]` = any feature of f32 `x` `(B, T, F)` ≠ `mask_value`.
pub(crate) fn valid_from_values(
    rec: &mut Recorder<'_>,
    x: &wgpu::Buffer,
    valid: &wgpu::Buffer,
    spare: &wgpu::Buffer,
    (b, t, f): (usize, usize, usize),
    mask_value: f32,
) -> Result<()> {
    let p = params(b, t, f, 0, mask_value)?;
    rec.dispatch(&VALID_VALUES, &p, &[x, valid, spare], step_groups(b * t)?)
}

/// Records the tables of one layer call (`reverse`: Keras go_backwards) from `valid`.
pub(crate) fn tables(
    rec: &mut Recorder<'_>,
    valid: &wgpu::Buffer,
    tables: &wgpu::Buffer,
    spare: &wgpu::Buffer,
    (b, t): (usize, usize),
    reverse: bool,
) -> Result<()> {
    let p = params(b, t, 1, u32::from(reverse), 0.0)?;
    rec.dispatch(&TABLES, &p, &[spare, valid, tables], step_groups(b)?)
}

/// Records `dst = valid ? src : 0` over `(B, T, F)` (Keras Masking zeroes masked steps).
pub(crate) fn apply_valid(
    rec: &mut Recorder<'_>,
    (src, valid, dst): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
    (b, t, f): (usize, usize, usize),
) -> Result<()> {
    let p = params(b, t, f, 0, 0.0)?;
    rec.dispatch(
        &APPLY_VALID,
        &p,
        &[src, valid, dst],
        step_groups(b * t * f)?,
    )
}

/// Records one data mover from `src` to `dst` (both `(B, T, F)`) with a call's `tables`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    rec: &mut Recorder<'_>,
    how: Move,
    src: &wgpu::Buffer,
    tables: &wgpu::Buffer,
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
    rec.dispatch(k, &p, &[src, tables, dst], step_groups(b * t * f)?)
}
