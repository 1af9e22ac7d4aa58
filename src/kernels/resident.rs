//! Launchers of `shaders/resident_forward.wgsl` and `shaders/resident_backward.wgsl`
//! (Algorithm::Resident): the plan (workgroup size, workgroup memory, batch tile, steps per
//! dispatch) checked against the device's limits, and the chunked dispatches.

use super::Shader::{ResidentBackward, ResidentBiBackward, ResidentBiForward, ResidentForward};
use super::rec::{BwdBufs, FwdBufs, Params, RecShape, bwd, fwd, u32_of};
use super::{Access, KernelDef, Recorder};
use crate::algorithm::Algorithm;
use crate::context::{Context, LOOP_BUDGET};
use crate::error::{Error, Result};

/// Floats of one register-resident weight chunk (must match `CHUNK` of resident_regs.wgsl).
pub(crate) const CHUNK: usize = 64;

const FWD_LSTM: KernelDef = fwd(ResidentForward, "lstm");
const FWD_GRU: KernelDef = fwd(ResidentForward, "gru");
const FWD_RNN: KernelDef = fwd(ResidentForward, "rnn");
const BWD_LSTM: KernelDef = bwd(ResidentBackward, "lstm");
const BWD_GRU: KernelDef = bwd(ResidentBackward, "gru");
const BWD_RNN: KernelDef = bwd(ResidentBackward, "rnn");

/// Both directions of a bidirectional layer in one dispatch (`resident_bi_*.wgsl`): the
/// single-direction bindings, then direction 1's own gx, w_rec, hseq, cseq, aux (forward) or
/// gates, w_rec, seq, dgates, state, aux (backward).
const BI_FWD: &[Access] = &[
    Access::ReadWrite,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
    // direction 1: gx, w_rec, hseq, cseq, aux
    Access::ReadWrite,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
];
const BI_BWD: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
    // direction 1: gates, w_rec, seq, dgates, state, aux
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
];

const fn bi(shader: super::Shader, entry: &'static str, storage: &'static [Access]) -> KernelDef {
    KernelDef {
        shader,
        entry,
        storage,
        params_size: std::mem::size_of::<Params>() as u64,
    }
}

const BI_FWD_LSTM: KernelDef = bi(ResidentBiForward, "lstm", BI_FWD);
const BI_FWD_GRU: KernelDef = bi(ResidentBiForward, "gru", BI_FWD);
const BI_FWD_RNN: KernelDef = bi(ResidentBiForward, "rnn", BI_FWD);
const BI_BWD_LSTM: KernelDef = bi(ResidentBiBackward, "lstm", BI_BWD);
const BI_BWD_GRU: KernelDef = bi(ResidentBiBackward, "gru", BI_BWD);
const BI_BWD_RNN: KernelDef = bi(ResidentBiBackward, "rnn", BI_BWD);

/// Whether this device can bind both directions of a layer to one Resident dispatch (the
/// backward needs 14 storage buffers; wgpu's default limit is 8, so a caller's device opened
/// with default limits runs one dispatch per direction).
pub(crate) fn bi_ok(ctx: &Context) -> bool {
    ctx.limits.max_storage_buffers_per_shader_stage as usize >= BI_BWD.len().max(BI_FWD.len())
}

/// Whether a bidirectional layer whose directions resolved to `algos` runs both in one
/// dispatch: both Resident and [`bi_ok`].
pub(crate) fn one_dispatch(ctx: &Context, algos: [Algorithm; 2]) -> bool {
    algos == [Algorithm::Resident; 2] && bi_ok(ctx)
}

/// The cell a Resident kernel runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cell {
    Lstm,
    Gru { reset_before: bool },
    Rnn,
}

impl Cell {
    /// Gate blocks of W_hh (rows per hidden unit).
    pub(crate) fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru { .. } => 3,
            Cell::Rnn => 1,
        }
    }
}

/// Sizes of one Resident dispatch family, as the shader header describes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Invocations per workgroup (`override WG`).
    pub wg: u32,
    /// vec4 of the vector buffer (`override VB`).
    pub vb: u32,
    /// f32 of the scratch buffer (`override SB`).
    pub sb: u32,
    /// Batch rows per workgroup.
    pub bt: usize,
    /// Workgroups per dispatch.
    pub groups: u32,
    /// Steps per dispatch (loop budget).
    pub steps: usize,
    /// vset goes through the scalar mirror (`override STAGED`; see [`staged`]).
    pub staged: bool,
}

