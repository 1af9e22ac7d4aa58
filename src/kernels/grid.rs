//! Launchers of `shaders/grid_forward.wgsl` and `shaders/grid_backward.wgsl`
//! (Algorithm::Grid): hidden units cut into slices, one workgroup per (slice, batch tile)
//! with its weight rows in registers, a bounded grid barrier per step, and the fallback that
//! finishes a run whose barrier failed (always on llvmpipe, whose workgroups are not
//! co-resident) from the first step (or phase) the grid did not complete. LSTM projection
//! and GRU reset-before take two phases (two barriers) per step.

use std::sync::Mutex;

use super::Shader::{GridBackward, GridBiBackward, GridBiForward, GridForward};
use super::rec::{BwdBufs, FwdBufs, Params, RecShape, u32_of};
use super::resident::{CHUNK, Cell};
use super::{Access, KernelDef, Recorder, buffers};
use crate::context::{Context, LOOP_BUDGET};
use crate::error::{Error, Result};

const FALLBACK: u32 = 64;
const STEP_MODE: u32 = 128;
/// Spin iterations one barrier may wait (must match MAX_SPIN in grid_common.wgsl).
const MAX_SPIN: usize = 4096;
/// Workgroups one grid dispatch may use. wgpu does not report how many workgroups a device
/// keeps co-resident; 64 is below the SM/CU count of the discrete GPUs this targets, and a
/// device that cannot hold them all only pays for the fallback (never a hang).
pub(crate) const MAX_GROUPS: usize = 64;

const RW: Access = Access::ReadWrite;
const R: Access = Access::Read;
const PARAMS: u64 = std::mem::size_of::<Params>() as u64;

const fn def(shader: super::Shader, entry: &'static str, storage: &'static [Access]) -> KernelDef {
    KernelDef {
        shader,
        entry,
        storage,
        params_size: PARAMS,
    }
}

const FWD: &[Access] = &[RW, R, R, RW, RW, RW, RW, RW];
const BWD: &[Access] = &[R, R, R, R, R, RW, RW, RW, RW];
/// Both directions in one dispatch (`grid_bi_*.wgsl`, scripts/gen_bidirectional.py): the
/// one-direction bindings with direction 0's sync, then direction 1's own gx, w_rec, hseq,
/// cseq, aux, sync (forward) or gates, w_rec, seq, dgates, state, aux, sync (backward).
const BI_FWD: &[Access] = &[RW, R, R, RW, RW, RW, RW, RW, RW, R, RW, RW, RW, RW];
const BI_BWD: &[Access] = &[R, R, R, R, R, RW, RW, RW, RW, R, R, R, RW, RW, RW, RW];
const BI_FWD_LSTM: KernelDef = def(GridBiForward, "lstm", BI_FWD);
const BI_FWD_GRU: KernelDef = def(GridBiForward, "gru", BI_FWD);
const BI_FWD_RNN: KernelDef = def(GridBiForward, "rnn", BI_FWD);
const BI_BWD_LSTM: KernelDef = def(GridBiBackward, "lstm", BI_BWD);
const BI_BWD_GRU: KernelDef = def(GridBiBackward, "gru", BI_BWD);
const BI_BWD_RNN: KernelDef = def(GridBiBackward, "rnn", BI_BWD);
const FWD_LSTM: KernelDef = def(GridForward, "lstm", FWD);
const FWD_GRU: KernelDef = def(GridForward, "gru", FWD);
const FWD_RNN: KernelDef = def(GridForward, "rnn", FWD);
const BWD_LSTM: KernelDef = def(GridBackward, "lstm", BWD);
const BWD_GRU: KernelDef = def(GridBackward, "gru", BWD);
const BWD_RNN: KernelDef = def(GridBackward, "rnn", BWD);

/// Test hooks of the Grid algorithm (hidden API for the crate's tests): the slice size, a
/// barrier forced to fail, and the one-step-per-dispatch mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GridHook {
    /// Hidden units per slice (None: planned from the device).
    pub units_per_slice: Option<usize>,
    /// Grid barrier number k (the one after processing step k when a step has one
    /// barrier) fails (None: none forced).
    pub fail_at_barrier: Option<usize>,
    /// Dispatch boundaries instead of the grid barrier: one dispatch per step.
    pub step_mode: bool,
    /// The direction (0 forward, 1 reverse) whose barrier `fail_at_barrier` fails (None:
    /// every direction's): lets a two-direction dispatch fail one grid and not the other.
    pub fail_direction: Option<usize>,
}

