//! Launchers for `shaders/lstm_forward.wgsl` and `shaders/lstm_backward.wgsl`: the
//! recurrence of one LSTM layer-direction, Persistent or Stepwise.

use super::Recorder;
use super::Shader::{LstmBackward, LstmForward};
use super::grid;
use super::rec::{
    AUX_PER_T, BwdBufs, FwdBufs, Params, PoolNeed, RecShape, TRAIN, backward_chunks, base_params,
    bwd, check_step_budget, forward_chunks, fwd, per_inv, persistent_plan, step_groups, u32_of,
};
use super::resident::{self, Cell};
use super::step_tiled::{self, TiledCell};
use crate::algorithm::Algorithm;
use crate::error::Result;

const PROJ: u32 = 2;

const FWD_PERSISTENT: super::KernelDef = fwd(LstmForward, "persistent");
const FWD_STEP: super::KernelDef = fwd(LstmForward, "step");
const FWD_STEP_B4: super::KernelDef = fwd(LstmForward, "step_b4");
const FWD_PROJECT: super::KernelDef = fwd(LstmForward, "project");
const BWD_PERSISTENT: super::KernelDef = bwd(LstmBackward, "persistent");
const BWD_FUSED: super::KernelDef = bwd(LstmBackward, "fused");
const BWD_RECUR: super::KernelDef = bwd(LstmBackward, "recur");
const BWD_GATES: super::KernelDef = bwd(LstmBackward, "gates_step");

/// Workgroup-pool floats per batch row (see the shader headers).
pub(crate) fn pool_need(s: &RecShape) -> PoolNeed {
    PoolNeed {
        forward: s.p + 2 * s.h,
        backward: 5 * s.h + 2 * s.p,
        forward_formula: "proj_or_hidden + 2*hidden",
        backward_formula: "5*hidden + 2*proj_or_hidden",
        cell: Cell::Lstm,
    }
}

/// Offset of W_hhᵀ in w_rec: it follows W_hh and W_hr (gpu::cell::CellKind::w_rec).
fn wt_off(s: &RecShape) -> Result<u32> {
    u32_of(
        4 * s.h * s.p + if s.proj { s.p * s.h } else { 0 },
        "weights",
    )
}

/// The forward kernels' parameter block, all but the per-dispatch fields.
pub(crate) fn fwd_params(
    s: &RecShape,
    train: bool,
    slots: usize,
    out_at: (usize, usize),
) -> Result<Params> {
    let mut flags = if train { TRAIN | AUX_PER_T } else { 0 };
    if s.proj {
        flags |= PROJ;
    }
    let mut prm = base_params(s, slots, out_at, flags)?;
    prm.wt_off = wt_off(s)?;
    Ok(prm)
}

/// The backward kernels' parameter block, all but the per-dispatch fields.
pub(crate) fn bwd_params(s: &RecShape, dy_at: (usize, usize)) -> Result<Params> {
    let mut prm = base_params(s, s.t + 1, dy_at, if s.proj { PROJ } else { 0 })?;
    // The Resident and Grid kernels read W_hhᵀ.
    prm.wt_off = wt_off(s)?;
    Ok(prm)
}

/// Records the dh0 pass that follows the reversed loop.
pub(crate) fn record_final(
    rec: &mut Recorder<'_>,
    s: &RecShape,
    prm: Params,
    bufs: &BwdBufs<'_>,
) -> Result<()> {
    super::rec::record_final(rec, &BWD_RECUR, prm, bufs, step_groups(s.b * s.p)?)
}

