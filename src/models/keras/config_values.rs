//! Reading Keras' serialized values: a layer config's keys (each consumed once, the rest
//! refused), dtype policies, activations, regularizers and initializers.

use serde_json::{Map, Value};

use super::spec::{DenseActivation, Init, Regularizer};
use crate::cpu::Activation;
use crate::error::{Error, Result};

/// The keys of one JSON object, consumed one by one; [`Keys::finish`] refuses the rest.
pub(super) struct Keys {
    pub(super) what: String,
    map: Map<String, Value>,
}

pub(super) fn unsupported(what: &str, key: &str, v: &Value, why: &str) -> Error {
    Error::Unsupported(format!("{what}: {key} = {v} ({why})"))
}

impl Keys {
    pub(super) fn new(what: String, v: &Value) -> Result<Self> {
        let map = v
            .as_object()
            .ok_or_else(|| Error::Config(format!("{what}: expected a JSON object, got {v}")))?
            .clone();
        Ok(Self { what, map })
    }

    pub(super) fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key)
    }

    /// A key that does not change the maths: any value.
    pub(super) fn neutral(&mut self, keys: &[&str]) {
        for k in keys {
            self.map.remove(*k);
        }
    }

    pub(super) fn usize(&mut self, key: &str) -> Result<usize> {
        let v = self
            .take(key)
            .ok_or_else(|| Error::Config(format!("{}: {key} is missing", self.what)))?;
        v.as_u64()
            .map(|x| x as usize)
            .ok_or_else(|| Error::Config(format!("{}: {key} = {v} is not a count", self.what)))
    }

    pub(super) fn bool(&mut self, key: &str, default: bool) -> Result<bool> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(b),
            Some(v) => Err(Error::Config(format!(
                "{}: {key} = {v} is not a boolean",
                self.what
            ))),
        }
    }

    pub(super) fn f64(&mut self, key: &str, default: f64) -> Result<f64> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| {
                Error::Config(format!("{}: {key} = {v} is not a number", self.what))
            }),
        }
    }

    /// A key accepted only when absent or equal to one of `ok` (the values that leave the
    /// maths unchanged).
    pub(super) fn only(&mut self, key: &str, ok: &[Value], why: &str) -> Result<()> {
        match self.take(key) {
            None => Ok(()),
            Some(v) if ok.contains(&v) => Ok(()),
            Some(v) => Err(unsupported(&self.what, key, &v, why)),
        }
    }

    pub(super) fn finish(self) -> Result<()> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(Error::Unsupported(format!(
                "{}: unknown config key {k:?} = {}",
                self.what, self.map[k]
            ))),
        }
    }
}