static HOOK: Mutex<GridHook> = Mutex::new(GridHook {
    units_per_slice: None,
    fail_at_barrier: None,
    step_mode: false,
    fail_direction: None,
});

/// Sets the Grid test hooks for later calls (process-wide).
pub fn set_hook(h: GridHook) {
    if let Ok(mut g) = HOOK.lock() {
        *g = h;
    }
}

/// `Params._pad3` of a grid dispatch (grid_common.wgsl): the barrier to fail + 1 in the low
/// 24 bits, a bit per direction above (none: every direction).
fn hook_word(hk: &GridHook) -> Result<u32> {
    let Some(f) = hk.fail_at_barrier else {
        return Ok(0);
    };
    if f + 1 >= 1 << 24 || hk.fail_direction.is_some_and(|d| d > 1) {
        return Err(Error::Config(format!(
            "grid test hook: barrier {f} (below 2^24 - 1) in direction {:?} (0 or 1)",
            hk.fail_direction
        )));
    }
    let dirs = hk.fail_direction.map_or(0, |d| 1u32 << d);
    Ok((f as u32 + 1) | dirs << 24)
}

fn hook() -> GridHook {
    HOOK.lock().map(|g| *g).unwrap_or_default()
}

/// The planned layout of one direction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    wg: u32,
    vb: u32,
    sb: u32,
    units: usize,
    slices: usize,
    bt: usize,
    tiles: usize,
    grid_steps: usize,
    fb_steps: usize,
    phases: usize,
}

/// Grid barriers per step: a second exchange for the LSTM projection (h_raw of every unit
/// before h = W_hr h_raw) and GRU reset-before (r⊙h of every unit before the candidate).
fn phases(cell: Cell, s: &RecShape) -> usize {
    match cell {
        Cell::Lstm if s.proj => 2,
        Cell::Gru { reset_before: true } => 2,
        _ => 1,
    }
}

/// Plans one direction of `cell` on this device, or names the limit it breaks.
pub(crate) fn plan(ctx: &Context, cell: Cell, s: &RecShape, backward: bool) -> Result<Plan> {
    // The backward binds 9 storage buffers (the barrier counter beside the 8 of the
    // recurrent family): one more than wgpu's default limit, which a caller's device may have.
    let bindings = if backward { BWD.len() } else { FWD.len() };
    let have = ctx.limits.max_storage_buffers_per_shader_stage as usize;
    if have < bindings {
        return Err(Error::Limit(format!(
            "Grid {}: binds {bindings} storage buffers per shader stage; the device allows \
             {have} (max_storage_buffers_per_shader_stage)",
            if backward { "backward" } else { "forward" }
        )));
    }
    let g = cell.gates();
    let h = s.h;
    let np = phases(cell, s);
    // Forward: G rows of W_hh per hidden unit, of length P. Backward: one W_hhᵀ row per
    // unit of length G·H (the LSTM's rows are its P outputs).
    let (rows_per_unit, len) = if backward { (1, g * h) } else { (g, s.p) };
    let units_total = if backward && cell == Cell::Lstm {
        s.p
    } else {
        h
    };
    let c = len.div_ceil(CHUNK);
    let slots_per_unit = rows_per_unit * c;
    let l = &ctx.limits;
    let max_inv = (l.max_compute_invocations_per_workgroup as usize)
        .min(l.max_compute_workgroup_size_x as usize);
    if slots_per_unit > max_inv {
        return Err(Error::Limit(format!(
            "Grid: one hidden unit needs {slots_per_unit} invocations ({rows_per_unit} rows x \
             {c} chunks of {CHUNK}, hidden_size {h}); the device allows {max_inv}"
        )));
    }
    // 256 invocations per workgroup by default (each holds 16 vec4 of weights, so larger
    // workgroups would crowd the register file); more when the slices would otherwise
    // outnumber the workgroups a grid may use.
    let fewest = units_total.div_ceil(MAX_GROUPS);
    let units = hook()
        .units_per_slice
        .unwrap_or_else(|| {
            let u = (256.min(max_inv) / slots_per_unit).max(1);
            if u < fewest && fewest * slots_per_unit <= max_inv {
                fewest
            } else {
                u
            }
        })
        .clamp(1, units_total);
    let wg = (units * slots_per_unit).div_ceil(32) * 32;
    if wg > max_inv {
        return Err(Error::Limit(format!(
            "Grid: {units} units per slice need {wg} invocations; the device allows {max_inv}"
        )));
    }
    let slices = units_total.div_ceil(units);
    let vrow = c * CHUNK / 4;
    let row_floats = vrow * 4 + rows_per_unit * units * c;
    let max_bytes = l.max_compute_workgroup_storage_size as usize;
    let cap = max_bytes.saturating_sub(16) / (4 * row_floats);
    if cap == 0 {
        return Err(Error::Limit(format!(
            "Grid: one batch row needs {} bytes of workgroup memory (hidden_size {h}); the \
             device allows {max_bytes}",
            4 * row_floats
        )));
    }
    let bt = s.b.min(cap);
    let tiles = s.b.div_ceil(bt);
    if slices * tiles > MAX_GROUPS {
        return Err(Error::Limit(format!(
            "Grid: {slices} slices x {tiles} batch tiles = {} workgroups; at most {MAX_GROUPS} \
             are planned co-resident",
            slices * tiles
        )));
    }
    // Loop iterations per invocation, counted twice over as for Resident (kernels::resident).
    let load = (bt * vrow * 4).div_ceil(wg);
    let mut slice = bt + (bt * units).div_ceil(wg) * (rows_per_unit * c + 6) + 4;
    if np == 2 {
        // The second phase: another mat-vec (GRU) or a W_hr product per unit (LSTM).
        let per_unit = if cell == Cell::Lstm {
            // h = W_hr h_raw (forward) or dh_raw = dhtot · W_hr (backward) per unit.
            let share = h.max(s.p).div_ceil(slices);
            (bt * share.max(units)).div_ceil(wg) * (h.max(s.p) + 8)
        } else {
            (bt * units).div_ceil(wg) * (rows_per_unit * c + 6)
        };
        slice += load + bt + per_unit + 4;
    }
    let grid_step = 2 * (load + slice + 8 * np);
    let fb_step = 2 * (load + slices * slice + 8 * np);
    let budget = LOOP_BUDGET as usize;
    let fixed = 2 * np * MAX_SPIN + 16;
    if fixed + grid_step > budget || fb_step + 16 > budget {
        return Err(Error::Limit(format!(
            "Grid: one step needs {} loop iterations per invocation; the budget is {budget}",
            fb_step.max(grid_step)
        )));
    }
    Ok(Plan {
        wg: wg as u32,
        vb: u32_of(bt * vrow, "vector buffer")?,
        sb: u32_of(bt * rows_per_unit * units * c, "scratch buffer")?,
        units,
        slices,
        bt,
        tiles,
        grid_steps: ((budget - fixed) / grid_step).max(1),
        fb_steps: ((budget - 16) / fb_step).max(1),
        phases: np,
    })
}

