//! Writing Keras configs and saving / loading models: every Keras-exported config reads back
//! as the same spec after `to_config`, the written config has Keras 3.15's exact shape, and
//! `save` → `load` keeps every weight bit and every prediction; broken files are typed errors
//! naming the file and the weight.

use std::path::{Path, PathBuf};

use serde_json::Value;
use wgpu_rnn::Error;
use wgpu_rnn::cpu::Activation;
use wgpu_rnn::golden::model_case::ModelGolden;
use wgpu_rnn::models::keras::{
    CellKind, CpuBackend, DenseActivation, Init, LayerKind, LayerSpec, MergeMode, ModelInput,
    ModelSpec, ModelWeights, Precision, Regularizer, Sequential, SequentialBuilder, parse_config,
};
use wgpu_rnn::weights::{TensorMap, safetensors_io};

fn data(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/models")
        .join(p)
}

/// Every Keras-exported config: the 18 of `configs/` and the 11 model goldens'.
fn keras_configs() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(data("configs")).unwrap() {
        let p = e.unwrap().path();
        if p.file_name().unwrap() != "index.json" {
            let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            out.push((p.file_name().unwrap().to_string_lossy().into_owned(), v));
        }
    }
    for p in goldens() {
        let g = ModelGolden::load(&p).unwrap();
        out.push((g.case.clone(), g.config.clone()));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn goldens() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(data(""))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    v.sort();
    v
}

/// to_config → parse gives the same spec, summary and count; writing again gives the same
/// JSON.
fn assert_round_trip(case: &str, spec: &ModelSpec) -> Value {
    let written = spec.to_config().unwrap_or_else(|e| panic!("{case}: {e}"));
    let back = parse_config(&written)
        .unwrap_or_else(|e| panic!("{case}: written config does not parse: {e}"))
        .spec;
    assert_eq!(&back, spec, "{case}");
    assert_eq!(
        wgpu_rnn::models::keras::summary(&back),
        wgpu_rnn::models::keras::summary(spec),
        "{case}"
    );
    assert_eq!(back.param_count(), spec.param_count(), "{case}");
    assert_eq!(back.to_config().unwrap(), written, "{case}");
    written
}

#[test]
fn every_keras_config_reads_back_as_the_same_spec() {
    let configs = keras_configs();
    assert_eq!(configs.len(), 29, "18 exported configs + 11 goldens");
    let mut bidirectional = 0;
    for (case, v) in &configs {
        let spec = parse_config(v).unwrap().spec;
        assert_round_trip(case, &spec);
        bidirectional += spec
            .layers
            .iter()
            .filter(|l| matches!(l.spec.kind, LayerKind::Bidirectional { .. }))
            .count();
    }
    assert!(bidirectional >= 12, "{bidirectional}");
}

/// Keras' config with what the writer states it does differently: the `float32` dtype
/// policy (the goldens were exported in float64) and initializer keys newer than Keras 3.0
/// (`input_axes`, `output_axes`, always null there).
fn normalize_keras(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| {
                    !(["input_axes", "output_axes"].contains(&k.as_str()) && v.is_null())
                })
                .map(|(k, v)| {
                    let v = if v == "float64" {
                        Value::from("float32")
                    } else {
                        normalize_keras(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalize_keras).collect()),
        other => other.clone(),
    }
}

#[test]
fn written_configs_have_keras_exact_shape() {
    for (case, v) in keras_configs() {
        let ours = parse_config(&v).unwrap().spec.to_config().unwrap();
        let keras = normalize_keras(&v);
        // Compared layer by layer first so a failure names the layer.
        for (a, b) in ours["layers"]
            .as_array()
            .unwrap()
            .iter()
            .zip(keras["layers"].as_array().unwrap())
        {
            assert_eq!(a, b, "{case}: layer {}", b["config"]["name"]);
        }
        assert_eq!(ours, keras, "{case}");
    }
}

fn every_init() -> [Init; 11] {
    [
        Init::GlorotUniform,
        Init::GlorotNormal,
        Init::HeUniform,
        Init::LecunUniform,
        Init::Orthogonal { gain: 1.5 },
        Init::Zeros,
        Init::Ones,
        Init::Constant(0.25),
        Init::RandomUniform {
            min: -0.1,
            max: 0.2,
        },
        Init::RandomNormal {
            mean: 0.5,
            stddev: 0.01,
        },
        Init::TruncatedNormal {
            mean: -0.5,
            stddev: 0.02,
        },
    ]
}

