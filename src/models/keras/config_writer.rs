//! Writes a [`ModelSpec`] back as a Keras 3 config — the dict `Sequential.get_config()`
//! returns, with the keys, nesting and serialized objects (`DTypePolicy`, initializers,
//! regularizers, wrapped layers, `build_config`) Keras 3.15 writes — and saves / loads a
//! model as a directory holding that config and its weights.
//!
//! The written config is checked by reading it back with the crate's own parser: a spec the
//! parser would read differently (a hand-built one Keras cannot express, such as a
//! Bidirectional direction not named `forward_…`) is an error, never a config that silently
//! loads as another model. Two fields have no Keras key and are not written: a SimpleRNN's
//! `recurrent_activation` (the cell has none) and the input's `integer` flag (Keras derives the
//! input dtype from the first layer: `int32` before an Embedding, else `float32`).
//!
//! The model's compute dtype is not part of a spec, so every `DTypePolicy` is written as
//! `float32` (the backends choose their own precision). `serde_json` here keeps object keys
//! sorted, so key order differs from Keras' (JSON objects are unordered; Keras does not care).

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::config;
use super::plan::{ModelSpec, PlannedLayer};
use super::spec::{
    CellKind, DenseActivation, DenseSpec, Init, LayerKind, MergeMode, Regularizer, RnnSpec, Shape,
};
use super::weights::ModelWeights;
use crate::cpu::Activation;
use crate::error::{Error, Result};
use crate::weights::safetensors_io;

/// The file a saved model's config is written to (the name `.keras` archives use).
pub(super) const CONFIG_FILE: &str = "config.json";
/// The file a saved model's weights are written to: f32 tensors keyed by Keras weight path.
pub(super) const WEIGHTS_FILE: &str = "model.weights.safetensors";

/// Keras' `DTypePolicy` dict; the spec does not record a compute dtype (see the module docs).
fn policy() -> Value {
    json!({
        "module": "keras",
        "class_name": "DTypePolicy",
        "config": {"name": "float32"},
        "registered_name": null
    })
}

/// A finite float; JSON has no NaN or infinity (`serde_json` would write `null`, which reads
/// back as the key's default, so it is refused instead).
fn number(what: &str, key: &str, v: f64) -> Result<Value> {
    serde_json::Number::from_f64(v)
        .map(Value::Number)
        .ok_or_else(|| {
            Error::Config(format!(
                "{what}: {key} = {v} cannot be written to a Keras config (JSON numbers are \
                 finite)"
            ))
        })
}

fn shape(s: &Shape) -> Value {
    Value::Array(
        s.iter()
            .map(|d| d.map_or(Value::Null, Value::from))
            .collect(),
    )
}

fn build_config(input: &Shape) -> Value {
    json!({ "input_shape": shape(input) })
}

fn activation(a: Activation) -> Value {
    Value::from(match a {
        Activation::Tanh => "tanh",
        Activation::Relu => "relu",
        Activation::Sigmoid => "sigmoid",
        Activation::HardSigmoid => "hard_sigmoid",
        Activation::Linear => "linear",
    })
}

fn dense_activation(a: DenseActivation) -> Value {
    match a {
        DenseActivation::Softmax => Value::from("softmax"),
        DenseActivation::Elementwise(a) => activation(a),
    }
}

/// Keras' serialized initializer: `{"module": "keras.initializers", "class_name": …,
/// "config": {…}, "registered_name": null}`.
fn initializer(what: &str, key: &str, init: &Init) -> Result<Value> {
    let n = |k: &str, v: f64| number(what, &format!("{key} {k}"), v);
    let (class, cfg) = match init {
        Init::GlorotUniform => ("GlorotUniform", json!({"seed": null})),
        Init::GlorotNormal => ("GlorotNormal", json!({"seed": null})),
        Init::HeUniform => ("HeUniform", json!({"seed": null})),
        Init::LecunUniform => ("LecunUniform", json!({"seed": null})),
        Init::Orthogonal { gain } => (
            "Orthogonal",
            json!({"seed": null, "gain": n("gain", *gain)?}),
        ),
        Init::Zeros => ("Zeros", json!({})),
        Init::Ones => ("Ones", json!({})),
        Init::Constant(c) => ("Constant", json!({"value": n("value", *c)?})),
        Init::RandomUniform { min, max } => (
            "RandomUniform",
            json!({"seed": null, "minval": n("minval", *min)?, "maxval": n("maxval", *max)?}),
        ),
        Init::RandomNormal { mean, stddev } => (
            "RandomNormal",
            json!({"seed": null, "mean": n("mean", *mean)?, "stddev": n("stddev", *stddev)?}),
        ),
        Init::TruncatedNormal { mean, stddev } => (
            "TruncatedNormal",
            json!({"seed": null, "mean": n("mean", *mean)?, "stddev": n("stddev", *stddev)?}),
        ),
        Init::UnitForgetBias { .. } => {
            return Err(Error::Unsupported(format!(
                "{what}: {key} is UnitForgetBias, which Keras expresses as the LSTM's \
                 unit_forget_bias option, not as an initializer"
            )));
        }
        // Kept by name because fresh weights cannot be drawn from it; written back by name.
        Init::Other(name) => (name.as_str(), json!({})),
    };
    Ok(json!({
        "module": "keras.initializers",
        "class_name": class,
        "config": cfg,
        "registered_name": null
    }))
}