/// What one direction of one cell needs per batch row, and its loop counts.
struct Need {
    what: &'static str,
    /// Weight rows held on chip and their length.
    rows: usize,
    len: usize,
    /// Vector blocks per batch row (each ceil(len/64)·64 floats).
    vecs: usize,
    /// Scratch floats per batch row besides the partial sums.
    extra: usize,
    /// Loop iterations of one invocation per step beyond the mat-vec's batch loop, as a
    /// function of (b_tile, wg).
    per_step: Box<dyn Fn(usize, usize) -> usize>,
}

fn need(cell: Cell, s: &RecShape, backward: bool) -> Need {
    let (h, p) = (s.h, s.p);
    let per = |n: usize, wg: usize| n.div_ceil(wg);
    match (cell, backward) {
        (Cell::Lstm, false) => {
            let c = p.div_ceil(CHUNK);
            let proj = s.proj;
            Need {
                what: "LSTM forward",
                rows: 4 * h,
                len: p,
                vecs: 1,
                extra: 2 * h,
                per_step: Box::new(move |bt, wg| {
                    per(bt * h, wg) * (4 * c + 2) + if proj { per(bt * p, wg) * (h + 2) } else { 0 }
                }),
            }
        }
        (Cell::Lstm, true) => {
            let c = (4 * h).div_ceil(CHUNK);
            let proj = s.proj;
            Need {
                what: "LSTM backward",
                rows: p,
                len: 4 * h,
                vecs: 1,
                extra: 2 * p + h,
                per_step: Box::new(move |bt, wg| {
                    per(bt * p, wg) * (c + 2) + if proj { per(bt * h, wg) * (p + 2) } else { 0 }
                }),
            }
        }
        (Cell::Gru { reset_before }, false) => {
            let c = h.div_ceil(CHUNK);
            Need {
                what: "GRU forward",
                rows: 3 * h,
                len: h,
                vecs: if reset_before { 2 } else { 1 },
                extra: 0,
                per_step: Box::new(move |bt, wg| per(bt * h, wg) * (3 * c + 2) * 2),
            }
        }
        (Cell::Gru { reset_before }, true) => {
            let c = (3 * h).div_ceil(CHUNK);
            Need {
                what: "GRU backward",
                rows: h,
                len: 3 * h,
                vecs: if reset_before { 2 } else { 1 },
                extra: h,
                per_step: Box::new(move |bt, wg| per(bt * h, wg) * (c + 6) * 2),
            }
        }
        (Cell::Rnn, false) => {
            let c = h.div_ceil(CHUNK);
            Need {
                what: "RNN forward",
                rows: h,
                len: h,
                vecs: 1,
                extra: 0,
                per_step: Box::new(move |bt, wg| per(bt * h, wg) * (c + 2)),
            }
        }
        (Cell::Rnn, true) => {
            let c = h.div_ceil(CHUNK);
            Need {
                what: "RNN backward",
                rows: h,
                len: h,
                vecs: 1,
                extra: h,
                per_step: Box::new(move |bt, wg| per(bt * h, wg) * (c + 2)),
            }
        }
    }
}

/// Whether the kernels stage their single-component stores into workgroup vec4s through a
/// scalar mirror (resident_common.wgsl `STAGED`): on every backend but Vulkan, whose SPIR-V
/// keeps such a store scalar. DXC and Metal's compiler may lower a dynamically indexed
/// component store as a read-modify-write of the whole vector (llvm-project#167729), which
/// would lose a neighbouring invocation's write; WGSL allows that. `WGPU_RNN_RESIDENT_STORES=
/// staged` forces staging (tests run it on lavapipe).
pub(crate) fn staged(ctx: &Context) -> bool {
    ctx.adapter().backend != "Vulkan"
        || std::env::var("WGPU_RNN_RESIDENT_STORES").as_deref() == Ok("staged")
}

/// Plans one direction of `cell` on this device, or says which limit it breaks.
pub(crate) fn plan(ctx: &Context, cell: Cell, s: &RecShape, backward: bool) -> Result<Plan> {
    plan_with(ctx, cell, s, backward, staged(ctx))
}

