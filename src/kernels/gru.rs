//! Launchers for `shaders/gru_forward.wgsl` and `shaders/gru_backward.wgsl`: the recurrence
//! of one GRU layer-direction (reset-after or reset-before), Persistent or Stepwise.

use super::Recorder;
use super::Shader::{GruBackward, GruForward};
use super::grid;
use super::rec::{
    AUX_PER_T, BwdBufs, FwdBufs, Params, PoolNeed, RecShape, TRAIN, backward_chunks, base_params,
    bwd, check_step_budget, forward_chunks, fwd, per_inv, persistent_plan, step_groups, u32_of,
};
use super::resident::{self, Cell};
use super::step_tiled::{self, TiledCell};
use crate::algorithm::Algorithm;
use crate::error::Result;

const RESET_BEFORE: u32 = 16;

const FWD_PERSISTENT: super::KernelDef = fwd(GruForward, "persistent");
const FWD_STEP: super::KernelDef = fwd(GruForward, "step");
const FWD_STEP_RZ: super::KernelDef = fwd(GruForward, "step_rz");
const FWD_STEP_N: super::KernelDef = fwd(GruForward, "step_n");
const BWD_PERSISTENT: super::KernelDef = bwd(GruBackward, "persistent");
const BWD_FUSED: super::KernelDef = bwd(GruBackward, "fused");
const BWD_PHASE_A: super::KernelDef = bwd(GruBackward, "phase_a");
const BWD_PHASE_B: super::KernelDef = bwd(GruBackward, "phase_b");
const BWD_RECUR: super::KernelDef = bwd(GruBackward, "recur");

/// Width of a dG row in units of H: [da_r|da_z|da_n|d_hn] reset-after, [da_r|da_z|da_n] before.
pub(crate) fn dgate_blocks(reset_before: bool) -> usize {
    if reset_before { 3 } else { 4 }
}

/// Workgroup-pool floats per batch row (see the shader headers).
pub(crate) fn pool_need(s: &RecShape, reset_before: bool) -> PoolNeed {
    PoolNeed {
        forward: 2 * s.h,
        backward: (dgate_blocks(reset_before) + 2) * s.h,
        forward_formula: "2*hidden",
        backward_formula: if reset_before { "5*hidden" } else { "6*hidden" },
        cell: Cell::Gru { reset_before },
    }
}

/// The forward kernels' parameter block, all but the per-dispatch fields.
pub(crate) fn fwd_params(
    s: &RecShape,
    reset_before: bool,
    train: bool,
    slots: usize,
    out_at: (usize, usize),
) -> Result<Params> {
    let mut flags = if train { TRAIN | AUX_PER_T } else { 0 };
    if reset_before {
        flags |= RESET_BEFORE;
    }
    let mut prm = base_params(s, slots, out_at, flags)?;
    // W_hhᵀ follows W_hh and b_hn in w_rec (gpu::cell::CellKind::w_rec).
    prm.wt_off = u32_of(3 * s.h * s.h + s.h, "weights")?;
    Ok(prm)
}

/// The backward kernels' parameter block, all but the per-dispatch fields.
pub(crate) fn bwd_params(
    s: &RecShape,
    reset_before: bool,
    dy_at: (usize, usize),
) -> Result<Params> {
    let flags = if reset_before { RESET_BEFORE } else { 0 };
    let mut prm = base_params(s, s.t + 1, dy_at, flags)?;
    // The Resident and Grid kernels read W_hhᵀ.
    prm.wt_off = u32_of(3 * s.h * s.h + s.h, "weights")?;
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

/// Records the forward recurrence; `aux` receives hn (reset-after) or r⊙h (reset-before),
/// per time step when training, as a [B,H] scratch otherwise.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_forward(
    rec: &mut Recorder<'_>,
    s: &RecShape,
    reset_before: bool,
    algo: Algorithm,
    train: bool,
    slots: usize,
    out_at: (usize, usize),
    bufs: &FwdBufs<'_>,
) -> Result<()> {
    let mut prm = fwd_params(s, reset_before, train, slots, out_at)?;
    let list = bufs.list();
    if algo == Algorithm::Resident {
        return resident::record_forward(rec, Cell::Gru { reset_before }, s, &mut prm, bufs);
    }
    if algo == Algorithm::Grid {
        return grid::record_forward(rec, Cell::Gru { reset_before }, s, &mut prm, bufs);
    }
    let h = s.h;
    if algo == Algorithm::Persistent {
        let plan = persistent_plan(
            s.b,
            pool_need(s, reset_before).forward,
            |bt| {
                per_inv(bt * h) * (h + 6)
                    + per_inv(bt * h) * (if reset_before { h + 6 } else { 6 })
                    + 4
            },
            |bt| per_inv(bt * h) + 4,
        )?;
        return forward_chunks(rec, &FWD_PERSISTENT, &mut prm, &list, plan, s.t);
    }
    check_step_budget(3 * h, "Stepwise GRU forward")?;
    let groups = step_groups(s.b * h)?;
    let cell = TiledCell::Gru { reset_before };
    let (step_def, step_n) = step_tiled::forward(rec, cell, s)?.unwrap_or((&FWD_STEP, groups));
    for step in 0..s.t {
        prm.s_begin = step as u32;
        if reset_before {
            rec.dispatch(&FWD_STEP_RZ, &prm, &list, groups)?;
            rec.dispatch(&FWD_STEP_N, &prm, &list, groups)?;
        } else {
            rec.dispatch(step_def, &prm, &list, step_n)?;
        }
    }
    Ok(())
}

/// Records the reversed loop and the dh0 pass. `state` must hold dy_h_n; `seq` is the h ring
/// and `aux` the forward's hn / r⊙h.
pub(crate) fn record_backward(
    rec: &mut Recorder<'_>,
    s: &RecShape,
    reset_before: bool,
    algo: Algorithm,
    dy_at: (usize, usize),
    bufs: &BwdBufs<'_>,
) -> Result<()> {
    let mut prm = bwd_params(s, reset_before, dy_at)?;
    let base = prm;
    let list = bufs.list();
    let h = s.h;
    let g = dgate_blocks(reset_before) * h;
    check_step_budget(3 * h, "GRU backward step")?;
    let groups = step_groups(s.b * h)?;
    if algo == Algorithm::Resident {
        resident::record_backward(rec, Cell::Gru { reset_before }, s, &mut prm, bufs)?;
    } else if algo == Algorithm::Grid {
        grid::record_backward(rec, Cell::Gru { reset_before }, s, &mut prm, bufs)?;
    } else if algo == Algorithm::Persistent {
        let plan = persistent_plan(
            s.b,
            pool_need(s, reset_before).backward,
            |bt| per_inv(bt * h) * (3 * h + 10) + per_inv(bt * h) * (h + 10) + 4,
            |bt| 2 * per_inv(bt * h) + per_inv(bt * g) + 4,
        )?;
        backward_chunks(rec, &BWD_PERSISTENT, &mut prm, &list, plan, s.t)?;
    } else {
        let cell = TiledCell::Gru { reset_before };
        let (fused, fused_groups) =
            step_tiled::backward(rec, cell, s)?.unwrap_or((&BWD_FUSED, groups));
        for step in (0..s.t).rev() {
            prm.s_begin = step as u32;
            if reset_before {
                rec.dispatch(&BWD_PHASE_A, &prm, &list, groups)?;
                rec.dispatch(&BWD_PHASE_B, &prm, &list, groups)?;
            } else {
                rec.dispatch(fused, &prm, &list, fused_groups)?;
            }
        }
    }
    record_final(rec, s, base, bufs)
}
