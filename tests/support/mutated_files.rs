//! Proptests of issue 15: golden, safetensors and NPY bytes mutated at random (byte edits,
//! truncation, numbers in the JSON header, config values of every JSON kind) go through the
//! loaders (and, when the sizes stay small, a CPU run); every outcome is `Ok` or a typed
//! `Error`, never a panic (proptest reports and shrinks any panic).

use super::robust_files;
use proptest::prelude::*;
use wgpu_rnn::data::npy;
use wgpu_rnn::golden::{Golden, run_case};
use wgpu_rnn::weights::safetensors_io;
use wgpu_rnn::{Backend, Error, Lstm, LstmConfig};

fn golden_bytes() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| std::fs::read(robust_files::data("torch_lstm_small.safetensors")).unwrap())
}

/// Loads a mutated golden the way `verify` does; when it loads and its config is the
/// original one (the sizes are small), runs it on the CPU too. Any `Error` is fine; a
/// panic fails the test (proptest reports and shrinks it).
fn load_and_run(bytes: &[u8], name: &str) {
    let path = robust_files::tmp(name);
    std::fs::write(&path, bytes).unwrap();
    let _ = safetensors_io::read(&path);
    let _ = Lstm::from_safetensors(LstmConfig::new(3, 5), &path, Backend::Cpu);
    if let Ok(g) = Golden::load(&path) {
        let small = ["hidden_size", "input_size", "num_layers", "proj_size"]
            .iter()
            .all(|k| g.config[k].as_u64().is_some_and(|v| v <= 8));
        if small {
            let _ = run_case(&g, &Backend::Cpu);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, .. ProptestConfig::default() })]

    /// Random byte overwrites anywhere (header length, JSON header, tensor data) and a
    /// random truncation.
    #[test]
    fn golden_bytes_with_random_edits_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut b = golden_bytes().to_vec();
        for (at, v) in edits {
            let i = at.index(b.len());
            b[i] = v;
        }
        if let Some(c) = cut {
            b.truncate(c.index(b.len()));
        }
        load_and_run(&b, "prop_edit.safetensors");
    }

    /// Edits inside the JSON header: numbers (shapes, data offsets, the header length)
    /// replaced by other numbers, from 0 to u64::MAX.
    #[test]
    fn safetensors_header_numbers_replaced_never_panic(
        which in any::<prop::sample::Index>(),
        value in prop_oneof![0u64..16, Just(u64::MAX), Just(1 << 40), any::<u64>()],
        header_len in prop::option::of(prop_oneof![0u64..4096, any::<u64>()]),
    ) {
        let b = golden_bytes();
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        let header = std::str::from_utf8(&b[8..8 + n]).unwrap();
        let spans: Vec<(usize, usize)> = robust_files::number_spans(header);
        let (s, e) = spans[which.index(spans.len())];
        let new_header = format!("{}{value}{}", &header[..s], &header[e..]);
        let mut out = (header_len.unwrap_or(new_header.len() as u64)).to_le_bytes().to_vec();
        out.extend_from_slice(new_header.as_bytes());
        out.extend_from_slice(&b[8 + n..]);
        load_and_run(&out, "prop_header.safetensors");
    }

    /// Config keys set to values of every JSON kind, small and absurd.
    #[test]
    fn golden_config_values_never_panic(
        key in prop::sample::select(vec![
            "hidden_size", "input_size", "num_layers", "proj_size", "lengths", "x_layout",
            "bidirectional", "batch_first", "framework", "cell", "bias", "format", "case",
        ]),
        value in prop_oneof![
            (0u64..9).prop_map(serde_json::Value::from),
            Just(serde_json::Value::from(1_000_000_000u64)),
            Just(serde_json::Value::from(u64::MAX)),
            Just(serde_json::Value::from(-1)),
            Just(serde_json::Value::from(2.5)),
            Just(serde_json::Value::from("gru")),
            Just(serde_json::Value::from("BTI")),
            Just(serde_json::Value::Null),
            Just(serde_json::Value::from(true)),
            Just(serde_json::json!([0, 99, 3])),
        ],
    ) {
        let path = robust_files::golden_with("prop_config", |c| c[key] = value.clone());
        if let Ok(g) = Golden::load(&path) {
            let _ = run_case(&g, &Backend::Cpu);
        }
    }

    /// Random bytes as an NPY file: typed errors, never a panic.
    #[test]
    fn npy_random_bytes_never_panic(
        body in prop::collection::vec(any::<u8>(), 0..200),
        magic in any::<bool>(),
    ) {
        let mut b = if magic { b"\x93NUMPY\x01\x00".to_vec() } else { Vec::new() };
        b.extend_from_slice(&body);
        let _ = npy::decode_u8(&b);
        let _ = npy::moving_mnist_from_bytes(&b, Some(2));
    }
}