fn plan_with(
    ctx: &Context,
    cell: Cell,
    s: &RecShape,
    backward: bool,
    staged: bool,
) -> Result<Plan> {
    let n = need(cell, s, backward);
    let l = &ctx.limits;
    let c = n.len.div_ceil(CHUNK);
    let slots = n.rows * c;
    let max_inv = (l.max_compute_invocations_per_workgroup as usize)
        .min(l.max_compute_workgroup_size_x as usize);
    // Whole warps/subgroups; 32 divides every common subgroup size.
    let wg = slots.div_ceil(32) * 32;
    if wg > max_inv {
        return Err(Error::Limit(format!(
            "Resident {}: hidden_size {} keeps {} weight rows x {c} chunks of {CHUNK} = {slots} \
             invocations per workgroup (rounded to {wg}); the device allows {max_inv}; use \
             Algorithm::Persistent or Stepwise",
            n.what, s.h, n.rows
        )));
    }
    let vrow = c * CHUNK / 4;
    let row_floats = n.vecs * vrow * 4 + n.rows * c + n.extra;
    // Staged: the scalar mirror (vstage) doubles the vector buffer.
    let mirror = if staged { n.vecs * vrow * 4 } else { 0 };
    let max_bytes = l.max_compute_workgroup_storage_size as usize;
    // Unstaged, the mirror is a 1-float placeholder (VS = 1).
    let cap = max_bytes.saturating_sub(if staged { 0 } else { 4 }) / (4 * (row_floats + mirror));
    if cap == 0 {
        return Err(Error::Limit(format!(
            "Resident {}: one batch row needs {} bytes of workgroup memory (hidden_size {}); \
             the device allows {max_bytes}; use Algorithm::Persistent or Stepwise",
            n.what,
            4 * (row_floats + mirror),
            s.h
        )));
    }
    // Spread the batch over up to 64 workgroups (each holds its own copy of W_hh on chip);
    // larger batches share a workgroup up to what its memory holds.
    let bt = s.b.div_ceil(64).clamp(1, cap);
    let groups = u32_of(s.b.div_ceil(bt), "workgroups")?;
    let load = 2 * (bt * n.vecs * vrow * 4).div_ceil(wg) + 3 * (bt * n.rows.max(s.h)).div_ceil(wg);
    // Counted twice over: llvmpipe truncated a 12000-step LSTM H=32 forward at ~17-19
    // iterations per step of a chunk where this count says 11 (loop entries and exits seem
    // to count too); tests/long_sequence.rs guards the margin.
    // Staged: up to two vsync copies of the vector buffer per step.
    let sync = if staged {
        2 * (bt * n.vecs * vrow).div_ceil(wg)
    } else {
        0
    };
    let step = 2 * (bt + (n.per_step)(bt, wg) + sync + 4);
    let budget = LOOP_BUDGET as usize;
    if load + step > budget {
        return Err(Error::Limit(format!(
            "Resident {}: one step needs {step} loop iterations per invocation; the budget is \
             {budget}",
            n.what
        )));
    }
    Ok(Plan {
        wg: wg as u32,
        vb: u32_of(n.vecs * bt * vrow, "vector buffer")?,
        // sbuf holds the partial sums and the cell's extras; vbuf (and the mirror) are
        // separate arrays, so the memory checked above is exactly what the kernel declares.
        sb: u32_of(bt * (n.rows * c + n.extra), "scratch buffer")?,
        bt,
        groups,
        steps: ((budget - load) / step).max(1),
        staged,
    })
}

/// Checks that forward (and backward when training) fit this device.
pub(crate) fn fits(ctx: &Context, cell: Cell, s: &RecShape, train: bool) -> Result<()> {
    plan(ctx, cell, s, false)?;
    if train {
        plan(ctx, cell, s, true)?;
    }
    Ok(())
}

/// Whether `Algorithm::Auto` should pick Resident on a GPU: it fits and its workgroups stay
/// at ≤ 512 invocations. Each invocation holds 64 weight floats; a 1024-invocation workgroup
/// leaves ≤ 64 registers per invocation on NVIDIA-class register files (64 K per SM), so
/// the weights would spill. (By that reasoning, not measured.)
pub(crate) fn auto_ok(ctx: &Context, cell: Cell, s: &RecShape, train: bool) -> bool {
    let small = |p: Result<Plan>| p.is_ok_and(|p| p.wg <= 512);
    small(plan(ctx, cell, s, false)) && (!train || small(plan(ctx, cell, s, true)))
}

/// The largest hidden size (no projection, batch 1) Resident runs forward and backward on
/// this device: the invocation and workgroup-memory limits decide it.
pub(crate) fn max_hidden(ctx: &Context, cell: Cell) -> usize {
    max_hidden_of(|s| fits(ctx, cell, s, true).is_ok())
}

/// The largest H (up to 4096) for which `ok` holds at batch 1, no projection.
pub(crate) fn max_hidden_of(ok: impl Fn(&RecShape) -> bool) -> usize {
    let ok = |h: usize| {
        let s = RecShape {
            t: 1,
            b: 1,
            h,
            p: h,
            proj: false,
            dir: 0,
            acts: super::rec::DEFAULT_ACTS,
            rmask: 0,
        };
        ok(&s)
    };
    let mut h = 0;
    while h < 4096 && ok(h + 1) {
        h += 1;
    }
    h
}

