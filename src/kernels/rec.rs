//! What every recurrent cell's launcher shares: the parameter block of `rnn_common.wgsl`,
//! the binding layout, algorithm resolution against the workgroup pool, and chunking of the
//! time loop under the loop budget.

use super::{Access, KernelDef, Recorder, Shader};
use crate::algorithm::Algorithm;
use crate::context::{Context, LOOP_BUDGET};
use crate::error::{Error, Result};

/// Workgroup size of the persistent kernels (must match the shaders).
pub(crate) const PERSISTENT_WG: usize = 256;
/// Workgroup size of the per-step kernels (must match the shaders).
pub(crate) const STEP_WG: usize = 64;
/// f32 slots of the persistent kernels' workgroup pool (must match the shaders).
pub(crate) const POOL_FLOATS: usize = 4000;

/// Mirrors `Params` in `shaders/rnn_common.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    pub t_len: u32,
    pub batch: u32,
    pub hidden: u32,
    pub out_size: u32,
    pub dir: u32,
    pub s_begin: u32,
    pub n_steps: u32,
    pub slots: u32,
    pub stride: u32,
    pub col: u32,
    pub b_tile: u32,
    pub flags: u32,
    /// Offset in w_rec of the transposed W_hh the forward kernels read.
    pub wt_off: u32,
    /// Grid's slices, units per slice and test hook (`grid_common.wgsl`); unused otherwise.
    pub _pad: [u32; 3],
    /// Activation codes (`activations.wgsl`): candidate/output in bits 0-7, gates in 8-15.
    /// Read by the Persistent and Stepwise kernels (`rnn_common.wgsl`); Resident and Grid
    /// compute tanh/sigmoid and are not chosen for other codes.
    pub acts: u32,
    /// Recurrent dropout: offset (u32 elements) of this layer-direction's masks `[G, B, P]`
    /// in the `lens` buffer, after the lengths; 0 = no mask. Read by the Persistent and
    /// Stepwise kernels (`rnn_common.wgsl`); Resident and Grid are not chosen with masks.
    pub rmask: u32,
    pub _pad2: [u32; 2],
}

/// Activation codes of `activations.wgsl` (and `ActivationCode` of the ConvLSTM launcher).
pub(crate) fn act_code(a: crate::cpu::Activation) -> u32 {
    super::convlstm::activation_code(a)
}

/// The recurrent cells' default activations, packed as in `Params::acts`: tanh candidate,
/// sigmoid gates (PyTorch; Keras' defaults).
pub(crate) const DEFAULT_ACTS: u32 = 2 << 8;

/// Flag bits shared by the cell shaders.
pub(crate) const TRAIN: u32 = 1;
pub(crate) const AUX_PER_T: u32 = 4;
pub(crate) const FINAL: u32 = 8;

const PARAMS: u64 = std::mem::size_of::<Params>() as u64;
/// Forward: gx, w_rec, lens, hseq, cseq, out, aux.
const FWD_BINDINGS: &[Access] = &[
    Access::ReadWrite,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
];
/// Backward: gates, w_rec, lens, seq, dy, dgates, state, aux.
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

/// A forward-family kernel (binding layout of [`FwdBufs`]).
pub(crate) const fn fwd(shader: Shader, entry: &'static str) -> KernelDef {
    KernelDef {
        shader,
        entry,
        storage: FWD_BINDINGS,
        params_size: PARAMS,
    }
}

/// A backward-family kernel (binding layout of [`BwdBufs`]).
pub(crate) const fn bwd(shader: Shader, entry: &'static str) -> KernelDef {
    KernelDef {
        shader,
        entry,
        storage: BWD_BINDINGS,
        params_size: PARAMS,
    }
}

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
    /// Activation codes packed as in `Params::acts` ([`DEFAULT_ACTS`] for tanh/sigmoid).
    pub acts: u32,
    /// Recurrent-dropout mask offset in `lens` (`Params::rmask`; 0 = none).
    pub rmask: u32,
}