/// The float types the CPU reference computes in; anything else (float16, bfloat16, mixed
/// precision) would change the numbers.
pub(super) fn check_dtype(what: &str, v: Option<Value>, allow_int: bool) -> Result<()> {
    let name = match &v {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o
            .get("config")
            .and_then(|c| c.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        Some(other) => return Err(unsupported(what, "dtype", other, "not a dtype policy")),
    };
    let ints = [
        "int32", "int64", "uint8", "int16", "int8", "uint16", "uint32",
    ];
    if name == "float32" || name == "float64" || (allow_int && ints.contains(&name.as_str())) {
        Ok(())
    } else {
        Err(unsupported(
            what,
            "dtype",
            v.as_ref().unwrap_or(&Value::Null),
            "only float32 and float64 compute dtypes are supported",
        ))
    }
}

pub(super) fn activation(
    what: &str,
    key: &str,
    v: Option<Value>,
    default: Activation,
) -> Result<Activation> {
    match v {
        None => Ok(default),
        Some(Value::Null) => Ok(Activation::Linear),
        Some(Value::String(s)) => Activation::from_keras(&s)
            .map_err(|_| unsupported(what, key, &Value::String(s.clone()), SUPPORTED_ACT)),
        Some(v) => Err(unsupported(what, key, &v, SUPPORTED_ACT)),
    }
}

const SUPPORTED_ACT: &str = "supported: tanh, relu, sigmoid, hard_sigmoid, linear";

pub(super) fn dense_activation(what: &str, v: Option<Value>) -> Result<DenseActivation> {
    if let Some(Value::String(s)) = &v
        && s == "softmax"
    {
        return Ok(DenseActivation::Softmax);
    }
    let shown = v.clone().unwrap_or(Value::Null);
    activation(what, "activation", v, Activation::Linear)
        .map(DenseActivation::Elementwise)
        .map_err(|_| {
            Error::Unsupported(format!(
                "{what}: activation = {shown} (supported: linear, relu, tanh, sigmoid, \
                 hard_sigmoid, softmax)"
            ))
        })
}

/// `{"class_name": C, "config": {...}}` or a bare name string, as Keras serializes objects.
pub(super) fn class_and_config(v: &Value) -> Option<(String, Value)> {
    match v {
        Value::String(s) => Some((s.clone(), Value::Object(Map::new()))),
        Value::Object(o) => Some((
            o.get("class_name")?.as_str()?.to_string(),
            o.get("config")
                .cloned()
                .unwrap_or(Value::Object(Map::new())),
        )),
        _ => None,
    }
}

pub(super) fn regularizer(what: &str, key: &str, v: Option<Value>) -> Result<Option<Regularizer>> {
    let v = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let bad = |why: &str| unsupported(what, key, &v, why);
    let (class, cfg) = class_and_config(&v).ok_or_else(|| bad("not a regularizer"))?;
    let num = |k: &str, d: f64| -> Result<f64> {
        match cfg.get(k) {
            None | Some(Value::Null) => Ok(d),
            Some(x) => x.as_f64().ok_or_else(|| bad("coefficient is not a number")),
        }
    };
    let r = match class.as_str() {
        "L1" | "l1" => Regularizer {
            l1: num("l1", 0.01)?,
            l2: 0.0,
        },
        "L2" | "l2" => Regularizer {
            l1: 0.0,
            l2: num("l2", 0.01)?,
        },
        "L1L2" | "l1_l2" => Regularizer {
            l1: num("l1", 0.0)?,
            l2: num("l2", 0.0)?,
        },
        _ => return Err(bad("supported regularizers: L1, L2, L1L2")),
    };
    if let Some(o) = cfg.as_object()
        && let Some(k) = o.keys().find(|k| !["l1", "l2"].contains(&k.as_str()))
    {
        return Err(bad(&format!("unknown regularizer key {k:?}")));
    }
    Ok(Some(r))
}

pub(super) fn initializer(v: Option<Value>, default: Init) -> Init {
    let Some(v) = v else { return default };
    let Some((class, cfg)) = class_and_config(&v) else {
        return Init::Other(v.to_string());
    };
    let num = |k: &str, d: f64| cfg.get(k).and_then(Value::as_f64).unwrap_or(d);
    match class.as_str() {
        "GlorotUniform" | "glorot_uniform" => Init::GlorotUniform,
        "GlorotNormal" | "glorot_normal" => Init::GlorotNormal,
        "HeUniform" | "he_uniform" => Init::HeUniform,
        "LecunUniform" | "lecun_uniform" => Init::LecunUniform,
        "Orthogonal" | "orthogonal" => Init::Orthogonal {
            gain: num("gain", 1.0),
        },
        "Zeros" | "zeros" => Init::Zeros,
        "Ones" | "ones" => Init::Ones,
        "Constant" | "constant" => Init::Constant(num("value", 0.0)),
        "RandomUniform" | "random_uniform" | "uniform" => Init::RandomUniform {
            min: num("minval", -0.05),
            max: num("maxval", 0.05),
        },
        "RandomNormal" | "random_normal" | "normal" => Init::RandomNormal {
            mean: num("mean", 0.0),
            stddev: num("stddev", 0.05),
        },
        "TruncatedNormal" | "truncated_normal" => Init::TruncatedNormal {
            mean: num("mean", 0.0),
            stddev: num("stddev", 0.05),
        },
        other => Init::Other(other.to_string()),
    }
}