#[test]
fn mutated_headers_give_typed_errors() {
    // A header length beyond the file and a shape larger than its data.
    let b = golden_bytes();
    let mut long = b.to_vec();
    long[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let p = robust_files::tmp("long_header.safetensors");
    std::fs::write(&p, &long).unwrap();
    assert!(matches!(
        safetensors_io::read(&p),
        Err(Error::Io { .. } | Error::Format(_))
    ));
}

/// The whole-model goldens (`keras-model-golden-v1`) and Keras configs: byte edits of a
/// model golden go through `verify`'s model runner on the CPU, numbers edited in a Keras
/// config JSON go through the config parser and the summary.
mod models {
    use super::robust_files;
    use proptest::prelude::*;
    use wgpu_rnn::golden::model_case;
    use wgpu_rnn::models::keras::{CpuBackend, Precision, parse_config_str, summary};

    fn model_bytes() -> &'static [u8] {
        static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        BYTES.get_or_init(|| {
            std::fs::read(robust_files::data("models/km_lstm_dense_mse.safetensors")).unwrap()
        })
    }

    fn config_text() -> &'static str {
        static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        TEXT.get_or_init(|| {
            std::fs::read_to_string(robust_files::data("models/km_lstm_dense_mse.json")).unwrap()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, .. ProptestConfig::default() })]

        #[test]
        fn model_golden_bytes_with_random_edits_never_panic(
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        ) {
            let mut b = model_bytes().to_vec();
            for (at, v) in edits {
                let i = at.index(b.len());
                b[i] = v;
            }
            let path = robust_files::tmp("prop_model.safetensors");
            std::fs::write(&path, &b).unwrap();
            let backend = CpuBackend { precision: Precision::F32 };
            let lines = model_case::verify_lines(&path, &backend);
            prop_assert!(!lines.is_empty());
        }

        /// Numbers in the model golden's JSON header (its Keras config: units, input shapes;
        /// tensor shapes and offsets) replaced by small and absurd values.
        #[test]
        fn model_golden_header_numbers_replaced_never_panic(
            which in any::<prop::sample::Index>(),
            value in prop_oneof![0u64..5, Just(1_000_000_000u64), Just(u64::MAX)],
        ) {
            let b = model_bytes();
            let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
            let header = std::str::from_utf8(&b[8..8 + n]).unwrap();
            let spans = robust_files::number_spans(header);
            let (s, e) = spans[which.index(spans.len())];
            let new_header = format!("{}{value}{}", &header[..s], &header[e..]);
            let mut out = (new_header.len() as u64).to_le_bytes().to_vec();
            out.extend_from_slice(new_header.as_bytes());
            out.extend_from_slice(&b[8 + n..]);
            let path = robust_files::tmp("prop_model_header.safetensors");
            std::fs::write(&path, &out).unwrap();
            let backend = CpuBackend { precision: Precision::F32 };
            prop_assert!(!model_case::verify_lines(&path, &backend).is_empty());
        }

        #[test]
        fn keras_config_numbers_replaced_never_panic(
            which in any::<prop::sample::Index>(),
            value in prop_oneof![0u64..5, Just(1_000_000_000u64), Just(u64::MAX)],
        ) {
            let text = config_text();
            let spans = robust_files::number_spans(text);
            let (s, e) = spans[which.index(spans.len())];
            let edited = format!("{}{value}{}", &text[..s], &text[e..]);
            if let Ok(p) = parse_config_str(&edited) {
                let _ = summary(&p.spec);
            }
        }
    }
}
