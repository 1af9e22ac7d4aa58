//! The tiled Stepwise step for large B·H (`shaders/step_tiled_{forward,backward}.wgsl` and
//! the per-cell entry files `{lstm,gru,rnn}_tiled_{forward,backward}.wgsl`): one workgroup
//! computes a 32-unit × 32-batch-row tile of one step with the W_hh tile and the h (backward:
//! dG) tile staged in workgroup memory, every gate of a unit in one invocation, 4 batch rows
//! per invocation. Same bindings and parameter block as the untiled step kernels, so the
//! cell launchers only swap the entry point and the workgroup count ([`forward`],
//! [`backward`]).
//!
//! When it runs (the rule, [`wanted`]): on GPU adapters when B ≥ 32 and B·H ≥ 16384, i.e.
//! when the batch fills the 32-row tile and there are at least 16 tiles of 32×32 (unmeasured:
//! chosen from DESIGN.md §8 — the untiled step reads W_hh once per (b, j) invocation and
//! measured 0.56 TFLOP/s at B64 H256 on an H200; the tile reads it once per 32 rows). Never
//! on CPU adapters by default: there every barrier is a coroutine switch and the untiled
//! `step_b4` already feeds 4 rows per weight load (BENCHMARKS.md). `WGPU_RNN_STEP=tiled`
//! forces it (and `b1`/`b4` force the untiled kernels) on any adapter; tests force it per
//! thread with [`force`]. Cases the tiled kernels do not cover ([`supported`]: GRU
//! reset-before, the LSTM backward with projection) keep the untiled step.

use std::cell::Cell as StdCell;

use super::Shader::{
    GruTiledBackward, GruTiledForward, LstmTiledBackward, LstmTiledForward, RnnTiledBackward,
    RnnTiledForward,
};
use super::rec::{RecShape, bwd, check_step_budget, fwd, u32_of};
use super::{KernelDef, Recorder};
use crate::error::{Error, Result};

const LSTM_FWD: KernelDef = fwd(LstmTiledForward, "step_tiled");
const GRU_FWD: KernelDef = fwd(GruTiledForward, "step_tiled");
const RNN_FWD: KernelDef = fwd(RnnTiledForward, "step_tiled");
const LSTM_BWD: KernelDef = bwd(LstmTiledBackward, "fused_tiled");
const GRU_BWD: KernelDef = bwd(GruTiledBackward, "fused_tiled");
const RNN_BWD: KernelDef = bwd(RnnTiledBackward, "fused_tiled");

/// Units and batch rows of one workgroup's tile (must match the shaders).
pub(crate) const TILE_UNITS: usize = 32;
pub(crate) const TILE_ROWS: usize = 32;
/// The rule's thresholds (see the module doc).
pub(crate) const MIN_BATCH: usize = 32;
pub(crate) const MIN_BH: usize = 16_384;

/// Environment variable choosing the Stepwise step kernel: `tiled`, `b1` or `b4`.
pub const STEP_ENV: &str = "WGPU_RNN_STEP";

/// The recurrent cell a tiled step is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TiledCell {
    Lstm,
    Gru { reset_before: bool },
    Rnn,
}

thread_local! {
    static FORCE: StdCell<Option<bool>> = const { StdCell::new(None) };
    /// Tiled step recordings made on this thread (tests check the kernel really ran).
    static USED: StdCell<usize> = const { StdCell::new(0) };
}

/// How many recurrences this thread has recorded with the tiled step.
#[cfg(test)]
pub(crate) fn used() -> usize {
    USED.with(StdCell::get)
}

fn chosen(def: &'static KernelDef, s: &RecShape) -> Result<Option<(&'static KernelDef, u32)>> {
    let g = groups(s)?;
    USED.with(|u| u.set(u.get() + 1));
    Ok(Some((def, g)))
}

/// Forces the tiled step on (`Some(true)`) or off (`Some(false)`) for recordings made on this
/// thread, or restores the rule (`None`). For tests: a per-thread switch cannot leak into
/// other tests running in parallel.
#[cfg(test)]
pub(crate) fn force(v: Option<bool>) {
    FORCE.with(|f| f.set(v));
}

/// Whether the rule (or a forcing) asks for the tiled step at this shape.
pub(crate) fn wanted(rec: &Recorder<'_>, s: &RecShape) -> bool {
    let env = std::env::var(STEP_ENV).ok();
    rule(
        FORCE.with(StdCell::get),
        env.as_deref(),
        rec.ctx().software,
        s,
    )
}

/// The rule: a per-thread forcing, else `WGPU_RNN_STEP`, else GPU adapters with B ≥ 32 and
/// B·H ≥ 16384.
fn rule(force: Option<bool>, env: Option<&str>, software: bool, s: &RecShape) -> bool {
    if let Some(v) = force {
        return v;
    }
    match env {
        Some("tiled") => true,
        Some("b1") | Some("b4") => false,
        _ => !software && s.b >= MIN_BATCH && s.b * s.h >= MIN_BH,
    }
}

/// Whether the tiled kernels cover this cell and shape; the error names what they lack.
pub(crate) fn supported(cell: TiledCell, s: &RecShape, backward: bool) -> Result<()> {
    if cell == (TiledCell::Gru { reset_before: true }) {
        return Err(Error::Unsupported(
            "the tiled Stepwise step computes reset-after GRUs; reset_before=False keeps the \
             untiled two-phase step"
                .into(),
        ));
    }
    if s.rmask != 0 {
        return Err(Error::Unsupported(
            "the tiled Stepwise step has no recurrent_dropout masks: masked training keeps the \
             untiled step"
                .into(),
        ));
    }
    if backward && s.proj {
        return Err(Error::Unsupported(
            "the tiled Stepwise backward has no projection (proj_size > 0): it keeps the \
             untiled recur/gates steps"
                .into(),
        ));
    }
    Ok(())
}

fn groups(s: &RecShape) -> Result<u32> {
    u32_of(
        s.h.div_ceil(TILE_UNITS) * s.b.div_ceil(TILE_ROWS),
        "tiled step workgroups",
    )
}

/// The forward step kernel and its workgroup count when the tiled step is wanted and
/// supported; `None` keeps the caller's untiled kernel.
pub(crate) fn forward(
    rec: &Recorder<'_>,
    cell: TiledCell,
    s: &RecShape,
) -> Result<Option<(&'static KernelDef, u32)>> {
    if !wanted(rec, s) || supported(cell, s, false).is_err() {
        return Ok(None);
    }
    check_step_budget(s.p.div_ceil(16) * 19, "tiled Stepwise forward")?;
    let def = match cell {
        TiledCell::Lstm => &LSTM_FWD,
        TiledCell::Gru { .. } => &GRU_FWD,
        TiledCell::Rnn => &RNN_FWD,
    };
    chosen(def, s)
}

/// As [`forward`] for the reversed step (the one-dispatch `fused` step of each cell).
pub(crate) fn backward(
    rec: &Recorder<'_>,
    cell: TiledCell,
    s: &RecShape,
) -> Result<Option<(&'static KernelDef, u32)>> {
    if !wanted(rec, s) || supported(cell, s, true).is_err() {
        return Ok(None);
    }
    let (def, k) = match cell {
        TiledCell::Lstm => (&LSTM_BWD, 4 * s.h),
        TiledCell::Gru { .. } => (&GRU_BWD, 3 * s.h),
        TiledCell::Rnn => (&RNN_BWD, s.h),
    };
    check_step_budget(k.div_ceil(32) * 38, "tiled Stepwise backward")?;
    chosen(def, s)
}

#[cfg(test)]
#[path = "step_tiled_tests.rs"]
mod tests;
