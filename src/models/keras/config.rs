//! Reads a Keras `Sequential` config — what `model.get_config()` returns, or the
//! `config.json` of a `.keras` file (the same dict wrapped in `{"class_name": "Sequential",
//! "config": …}`), Keras 2 `to_json()` included — into a [`ModelSpec`].
//!
//! Every key of every layer is looked at: keys that cannot change the maths (names, seeds,
//! initializers, `unroll`, …) are accepted whatever their value; keys that can are read, or
//! accepted only at the value that leaves the maths unchanged (`activity_regularizer: null`,
//! constraints `null`, `time_major: false`, …); any other key or value is an
//! `Error::Unsupported` naming the layer, the key and the value. Nothing is ignored silently.

use serde_json::Value;

use super::config_values::{
    Keys, activation, check_dtype, dense_activation, initializer, regularizer, unsupported,
};
use super::loss::KerasLoss;
use super::plan::ModelSpec;
use super::spec::{
    CellKind, DenseActivation, DenseSpec, Init, InputSpec, LayerKind, LayerSpec, MergeMode, RnnSpec,
};
use crate::cpu::Activation;
use crate::error::{Error, Result};

/// A parsed config: the model and, when the config carries a `compile_config`, its loss.
#[derive(Clone, Debug)]
pub struct ParsedConfig {
    /// The model.
    pub spec: ModelSpec,
    /// The compiled loss (`.keras` files carry it), if any.
    pub loss: Option<KerasLoss>,
}

/// Keys every layer may carry that do not change the maths, and the base ones that might.
fn base_keys(k: &mut Keys) -> Result<(String, bool)> {
    let name = match k.take("name") {
        Some(Value::String(s)) => s,
        Some(v) => return Err(Error::Config(format!("{}: name = {v}", k.what))),
        None => return Err(Error::Config(format!("{}: name is missing", k.what))),
    };
    k.what = format!("layer {name:?} ({})", k.what);
    let trainable = k.bool("trainable", true)?;
    let what = k.what.clone();
    check_dtype(&what, k.take("dtype"), false)?;
    k.only(
        "activity_regularizer",
        &[Value::Null],
        "activity regularizers are not supported",
    )?;
    // Keras 2 configs repeat the input shape on the first layer; read by `input_spec`.
    k.neutral(&[
        "batch_input_shape",
        "batch_shape",
        "input_shape",
        "input_dim_",
    ]);
    Ok((name, trainable))
}

fn no_constraints(k: &mut Keys, keys: &[&str]) -> Result<()> {
    for key in keys {
        k.only(
            key,
            &[Value::Null],
            "weight constraints act on optimizer updates, which this crate does not apply",
        )?;
    }
    Ok(())
}

fn no_quantization(k: &mut Keys) -> Result<()> {
    k.only(
        "quantization_config",
        &[Value::Null],
        "quantized layers are not supported",
    )?;
    k.only(
        "lora_rank",
        &[Value::Null, Value::from(0)],
        "LoRA is not supported",
    )?;
    k.neutral(&["lora_alpha"]);
    Ok(())
}

fn rnn(class: &str, v: &Value, force_name: Option<&str>) -> Result<(RnnSpec, bool)> {
    let mut k = Keys::new(class.to_string(), v)?;
    let (name, trainable) = base_keys(&mut k)?;
    let what = k.what.clone();
    let cell = match class {
        "LSTM" => CellKind::Lstm {
            unit_forget_bias: k.bool("unit_forget_bias", true)?,
        },
        "GRU" => CellKind::Gru {
            reset_after: k.bool("reset_after", true)?,
        },
        _ => CellKind::SimpleRnn,
    };
    let units = k.usize("units")?;
    let mut r = RnnSpec::new(force_name.unwrap_or(&name), cell, units);
    r.trainable = trainable;
    r.activation = activation(&what, "activation", k.take("activation"), Activation::Tanh)?;
    if class != "SimpleRNN" {
        r.recurrent_activation = activation(
            &what,
            "recurrent_activation",
            k.take("recurrent_activation"),
            Activation::Sigmoid,
        )?;
    }
    r.use_bias = k.bool("use_bias", true)?;
    r.return_sequences = k.bool("return_sequences", false)?;
    r.return_state = k.bool("return_state", false)?;
    r.go_backwards = k.bool("go_backwards", false)?;
    r.stateful = k.bool("stateful", false)?;
    r.zero_output_for_mask = k.bool("zero_output_for_mask", false)?;
    r.dropout = k.f64("dropout", 0.0)?;
    r.recurrent_dropout = k.f64("recurrent_dropout", 0.0)?;
    r.kernel_regularizer = regularizer(&what, "kernel_regularizer", k.take("kernel_regularizer"))?;
    r.recurrent_regularizer = regularizer(
        &what,
        "recurrent_regularizer",
        k.take("recurrent_regularizer"),
    )?;
    r.bias_regularizer = regularizer(&what, "bias_regularizer", k.take("bias_regularizer"))?;
    r.kernel_initializer = initializer(k.take("kernel_initializer"), Init::GlorotUniform);
    r.recurrent_initializer = initializer(
        k.take("recurrent_initializer"),
        Init::Orthogonal { gain: 1.0 },
    );
    r.bias_initializer = initializer(k.take("bias_initializer"), Init::Zeros);
    no_constraints(
        &mut k,
        &[
            "kernel_constraint",
            "recurrent_constraint",
            "bias_constraint",
        ],
    )?;
    k.only(
        "time_major",
        &[Value::Bool(false)],
        "time-major input is not supported",
    )?;
    // `unroll`, `implementation` and `use_cudnn` choose how Keras computes, not what.
    k.neutral(&["seed", "unroll", "implementation", "use_cudnn"]);
    k.finish()?;
    Ok((r, trainable))
}