/// Whether this device gives the cross-workgroup exchange its visibility guarantee: the
/// exchanged bindings are `@coherent` (SPIR-V Coherent, HLSL globallycoherent), which needs
/// MEMORY_DECORATION_COHERENT; on Metal, naga's storageBarrier is a threadgroup-scope fence,
/// so another threadgroup may read stale h even then.
fn memory_model_ok(ctx: &Context) -> Result<()> {
    if ctx.adapter().backend == "Metal" {
        return Err(Error::Unsupported(
            "Algorithm::Grid exchanges h between workgroups; on Metal storageBarrier orders \
             device memory within a threadgroup only, so nothing makes one threadgroup's h \
             visible to another: use Algorithm::Resident, Persistent or Stepwise"
                .into(),
        ));
    }
    if !ctx
        .device()
        .features()
        .contains(wgpu::Features::MEMORY_DECORATION_COHERENT)
    {
        return Err(Error::Unsupported(
            "Algorithm::Grid needs the device feature MEMORY_DECORATION_COHERENT (its \
             exchanged state is @coherent storage); request it when creating the device, or \
             use Algorithm::Resident, Persistent or Stepwise"
                .into(),
        ));
    }
    Ok(())
}

/// Checks that forward (and backward when training) fit this device.
pub(crate) fn fits(ctx: &Context, cell: Cell, s: &RecShape, train: bool) -> Result<()> {
    memory_model_ok(ctx)?;
    plan(ctx, cell, s, false)?;
    if train {
        plan(ctx, cell, s, true)?;
    }
    Ok(())
}

/// Whether both directions of a layer (shape `s` of direction 0; the reverse one plans the
/// same) can run in one Grid dispatch: the device binds the two-direction kernels' 16
/// storage buffers, and both grids together stay within the co-resident cap (each direction
/// still meets only its own barrier counter, so a cap exceeded would only cost fallbacks).
pub(crate) fn bi_ok(ctx: &Context, cell: Cell, s: &RecShape, backward: bool) -> bool {
    let bindings = BI_BWD.len().max(BI_FWD.len());
    ctx.limits.max_storage_buffers_per_shader_stage as usize >= bindings
        && plan(ctx, cell, s, backward).is_ok_and(|p| 2 * p.slices * p.tiles <= MAX_GROUPS)
}

