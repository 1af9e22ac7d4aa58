//! Reader and runner of the whole-model goldens, format `keras-model-golden-v1`
//! (`../shared/golden/MODELS.md`): a Keras Sequential config, its weights under `w/<path>`,
//! the input `x` (floats or i32 token ids), the target `y`, and the references `pred`, `loss`
//! and `grad/<path>`. `wgpu-rnn verify` prints one JSON line per compared tensor and one
//! `param_count` line per case.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ndarray::{ArrayD, Ix2};
use safetensors::{Dtype, SafeTensors};
use serde_json::{Value, json};

use super::compare;
use crate::error::{Error, Result};
use crate::models::keras::{
    KerasLoss, ModelBackend, ModelInput, ModelWeights, Sequential, Target, parse_config,
};
use crate::weights::TensorMap;

/// The format name in the metadata.
pub const FORMAT: &str = "keras-model-golden-v1";

/// A tensor of a model golden: floats (read as f64) or integers.
#[derive(Clone, Debug)]
pub enum RawTensor {
    /// F32 / F64.
    Float(ArrayD<f64>),
    /// I32 / I64.
    Int(ArrayD<i64>),
}

/// One model golden file.
pub struct ModelGolden {
    /// `case` from the metadata, else the file stem.
    pub case: String,
    /// The Keras config.
    pub config: Value,
    /// The loss named in the metadata.
    pub loss: String,
    /// Keras' `count_params()`.
    pub param_count: Option<u64>,
    /// Every tensor by name.
    pub tensors: BTreeMap<String, RawTensor>,
}

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    }
}

fn read_raw(path: &Path) -> Result<(HashMap<String, String>, BTreeMap<String, RawTensor>)> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| io(path, e))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| io(path, e))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let d = view.data();
        let shape = view.shape().to_vec();
        let shaped = |v: Vec<f64>| ArrayD::from_shape_vec(shape.clone(), v);
        let t = match view.dtype() {
            Dtype::F32 => RawTensor::Float(
                shaped(
                    d.chunks_exact(4)
                        .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                        .collect(),
                )
                .map_err(|e| io(path, e))?,
            ),
            Dtype::F64 => RawTensor::Float(
                shaped(
                    d.chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                        .collect(),
                )
                .map_err(|e| io(path, e))?,
            ),
            Dtype::I32 => RawTensor::Int(
                ArrayD::from_shape_vec(
                    shape.clone(),
                    d.chunks_exact(4)
                        .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                        .collect(),
                )
                .map_err(|e| io(path, e))?,
            ),
            Dtype::I64 => RawTensor::Int(
                ArrayD::from_shape_vec(
                    shape.clone(),
                    d.chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                        .collect(),
                )
                .map_err(|e| io(path, e))?,
            ),
            other => {
                return Err(Error::Format(format!(
                    "{}: tensor {name} has dtype {other:?}",
                    path.display()
                )));
            }
        };
        out.insert(name, t);
    }
    Ok((meta.metadata().clone().unwrap_or_default(), out))
}

/// Whether `path` (or its `.safetensors` twin, for a `.json`) is a model golden.
pub fn is_model_golden(path: &Path) -> bool {
    let p = twin(path);
    std::fs::read(&p)
        .ok()
        .and_then(|b| SafeTensors::read_metadata(&b).ok().map(|(_, m)| m))
        .and_then(|m| m.metadata().as_ref()?.get("format").cloned())
        .is_some_and(|f| f == FORMAT)
}

fn twin(path: &Path) -> std::path::PathBuf {
    if path.extension().is_some_and(|e| e == "json") {
        path.with_extension("safetensors")
    } else {
        path.to_path_buf()
    }
}

