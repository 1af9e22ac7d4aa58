//! Launchers of ConvLSTM2D's [`Algorithm::Tiled`](crate::Algorithm::Tiled) kernels:
//! `shaders/convlstm_tile.wgsl` (the tiled implicit-GEMM core), `convlstm_tiled_forward.wgsl`
//! (a step fused with the cell update), `convlstm_tiled_backward.wgsl` (a reversed step fused
//! with the gate gradients, the dh0 pass, and dX as a tiled gather convolution) and
//! `convlstm_pack.wgsl` (the weight repacking they read).

use super::convlstm::{BwdBufs, CellShape, FwdBufs, activation_code};
use super::{Access, KernelDef, Recorder, Shader, buffers};
use crate::context::{Context, LOOP_BUDGET};
use crate::error::{Error, Result};
use crate::kernels::conv::ConvGeom;
use crate::kernels::rec::u32_of;

/// Tile sizes and workgroup-memory pools of `convlstm_tile.wgsl` (must match the shader).
const TH: usize = 8;
/// Pixel-tile width × vec columns per workgroup = 128 (the `TV` pipeline constant: 8 or 4),
/// so each of the 128 invocations owns [`PX`] pixels of one vec column.
const TW_TV: usize = 128;
/// Pixels per invocation (its register block: `PX` vec4 accumulators).
const PX: usize = 8;
/// Channels per staged chunk, and vec4s per halo pixel (`KC / 4`).
const KC: usize = 8;
const KV: usize = KC / 4;
const WG: usize = 128;
/// Halo pool in vec4s: (8 + A)·(16 + B)·2 ≤ 1024 holds every kernel extent A = (kh-1)·dil,
/// B = (kw-1)·dil with (8 + A)·(8 + B) ≤ 256, the scalar-halo tile's limit before it.
const HALO: usize = 1024;
/// Weight-tile pool in vec4s.
const WT: usize = 512;
/// Bytes of workgroup memory the tiled kernels declare (halo and weight vec4s).
const WG_BYTES: usize = (HALO + WT) * 16;

/// Mirrors `TileParams` in `shaders/convlstm_tile.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct TileParams {
    frames: u32,
    src_off: u32,
    src_sb: u32,
    sr: u32,
    sc: u32,
    q: u32,
    dr: u32,
    dc: u32,
    kh: u32,
    kw: u32,
    dil_y: u32,
    dil_x: u32,
    off_y: i32,
    off_x: i32,
    nv: u32,
    nvp: u32,
    t: u32,
    t_len: u32,
    batch: u32,
    slots: u32,
    filters: u32,
    act: u32,
    ract: u32,
    flags: u32,
}

/// Mirrors `PackParams` in `shaders/convlstm_pack.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct PackParams {
    kh: u32,
    kw: u32,
    c: u32,
    q: u32,
    filters: u32,
    nvp: u32,
    total: u32,
    _pad: u32,
}

const TRAIN: u32 = 1;
const HAS_NEXT: u32 = 2;
/// The source's channel groups of 4 are 16-byte aligned (Q % 4 == 0): the halo is staged with
/// vec4 loads through the source's vec4 binding.
const VEC_SRC: u32 = 4;

/// Bindings 1..: the packed weights, zx, hseq, cseq, out, and hseq's vec4 view: a second
/// read-write binding of the same buffer. wgpu's usage scopes accept it on every native
/// backend; the WebGPU spec (browsers) forbids overlapping writable bindings. It is safe
/// here because a dispatch reads the vec4 view only at ring slot t and writes the f32 view
/// only at slot t+1 (backward: frame t+1 read, frame t written), so no address is written
/// through one view and read through the other, and no aliasing assumption can reorder them.
const FWD: &[Access] = &[
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
];
/// Bindings 1..: the packed weights, gates, cseq, dy, dgates, state, and dgates' vec4 view.
const BWD: &[Access] = &[
    Access::Read,
    Access::Read,
    Access::Read,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
];
const PACK: &[Access] = &[Access::Read, Access::ReadWrite];