fn spec(p: &Plan) -> [(&'static str, u32); 5] {
    [
        ("WG", p.wg),
        ("VB", p.vb),
        ("SB", p.sb),
        ("STAGED", p.staged as u32),
        ("VS", if p.staged { 4 * p.vb } else { 1 }),
    ]
}

/// The kernel of `cell`, one direction or both (`bi`), forward or backward.
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

/// Records all T steps in chunks under the loop budget: forward from step 0 up, backward
/// from T-1 down. `list` holds one direction's buffers, or both (`bi`: twice the
/// workgroups, the first half direction 0).
fn record_chunks(
    rec: &mut Recorder<'_>,
    (cell, backward, bi): (Cell, bool, bool),
    s: &RecShape,
    prm: &mut Params,
    list: &[&wgpu::Buffer],
) -> Result<()> {
    let plan = plan(rec.ctx(), cell, s, backward)?;
    let k = kernel(cell, backward, bi);
    let groups = if bi {
        plan.groups.checked_mul(2).ok_or_else(|| {
            Error::Limit(format!(
                "Resident: 2 x {} workgroups overflow u32",
                plan.groups
            ))
        })?
    } else {
        plan.groups
    };
    prm.b_tile = plan.bt as u32;
    let mut done = 0;
    while done < s.t {
        let n = plan.steps.min(s.t - done);
        prm.s_begin = if backward { s.t - 1 - done } else { done } as u32;
        prm.n_steps = n as u32;
        rec.dispatch_spec(k, &spec(&plan), prm, list, groups)?;
        done += n;
    }
    Ok(())
}

/// Records the forward recurrence over all T steps in chunks.
pub(crate) fn record_forward(
    rec: &mut Recorder<'_>,
    cell: Cell,
    s: &RecShape,
    prm: &mut Params,
    bufs: &FwdBufs<'_>,
) -> Result<()> {
    record_chunks(rec, (cell, false, false), s, prm, &bufs.list())
}

/// Records the backward recurrence over all T steps (T-1 down) in chunks; the caller runs
/// the cell's FINAL pass afterwards. `prm.wt_off` must point at W_hhᵀ.
pub(crate) fn record_backward(
    rec: &mut Recorder<'_>,
    cell: Cell,
    s: &RecShape,
    prm: &mut Params,
    bufs: &BwdBufs<'_>,
) -> Result<()> {
    record_chunks(rec, (cell, true, false), s, prm, &bufs.list())
}

/// Records the forward recurrence of both directions of a layer, one dispatch per chunk
/// (`bufs[d]` of direction d; `prm` is direction 0's block: dir 0, col of direction 0;
/// direction 1 writes P columns further). The caller checked [`bi_ok`].
pub(crate) fn record_forward_bi(
    rec: &mut Recorder<'_>,
    cell: Cell,
    s: &RecShape,
    prm: &mut Params,
    bufs: [&FwdBufs<'_>; 2],
) -> Result<()> {
    let list = FwdBufs::bi_list(bufs, [&[], &[]]);
    prm.dir = 0;
    record_chunks(rec, (cell, false, true), s, prm, &list)
}

/// Records the backward recurrence of both directions of a layer (T-1 down), one dispatch
/// per chunk; the caller runs each direction's FINAL pass afterwards. As
/// [`record_forward_bi`] for `prm` and `bufs`; `prm.wt_off` must point at W_hhᵀ.
pub(crate) fn record_backward_bi(
    rec: &mut Recorder<'_>,
    cell: Cell,
    s: &RecShape,
    prm: &mut Params,
    bufs: [&BwdBufs<'_>; 2],
) -> Result<()> {
    let list = BwdBufs::bi_list(bufs, [&[], &[]]);
    prm.dir = 0;
    record_chunks(rec, (cell, true, true), s, prm, &list)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shader prelude's Params must be the one of rnn_common.wgsl, and the generated
    /// chunk size the one planned with.
    #[test]
    fn prelude_matches_rnn_common_and_chunk() {
        let common = include_str!("../../shaders/rnn_common.wgsl");
        let mine = include_str!("../../shaders/resident_common.wgsl");
        let block = |s: &str| {
            let b = &s[s.find("struct Params {").unwrap()..];
            b[..b.find('}').unwrap()].to_string()
        };
        assert_eq!(block(common), block(mine));
        let regs = include_str!("../../shaders/resident_regs.wgsl");
        assert!(regs.contains(&format!("const CHUNK: u32 = {CHUNK}u;")));
    }

    /// Staging (every backend but Vulkan) keeps a scalar mirror of the vector buffer: the
    /// plan charges its workgroup memory and its copies' loop iterations, sets the pipeline
    /// constants, and otherwise plans the same tile.
    #[test]
    fn staging_is_planned_with_its_memory_and_copies() {
        let ctx = Context::new().expect("a wgpu adapter (lavapipe in CI) is required");
        assert!(!staged(&ctx) || std::env::var("WGPU_RNN_RESIDENT_STORES").is_ok());
        let s = RecShape {
            t: 50,
            b: 3,
            h: 40,
            p: 40,
            proj: false,
            dir: 0,
            acts: super::super::rec::DEFAULT_ACTS,
            rmask: 0,
        };
        for cell in [Cell::Lstm, Cell::Gru { reset_before: true }, Cell::Rnn] {
            for backward in [false, true] {
                let a = plan_with(&ctx, cell, &s, backward, false).unwrap();
                let b = plan_with(&ctx, cell, &s, backward, true).unwrap();
                assert_eq!((a.wg, a.vb, a.bt, a.groups), (b.wg, b.vb, b.bt, b.groups));
                assert_eq!(b.sb, a.sb, "{cell:?} {backward}");
                assert!(b.steps < a.steps, "{cell:?} {backward}: {b:?} vs {a:?}");
                let (sa, sb) = (spec(&a), spec(&b));
                assert_eq!((sa[3].1, sa[4].1), (0, 1));
                assert_eq!((sb[3].1, sb[4].1), (1, 4 * b.vb));
            }
        }
    }

    /// The workgroup memory a pipeline declares (16·VB + 4·SB + 4·VS bytes) stays within the
    /// device's limit, also when a large batch fills a workgroup up to it.
    #[test]
    fn declared_workgroup_memory_fits_the_limit() {
        let ctx = Context::new().expect("a wgpu adapter (lavapipe in CI) is required");
        let limit = ctx.limits.max_compute_workgroup_storage_size as usize;
        for (b, h, proj) in [
            (1, 8, false),
            (4096, 16, false),
            (4096, 64, true),
            (300, 128, false),
        ] {
            let s = RecShape {
                t: 4,
                b,
                h,
                p: if proj { h / 2 } else { h },
                proj,
                dir: 0,
                acts: super::super::rec::DEFAULT_ACTS,
                rmask: 0,
            };
            for cell in [Cell::Lstm, Cell::Gru { reset_before: true }, Cell::Rnn] {
                if proj && cell != Cell::Lstm {
                    continue;
                }
                for backward in [false, true] {
                    for staged in [false, true] {
                        let Ok(p) = plan_with(&ctx, cell, &s, backward, staged) else {
                            continue;
                        };
                        let vs = if staged { 4 * p.vb as usize } else { 1 };
                        let bytes = 16 * p.vb as usize + 4 * p.sb as usize + 4 * vs;
                        assert!(
                            bytes <= limit,
                            "{cell:?} {b} {h} {backward} {staged}: {bytes}"
                        );
                    }
                }
            }
        }
    }

    /// The two-direction kernels (Resident and Grid) are generated from the one-direction
    /// sources: they must be what scripts/gen_bidirectional.py writes from the current sources.
    #[test]
    fn the_generated_bidirectional_shaders_are_up_to_date() {
        let root = env!("CARGO_MANIFEST_DIR");
        let out = std::process::Command::new("python3")
            .arg(format!("{root}/scripts/gen_bidirectional.py"))
            .arg("--stdout")
            .output()
            .expect("python3 runs scripts/gen_bidirectional.py");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let files: Vec<&str> = text.split("==> ").filter(|s| !s.is_empty()).collect();
        assert_eq!(files.len(), 4);
        for f in files {
            let (name, want) = f.split_once('\n').unwrap();
            let have = std::fs::read_to_string(format!("{root}/shaders/{name}")).unwrap();
            assert!(
                want == have,
                "shaders/{name} differs from scripts/gen_bidirectional.py's output: rerun it"
            );
        }
        // One binding per storage buffer the launcher passes (bindings 1..).
        for (src, n) in [
            (
                include_str!("../../shaders/resident_bi_forward.wgsl"),
                BI_FWD.len(),
            ),
            (
                include_str!("../../shaders/resident_bi_backward.wgsl"),
                BI_BWD.len(),
            ),
        ] {
            assert!(src.contains(&format!("@binding({n})")));
            assert!(!src.contains(&format!("@binding({})", n + 1)));
        }
    }
}