impl ModelGolden {
    /// Reads a model golden (`.safetensors`, or its `.json` twin's name).
    pub fn load(path: &Path) -> Result<Self> {
        let path = twin(path);
        let (meta, tensors) = read_raw(&path)?;
        let get = |k: &str| {
            meta.get(k)
                .ok_or_else(|| Error::Format(format!("{}: metadata {k} missing", path.display())))
        };
        if get("format")? != FORMAT {
            return Err(Error::Format(format!(
                "{}: format {:?}, expected {FORMAT}",
                path.display(),
                meta.get("format")
            )));
        }
        let config = serde_json::from_str(get("config")?)
            .map_err(|e| Error::Format(format!("{}: config: {e}", path.display())))?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self {
            case: meta.get("case").cloned().unwrap_or(stem),
            config,
            loss: get("loss")?.clone(),
            param_count: meta.get("param_count").and_then(|p| p.parse().ok()),
            tensors,
        })
    }

    fn float(&self, name: &str) -> Result<&ArrayD<f64>> {
        match self.tensors.get(name) {
            Some(RawTensor::Float(a)) => Ok(a),
            Some(RawTensor::Int(_)) => Err(Error::Format(format!(
                "{}: tensor {name} is integer",
                self.case
            ))),
            None => Err(Error::Format(format!(
                "{}: tensor {name} missing",
                self.case
            ))),
        }
    }

    /// The model with the file's weights (`w/<path>`, all required, none extra).
    pub fn model(&self) -> Result<Sequential> {
        let spec = parse_config(&self.config)?.spec;
        let w: TensorMap = self
            .tensors
            .iter()
            .filter(|(k, _)| k.starts_with("w/"))
            .map(|(k, v)| match v {
                RawTensor::Float(a) => Ok((k.clone(), a.mapv(|x| x as f32))),
                RawTensor::Int(_) => Err(Error::Format(format!("{k} is integer"))),
            })
            .collect::<Result<_>>()?;
        Sequential::new(spec.clone(), ModelWeights::from_tensors(&spec, &w, "w/")?)
    }

    /// The input `x`.
    pub fn input(&self) -> Result<ModelInput> {
        match self.tensors.get("x") {
            Some(RawTensor::Int(a)) => Ok(ModelInput::Tokens(
                a.clone()
                    .into_dimensionality::<Ix2>()
                    .map_err(|e| Error::Format(format!("x: {e}")))?,
            )),
            Some(RawTensor::Float(a)) => Ok(ModelInput::Values(a.clone())),
            None => Err(Error::Format(format!("{}: tensor x missing", self.case))),
        }
    }

    /// The target `y`.
    pub fn target(&self) -> Result<Target> {
        match self.tensors.get("y") {
            Some(RawTensor::Int(a)) => Ok(Target::Classes(a.clone())),
            Some(RawTensor::Float(a)) => Ok(Target::Values(a.clone())),
            None => Err(Error::Format(format!("{}: tensor y missing", self.case))),
        }
    }
}

/// Runs a case on `backend` and returns the verify lines (JSON objects with `pass`).
pub fn run_model_case(g: &ModelGolden, backend: &dyn ModelBackend) -> Result<Vec<Value>> {
    let name = backend.name();
    let model = g.model()?;
    let mut lines = vec![json!({
        "case": g.case, "backend": name, "tensor": "param_count",
        "value": model.param_count(), "ref": g.param_count,
        "pass": g.param_count == Some(model.param_count() as u64),
    })];
    let loss = KerasLoss::from_name(&g.loss)?;
    let ev = model.evaluate(backend, &g.input()?, &g.target()?, loss)?;
    let f32s = |a: &ArrayD<f64>| a.mapv(|v| v as f32);
    let mut line = |tensor: &str, got: Option<ArrayD<f32>>, want: &ArrayD<f64>| {
        let r = match got {
            Some(got) => compare(tensor, &got, &f32s(want)),
            None => super::TensorReport {
                tensor: tensor.into(),
                max_abs: f64::INFINITY,
                ref_max_abs: 0.0,
                tol: 0.0,
                pass: false,
            },
        };
        let max_abs = if r.max_abs.is_finite() {
            json!(r.max_abs)
        } else {
            json!(null)
        };
        lines.push(json!({
            "case": g.case, "backend": name, "tensor": tensor, "max_abs": max_abs,
            "ref_max_abs": r.ref_max_abs, "pass": r.pass,
        }));
    };
    line("pred", Some(f32s(&ev.pred)), g.float("pred")?);
    let loss_arr = ArrayD::from_elem(ndarray::IxDyn(&[1]), ev.loss);
    let want_loss = g.float("loss")?;
    let got_loss = loss_arr
        .into_shape_with_order(want_loss.raw_dim())
        .map_err(|e| Error::Format(format!("loss: {e}")))?;
    line("loss", Some(f32s(&got_loss)), want_loss);
    for (k, want) in g.tensors.iter().filter(|(k, _)| k.starts_with("grad/")) {
        let RawTensor::Float(want) = want else {
            return Err(Error::Format(format!("{k} is integer")));
        };
        line(k, ev.grads.get(&k["grad/".len()..]).map(f32s), want);
    }
    for k in ev.grads.keys() {
        let key = format!("grad/{k}");
        if !g.tensors.contains_key(&key) {
            lines.push(json!({
                "case": g.case, "backend": name, "tensor": key, "pass": false,
                "error": "the model has this trainable weight but the golden has no gradient for it",
            }));
        }
    }
    Ok(lines)
}

/// Verify lines for one file: the case's lines, or one failure line with the error.
pub fn verify_lines(path: &Path, backend: &dyn ModelBackend) -> Vec<Value> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match ModelGolden::load(path).and_then(|g| {
        let case = g.case.clone();
        run_model_case(&g, backend)
            .map_err(|e| (case, e))
            .or_else(|(case, e)| {
                Ok::<_, Error>(vec![json!({
                    "case": case, "backend": backend.name(), "tensor": null, "pass": false,
                    "error": e.to_string(),
                })])
            })
    }) {
        Ok(lines) => lines,
        Err(e) => vec![json!({
            "case": stem, "backend": backend.name(), "tensor": null, "pass": false,
            "error": e.to_string(),
        })],
    }
}
