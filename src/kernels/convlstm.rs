//! Launchers for `shaders/convlstm_forward.wgsl` and `shaders/convlstm_backward.wgsl`: the
//! ConvLSTM2D time loop (recurrent convolution fused with the gates), on the device.

use super::{Access, KernelDef, Recorder, Shader};
use crate::algorithm::Algorithm;
use crate::context::{Context, LOOP_BUDGET};
use crate::cpu::convlstm::Activation;
use crate::error::{Error, Result};
use crate::kernels::rec::{PERSISTENT_WG, POOL_FLOATS, step_groups, u32_of};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct CellParams {
    t_len: u32,
    batch: u32,
    rows: u32,
    cols: u32,
    filters: u32,
    kh: u32,
    kw: u32,
    s_begin: u32,
    n_steps: u32,
    slots: u32,
    act: u32,
    ract: u32,
    flags: u32,
    _pad: [u32; 3],
}

const TRAIN: u32 = 1;
const PARAMS: u64 = std::mem::size_of::<CellParams>() as u64;
const FWD: &[Access] = &[
    Access::ReadWrite,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
];
const BWD: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
];

const fn def(shader: Shader, entry: &'static str, storage: &'static [Access]) -> KernelDef {
    KernelDef {
        shader,
        entry,
        storage,
        params_size: PARAMS,
    }
}
const FWD_STEP: KernelDef = def(Shader::ConvLstmForward, "step", FWD);
const FWD_PERSISTENT: KernelDef = def(Shader::ConvLstmForward, "persistent", FWD);
const BWD_FUSED: KernelDef = def(Shader::ConvLstmBackward, "fused", BWD);
const BWD_RECUR: KernelDef = def(Shader::ConvLstmBackward, "recur", BWD);

/// The activation codes of `shaders/activations.wgsl`.
pub(crate) fn activation_code(a: Activation) -> u32 {
    match a {
        Activation::Tanh => 0,
        Activation::Relu => 1,
        Activation::Sigmoid => 2,
        Activation::HardSigmoid => 3,
        Activation::Linear => 4,
    }
}

/// Sizes of the recurrence: batch, steps, output frame, filters, recurrent kernel, activations.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CellShape {
    pub b: usize,
    pub t: usize,
    pub rows: usize,
    pub cols: usize,
    pub filters: usize,
    pub kernel: (usize, usize),
    pub activation: Activation,
    pub recurrent_activation: Activation,
}

impl CellShape {
    fn frame(&self) -> usize {
        self.rows * self.cols * self.filters
    }

    fn params(&self, slots: usize, flags: u32) -> Result<CellParams> {
        Ok(CellParams {
            t_len: u32_of(self.t, "seq_len")?,
            batch: u32_of(self.b, "batch")?,
            rows: u32_of(self.rows, "rows")?,
            cols: u32_of(self.cols, "cols")?,
            filters: u32_of(self.filters, "filters")?,
            kh: u32_of(self.kernel.0, "kernel")?,
            kw: u32_of(self.kernel.1, "kernel")?,
            s_begin: 0,
            n_steps: 1,
            slots: u32_of(slots, "state slots")?,
            act: activation_code(self.activation),
            ract: activation_code(self.recurrent_activation),
            flags,
            _pad: [0; 3],
        })
    }

    /// Loop iterations of one invocation's recurrent convolution at one pixel.
    fn taps(&self) -> usize {
        self.kernel.0 * (1 + self.kernel.1 * (1 + self.filters))
    }
}

/// The environment variable that forces the ConvLSTM2D algorithm wherever a layer asks for
/// [`Algorithm::Auto`] (`auto`, `persistent`, `stepwise` or `tiled`), so benches, examples
/// and tests can exercise each variant without code changes.
pub(crate) const ALGORITHM_ENV: &str = "WGPU_RNN_CONVLSTM_ALGORITHM";

/// Filters from which Auto takes Tiled on software adapters (see [`resolve`]).
const SOFTWARE_TILED_MIN_FILTERS: usize = 16;

/// The algorithm [`ALGORITHM_ENV`]'s value forces (unset or empty: Auto); any other name than
/// ConvLSTM2D's algorithms is an `Error::Config` naming the variable.
fn forced(value: Option<&str>) -> Result<Algorithm> {
    match value.map(str::trim) {
        None | Some("") => Ok(Algorithm::Auto),
        Some(v) => match v.parse::<Algorithm>() {
            Ok(
                a @ (Algorithm::Auto
                | Algorithm::Persistent
                | Algorithm::Stepwise
                | Algorithm::Tiled),
            ) => Ok(a),
            _ => Err(Error::Config(format!(
                "{ALGORITHM_ENV}={v:?}: expected auto, persistent, stepwise or tiled"
            ))),
        },
    }
}

