//! Parameter checkpoints: named device buffers saved to and loaded from `.safetensors`
//! files (f32, with shapes), through the crate's safetensors reader and writer.

use std::path::Path;

use ndarray::ArrayD;

use super::check_len;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::kernels::buffers;
use crate::weights::TensorMap;
use crate::weights::safetensors_io;

/// One named tensor living in a device buffer (its first `shape.product()` f32 elements).
#[derive(Clone, Copy, Debug)]
pub struct NamedBuffer<'a> {
    /// Tensor name in the file.
    pub name: &'a str,
    /// The device buffer.
    pub buffer: &'a wgpu::Buffer,
    /// The tensor's shape (row-major).
    pub shape: &'a [usize],
}

impl NamedBuffer<'_> {
    fn len(&self) -> Result<usize> {
        let n = self
            .shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| {
                Error::Limit(format!(
                    "tensor {}: shape {:?} overflows",
                    self.name, self.shape
                ))
            })?;
        check_len(self.buffer, n, &format!("buffer of tensor {}", self.name))?;
        Ok(n)
    }
}

fn check_unique(tensors: &[NamedBuffer<'_>]) -> Result<()> {
    let mut names: Vec<&str> = tensors.iter().map(|t| t.name).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::Config(format!(
            "checkpoint: tensor name {:?} appears twice",
            w[0]
        )));
    }
    Ok(())
}

/// Reads every buffer back (one submit) and writes them to `path` as f32 safetensors.
pub fn save(ctx: &Context, path: &Path, tensors: &[NamedBuffer<'_>]) -> Result<()> {
    check_unique(tensors)?;
    let lens = tensors
        .iter()
        .map(NamedBuffer::len)
        .collect::<Result<Vec<_>>>()?;
    let ranges: Vec<buffers::ReadRange<'_>> = tensors
        .iter()
        .zip(&lens)
        .map(|(t, &n)| (t.buffer, 0, n))
        .collect();
    let data = buffers::read_f32(ctx, &ranges)?;
    let mut map = TensorMap::new();
    for (t, d) in tensors.iter().zip(data) {
        let arr = ArrayD::from_shape_vec(t.shape.to_vec(), d)
            .map_err(|e| Error::Shape(format!("tensor {}: {e}", t.name)))?;
        map.insert(t.name.to_string(), arr);
    }
    let meta = [("format".to_string(), "wgpu-rnn-checkpoint-v1".to_string())];
    safetensors_io::write(path, &map, Some(meta.into_iter().collect()))
}

/// Loads the named tensors of `path` into the given buffers. Every name must be in the file
/// with exactly the given shape; nothing is written unless all of them are (extra tensors in
/// the file are ignored). The writes land before the next submission on the queue.
pub fn load_into(ctx: &Context, path: &Path, tensors: &[NamedBuffer<'_>]) -> Result<()> {
    check_unique(tensors)?;
    let file = safetensors_io::read(path)?;
    let mut found = Vec::with_capacity(tensors.len());
    for t in tensors {
        t.len()?;
        let arr = file.tensors.get(t.name).ok_or_else(|| {
            let have: Vec<&String> = file.tensors.keys().collect();
            Error::Weights(format!(
                "checkpoint {}: tensor {:?} is missing (the file has {have:?})",
                path.display(),
                t.name
            ))
        })?;
        if arr.shape() != t.shape {
            return Err(Error::Shape(format!(
                "checkpoint {}: tensor {:?} has shape {:?}; expected {:?}",
                path.display(),
                t.name,
                arr.shape(),
                t.shape
            )));
        }
        found.push(
            arr.as_standard_layout()
                .iter()
                .copied()
                .collect::<Vec<f32>>(),
        );
    }
    ctx.scoped(|| {
        for (t, data) in tensors.iter().zip(&found) {
            if !data.is_empty() {
                ctx.queue
                    .write_buffer(t.buffer, 0, bytemuck::cast_slice(data.as_slice()));
            }
        }
        Ok(())
    })
}
