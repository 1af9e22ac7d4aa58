//! The layer API: config structs, weights, `forward` / `forward_train` / `backward` with
//! ndarray in and out, on the GPU or on the CPU reference.

pub(crate) mod common;
pub mod convlstm;
pub(crate) mod convlstm_device;
pub mod convlstm_stack;
pub(crate) mod device;
pub mod gru;
pub(crate) mod hstate;
pub mod lstm;
pub mod simple_rnn;

use std::sync::Arc;

use crate::context::Context;
use crate::error::{Error, Result};

/// Where a layer runs.
#[derive(Clone, Debug)]
pub enum Backend {
    /// The fused WGSL kernels on a wgpu device.
    Gpu(Arc<Context>),
    /// The ndarray CPU reference (also the fallback when no adapter exists).
    Cpu,
}

impl Backend {
    /// A GPU backend on the adapter [`Context::new`] picks; an error when there is none.
    pub fn gpu() -> Result<Self> {
        Ok(Backend::Gpu(Arc::new(Context::new()?)))
    }

    /// The GPU when an adapter exists, else the CPU reference with a one-line warning.
    pub fn gpu_or_cpu() -> Self {
        match Context::new() {
            Ok(ctx) => Backend::Gpu(Arc::new(ctx)),
            Err(e @ Error::NoAdapter(_)) => {
                eprintln!("wgpu-rnn: warning: {e}; running on the CPU reference");
                Backend::Cpu
            }
            Err(e) => {
                eprintln!("wgpu-rnn: warning: GPU unavailable ({e}); running on the CPU reference");
                Backend::Cpu
            }
        }
    }

    /// "gpu" or "cpu".
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Gpu(_) => "gpu",
            Backend::Cpu => "cpu",
        }
    }
}

/// Splits a `(B, ·)` Keras state (`initial_state=[h]` or `[h, c]` arrays) into the crate's
/// `(1, B, ·)` layout for one unidirectional layer.
pub fn keras_state(a: ndarray::ArrayView2<f32>) -> ndarray::ArrayView3<f32> {
    a.insert_axis(ndarray::Axis(0))
}