/// Builder models covering every option the spec holds.
fn builder_models() -> Vec<ModelSpec> {
    let l1 = Regularizer { l1: 0.01, l2: 0.0 };
    let l2 = Regularizer { l1: 0.0, l2: 0.03 };
    let l1l2 = Regularizer { l1: 0.1, l2: 0.2 };
    let inits = every_init();
    let mut v = Vec::new();
    v.push(
        SequentialBuilder::new("text", &[Some(7)], true)
            .embedding(50, 8, true)
            .rnn(
                CellKind::Lstm {
                    unit_forget_bias: false,
                },
                6,
                |r| {
                    r.return_sequences = true;
                    r.activation = Activation::Relu;
                    r.recurrent_activation = Activation::HardSigmoid;
                    r.dropout = 0.25;
                    r.recurrent_dropout = 0.125;
                    r.kernel_regularizer = Some(l1);
                    r.recurrent_regularizer = Some(l2);
                    r.bias_regularizer = Some(l1l2);
                    r.kernel_initializer = inits[1].clone();
                    r.recurrent_initializer = inits[4].clone();
                    r.bias_initializer = inits[7].clone();
                },
            )
            .dropout(0.5)
            .rnn(CellKind::Gru { reset_after: false }, 4, |r| {
                r.go_backwards = true;
                r.use_bias = false;
                r.zero_output_for_mask = true;
                r.return_sequences = true;
                r.kernel_initializer = inits[2].clone();
                r.recurrent_initializer = inits[3].clone();
            })
            .time_distributed_dense(3, DenseActivation::Softmax)
            .build()
            .unwrap(),
    );
    for (i, merge) in [
        MergeMode::Concat,
        MergeMode::Sum,
        MergeMode::Mul,
        MergeMode::Ave,
        MergeMode::None,
    ]
    .into_iter()
    .enumerate()
    {
        let mut b = SequentialBuilder::new(&format!("bi{i}"), &[Some(5), Some(3)], false)
            .masking(-1.5)
            .bidirectional(CellKind::SimpleRnn, 4, MergeMode::Sum, |r| {
                r.return_sequences = true;
                r.kernel_initializer = inits[8].clone();
                r.bias_initializer = inits[9].clone();
                r.recurrent_initializer = inits[10].clone();
            });
        b = b.bidirectional(CellKind::Gru { reset_after: true }, 3, merge, |r| {
            r.return_sequences = i % 2 == 0;
            r.go_backwards = i == 1;
            r.bias_initializer = inits[6].clone();
        });
        if merge != MergeMode::None {
            b = b.dense(2, DenseActivation::Elementwise(Activation::Sigmoid));
        }
        v.push(b.build().unwrap());
    }
    // Stateful (fixed batch), return_state on the last layer, a frozen layer and the
    // initializer Keras names but this crate cannot draw.
    let mut frozen = SequentialBuilder::new("stateful", &[Some(4), Some(2)], false)
        .batch_size(3)
        .dense(5, DenseActivation::Elementwise(Activation::Tanh))
        .rnn(
            CellKind::Lstm {
                unit_forget_bias: true,
            },
            3,
            |r| {
                r.stateful = true;
                r.return_state = true;
                r.kernel_initializer = Init::Other("VarianceScaling".into());
                r.trainable = false;
            },
        );
    let mut spec = std::mem::replace(&mut frozen, SequentialBuilder::new("x", &[Some(1)], false))
        .build()
        .unwrap();
    assert!(spec.to_config().is_err(), "LSTM frozen but its layer not");
    let layers: Vec<LayerSpec> = spec
        .layers
        .iter()
        .map(|l| {
            let mut s = l.spec.clone();
            if matches!(s.kind, LayerKind::Rnn(_)) {
                s.trainable = false;
            }
            s
        })
        .collect();
    spec = ModelSpec::new("stateful", spec.input.clone(), layers).unwrap();
    v.push(spec);
    // Every layer frozen, as Keras' model-level trainable=False gives.
    let all_frozen = parse_config(
        &serde_json::from_str::<Value>(
            &std::fs::read_to_string(data("configs/bilstm_64_32.json")).unwrap(),
        )
        .map(|mut c| {
            c["trainable"] = false.into();
            c
        })
        .unwrap(),
    )
    .unwrap()
    .spec;
    assert_eq!(all_frozen.trainable_param_count(), 0);
    v.push(all_frozen);
    v
}

