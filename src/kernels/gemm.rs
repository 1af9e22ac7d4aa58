//! Launcher for the GEMM kernels: strided C = alpha·A·B + beta·C (+ bias row), by one of
//! `shaders/gemm_tile.wgsl` (real GPUs: 128×128 / 64×64 register-blocked tiles and split-K,
//! chosen per shape in [`super::gemm_tile::plan`], vec4 global loads per operand where
//! [`super::gemm_tile::loads`] proves them aligned), `shaders/gemm_regblock.wgsl`
//! (barrier-free register blocks, CPU adapters), `shaders/gemm.wgsl` (the earlier 64×64
//! tiled kernel) or `shaders/gemm_plain.wgsl` (textbook 16×16 tiles, benchmark baseline).
//! [`GemmKernel::for_adapter`] picks one per adapter.

use super::gemm_tile::{self, ACT_NONE, Force, Tile};
use super::{Access, KernelDef, Recorder, Shader};
use crate::error::{Error, Result};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k_begin: u32,
    k_end: u32,
    a_off: u32,
    a_rs: u32,
    a_cs: u32,
    b_off: u32,
    b_rs: u32,
    b_cs: u32,
    c_off: u32,
    c_rs: u32,
    bias_off: u32,
    has_bias: u32,
    alpha: f32,
    beta: f32,
}

const fn def(shader: Shader, entry: &'static str, bindings: usize) -> KernelDef {
    const ALL: [Access; 6] = [
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::Read,
        Access::Read,
    ];
    // Bindings 5 and 6 (vec4 views of a and b) exist only in the vec4 register-block entries.
    let storage: &'static [Access] = if bindings == 6 {
        &ALL
    } else {
        ALL.split_at(4).0
    };
    KernelDef {
        shader,
        entry,
        storage,
        params_size: std::mem::size_of::<Params>() as u64,
    }
}
const TILED64: KernelDef = def(Shader::Gemm, "gemm", 4);
const PLAIN16: KernelDef = def(Shader::GemmPlain, "gemm_plain", 4);
const RB_ANY: KernelDef = def(Shader::GemmRbAny, "gemm_rb", 4);
const RB_KK: KernelDef = def(Shader::GemmRbKk, "gemm_rb_kk", 6);
const RB_KN: KernelDef = def(Shader::GemmRbKn, "gemm_rb_kn", 6);
/// C block of one register-block workgroup: 8 invocations × 16 rows, 16 columns.
const RB_ROWS: usize = 128;
const RB_COLS: usize = 16;

/// One GEMM implementation; every one supports everything [`record`] does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GemmKernel {
    /// Textbook 16×16 shared-memory tiles (benchmark baseline only).
    Plain16,
    /// 64×64 shared-memory tiles, 4×4 outputs per invocation: real GPUs.
    Tiled64,
    /// Barrier-free 16×16 register blocks, vec4 loads where the strides allow: CPU adapters.
    RegBlock,
    /// `gemm_tile.wgsl`, its tile and split chosen per shape ([`gemm_tile::plan`]), vec4
    /// loads where aligned ([`gemm_tile::loads`]): GPUs.
    Gpu,
    /// `Gpu` with scalar global loads only (A/B runs of the vec4 loads, tests).
    GpuScalar,
    /// `gemm_tile.wgsl` forced to the 128×128 tile, no split (benchmarks, tests).
    Tile128,
    /// `gemm_tile.wgsl` forced to the 64×64 tile, no split (benchmarks, tests).
    Tile64,
    /// `gemm_tile.wgsl` forced to split K (≥ 2 slices, tile per shape) (benchmarks, tests).
    SplitK,
}

impl GemmKernel {
    /// Every variant (tests run each against the CPU).
    pub(crate) const ALL: [GemmKernel; 8] = [
        GemmKernel::Plain16,
        GemmKernel::Tiled64,
        GemmKernel::RegBlock,
        GemmKernel::Gpu,
        GemmKernel::GpuScalar,
        GemmKernel::Tile128,
        GemmKernel::Tile64,
        GemmKernel::SplitK,
    ];