fn dense(v: &Value) -> Result<(DenseSpec, bool)> {
    let mut k = Keys::new("Dense".into(), v)?;
    let (name, trainable) = base_keys(&mut k)?;
    let what = k.what.clone();
    let mut d = DenseSpec::new(&name, k.usize("units")?, DenseActivation::Softmax);
    d.trainable = trainable;
    d.activation = dense_activation(&what, k.take("activation"))?;
    d.use_bias = k.bool("use_bias", true)?;
    d.kernel_regularizer = regularizer(&what, "kernel_regularizer", k.take("kernel_regularizer"))?;
    d.bias_regularizer = regularizer(&what, "bias_regularizer", k.take("bias_regularizer"))?;
    d.kernel_initializer = initializer(k.take("kernel_initializer"), Init::GlorotUniform);
    d.bias_initializer = initializer(k.take("bias_initializer"), Init::Zeros);
    no_constraints(&mut k, &["kernel_constraint", "bias_constraint"])?;
    no_quantization(&mut k)?;
    k.finish()?;
    Ok((d, trainable))
}

/// The inner layer of a wrapper: `{"class_name": …, "config": …}`.
fn inner<'v>(what: &str, v: Option<&'v Value>) -> Result<(&'v str, &'v Value)> {
    let v = v.ok_or_else(|| Error::Config(format!("{what}: the wrapped layer is missing")))?;
    let class = v
        .get("class_name")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Config(format!("{what}: wrapped layer has no class_name")))?;
    let cfg = v
        .get("config")
        .ok_or_else(|| Error::Config(format!("{what}: wrapped layer has no config")))?;
    Ok((class, cfg))
}

fn bidirectional(v: &Value) -> Result<(String, bool, LayerKind)> {
    let mut k = Keys::new("Bidirectional".into(), v)?;
    let (name, trainable) = base_keys(&mut k)?;
    let what = k.what.clone();
    let merge = match k.take("merge_mode") {
        None => MergeMode::Concat,
        Some(Value::Null) => MergeMode::None,
        Some(Value::String(s)) => match s.as_str() {
            "concat" => MergeMode::Concat,
            "sum" => MergeMode::Sum,
            "mul" => MergeMode::Mul,
            "ave" => MergeMode::Ave,
            _ => {
                return Err(unsupported(
                    &what,
                    "merge_mode",
                    &Value::String(s),
                    "expected concat, sum, mul, ave or null",
                ));
            }
        },
        Some(v) => return Err(unsupported(&what, "merge_mode", &v, "not a merge mode")),
    };
    let layer = k.take("layer");
    let (fclass, fcfg) = inner(&what, layer.as_ref())?;
    check_rnn_class(&what, fclass)?;
    let (mut forward, _) = rnn(fclass, fcfg, None)?;
    let backward_v = k.take("backward_layer");
    let mut backward = match backward_v.as_ref() {
        None | Some(Value::Null) => {
            // Keras copies the layer's config with go_backwards flipped.
            let (mut b, _) = rnn(fclass, fcfg, None)?;
            b.go_backwards = !forward.go_backwards;
            let base = forward
                .name
                .strip_prefix("forward_")
                .unwrap_or(&forward.name)
                .to_string();
            b.name = format!("backward_{base}");
            b
        }
        Some(b) => {
            let (bclass, bcfg) = inner(&what, Some(b))?;
            check_rnn_class(&what, bclass)?;
            rnn(bclass, bcfg, None)?.0
        }
    };
    if !forward.name.starts_with("forward_") {
        forward.name = format!("forward_{}", forward.name);
    }
    if !backward.name.starts_with("backward_") {
        backward.name = format!("backward_{}", backward.name);
    }
    // Keras forces this on both directions (Bidirectional.__init__).
    forward.zero_output_for_mask = forward.return_sequences;
    backward.zero_output_for_mask = backward.return_sequences;
    k.finish()?;
    Ok((
        name,
        trainable,
        LayerKind::Bidirectional {
            forward: Box::new(forward),
            backward: Box::new(backward),
            merge,
        },
    ))
}