#[test]
fn builder_models_with_every_option_read_back_the_same() {
    let models = builder_models();
    assert_eq!(models.len(), 8);
    for m in &models {
        let written = assert_round_trip(&m.name, m);
        assert_eq!(written["name"], m.name.as_str());
    }
    // Spot checks of the serialized forms against what Keras writes.
    let w = models[0].to_config().unwrap();
    let lstm = &w["layers"][2]["config"];
    assert_eq!(lstm["kernel_regularizer"]["class_name"], "L1");
    assert_eq!(
        lstm["recurrent_regularizer"]["config"],
        serde_json::json!({"l2": 0.03})
    );
    assert_eq!(lstm["bias_regularizer"]["class_name"], "L1L2");
    assert_eq!(lstm["recurrent_activation"], "hard_sigmoid");
    assert_eq!(lstm["unit_forget_bias"], false);
    assert_eq!(lstm["recurrent_initializer"]["config"]["gain"], 1.5);
    assert_eq!(w["layers"][0]["config"]["dtype"], "int32");
    assert_eq!(w["layers"][4]["config"]["reset_after"], false);
    assert_eq!(
        w["layers"][5]["config"]["layer"]["build_config"]["input_shape"],
        serde_json::json!([null, 4])
    );
    let none = models[5].to_config().unwrap();
    assert_eq!(none["layers"][2]["config"]["merge_mode"], "sum");
    assert_eq!(none["layers"][3]["config"]["merge_mode"], Value::Null);
    let st = models[6].to_config().unwrap();
    assert_eq!(
        st["layers"][0]["config"]["batch_shape"],
        serde_json::json!([3, 4, 2])
    );
    assert_eq!(
        st["layers"][2]["config"]["kernel_initializer"]["class_name"],
        "VarianceScaling"
    );
    assert_eq!(models[7].to_config().unwrap()["trainable"], false);
}

#[test]
fn specs_keras_cannot_express_are_refused() {
    let spec = SequentialBuilder::new("m", &[Some(4), Some(2)], false)
        .bidirectional(CellKind::SimpleRnn, 2, MergeMode::Concat, |_| {})
        .build()
        .unwrap();
    let mut layers: Vec<LayerSpec> = spec.layers.iter().map(|l| l.spec.clone()).collect();
    if let LayerKind::Bidirectional { forward, .. } = &mut layers[0].kind {
        forward.name = "fwd".into();
    }
    let bad = ModelSpec::new("m", spec.input.clone(), layers).unwrap();
    let e = bad.to_config().unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)), "{e}");
    assert!(
        e.to_string().contains("\"fwd\"") && e.to_string().contains("forward_"),
        "{e}"
    );

    let masking = SequentialBuilder::new("m", &[Some(4), Some(2)], false)
        .masking(f64::NAN)
        .rnn(CellKind::SimpleRnn, 2, |_| {})
        .build()
        .unwrap();
    let e = masking.to_config().unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
    assert!(e.to_string().contains("mask_value"), "{e}");

    let mut layers: Vec<LayerSpec> = spec.layers.iter().map(|l| l.spec.clone()).collect();
    layers[0].kind = LayerKind::Rnn(wgpu_rnn::models::keras::RnnSpec::new(
        "inner",
        CellKind::SimpleRnn,
        2,
    ));
    let renamed = ModelSpec::new("m", spec.input.clone(), layers).unwrap();
    let e = renamed.to_config().unwrap_err();
    assert!(e.to_string().contains("\"inner\""), "{e}");
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("wgpu_rnn_save_{name}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn assert_bitwise_equal(case: &str, a: &ModelWeights, b: &ModelWeights) {
    let (ka, kb): (Vec<_>, Vec<_>) = (
        a.iter().map(|x| x.0).collect(),
        b.iter().map(|x| x.0).collect(),
    );
    assert_eq!(ka, kb, "{case}");
    for (k, v) in a.iter() {
        let w = b.get(k).unwrap();
        assert_eq!(v.shape(), w.shape(), "{case} {k}");
        assert!(
            v.iter()
                .zip(w.iter())
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{case}: {k} differs"
        );
    }
}

fn assert_same_predictions(case: &str, a: &Sequential, b: &Sequential, x: &ModelInput) {
    let cpu = CpuBackend {
        precision: Precision::F32,
    };
    let (pa, pb) = (a.predict(&cpu, x).unwrap(), b.predict(&cpu, x).unwrap());
    assert_eq!(pa.len(), pb.len(), "{case}");
    for (u, v) in pa.iter().zip(&pb) {
        assert_eq!(u.shape(), v.shape(), "{case}");
        assert!(
            u.iter()
                .zip(v.iter())
                .all(|(p, q)| p.to_bits() == q.to_bits()),
            "{case}: predictions differ"
        );
    }
}