/// Workgroup-pool floats one batch row needs in each persistent kernel, with the formula
/// the error message shows.
pub(crate) struct PoolNeed {
    pub forward: usize,
    pub backward: usize,
    pub forward_formula: &'static str,
    pub backward_formula: &'static str,
    /// The cell, for the Resident plan (kernels::resident).
    pub cell: super::resident::Cell,
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
/// the limit when it cannot), else `table`'s (the context's measured Auto table, taken once
/// per call by the caller), else the heuristic. `train` also requires the backward tile.
pub(crate) fn resolve(
    ctx: &Context,
    (algo, table): (Algorithm, Option<&crate::auto_table::AutoTable>),
    s: &RecShape,
    train: bool,
    need: &PoolNeed,
) -> Result<Algorithm> {
    let fits = || -> Result<()> {
        persistent_device_ok(ctx)?;
        if need.forward > POOL_FLOATS {
            return Err(Error::Limit(format!(
                "Persistent forward keeps a batch row's state in workgroup memory: it needs {} \
                 = {} floats of workgroup memory (hidden_size {}), the limit is {POOL_FLOATS}; \
                 use Algorithm::Stepwise",
                need.forward_formula, need.forward, s.h
            )));
        }
        if train && need.backward > POOL_FLOATS {
            return Err(Error::Limit(format!(
                "Persistent backward needs {} = {} floats of workgroup memory (hidden_size {}), \
                 the limit is {POOL_FLOATS}; use Algorithm::Stepwise",
                need.backward_formula, need.backward, s.h
            )));
        }
        Ok(())
    };
    // Resident and Grid compute tanh/sigmoid cells only (their generated register code)
    // and apply no recurrent-dropout masks.
    let plain = s.acts == DEFAULT_ACTS && s.rmask == 0;
    let acts_ok = |name: &str| -> Result<()> {
        if s.rmask != 0 {
            return Err(Error::Unsupported(format!(
                "{name} applies no recurrent_dropout masks; training with recurrent_dropout \
                 runs with Algorithm::Persistent or Stepwise (Auto picks one)"
            )));
        }
        if s.acts == DEFAULT_ACTS {
            return Ok(());
        }
        Err(Error::Unsupported(format!(
            "{name} computes tanh/sigmoid cells; this layer's activations (codes {:#x}) run \
             with Algorithm::Persistent or Stepwise",
            s.acts
        )))
    };
    match algo {
        Algorithm::Persistent => fits().map(|_| Algorithm::Persistent),
        Algorithm::Stepwise => Ok(Algorithm::Stepwise),
        Algorithm::Resident => {
            acts_ok("Algorithm::Resident")?;
            super::resident::fits(ctx, need.cell, s, train).map(|_| Algorithm::Resident)
        }
        Algorithm::Grid => {
            acts_ok("Algorithm::Grid")?;
            super::grid::fits(ctx, need.cell, s, train).map(|_| Algorithm::Grid)
        }
        // Measured (BENCHMARKS.md, H100 Vulkan, T=100, LSTM/GRU/RNN alike): Persistent wins
        // only while the whole problem is small enough that one launch per step dominates:
        // B1 H64 0.58 vs 1.58 ms, B8 H128 2.75 vs 2.90, B1 H256 5.15 vs 5.45, B1 T1000 H64
        // 5.6 vs 15.6. Once B·H grows, its few workgroups lose to Stepwise's spread: B8 H256
        // 10.4 vs 5.7, B64 H128 13.5 vs 3.1, B64 H256 26 vs 6.1. Hence B·H <= 1024.
        // On software adapters (lavapipe, 2 cores) Stepwise measured 2-3x faster than
        // Persistent at every shape tried (B1-8, H64-128), so they get Stepwise unless
        // Resident applies (below).
        // Tiled is ConvLSTM2D's kernel: the recurrent cells take their Auto choice.
        Algorithm::Auto | Algorithm::Tiled => {
            // A table measured on this adapter (crate::auto_table) decides first: its
            // nearest entry's algorithms, fastest first, the first one this layer can run.
            if let Some(table) = table {
                let name = match need.cell {
                    super::resident::Cell::Lstm => "lstm",
                    super::resident::Cell::Gru { .. } => "gru",
                    super::resident::Cell::Rnn => "rnn",
                };
                for a in table.ranked(name, train, (s.b, s.t, s.h)) {
                    if let Ok(a) = resolve(ctx, (a, None), s, train, need) {
                        return Ok(a);
                    }
                }
            }
            let resident = if !plain {
                false
            } else if ctx.software {
                super::resident::fits(ctx, need.cell, s, train).is_ok()
                    && need.cell.gates() * s.h * s.b <= 512
            } else {
                super::resident::auto_ok(ctx, need.cell, s, train)
            };
            Ok(if resident {
                // GPUs (unmeasured, by DESIGN.md §8's floors): W_hh read once per
                // sequence instead of once per step, one dispatch per chunk of steps, and
                // up to 64 workgroups, so Resident wherever it fits in workgroups of
                // ≤ 512 invocations (resident::auto_ok: register file). Software adapters
                // (lavapipe, 2 cores, BENCHMARKS.md): Resident won only while gates·H·B
                // ≤ 512 (B1 H32 GRU/RNN, RNN B8 H64); every invocation of a workgroup
                // crosses each barrier, which llvmpipe pays as a coroutine switch.
                Algorithm::Resident
            } else if !ctx.software && plain && super::grid::fits(ctx, need.cell, s, train).is_ok()
            {
                // GPUs, past Resident's reach (unmeasured, DESIGN.md §8): a grid barrier
                // (~1.6 µs measured on an H200) instead of a dispatch per step, W_hh rows
                // in registers across up to 64 workgroups. Software adapters never: their
                // workgroups are not co-resident, so the fallback would run every time.
                Algorithm::Grid
            } else if !ctx.software && s.b * s.h <= 1024 && fits().is_ok() {
                Algorithm::Persistent
            } else {
                Algorithm::Stepwise
            })
        }
    }
}

pub(crate) fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Limit(format!("{what} = {v} exceeds u32 indexing")))
}