const fn def(shader: Shader, entry: &'static str, storage: &'static [Access]) -> KernelDef {
    KernelDef {
        shader,
        entry,
        storage,
        params_size: std::mem::size_of::<TileParams>() as u64,
    }
}
const FWD_STEP: KernelDef = def(Shader::ConvLstmTiledForward, "step", FWD);
const BWD_STEP: KernelDef = def(Shader::ConvLstmTiledBackward, "step", BWD);
const BWD_RECUR: KernelDef = def(Shader::ConvLstmTiledBackward, "recur", BWD);
const BWD_DGRAD: KernelDef = def(Shader::ConvLstmTiledBackward, "dgrad", BWD);
const fn pack_def(entry: &'static str) -> KernelDef {
    KernelDef {
        shader: Shader::ConvLstmPack,
        entry,
        storage: PACK,
        params_size: std::mem::size_of::<PackParams>() as u64,
    }
}
const PACK_GATES: KernelDef = pack_def("pack_gates");
const PACK_FLIP: KernelDef = pack_def("pack_flip");

/// One tiled convolution as `convlstm_tile.wgsl` sees it.
#[derive(Clone, Copy, Debug)]
struct TileGeom {
    frames: usize,
    /// Source frame rows, cols, channels (Q).
    src: (usize, usize, usize),
    /// Output frame rows, cols.
    dst: (usize, usize),
    kernel: (usize, usize),
    dil: (usize, usize),
    /// Source row/col of output row/col 0 at tap 0.
    off: (isize, isize),
    /// Vec4 columns.
    nv: usize,
    /// Vec columns per workgroup (`TV`), from [`TileGeom::with_tv`].
    tv: usize,
}

impl TileGeom {
    /// Picks the vec columns per workgroup: 4 (an 8×32 pixel tile) where that leaves fewer
    /// columns idle than 8 (8×16 pixels; e.g. the backward at F = 16 or 40: 4 or 10 vec
    /// columns) and its wider halo fits, else 8.
    fn with_tv(mut self) -> Self {
        self.tv = 4;
        let narrow_fits = self.halo_vec4s() <= HALO;
        let idle = |tv: usize| self.nv.div_ceil(tv) * tv - self.nv;
        self.tv = if narrow_fits && idle(4) < idle(8) {
            4
        } else {
            8
        };
        self
    }

    fn tw(&self) -> usize {
        TW_TV / self.tv
    }

    fn nvp(&self) -> usize {
        self.nv.div_ceil(self.tv) * self.tv
    }

    fn halo(&self) -> (usize, usize) {
        (
            TH + (self.kernel.0 - 1) * self.dil.0,
            self.tw() + (self.kernel.1 - 1) * self.dil.1,
        )
    }

    /// Halo vec4s of one channel chunk.
    fn halo_vec4s(&self) -> usize {
        let (hy, hx) = self.halo();
        hy * hx * KV
    }

    /// The source is read with aligned vec4 loads (every channel group of 4 starts on a
    /// 16-byte boundary); else with masked scalar loads.
    fn vec_src(&self) -> bool {
        self.src.2.is_multiple_of(4)
    }

    /// The flags bit of [`TileGeom::vec_src`].
    fn src_flags(&self) -> u32 {
        if self.vec_src() { VEC_SRC } else { 0 }
    }

