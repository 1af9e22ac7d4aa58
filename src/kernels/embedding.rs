//! Launchers for `shaders/embedding.wgsl`: the Embedding forward gather, its deterministic
//! backward (count, scan, place, sum), and the `mask_zero` lengths.

use super::rec::{step_groups, u32_of};
use super::{Access, KernelDef, Recorder, Shader};
use crate::context::{Context, LOOP_BUDGET};
use crate::error::{Error, Result};

/// Mirrors `EmbParams` in `shaders/embedding.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    v: u32,
    d: u32,
    t: u32,
    b: u32,
    _pad: [u32; 3],
}

const fn def(entry: &'static str) -> KernelDef {
    KernelDef {
        shader: Shader::Embedding,
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
const FORWARD: KernelDef = def("embed_forward");
const COUNT: KernelDef = def("embed_count");
const SCAN: KernelDef = def("embed_scan");
const PLACE: KernelDef = def("embed_place");
const GRAD: KernelDef = def("embed_grad");
const LENGTHS: KernelDef = def("mask_lengths");

fn params(n: usize, v: usize, d: usize) -> Result<Params> {
    let nd = n
        .checked_mul(d)
        .ok_or_else(|| Error::Limit(format!("{n} tokens × {d} dims overflow usize")))?;
    let vd = v
        .checked_mul(d)
        .ok_or_else(|| Error::Limit(format!("vocabulary {v} × {d} dims overflow usize")))?;
    u32_of(nd, "embedding output elements")?;
    u32_of(vd, "embedding table elements")?;
    Ok(Params {
        n: u32_of(n, "tokens")?,
        v: u32_of(v, "vocabulary size")?,
        d: u32_of(d, "embedding dim")?,
        ..Default::default()
    })
}

/// u32 elements of the backward's scratch buffer: counts, offsets and sorted positions.
pub(crate) fn work_len(n: usize, v: usize) -> Result<usize> {
    v.checked_mul(2)
        .and_then(|x| x.checked_add(n))
        .ok_or_else(|| Error::Limit(format!("embedding scratch for {n} tokens overflows")))
}

/// Records `out[n, :] = table[tok[n], :]` for `n` tokens of a `v × d` table. `spare` fills
/// the scratch binding the forward does not use (any buffer other than the three).
pub(crate) fn forward(
    rec: &mut Recorder<'_>,
    (tok, table, out, spare): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
    (n, v, d): (usize, usize, usize),
) -> Result<()> {
    let p = params(n, v, d)?;
    rec.dispatch(&FORWARD, &p, &[tok, table, spare, out], step_groups(n * d)?)
}

/// Refuses token counts whose per-invocation loops would pass llvmpipe's budget.
pub(crate) fn check_loop_budget(ctx: &Context, n: usize) -> Result<()> {
    if ctx.software && n > LOOP_BUDGET as usize {
        return Err(Error::Limit(format!(
            "an embedding backward over {n} tokens (batch × steps) needs that many loop \
             iterations per invocation; the software adapter allows {LOOP_BUDGET}"
        )));
    }
    Ok(())
}

/// Records the table gradient `grad[v, :] = Σ_{n: tok[n] = v} dy[n, :]` (overwritten),
/// summed in position order. `work` holds [`work_len`] u32s and is cleared here.
pub(crate) fn backward(
    rec: &mut Recorder<'_>,
    (tok, dy, work, grad): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
    (n, v, d): (usize, usize, usize),
) -> Result<()> {
    check_loop_budget(rec.ctx(), n)?;
    let p = params(n, v, d)?;
    rec.clear(work);
    rec.dispatch(&COUNT, &p, &[tok, dy, work, grad], step_groups(n)?)?;
    rec.dispatch(&SCAN, &p, &[tok, dy, work, grad], 1)?;
    rec.dispatch(&PLACE, &p, &[tok, dy, work, grad], step_groups(v)?)?;
    rec.dispatch(&GRAD, &p, &[tok, dy, work, grad], step_groups(v * d)?)
}

/// Records `lens[b] = 1 + last t with tok[b, t] ≠ 0` for batch-first `(b, t)` tokens.
/// `spare_f32` fills the unused f32 bindings (two distinct buffers, neither `lens`).
pub(crate) fn mask_lengths(
    rec: &mut Recorder<'_>,
    tok: &wgpu::Buffer,
    lens: &wgpu::Buffer,
    spare_f32: (&wgpu::Buffer, &wgpu::Buffer),
    (b, t): (usize, usize),
) -> Result<()> {
    let p = Params {
        t: u32_of(t, "seq_len")?,
        b: u32_of(b, "batch")?,
        ..Default::default()
    };
    rec.dispatch(
        &LENGTHS,
        &p,
        &[tok, spare_f32.0, lens, spare_f32.1],
        step_groups(b)?,
    )
}