    /// The one place the production GEMM is chosen, per adapter. CPU adapters get the
    /// register-blocked kernel: on lavapipe (llvmpipe, Mesa 22.3, 2 cores) at the LSTM input
    /// projection (M 800, K 128, N 512) it measured ~7.8× faster than the 64×64 tiled kernel
    /// and ~40× faster than the plain 16×16 one (`wgpu-rnn bench --cells gemm`; BENCHMARKS.md),
    /// because llvmpipe executes each storage/workgroup load as a per-lane loop and each
    /// barrier as a coroutine switch, so loads per multiply-add decide. GPUs keep the tiled
    /// kernel: shared-memory tiles are what they are built for, and a 16×16 register block
    /// per invocation would spill there. GPUs get `Gpu`: `gemm_tile.wgsl` with its tile and
    /// split-K chosen per shape ([`gemm_tile::plan`]; not yet timed on a GPU from this
    /// branch, BENCHMARKS.md). `WGPU_RNN_GEMM=plain16|tiled64|regblock|gpu|gpu_scalar|tile128|
    /// tile64|splitk` overrides the choice (benchmarks, A/B runs).
    pub(crate) fn for_adapter(software: bool) -> Self {
        if let Some(k) = std::env::var(GEMM_ENV)
            .ok()
            .and_then(|v| Self::ALL.into_iter().find(|k| k.short_name() == v))
        {
            return k;
        }
        if software {
            GemmKernel::RegBlock
        } else {
            GemmKernel::Gpu
        }
    }

    /// Benchmark name (the `impl` of bench rows).
    pub(crate) fn name(self) -> &'static str {
        match self {
            GemmKernel::Plain16 => "gemm_plain16",
            GemmKernel::Tiled64 => "gemm_tiled64",
            GemmKernel::RegBlock => "gemm_regblock",
            GemmKernel::Gpu => "gemm_gpu",
            GemmKernel::GpuScalar => "gemm_gpu_scalar",
            GemmKernel::Tile128 => "gemm_tile128",
            GemmKernel::Tile64 => "gemm_tile64",
            GemmKernel::SplitK => "gemm_splitk",
        }
    }

    fn short_name(self) -> &'static str {
        &self.name()[5..]
    }

    /// `gemm_tile.wgsl`'s forcing and whether it may use vec4 loads, for the tile variants;
    /// None for the others.
    fn tile_force(self) -> Option<(Force, bool)> {
        match self {
            GemmKernel::Gpu => Some((Force::Auto, true)),
            GemmKernel::GpuScalar => Some((Force::Auto, false)),
            GemmKernel::Tile128 => Some((Force::Tile(Tile::T128), true)),
            GemmKernel::Tile64 => Some((Force::Tile(Tile::T64), true)),
            GemmKernel::SplitK => Some((Force::SplitK, true)),
            _ => None,
        }
    }

    /// The entry point for these operands and the (rows, cols) of C one workgroup computes
    /// (the kernels with a `gemm.wgsl`-style Params block).
    fn def(
        self,
        a: &Mat<'_>,
        b: &Mat<'_>,
        (n, k): (usize, usize),
    ) -> (&'static KernelDef, usize, usize) {
        match self {
            GemmKernel::Plain16 => (&PLAIN16, 16, 16),
            GemmKernel::RegBlock => {
                let entry = match vec4_layout(a, b, n, k) {
                    Some(Vec4Layout::Kk) => &RB_KK,
                    Some(Vec4Layout::Kn) => &RB_KN,
                    None => &RB_ANY,
                };
                (entry, RB_ROWS, RB_COLS)
            }
            _ => (&TILED64, 64, 64),
        }
    }
}

/// Environment variable overriding the GEMM kernel: plain16, tiled64, regblock, gpu,
/// gpu_scalar, tile128, tile64 or splitk.
pub const GEMM_ENV: &str = "WGPU_RNN_GEMM";

/// How the register-blocked kernel may read its operands as vec4s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vec4Layout {
    /// A and B both contiguous along k.
    Kk,
    /// A contiguous along k, B along n.
    Kn,
}

/// The vec4 layout the operands allow: A contiguous along k and every row start a multiple
/// of 4 elements (16 bytes); B likewise along k, or along n with N % 4 == 0 (so a column
/// group of 4 never straddles N), and K ≥ 4. K chunks start at multiples of 4 (K_CHUNK).
fn vec4_layout(a: &Mat<'_>, b: &Mat<'_>, n: usize, k: usize) -> Option<Vec4Layout> {
    let q = |v: usize| v.is_multiple_of(4);
    // k ≥ 4 also keeps both buffers at least one vec4 long, the smallest binding a vec4
    // array accepts (a K < 4 product would not use the vec4 loop anyway).
    if k < 4 || !(a.cs == 1 && q(a.off) && q(a.rs)) {
        return None;
    }
    if b.rs == 1 && q(b.off) && q(b.cs) {
        Some(Vec4Layout::Kk)
    } else if b.cs == 1 && q(b.off) && q(b.rs) && q(n) {
        Some(Vec4Layout::Kn)
    } else {
        None
    }
}

