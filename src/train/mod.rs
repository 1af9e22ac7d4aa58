//! Training pieces: losses and optimizers that run on the device, their CPU references, and
//! parameter checkpoints.
//!
//! A training step is recorded into one [`StepRecorder`] and submitted once: the loss writes
//! dL/dpred and the scalar loss into device buffers, the optimizer (with optional global-norm
//! clipping computed on the device) updates the parameter buffers in place. The host reads
//! back only what it asks for ([`GpuLoss::read_value`], [`read_buffer`]).
//!
//! ```no_run
//! use wgpu_rnn::Context;
//! use wgpu_rnn::train::*;
//! # fn main() -> wgpu_rnn::Result<()> {
//! let ctx = Context::new()?;
//! let w = storage_buffer(&ctx, "w", &[0.5, -0.5])?;
//! let target = storage_buffer(&ctx, "y", &[1.0, 0.0])?;
//! let grad = storage_buffer(&ctx, "dw", &[0.0, 0.0])?;
//! let loss = GpuLoss::new(&ctx, LossKind::Mse, &[2])?;
//! let config = OptimizerConfig::adam(1e-2);
//! let mut opt = GpuOptimizer::new(&ctx, config, &[2])?;
//! for _ in 0..10 {
//!     // Here the model itself is the identity: the prediction is the parameter.
//!     let mut rec = StepRecorder::new(&ctx);
//!     loss.record(&mut rec, &w, &target, &grad)?;
//!     opt.record_step(&mut rec, &[(&w, &grad)])?;
//!     rec.submit()?;
//! }
//! println!("loss {}", loss.read_value(&ctx)?);
//! # Ok(())
//! # }
//! ```

pub mod checkpoint;
mod loss;
mod optim;
mod optim_gpu;

pub use loss::{BCE_EPS, GpuLoss, LossKind, cpu_loss};
pub use optim::{Optimizer, OptimizerConfig, OptimizerKind};
pub use optim_gpu::GpuOptimizer;

use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::{Recorder, buffers};

/// The recording of one training step: the crate's [`Recorder`] (kept under this name for
/// the code that trained before the recorder was public).
pub type StepRecorder<'c> = Recorder<'c>;

/// A storage buffer (usable by every kernel, copyable both ways) holding `data`.
pub fn storage_buffer(ctx: &Context, label: &str, data: &[f32]) -> Result<wgpu::Buffer> {
    buffers::upload(ctx, label, data)
}

/// Reads the first `len` f32 elements of `buffer` back to the host (waits for the GPU).
pub fn read_buffer(ctx: &Context, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
    check_len(buffer, len, "buffer")?;
    let mut v = buffers::read_f32(ctx, &[(buffer, 0, len)])?;
    v.pop()
        .ok_or_else(|| Error::Device("read-back returned nothing".into()))
}

/// Checks that `buffer` holds at least `len` f32 elements.
pub(crate) fn check_len(buffer: &wgpu::Buffer, len: usize, what: &str) -> Result<()> {
    let have = buffer.size() / 4;
    if (have as u128) < len as u128 {
        return Err(Error::Shape(format!(
            "{what} holds {have} f32 elements; {len} are needed"
        )));
    }
    Ok(())
}
