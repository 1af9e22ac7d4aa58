//! Pieces every layer shares: the caller's tensor layout (batch-first, Keras go_backwards),
//! where the layer runs (backend, device weights, algorithm, last record stats) and checks.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::{Array3, ArrayView3, s};

use super::Backend;
use crate::algorithm::Algorithm;
use crate::context::Context;
use crate::cpu::lstm::LstmDims;
use crate::error::{Error, Result};
use crate::gpu::cell::{CellKind, CellWeights};
use crate::gpu::stack::{GpuWeights, RecDrop};
use crate::kernels::RecordStats;
use crate::weights::WeightFormat;

/// How the caller lays tensors out, relative to the time-major order the engines use.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    /// `(B, T, ·)` instead of `(T, B, ·)`.
    pub batch_first: bool,
    /// Keras go_backwards: inputs are consumed last step first; outputs stay in processing order.
    pub go_backwards: bool,
}

impl Layout {
    /// Time-major view of an input tensor, reversed in time for go_backwards.
    pub fn time_major<'a>(self, a: ArrayView3<'a, f32>) -> ArrayView3<'a, f32> {
        let a = self.time_major_out(a);
        if self.go_backwards {
            a.slice_move(s![..;-1, .., ..])
        } else {
            a
        }
    }

    /// Time-major view of an output-shaped tensor (outputs are already in processing order).
    pub fn time_major_out<'a>(self, a: ArrayView3<'a, f32>) -> ArrayView3<'a, f32> {
        if self.batch_first {
            a.permuted_axes([1, 0, 2])
        } else {
            a
        }
    }

    /// Back to the caller's layout; `input_like` also undoes the go_backwards reversal (dx).
    pub fn caller(self, a: Array3<f32>, input_like: bool) -> Array3<f32> {
        let a = if input_like && self.go_backwards {
            a.slice_move(s![..;-1, .., ..])
        } else {
            a
        };
        let a = if self.batch_first {
            a.permuted_axes([1, 0, 2])
        } else {
            a
        };
        a.as_standard_layout().into_owned()
    }
}

impl Layout {
    /// The caller's shape of a `(t, b, f)` sequence.
    pub fn caller_shape(self, t: usize, b: usize, f: usize) -> [usize; 3] {
        if self.batch_first {
            [b, t, f]
        } else {
            [t, b, f]
        }
    }

    /// A shape error in the caller's layout unless `shape` is a sequence of `features`.
    pub fn check_input(self, kind: &str, shape: &[usize], features: usize) -> Result<()> {
        if shape.len() == 3 && shape[2] == features {
            return Ok(());
        }
        let named = if self.batch_first {
            "(batch, seq_len, input_size)"
        } else {
            "(seq_len, batch, input_size)"
        };
        Err(Error::Shape(format!(
            "{kind} input x has shape {shape:?}, read as {named}; the layer's input_size is \
             {features}"
        )))
    }
}

/// go_backwards is a Keras option of one unidirectional layer.
pub(crate) fn check_go_backwards(go_backwards: bool, d: &LstmDims) -> Result<()> {
    if go_backwards && (d.bidirectional || d.num_layers != 1) {
        return Err(Error::Config(format!(
            "go_backwards is a Keras option for one unidirectional layer; got num_layers {} \
             and bidirectional {}",
            d.num_layers, d.bidirectional
        )));
    }
    Ok(())
}

/// Variable lengths are PyTorch packing; Keras masks instead, so the two do not combine.
pub(crate) fn check_lengths_layout(lengths: Option<&[usize]>, layout: Layout) -> Result<()> {
    if lengths.is_some() && layout.go_backwards {
        return Err(Error::Unsupported(
            "variable lengths with go_backwards (Keras masks instead of packing)".into(),
        ));
    }
    Ok(())
}

/// A shape error naming the tensor, unless `got == want`.
pub(crate) fn expect_shape(name: &str, got: &[usize], want: &[usize]) -> Result<()> {
    if got != want {
        return Err(Error::Shape(format!(
            "{name} has shape {got:?}; expected {want:?}"
        )));
    }
    Ok(())
}

/// Where a layer runs: the backend, its device weights, the algorithm and what the last
/// GPU submission recorded.
pub(crate) struct Runner<W = GpuWeights> {
    pub backend: Backend,
    pub gpu: Option<W>,
    pub algorithm: Algorithm,
    stats: Mutex<RecordStats>,
    /// Training forwards that drew recurrent-dropout masks (each call draws fresh ones).
    drop_calls: AtomicU64,
}