#[test]
fn every_golden_model_saves_and_loads_bit_for_bit() {
    let files = goldens();
    assert_eq!(files.len(), 11);
    for f in files {
        let g = ModelGolden::load(&f).unwrap();
        let model = g.model().unwrap();
        let dir = tmp_dir(&g.case);
        model.save(&dir).unwrap();
        let file: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(Sequential::CONFIG_FILE)).unwrap(),
        )
        .unwrap();
        assert_eq!(file["class_name"], "Sequential", "{}", g.case);
        assert_eq!(
            file["config"],
            model.spec().to_config().unwrap(),
            "{}",
            g.case
        );
        let back = Sequential::load(&dir).unwrap();
        assert_eq!(back.spec(), model.spec(), "{}", g.case);
        assert_eq!(back.summary(), model.summary(), "{}", g.case);
        assert_bitwise_equal(&g.case, model.weights(), back.weights());
        // The weights file holds exactly the Keras paths, as the goldens name them after `w/`.
        let st = safetensors_io::read(&dir.join(Sequential::WEIGHTS_FILE)).unwrap();
        let golden_paths: Vec<String> = g
            .tensors
            .keys()
            .filter_map(|k| k.strip_prefix("w/").map(String::from))
            .collect();
        assert_eq!(st.tensors.keys().cloned().collect::<Vec<_>>(), golden_paths);
        assert_same_predictions(&g.case, &model, &back, &g.input().unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn builder_models_with_fresh_weights_save_and_load() {
    for (i, spec) in builder_models().into_iter().enumerate() {
        let weights = match ModelWeights::fresh(&spec, 11 + i as u64) {
            Ok(w) => w,
            // VarianceScaling cannot be drawn: give that kernel values by hand.
            Err(_) => {
                let mut t = TensorMap::new();
                for w in spec.weights() {
                    let n: usize = w.shape.iter().product();
                    let vals = (0..n).map(|j| ((j * 7 % 13) as f32 - 6.0) * 0.05).collect();
                    t.insert(
                        w.path.clone(),
                        ndarray::ArrayD::from_shape_vec(w.shape.clone(), vals).unwrap(),
                    );
                }
                ModelWeights::from_tensors(&spec, &t, "").unwrap()
            }
        };
        let model = Sequential::new(spec.clone(), weights).unwrap();
        let dir = tmp_dir(&format!("builder{i}"));
        model.save(&dir).unwrap();
        // Saving over an earlier save replaces it.
        model.save(&dir).unwrap();
        let back = Sequential::load(&dir).unwrap();
        assert_eq!(back.spec(), &spec, "{}", spec.name);
        assert_bitwise_equal(&spec.name, model.weights(), back.weights());
        let b = spec.input.batch.unwrap_or(2);
        let t = spec.input.dims[0].unwrap();
        let x = if spec.input.integer {
            ModelInput::Tokens(ndarray::Array2::from_shape_fn((b, t), |(i, j)| {
                ((i * 5 + j * 3) % 50) as i64 * i64::from(j > 1)
            }))
        } else {
            let f = spec.input.dims[1].unwrap();
            ModelInput::Values(ndarray::ArrayD::from_shape_fn(vec![b, t, f], |ix| {
                ((ix[0] + 2 * ix[1] + 3 * ix[2]) % 7) as f64 * 0.3 - 1.0
            }))
        };
        assert_same_predictions(&spec.name, &model, &back, &x);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// A saved km_lstm_dense_mse model whose weights file is replaced by `tensors`.
fn with_weights(name: &str, edit: impl FnOnce(&mut TensorMap)) -> (PathBuf, Error) {
    let g = ModelGolden::load(&data("km_lstm_dense_mse.safetensors")).unwrap();
    let dir = tmp_dir(name);
    g.model().unwrap().save(&dir).unwrap();
    let wpath = dir.join(Sequential::WEIGHTS_FILE);
    let mut t = safetensors_io::read(&wpath).unwrap().tensors;
    edit(&mut t);
    safetensors_io::write(&wpath, &t, None).unwrap();
    let e = Sequential::load(&dir).unwrap_err();
    (wpath, e)
}

#[test]
fn broken_weight_files_are_typed_errors_naming_file_and_key() {
    let (wpath, e) = with_weights("missing", |t| {
        t.remove("dense/bias");
    });
    let m = e.to_string();
    assert!(matches!(e, Error::Weights(_)), "{m}");
    assert!(
        m.contains("missing weight dense/bias") && m.contains(&wpath.display().to_string()),
        "{m}"
    );

    let (_, e) = with_weights("extra", |t| {
        t.insert("dense/extra".into(), ndarray::ArrayD::zeros(vec![2]));
    });
    let m = e.to_string();
    assert!(matches!(e, Error::Weights(_)), "{m}");
    assert!(
        m.contains("unexpected weight dense/extra") && m.contains(Sequential::WEIGHTS_FILE),
        "{m}"
    );

    let (_, e) = with_weights("shape", |t| {
        t.insert(
            "lstm/lstm_cell/kernel".into(),
            ndarray::ArrayD::zeros(vec![5, 7]),
        );
    });
    let m = e.to_string();
    assert!(matches!(e, Error::Weights(_)), "{m}");
    assert!(
        m.contains("lstm/lstm_cell/kernel has shape [5, 7]")
            && m.contains(Sequential::WEIGHTS_FILE),
        "{m}"
    );
    for n in ["missing", "extra", "shape"] {
        std::fs::remove_dir_all(tmp_dir(n)).ok();
    }
}

#[test]
fn broken_directories_and_configs_are_typed_errors_naming_the_file() {
    let g = ModelGolden::load(&data("km_lstm_dense_mse.safetensors")).unwrap();
    let model = g.model().unwrap();

    // Nothing there.
    let dir = tmp_dir("empty");
    let e = Sequential::load(&dir).unwrap_err();
    assert!(
        matches!(&e, Error::Io { path, .. } if path.ends_with("config.json")),
        "{e}"
    );

    // config.json is a directory: refused before reading, never streamed.
    std::fs::create_dir_all(dir.join(Sequential::CONFIG_FILE)).unwrap();
    let e = Sequential::load(&dir).unwrap_err();
    assert!(
        matches!(&e, Error::Io { msg, .. } if msg.contains("directory")),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();

    // A config with a key the parser does not know names the file and the key.
    model.save(&dir).unwrap();
    let cpath = dir.join(Sequential::CONFIG_FILE);
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&cpath).unwrap()).unwrap();
    c["config"]["layers"][1]["config"]["time_warp"] = true.into();
    std::fs::write(&cpath, c.to_string()).unwrap();
    let e = Sequential::load(&dir).unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, Error::Unsupported(_)), "{m}");
    assert!(
        m.contains("time_warp") && m.contains(&cpath.display().to_string()),
        "{m}"
    );

    // Not JSON.
    std::fs::write(&cpath, "{ nope").unwrap();
    let e = Sequential::load(&dir).unwrap_err();
    assert!(
        matches!(&e, Error::Config(m) if m.contains("config.json")),
        "{e}"
    );

    // The weights file missing, then a directory, then not safetensors.
    model.save(&dir).unwrap();
    let wpath = dir.join(Sequential::WEIGHTS_FILE);
    std::fs::remove_file(&wpath).unwrap();
    let e = Sequential::load(&dir).unwrap_err();
    assert!(
        matches!(&e, Error::Io { path, .. } if path.ends_with(Sequential::WEIGHTS_FILE)),
        "{e}"
    );
    std::fs::create_dir(&wpath).unwrap();
    let e = Sequential::load(&dir).unwrap_err();
    assert!(
        matches!(&e, Error::Io { msg, .. } if msg.contains("directory")),
        "{e}"
    );
    std::fs::remove_dir(&wpath).unwrap();
    std::fs::write(&wpath, b"not a safetensors file").unwrap();
    let e = Sequential::load(&dir).unwrap_err();
    assert!(
        matches!(&e, Error::Io { path, .. } if path.ends_with(Sequential::WEIGHTS_FILE)),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();

    // Saving into a path that is a file is an I/O error naming it.
    let file = tmp_dir("afile");
    std::fs::write(&file, b"x").unwrap();
    let e = model.save(&file).unwrap_err();
    assert!(matches!(&e, Error::Io { .. }), "{e}");
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn a_config_beyond_the_host_memory_cap_is_a_limit_error_before_reading_weights() {
    let g = ModelGolden::load(&data("km_lstm_dense_mse.safetensors")).unwrap();
    let dir = tmp_dir("cap");
    g.model().unwrap().save(&dir).unwrap();
    let cpath = dir.join(Sequential::CONFIG_FILE);
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&cpath).unwrap()).unwrap();
    // 2^40 units: 4 TiB for one weight, over any cap (at most 16 GiB).
    c["config"]["layers"][1]["config"]["units"] = (1u64 << 40).into();
    std::fs::write(&cpath, c.to_string()).unwrap();
    let e = Sequential::load(&dir).unwrap_err();
    let m = e.to_string();
    assert!(matches!(e, Error::Limit(_)), "{m}");
    assert!(
        m.contains("units") && m.contains(&cpath.display().to_string()),
        "{m}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