/// K handled by one dispatch: ~22 loop iterations per 16-wide K tile per invocation keeps
/// an invocation well under the loop budget (DESIGN.md §5); the register-blocked kernel runs
/// one iteration per k (scalar) or per 4 k. A multiple of 4, so vec4 loads stay aligned.
pub(crate) const K_CHUNK: usize = 16_384;

/// A strided read-only matrix operand: element (r, c) at `off + r*rs + c*cs` (in f32s).
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub buf: &'a wgpu::Buffer,
    pub off: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// Row-major with row stride `ld`, starting at element `off`.
    pub fn rows(buf: &'a wgpu::Buffer, off: usize, ld: usize) -> Self {
        Self {
            buf,
            off,
            rs: ld,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with row stride `ld`.
    pub fn rows_t(buf: &'a wgpu::Buffer, off: usize, ld: usize) -> Self {
        Self {
            buf,
            off,
            rs: 1,
            cs: ld,
        }
    }
}

/// The row-major output: element (r, c) at `off + r*rs + c`.
#[derive(Clone, Copy)]
pub(crate) struct Out<'a> {
    pub buf: &'a wgpu::Buffer,
    pub off: usize,
    pub rs: usize,
}

pub(crate) fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Limit(format!("gemm {what} = {v} exceeds u32 indexing")))
}

/// Records C[m×n] = alpha·A[m×k]·B[k×n] + beta·C (+ bias[bias_off..] on every row) with
/// the adapter's GEMM ([`GemmKernel::for_adapter`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    rec: &mut Recorder<'_>,
    mnk: (usize, usize, usize),
    alpha: f32,
    a: Mat<'_>,
    b: Mat<'_>,
    beta: f32,
    c: Out<'_>,
    bias: Option<(&wgpu::Buffer, usize)>,
) -> Result<()> {
    let kernel = rec.ctx().gemm;
    record_with(rec, kernel, mnk, alpha, a, b, beta, c, bias)
}

/// As [`record`], with a chosen kernel (benchmarks and tests).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_with(
    rec: &mut Recorder<'_>,
    kernel: GemmKernel,
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    a: Mat<'_>,
    b: Mat<'_>,
    beta: f32,
    c: Out<'_>,
    bias: Option<(&wgpu::Buffer, usize)>,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    if let Some((force, vec4)) = kernel.tile_force() {
        let mnk = (m, n, k);
        return gemm_tile::record(rec, force, vec4, mnk, alpha, a, b, beta, c, bias, ACT_NONE);
    }
    let (def, tm, tn) = kernel.def(&a, &b, (n, k));
    let groups = u32_of(m.div_ceil(tm) * n.div_ceil(tn), "tile count")?;
    let mut k_begin = 0;
    let mut first = true;
    // k == 0 still runs once so beta/bias are applied (C = beta·C + bias).
    loop {
        let k_end = (k_begin + K_CHUNK).min(k);
        let params = Params {
            m: u32_of(m, "m")?,
            n: u32_of(n, "n")?,
            k_begin: u32_of(k_begin, "k")?,
            k_end: u32_of(k_end, "k")?,
            a_off: u32_of(a.off, "a offset")?,
            a_rs: u32_of(a.rs, "a stride")?,
            a_cs: u32_of(a.cs, "a stride")?,
            b_off: u32_of(b.off, "b offset")?,
            b_rs: u32_of(b.rs, "b stride")?,
            b_cs: u32_of(b.cs, "b stride")?,
            c_off: u32_of(c.off, "c offset")?,
            c_rs: u32_of(c.rs, "c stride")?,
            bias_off: u32_of(bias.map_or(0, |x| x.1), "bias offset")?,
            has_bias: u32::from(first && bias.is_some()),
            alpha,
            beta: if first { beta } else { 1.0 },
        };
        let bias_buf = bias.map_or(a.buf, |x| x.0);
        let bufs = [a.buf, b.buf, bias_buf, c.buf, a.buf, b.buf];
        rec.dispatch(def, &params, &bufs[..def.storage.len()], groups)?;
        first = false;
        k_begin = k_end;
        if k_begin >= k {
            return Ok(());
        }
    }
}

#[cfg(test)]
#[path = "gemm_tests.rs"]
mod tests;