fn check_rnn_class(what: &str, class: &str) -> Result<()> {
    if ["LSTM", "GRU", "SimpleRNN"].contains(&class) {
        Ok(())
    } else {
        Err(Error::Unsupported(format!(
            "{what}: wraps a {class}; supported: LSTM, GRU, SimpleRNN"
        )))
    }
}

/// One entry of `layers` (not InputLayer).
fn layer(class: &str, v: &Value) -> Result<LayerSpec> {
    let (name, trainable, kind) = match class {
        "LSTM" | "GRU" | "SimpleRNN" => {
            let (r, t) = rnn(class, v, None)?;
            (r.name.clone(), t, LayerKind::Rnn(r))
        }
        "Dense" => {
            let (d, t) = dense(v)?;
            (d.name.clone(), t, LayerKind::Dense(d))
        }
        "Bidirectional" => bidirectional(v)?,
        "TimeDistributed" => {
            let mut k = Keys::new(class.into(), v)?;
            let (name, trainable) = base_keys(&mut k)?;
            let what = k.what.clone();
            let layer = k.take("layer");
            let (iclass, icfg) = inner(&what, layer.as_ref())?;
            if iclass != "Dense" {
                return Err(Error::Unsupported(format!(
                    "{what}: wraps a {iclass}; only TimeDistributed(Dense) is supported"
                )));
            }
            let (d, _) = dense(icfg)?;
            k.finish()?;
            (name, trainable, LayerKind::TimeDistributed(d))
        }
        "Embedding" => {
            let mut k = Keys::new(class.into(), v)?;
            let (name, trainable) = base_keys(&mut k)?;
            let what = k.what.clone();
            let input_dim = k.usize("input_dim")?;
            let output_dim = k.usize("output_dim")?;
            let mask_zero = k.bool("mask_zero", false)?;
            let regularizer = regularizer(
                &what,
                "embeddings_regularizer",
                k.take("embeddings_regularizer"),
            )?;
            let initializer = initializer(
                k.take("embeddings_initializer"),
                Init::RandomUniform {
                    min: -0.05,
                    max: 0.05,
                },
            );
            no_constraints(&mut k, &["embeddings_constraint"])?;
            no_quantization(&mut k)?;
            k.only(
                "sparse",
                &[Value::Bool(false)],
                "sparse gradients are not supported",
            )?;
            // Keras 2's `input_length` only fixes the shape.
            k.neutral(&["input_length"]);
            k.finish()?;
            (
                name,
                trainable,
                LayerKind::Embedding {
                    input_dim,
                    output_dim,
                    mask_zero,
                    regularizer,
                    initializer,
                },
            )
        }
        "Masking" => {
            let mut k = Keys::new(class.into(), v)?;
            let (name, trainable) = base_keys(&mut k)?;
            let mask_value = k.f64("mask_value", 0.0)?;
            k.finish()?;
            (name, trainable, LayerKind::Masking { mask_value })
        }
        "Dropout" => {
            let mut k = Keys::new(class.into(), v)?;
            let (name, trainable) = base_keys(&mut k)?;
            let rate = k.f64("rate", 0.0)?;
            // An identity in inference whatever the seed or noise shape.
            k.neutral(&["seed", "noise_shape"]);
            k.finish()?;
            (name, trainable, LayerKind::Dropout { rate })
        }
        other => {
            return Err(Error::Unsupported(format!(
                "layer class {other:?}; supported: InputLayer, Embedding, Masking, LSTM, GRU, \
                 SimpleRNN, Bidirectional, Dropout, Dense, TimeDistributed"
            )));
        }
    };
    Ok(LayerSpec {
        name,
        trainable,
        kind,
    })
}

/// A shape list `[null, 30, 5]` (batch first).
fn shape_list(what: &str, v: &Value) -> Result<Vec<Option<usize>>> {
    let a = v
        .as_array()
        .ok_or_else(|| Error::Config(format!("{what}: shape {v} is not a list")))?;
    a.iter()
        .map(|d| match d {
            Value::Null => Ok(None),
            d => d
                .as_u64()
                .map(|x| Some(x as usize))
                .ok_or_else(|| Error::Config(format!("{what}: shape entry {d} in {v}"))),
        })
        .collect()
}

