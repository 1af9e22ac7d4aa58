//! Launchers for `shaders/lstm_forward.wgsl` and `shaders/lstm_backward.wgsl`: the
//! recurrence of one layer-direction, Persistent or Stepwise, chunked under the loop budget.

use super::{Access, KernelDef, Recorder, Shader};
use crate::algorithm::Algorithm;
use crate::context::{Context, LOOP_BUDGET};
use crate::error::{Error, Result};

/// Workgroup size of the persistent kernels (must match the shaders).
const PERSISTENT_WG: usize = 256;
/// Workgroup size of the per-step kernels (must match the shaders).
const STEP_WG: usize = 64;
/// f32 slots of the persistent kernels' workgroup pool (must match the shaders).
pub(crate) const POOL_FLOATS: usize = 4000;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    t_len: u32,
    batch: u32,
    hidden: u32,
    out_size: u32,
    dir: u32,
    s_begin: u32,
    n_steps: u32,
    slots: u32,
    stride: u32,
    col: u32,
    b_tile: u32,
    flags: u32,
    _pad: [u32; 4],
}

const TRAIN: u32 = 1;
const PROJ: u32 = 2;
const HRAW_PER_T: u32 = 4;
const FINAL: u32 = 8;

const PARAMS: u64 = std::mem::size_of::<Params>() as u64;
const FWD_BINDINGS: &[Access] = &[
    Access::ReadWrite,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
];
const BWD_BINDINGS: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
];

const fn fwd(entry: &'static str) -> KernelDef {
    KernelDef {
        shader: Shader::LstmForward,
        entry,
        storage: FWD_BINDINGS,
        params_size: PARAMS,
    }
}

const fn bwd(entry: &'static str) -> KernelDef {
    KernelDef {
        shader: Shader::LstmBackward,
        entry,
        storage: BWD_BINDINGS,
        params_size: PARAMS,
    }
}

const FWD_PERSISTENT: KernelDef = fwd("persistent");
const FWD_STEP: KernelDef = fwd("step");
const FWD_PROJECT: KernelDef = fwd("project");
const BWD_PERSISTENT: KernelDef = bwd("persistent");
const BWD_FUSED: KernelDef = bwd("fused");
const BWD_RECUR: KernelDef = bwd("recur");
const BWD_GATES: KernelDef = bwd("gates_step");

/// Sizes of one layer-direction's recurrence.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecShape {
    pub t: usize,
    pub b: usize,
    pub h: usize,
    /// `P`: projection size, or `H` without projection.
    pub p: usize,
    pub proj: bool,
    pub dir: usize,
}

/// Largest batch tile the forward persistent kernel can hold (0: does not fit).
pub(crate) fn forward_tile(h: usize, p: usize) -> usize {
    POOL_FLOATS / (p + 2 * h)
}

/// Largest batch tile the backward persistent kernel can hold (0: does not fit).
pub(crate) fn backward_tile(h: usize, p: usize) -> usize {
    POOL_FLOATS / (4 * h + 2 * p + h)
}

/// Checks that the device can run the persistent kernels at all.
fn persistent_device_ok(ctx: &Context) -> Result<()> {
    let l = &ctx.limits;
    let need_bytes = (POOL_FLOATS * 4) as u32;
    if l.max_compute_workgroup_storage_size < need_bytes {
        return Err(Error::Limit(format!(
            "Persistent needs {need_bytes} bytes of workgroup memory; the device allows {}",
            l.max_compute_workgroup_storage_size
        )));
    }
    if (l.max_compute_invocations_per_workgroup as usize) < PERSISTENT_WG
        || (l.max_compute_workgroup_size_x as usize) < PERSISTENT_WG
    {
        return Err(Error::Limit(format!(
            "Persistent needs {PERSISTENT_WG} invocations per workgroup; the device allows {}",
            l.max_compute_invocations_per_workgroup
        )));
    }
    Ok(())
}