/// The parameter block with everything but the per-dispatch fields.
pub(crate) fn base_params(
    s: &RecShape,
    slots: usize,
    (stride, col): (usize, usize),
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
        wt_off: 0,
        _pad: [0; 3],
        acts: s.acts,
        rmask: s.rmask,
        _pad2: [0; 2],
    })
}

/// Checks a per-step kernel's loop count against the budget.
pub(crate) fn check_step_budget(per_step: usize, what: &str) -> Result<()> {
    if per_step > LOOP_BUDGET as usize {
        return Err(Error::Limit(format!(
            "{what}: {per_step} loop iterations per invocation exceed the budget {LOOP_BUDGET}"
        )));
    }
    Ok(())
}

/// Workgroups per step kernel over `n` invocations.
pub(crate) fn step_groups(n: usize) -> Result<u32> {
    u32_of(n.div_ceil(STEP_WG), "workgroups")
}

/// How a persistent kernel is laid out: batch rows per workgroup, workgroups, and steps per
/// dispatch so one invocation stays under the loop budget. `per_step(bt)` and `load(bt)` are
/// the loop iterations of one invocation per step and for loading/storing state.
pub(crate) fn persistent_plan(
    b: usize,
    floats_per_row: usize,
    per_step: impl Fn(usize) -> usize,
    load: impl Fn(usize) -> usize,
) -> Result<(usize, u32, usize)> {
    let cap = (POOL_FLOATS / floats_per_row.max(1)).max(1);
    // Several workgroups even for small batches, so more than one core/SM works.
    let bt = cap.min(b.div_ceil(4)).max(1);
    let groups = u32_of(b.div_ceil(bt), "workgroups")?;
    let (step, fixed) = (per_step(bt), load(bt));
    let budget = LOOP_BUDGET as usize;
    if fixed + step > budget {
        return Err(Error::Limit(format!(
            "one recurrent step needs {step} loop iterations per invocation; the budget is {budget}"
        )));
    }
    Ok((bt, groups, ((budget - fixed) / step).max(1)))
}

/// Loop iterations of a 256-wide loop over `n` items.
pub(crate) fn per_inv(n: usize) -> usize {
    n.div_ceil(PERSISTENT_WG)
}

/// Records a persistent forward over all T steps in chunks of `n` steps.
pub(crate) fn forward_chunks(
    rec: &mut Recorder<'_>,
    k: &KernelDef,
    prm: &mut Params,
    bufs: &[&wgpu::Buffer],
    (bt, groups, n): (usize, u32, usize),
    t: usize,
) -> Result<()> {
    prm.b_tile = bt as u32;
    let mut s0 = 0;
    while s0 < t {
        let k_steps = n.min(t - s0);
        prm.s_begin = s0 as u32;
        prm.n_steps = k_steps as u32;
        rec.dispatch(k, prm, bufs, groups)?;
        s0 += k_steps;
    }
    Ok(())
}

/// Records a persistent backward over all T steps (from T-1 down) in chunks of `n` steps.
pub(crate) fn backward_chunks(
    rec: &mut Recorder<'_>,
    k: &KernelDef,
    prm: &mut Params,
    bufs: &[&wgpu::Buffer],
    (bt, groups, n): (usize, u32, usize),
    t: usize,
) -> Result<()> {
    prm.b_tile = bt as u32;
    let mut done = 0;
    while done < t {
        let k_steps = n.min(t - done);
        prm.s_begin = (t - 1 - done) as u32;
        prm.n_steps = k_steps as u32;
        rec.dispatch(k, prm, bufs, groups)?;
        done += k_steps;
    }
    Ok(())
}

