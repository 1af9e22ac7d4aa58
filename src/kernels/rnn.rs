//! Launchers for `shaders/rnn_forward.wgsl` and `shaders/rnn_backward.wgsl`: the recurrence
//! of one Elman RNN layer-direction (tanh or relu), Persistent or Stepwise.

use super::Recorder;
use super::Shader::{RnnBackward, RnnForward};
use super::grid;
use super::rec::{
    BwdBufs, FwdBufs, Params, PoolNeed, RecShape, backward_chunks, base_params, bwd,
    check_step_budget, forward_chunks, fwd, per_inv, persistent_plan, step_groups, u32_of,
};
use super::resident::{self, Cell};
use super::step_tiled::{self, TiledCell};
use crate::algorithm::Algorithm;
use crate::error::Result;

const RELU: u32 = 32;

const FWD_PERSISTENT: super::KernelDef = fwd(RnnForward, "persistent");
const FWD_STEP: super::KernelDef = fwd(RnnForward, "step");
const BWD_PERSISTENT: super::KernelDef = bwd(RnnBackward, "persistent");
const BWD_FUSED: super::KernelDef = bwd(RnnBackward, "fused");
const BWD_RECUR: super::KernelDef = bwd(RnnBackward, "recur");

/// Workgroup-pool floats per batch row (see the shader headers).
pub(crate) fn pool_need(s: &RecShape) -> PoolNeed {
    PoolNeed {
        forward: 2 * s.h,
        backward: 2 * s.h,
        forward_formula: "2*hidden",
        backward_formula: "2*hidden",
        cell: Cell::Rnn,
    }
}

/// The forward kernels' parameter block, all but the per-dispatch fields.
pub(crate) fn fwd_params(
    s: &RecShape,
    relu: bool,
    slots: usize,
    out_at: (usize, usize),
) -> Result<Params> {
    let mut prm = base_params(s, slots, out_at, if relu { RELU } else { 0 })?;
    // W_hhᵀ follows W_hh in w_rec (gpu::cell::CellKind::w_rec).
    prm.wt_off = u32_of(s.h * s.h, "weights")?;
    Ok(prm)
}

/// The backward kernels' parameter block, all but the per-dispatch fields.
pub(crate) fn bwd_params(s: &RecShape, relu: bool, dy_at: (usize, usize)) -> Result<Params> {
    let mut prm = base_params(s, s.t + 1, dy_at, if relu { RELU } else { 0 })?;
    // The Resident and Grid kernels read W_hhᵀ.
    prm.wt_off = u32_of(s.h * s.h, "weights")?;
    Ok(prm)
}

/// Records the dh0 pass that follows the reversed loop.
pub(crate) fn record_final(
    rec: &mut Recorder<'_>,
    s: &RecShape,
    prm: Params,
    bufs: &BwdBufs<'_>,
) -> Result<()> {
    super::rec::record_final(rec, &BWD_RECUR, prm, bufs, step_groups(s.b * s.h)?)
}

/// Records the forward recurrence (nothing but the h ring is saved for backward).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_forward(
    rec: &mut Recorder<'_>,
    s: &RecShape,
    relu: bool,
    algo: Algorithm,
    slots: usize,
    out_at: (usize, usize),
    bufs: &FwdBufs<'_>,
) -> Result<()> {
    let mut prm = fwd_params(s, relu, slots, out_at)?;
    let list = bufs.list();
    if algo == Algorithm::Resident {
        return resident::record_forward(rec, Cell::Rnn, s, &mut prm, bufs);
    }
    if algo == Algorithm::Grid {
        return grid::record_forward(rec, Cell::Rnn, s, &mut prm, bufs);
    }
    let h = s.h;
    if algo == Algorithm::Persistent {
        let plan = persistent_plan(
            s.b,
            pool_need(s).forward,
            |bt| per_inv(bt * h) * (h + 6) + per_inv(bt * h) * 6 + 4,
            |bt| per_inv(bt * h) + 4,
        )?;
        return forward_chunks(rec, &FWD_PERSISTENT, &mut prm, &list, plan, s.t);
    }
    check_step_budget(h, "Stepwise RNN forward")?;
    let groups = step_groups(s.b * h)?;
    let (step_def, step_n) =
        step_tiled::forward(rec, TiledCell::Rnn, s)?.unwrap_or((&FWD_STEP, groups));
    for step in 0..s.t {
        prm.s_begin = step as u32;
        rec.dispatch(step_def, &prm, &list, step_n)?;
    }
    Ok(())
}

/// Records the reversed loop and the dh0 pass. `state` must hold dy_h_n; `seq` is the h ring.
pub(crate) fn record_backward(
    rec: &mut Recorder<'_>,
    s: &RecShape,
    relu: bool,
    algo: Algorithm,
    dy_at: (usize, usize),
    bufs: &BwdBufs<'_>,
) -> Result<()> {
    let mut prm = bwd_params(s, relu, dy_at)?;
    let base = prm;
    let list = bufs.list();
    let h = s.h;
    check_step_budget(h, "RNN backward step")?;
    let groups = step_groups(s.b * h)?;
    if algo == Algorithm::Resident {
        resident::record_backward(rec, Cell::Rnn, s, &mut prm, bufs)?;
    } else if algo == Algorithm::Grid {
        grid::record_backward(rec, Cell::Rnn, s, &mut prm, bufs)?;
    } else if algo == Algorithm::Persistent {
        let plan = persistent_plan(
            s.b,
            pool_need(s).backward,
            |bt| per_inv(bt * h) * (h + 6) + per_inv(bt * h) * 6 + 4,
            |bt| 2 * per_inv(bt * h) + 4,
        )?;
        backward_chunks(rec, &BWD_PERSISTENT, &mut prm, &list, plan, s.t)?;
    } else {
        let (fused, fused_groups) =
            step_tiled::backward(rec, TiledCell::Rnn, s)?.unwrap_or((&BWD_FUSED, groups));
        for step in (0..s.t).rev() {
            prm.s_begin = step as u32;
            rec.dispatch(fused, &prm, &list, fused_groups)?;
        }
    }
    record_final(rec, s, base, bufs)
}
