//! Launcher for `shaders/nn_act.wgsl`: the element-wise activation of the feed-forward layers
//! (in place after the GEMM or convolution) and its backward `dz = dy ⊙ act'(y)`.

use super::convlstm::activation_code;
use super::rec::{step_groups, u32_of};
use super::{Access, KernelDef, Recorder, Shader};
use crate::cpu::Activation;
use crate::error::Result;

/// Mirrors `ActParams` in `shaders/nn_act.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    kind: u32,
    _pad: [u32; 2],
}

const fn def(entry: &'static str) -> KernelDef {
    KernelDef {
        shader: Shader::NnAct,
        entry,
        storage: &[Access::Read, Access::Read, Access::ReadWrite],
        params_size: std::mem::size_of::<Params>() as u64,
    }
}
const FORWARD: KernelDef = def("act_forward");
const BACKWARD: KernelDef = def("act_backward");

fn params(act: Activation, n: usize) -> Result<Params> {
    Ok(Params {
        n: u32_of(n, "activation elements")?,
        kind: activation_code(act),
        _pad: [0; 2],
    })
}

/// Records `y[i] = act(y[i])` for the first `n` elements of `y`; nothing for `Linear`.
/// `spare` is any buffer other than `y`: the unused read bindings need one, and WebGPU
/// forbids binding `y` both read-only and writable in one dispatch.
pub(crate) fn forward(
    rec: &mut Recorder<'_>,
    act: Activation,
    y: &wgpu::Buffer,
    spare: &wgpu::Buffer,
    n: usize,
) -> Result<()> {
    if act == Activation::Linear {
        return Ok(());
    }
    rec.dispatch(
        &FORWARD,
        &params(act, n)?,
        &[spare, spare, y],
        step_groups(n)?,
    )
}

/// Records `dz[i] = dy[i] · act'(y[i])` for `i < n` (`y` the forward's output).
pub(crate) fn backward(
    rec: &mut Recorder<'_>,
    act: Activation,
    dy: &wgpu::Buffer,
    y: &wgpu::Buffer,
    dz: &wgpu::Buffer,
    n: usize,
) -> Result<()> {
    rec.dispatch(&BACKWARD, &params(act, n)?, &[dy, y, dz], step_groups(n)?)
}