/// Records a cell's FINAL pass (dh0, after the reversed loop): `k` over `groups` with the
/// backward block `prm` flagged FINAL at step 0.
pub(crate) fn record_final(
    rec: &mut Recorder<'_>,
    k: &KernelDef,
    mut prm: Params,
    bufs: &BwdBufs<'_>,
    groups: u32,
) -> Result<()> {
    prm.flags |= FINAL;
    prm.s_begin = 0;
    rec.dispatch(k, &prm, &bufs.list(), groups)
}

/// Buffers of one layer-direction's forward recurrence (bindings 1..7 in this order).
pub(crate) struct FwdBufs<'a> {
    pub gx: &'a wgpu::Buffer,
    pub w_rec: &'a wgpu::Buffer,
    pub lens: &'a wgpu::Buffer,
    pub hseq: &'a wgpu::Buffer,
    pub cseq: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
    pub aux: &'a wgpu::Buffer,
}

impl<'a> FwdBufs<'a> {
    pub fn list(&self) -> [&'a wgpu::Buffer; 7] {
        [
            self.gx, self.w_rec, self.lens, self.hseq, self.cseq, self.out, self.aux,
        ]
    }

    /// The bindings of a two-direction kernel (scripts/gen_bidirectional.py): direction 0's
    /// list and its `extra` buffers, then direction 1's own gx, w_rec, hseq, cseq, aux and
    /// its extras (lens and out are shared).
    pub fn bi_list(dirs: [&Self; 2], extra: [&[&'a wgpu::Buffer]; 2]) -> Vec<&'a wgpu::Buffer> {
        let (a, b) = (dirs[0].list(), dirs[1].list());
        let mut v = a.to_vec();
        v.extend(extra[0]);
        v.extend([b[0], b[1], b[3], b[4], b[6]]);
        v.extend(extra[1]);
        v
    }
}

/// Buffers of one layer-direction's backward recurrence (bindings 1..8 in this order).
pub(crate) struct BwdBufs<'a> {
    pub gates: &'a wgpu::Buffer,
    pub w_rec: &'a wgpu::Buffer,
    pub lens: &'a wgpu::Buffer,
    /// The state ring the cell needs: c for the LSTM, h for GRU and RNN.
    pub seq: &'a wgpu::Buffer,
    pub dy: &'a wgpu::Buffer,
    pub dgates: &'a wgpu::Buffer,
    pub state: &'a wgpu::Buffer,
    pub aux: &'a wgpu::Buffer,
}

impl<'a> BwdBufs<'a> {
    pub fn list(&self) -> [&'a wgpu::Buffer; 8] {
        [
            self.gates,
            self.w_rec,
            self.lens,
            self.seq,
            self.dy,
            self.dgates,
            self.state,
            self.aux,
        ]
    }

    /// As [`FwdBufs::bi_list`]: direction 0's list and extras, then direction 1's own
    /// gates, w_rec, seq, dgates, state, aux and extras (lens and dy are shared).
    pub fn bi_list(dirs: [&Self; 2], extra: [&[&'a wgpu::Buffer]; 2]) -> Vec<&'a wgpu::Buffer> {
        let (a, b) = (dirs[0].list(), dirs[1].list());
        let mut v = a.to_vec();
        v.extend(extra[0]);
        v.extend([b[0], b[1], b[3], b[5], b[6], b[7]]);
        v.extend(extra[1]);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Rust mirror of `rnn_common.wgsl` must agree with it: pool size, workgroup size and
    /// the parameter block (16 u32 fields).
    #[test]
    fn constants_match_the_shader_prelude() {
        let src = include_str!("../../shaders/rnn_common.wgsl");
        assert!(src.contains(&format!("const POOL: u32 = {POOL_FLOATS}u;")));
        assert!(src.contains(&format!("const WG: u32 = {PERSISTENT_WG}u;")));
        let body = &src[src.find("struct Params {").unwrap()..];
        let body = &body[..body.find('}').unwrap()];
        assert_eq!(
            body.matches(": u32").count() * 4,
            std::mem::size_of::<Params>()
        );
        for f in ["lstm_forward.wgsl", "gru_forward.wgsl", "rnn_forward.wgsl"] {
            let s = std::fs::read_to_string(format!("{}/shaders/{f}", env!("CARGO_MANIFEST_DIR")))
                .unwrap();
            assert!(
                s.contains(&format!("workgroup_size({STEP_WG}, 1, 1)")),
                "{f}"
            );
        }
    }
}