/// Records the forward recurrence. `slots` = T+1 when training, 2 otherwise; `aux` is h_raw.
pub(crate) fn record_forward(
    rec: &mut Recorder<'_>,
    s: &RecShape,
    algo: Algorithm,
    train: bool,
    slots: usize,
    out_at: (usize, usize),
    bufs: &FwdBufs<'_>,
) -> Result<()> {
    let mut prm = fwd_params(s, train, slots, out_at)?;
    let list = bufs.list();
    if algo == Algorithm::Resident {
        return resident::record_forward(rec, Cell::Lstm, s, &mut prm, bufs);
    }
    if algo == Algorithm::Grid {
        return grid::record_forward(rec, Cell::Lstm, s, &mut prm, bufs);
    }
    if algo == Algorithm::Persistent {
        let need = pool_need(s);
        let plan = persistent_plan(
            s.b,
            need.forward,
            |bt| {
                per_inv(bt * s.h) * (s.p + 6)
                    + per_inv(bt * s.p) * (if s.proj { s.h + 6 } else { 6 })
                    + 4
            },
            |bt| per_inv(bt * s.h) + per_inv(bt * s.p) + 4,
        )?;
        return forward_chunks(rec, &FWD_PERSISTENT, &mut prm, &list, plan, s.t);
    }
    check_step_budget(s.p.max(s.h), "Stepwise forward")?;
    // CPU adapters: 4 batch rows per invocation (each weight load feeds 4 rows; lavapipe
    // B8 T100 H128 forward recurrence measured in BENCHMARKS.md). GPUs keep one (b, j) per
    // invocation for parallelism.
    // WGPU_RNN_STEP=b1|b4 overrides the choice (tests run both variants on any adapter).
    // step_b4 has no recurrent-dropout masks: masked training takes `step`.
    let blocked = s.rmask == 0
        && match std::env::var("WGPU_RNN_STEP").as_deref() {
            Ok("b1") => false,
            Ok("b4") => true,
            _ => rec.ctx().software,
        };
    let (step_def, cells) = if let Some(tiled) = step_tiled::forward(rec, TiledCell::Lstm, s)? {
        tiled
    } else if blocked {
        (&FWD_STEP_B4, step_groups(s.b.div_ceil(4) * s.h)?)
    } else {
        (&FWD_STEP, step_groups(s.b * s.h)?)
    };
    let projs = step_groups(s.b * s.p)?;
    for step in 0..s.t {
        prm.s_begin = step as u32;
        rec.dispatch(step_def, &prm, &list, cells)?;
        if s.proj {
            rec.dispatch(&FWD_PROJECT, &prm, &list, projs)?;
        }
    }
    Ok(())
}

/// Records the reversed loop and the final dh0 pass. `state` must hold dy_h_n then dy_c_n;
/// `seq` is the c ring, `aux` receives the total dh per step (projection only).
pub(crate) fn record_backward(
    rec: &mut Recorder<'_>,
    s: &RecShape,
    algo: Algorithm,
    dy_at: (usize, usize),
    bufs: &BwdBufs<'_>,
) -> Result<()> {
    let mut prm = bwd_params(s, dy_at)?;
    let base = prm;
    let list = bufs.list();
    let recur_groups = step_groups(s.b * s.p)?;
    check_step_budget(4 * s.h + s.p, "backward step")?;
    if algo == Algorithm::Resident {
        resident::record_backward(rec, Cell::Lstm, s, &mut prm, bufs)?;
    } else if algo == Algorithm::Grid {
        grid::record_backward(rec, Cell::Lstm, s, &mut prm, bufs)?;
    } else if algo == Algorithm::Persistent {
        let need = pool_need(s);
        let plan = persistent_plan(
            s.b,
            need.backward,
            |bt| {
                per_inv(bt * s.p) * (4 * s.h + 6)
                    + per_inv(bt * s.h) * (if s.proj { s.p + 6 } else { 6 })
                    + 4
            },
            |bt| 2 * per_inv(bt * s.p) + 2 * per_inv(bt * s.h) + per_inv(bt * 4 * s.h) + 4,
        )?;
        backward_chunks(rec, &BWD_PERSISTENT, &mut prm, &list, plan, s.t)?;
    } else {
        let (fused, cells) = match step_tiled::backward(rec, TiledCell::Lstm, s)? {
            Some(tiled) => tiled,
            None => (&BWD_FUSED, step_groups(s.b * s.h)?),
        };
        for step in (0..s.t).rev() {
            prm.s_begin = step as u32;
            if s.proj {
                rec.dispatch(&BWD_RECUR, &prm, &list, recur_groups)?;
                rec.dispatch(&BWD_GATES, &prm, &list, cells)?;
            } else {
                rec.dispatch(fused, &prm, &list, cells)?;
            }
        }
    }
    record_final(rec, s, base, bufs)
}