/// Keras' serialized regularizer: `L1`, `L2` or `L1L2` as Keras itself would write it.
fn regularizer(what: &str, key: &str, r: Option<Regularizer>) -> Result<Value> {
    let Some(r) = r else { return Ok(Value::Null) };
    let l1 = number(what, &format!("{key} l1"), r.l1)?;
    let l2 = number(what, &format!("{key} l2"), r.l2)?;
    let (class, cfg) = match (r.l1 == 0.0, r.l2 == 0.0) {
        (false, true) => ("L1", json!({ "l1": l1 })),
        (true, false) => ("L2", json!({ "l2": l2 })),
        _ => ("L1L2", json!({ "l1": l1, "l2": l2 })),
    };
    Ok(json!({
        "module": "keras.regularizers",
        "class_name": class,
        "config": cfg,
        "registered_name": null
    }))
}

/// `(key, serialized initializer)` for a layer config.
fn init_kv<'k>(what: &str, key: &'k str, init: &Init) -> Result<(&'k str, Value)> {
    Ok((key, initializer(what, key, init)?))
}

/// `(key, serialized regularizer)` for a layer config.
fn reg_kv<'k>(what: &str, key: &'k str, r: Option<Regularizer>) -> Result<(&'k str, Value)> {
    Ok((key, regularizer(what, key, r)?))
}

/// One entry of a `layers` list (or a wrapper's `layer`).
fn entry(class: &str, config: Map<String, Value>, build: Option<&Shape>) -> Value {
    let mut m = Map::new();
    m.insert("module".into(), "keras.layers".into());
    m.insert("class_name".into(), class.into());
    m.insert("config".into(), Value::Object(config));
    m.insert("registered_name".into(), Value::Null);
    if let Some(s) = build {
        m.insert("build_config".into(), build_config(s));
    }
    Value::Object(m)
}

/// The keys every layer config starts with.
fn base(name: &str, trainable: bool) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("name".into(), name.into());
    c.insert("trainable".into(), trainable.into());
    c.insert("dtype".into(), policy());
    c
}

fn put(c: &mut Map<String, Value>, pairs: Vec<(&str, Value)>) {
    for (k, v) in pairs {
        c.insert(k.to_string(), v);
    }
}

/// `LSTM` / `GRU` / `SimpleRNN` config: the keys Keras 3.15 writes for each class.
fn rnn(r: &RnnSpec) -> Result<Map<String, Value>> {
    let what = format!("layer {:?} ({})", r.name, r.cell.class_name());
    let w = what.as_str();
    let mut c = base(&r.name, r.trainable);
    put(
        &mut c,
        vec![
            ("return_sequences", r.return_sequences.into()),
            ("return_state", r.return_state.into()),
            ("go_backwards", r.go_backwards.into()),
            ("stateful", r.stateful.into()),
            ("unroll", false.into()),
            ("zero_output_for_mask", r.zero_output_for_mask.into()),
            ("units", r.units.into()),
            ("activation", activation(r.activation)),
            ("use_bias", r.use_bias.into()),
            init_kv(w, "kernel_initializer", &r.kernel_initializer)?,
            init_kv(w, "recurrent_initializer", &r.recurrent_initializer)?,
            init_kv(w, "bias_initializer", &r.bias_initializer)?,
            reg_kv(w, "kernel_regularizer", r.kernel_regularizer)?,
            reg_kv(w, "recurrent_regularizer", r.recurrent_regularizer)?,
            reg_kv(w, "bias_regularizer", r.bias_regularizer)?,
            ("activity_regularizer", Value::Null),
            ("kernel_constraint", Value::Null),
            ("recurrent_constraint", Value::Null),
            ("bias_constraint", Value::Null),
            ("dropout", number(w, "dropout", r.dropout)?),
            (
                "recurrent_dropout",
                number(w, "recurrent_dropout", r.recurrent_dropout)?,
            ),
        ],
    );
    match r.cell {
        CellKind::Lstm { unit_forget_bias } => put(
            &mut c,
            vec![
                ("recurrent_activation", activation(r.recurrent_activation)),
                ("unit_forget_bias", unit_forget_bias.into()),
                ("seed", Value::Null),
            ],
        ),
        CellKind::Gru { reset_after } => put(
            &mut c,
            vec![
                ("recurrent_activation", activation(r.recurrent_activation)),
                ("reset_after", reset_after.into()),
                ("seed", Value::Null),
            ],
        ),
        // Keras' SimpleRNN has neither a recurrent activation nor a seed key.
        CellKind::SimpleRnn => {}
    }
    Ok(c)
}

