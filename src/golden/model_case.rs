//! Reader and runner of the whole-model goldens, format `keras-model-golden-v1`
//! (`../shared/golden/MODELS.md`): a Keras Sequential config, its weights under `w/<path>`,
//! the input `x` (floats or i32 token ids), the target `y`, and the references `pred`, `loss`
//! and `grad/<path>`. `wgpu-rnn verify` prints one JSON line per compared tensor and one
//! `param_count` line per case.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ndarray::{ArrayD, Ix2};
use safetensors::{Dtype, SafeTensors};
use serde::Serialize;
use serde_json::Value;

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

/// One line of `wgpu-rnn verify` for a model golden, serialized with its keys in the
/// MODELS.md order.
#[derive(Clone, Debug, Serialize)]
pub struct VerifyLine {
    /// The case.
    pub case: String,
    /// `cpu` or `gpu`.
    pub backend: String,
    /// `param_count`, `pred`, `loss`, `grad/<path>`, or `null` for a case that failed whole.
    pub tensor: Option<String>,
    /// Our parameter count (`param_count` lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<u64>,
    /// The file's parameter count (`param_count` lines; `null` when the file has none).
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<Option<u64>>,
    /// max |ours - reference| (`null` when not comparable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_abs: Option<Option<f64>>,
    /// max |reference|.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ref_max_abs: Option<f64>,
    /// Whether it passed.
    pub pass: bool,
    /// Why it failed, when it failed without a comparison.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl VerifyLine {
    fn new(case: &str, backend: &str, tensor: Option<&str>, pass: bool) -> Self {
        Self {
            case: case.into(),
            backend: backend.into(),
            tensor: tensor.map(str::to_string),
            value: None,
            reference: None,
            max_abs: None,
            ref_max_abs: None,
            pass,
            error: None,
        }
    }

    fn error(case: &str, backend: &str, tensor: Option<&str>, e: impl ToString) -> Self {
        Self {
            error: Some(e.to_string()),
            ..Self::new(case, backend, tensor, false)
        }
    }
}

/// Runs a case on `backend` and returns its verify lines: `param_count`, `pred`, `loss`, and
/// one per gradient of the file (plus a failure for any trainable weight the file lacks).
pub fn run_model_case(g: &ModelGolden, backend: &dyn ModelBackend) -> Result<Vec<VerifyLine>> {
    let name = backend.name();
    let model = g.model()?;
    let ours = model.param_count() as u64;
    let mut lines = vec![VerifyLine {
        value: Some(ours),
        reference: Some(g.param_count),
        ..VerifyLine::new(
            &g.case,
            name,
            Some("param_count"),
            g.param_count == Some(ours),
        )
    }];
    let loss = KerasLoss::from_name(&g.loss)?;
    let ev = model.evaluate(backend, &g.input()?, &g.target()?, loss)?;
    let f32s = |a: &ArrayD<f64>| a.mapv(|v| v as f32);
    let mut line = |tensor: &str, got: Option<ArrayD<f32>>, want: &ArrayD<f64>| {
        let Some(got) = got else {
            lines.push(VerifyLine::error(
                &g.case,
                name,
                Some(tensor),
                "not computed",
            ));
            return;
        };
        let r = compare(tensor, &got, &f32s(want));
        lines.push(VerifyLine {
            max_abs: Some(r.max_abs.is_finite().then_some(r.max_abs)),
            ref_max_abs: Some(r.ref_max_abs),
            ..VerifyLine::new(&g.case, name, Some(tensor), r.pass)
        });
    };
    line("pred", Some(f32s(&ev.pred)), g.float("pred")?);
    let want_loss = g.float("loss")?;
    let got_loss = ArrayD::from_elem(want_loss.raw_dim(), ev.loss);
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
            lines.push(VerifyLine::error(
                &g.case,
                name,
                Some(&key),
                "the model has this trainable weight but the golden has no gradient for it",
            ));
        }
    }
    Ok(lines)
}

/// Verify lines for one file: the case's lines, or one failure line with the error.
pub fn verify_lines(path: &Path, backend: &dyn ModelBackend) -> Vec<VerifyLine> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match ModelGolden::load(path) {
        Ok(g) => run_model_case(&g, backend)
            .unwrap_or_else(|e| vec![VerifyLine::error(&g.case, backend.name(), None, e)]),
        Err(e) => vec![VerifyLine::error(&stem, backend.name(), None, e)],
    }
}
