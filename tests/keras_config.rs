//! Keras config parsing: accepted shapes of config (get_config, .keras config.json, Keras 2),
//! keys that do not change the maths, and typed errors for everything that would.

use serde_json::{Value, json};
use wgpu_rnn::Error;
use wgpu_rnn::models::keras::{
    CellKind, Init, KerasLoss, LayerKind, MergeMode, ModelWeights, parse_config,
};

fn golden_config() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/models/km_stack_bidir_concat_softmax.json"
    ))
    .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    match &v["config"] {
        Value::String(s) => serde_json::from_str(s).unwrap(),
        c => c.clone(),
    }
}

fn model(layers: Vec<Value>, input: Value) -> Value {
    let mut all =
        vec![json!({"class_name": "InputLayer", "config": {"batch_shape": input, "name": "in"}})];
    all.extend(layers);
    json!({"name": "m", "layers": all})
}

fn layer(class: &str, config: Value) -> Value {
    json!({"module": "keras.layers", "class_name": class, "config": config})
}

fn err(v: &Value) -> Error {
    parse_config(v).expect_err("must be refused")
}

fn unsupported_naming(v: &Value, words: &[&str]) {
    let e = err(v);
    let msg = e.to_string();
    assert!(matches!(e, Error::Unsupported(_)), "{msg}");
    for w in words {
        assert!(msg.contains(w), "{msg:?} does not name {w:?}");
    }
}

#[test]
fn golden_config_parses_with_every_key() {
    let p = parse_config(&golden_config()).unwrap();
    assert_eq!(p.spec.param_count(), 1287);
    let LayerKind::Bidirectional {
        forward,
        backward,
        merge,
    } = &p.spec.layers[2].spec.kind
    else {
        panic!("layer 2 is Bidirectional")
    };
    assert_eq!(*merge, MergeMode::Concat);
    assert_eq!(forward.name, "forward_gru");
    assert!(backward.go_backwards && !forward.go_backwards);
    assert_eq!(forward.cell, CellKind::Gru { reset_after: true });
}

#[test]
fn keras_file_wrapper_and_compile_loss() {
    let wrapped = json!({
        "module": "keras", "class_name": "Sequential", "config": golden_config(),
        "registered_name": null, "build_config": {"input_shape": [null, 9, 4]},
        "compile_config": {"optimizer": "adam", "loss": "sparse_categorical_crossentropy",
                            "metrics": null, "loss_weights": null}
    });
    let p = parse_config(&wrapped).unwrap();
    assert_eq!(p.spec.param_count(), 1287);
    assert_eq!(
        p.loss,
        Some(KerasLoss::SparseCategoricalCrossentropy { from_logits: false })
    );
    let mut logits = wrapped.clone();
    logits["compile_config"]["loss"] = json!({"module": "keras.losses", "class_name":
        "BinaryCrossentropy", "config": {"name": "bce", "reduction": "sum_over_batch_size",
        "from_logits": true, "label_smoothing": 0.0, "axis": -1}});
    assert_eq!(
        parse_config(&logits).unwrap().loss,
        Some(KerasLoss::BinaryCrossentropy { from_logits: true })
    );
    logits["compile_config"]["loss"]["config"]["label_smoothing"] = json!(0.1);
    unsupported_naming(&logits, &["label_smoothing"]);
    let mut functional = wrapped;
    functional["class_name"] = json!("Functional");
    unsupported_naming(&functional, &["Functional"]);
}

#[test]
fn keras2_config_without_input_layer() {
    let v = json!({"class_name": "Sequential", "config": {"name": "old", "layers": [
        {"class_name": "LSTM", "config": {"name": "lstm", "units": 8, "batch_input_shape":
            [null, 10, 3], "dtype": "float32", "time_major": false, "implementation": 2,
            "unroll": false, "return_sequences": true}},
        {"class_name": "Bidirectional", "config": {"name": "bi", "merge_mode": "sum",
            "layer": {"class_name": "GRU", "config": {"name": "gru", "units": 4,
            "reset_after": false}}}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 2, "activation": "softmax"}}
    ]}, "keras_version": "2.15.0", "backend": "tensorflow"});
    let p = parse_config(&v).unwrap();
    let gru = 3 * (8 * 4 + 4 * 4) + 3 * 4;
    assert_eq!(
        p.spec.param_count(),
        4 * (3 * 8 + 8 * 8 + 8) + 2 * gru + 4 * 2 + 2
    );
    let paths: Vec<_> = p.spec.weights().map(|w| w.path.clone()).collect();
    assert!(paths.contains(&"bi/backward_gru/gru_cell/recurrent_kernel".to_string()));
    assert!(paths.contains(&"bi/forward_gru/gru_cell/bias".to_string()));
}