fn spec(p: &Plan) -> [(&'static str, u32); 3] {
    [("WG", p.wg), ("VB", p.vb), ("SB", p.sb)]
}

/// Records the grid chunks and then the fallback chunks (or, in step mode, one dispatch
/// per step). `first(s0, n)` turns a chunk of processing steps into `s_begin`. `dirs`
/// directions share each dispatch (2: the two-direction kernels, twice the workgroups).
#[allow(clippy::too_many_arguments)]
fn record(
    rec: &mut Recorder<'_>,
    k: &KernelDef,
    plan: &Plan,
    prm: &mut Params,
    list: &[&wgpu::Buffer],
    t: usize,
    dirs: usize,
    first: impl Fn(usize) -> usize,
) -> Result<()> {
    let hk = hook();
    prm.b_tile = plan.bt as u32;
    prm._pad = [
        u32_of(plan.slices, "slices")?,
        u32_of(plan.units, "units")?,
        hook_word(&hk)?,
    ];
    let base = prm.flags;
    let grid = u32_of(dirs * plan.slices * plan.tiles, "workgroups")?;
    let chunks = |n: usize| (0..t).step_by(n).map(move |i| (i, n.min(t - i)));
    if hk.step_mode {
        // One dispatch per step and phase (_pad3 = phase + 1 selects it).
        prm.flags = base | STEP_MODE;
        for (i, _) in chunks(1) {
            prm.s_begin = first(i) as u32;
            prm.n_steps = 1;
            for ph in 0..plan.phases {
                prm._pad[2] = ph as u32 + 1;
                rec.dispatch_spec(k, &spec(plan), prm, list, grid)?;
            }
        }
    } else {
        prm.flags = base;
        for (i, n) in chunks(plan.grid_steps) {
            prm.s_begin = first(i) as u32;
            prm.n_steps = n as u32;
            rec.dispatch_spec(k, &spec(plan), prm, list, grid)?;
        }
        // Each fallback chunk starts at the first step the grid left undone; after a grid
        // that succeeded they return at once.
        prm.flags = base | FALLBACK;
        for (i, n) in chunks(plan.fb_steps) {
            prm.s_begin = first(i) as u32;
            prm.n_steps = n as u32;
            let groups = u32_of(dirs * plan.tiles, "tiles")?;
            rec.dispatch_spec(k, &spec(plan), prm, list, groups)?;
        }
    }
    prm.flags = base;
    Ok(())
}

/// The kernel of `cell`, forward or backward, one direction or both (`bi`).
fn kernel(cell: Cell, backward: bool, bi: bool) -> &'static KernelDef {
    match (backward, bi, cell) {
        (false, false, Cell::Lstm) => &FWD_LSTM,
        (false, false, Cell::Gru { .. }) => &FWD_GRU,
        (false, false, Cell::Rnn) => &FWD_RNN,
        (true, false, Cell::Lstm) => &BWD_LSTM,
        (true, false, Cell::Gru { .. }) => &BWD_GRU,
        (true, false, Cell::Rnn) => &BWD_RNN,
        (false, true, Cell::Lstm) => &BI_FWD_LSTM,
        (false, true, Cell::Gru { .. }) => &BI_FWD_GRU,
        (false, true, Cell::Rnn) => &BI_FWD_RNN,
        (true, true, Cell::Lstm) => &BI_BWD_LSTM,
        (true, true, Cell::Gru { .. }) => &BI_BWD_GRU,
        (true, true, Cell::Rnn) => &BI_BWD_RNN,
    }
}

/// Fresh zeroed barrier counters, one per direction.
fn syncs(rec: &Recorder<'_>, dirs: usize) -> Result<Vec<wgpu::Buffer>> {
    (0..dirs)
        .map(|_| buffers::zeros(rec.ctx(), "grid sync", 1))
        .collect()
}

