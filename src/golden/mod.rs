//! Reader for the `rnn-golden-v1` format (reference cases from PyTorch and Keras) and the
//! comparison `wgpu-rnn verify` and the tests use (DESIGN.md §3–4).

mod cases;
mod convlstm_case;
pub mod model_case;

use std::path::Path;

use ndarray::ArrayD;
use serde_json::Value;

use crate::algorithm::Algorithm;
use crate::error::{Error, Result};
use crate::layers::Backend;
use crate::weights::{TensorMap, safetensors_io};

/// One golden case: its config and every tensor.
pub struct Golden {
    /// Case name (`config.case`, else the file stem).
    pub case: String,
    /// The `config` JSON from the file's metadata.
    pub config: Value,
    /// Inputs, parameters, outputs, upstream gradients and expected gradients.
    pub tensors: TensorMap,
}

impl Golden {
    /// Reads a `.safetensors` golden file.
    pub fn load(path: &Path) -> Result<Self> {
        // Each case is a `.safetensors` file with a `.json` twin holding the same config;
        // accept either name (shell globs like `tests/data/*` hand over both).
        let sibling;
        let path = if path.extension().is_some_and(|e| e == "json") {
            sibling = path.with_extension("safetensors");
            sibling.as_path()
        } else {
            path
        };
        let file = safetensors_io::read(path)?;
        let raw = file.metadata.get("config").ok_or_else(|| {
            Error::Format(format!(
                "{}: no `config` in the safetensors metadata",
                path.display()
            ))
        })?;
        let config: Value = serde_json::from_str(raw)
            .map_err(|e| Error::Format(format!("{}: config is not JSON: {e}", path.display())))?;
        if let Some(f) = config.get("format").and_then(Value::as_str)
            && f != "rnn-golden-v1"
        {
            return Err(Error::Format(format!(
                "{}: format {f:?}, expected rnn-golden-v1",
                path.display()
            )));
        }
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let case = config
            .get("case")
            .and_then(Value::as_str)
            .map_or(stem, str::to_string);
        Ok(Self {
            case,
            config,
            tensors: file.tensors,
        })
    }

    fn tensor(&self, name: &str) -> Result<&ArrayD<f32>> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::Format(format!("{}: tensor {name} missing", self.case)))
    }

    fn usize_key(&self, key: &str) -> Result<Option<usize>> {
        match self.config.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(|x| Some(x as usize)).ok_or_else(|| {
                Error::Format(format!("{}: config {key} = {v} is not a count", self.case))
            }),
        }
    }

    fn bool_key(&self, key: &str, default: bool) -> bool {
        self.config
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(default)
    }

    fn str_key(&self, key: &str) -> Option<&str> {
        self.config.get(key).and_then(Value::as_str)
    }
}

/// The verdict on one compared tensor.
#[derive(Clone, Debug)]
pub struct TensorReport {
    /// Tensor name in the golden file (`out`, `grad_x`, ...).
    pub tensor: String,
    /// max |got - reference|.
    pub max_abs: f64,
    /// max |reference|.
    pub ref_max_abs: f64,
    /// The bound max_abs had to meet.
    pub tol: f64,
    /// Whether it did.
    pub pass: bool,
}

/// Compares against a reference with the DESIGN.md §4 rule: outputs
/// `max_abs ≤ 1e-5·max(1, ref_max_abs)`, gradients (`grad_*`, `grad/*`) `≤ 1e-4·max(1, ref_max_abs)`.
pub fn compare(name: &str, got: &ArrayD<f32>, want: &ArrayD<f32>) -> TensorReport {
    let rel = if name.starts_with("grad_") || name.starts_with("grad/") {
        1e-4
    } else {
        1e-5
    };
    let ref_max_abs = want.iter().fold(0.0f64, |m, v| m.max(f64::from(v.abs())));
    let tol = rel * ref_max_abs.max(1.0);
    if got.shape() != want.shape() {
        return TensorReport {
            tensor: name.into(),
            max_abs: f64::INFINITY,
            ref_max_abs,
            tol,
            pass: false,
        };
    }
    let mut max_abs = 0.0f64;
    for (g, w) in got.iter().zip(want.iter()) {
        let d = f64::from((g - w).abs());
        // NaN must fail, so it is not folded away by max.
        max_abs = if d.is_nan() {
            f64::NAN
        } else if max_abs.is_nan() {
            max_abs
        } else {
            max_abs.max(d)
        };
    }
    TensorReport {
        tensor: name.into(),
        max_abs,
        ref_max_abs,
        tol,
        pass: max_abs <= tol,
    }
}

/// Builds the layer a golden describes, runs forward and backward on `backend`, and compares
/// every output and gradient the file holds. Unsupported configs are `Error::Unsupported`.
pub fn run_case(g: &Golden, backend: &Backend) -> Result<Vec<TensorReport>> {
    run_case_with(g, backend, Algorithm::Auto)
}

/// As [`run_case`] with a forced recurrence algorithm (GPU backend).
pub fn run_case_with(
    g: &Golden,
    backend: &Backend,
    algorithm: Algorithm,
) -> Result<Vec<TensorReport>> {
    let produced = cases::run(g, backend, algorithm)?;
    let mut reports = Vec::new();
    for (name, want) in &g.tensors {
        let checked = ["out", "h_n", "c_n"].contains(&name.as_str()) || name.starts_with("grad_");
        if !checked {
            continue;
        }
        reports.push(match produced.get(name) {
            Some(got) => compare(name, got, want),
            // A reference the library did not produce is a failure, never a skip.
            None => TensorReport {
                tensor: name.clone(),
                max_abs: f64::INFINITY,
                ref_max_abs: 0.0,
                tol: 0.0,
                pass: false,
            },
        });
    }
    Ok(reports)
}