#[test]
fn unknown_classes_keys_and_values_are_typed_errors() {
    let x = json!([null, 5, 3]);
    let lstm = |extra: Value| {
        let mut c = json!({"name": "lstm", "units": 4});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        model(vec![layer("LSTM", c)], x.clone())
    };
    unsupported_naming(
        &model(vec![layer("Conv1D", json!({"name": "c"}))], x.clone()),
        &["Conv1D"],
    );
    unsupported_naming(&lstm(json!({"peepholes": true})), &["lstm", "peepholes"]);
    unsupported_naming(
        &lstm(json!({"activation": "selu"})),
        &["activation", "selu"],
    );
    unsupported_naming(
        &lstm(json!({"recurrent_activation": "softmax"})),
        &["recurrent_activation"],
    );
    unsupported_naming(
        &lstm(json!({"activity_regularizer": {"class_name": "L2", "config": {"l2": 0.1}}})),
        &["activity_regularizer"],
    );
    unsupported_naming(
        &lstm(json!({"kernel_constraint": {"class_name": "MaxNorm", "config": {}}})),
        &["kernel_constraint"],
    );
    unsupported_naming(
        &lstm(json!({"kernel_regularizer": {"class_name": "OrthogonalRegularizer", "config": {}}})),
        &["kernel_regularizer", "OrthogonalRegularizer"],
    );
    unsupported_naming(
        &lstm(json!({"dtype": {"class_name": "DTypePolicy", "config": {"name": "mixed_float16"}}})),
        &["dtype", "mixed_float16"],
    );
    unsupported_naming(&lstm(json!({"time_major": true})), &["time_major"]);
    let bad_merge = model(
        vec![layer(
            "Bidirectional",
            json!({"name": "b", "merge_mode": "max",
            "layer": {"class_name": "LSTM", "config": {"name": "l", "units": 2}}}),
        )],
        x.clone(),
    );
    unsupported_naming(&bad_merge, &["merge_mode", "max"]);
    let td_lstm = model(
        vec![layer(
            "TimeDistributed",
            json!({"name": "t",
            "layer": {"class_name": "LSTM", "config": {"name": "l", "units": 2}}}),
        )],
        x.clone(),
    );
    unsupported_naming(&td_lstm, &["TimeDistributed", "LSTM"]);
    unsupported_naming(
        &model(
            vec![layer(
                "Dense",
                json!({"name": "d", "units": 2, "lora_rank": 4}),
            )],
            x.clone(),
        ),
        &["lora_rank"],
    );
    // Keys that do not change the maths are accepted whatever their value.
    let ok = lstm(
        json!({"seed": 123, "unroll": true, "implementation": 1, "trainable": true,
        "kernel_initializer": {"class_name": "HeNormal", "config": {"seed": 5}}}),
    );
    let p = parse_config(&ok).unwrap();
    let LayerKind::Rnn(r) = &p.spec.layers[0].spec.kind else {
        panic!()
    };
    assert_eq!(r.kernel_initializer, Init::Other("HeNormal".into()));
    // ... but an initializer this crate cannot draw is refused when fresh weights are asked.
    let e = ModelWeights::fresh(&p.spec, 1).unwrap_err();
    assert!(
        matches!(&e, Error::Unsupported(m) if m.contains("HeNormal")),
        "{e}"
    );
}

#[test]
fn structural_errors_name_the_layer() {
    let x = json!([null, 5, 3]);
    // A layer returning states cannot feed another layer.
    let v = model(
        vec![
            layer(
                "GRU",
                json!({"name": "g", "units": 3, "return_state": true}),
            ),
            layer("Dense", json!({"name": "d", "units": 1})),
        ],
        x.clone(),
    );
    let e = err(&v);
    assert!(
        matches!(&e, Error::Config(m) if m.contains("g (GRU)") && m.contains('d')),
        "{e}"
    );
    // ... but may be the last layer: three outputs.
    let v = model(
        vec![layer(
            "LSTM",
            json!({"name": "l", "units": 3, "return_state": true}),
        )],
        x.clone(),
    );
    assert_eq!(parse_config(&v).unwrap().spec.output_shapes().len(), 3);
    // An RNN needs a sequence.
    let v = model(
        vec![
            layer("LSTM", json!({"name": "a", "units": 3})),
            layer("LSTM", json!({"name": "b", "units": 3})),
        ],
        x.clone(),
    );
    let e = err(&v);
    assert!(
        matches!(&e, Error::Shape(m) if m.contains("b (LSTM)")),
        "{e}"
    );
    // Embedding after another layer.
    let v = model(
        vec![
            layer("Dropout", json!({"name": "d", "rate": 0.1})),
            layer(
                "Embedding",
                json!({"name": "e", "input_dim": 5, "output_dim": 2}),
            ),
        ],
        json!([null, 5]),
    );
    assert!(matches!(err(&v), Error::Unsupported(m) if m.contains("e (Embedding)")));
    // Stateful without a fixed batch size; bad rates; duplicate names; no input shape.
    let v = model(
        vec![layer(
            "LSTM",
            json!({"name": "s", "units": 2, "stateful": true}),
        )],
        x.clone(),
    );
    assert!(matches!(err(&v), Error::Config(m) if m.contains("stateful")));
    let v = model(
        vec![layer(
            "LSTM",
            json!({"name": "s", "units": 2, "stateful": true}),
        )],
        json!([4, 5, 3]),
    );
    assert!(parse_config(&v).is_ok());
    let v = model(
        vec![layer("Dropout", json!({"name": "d", "rate": 1.5}))],
        x.clone(),
    );
    assert!(matches!(err(&v), Error::Config(m) if m.contains("rate")));
    let v = model(
        vec![
            layer("Dropout", json!({"name": "d", "rate": 0.1})),
            layer("Dropout", json!({"name": "d", "rate": 0.1})),
        ],
        x,
    );
    assert!(matches!(err(&v), Error::Config(m) if m.contains("\"d\"")));
    let v = json!({"name": "m", "layers": [layer("Dense", json!({"name": "d", "units": 1}))]});
    assert!(matches!(err(&v), Error::Config(m) if m.contains("input shape")));
}