/// The caller's algorithm when it can run (else an error naming the limit), or the heuristic.
/// Persistent holds one sequence's h frame twice in the workgroup pool (its backward runs
/// Stepwise); Tiled needs its tile limits (`convlstm_tiled::fits`: kernel width ≤ 8, halo).
///
/// Auto (after [`ALGORITHM_ENV`]): Tiled wherever it fits (software adapters: from 16
/// filters), else Persistent on GPUs when the batch alone fills the device and the frame
/// fits, else Stepwise. GPUs unmeasured, by DESIGN.md §8: the recurrent conv is an implicit
/// GEMM of M = B·Ho·Wo, N = 4F, K = kh·kw·F that needs tiles and on-chip reuse; software
/// adapters by measurement (BENCHMARKS.md, "ConvLSTM2D variants").
pub(crate) fn resolve(ctx: &Context, algo: Algorithm, s: &CellShape) -> Result<Algorithm> {
    let need = 2 * s.frame();
    let fits = || -> Result<()> {
        let l = &ctx.limits;
        if (l.max_compute_workgroup_storage_size as usize) < POOL_FLOATS * 4
            || (l.max_compute_invocations_per_workgroup as usize) < PERSISTENT_WG
        {
            return Err(Error::Limit(format!(
                "Persistent needs {} bytes of workgroup memory and {PERSISTENT_WG} invocations",
                POOL_FLOATS * 4
            )));
        }
        if need > POOL_FLOATS {
            return Err(Error::Limit(format!(
                "Persistent ConvLSTM2D keeps a sequence's h frame twice in workgroup memory: \
                 it needs 2*rows*cols*filters = 2*{}*{}*{} = {need} floats of workgroup memory, \
                 the limit is {POOL_FLOATS}; use Algorithm::Stepwise",
                s.rows, s.cols, s.filters
            )));
        }
        Ok(())
    };
    let algo = match algo {
        Algorithm::Auto => forced(std::env::var(ALGORITHM_ENV).ok().as_deref())?,
        other => other,
    };
    match algo {
        Algorithm::Persistent => fits().map(|_| Algorithm::Persistent),
        Algorithm::Stepwise => Ok(Algorithm::Stepwise),
        Algorithm::Tiled => super::convlstm_tiled::fits(ctx, s).map(|_| Algorithm::Tiled),
        // ConvLSTM2D has no Resident or Grid kernel (its recurrent weights are a convolution, not a
        // matrix a workgroup can hold): a Resident or Grid request runs the Auto choice below.
        Algorithm::Auto | Algorithm::Resident | Algorithm::Grid => {
            // Software adapters: Tiled measured faster at F = 16 (B2 T10 32×32, fwd+bwd 1151
            // vs 1419 ms) and a little slower at F = 8 (the next-frame example's --quick, 16×16:
            // 2.1–2.3 vs 2.3–2.5 sequences/s), so there it needs F ≥ 16.
            let tiled_pays = !ctx.software || s.filters >= SOFTWARE_TILED_MIN_FILTERS;
            Ok(
                if tiled_pays && super::convlstm_tiled::fits(ctx, s).is_ok() {
                    Algorithm::Tiled
                } else if !ctx.software && s.b >= 32 && fits().is_ok() {
                    Algorithm::Persistent
                } else {
                    Algorithm::Stepwise
                },
            )
        }
    }
}

/// The backward loop's algorithm for a forward that resolved to `forward`: the tiled
/// reversed step after a Tiled forward (on llvmpipe too: BENCHMARKS.md, "ConvLSTM2D
/// variants", B2 T10 32×32×1 F16, backward loop ≈ 0.28 s tiled vs ≈ 0.52 s Stepwise),
/// Stepwise after the others (Persistent has no backward kernel of its own).
pub(crate) fn backward_algorithm(forward: Algorithm) -> Algorithm {
    if forward == Algorithm::Tiled {
        Algorithm::Tiled
    } else {
        Algorithm::Stepwise
    }
}

/// Buffers of the forward loop (bindings 1..5).
pub(crate) struct FwdBufs<'a> {
    pub zx: &'a wgpu::Buffer,
    pub rk: &'a wgpu::Buffer,
    pub hseq: &'a wgpu::Buffer,
    pub cseq: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
}

