//! Launchers for `shaders/merge.wgsl`: Bidirectional's merge modes and their backward, and
//! the row softmax with its backward.

use super::rec::{step_groups, u32_of};
use super::{Access, KernelDef, Recorder, Shader};
use crate::context::LOOP_BUDGET;
use crate::error::{Error, Result};

/// Mirrors `MergeParams` in `shaders/merge.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    h: u32,
    mode: u32,
    _pad: u32,
}

const fn def(entry: &'static str) -> KernelDef {
    KernelDef {
        shader: Shader::Merge,
        entry,
        storage: &[
            Access::Read,
            Access::Read,
            Access::ReadWrite,
            Access::ReadWrite,
        ],
        params_size: std::mem::size_of::<Params>() as u64,
    }
}
const MERGE_FWD: KernelDef = def("merge_forward");
const MERGE_BWD: KernelDef = def("merge_backward");
const PRODUCT: KernelDef = def("product");
const SOFTMAX_FWD: KernelDef = def("softmax_forward");
const SOFTMAX_BWD: KernelDef = def("softmax_backward");

/// How Keras' Bidirectional combines its two directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// `[forward | backward]` on the last axis.
    Concat,
    /// Element-wise sum.
    Sum,
    /// Element-wise product.
    Mul,
    /// Element-wise mean.
    Ave,
}

impl Merge {
    fn code(self) -> u32 {
        match self {
            Merge::Concat => 0,
            Merge::Sum => 1,
            Merge::Mul => 2,
            Merge::Ave => 3,
        }
    }
}

fn params(n: usize, h: usize, mode: u32) -> Result<Params> {
    let len = n
        .checked_mul(h)
        .and_then(|v| v.checked_mul(2))
        .ok_or_else(|| Error::Limit(format!("{n} rows × {h} overflow usize")))?;
    u32_of(len, "merged elements")?;
    Ok(Params {
        n: u32_of(n, "rows")?,
        h: u32_of(h, "width")?,
        mode,
        _pad: 0,
    })
}

/// Records `out = merge(a, b)` over `n` rows of width `h` (`out` `[n, 2h]` for concat).
pub(crate) fn forward(
    rec: &mut Recorder<'_>,
    mode: Merge,
    (a, b, out, spare): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
    (n, h): (usize, usize),
) -> Result<()> {
    let p = params(n, h, mode.code())?;
    let width = if mode == Merge::Concat { 2 * h } else { h };
    rec.dispatch(&MERGE_FWD, &p, &[a, b, out, spare], step_groups(n * width)?)
}

/// Records `(da, db)` from `dout` (for `Mul`, `a`/`b` are the forward's inputs).
pub(crate) fn backward(
    rec: &mut Recorder<'_>,
    mode: Merge,
    dout: &wgpu::Buffer,
    (a, b): (&wgpu::Buffer, &wgpu::Buffer),
    (da, db): (&wgpu::Buffer, &wgpu::Buffer),
    (n, h): (usize, usize),
) -> Result<()> {
    let p = params(n, h, mode.code())?;
    let g = step_groups(n * h)?;
    if mode == Merge::Mul {
        rec.dispatch(&PRODUCT, &p, &[dout, b, da, db], g)?;
        return rec.dispatch(&PRODUCT, &p, &[dout, a, db, da], g);
    }
    rec.dispatch(&MERGE_BWD, &p, &[dout, a, da, db], g)
}

fn check_width(h: usize) -> Result<()> {
    if h > LOOP_BUDGET as usize / 3 {
        return Err(Error::Limit(format!(
            "softmax over {h} classes loops 3×{h} times per invocation; the loop budget is \
             {LOOP_BUDGET}"
        )));
    }
    Ok(())
}

/// Records `out[n] = softmax(x[n])` over rows of width `h`.
pub(crate) fn softmax(
    rec: &mut Recorder<'_>,
    (x, out, spare): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
    (n, h): (usize, usize),
) -> Result<()> {
    check_width(h)?;
    let p = params(n, h, 0)?;
    rec.dispatch(&SOFTMAX_FWD, &p, &[x, x, out, spare], step_groups(n)?)
}

/// Records `dz = y ⊙ (dy - Σ dy·y)` (the softmax backward from its output `y`).
pub(crate) fn softmax_backward(
    rec: &mut Recorder<'_>,
    (y, dy, dz, spare): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
    (n, h): (usize, usize),
) -> Result<()> {
    check_width(h)?;
    let p = params(n, h, 0)?;
    rec.dispatch(&SOFTMAX_BWD, &p, &[y, dy, dz, spare], step_groups(n)?)
}
