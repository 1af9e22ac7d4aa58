//! Reader for the `rnn-golden-v1` format (reference cases from PyTorch and Keras) and the
//! comparison `wgpu-rnn verify` and the tests use (DESIGN.md §3–4).

use std::path::Path;

use ndarray::{ArrayD, ArrayView3, Axis, Ix2, Ix3};
use serde_json::Value;

use crate::algorithm::Algorithm;
use crate::error::{Error, Result};
use crate::layers::Backend;
use crate::layers::lstm::{Lstm, LstmConfig};
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
/// `max_abs ≤ 1e-5·max(1, ref_max_abs)`, gradients (`grad_*`) `≤ 1e-4·max(1, ref_max_abs)`.
pub fn compare(name: &str, got: &ArrayD<f32>, want: &ArrayD<f32>) -> TensorReport {
    let rel = if name.starts_with("grad_") {
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
    match g.str_key("cell") {
        Some("lstm") => run_lstm(g, backend, algorithm),
        Some(other) => Err(Error::Unsupported(format!(
            "cell {other:?} (this build runs lstm)"
        ))),
        None => Err(Error::Format(format!("{}: config has no cell", g.case))),
    }
}

fn view3<'a>(a: &'a ArrayD<f32>, name: &str) -> Result<ArrayView3<'a, f32>> {
    a.view()
        .into_dimensionality::<Ix3>()
        .map_err(|e| Error::Format(format!("{name}: {e}")))
}

/// A `(B, ·)` Keras state as the crate's `(1, B, ·)` one; `(L·D, B, ·)` is kept.
fn state3(a: &ArrayD<f32>, name: &str) -> Result<ArrayD<f32>> {
    match a.ndim() {
        2 => Ok(a
            .view()
            .into_dimensionality::<Ix2>()
            .map_err(|e| Error::Format(format!("{name}: {e}")))?
            .insert_axis(Axis(0))
            .to_owned()
            .into_dyn()),
        3 => Ok(a.clone()),
        n => Err(Error::Format(format!(
            "{name} has {n} dimensions; expected 2 or 3"
        ))),
    }
}

fn reject_nonzero(g: &Golden, keys: &[&str]) -> Result<()> {
    for k in keys {
        if let Some(v) = g.config.get(*k).and_then(Value::as_f64)
            && v != 0.0
        {
            return Err(Error::Unsupported(format!(
                "{k} = {v} (training-time dropout)"
            )));
        }
    }
    Ok(())
}