/// Decides the algorithm for one shape: the caller's choice when it can run (an error naming
/// the limit when it cannot), else the heuristic. `train` also requires the backward tile.
pub(crate) fn resolve(
    ctx: &Context,
    algo: Algorithm,
    s: &RecShape,
    train: bool,
) -> Result<Algorithm> {
    let fits = || -> Result<()> {
        persistent_device_ok(ctx)?;
        let ft = forward_tile(s.h, s.p);
        if ft == 0 {
            return Err(Error::Limit(format!(
                "Persistent forward holds h, c and h_raw of a batch tile in {POOL_FLOATS} f32 of \
                 workgroup memory: needs proj_or_hidden + 2*hidden = {} <= {POOL_FLOATS} \
                 (hidden_size {})",
                s.p + 2 * s.h,
                s.h
            )));
        }
        if train && backward_tile(s.h, s.p) == 0 {
            return Err(Error::Limit(format!(
                "Persistent backward needs 5*hidden + 2*proj_or_hidden = {} <= {POOL_FLOATS} f32 \
                 of workgroup memory (hidden_size {}); use Algorithm::Stepwise",
                5 * s.h + 2 * s.p,
                s.h
            )));
        }
        Ok(())
    };
    match algo {
        Algorithm::Persistent => fits().map(|_| Algorithm::Persistent),
        Algorithm::Stepwise => Ok(Algorithm::Stepwise),
        // Persistent keeps the state on chip and needs no per-step launch, which is what costs
        // on a real GPU while one workgroup's mat-vec is short; large H spreads better over
        // many workgroups. On software adapters (lavapipe, 2 cores) Stepwise measured 2-3x
        // faster at every shape tried (B1-8, H64-128), so they always get Stepwise.
        Algorithm::Auto => Ok(if !ctx.software && s.h <= 256 && fits().is_ok() {
            Algorithm::Persistent
        } else {
            Algorithm::Stepwise
        }),
    }
}

fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Limit(format!("{what} = {v} exceeds u32 indexing")))
}

fn base_params(
    s: &RecShape,
    slots: usize,
    stride: usize,
    col: usize,
    flags: u32,
) -> Result<Params> {
    Ok(Params {
        t_len: u32_of(s.t, "seq_len")?,
        batch: u32_of(s.b, "batch")?,
        hidden: u32_of(s.h, "hidden_size")?,
        out_size: u32_of(s.p, "out_size")?,
        dir: s.dir as u32,
        s_begin: 0,
        n_steps: 1,
        slots: u32_of(slots, "state slots")?,
        stride: u32_of(stride, "row stride")?,
        col: u32_of(col, "column offset")?,
        b_tile: 0,
        flags,
        _pad: [0; 4],
    })
}

/// Steps per persistent dispatch so one invocation stays under the loop budget.
fn chunk_steps(load_iters: usize, per_step: usize) -> Result<usize> {
    let budget = LOOP_BUDGET as usize;
    if load_iters + per_step > budget {
        return Err(Error::Limit(format!(
            "one recurrent step needs {per_step} loop iterations per invocation; the budget is {budget}"
        )));
    }
    Ok(((budget - load_iters) / per_step).max(1))
}

fn check_step_budget(per_step: usize, what: &str) -> Result<()> {
    if per_step > LOOP_BUDGET as usize {
        return Err(Error::Limit(format!(
            "{what}: {per_step} loop iterations per invocation exceed the budget {LOOP_BUDGET}"
        )));
    }
    Ok(())
}

fn tile_and_groups(b: usize, cap: usize) -> Result<(usize, u32)> {
    // Several workgroups even for small batches, so more than one core/SM works.
    let bt = cap.min(b.div_ceil(4)).max(1);
    Ok((bt, u32_of(b.div_ceil(bt), "workgroups")?))
}

/// Buffers of one layer-direction's forward recurrence.
pub(crate) struct FwdBufs<'a> {
    pub gx: &'a wgpu::Buffer,
    pub w_rec: &'a wgpu::Buffer,
    pub lens: &'a wgpu::Buffer,
    pub hseq: &'a wgpu::Buffer,
    pub cseq: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
    pub hraw: &'a wgpu::Buffer,
}

