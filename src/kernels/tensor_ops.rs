//! Launchers for `shaders/tensor_ops.wgsl`: sequence layout moves (batch-first ↔
//! time-major, time reversal) and the gather that derives one parameter layout from another.

use super::rec::{step_groups, u32_of};
use super::{Access, KernelDef, Recorder, Shader};
use crate::error::{Error, Result};

/// Mirrors `OpsParams` in `shaders/tensor_ops.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    a: u32,
    b: u32,
    c: u32,
    flags: u32,
    d: u32,
    _pad: [u32; 2],
}

const fn def(entry: &'static str) -> KernelDef {
    KernelDef {
        shader: Shader::TensorOps,
        entry,
        storage: &[Access::Read, Access::Read, Access::ReadWrite],
        params_size: std::mem::size_of::<Params>() as u64,
    }
}
const REORDER: KernelDef = def("seq_reorder");
const GATHER: KernelDef = def("gather_acc");

/// How a sequence tensor is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SeqLayout {
    /// `(B, T, F)` instead of `(T, B, F)`.
    pub batch_first: bool,
}

/// Records `dst = src` moved from `from` to `to` layout (both `(t, b, f)` logically), with
/// time reversed when `reverse`. `dst` must not be `src`.
pub(crate) fn reorder(
    rec: &mut Recorder<'_>,
    (src, from): (&wgpu::Buffer, SeqLayout),
    (dst, to): (&wgpu::Buffer, SeqLayout),
    (t, b, f): (usize, usize, usize),
    reverse: bool,
) -> Result<()> {
    let n = t
        .checked_mul(b)
        .and_then(|v| v.checked_mul(f))
        .ok_or_else(|| Error::Limit(format!("sequence ({t}, {b}, {f}) overflows usize")))?;
    if n == 0 {
        return Ok(());
    }
    let flags =
        u32::from(from.batch_first) | (u32::from(to.batch_first) << 1) | (u32::from(reverse) << 2);
    let p = Params {
        n: u32_of(n, "sequence elements")?,
        a: u32_of(t, "seq_len")?,
        b: u32_of(b, "batch")?,
        c: u32_of(f, "features")?,
        flags,
        ..Default::default()
    };
    // The idx binding is unused here; src stands in (it is read-only).
    rec.dispatch(&REORDER, &p, &[src, src, dst], step_groups(n)?)
}

/// Where a gather reads its source elements.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Source<'a> {
    /// `src[idx[i]]`.
    Indexed(&'a wgpu::Buffer),
    /// `src[off + i]`.
    Offset(usize),
    /// The transpose of the `rows × cols` row-major matrix at `off`.
    Transpose {
        off: usize,
        rows: usize,
        cols: usize,
    },
}

/// Records `dst[dst_off + i] (+)= src[j(i)]` for `i < n` (`acc` adds to what `dst` holds).
pub(crate) fn gather(
    rec: &mut Recorder<'_>,
    src: &wgpu::Buffer,
    how: Source<'_>,
    (dst, dst_off): (&wgpu::Buffer, usize),
    n: usize,
    acc: bool,
) -> Result<()> {
    if n == 0 {
        return Ok(());
    }
    let mut p = Params {
        n: u32_of(n, "gather elements")?,
        a: u32_of(dst_off, "gather destination offset")?,
        flags: u32::from(acc) << 2,
        ..Default::default()
    };
    let idx = match how {
        Source::Indexed(idx) => idx,
        Source::Offset(off) => {
            p.flags |= 1;
            p.b = u32_of(off, "gather source offset")?;
            src
        }
        Source::Transpose { off, rows, cols } => {
            if rows.checked_mul(cols) != Some(n) {
                return Err(Error::Shape(format!(
                    "transpose of {rows}×{cols} written as {n} elements"
                )));
            }
            p.flags |= 2;
            p.b = u32_of(off, "gather source offset")?;
            p.c = u32_of(rows, "rows")?;
            p.d = u32_of(cols, "cols")?;
            src
        }
    };
    rec.dispatch(&GATHER, &p, &[src, idx, dst], step_groups(n)?)
}