fn run_lstm(g: &Golden, backend: &Backend, algorithm: Algorithm) -> Result<Vec<TensorReport>> {
    let keras = match g.str_key("framework") {
        Some("keras") => true,
        Some("torch") | None => false,
        Some(f) => return Err(Error::Unsupported(format!("framework {f:?}"))),
    };
    reject_nonzero(g, &["dropout", "recurrent_dropout"])?;
    for (key, want) in [("activation", "tanh"), ("recurrent_activation", "sigmoid")] {
        if let Some(a) = g.str_key(key)
            && a != want
        {
            return Err(Error::Unsupported(format!(
                "LSTM {key} {a:?} (only {want:?})"
            )));
        }
    }
    let x = g.tensor("x")?;
    let hidden = match g.usize_key("hidden_size")? {
        Some(h) => h,
        None => g
            .usize_key("units")?
            .ok_or_else(|| Error::Format("no hidden_size/units".into()))?,
    };
    let input = match g.usize_key("input_size")? {
        Some(i) => i,
        None => *x.shape().last().unwrap_or(&0),
    };
    let layout = g
        .str_key("x_layout")
        .unwrap_or(if keras { "BTI" } else { "TBI" });
    let mut cfg = LstmConfig::new(input, hidden);
    cfg.num_layers = g.usize_key("num_layers")?.unwrap_or(1);
    cfg.bidirectional = g.bool_key("bidirectional", false);
    cfg.proj_size = g.usize_key("proj_size")?.unwrap_or(0);
    cfg.batch_first = layout == "BTI" || g.bool_key("batch_first", false);
    cfg.bias = g.bool_key(if keras { "use_bias" } else { "bias" }, true);
    cfg.go_backwards = g.bool_key("go_backwards", false);
    let mut layer = if keras {
        Lstm::from_keras(cfg, &g.tensors, backend.clone())?
    } else {
        Lstm::from_torch(cfg, &g.tensors, backend.clone())?
    };
    layer.set_algorithm(algorithm);
    let lengths: Option<Vec<usize>> = match g.config.get("lengths") {
        None | Some(Value::Null) => None,
        Some(Value::Array(v)) => Some(
            v.iter()
                .map(|l| {
                    l.as_u64()
                        .map(|x| x as usize)
                        .ok_or_else(|| Error::Format(format!("lengths entry {l}")))
                })
                .collect::<Result<_>>()?,
        ),
        Some(v) => return Err(Error::Format(format!("lengths = {v}"))),
    };
    let h0 = g.tensors.get("h0").map(|a| state3(a, "h0")).transpose()?;
    let c0 = g.tensors.get("c0").map(|a| state3(a, "c0")).transpose()?;
    let state = match (&h0, &c0) {
        (Some(h), Some(c)) => Some((view3(h, "h0")?, view3(c, "c0")?)),
        (None, None) => None,
        _ => return Err(Error::Format("h0 and c0 must come together".into())),
    };
    let (out, trace) = layer.forward_train(view3(x, "x")?, state, lengths.as_deref())?;

    // Keras return_sequences=false returns only the last processed step.
    let full_seq = g.bool_key("return_sequences", true);
    let time_axis = if cfg.batch_first { 1 } else { 0 };
    let out_cmp = if full_seq {
        out.out.clone().into_dyn()
    } else {
        let last = out.out.len_of(Axis(time_axis)) - 1;
        out.out
            .index_axis(Axis(time_axis), last)
            .to_owned()
            .into_dyn()
    };
    let zeros = |shape: &[usize]| ArrayD::<f32>::zeros(shape.to_vec());
    let dy_out = match g.tensors.get("dy_out") {
        Some(d) if full_seq => d.clone(),
        Some(d) => {
            let mut full = ndarray::Array3::<f32>::zeros(out.out.dim());
            let last = full.len_of(Axis(time_axis)) - 1;
            full.index_axis_mut(Axis(time_axis), last).assign(d);
            full.into_dyn()
        }
        None => zeros(out.out.shape()),
    };
    let dyh = g
        .tensors
        .get("dy_h_n")
        .map(|a| state3(a, "dy_h_n"))
        .transpose()?;
    let dyc = g
        .tensors
        .get("dy_c_n")
        .map(|a| state3(a, "dy_c_n"))
        .transpose()?;
    let grads = layer.backward(
        &trace,
        view3(&dy_out, "dy_out")?,
        dyh.as_ref().map(|a| view3(a, "dy_h_n")).transpose()?,
        dyc.as_ref().map(|a| view3(a, "dy_c_n")).transpose()?,
    )?;

    // Every produced tensor, shaped like the golden's (Keras states are (B, ·)).
    let squeeze = |a: ndarray::Array3<f32>, name: &str| -> ArrayD<f32> {
        match g.tensors.get(name) {
            Some(r) if r.ndim() == 2 => a.index_axis(Axis(0), 0).to_owned().into_dyn(),
            _ => a.into_dyn(),
        }
    };
    let mut produced = TensorMap::new();
    produced.insert("out".into(), out_cmp);
    produced.insert("h_n".into(), squeeze(out.h_n, "h_n"));
    produced.insert("c_n".into(), squeeze(out.c_n, "c_n"));
    produced.insert("grad_x".into(), grads.dx.into_dyn());
    produced.insert("grad_h0".into(), squeeze(grads.dh0, "grad_h0"));
    produced.insert("grad_c0".into(), squeeze(grads.dc0, "grad_c0"));
    for (k, v) in grads.weights {
        produced.insert(format!("grad_{k}"), v);
    }
    let mut reports = Vec::new();
    for (name, want) in &g.tensors {
        let checked = ["out", "h_n", "c_n"].contains(&name.as_str()) || name.starts_with("grad_");
        if !checked {
            continue;
        }
        match produced.get(name) {
            Some(got) => reports.push(compare(name, got, want)),
            None => reports.push(TensorReport {
                tensor: name.clone(),
                max_abs: f64::INFINITY,
                ref_max_abs: 0.0,
                tol: 0.0,
                pass: false,
            }),
        }
    }
    Ok(reports)
}
