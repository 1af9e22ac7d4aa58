//! Reading and writing `.safetensors` files as named f32 tensors.

use std::collections::HashMap;
use std::path::Path;

use ndarray::ArrayD;
use safetensors::{Dtype, SafeTensors};

use super::TensorMap;
use crate::error::{Error, Result};

/// A safetensors file: its tensors (converted to f32) and its string metadata.
pub struct SafetensorsFile {
    /// Every tensor, by name.
    pub tensors: TensorMap,
    /// The `__metadata__` map (empty when absent).
    pub metadata: HashMap<String, String>,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    }
}

/// Reads a safetensors file. F32 and F64 tensors are accepted (F64 rounded to f32); other
/// dtypes are an error naming the tensor and its dtype.
pub fn read(path: &Path) -> Result<SafetensorsFile> {
    let bytes = crate::limits::read_regular_file(path)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| io_err(path, e))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| io_err(path, e))?;
    let mut tensors = TensorMap::new();
    for (name, view) in st.tensors() {
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F64 => view
                .data()
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    f64::from_le_bytes(b) as f32
                })
                .collect(),
            other => {
                return Err(Error::Format(format!(
                    "{}: tensor {name} has dtype {other:?}; only F32 and F64 are read",
                    path.display()
                )));
            }
        };
        let arr = ArrayD::from_shape_vec(view.shape().to_vec(), data)
            .map_err(|e| Error::Format(format!("{name}: {e}")))?;
        tensors.insert(name, arr);
    }
    Ok(SafetensorsFile {
        tensors,
        metadata: meta.metadata().clone().unwrap_or_default(),
    })
}

/// Writes named f32 tensors (e.g. weights or gradients) to a safetensors file.
pub fn write(
    path: &Path,
    tensors: &TensorMap,
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    let owned: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .iter()
        .map(|(k, v)| {
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (k.clone(), bytes, v.shape().to_vec())
        })
        .collect();
    let views = owned
        .iter()
        .map(|(k, b, s)| {
            safetensors::tensor::TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (k.clone(), v))
                .map_err(|e| Error::Format(format!("{k}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, metadata, path).map_err(|e| io_err(path, e))
}