impl Runner {
    /// Uploads a recurrent stack's weights when the backend is a GPU.
    pub fn new(
        backend: Backend,
        kind: CellKind,
        dims: LstmDims,
        cells: &[CellWeights],
        how: (WeightFormat, bool, u32),
    ) -> Result<Self> {
        Self::with_upload(backend, |ctx| {
            GpuWeights::upload(ctx, kind, dims, cells, how)
        })
    }
}

impl<W> Runner<W> {
    /// Runs `upload` when the backend is a GPU.
    pub fn with_upload(
        backend: Backend,
        upload: impl FnOnce(&Context) -> Result<W>,
    ) -> Result<Self> {
        let gpu = match &backend {
            Backend::Gpu(ctx) => Some(upload(ctx)?),
            Backend::Cpu => None,
        };
        Ok(Self {
            backend,
            gpu,
            algorithm: Algorithm::Auto,
            stats: Mutex::default(),
            drop_calls: AtomicU64::new(0),
        })
    }

    /// The device and its weights, when running on the GPU.
    pub fn device(&self) -> Option<(&Context, &W)> {
        match (&self.backend, &self.gpu) {
            (Backend::Gpu(ctx), Some(w)) => Some((ctx.as_ref(), w)),
            _ => None,
        }
    }

    pub fn set_stats(&self, s: RecordStats) {
        if let Ok(mut g) = self.stats.lock() {
            *g = s;
        }
    }

    pub fn stats(&self) -> RecordStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// The recurrent dropout of one forward: in training with `rate > 0`, a fresh mask seed
    /// from the layer's seed and a call counter (as `GpuDropout`). `None` otherwise.
    pub fn next_drop(&self, (rate, seed): (f32, u64), train: bool) -> Option<RecDrop> {
        (train && rate > 0.0).then(|| RecDrop {
            rate,
            seed: crate::nn::dropout::recurrent_call_seed(
                seed,
                self.drop_calls.fetch_add(1, Ordering::Relaxed),
            ),
        })
    }
}

/// Checks a Keras `recurrent_dropout` rate: `0 ≤ rate < 1` (Keras applies none at 1.0; a
/// layer that drops every recurrent input is refused instead).
pub(crate) fn check_recurrent_dropout(kind: &str, rate: f32) -> Result<()> {
    if (0.0..1.0).contains(&rate) {
        return Ok(());
    }
    Err(Error::Config(format!(
        "{kind} recurrent_dropout is {rate}; it must be in [0, 1)"
    )))
}

/// The CPU backend computes no recurrent-dropout masks: a training forward that would apply
/// them is refused by name (inference and rate 0 run as usual).
pub(crate) fn check_cpu_dropout(
    kind: &str,
    backend: &Backend,
    rate: f32,
    train: bool,
) -> Result<()> {
    if matches!(backend, Backend::Cpu) && train && rate > 0.0 {
        return Err(Error::Unsupported(format!(
            "{kind} training with recurrent_dropout {rate} on the CPU backend (the GPU backend \
             draws and applies the masks; the Keras model CPU reference replays them)"
        )));
    }
    Ok(())
}

/// The activations of an LSTM or GRU packed for the kernels; on the CPU backend only the
/// defaults (the CPU reference computes tanh/sigmoid cells), else `Error::Unsupported`.
pub(crate) fn packed_acts(
    kind: &str,
    backend: &Backend,
    activation: crate::cpu::Activation,
    recurrent_activation: crate::cpu::Activation,
) -> Result<u32> {
    use crate::cpu::Activation as A;
    if matches!(backend, Backend::Cpu)
        && (activation, recurrent_activation) != (A::Tanh, A::Sigmoid)
    {
        return Err(Error::Unsupported(format!(
            "{kind} with activation {activation:?} / recurrent_activation \
             {recurrent_activation:?} on the CPU backend (the CPU reference computes tanh / \
             sigmoid; the GPU kernels take any of tanh, relu, sigmoid, hard_sigmoid, linear)"
        )));
    }
    let code = crate::kernels::rec::act_code;
    Ok(code(activation) | (code(recurrent_activation) << 8))
}
