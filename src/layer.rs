//! The one layer contract: every layer records its forward (inference or training) and its
//! backward on [`DeviceTensor`]s into a caller's [`Recorder`], and exposes its parameters
//! and their gradients as named device buffers an optimizer updates in place.
//!
//! A training step of a whole stack is then one recording: each layer's
//! `record_forward(train = true)`, a loss, each layer's `record_backward` in reverse, and
//! [`GpuOptimizer::record_step`](crate::train::GpuOptimizer::record_step) over every layer's
//! [`params`](Layer::params) — one submit, and one read-back for the loss.

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::kernels::Recorder;
use crate::nn::ParamBuffer;
use crate::tensor::DeviceTensor;

static NEXT_LAYER: AtomicU64 = AtomicU64::new(1);

/// A process-unique id for a new layer (traces remember the layer that made them).
pub(crate) fn next_layer_id() -> u64 {
    NEXT_LAYER.fetch_add(1, Ordering::Relaxed)
}

/// Who made a trace: the layer, the context (none for the CPU backend) and the shape of
/// the input it ran on. `backward` refuses a trace whose origin is not its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Origin {
    pub layer: u64,
    pub ctx: Option<u64>,
    pub input: Vec<usize>,
}

impl Origin {
    /// `Error::Config` naming both layers unless `self` came from layer `id` on `ctx`.
    pub(crate) fn check(&self, kind: &str, id: u64, ctx: Option<u64>) -> Result<()> {
        if self.layer != id {
            return Err(Error::Config(format!(
                "this {kind} trace was recorded by layer #{}, not by this layer (#{id}); \
                 pass each layer its own trace",
                self.layer
            )));
        }
        if self.ctx != ctx {
            return Err(Error::Config(format!(
                "this {kind} trace was recorded on context {:?}, not on this layer's {ctx:?}",
                self.ctx
            )));
        }
        Ok(())
    }
}

/// What a training forward saved for its backward, on the device. Opaque; only the layer
/// that recorded it accepts it.
pub struct Tape {
    pub(crate) origin: Origin,
    pub(crate) inner: Box<dyn Any + Send + Sync>,
}

impl Tape {
    pub(crate) fn new<T: Any + Send + Sync>(origin: Origin, inner: T) -> Self {
        Self {
            origin,
            inner: Box::new(inner),
        }
    }

    /// The saved state of layer `id` of kind `kind` (its own type), or a typed error for a
    /// trace from another layer or context.
    pub(crate) fn open<T: Any>(&self, kind: &str, id: u64, ctx: Option<u64>) -> Result<&T> {
        self.origin.check(kind, id, ctx)?;
        self.inner
            .downcast_ref::<T>()
            .ok_or_else(|| Error::Config(format!("this trace is not a {kind} trace")))
    }

    /// The saved state as type `T` without an origin check (adapters whose inner layer checks
    /// its own tape).
    pub(crate) fn open_any<T: Any>(&self) -> Result<&T> {
        self.inner
            .downcast_ref::<T>()
            .ok_or_else(|| Error::Config("this trace belongs to another kind of layer".into()))
    }

    /// The shape of the input the forward ran on.
    pub fn input_shape(&self) -> &[usize] {
        &self.origin.input
    }
}

impl std::fmt::Debug for Tape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tape")
            .field("origin", &self.origin)
            .finish()
    }
}

/// What a recorded forward produced.
#[derive(Debug)]
pub struct Forward {
    /// The output: a sequence for recurrent layers (`(B, T, ·)` with `batch_first`, else
    /// `(T, B, ·)`), rows for Dense.
    pub y: DeviceTensor,
    /// Final states of recurrent layers (`h_n`, then `c_n` for the LSTM), each
    /// `(L·D, B, ·)`; empty for other layers.
    pub state: Vec<DeviceTensor>,
    /// Per-sequence valid lengths, u32 `(B)`, from `Embedding(mask_zero = true)`: feed them
    /// to the next recurrent layer's `record_forward_with`.
    pub lengths: Option<DeviceTensor>,
    /// What backward needs (training forwards only).
    pub tape: Option<Tape>,
}

/// Gradients flowing into a layer's outputs.
#[derive(Clone, Debug, Default)]
pub struct OutputGrads {
    /// dL/dy, shaped like [`Forward::y`] (zeros when `None`).
    pub dy: Option<DeviceTensor>,
    /// dL/d(final state), one entry per [`Forward::state`] tensor (zeros when missing).
    pub dstate: Vec<Option<DeviceTensor>>,
}

impl OutputGrads {
    /// Only the output's gradient.
    pub fn output(dy: DeviceTensor) -> Self {
        Self {
            dy: Some(dy),
            dstate: Vec::new(),
        }
    }

    /// Only the final hidden state's gradient (a classifier on `h_n`).
    pub fn final_state(dh_n: DeviceTensor) -> Self {
        Self {
            dy: None,
            dstate: vec![Some(dh_n)],
        }
    }
}

/// The contract every layer implements (see the module docs).
pub trait Layer {
    /// The layer's kind, for messages (`"lstm"`, `"dense"`, ...).
    fn kind(&self) -> &'static str;

    /// The shape of `y` for an input of shape `input` (an error names a wrong input).
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>>;

    /// Records the forward on `x`. `train` keeps what backward needs in the returned tape.
    fn record_forward(
        &self,
        rec: &mut Recorder<'_>,
        x: &DeviceTensor,
        train: bool,
    ) -> Result<Forward>;

    /// Records the backward of a training forward: overwrites every parameter gradient of
    /// [`params`](Self::params) and returns dL/dx (`None` where the input has no gradient,
    /// e.g. token ids). A tape from another layer or context is a typed error.
    fn record_backward(
        &self,
        rec: &mut Recorder<'_>,
        tape: &Tape,
        grads: &OutputGrads,
    ) -> Result<Option<DeviceTensor>>;

    /// The trainable tensors with their gradient buffers, named as loaded (PyTorch or Keras
    /// names), in a fixed order.
    fn params(&self) -> Result<Vec<ParamBuffer>>;
}