fn dense(d: &DenseSpec) -> Result<Map<String, Value>> {
    let what = format!("layer {:?} (Dense)", d.name);
    let w = what.as_str();
    let mut c = base(&d.name, d.trainable);
    put(
        &mut c,
        vec![
            ("units", d.units.into()),
            ("activation", dense_activation(d.activation)),
            ("use_bias", d.use_bias.into()),
            init_kv(w, "kernel_initializer", &d.kernel_initializer)?,
            init_kv(w, "bias_initializer", &d.bias_initializer)?,
            reg_kv(w, "kernel_regularizer", d.kernel_regularizer)?,
            reg_kv(w, "bias_regularizer", d.bias_regularizer)?,
            ("kernel_constraint", Value::Null),
            ("bias_constraint", Value::Null),
            ("quantization_config", Value::Null),
        ],
    );
    Ok(c)
}

/// Names and flags the parser derives from a single key: a spec where they disagree has no
/// Keras config, so it is refused with what differs.
fn expressible(l: &PlannedLayer, model_trainable: bool) -> Result<()> {
    let s = &l.spec;
    let what = format!("layer {:?} ({})", s.name, s.class_name());
    let refuse = |why: String| Err(Error::Unsupported(format!("{what}: {why}")));
    match &s.kind {
        LayerKind::Rnn(r) if r.name != s.name => refuse(format!(
            "its cell is named {:?}; Keras has one name",
            r.name
        )),
        LayerKind::Dense(d) if d.name != s.name => refuse(format!(
            "its Dense is named {:?}; Keras has one name",
            d.name
        )),
        LayerKind::Rnn(RnnSpec { trainable, .. })
        | LayerKind::Dense(DenseSpec { trainable, .. })
            if model_trainable && *trainable != s.trainable =>
        {
            refuse(format!(
                "trainable is {} for the layer but {trainable} for its weights; Keras has \
                 one flag",
                s.trainable
            ))
        }
        LayerKind::Bidirectional {
            forward, backward, ..
        } => {
            for (dir, r) in [("forward", forward), ("backward", backward)] {
                if !r.name.starts_with(&format!("{dir}_")) {
                    return refuse(format!(
                        "its {dir} layer is named {:?}; Keras names it {dir}_<name>",
                        r.name
                    ));
                }
                if r.zero_output_for_mask != r.return_sequences {
                    return refuse(format!(
                        "its {dir} layer has zero_output_for_mask={} with \
                         return_sequences={}; Keras' Bidirectional ties the two",
                        r.zero_output_for_mask, r.return_sequences
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The config dict of one layer and its class.
fn layer(l: &PlannedLayer) -> Result<Value> {
    let s = &l.spec;
    let what = format!("layer {:?} ({})", s.name, s.class_name());
    let input = &l.input_shape;
    Ok(match &s.kind {
        LayerKind::Embedding {
            input_dim,
            output_dim,
            mask_zero,
            regularizer: reg,
            initializer: init,
        } => {
            let mut c = base(&s.name, s.trainable);
            put(
                &mut c,
                vec![
                    ("input_dim", (*input_dim).into()),
                    ("output_dim", (*output_dim).into()),
                    init_kv(&what, "embeddings_initializer", init)?,
                    reg_kv(&what, "embeddings_regularizer", *reg)?,
                    ("activity_regularizer", Value::Null),
                    ("embeddings_constraint", Value::Null),
                    ("mask_zero", (*mask_zero).into()),
                    ("quantization_config", Value::Null),
                ],
            );
            entry("Embedding", c, Some(input))
        }
        LayerKind::Masking { mask_value } => {
            let mut c = base(&s.name, s.trainable);
            c.insert(
                "mask_value".into(),
                number(&what, "mask_value", *mask_value)?,
            );
            entry("Masking", c, None)
        }
        LayerKind::Dropout { rate } => {
            let mut c = base(&s.name, s.trainable);
            put(
                &mut c,
                vec![
                    ("rate", number(&what, "rate", *rate)?),
                    ("seed", Value::Null),
                    ("noise_shape", Value::Null),
                ],
            );
            entry("Dropout", c, None)
        }
        LayerKind::Dense(d) => entry("Dense", dense(d)?, Some(input)),
        LayerKind::TimeDistributed(d) => {
            let mut c = base(&s.name, s.trainable);
            // The wrapped Dense is built on one step: (batch, features).
            let step = vec![input[0], *input.last().unwrap_or(&None)];
            c.insert("layer".into(), entry("Dense", dense(d)?, Some(&step)));
            entry("TimeDistributed", c, Some(input))
        }
        LayerKind::Rnn(r) => entry(r.cell.class_name(), rnn(r)?, Some(input)),
        LayerKind::Bidirectional {
            forward,
            backward,
            merge,
        } => {
            let mut c = base(&s.name, s.trainable);
            let merge = match merge {
                MergeMode::Concat => "concat".into(),
                MergeMode::Sum => "sum".into(),
                MergeMode::Mul => "mul".into(),
                MergeMode::Ave => "ave".into(),
                MergeMode::None => Value::Null,
            };
            put(
                &mut c,
                vec![
                    ("merge_mode", merge),
                    (
                        "layer",
                        entry(forward.cell.class_name(), rnn(forward)?, Some(input)),
                    ),
                    (
                        "backward_layer",
                        entry(backward.cell.class_name(), rnn(backward)?, Some(input)),
                    ),
                ],
            );
            entry("Bidirectional", c, Some(input))
        }
    })
}

/// The spec as the parser reads it back: the fields with no Keras key at their derived values
/// (neither changes a shape or a weight, so the planned layers stay valid).
fn normalized(spec: &ModelSpec) -> ModelSpec {
    let mut s = spec.clone();
    s.input.integer = matches!(
        s.layers.first().map(|l| &l.spec.kind),
        Some(LayerKind::Embedding { .. })
    );
    let fix = |r: &mut RnnSpec| {
        if r.cell == CellKind::SimpleRnn {
            r.recurrent_activation = Activation::Sigmoid;
        }
    };
    for l in &mut s.layers {
        match &mut l.spec.kind {
            LayerKind::Rnn(r) => fix(r),
            LayerKind::Bidirectional {
                forward, backward, ..
            } => {
                fix(forward);
                fix(backward);
            }
            _ => {}
        }
    }
    s
}

impl ModelSpec {
    /// The model as Keras 3's `Sequential.get_config()` dict: `{"name", "trainable", "dtype",
    /// "layers": [InputLayer, …], "build_input_shape"}`, each layer with every key Keras 3.15
    /// writes for its class. `Sequential.from_config` in Keras, and
    /// [`parse_config`](super::parse_config) here, read it back; the latter gives this exact
    /// spec (checked before returning). A spec Keras cannot express is an
    /// `Error::Unsupported` naming the layer and the field; a non-finite number an
    /// `Error::Config` naming the key.
    pub fn to_config(&self) -> Result<Value> {
        // Keras' model-level `trainable=False` freezes every layer while each keeps its own
        // flag; a model whose layers are all frozen is written that way.
        let model_trainable = self.layers.iter().any(|l| l.spec.trainable);
        let input: Shape = std::iter::once(self.input.batch)
            .chain(self.input.dims.iter().copied())
            .collect();
        let integer = matches!(
            self.layers.first().map(|l| &l.spec.kind),
            Some(LayerKind::Embedding { .. })
        );
        let mut in_cfg = Map::new();
        put(
            &mut in_cfg,
            vec![
                ("batch_shape", shape(&input)),
                ("dtype", if integer { "int32" } else { "float32" }.into()),
                ("sparse", false.into()),
                ("ragged", false.into()),
                ("name", "input_layer".into()),
                ("optional", false.into()),
            ],
        );
        let mut layers = vec![entry("InputLayer", in_cfg, None)];
        for l in &self.layers {
            expressible(l, model_trainable)?;
            layers.push(layer(l)?);
        }
        let cfg = json!({
            "name": self.name,
            "trainable": model_trainable,
            "dtype": policy(),
            "layers": layers,
            "build_input_shape": shape(&input),
        });
        self.check_reads_back(&cfg)?;
        Ok(cfg)
    }

    /// The `config.json` of a `.keras` archive: [`ModelSpec::to_config`] wrapped as
    /// `{"module": "keras", "class_name": "Sequential", "config": …, "build_config": …}`
    /// (what `keras.models.model_from_json` reads).
    pub fn to_keras_file_config(&self) -> Result<Value> {
        let cfg = self.to_config()?;
        let input = cfg["build_input_shape"].clone();
        Ok(json!({
            "module": "keras",
            "class_name": "Sequential",
            "config": cfg,
            "registered_name": null,
            "build_config": {"input_shape": input},
        }))
    }

    /// The backstop of [`ModelSpec::to_config`]: the parser must read `cfg` as this spec.
    fn check_reads_back(&self, cfg: &Value) -> Result<()> {
        let back = config::parse(cfg)
            .map_err(|e| {
                Error::Unsupported(format!(
                    "model {:?}: its written config does not read back ({e})",
                    self.name
                ))
            })?
            .spec;
        let want = normalized(self);
        if back == want {
            return Ok(());
        }
        let differs = want
            .layers
            .iter()
            .zip(&back.layers)
            .find(|(a, b)| a != b)
            .map_or_else(
                || format!("the model's input or name ({:?})", back.input),
                |(a, b)| {
                    format!(
                        "layer {:?}: {:?} reads back as {:?}",
                        a.spec.name, a.spec, b.spec
                    )
                },
            );
        Err(Error::Unsupported(format!(
            "model {:?} has no Keras config that reads back as it: {differs}",
            self.name
        )))
    }
}

/// `e` with `path` in its message (I/O errors already name their file).
fn in_file(path: &Path, e: Error) -> Error {
    let p = path.display();
    match e {
        Error::Config(m) => Error::Config(format!("{p}: {m}")),
        Error::Unsupported(m) => Error::Unsupported(format!("{p}: {m}")),
        Error::Weights(m) => Error::Weights(format!("{p}: {m}")),
        Error::Shape(m) => Error::Shape(format!("{p}: {m}")),
        Error::Limit(m) => Error::Limit(format!("{p}: {m}")),
        Error::Format(m) => Error::Format(format!("{p}: {m}")),
        Error::Data(m) => Error::Data(format!("{p}: {m}")),
        other => other,
    }
}

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    }
}

/// Writes a file through a sibling temporary file and a rename, so an interrupted save never
/// leaves a truncated file under the final name.
fn replace_file(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    write(&tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

/// Saves `spec` and `weights` into `dir` (created if missing): [`CONFIG_FILE`] holds
/// [`ModelSpec::to_keras_file_config`], [`WEIGHTS_FILE`] every weight as f32 under its Keras
/// path (no prefix), with `format` and `model` metadata.
pub(super) fn save(spec: &ModelSpec, weights: &ModelWeights, dir: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(&spec.to_keras_file_config()?)
        .map_err(|e| Error::Format(format!("model {:?}: config JSON: {e}", spec.name)))?;
    let tensors = weights.to_tensors("");
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let config_path = dir.join(CONFIG_FILE);
    replace_file(&config_path, |p| {
        std::fs::write(p, format!("{text}\n")).map_err(|e| io(p, e))
    })?;
    let meta = [
        ("format".to_string(), "keras-weights-by-path".to_string()),
        ("model".to_string(), spec.name.clone()),
    ];
    replace_file(&dir.join(WEIGHTS_FILE), |p| {
        safetensors_io::write(p, &tensors, Some(meta.into_iter().collect()))
    })
}

/// Reads what [`save`] wrote (or a `.keras` archive's extracted `config.json` beside a
/// safetensors file of Keras-path weights): both must be regular files within the host-memory
/// cap; every weight of the config is required with its exact shape and no other is accepted.
/// Errors name the file and, for weights, the key.
pub(super) fn load(dir: &Path) -> Result<(ModelSpec, ModelWeights)> {
    let config_path = dir.join(CONFIG_FILE);
    let bytes = crate::limits::read_regular_file(&config_path)?;
    let text = String::from_utf8(bytes).map_err(|e| io(&config_path, e))?;
    let spec = config::parse_str(&text)
        .map_err(|e| in_file(&config_path, e))?
        .spec;
    let weights_path = dir.join(WEIGHTS_FILE);
    let file = safetensors_io::read(&weights_path).map_err(|e| in_file(&weights_path, e))?;
    let weights = ModelWeights::from_tensors(&spec, &file.tensors, "")
        .map_err(|e| in_file(&weights_path, e))?;
    Ok((spec, weights))
}