/// Records the forward recurrence. `slots` = T+1 when training, 2 otherwise.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_forward(
    rec: &mut Recorder<'_>,
    s: &RecShape,
    algo: Algorithm,
    train: bool,
    slots: usize,
    (out_stride, out_col): (usize, usize),
    bufs: &FwdBufs<'_>,
) -> Result<()> {
    let mut flags = 0;
    if train {
        flags |= TRAIN | HRAW_PER_T;
    }
    if s.proj {
        flags |= PROJ;
    }
    let mut prm = base_params(s, slots, out_stride, out_col, flags)?;
    let list = [
        bufs.gx, bufs.w_rec, bufs.lens, bufs.hseq, bufs.cseq, bufs.out, bufs.hraw,
    ];
    match algo {
        Algorithm::Persistent => {
            let (bt, groups) = tile_and_groups(s.b, forward_tile(s.h, s.p))?;
            let wg = PERSISTENT_WG;
            let per_step = (bt * s.h).div_ceil(wg) * (s.p + 6)
                + (bt * s.p).div_ceil(wg) * (if s.proj { s.h + 6 } else { 6 })
                + 4;
            let load = (bt * s.h).div_ceil(wg) + (bt * s.p).div_ceil(wg) + 4;
            let n = chunk_steps(load, per_step)?;
            prm.b_tile = bt as u32;
            let mut s0 = 0;
            while s0 < s.t {
                let k = n.min(s.t - s0);
                prm.s_begin = s0 as u32;
                prm.n_steps = k as u32;
                rec.dispatch(&FWD_PERSISTENT, &prm, &list, groups)?;
                s0 += k;
            }
        }
        _ => {
            check_step_budget(s.p.max(s.h), "Stepwise forward")?;
            let cells = u32_of((s.b * s.h).div_ceil(STEP_WG), "workgroups")?;
            let projs = u32_of((s.b * s.p).div_ceil(STEP_WG), "workgroups")?;
            for step in 0..s.t {
                prm.s_begin = step as u32;
                rec.dispatch(&FWD_STEP, &prm, &list, cells)?;
                if s.proj {
                    rec.dispatch(&FWD_PROJECT, &prm, &list, projs)?;
                }
            }
        }
    }
    Ok(())
}

/// Buffers of one layer-direction's backward recurrence.
pub(crate) struct BwdBufs<'a> {
    pub gates: &'a wgpu::Buffer,
    pub w_rec: &'a wgpu::Buffer,
    pub lens: &'a wgpu::Buffer,
    pub cseq: &'a wgpu::Buffer,
    pub dy: &'a wgpu::Buffer,
    pub dgates: &'a wgpu::Buffer,
    pub state: &'a wgpu::Buffer,
    pub dhtot: &'a wgpu::Buffer,
}

/// Records the reversed loop and the final dh0 pass. `state` must hold dy_h_n then dy_c_n.
pub(crate) fn record_backward(
    rec: &mut Recorder<'_>,
    s: &RecShape,
    algo: Algorithm,
    (dy_stride, dy_col): (usize, usize),
    bufs: &BwdBufs<'_>,
) -> Result<()> {
    let flags = if s.proj { PROJ } else { 0 };
    let mut prm = base_params(s, s.t + 1, dy_stride, dy_col, flags)?;
    let list = [
        bufs.gates,
        bufs.w_rec,
        bufs.lens,
        bufs.cseq,
        bufs.dy,
        bufs.dgates,
        bufs.state,
        bufs.dhtot,
    ];
    let recur_groups = u32_of((s.b * s.p).div_ceil(STEP_WG), "workgroups")?;
    check_step_budget(4 * s.h + s.p, "backward step")?;
    match algo {
        Algorithm::Persistent => {
            let (bt, groups) = tile_and_groups(s.b, backward_tile(s.h, s.p))?;
            let wg = PERSISTENT_WG;
            let per_step = (bt * s.p).div_ceil(wg) * (4 * s.h + 6)
                + (bt * s.h).div_ceil(wg) * (if s.proj { s.p + 6 } else { 6 })
                + 4;
            let load = 2 * (bt * s.p).div_ceil(wg)
                + 2 * (bt * s.h).div_ceil(wg)
                + (bt * 4 * s.h).div_ceil(wg)
                + 4;
            let n = chunk_steps(load, per_step)?;
            prm.b_tile = bt as u32;
            let mut done = 0;
            while done < s.t {
                let k = n.min(s.t - done);
                prm.s_begin = (s.t - 1 - done) as u32;
                prm.n_steps = k as u32;
                rec.dispatch(&BWD_PERSISTENT, &prm, &list, groups)?;
                done += k;
            }
        }
        _ => {
            let cells = u32_of((s.b * s.h).div_ceil(STEP_WG), "workgroups")?;
            for step in (0..s.t).rev() {
                prm.s_begin = step as u32;
                if s.proj {
                    rec.dispatch(&BWD_RECUR, &prm, &list, recur_groups)?;
                    rec.dispatch(&BWD_GATES, &prm, &list, cells)?;
                } else {
                    rec.dispatch(&BWD_FUSED, &prm, &list, cells)?;
                }
            }
        }
    }
    prm.flags = flags | FINAL;
    prm.s_begin = 0;
    rec.dispatch(&BWD_RECUR, &prm, &list, recur_groups)
}
