//! Feed-forward layers that sit on top of the recurrent ones: [`dense`] (PyTorch `nn.Linear`,
//! also applied per time step as Keras `TimeDistributed(Dense)`) and [`conv_head`] (a
//! per-frame 2-D convolution with sigmoid, the last layer of the Keras ConvLSTM2D next-frame
//! example). Each has an ndarray CPU reference (generic over `f32`/`f64`, so it can be
//! checked by finite differences) and a GPU version whose forward and backward are recorded
//! into one submission on device buffers, so a training step chains
//! recurrent layer → head forward → loss gradient → head backward → recurrent backward
//! without host copies.
//!
//! Parameter gradients stay on the device: [`ParamBuffer`] pairs every parameter buffer with
//! its gradient buffer, so an optimizer can update weights in place.

#[cfg(test)]
mod chain_tests;
pub mod conv_head;
pub mod dense;
pub mod dropout;
pub mod embedding;
mod layer_impls;
pub mod masking;

pub use conv_head::{ConvHeadConfig, ConvHeadGrads, ConvHeadParams, GpuConvHead, SeqShape};
pub use dense::{DenseConfig, DenseGrads, DenseParams, GpuDense};
pub use dropout::GpuDropout;
pub use embedding::{Embedding, EmbeddingConfig};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::buffers;

/// One trainable tensor of a GPU layer: its device buffer, the buffer its gradient is written
/// to by every recorded backward, and its logical shape (row-major, f32).
#[derive(Clone, Debug)]
pub struct ParamBuffer {
    /// Parameter name, e.g. `"weight"`, `"bias"`, `"kernel"`.
    pub name: String,
    /// The parameter values, updated in place by an optimizer.
    pub param: wgpu::Buffer,
    /// The gradient of the last recorded backward (overwritten, not accumulated).
    pub grad: wgpu::Buffer,
    /// Logical shape, e.g. `[out, in]`.
    pub shape: Vec<usize>,
}

impl ParamBuffer {
    /// Number of f32 elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements (never true for a validated layer).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a recorded backward writes the gradient with respect to its input.
// `Into`/`AddTo` serve in-crate training steps that chain layers on device buffers (the
// ndarray wrappers only need `New`); `chain_tests` exercises both.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Copy, Debug)]
pub(crate) enum GradTarget<'a> {
    /// Allocate a fresh buffer and return it.
    New,
    /// Overwrite this buffer.
    Into(&'a wgpu::Buffer),
    /// Add to what this buffer holds (the input also fed another consumer).
    AddTo(&'a wgpu::Buffer),
}

impl GradTarget<'_> {
    /// The buffer to write and the `beta` of the launchers (`dst = new + beta·dst`).
    pub(crate) fn resolve(
        self,
        ctx: &Context,
        what: &str,
        len: usize,
    ) -> Result<(wgpu::Buffer, f32)> {
        match self {
            GradTarget::New => Ok((buffers::zeros(ctx, what, len)?, 0.0)),
            GradTarget::Into(b) => {
                check_buffer(what, b, len)?;
                Ok((b.clone(), 0.0))
            }
            GradTarget::AddTo(b) => {
                check_buffer(what, b, len)?;
                Ok((b.clone(), 1.0))
            }
        }
    }
}

/// `Error::Shape` unless `buf` holds at least `len` f32s.
pub(crate) fn check_buffer(what: &str, buf: &wgpu::Buffer, len: usize) -> Result<()> {
    let have = buf.size() / 4;
    if have < len as u64 {
        return Err(Error::Shape(format!(
            "buffer {what} holds {have} f32s; the layer needs {len}"
        )));
    }
    Ok(())
}

/// `Error::Shape` unless `got == want`, naming both.
pub(crate) fn check_shape(what: &str, got: &[usize], want: &[usize]) -> Result<()> {
    if got != want {
        return Err(Error::Shape(format!(
            "{what} has shape {got:?}; expected {want:?}"
        )));
    }
    Ok(())
}

/// `Error::Config` when a size is 0, naming it.
pub(crate) fn check_nonzero(what: &str, v: usize) -> Result<()> {
    if v == 0 {
        return Err(Error::Config(format!("{what} = 0; it must be at least 1")));
    }
    Ok(())
}

/// The product of `dims`, or `Error::Limit` naming `what` when it overflows `usize` or its
/// f32 elements pass the host-memory cap (`crate::limits`).
pub(crate) fn checked_product(what: &str, dims: &[usize]) -> Result<usize> {
    // Checked arithmetic and the host-memory cap (f32 elements), before anything is allocated.
    crate::limits::host_f32(&format!("{what} {dims:?}"), dims)
}

/// An array's elements in logical (row-major) order, whatever its memory layout.
pub(crate) fn flat<D: ndarray::Dimension>(a: ndarray::ArrayView<f32, D>) -> Vec<f32> {
    a.iter().copied().collect()
}

/// Reshapes read-back values, `Error::Shape` on a length mismatch.
pub(crate) fn shaped<D: ndarray::Dimension>(
    v: Vec<f32>,
    shape: impl ndarray::ShapeBuilder<Dim = D>,
) -> Result<ndarray::Array<f32, D>> {
    ndarray::Array::from_shape_vec(shape, v).map_err(|e| Error::Shape(e.to_string()))
}

/// Records `C[1×n] = Σ_rows G[rows×n]` (a bias gradient): the GEMM with a single 1.0 as its
/// left operand (`a_rs = a_cs = 0`), as gemm.wgsl documents.
pub(crate) fn record_column_sum(
    rec: &mut crate::kernels::Recorder<'_>,
    ones: &wgpu::Buffer,
    g: &wgpu::Buffer,
    (rows, n): (usize, usize),
    dst: &wgpu::Buffer,
) -> Result<()> {
    use crate::kernels::gemm::{self, Mat, Out};
    gemm::record(
        rec,
        (1, n, rows),
        1.0,
        Mat {
            buf: ones,
            off: 0,
            rs: 0,
            cs: 0,
        },
        Mat::rows(g, 0, n),
        0.0,
        Out {
            buf: dst,
            off: 0,
            rs: n,
        },
        None,
    )
}