/// Records the forward loop; `slots` = T+1 when training, 2 otherwise.
pub(crate) fn record_forward(
    rec: &mut Recorder<'_>,
    s: &CellShape,
    algo: Algorithm,
    train: bool,
    slots: usize,
    b: &FwdBufs<'_>,
) -> Result<()> {
    if algo == Algorithm::Tiled {
        return super::convlstm_tiled::record_forward(rec, s, train, slots, b);
    }
    let mut prm = s.params(slots, if train { TRAIN } else { 0 })?;
    let list = [b.zx, b.rk, b.hseq, b.cseq, b.out];
    if s.taps() > LOOP_BUDGET as usize {
        return Err(Error::Limit(format!(
            "ConvLSTM2D step: {} loop iterations per invocation exceed {LOOP_BUDGET}",
            s.taps()
        )));
    }
    if algo == Algorithm::Persistent {
        let per = s.frame().div_ceil(PERSISTENT_WG);
        let per_step = per * (s.taps() + 8) + per + 4;
        let n = ((LOOP_BUDGET as usize).saturating_sub(per + 4) / per_step).max(1);
        let groups = u32_of(s.b, "workgroups")?;
        let mut s0 = 0;
        while s0 < s.t {
            let k = n.min(s.t - s0);
            prm.s_begin = s0 as u32;
            prm.n_steps = k as u32;
            rec.dispatch(&FWD_PERSISTENT, &prm, &list, groups)?;
            s0 += k;
        }
        return Ok(());
    }
    let groups = step_groups(s.b * s.frame())?;
    for t in 0..s.t {
        prm.s_begin = t as u32;
        rec.dispatch(&FWD_STEP, &prm, &list, groups)?;
    }
    Ok(())
}

/// Buffers of the backward loop (bindings 1..6).
pub(crate) struct BwdBufs<'a> {
    pub gates: &'a wgpu::Buffer,
    pub rk: &'a wgpu::Buffer,
    pub cseq: &'a wgpu::Buffer,
    pub dy: &'a wgpu::Buffer,
    pub dgates: &'a wgpu::Buffer,
    pub state: &'a wgpu::Buffer,
}

/// Records the reversed loop (one fused dispatch per step) and the dh0 pass. `state` holds
/// dy_h_n then dy_c_n and ends as dh0 then dc0. `algo` is the forward's resolved algorithm:
/// Tiled runs the tiled reversed step, the others the Stepwise one.
pub(crate) fn record_backward(
    rec: &mut Recorder<'_>,
    s: &CellShape,
    algo: Algorithm,
    b: &BwdBufs<'_>,
) -> Result<()> {
    if algo == Algorithm::Tiled {
        return super::convlstm_tiled::record_backward(rec, s, b);
    }
    let mut prm = s.params(s.t + 1, 0)?;
    let list = [b.gates, b.rk, b.cseq, b.dy, b.dgates, b.state];
    let per = s.kernel.0 * (1 + s.kernel.1 * (1 + 4 * s.filters));
    if per > LOOP_BUDGET as usize {
        return Err(Error::Limit(format!(
            "ConvLSTM2D backward step: {per} loop iterations per invocation exceed {LOOP_BUDGET}"
        )));
    }
    let groups = step_groups(s.b * s.frame())?;
    for t in (0..s.t).rev() {
        prm.s_begin = t as u32;
        rec.dispatch(&BWD_FUSED, &prm, &list, groups)?;
    }
    prm.s_begin = 0;
    rec.dispatch(&BWD_RECUR, &prm, &list, groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_forces_only_convlstm_algorithms() {
        assert_eq!(forced(None).unwrap(), Algorithm::Auto);
        assert_eq!(forced(Some(" ")).unwrap(), Algorithm::Auto);
        assert_eq!(forced(Some("tiled")).unwrap(), Algorithm::Tiled);
        assert_eq!(forced(Some("stepwise")).unwrap(), Algorithm::Stepwise);
        assert_eq!(forced(Some("persistent")).unwrap(), Algorithm::Persistent);
        for bad in ["grid", "resident", "fast"] {
            let e = forced(Some(bad)).unwrap_err().to_string();
            assert!(e.contains(ALGORITHM_ENV) && e.contains(bad), "{e}");
        }
    }

    /// A Tiled forward keeps a tiled backward; the other forwards run Stepwise backward.
    #[test]
    fn the_backward_follows_the_forward() {
        assert_eq!(backward_algorithm(Algorithm::Tiled), Algorithm::Tiled);
        for fwd in [Algorithm::Stepwise, Algorithm::Persistent] {
            assert_eq!(backward_algorithm(fwd), Algorithm::Stepwise);
        }
    }
}
