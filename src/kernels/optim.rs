//! Launcher for `shaders/optim.wgsl`: in-place optimizer updates and the on-device global
//! gradient norm for clipping.

use super::{Access, KernelDef, Recorder, Shader};
use crate::context::LOOP_BUDGET;
use crate::error::{Error, Result};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    kind: u32,
    nesterov: u32,
    use_clip: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    step_size: f32,
    bc2_sqrt: f32,
    weight_decay: f32,
    max_norm: f32,
    partial_off: u32,
    partial_count: u32,
    has_momentum: u32,
    pad: u32,
}

const STORAGE: &[Access] = &[
    Access::ReadWrite,
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
];

const SUMSQ: KernelDef = KernelDef {
    shader: Shader::Optim,
    entry: "grad_sumsq",
    storage: STORAGE,
    params_size: std::mem::size_of::<Params>() as u64,
};

const FINALIZE: KernelDef = KernelDef {
    shader: Shader::Optim,
    entry: "clip_finalize",
    storage: STORAGE,
    params_size: std::mem::size_of::<Params>() as u64,
};

const UPDATE: KernelDef = KernelDef {
    shader: Shader::Optim,
    entry: "optim_update",
    storage: STORAGE,
    params_size: std::mem::size_of::<Params>() as u64,
};

/// Elements of the clip buffer before the partial sums: [scale, norm, -, -].
pub(crate) const CLIP_HEAD: usize = 4;
const WG: usize = 256;
/// Elements one `grad_sumsq` workgroup covers.
const PER_GROUP: usize = 1024;

/// The update rule and its hyper-parameters, as the shader reads them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Update {
    /// 0 SGD, 1 Adam, 2 RMSprop.
    pub kind: u32,
    pub nesterov: bool,
    pub has_momentum: bool,
    pub lr: f32,
    /// SGD/RMSprop momentum or Adam β₁.
    pub beta1: f32,
    /// Adam β₂ or RMSprop α.
    pub beta2: f32,
    pub eps: f32,
    /// Adam: lr / (1 - β₁ᵗ).
    pub step_size: f32,
    /// Adam: sqrt(1 - β₂ᵗ).
    pub bc2_sqrt: f32,
    pub weight_decay: f32,
}

/// The four buffers every entry binds.
pub(crate) struct Bufs<'a> {
    pub param: &'a wgpu::Buffer,
    pub grad: &'a wgpu::Buffer,
    pub state: &'a wgpu::Buffer,
    pub clip: &'a wgpu::Buffer,
}

impl Bufs<'_> {
    fn list(&self) -> [&wgpu::Buffer; 4] {
        [self.param, self.grad, self.state, self.clip]
    }
}

pub(crate) fn u32_of(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v)
        .map_err(|_| Error::Limit(format!("optimizer {what} = {v} exceeds u32 indexing")))
}

/// Partial sums `grad_sumsq` writes for a tensor of `len` elements.
pub(crate) fn sumsq_groups(len: usize) -> usize {
    len.div_ceil(PER_GROUP)
}

/// Checks that `clip_finalize` can sum `total` partials within the loop budget.
pub(crate) fn check_partials(total: usize) -> Result<()> {
    let loops = total.div_ceil(WG) + 64;
    if loops > LOOP_BUDGET as usize {
        return Err(Error::Limit(format!(
            "gradient clipping: {total} partial sums need {loops} loop iterations in one \
             invocation; the loop budget is {LOOP_BUDGET}"
        )));
    }
    Ok(())
}

/// Records Σg² of one gradient into `clip[CLIP_HEAD + off ..]`, one value per 1024 elements.
pub(crate) fn record_sumsq(
    rec: &mut Recorder<'_>,
    len: usize,
    off: usize,
    b: &Bufs<'_>,
) -> Result<()> {
    let groups = sumsq_groups(len);
    let params = Params {
        len: u32_of(len, "tensor length")?,
        partial_off: u32_of(off, "partial offset")?,
        partial_count: u32_of(groups, "partial count")?,
        ..Params::default()
    };
    rec.dispatch(&SUMSQ, &params, &b.list(), params.partial_count)
}

/// Records the global norm and clip scale from `total` partials: clip[0] = scale, clip[1] = norm.
pub(crate) fn record_clip_finalize(
    rec: &mut Recorder<'_>,
    total: usize,
    max_norm: f32,
    b: &Bufs<'_>,
) -> Result<()> {
    check_partials(total)?;
    let params = Params {
        partial_count: u32_of(total, "partial count")?,
        max_norm,
        ..Params::default()
    };
    rec.dispatch(&FINALIZE, &params, &b.list(), 1)
}

/// Records the in-place update of one parameter tensor of `len` elements.
pub(crate) fn record_update(
    rec: &mut Recorder<'_>,
    u: &Update,
    len: usize,
    use_clip: bool,
    b: &Bufs<'_>,
) -> Result<()> {
    let params = Params {
        len: u32_of(len, "tensor length")?,
        kind: u.kind,
        nesterov: u32::from(u.nesterov),
        use_clip: u32::from(use_clip),
        lr: u.lr,
        beta1: u.beta1,
        beta2: u.beta2,
        eps: u.eps,
        step_size: u.step_size,
        bc2_sqrt: u.bc2_sqrt,
        weight_decay: u.weight_decay,
        has_momentum: u32::from(u.has_momentum),
        ..Params::default()
    };
    let groups = u32_of(len.div_ceil(WG), "workgroup count")?;
    rec.dispatch(&UPDATE, &params, &b.list(), groups)
}