fn input_layer(v: &Value) -> Result<Vec<Option<usize>>> {
    let mut k = Keys::new("InputLayer".into(), v)?;
    k.neutral(&["name", "optional"]);
    let what = k.what.clone();
    let shape = match (k.take("batch_shape"), k.take("batch_input_shape")) {
        (Some(s), _) | (None, Some(s)) => shape_list(&what, &s)?,
        (None, None) => {
            return Err(Error::Config(format!("{what}: batch_shape is missing")));
        }
    };
    check_dtype(&what, k.take("dtype"), true)?;
    k.only(
        "sparse",
        &[Value::Bool(false)],
        "sparse inputs are not supported",
    )?;
    k.only(
        "ragged",
        &[Value::Bool(false)],
        "ragged inputs are not supported",
    )?;
    k.finish()?;
    Ok(shape)
}

fn compile_loss(cc: &Value) -> Result<Option<KerasLoss>> {
    match cc.get("loss") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => KerasLoss::from_config(v).map(Some),
    }
}

/// Parses a Keras Sequential config (see the module docs for the shapes accepted).
pub fn parse(v: &Value) -> Result<ParsedConfig> {
    let mut loss = None;
    let mut build_shape = None;
    // `.keras` config.json / Keras 2 to_json(): the model dict is under "config".
    let body = if let Some(class) = v.get("class_name").and_then(Value::as_str) {
        if class != "Sequential" {
            return Err(Error::Unsupported(format!(
                "model class {class:?}; only Sequential models are supported"
            )));
        }
        if let Some(cc) = v.get("compile_config") {
            loss = compile_loss(cc)?;
        }
        build_shape = v.get("build_config").and_then(|b| b.get("input_shape"));
        v.get("config")
            .ok_or_else(|| Error::Config("Sequential: config is missing".into()))?
    } else {
        v
    };
    let mut k = Keys::new("Sequential".into(), body)?;
    let name = match k.take("name") {
        Some(Value::String(s)) => s,
        _ => "sequential".to_string(),
    };
    k.what = format!("model {name:?}");
    let model_trainable = k.bool("trainable", true)?;
    let what = k.what.clone();
    check_dtype(&what, k.take("dtype"), false)?;
    let layers_v = k
        .take("layers")
        .ok_or_else(|| Error::Config(format!("{what}: layers is missing")))?;
    let build_input = k.take("build_input_shape");
    k.finish()?;
    let entries = layers_v
        .as_array()
        .ok_or_else(|| Error::Config(format!("{what}: layers is not a list")))?;

    let mut shape = None;
    let mut layers = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let mut ek = Keys::new(format!("{what} layer {i}"), e)?;
        let class = match ek.take("class_name") {
            Some(Value::String(s)) => s,
            _ => return Err(Error::Config(format!("{what} layer {i}: no class_name"))),
        };
        let cfg = ek
            .take("config")
            .ok_or_else(|| Error::Config(format!("{what} layer {i}: no config")))?;
        ek.neutral(&[
            "module",
            "registered_name",
            "build_config",
            "name",
            "inbound_nodes",
        ]);
        ek.finish()?;
        if class == "InputLayer" {
            if i != 0 {
                return Err(Error::Config(format!(
                    "{what}: InputLayer at position {i}; it must come first"
                )));
            }
            shape = Some(input_layer(&cfg)?);
            continue;
        }
        if shape.is_none() && layers.is_empty() {
            for key in ["batch_shape", "batch_input_shape"] {
                if let Some(s) = cfg.get(key).filter(|s| !s.is_null()) {
                    shape = Some(shape_list(&what, s)?);
                }
            }
        }
        let mut l = layer(&class, &cfg)?;
        if !model_trainable {
            l.trainable = false;
        }
        layers.push(l);
    }
    let shape = match (shape, build_input.as_ref().or(build_shape)) {
        (Some(s), _) => s,
        (None, Some(b)) if !b.is_null() => shape_list(&what, b)?,
        _ => {
            return Err(Error::Config(format!(
                "{what}: the config gives no input shape (no InputLayer, batch_shape or \
                 build_input_shape)"
            )));
        }
    };
    let (batch, dims) = match shape.split_first() {
        Some((b, d)) => (*b, d.to_vec()),
        None => return Err(Error::Config(format!("{what}: empty input shape"))),
    };
    let integer = matches!(
        layers.first().map(|l| &l.kind),
        Some(LayerKind::Embedding { .. })
    );
    let spec = ModelSpec::new(
        &name,
        InputSpec {
            batch,
            dims,
            integer,
        },
        layers,
    )?;
    Ok(ParsedConfig { spec, loss })
}

/// Parses config JSON text.
pub fn parse_str(text: &str) -> Result<ParsedConfig> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| Error::Config(format!("the Keras config is not JSON: {e}")))?;
    parse(&v)
}
