//! Launchers for `shaders/keras_loss.wgsl` (a Keras loss row by row: dL/dpred and the
//! weighted loss of every row) and `shaders/regularize.wgsl` (L1/L2 penalties added to a
//! gradient in place, with per-workgroup partial sums of the penalty).

use super::rec::{step_groups, u32_of};
use super::{Access, KernelDef, Recorder, Shader};
use crate::context::LOOP_BUDGET;
use crate::error::{Error, Result};

/// Which loss, as `keras_loss.wgsl` numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RowLoss {
    Mse = 0,
    Mae = 1,
    BceLogits = 2,
    BceProbs = 3,
    CceLogits = 4,
    CceProbs = 5,
}

/// Mirrors `LossParams` in `shaders/keras_loss.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LossParams {
    rows: u32,
    cols: u32,
    kind: u32,
    eps: f32,
}

const LOSS: KernelDef = KernelDef {
    shader: Shader::KerasLoss,
    entry: "keras_loss",
    storage: &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
    params_size: std::mem::size_of::<LossParams>() as u64,
};

/// The buffers of one loss evaluation (`grad` and `row_loss` alias nothing).
pub(crate) struct LossBufs<'a> {
    pub pred: &'a wgpu::Buffer,
    pub target: &'a wgpu::Buffer,
    pub weight: &'a wgpu::Buffer,
    pub grad: &'a wgpu::Buffer,
    pub row_loss: &'a wgpu::Buffer,
}

/// Checks that a row of `cols` classes stays under the loop budget (three passes at most).
pub(crate) fn check_cols(cols: usize) -> Result<()> {
    if cols == 0 || cols.saturating_mul(3) > LOOP_BUDGET as usize {
        return Err(Error::Limit(format!(
            "loss over {cols} classes per row: 1..={} are supported (the loop budget of one \
             invocation, DESIGN.md §5)",
            LOOP_BUDGET / 3
        )));
    }
    Ok(())
}

/// Records the loss of `rows × cols` predictions against targets, with per-row weights.
pub(crate) fn record_loss(
    rec: &mut Recorder<'_>,
    kind: RowLoss,
    (rows, cols): (usize, usize),
    eps: f32,
    b: &LossBufs<'_>,
) -> Result<()> {
    check_cols(cols)?;
    let n = rows
        .checked_mul(cols)
        .ok_or_else(|| Error::Limit(format!("loss of {rows} rows × {cols} overflows")))?;
    let p = LossParams {
        rows: u32_of(rows, "loss rows")?,
        cols: u32_of(cols, "loss classes")?,
        kind: kind as u32,
        eps,
    };
    u32_of(n, "loss elements")?;
    rec.dispatch(
        &LOSS,
        &p,
        &[b.pred, b.target, b.weight, b.grad, b.row_loss],
        step_groups(rows)?,
    )
}

/// Mirrors `RegParams` in `shaders/regularize.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct RegParams {
    n: u32,
    off: u32,
    groups: u32,
    l1: f32,
    l2: f32,
    _pad: [u32; 3],
}

const REG: KernelDef = KernelDef {
    shader: Shader::Regularize,
    entry: "regularize",
    storage: &[Access::Read, Access::ReadWrite, Access::ReadWrite],
    params_size: std::mem::size_of::<RegParams>() as u64,
};

/// Elements per workgroup of the penalty reduction (one partial sum each).
pub(crate) const REG_GROUP: usize = 256;

/// Partial sums the penalty of an `n`-element weight leaves.
pub(crate) fn reg_groups(n: usize) -> usize {
    n.div_ceil(REG_GROUP)
}

/// Records `g += l1·sign(w) + 2·l2·w` over `n` elements and the penalty's partial sums into
/// `partials[off .. off + reg_groups(n)]`.
pub(crate) fn record_regularize(
    rec: &mut Recorder<'_>,
    (w, g, partials): (&wgpu::Buffer, &wgpu::Buffer, &wgpu::Buffer),
    n: usize,
    off: usize,
    (l1, l2): (f32, f32),
) -> Result<()> {
    let groups = reg_groups(n);
    let p = RegParams {
        n: u32_of(n, "regularized weight elements")?,
        off: u32_of(off, "penalty partial offset")?,
        groups: u32_of(groups, "penalty partials")?,
        l1,
        l2,
        _pad: [0; 3],
    };
    rec.dispatch(&REG, &p, &[w, g, partials], p.groups)
}