    /// The pipeline constant of the tile kernels.
    fn spec(&self) -> [(&'static str, u32); 1] {
        [("TV", self.tv as u32)]
    }

    /// Loop iterations of one invocation (staging, with 4 per vec4 on the scalar path;
    /// multiply-adds; epilogue: at most [`PX`] pixels × 4 channels), the figure llvmpipe's
    /// per-invocation cap applies to (DESIGN.md §5).
    fn loops(&self) -> usize {
        let (kh, kw) = self.kernel;
        let per_load = if self.vec_src() { 1 } else { 5 };
        let stage = self.halo_vec4s().div_ceil(WG) * per_load + 1;
        let per_row = (kw * KC * self.tv).div_ceil(WG) + 1 + kw * (1 + KV);
        self.src.2.div_ceil(KC) * (stage + 1 + kh * (per_row + 1)) + PX * 5 + 8
    }

    /// Whether the tiled kernels can run this convolution on `ctx` (else `Error::Limit`
    /// naming the limit).
    fn check(&self, ctx: &Context) -> Result<()> {
        let l = &ctx.limits;
        if (l.max_compute_workgroup_storage_size as usize) < WG_BYTES
            || (l.max_compute_invocations_per_workgroup as usize) < WG
        {
            return Err(Error::Limit(format!(
                "the tiled ConvLSTM2D kernels need {WG_BYTES} bytes of workgroup memory and \
                 {WG} invocations per workgroup; the device has {} and {}",
                l.max_compute_workgroup_storage_size, l.max_compute_invocations_per_workgroup
            )));
        }
        if self.halo_vec4s() > HALO || self.kernel.1 * KC * self.tv > WT {
            return Err(Error::Limit(format!(
                "the tiled ConvLSTM2D kernels stage ({TH}+({}-1)*{}) x ({}+({}-1)*{}) x {KV} \
                 = {} vec4s of halo (limit {HALO}) and {} x {KC} x {} = {} weight vec4s \
                 (limit {WT}, i.e. kernel width <= {}); use Algorithm::Stepwise",
                self.kernel.0,
                self.dil.0,
                self.tw(),
                self.kernel.1,
                self.dil.1,
                self.halo_vec4s(),
                self.kernel.1,
                self.tv,
                self.kernel.1 * KC * self.tv,
                WT / (KC * self.tv)
            )));
        }
        if self.loops() > LOOP_BUDGET as usize {
            return Err(Error::Limit(format!(
                "tiled ConvLSTM2D: {} loop iterations per invocation exceed {LOOP_BUDGET} \
                 ({} source channels); use Algorithm::Stepwise",
                self.loops(),
                self.src.2
            )));
        }
        Ok(())
    }

    fn groups(&self) -> Result<u32> {
        let tiles =
            self.dst.0.div_ceil(TH) * self.dst.1.div_ceil(self.tw()) * self.nv.div_ceil(self.tv);
        let n = tiles
            .checked_mul(self.frames)
            .ok_or_else(|| Error::Limit("tiled ConvLSTM2D workgroups overflow".into()))?;
        u32_of(n, "tiled ConvLSTM2D workgroups")
    }

    fn params(&self) -> Result<TileParams> {
        let i32_of = |v: isize, what: &str| {
            i32::try_from(v).map_err(|_| Error::Limit(format!("{what} = {v} exceeds i32")))
        };
        Ok(TileParams {
            frames: u32_of(self.frames, "frames")?,
            sr: u32_of(self.src.0, "rows")?,
            sc: u32_of(self.src.1, "cols")?,
            q: u32_of(self.src.2, "channels")?,
            dr: u32_of(self.dst.0, "rows")?,
            dc: u32_of(self.dst.1, "cols")?,
            kh: u32_of(self.kernel.0, "kernel")?,
            kw: u32_of(self.kernel.1, "kernel")?,
            dil_y: u32_of(self.dil.0, "dilation")?,
            dil_x: u32_of(self.dil.1, "dilation")?,
            off_y: i32_of(self.off.0, "offset")?,
            off_x: i32_of(self.off.1, "offset")?,
            nv: u32_of(self.nv, "vec columns")?,
            nvp: u32_of(self.nvp(), "vec columns")?,
            ..TileParams::default()
        })
    }
}

/// The recurrent convolution of a step (forward: h → 4 gates per filter).
fn forward_geom(s: &CellShape) -> TileGeom {
    let (kh, kw) = s.kernel;
    TileGeom {
        frames: s.b,
        src: (s.rows, s.cols, s.filters),
        dst: (s.rows, s.cols),
        kernel: s.kernel,
        dil: (1, 1),
        off: (-(((kh - 1) / 2) as isize), -(((kw - 1) / 2) as isize)),
        nv: s.filters,
        tv: 8,
    }
    .with_tv()
}

/// The transposed recurrent convolution of a reversed step (dZ → R, 4 channels per vec4).
fn backward_geom(s: &CellShape) -> TileGeom {
    let (kh, kw) = s.kernel;
    TileGeom {
        frames: s.b,
        src: (s.rows, s.cols, 4 * s.filters),
        dst: (s.rows, s.cols),
        kernel: s.kernel,
        dil: (1, 1),
        off: (
            ((kh - 1) / 2) as isize - (kh - 1) as isize,
            ((kw - 1) / 2) as isize - (kw - 1) as isize,
        ),
        nv: s.filters.div_ceil(4),
        tv: 8,
    }
    .with_tv()
}

/// The input gradient of the input convolution as a gather (stride 1 only).
fn dgrad_geom(g: &ConvGeom, frames: usize, cout: usize) -> TileGeom {
    let (kh, kw) = g.kernel;
    TileGeom {
        frames,
        src: (g.out_rows, g.out_cols, cout),
        dst: (g.rows, g.cols),
        kernel: g.kernel,
        dil: g.dilation,
        off: (
            g.pad.0 as isize - ((kh - 1) * g.dilation.0) as isize,
            g.pad.1 as isize - ((kw - 1) * g.dilation.1) as isize,
        ),
        nv: g.cin.div_ceil(4),
        tv: 8,
    }
    .with_tv()
}

/// Whether the tiled forward and backward steps can run `s` on `ctx` (else `Error::Limit`).
pub(crate) fn fits(ctx: &Context, s: &CellShape) -> Result<()> {
    forward_geom(s).check(ctx)?;
    backward_geom(s).check(ctx)
}

/// Input channels from which dX runs tiled: a tile's 8 vec4 columns hold 32 channels, so
/// fewer leave most of each workgroup's multiply-adds idle (measured on lavapipe, B2 T10
/// 32×32×1 F16: Cin = 1 tiled took ~1.4 s more than the direct gather per backward).
const DGRAD_MIN_CIN: usize = 16;

/// Whether dX of the input convolution `g` over `frames` frames runs tiled: stride 1 (the
/// gather then has a fixed halo), at least [`DGRAD_MIN_CIN`] input channels, within the tile
/// limits. Other shapes use the direct gather (`conv::dgrad`).
pub(crate) fn dgrad_fits(ctx: &Context, g: &ConvGeom, frames: usize, cout: usize) -> bool {
    g.strides == (1, 1) && g.cin >= DGRAD_MIN_CIN && dgrad_geom(g, frames, cout).check(ctx).is_ok()
}

/// Packs a Keras kernel `w` (kh, kw, c, q) into a new buffer of `total` vec4s.
fn pack(
    rec: &mut Recorder<'_>,
    k: &KernelDef,
    w: &wgpu::Buffer,
    (kh, kw, c, q): (usize, usize, usize, usize),
    (filters, nvp, total): (usize, usize, usize),
) -> Result<wgpu::Buffer> {
    let dst = buffers::zeros(rec.ctx(), "packed kernel", total * 4)?;
    let prm = PackParams {
        kh: u32_of(kh, "kernel")?,
        kw: u32_of(kw, "kernel")?,
        c: u32_of(c, "channels")?,
        q: u32_of(q, "channels")?,
        filters: u32_of(filters, "filters")?,
        nvp: u32_of(nvp, "vec columns")?,
        total: u32_of(total, "packed kernel")?,
        _pad: 0,
    };
    rec.dispatch(
        k,
        &prm,
        &[w, &dst],
        u32_of(total.div_ceil(64), "workgroups")?,
    )?;
    Ok(dst)
}

/// What to bind as the source's vec4 view: `None` (the source itself) when the kernel reads
/// it as vec4s, else a one-vec4 placeholder it never reads (a source whose channels are not a
/// multiple of 4 may be smaller than the vec4 the binding needs, or not a whole number of them).
fn vec_placeholder(rec: &Recorder<'_>, g: &TileGeom) -> Result<Option<wgpu::Buffer>> {
    if g.vec_src() {
        Ok(None)
    } else {
        buffers::zeros(rec.ctx(), "unused vec4 view", 4).map(Some)
    }
}

/// Records the tiled forward loop (one dispatch per step after one packing dispatch);
/// `slots` = T+1 when training, 2 otherwise. Bindings as the Stepwise loop's.
pub(crate) fn record_forward(
    rec: &mut Recorder<'_>,
    s: &CellShape,
    train: bool,
    slots: usize,
    b: &FwdBufs<'_>,
) -> Result<()> {
    let g = forward_geom(s);
    g.check(rec.ctx())?;
    let (kh, kw) = s.kernel;
    let f = s.filters;
    let nvp = g.nvp();
    let wt = pack(
        rec,
        &PACK_GATES,
        b.rk,
        (kh, kw, f, 4 * f),
        (f, nvp, kh * kw * f * nvp),
    )?;
    let mut prm = g.params()?;
    prm.t_len = u32_of(s.t, "seq_len")?;
    prm.batch = u32_of(s.b, "batch")?;
    prm.slots = u32_of(slots, "state slots")?;
    prm.filters = u32_of(f, "filters")?;
    prm.act = activation_code(s.activation);
    prm.ract = activation_code(s.recurrent_activation);
    prm.flags = g.src_flags() | if train { TRAIN } else { 0 };
    // h_{t-1} of sequence b is ring frame (t % slots)·B + b.
    prm.src_sb = 1;
    let groups = g.groups()?;
    let placeholder = vec_placeholder(rec, &g)?;
    let hseq4 = placeholder.as_ref().unwrap_or(b.hseq);
    let list = [&wt, b.zx, b.hseq, b.cseq, b.out, hseq4];
    for t in 0..s.t {
        prm.t = t as u32;
        prm.src_off = u32_of((t % slots) * s.b, "frame")?;
        rec.dispatch_spec(&FWD_STEP, &g.spec(), &prm, &list, groups)?;
    }
    Ok(())
}

/// Records the tiled reversed loop and the dh0 pass (as `convlstm::record_backward`: `state`
/// holds dy_h_n then dy_c_n and ends as dh0 then dc0).
pub(crate) fn record_backward(
    rec: &mut Recorder<'_>,
    s: &CellShape,
    b: &BwdBufs<'_>,
) -> Result<()> {
    let g = backward_geom(s);
    g.check(rec.ctx())?;
    let (kh, kw) = s.kernel;
    let f = s.filters;
    let nvp = g.nvp();
    let wt = pack(
        rec,
        &PACK_FLIP,
        b.rk,
        (kh, kw, f, 4 * f),
        (f, nvp, kh * kw * 4 * f * nvp),
    )?;
    let mut prm = g.params()?;
    prm.t_len = u32_of(s.t, "seq_len")?;
    prm.batch = u32_of(s.b, "batch")?;
    prm.slots = u32_of(s.t + 1, "state slots")?;
    prm.filters = u32_of(f, "filters")?;
    prm.act = activation_code(s.activation);
    prm.ract = activation_code(s.recurrent_activation);
    prm.src_sb = u32_of(s.t, "seq_len")?;
    let groups = g.groups()?;
    // dZ has Q = 4F channels: always read as vec4s.
    debug_assert!(g.vec_src());
    let list = [&wt, b.gates, b.cseq, b.dy, b.dgates, b.state, b.dgates];
    for t in (0..s.t).rev() {
        prm.t = t as u32;
        let next = t + 1 < s.t;
        prm.flags = g.src_flags() | if next { HAS_NEXT } else { 0 };
        prm.src_off = if next { t as u32 + 1 } else { 0 };
        rec.dispatch_spec(&BWD_STEP, &g.spec(), &prm, &list, groups)?;
    }
    prm.t = 0;
    prm.flags = g.src_flags();
    prm.src_off = 0;
    rec.dispatch_spec(&BWD_RECUR, &g.spec(), &prm, &list, groups)
}

/// dX (frames, rows, cols, cin) of the input convolution `g` from the gate gradients
/// `grad` (frames, Ho, Wo, cout) and the Keras kernel `w`, overwritten; callers check
/// [`dgrad_fits`] first. Binds `grad` as the backward's dgates, `dst` as its state and `w`
/// in the unused read-only slots (a buffer may not be bound read-only and read-write in one
/// dispatch).
pub(crate) fn dgrad(
    rec: &mut Recorder<'_>,
    g: &ConvGeom,
    frames: usize,
    cout: usize,
    grad: &wgpu::Buffer,
    w: &wgpu::Buffer,
    dst: &wgpu::Buffer,
) -> Result<()> {
    let tg = dgrad_geom(g, frames, cout);
    tg.check(rec.ctx())?;
    let (kh, kw) = g.kernel;
    let nvp = tg.nvp();
    let wt = pack(
        rec,
        &PACK_FLIP,
        w,
        (kh, kw, g.cin, cout),
        (g.cin, nvp, kh * kw * cout * nvp),
    )?;
    let mut prm = tg.params()?;
    prm.src_sb = 1;
    prm.filters = u32_of(g.cin, "channels")?;
    prm.t_len = 1;
    prm.slots = 1;
    prm.batch = prm.frames;
    prm.flags = tg.src_flags();
    let placeholder = vec_placeholder(rec, &tg)?;
    let grad4 = placeholder.as_ref().unwrap_or(grad);
    rec.dispatch_spec(
        &BWD_DGRAD,
        &tg.spec(),
        &prm,
        &[&wt, w, w, w, grad, dst, grad4],
        tg.groups()?,
    )
}

#[cfg(test)]
#[path = "convlstm_tiled_tests.rs"]
mod tests;
