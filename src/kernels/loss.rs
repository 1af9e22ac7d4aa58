//! Launcher for `shaders/loss.wgsl`: per-element loss gradients and a two-stage deterministic
//! reduction of the scalar loss (partials per workgroup, then one finalizing workgroup).

use super::{Access, KernelDef, Recorder, Shader};
use crate::context::LOOP_BUDGET;
use crate::error::{Error, Result};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    rows: u32,
    cols: u32,
    kind: u32,
    groups: u32,
    grad_scale: f32,
    loss_scale: f32,
    eps: f32,
}

const STORAGE: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
];

const ELEMENTWISE: KernelDef = KernelDef {
    shader: Shader::Loss,
    entry: "loss_elementwise",
    storage: STORAGE,
    params_size: std::mem::size_of::<Params>() as u64,
};

const SOFTMAX: KernelDef = KernelDef {
    shader: Shader::Loss,
    entry: "softmax_xent",
    storage: STORAGE,
    params_size: std::mem::size_of::<Params>() as u64,
};

const FINALIZE: KernelDef = KernelDef {
    shader: Shader::Loss,
    entry: "loss_finalize",
    storage: STORAGE,
    params_size: std::mem::size_of::<Params>() as u64,
};

/// Invocations per workgroup (the shader's `WG`).
const WG: usize = 256;
/// Elements one elementwise workgroup covers (`WG · PER_THREAD`).
const PER_GROUP: usize = 1024;
/// Loop iterations of the tree reductions in one invocation (log2 WG per reduction, with
/// margin for the loop bookkeeping).
const REDUCE_LOOPS: usize = 64;

/// The element-wise losses, numbered as the shader's `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pointwise {
    Mse = 0,
    Mae = 1,
    BceLogits = 2,
    BceProbs = 3,
}

/// What one loss evaluation reads and writes.
pub(crate) struct LossBuffers<'a> {
    pub pred: &'a wgpu::Buffer,
    pub target: &'a wgpu::Buffer,
    pub grad: &'a wgpu::Buffer,
    /// Scratch of [`partials_len`] elements.
    pub partials: &'a wgpu::Buffer,
    /// One element: the loss.
    pub out: &'a wgpu::Buffer,
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Limit(format!("loss {what} = {v} exceeds u32 indexing")))
}

/// Partial sums stage 1 writes: one per 1024 elements, or one per softmax row.
pub(crate) fn partials_len(n: usize, softmax_rows: Option<usize>) -> usize {
    softmax_rows.unwrap_or(n.div_ceil(PER_GROUP)).max(1)
}

/// Checks the sizes against u32 indexing and the loop budget of one invocation.
pub(crate) fn check(n: usize, softmax: Option<(usize, usize)>) -> Result<()> {
    u32_of(n, "element count")?;
    let groups = partials_len(n, softmax.map(|s| s.0));
    let budget = LOOP_BUDGET as usize;
    if groups.div_ceil(WG) + REDUCE_LOOPS > budget {
        return Err(Error::Limit(format!(
            "loss: {groups} partial sums need {} loop iterations in the final workgroup; \
             the loop budget is {budget}",
            groups.div_ceil(WG) + REDUCE_LOOPS
        )));
    }
    if let Some((_, cols)) = softmax {
        let loops = 3 * cols.div_ceil(WG) + 2 * REDUCE_LOOPS;
        if loops > budget {
            return Err(Error::Limit(format!(
                "softmax cross-entropy: {cols} classes need {loops} loop iterations per \
                 invocation; the loop budget is {budget} (at most {} classes)",
                (budget - 2 * REDUCE_LOOPS) / 3 * WG
            )));
        }
    }
    Ok(())
}

fn bind<'a>(b: &'a LossBuffers<'a>) -> [&'a wgpu::Buffer; 5] {
    [b.pred, b.target, b.grad, b.partials, b.out]
}

/// Records a mean element-wise loss over `n > 0` elements: grad = dL/dpred, out[0] = L.
pub(crate) fn record_pointwise(
    rec: &mut Recorder<'_>,
    kind: Pointwise,
    n: usize,
    eps: f32,
    b: &LossBuffers<'_>,
) -> Result<()> {
    check(n, None)?;
    // Mean over N: the loss and every gradient element carry 1/N.
    let inv = (1.0 / n as f64) as f32;
    let params = Params {
        n: u32_of(n, "element count")?,
        rows: 0,
        cols: 0,
        kind: kind as u32,
        groups: u32_of(partials_len(n, None), "group count")?,
        grad_scale: inv,
        loss_scale: inv,
        eps,
    };
    rec.dispatch(&ELEMENTWISE, &params, &bind(b), params.groups)?;
    rec.dispatch(&FINALIZE, &params, &bind(b), 1)
}

/// Records the mean softmax cross-entropy over `rows > 0` rows of `cols > 0` classes.
pub(crate) fn record_softmax(
    rec: &mut Recorder<'_>,
    rows: usize,
    cols: usize,
    b: &LossBuffers<'_>,
) -> Result<()> {
    let n = rows
        .checked_mul(cols)
        .ok_or_else(|| Error::Limit(format!("loss: {rows} x {cols} elements overflow")))?;
    check(n, Some((rows, cols)))?;
    let inv = (1.0 / rows as f64) as f32;
    let params = Params {
        n: u32_of(n, "element count")?,
        rows: u32_of(rows, "rows")?,
        cols: u32_of(cols, "classes")?,
        kind: 0,
        groups: u32_of(rows, "rows")?,
        grad_scale: inv,
        loss_scale: inv,
        eps: 0.0,
    };
    rec.dispatch(&SOFTMAX, &params, &bind(b), params.groups)?;
    rec.dispatch(&FINALIZE, &params, &bind(b), 1)
}
