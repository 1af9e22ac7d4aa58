//! `DeviceTensor`: a storage buffer with its shape and element type, bound to the
//! [`Context`] that made it. Layers take and return these on the device path, so a
//! downstream crate can chain them (and its own kernels) without host copies.

use ndarray::{ArrayD, IxDyn};

use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::buffers;

/// Element type of a [`DeviceTensor`] (4 bytes each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float: activations, weights, gradients.
    F32,
    /// 32-bit unsigned integer: token ids, lengths.
    U32,
}

impl DType {
    fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::U32 => "u32",
        }
    }
}

/// A row-major tensor in a device storage buffer.
///
/// The buffer may be larger than the shape needs (a kept workspace buffer, a caller's
/// buffer); only the first `len()` elements are the tensor. Cloning is cheap (the buffer is
/// reference-counted by wgpu) and aliases the same memory.
#[derive(Clone, Debug)]
pub struct DeviceTensor {
    buffer: wgpu::Buffer,
    shape: Vec<usize>,
    dtype: DType,
    ctx_id: u64,
}

/// Elements of `shape`, checked for overflow (the error names the shape).
pub(crate) fn element_count(shape: &[usize]) -> Result<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| Error::Limit(format!("a tensor of shape {shape:?} overflows usize")))
    })
}

impl DeviceTensor {
    /// Uploads `data` as an f32 tensor of `shape`.
    pub fn from_f32(ctx: &Context, shape: &[usize], data: &[f32]) -> Result<Self> {
        Self::check_data(shape, data.len())?;
        Ok(Self {
            buffer: buffers::upload(ctx, "tensor", data)?,
            shape: shape.to_vec(),
            dtype: DType::F32,
            ctx_id: ctx.id(),
        })
    }

    /// Uploads `data` as a u32 tensor of `shape` (token ids, lengths).
    pub fn from_u32(ctx: &Context, shape: &[usize], data: &[u32]) -> Result<Self> {
        Self::check_data(shape, data.len())?;
        Ok(Self {
            buffer: buffers::upload(ctx, "tensor", data)?,
            shape: shape.to_vec(),
            dtype: DType::U32,
            ctx_id: ctx.id(),
        })
    }

    /// Uploads an ndarray (any layout) as an f32 tensor of the same shape.
    pub fn from_array<D: ndarray::Dimension>(
        ctx: &Context,
        a: ndarray::ArrayView<f32, D>,
    ) -> Result<Self> {
        let data: Vec<f32> = a.iter().copied().collect();
        Self::from_f32(ctx, a.shape(), &data)
    }

    /// A zero-filled tensor.
    pub fn zeros(ctx: &Context, shape: &[usize], dtype: DType) -> Result<Self> {
        let n = element_count(shape)?;
        Ok(Self {
            buffer: buffers::zeros(ctx, "tensor", n)?,
            shape: shape.to_vec(),
            dtype,
            ctx_id: ctx.id(),
        })
    }

    /// Wraps a buffer the caller made on `ctx`'s device (it needs `STORAGE` usage, plus
    /// `COPY_SRC` to be read back). Fails when the buffer is smaller than the shape.
    pub fn from_buffer(
        ctx: &Context,
        buffer: wgpu::Buffer,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Self> {
        let n = element_count(shape)?;
        let have = buffer.size() / 4;
        if (have as u128) < n as u128 {
            return Err(Error::Shape(format!(
                "a buffer of {have} elements cannot hold a tensor of shape {shape:?} ({n})"
            )));
        }
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::Config(
                "a device tensor's buffer needs STORAGE usage".into(),
            ));
        }
        Ok(Self {
            buffer,
            shape: shape.to_vec(),
            dtype,
            ctx_id: ctx.id(),
        })
    }

    /// Crate-internal: wraps a buffer the crate just made on `ctx`.
    pub(crate) fn wrap(ctx: &Context, buffer: wgpu::Buffer, shape: Vec<usize>) -> Self {
        Self {
            buffer,
            shape,
            dtype: DType::F32,
            ctx_id: ctx.id(),
        }
    }

    fn check_data(shape: &[usize], len: usize) -> Result<()> {
        let n = element_count(shape)?;
        if n != len {
            return Err(Error::Shape(format!(
                "shape {shape:?} holds {n} elements; {len} were given"
            )));
        }
        Ok(())
    }

    /// The buffer (alias it freely; the tensor is its first `len()` elements).
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// The shape, row-major.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of the context that made it (see [`Context::id`]).
    pub fn context_id(&self) -> u64 {
        self.ctx_id
    }

    /// The same buffer under another shape of the same element count (no copy).
    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        let n = element_count(shape)?;
        if n != self.len() {
            return Err(Error::Shape(format!(
                "cannot reshape {:?} ({} elements) to {shape:?} ({n})",
                self.shape,
                self.len()
            )));
        }
        Ok(Self {
            shape: shape.to_vec(),
            ..self.clone()
        })
    }

    /// Reads the tensor back as f32 (waits for the GPU; one read-back in
    /// [`Context::totals`]). A u32 tensor's values are converted.
    pub fn to_array(&self, ctx: &Context) -> Result<ArrayD<f32>> {
        self.check_on(ctx, "tensor")?;
        let mut got = buffers::read_f32(ctx, &[(&self.buffer, 0, self.len())])?;
        let raw = got.pop().unwrap_or_default();
        let data = match self.dtype {
            DType::F32 => raw,
            DType::U32 => raw.iter().map(|v| v.to_bits() as f32).collect(),
        };
        ArrayD::from_shape_vec(IxDyn(&self.shape), data).map_err(|e| Error::Shape(e.to_string()))
    }

    /// `Error::Config` unless this tensor was made on `ctx`.
    pub fn check_on(&self, ctx: &Context, what: &str) -> Result<()> {
        if self.ctx_id != ctx.id() {
            return Err(Error::Config(format!(
                "{what} was made on context {} but is used on context {}",
                self.ctx_id,
                ctx.id()
            )));
        }
        Ok(())
    }

    /// Checks context, element type and shape in one go (errors name `what`).
    pub(crate) fn expect(
        &self,
        ctx: &Context,
        what: &str,
        dtype: DType,
        shape: &[usize],
    ) -> Result<()> {
        self.check_on(ctx, what)?;
        if self.dtype != dtype {
            return Err(Error::Shape(format!(
                "{what} holds {}; expected {}",
                self.dtype.name(),
                dtype.name()
            )));
        }
        if self.shape != shape {
            return Err(Error::Shape(format!(
                "{what} has shape {:?}; expected {shape:?}",
                self.shape
            )));
        }
        Ok(())
    }
}