/// Plans and records one layer's recurrence over `dirs` directions (2: the two-direction
/// kernels), forward from step 0 or backward from T-1, with `list` its bindings (the
/// counters of [`syncs`] included).
fn record_family(
    rec: &mut Recorder<'_>,
    (cell, backward, dirs): (Cell, bool, usize),
    s: &RecShape,
    prm: &mut Params,
    list: &[&wgpu::Buffer],
) -> Result<()> {
    memory_model_ok(rec.ctx())?;
    let plan = plan(rec.ctx(), cell, s, backward)?;
    let k = kernel(cell, backward, dirs == 2);
    if dirs == 2 {
        prm.dir = 0;
    }
    let t = s.t;
    if backward {
        record(rec, k, &plan, prm, list, t, dirs, |i| t - 1 - i)
    } else {
        record(rec, k, &plan, prm, list, t, dirs, |i| i)
    }
}

/// Records the forward recurrence.
pub(crate) fn record_forward(
    rec: &mut Recorder<'_>,
    cell: Cell,
    s: &RecShape,
    prm: &mut Params,
    bufs: &FwdBufs<'_>,
) -> Result<()> {
    let sync = syncs(rec, 1)?;
    let mut list = bufs.list().to_vec();
    list.push(&sync[0]);
    record_family(rec, (cell, false, 1), s, prm, &list)
}

/// Records the backward recurrence (T-1 down); the caller runs the cell's FINAL pass.
pub(crate) fn record_backward(
    rec: &mut Recorder<'_>,
    cell: Cell,
    s: &RecShape,
    prm: &mut Params,
    bufs: &BwdBufs<'_>,
) -> Result<()> {
    let sync = syncs(rec, 1)?;
    let mut list = bufs.list().to_vec();
    list.push(&sync[0]);
    record_family(rec, (cell, true, 1), s, prm, &list)
}

/// Records the forward recurrence of both directions of a layer in one dispatch per chunk
/// (`bufs[d]` of direction d; `prm` is direction 0's block: dir 0, col of direction 0;
/// direction 1 writes P columns further). The caller checked [`bi_ok`].
pub(crate) fn record_forward_bi(
    rec: &mut Recorder<'_>,
    cell: Cell,
    s: &RecShape,
    prm: &mut Params,
    bufs: [&FwdBufs<'_>; 2],
) -> Result<()> {
    let sync = syncs(rec, 2)?;
    let list = FwdBufs::bi_list(bufs, [&[&sync[0]], &[&sync[1]]]);
    record_family(rec, (cell, false, 2), s, prm, &list)
}

/// Records the backward recurrence of both directions of a layer (T-1 down) in one dispatch
/// per chunk; the caller runs each direction's FINAL pass. As [`record_forward_bi`] for
/// `prm` and `bufs`.
pub(crate) fn record_backward_bi(
    rec: &mut Recorder<'_>,
    cell: Cell,
    s: &RecShape,
    prm: &mut Params,
    bufs: [&BwdBufs<'_>; 2],
) -> Result<()> {
    let sync = syncs(rec, 2)?;
    let list = BwdBufs::bi_list(bufs, [&[&sync[0]], &[&sync[1]]]);
    record_family(rec, (cell, true, 2), s, prm, &list)
}

#[cfg(test)]
mod tests {
    #[test]
    fn constants_match_grid_common() {
        let src = include_str!("../../shaders/grid_common.wgsl");
        assert!(src.contains(&format!("const MAX_SPIN: u32 = {}u;", super::MAX_SPIN)));
        assert!(src.contains(&format!("const FALLBACK: u32 = {}u;", super::FALLBACK)));
        assert!(src.contains(&format!("const STEP_MODE: u32 = {}u;", super::STEP_MODE)));
        let common = include_str!("../../shaders/rnn_common.wgsl");
        let block = |s: &str| {
            let b = &s[s.find("struct Params {").unwrap()..];
            b[..b.find('}').unwrap()].to_string()
        };
        assert_eq!(block(common), block(src));
    }

    /// One binding per storage buffer the launchers pass (bindings 1..), one-direction and
    /// two-direction kernels alike.
    #[test]
    fn bindings_match_the_launchers() {
        for (src, n) in [
            (
                include_str!("../../shaders/grid_forward.wgsl"),
                super::FWD.len(),
            ),
            (
                include_str!("../../shaders/grid_backward.wgsl"),
                super::BWD.len(),
            ),
            (
                include_str!("../../shaders/grid_bi_forward.wgsl"),
                super::BI_FWD.len(),
            ),
            (
                include_str!("../../shaders/grid_bi_backward.wgsl"),
                super::BI_BWD.len(),
            ),
        ] {
            for k in 1..=n {
                assert!(
                    src.contains(&format!("@binding({k})")),
                    "binding {k} missing"
                );
            }
            assert!(!src.contains(&format!("@binding({})", n + 1)));
        }
    }
}
